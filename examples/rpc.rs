//! Request-response between separate processes, found by name: one server process, several
//! client processes calling it at once, one client SIGKILLed mid-run whose slot a later client
//! takes over (the server allows only 3 clients at a time), and a clean shutdown. Every
//! process is this program re-executed with a role; each client checks that every answer is
//! the answer to its own question. Exits non-zero if anything went wrong.
//!
//! ```sh
//! cargo run --example rpc                  # 2 steady clients x 2000 calls
//! cargo run --example rpc -- --calls 50000
//! ```

use std::io::{BufRead, BufReader};
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
const MAX_CLIENTS: usize = 3;
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
            // Between clients a keyed server has none: keep waiting for the next one.
            Err(Error::Disconnected) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
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

/// A client process: `calls` questions, each answer checked; prints "first" after the first.
fn client(name: &str, id: u32, calls: u64) -> shmchan::Result<bool> {
    let c = connect(name)?;
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
    println!("client {id}: {calls} calls answered, slot {}", c.slot()?);
    Ok(ok)
}

fn spawn(args: &[&str]) -> std::io::Result<(Child, BufReader<ChildStdout>)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child
        .stdout
        .take()
        .map(BufReader::new)
        .ok_or_else(|| std::io::Error::other("the child's stdout was not captured"))?;
    Ok((child, out))
}

/// Reads lines from a child until one equals `want`.
fn expect_line(out: &mut BufReader<ChildStdout>, want: &str) -> Result<(), String> {
    let mut line = String::new();
    loop {
        line.clear();
        match out.read_line(&mut line) {
            Ok(0) => return Err(format!("the child exited before saying {want:?}")),
            Ok(_) if line.trim_end() == want => return Ok(()),
            Ok(_) => print!("{line}"),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn drain(out: &mut BufReader<ChildStdout>) {
    let mut line = String::new();
    while out.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.trim_end() != "first" {
            print!("{line}");
        }
        line.clear();
    }
}

fn run_demo(calls: u64) -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("/shmchan-example-rpc-{}", std::process::id());
    let (mut server, mut server_out) = spawn(&["--serve", &name])?;
    expect_line(&mut server_out, "ready")?;
    let t0 = Instant::now();
    let calls_arg = calls.to_string();
    // Two steady clients and one that is killed after its first answer.
    let mut steady = Vec::new();
    for id in ["1", "2"] {
        steady.push(spawn(&["--client", &name, id, &calls_arg])?);
    }
    let (mut doomed, mut doomed_out) = spawn(&["--client", &name, "3", "100000000"])?;
    expect_line(&mut doomed_out, "first")?;
    doomed.kill()?; // SIGKILL, possibly in the middle of a call
    doomed.wait()?;
    println!("client 3 killed mid-run");
    // The table is full (3 slots) until the dead client's slot is reclaimed.
    steady.push(spawn(&["--client", &name, "4", &calls_arg])?);
    let mut failed = Vec::new();
    for (i, (child, out)) in steady.iter_mut().enumerate() {
        drain(out);
        if !child.wait()?.success() {
            failed.push(i);
        }
    }
    // Shut the server down through the channel itself.
    let c = connect(&name)?;
    c.call(
        Question {
            op: SHUTDOWN,
            ..Question::default()
        },
        TIMEOUT,
    )?;
    drop(c);
    drain(&mut server_out);
    let server_ok = server.wait()?.success();
    println!(
        "{} calls by 3 clients (and a few by the killed one) in {:?}",
        3 * calls,
        t0.elapsed()
    );
    if !failed.is_empty() || !server_ok {
        return Err(format!("clients {failed:?} failed, server ok: {server_ok}").into());
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
            match client(arg(1), id, calls) {
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
