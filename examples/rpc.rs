//! Request-response between separate processes, found by name: one server process, several
//! client processes calling it at once, one client SIGKILLed mid-run whose slot a later client
//! takes over (the server allows only 4 clients at a time, the launcher being one), and a clean
//! shutdown. Every
//! process is this program re-executed with a role; each client checks that every answer is
//! the answer to its own question. Exits non-zero if anything went wrong.
//!
//! ```sh
//! cargo run --example rpc                  # 2 steady clients x 2000 calls
//! cargo run --example rpc -- --calls 50000
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shmchan::{Error, Key, ShmSafe, rpc};

/// A question: the sum and product of `a` and `b`, asked by client `client`.
#[derive(ShmSafe, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Question {
    op: u32,
    client: u32,
    a: u64,
    b: u64,
}

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Answer {
    client: u64,
    a: u64,
    sum: u64,
    product: u64,
}

const ASK: u32 = 0;
const SHUTDOWN: u32 = 1;
const MAX_CLIENTS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(10);

fn expected(q: &Question) -> Answer {
    Answer {
        client: u64::from(q.client),
        a: q.a,
        sum: q.a.wrapping_add(q.b),
        product: q.a.wrapping_mul(q.b),
    }
}

fn key_of(name: &str) -> shmchan::Result<Key> {
    Key::name(name)
}

/// The server process: answers until a shutdown request, then reports its counters.
fn serve(name: &str) -> shmchan::Result<()> {
    let server = rpc::Server::<Question, Answer>::options()
        .capacity(64)
        .max_clients(MAX_CLIENTS)
        .create(key_of(name)?)?;
    println!("ready");
    let mut served = 0u64;
    loop {
        let (q, replier) = match server.recv_timeout(Duration::from_secs(30)) {
            Ok(r) => r,
            // The launcher stays connected until it has sent the shutdown: if every client is
            // gone, it died.
            Err(Error::Disconnected) => {
                eprintln!("server: every client left without a shutdown");
                break;
            }
            Err(e) => return Err(e),
        };
        served += 1;
        let stop = q.op == SHUTDOWN;
        replier.reply(expected(&q))?;
        if stop {
            break;
        }
    }
    eprintln!(
        "server: {served} requests answered, {} stale requests skipped, {} replies to departed clients dropped, {} queue slots recovered",
        server.stale_requests(),
        server.dropped_replies(),
        server.recovered()
    );
    Ok(())
}

/// Connects, retrying while every slot is taken (a killed client's slot frees once the server
/// has recovered the queue position it may have been claiming).
fn connect(name: &str) -> shmchan::Result<rpc::Client<Question, Answer>> {
    let t0 = Instant::now();
    loop {
        match rpc::Client::connect(key_of(name)?) {
            Err(Error::TooManyHolders { .. }) if t0.elapsed() < TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// A client process: prints its slot, then asks `calls` questions, each answer checked
/// (prints "first" after the first); with `hold`, keeps its slot until a line on stdin.
fn client(name: &str, id: u32, calls: u64, hold: bool) -> shmchan::Result<bool> {
    let c = connect(name)?;
    println!("slot {}", c.slot()?);
    let mut ok = true;
    for i in 0..calls {
        let q = Question {
            op: ASK,
            client: id,
            a: i,
            b: u64::from(id) * 1_000 + 7,
        };
        let a = c.call(q, TIMEOUT)?;
        if a != expected(&q) {
            eprintln!("client {id}: wrong answer to {q:?}: {a:?}");
            ok = false;
        }
        if i == 0 {
            println!("first");
        }
    }
    println!("client {id}: {calls} calls answered, every answer its own");
    if hold {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    Ok(ok)
}

/// A child process with piped stdin and stdout.
struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(args: &[&str]) -> std::io::Result<Proc> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child
            .stdout
            .take()
            .map(BufReader::new)
            .ok_or_else(|| std::io::Error::other("the child's stdout was not captured"))?;
        Ok(Proc { child, out })
    }

    /// The next line (without its newline).
    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.out.read_line(&mut line) {
            Ok(0) => Err("the child exited early".into()),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads lines until one equals `want`, printing the others.
    fn expect(&mut self, want: &str) -> Result<(), String> {
        loop {
            let l = self.line()?;
            if l == want {
                return Ok(());
            }
            println!("{l}");
        }
    }

    /// The slot the client reported.
    fn slot(&mut self) -> Result<String, String> {
        let l = self.line()?;
        l.strip_prefix("slot ")
            .map(str::to_owned)
            .ok_or_else(|| format!("expected the client's slot, got {l:?}"))
    }

    /// Lets a holding client go, prints the rest of its output and waits for it.
    fn finish(mut self) -> std::io::Result<bool> {
        if let Some(mut input) = self.child.stdin.take() {
            let _ = input.write_all(b"\n");
        }
        let mut line = String::new();
        while self.out.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.trim_end() != "first" {
                print!("{line}");
            }
            line.clear();
        }
        Ok(self.child.wait()?.success())
    }
}

fn run_demo(calls: u64) -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("/shmchan-example-rpc-{}", std::process::id());
    let mut server = Proc::spawn(&["--serve", &name])?;
    server.expect("ready")?;
    // The launcher is a client too, from start to end: it sends the shutdown.
    let control = connect(&name)?;
    let t0 = Instant::now();
    let calls_arg = calls.to_string();
    // Two steady clients that keep their slots to the end, and one killed after its first
    // answer: the table (4 slots) is then full but for the dead client's.
    let mut steady = Vec::new();
    for id in ["1", "2"] {
        let mut p = Proc::spawn(&["--client", &name, id, &calls_arg, "--hold"])?;
        p.slot()?;
        steady.push(p);
    }
    let mut doomed = Proc::spawn(&["--client", &name, "3", "100000000"])?;
    let doomed_slot = doomed.slot()?;
    doomed.expect("first")?;
    doomed.child.kill()?; // SIGKILL, possibly in the middle of a call
    doomed.child.wait()?;
    println!("client 3 (slot {doomed_slot}) killed mid-run");
    let mut late = Proc::spawn(&["--client", &name, "4", &calls_arg])?;
    let late_slot = late.slot()?;
    println!("client 4 connected in slot {late_slot}");
    let mut ok = late_slot == doomed_slot;
    ok &= late.finish()?;
    for p in steady {
        ok &= p.finish()?;
    }
    // Shut the server down through the channel itself.
    control.call(
        Question {
            op: SHUTDOWN,
            ..Question::default()
        },
        TIMEOUT,
    )?;
    drop(control);
    ok &= server.finish()?;
    println!(
        "{} calls by 3 clients (and a few by the killed one) in {:?}",
        3 * calls,
        t0.elapsed()
    );
    if !ok {
        return Err(
            "a client or the server failed, or the killed client's slot was not reused".into(),
        );
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let code = match arg(0) {
        "--serve" => match serve(arg(1)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("server: {e}");
                1
            }
        },
        "--client" => {
            let id = arg(2).parse().unwrap_or(0);
            let calls = arg(3).parse().unwrap_or(1);
            match client(arg(1), id, calls, arg(4) == "--hold") {
                Ok(true) => 0,
                Ok(false) => 2,
                Err(e) => {
                    eprintln!("client {id}: {e}");
                    1
                }
            }
        }
        _ => {
            let calls = if arg(0) == "--calls" {
                arg(1).parse().unwrap_or(2_000)
            } else {
                2_000
            };
            match run_demo(calls) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("rpc example failed: {e}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}
