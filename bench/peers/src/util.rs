//! Peers as child processes with a line-based handshake on their stdin/stdout, case names, and
//! the machine description.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Run lengths.
pub struct Config {
    /// Messages per throughput case.
    pub messages: u64,
    /// Round trips per broadcast latency case.
    pub round_trips: u64,
    /// Round trips per loaned-message latency case.
    pub loan_round_trips: u64,
}

/// One measured case.
pub struct Case {
    what: &'static str,
    transport: &'static str,
    param: String,
    unit: &'static str,
}

impl Case {
    pub fn new(what: &'static str, transport: &'static str, subs: usize) -> Case {
        let unit = if what.ends_with("throughput") {
            "msgs/s (per subscriber)"
        } else {
            "ns one way"
        };
        Case {
            what,
            transport,
            param: format!("{subs} sub"),
            unit,
        }
    }

    pub fn sized(what: &'static str, transport: &'static str, size: usize) -> Case {
        Case {
            what,
            transport,
            param: human(size),
            unit: "ns one way",
        }
    }

    pub fn name(&self) -> String {
        format!("{} {} {}", self.what, self.param, self.transport)
    }

    pub fn unit(&self) -> &'static str {
        self.unit
    }
}

pub fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// A child process running one role of this binary.
pub struct Peer {
    child: Child,
    pub out: BufReader<ChildStdout>,
    pub inp: ChildStdin,
}

impl Peer {
    pub fn spawn(role: &str, args: &[String]) -> Peer {
        let exe = std::env::current_exe().expect("own path");
        let mut child = Command::new(exe)
            .arg("child")
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn peer");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let inp = child.stdin.take().expect("stdin");
        Peer { child, out, inp }
    }

    /// Waits for the child's next line, which must be `expect`.
    pub fn expect(&mut self, expect: &str) {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("read from peer");
        assert_eq!(line.trim_end(), expect, "peer said something else");
    }

    pub fn finish(mut self) {
        drop(self.inp);
        let status = self.child.wait().expect("wait for peer");
        assert!(status.success(), "peer failed: {status}");
    }
}

/// In a child: says `line` to the parent.
pub fn tell(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("write to parent");
    out.flush().expect("flush to parent");
}

/// Reads exactly `buf.len()` bytes from the child's stdout.
pub fn read_exact(peer: &mut Peer, buf: &mut [u8]) {
    peer.out.read_exact(buf).expect("read from peer");
}

/// A name unique to this run and case.
pub fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("peers-{}-{tag}-{n}", std::process::id())
}

/// CPU model, core count and kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".into(), |s| s.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

/// The 64-byte message of every broadcast case.
pub type Msg = [u64; 8];

pub fn msg(seq: u64) -> Msg {
    [seq, !seq, seq, !seq, seq, !seq, seq, !seq]
}

pub fn check(m: &Msg, seq: u64) {
    assert_eq!(*m, msg(seq), "message {seq} arrived wrong");
}
