//! The `shmchan` command (being written).

fn main() {
    eprintln!("shmchan: not implemented yet");
    std::process::exit(2);
}
