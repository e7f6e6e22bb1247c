//! Async consumers under tokio, fed by producers in forked processes.
//!
//! ```sh
//! cargo run --example async_consumer --features async
//! ```
//!
//! Three producer processes each publish price ticks on their own spsc channel; the parent
//! runs one tokio task per channel, each awaiting `recv_async`. Two more producers feed an
//! mpmc queue of orders and an spsc control channel, which one task multiplexes with
//! `tokio::select!` (no `WaitSet` needed: a future that loses the race is dropped and takes no
//! message). No task busy-polls: a pending receive is announced in shared memory and woken by
//! shmchan's notifier thread when its producer sends. The program checks that every message
//! arrived exactly once, in order, and exits non-zero otherwise.

use shmchan::{Error, ShmSafe, mpmc};

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
}

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Order {
    id: u64,
    qty: u64,
}

const FEEDS: usize = 3;
const TICKS: u64 = 20_000;
const ORDERS: u64 = 5_000;

/// Forks: `None` in the child, the child's pid in the parent.
fn fork() -> std::io::Result<Option<libc::pid_t>> {
    // SAFETY: this program forks before it starts any thread (the tokio runtime comes after);
    // each child only sends on the channels it inherited, then leaves with `_exit` (`finish`).
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Ends a producer: exit code 0 if it sent everything.
fn finish(r: Result<(), Error>) -> ! {
    // SAFETY: ends the child without running the parent's destructors.
    unsafe { libc::_exit(i32::from(r.is_err())) }
}

fn reap(pid: libc::pid_t) -> Result<(), Box<dyn std::error::Error>> {
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid
        || !libc::WIFEXITED(status)
        || libc::WEXITSTATUS(status) != 0
    {
        return Err(format!("producer {pid} failed (status {status:#x})").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Channels first, then the producers (each keeps the sending end it needs), then the
    // runtime: nothing is forked once threads exist.
    let mut pids = Vec::new();
    let mut feeds = Vec::new();
    for feed in 0..FEEDS {
        let (tx, rx) = shmchan::channel::<Tick>(256)?;
        let Some(pid) = fork()? else {
            // The producer drops the ends it does not use.
            drop((feeds, rx));
            finish((0..TICKS).try_for_each(|seq| {
                tx.send(Tick {
                    seq,
                    price: 100.0 + feed as f64 + seq as f64 / 1000.0,
                })
            }))
        };
        pids.push(pid);
        drop(tx);
        feeds.push(rx);
    }
    let (orders_tx, mut orders) = mpmc::channel::<Order>(128)?;
    let (control_tx, mut control) = shmchan::channel::<u64>(4)?;
    let Some(pid) = fork()? else {
        drop((feeds, orders, control_tx, control));
        finish((0..ORDERS).try_for_each(|id| {
            orders_tx.send(Order {
                id,
                qty: id % 7 + 1,
            })
        }))
    };
    pids.push(pid);
    drop(orders_tx);
    let Some(pid) = fork()? else {
        drop((feeds, orders, control));
        // A few control messages while the orders flow, then the end of the stream.
        finish((1..=3).try_for_each(|code| control_tx.send(code)))
    };
    pids.push(pid);
    drop(control_tx);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let totals = rt.block_on(async {
        // One task per subscriber.
        let subscribers: Vec<_> = feeds
            .into_iter()
            .map(|mut rx| {
                tokio::spawn(async move {
                    let mut next = 0;
                    loop {
                        match rx.recv_async().await {
                            Ok(t) if t.seq == next => next += 1,
                            Ok(t) => return Err(format!("tick {} after {}", t.seq, next)),
                            Err(Error::Disconnected) => return Ok(next),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        // One task multiplexing two receivers with select!.
        let mux = tokio::spawn(async move {
            let (mut ids, mut qty, mut codes) = (Vec::new(), 0, Vec::new());
            let (mut orders_open, mut control_open) = (true, true);
            while orders_open || control_open {
                tokio::select! {
                    r = orders.recv_async(), if orders_open => match r {
                        Ok(o) => { ids.push(o.id); qty += o.qty; }
                        Err(Error::Disconnected) => orders_open = false,
                        Err(e) => return Err(e.to_string()),
                    },
                    r = control.recv_async(), if control_open => match r {
                        Ok(code) => codes.push(code),
                        Err(Error::Disconnected) => control_open = false,
                        Err(e) => return Err(e.to_string()),
                    },
                }
            }
            Ok((ids, qty, codes))
        });
        let mut ticks = Vec::new();
        for s in subscribers {
            ticks.push(s.await.map_err(|e| e.to_string())??);
        }
        let (ids, qty, codes) = mux.await.map_err(|e| e.to_string())??;
        Ok::<_, String>((ticks, ids, qty, codes))
    });
    let (ticks, ids, qty, codes) = totals?;
    for pid in pids {
        reap(pid)?;
    }

    println!("ticks per feed: {ticks:?} (each expected {TICKS}, in order)");
    println!(
        "orders: {} received, total quantity {qty}; control codes {codes:?}",
        ids.len()
    );
    let want_qty: u64 = (0..ORDERS).map(|id| id % 7 + 1).sum();
    let in_order = ids.iter().copied().eq(0..ORDERS);
    if ticks != vec![TICKS; FEEDS] || !in_order || qty != want_qty || codes != [1, 2, 3] {
        return Err("a message was lost, duplicated or reordered".into());
    }
    println!("every message arrived exactly once, in order");
    Ok(())
}
