//! Something for the `shmchan` command to look at: a `Shared<Tick, SeqLock>` value with nested
//! fields and arrays, and a keyed channel with three messages queued, both System V segments.
//! It prints the arguments that designate them, then holds them until its standard input
//! closes (or for `--seconds N`), and removes them when it ends.
//!
//! ```sh
//! cargo run --example inspect_demo          # then, in another terminal:
//! shmchan ls
//! shmchan inspect <the value's key>         # every field, decoded from the stored layout
//! shmchan inspect <the channel's key>       # capacity, indices, holders, queued messages
//! ```
//!
//! `scripts/doc_transcripts.sh` runs it to regenerate the transcripts in `docs/operations.md`.

use std::io::{BufRead, Write};
use std::time::Duration;

use shmchan::{Key, Receiver, Sender, SeqLock, Shared, ShmSafe};

/// A nested struct: decoded as `inner.x`, `inner.y`.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Inner {
    x: i32,
    y: f32,
}

/// The shared value.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
    levels: [u32; 4],
    inner: Inner,
    pair: [Inner; 2],
}

/// The channel's message type.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Msg {
    id: u64,
    value: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<u64>())
        .transpose()?;

    // Keys unlikely to be in use: derived from this process's id.
    let base = 0x5c00_0000 | (std::process::id() as i32 & 0x00ff_fff0);
    let value_key = Key::raw(base);
    let channel_key = Key::raw(base | 1);

    let value = Shared::<Tick, SeqLock>::create(value_key)?;
    for seq in 1..=2 {
        value.store(Tick {
            seq: seq + 5,
            price: 101.25,
            levels: [1, 2, 3, 4],
            inner: Inner { x: -5, y: 0.5 },
            pair: [Inner { x: 10, y: 1.5 }, Inner { x: 20, y: 2.5 }],
        });
    }

    let tx = Sender::<Msg>::create(channel_key, 8)?;
    let rx = Receiver::<Msg>::open(channel_key)?;
    for id in 0..3 {
        tx.send(Msg { id, value: 0.5 })?;
    }

    let mut out = std::io::stdout().lock();
    writeln!(out, "value {:#010x}", value_key.sysv_key().unwrap_or(0))?;
    writeln!(out, "channel {:#010x}", channel_key.sysv_key().unwrap_or(0))?;
    out.flush()?;
    drop(out);

    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        // Until standard input closes.
        None => for _ in std::io::stdin().lock().lines() {},
    }
    drop((tx, rx, value));
    Ok(())
}
