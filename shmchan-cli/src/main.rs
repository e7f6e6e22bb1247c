//! The `shmchan` command: list, inspect, watch and remove shared memory segments, decoding the
//! ones shmchan created by the layout stored in their header.
//!
//! ```text
//! shmchan ls                      every System V segment and POSIX object
//! shmchan inspect 0x5400abcd      header and every field of the value (or channel state)
//! shmchan watch /tick -i 200ms    inspect, refreshed in place, changed fields highlighted
//! shmchan rm 123 /tick            wipe and remove (shmchan segments only, unless --force)
//! shmchan rm --stale --dry-run    what a crash left behind
//! shmchan limits                  kernel limits, usage, and how to raise them
//! ```
//! `--json` on any command prints one JSON document instead of a table.

mod args;
mod attach;
mod broadcast;
mod bytes;
mod cmd;
mod probe;
mod procfs;
mod reader;
mod record;
mod rpc;
mod table;
mod ty;
mod value;

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::args::SegmentArg;

/// Inspect and clean up shared memory segments; decodes the ones shmchan created.
#[derive(Debug, Parser)]
#[command(name = "shmchan", version, about, long_about = None)]
struct Cli {
    /// Print one JSON document instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every System V segment (/proc/sysvipc/shm) and POSIX object (/dev/shm).
    Ls,
    /// Decode one segment: header, and every field of its value (or its channel state).
    Inspect {
        /// A shmid (123), a System V key (0x5400abcd) or a POSIX name (/tick).
        segment: SegmentArg,
    },
    /// Like inspect, refreshed in place at an interval, highlighting changed fields.
    Watch {
        /// A shmid (123), a System V key (0x5400abcd) or a POSIX name (/tick).
        segment: SegmentArg,
        /// Time between refreshes: 500ms, 2s, 1m (a bare number is seconds).
        #[arg(short, long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(short = 'n', long)]
        count: Option<u64>,
    },
    /// Wipe and remove segments (IPC_RMID / shm_unlink).
    Rm {
        /// Segments to remove: shmids, 0xKEYs or /names (with --stale: only these, if stale).
        #[arg(required_unless_present = "stale")]
        segments: Vec<SegmentArg>,
        /// Remove the shmchan segments nobody has attached and whose creator is dead (all of
        /// them, or those named).
        #[arg(long)]
        stale: bool,
        /// Also remove segments that are not shmchan's, or are still in use.
        #[arg(long, conflicts_with = "stale")]
        force: bool,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Kernel limits (shmmax, shmmin, shmmni, shmall), usage, /dev/shm space, how to raise them.
    Limits,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad interval `{s}`: expected e.g. 500ms, 2s, 1m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad interval unit in `{s}`: use ms, s or m")),
    };
    if !(0.01..=86_400.0).contains(&secs) {
        return Err(format!("interval `{s}` out of range: 10ms to 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Where and how results are printed.
pub struct Output {
    /// `--json` was given.
    pub json: bool,
    /// stdout is a terminal: colours and in-place refresh are allowed.
    pub tty: bool,
}

impl Output {
    /// Prints text to stdout; a closed pipe (`shmchan ls | head`) ends the program quietly.
    pub fn print(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    }

    /// Prints a JSON document and a newline.
    pub fn print_json(&self, v: &serde_json::Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".to_owned());
        self.print(&format!("{text}\n"));
    }
}

fn main() {
    let cli = Cli::parse();
    let out = Output {
        json: cli.json,
        tty: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let result = match cli.command {
        Command::Ls => cmd::ls::run(&out),
        Command::Inspect { segment } => cmd::inspect::run(&out, &segment),
        Command::Watch {
            segment,
            interval,
            count,
        } => cmd::watch::run(&out, &segment, interval, count),
        Command::Rm {
            segments,
            stale,
            force,
            dry_run,
        } => {
            if stale {
                cmd::rm::run_stale(&out, &segments, dry_run)
            } else {
                cmd::rm::run(&out, &segments, force, dry_run)
            }
        }
        Command::Limits => cmd::limits::run(&out),
    };
    if let Err(msg) = result {
        eprintln!("shmchan: error: {msg}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("3h").is_err());
    }
}
