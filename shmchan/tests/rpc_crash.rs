//! rpc crash tests: a SIGKILLed client's slot is reclaimed and reused, a SIGKILLed server gives
//! every waiting client `Disconnected` in bounded time, a stopped server is waited for (a
//! timeout names it), never declared dead. Real processes, pipe handshakes, no sleeps.

mod rpc_support;

use std::time::{Duration, Instant};

use rpc_support::{
    Child, Pipe, RemoveOnDrop, Req, Resp, answer, child_main, fork, leftover_shm, park, posix_name,
    serial,
};
use shmchan::format::liveness::Liveness;
use shmchan::format::rpc::RpcState;
use shmchan::{Error, Key, Segment, rpc};

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_killed_clients_slot_is_reclaimed_and_reused_by_a_new_client() {
    let _g = serial();
    let name = posix_name("reclaim");
    let key = Key::name(&name).unwrap();
    let server = rpc::Server::<Req, Resp>::options()
        .capacity(4)
        .max_clients(1)
        .create(key)
        .unwrap();
    let Some(mut child) = fork() else {
        child_main(|| {
            let Ok(c) = rpc::Client::<Req, Resp>::connect(key) else {
                return 10;
            };
            // Blocks: the server takes the request but the process is killed before the reply.
            let _ = c.call(Req::new(1, 1), LONG);
            11
        })
    };
    let (req, replier) = server.recv_timeout(LONG).expect("the child's request");
    assert_eq!(req, Req::new(1, 1));
    // The only slot is taken by a live client.
    assert!(matches!(
        rpc::Client::<Req, Resp>::connect(key),
        Err(Error::TooManyHolders {
            side: "client",
            max: 1
        })
    ));
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    // The decoder shows the dead client with its pending call.
    let seg = Segment::open_any(key, true).unwrap();
    let st = RpcState::read(&seg, seg.header()).unwrap();
    assert_eq!(st.clients.len(), 1);
    assert_eq!(st.clients[0].holder.pid, child.pid as u32);
    assert_eq!(st.clients[0].holder.liveness(), Liveness::Dead);
    assert!(st.clients[0].pending_call().is_some());
    drop(seg);
    // A reply to the dead client goes nowhere; its slot is taken by the next client.
    let mut stale = answer(&req);
    stale.check ^= 0xdead;
    replier.reply(stale).unwrap();
    let client = rpc::Client::<Req, Resp>::connect(key).expect("the dead client's slot is reused");
    assert_eq!(client.slot().unwrap(), 0);
    let worker = std::thread::spawn(move || {
        let (req, replier) = server.recv_timeout(LONG)?;
        replier.reply(answer(&req))?;
        Ok::<_, Error>(server)
    });
    let mine = Req::new(2, 1);
    assert_eq!(client.call(mine, LONG).unwrap(), answer(&mine));
    let server = worker.join().unwrap().unwrap();
    assert_eq!(server.client_count(), 1);
    drop((client, server));
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}

#[test]
fn a_killed_server_disconnects_every_waiting_client_in_bounded_time() {
    let _g = serial();
    const WAITING: usize = 3;
    let (server, client) = rpc::channel::<Req, Resp>(8).unwrap();
    let got = Pipe::new();
    let Some(mut server_proc) = fork() else {
        child_main(|| {
            drop(client);
            // Take every request and never answer.
            let mut held = Vec::new();
            for _ in 0..WAITING {
                let Ok(r) = server.recv_timeout(LONG) else {
                    return 10;
                };
                held.push(r);
                got.send(1);
            }
            park()
        })
    };
    // Forked from here on, clients hold no server copy.
    drop(server);
    let mut clients: Vec<Child> = (0..WAITING as u64)
        .map(|id| match fork() {
            None => child_main(|| match client.call(Req::new(id, 0), LONG) {
                Err(Error::Disconnected) => 0,
                Err(_) => 2,
                Ok(_) => 3,
            }),
            Some(c) => c,
        })
        .collect();
    for _ in 0..WAITING {
        got.wait();
    }
    let t0 = Instant::now();
    assert_eq!(server_proc.kill(), 128 + libc::SIGKILL);
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.wait(), 0, "client {i} did not get Disconnected");
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed < rpc::LIVENESS_INTERVAL + Duration::from_secs(2),
        "clients noticed the dead server after {elapsed:?}"
    );
    assert!(matches!(
        client.call(Req::new(9, 9), LONG),
        Err(Error::Disconnected)
    ));
}

#[test]
fn a_stopped_server_is_waited_for_and_named_never_declared_dead() {
    let _g = serial();
    let (server, client) = rpc::channel::<Req, Resp>(8).unwrap();
    let ready = Pipe::new();
    let Some(mut server_proc) = fork() else {
        child_main(|| {
            drop(client);
            ready.send(1);
            loop {
                match server.recv_timeout(LONG) {
                    Ok((req, replier)) => replier.reply(answer(&req)).unwrap(),
                    Err(Error::Disconnected) => return 0,
                    Err(_) => return 10,
                }
            }
        })
    };
    drop(server);
    ready.wait();
    server_proc.signal(libc::SIGSTOP);
    server_proc.wait_stopped();
    match client.call(Req::new(1, 1), rpc::LIVENESS_INTERVAL * 10) {
        Err(Error::Timeout { holder_pid, .. }) => {
            assert_eq!(holder_pid, Some(server_proc.pid as u32))
        }
        other => panic!("expected a timeout naming the stopped server, got {other:?}"),
    }
    assert!(!client.is_disconnected());
    server_proc.signal(libc::SIGCONT);
    let req = Req::new(1, 2);
    assert_eq!(client.call(req, LONG).unwrap(), answer(&req));
    drop(client);
    assert_eq!(server_proc.wait(), 0);
}

#[test]
fn a_client_killed_while_queueing_its_request_is_recovered_and_its_slot_reused() {
    let _g = serial();
    let name = posix_name("claim");
    let key = Key::name(&name).unwrap();
    let server = rpc::Server::<Req, Resp>::options()
        .capacity(4)
        .max_clients(1)
        .create(key)
        .unwrap();
    let claimed = Pipe::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            let Ok(c) = rpc::Client::<Req, Resp>::connect(key) else {
                return 10;
            };
            // Claims a queue position, then stops before writing and publishing the token.
            let _ = c.__call_with_hook(Req::new(1, 1), LONG, || {
                claimed.send(1);
                park()
            });
            11
        })
    };
    assert_eq!(claimed.wait(), 1);
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    // The dead client still names the position it claimed: its slot is not free yet.
    assert!(matches!(
        rpc::Client::<Req, Resp>::connect(key),
        Err(Error::TooManyHolders { side: "client", .. })
    ));
    // The server, waiting on that position, skips it once it has waited LIVENESS_INTERVAL;
    // then the queue is empty and its only client dead.
    let t0 = Instant::now();
    assert!(matches!(
        server.recv_timeout(LONG),
        Err(Error::Disconnected)
    ));
    assert_eq!(server.recovered(), 1, "after {:?}", t0.elapsed());
    let client = rpc::Client::<Req, Resp>::connect(key).expect("the slot is free again");
    let worker = std::thread::spawn(move || {
        let (req, replier) = server.recv_timeout(LONG)?;
        replier.reply(answer(&req))?;
        Ok::<_, Error>(server)
    });
    let mine = Req::new(2, 1);
    assert_eq!(client.call(mine, LONG).unwrap(), answer(&mine));
    drop((client, worker.join().unwrap().unwrap()));
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}

#[test]
fn a_restarted_server_takes_over_and_connected_clients_call_it() {
    let _g = serial();
    let name = posix_name("restart");
    let key = Key::name(&name).unwrap();
    // The killed creator cannot remove its segment: this does, even if an assertion fails.
    let remove = RemoveOnDrop(key);
    let ready = Pipe::new();
    // The first server creates the channel by name and is killed; the second opens it.
    let serve = |create: bool| -> i32 {
        let server = if create {
            rpc::Server::<Req, Resp>::create(key, 8)
        } else {
            rpc::Server::<Req, Resp>::open(key)
        };
        let Ok(server) = server else {
            return 10;
        };
        ready.send(1);
        loop {
            match server.recv_timeout(LONG) {
                Ok((req, replier)) => replier.reply(answer(&req)).unwrap(),
                Err(Error::Disconnected) => return 0,
                Err(_) => return 11,
            }
        }
    };
    let Some(mut first) = fork() else {
        child_main(|| serve(true))
    };
    ready.wait();
    let mut client = Some(rpc::Client::<Req, Resp>::connect(key).unwrap());
    let c = client.as_ref().unwrap();
    let req = Req::new(1, 1);
    assert_eq!(c.call(req, LONG).unwrap(), answer(&req));
    assert_eq!(first.kill(), 128 + libc::SIGKILL);
    assert!(matches!(
        c.call(Req::new(1, 2), LONG),
        Err(Error::Disconnected)
    ));
    let Some(mut second) = fork() else {
        child_main(|| {
            // The inherited client copy would count as a client of this server's own.
            drop(client.take());
            serve(false)
        })
    };
    ready.wait();
    let c = client.as_ref().unwrap();
    let req = Req::new(1, 3);
    assert_eq!(c.call(req, LONG).unwrap(), answer(&req));
    assert!(!c.is_disconnected());
    drop(client);
    assert_eq!(second.wait(), 0);
    drop(remove);
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}

#[test]
fn clients_killed_under_load_never_cross_answers_and_their_slots_are_reused() {
    let _g = serial();
    const LIVE: usize = 3;
    const GENERATIONS: u64 = 12;
    let name = posix_name("churn");
    let key = Key::name(&name).unwrap();
    // The server process creates the segment; if the test fails it is killed, and this removes
    // the segment.
    let _remove = RemoveOnDrop(key);
    let ready = Pipe::new();
    let Some(mut server_proc) = fork() else {
        child_main(|| {
            let Ok(server) = rpc::Server::<Req, Resp>::options()
                .capacity(4)
                .max_clients(LIVE + 1)
                .create(key)
            else {
                return 10;
            };
            ready.send(1);
            loop {
                match server.recv_timeout(LONG) {
                    Ok((req, replier)) => replier.reply(answer(&req)).unwrap(),
                    // The test's control client leaves last.
                    Err(Error::Disconnected) => return 0,
                    Err(_) => return 11,
                }
            }
        })
    };
    ready.wait();
    // Held to the end, so the server only sees "no clients" when the test is done. With it and
    // LIVE clients the table is full: every new client must take a killed one's slot.
    let mut control = Some(rpc::Client::<Req, Resp>::connect(key).unwrap());
    let spawn = |id: u64, control: &mut Option<rpc::Client<Req, Resp>>, progress: &Pipe| {
        match fork() {
            None => child_main(|| {
                drop(control.take());
                let t0 = Instant::now();
                let c = loop {
                    match rpc::Client::<Req, Resp>::connect(key) {
                        Ok(c) => break c,
                        // A killed client's slot frees once the server skipped the queue
                        // position it may have been claiming.
                        Err(Error::TooManyHolders { .. }) if t0.elapsed() < LONG => {
                            std::thread::yield_now()
                        }
                        Err(_) => return 20,
                    }
                };
                for seq in 0.. {
                    let req = Req::new(id, seq);
                    match c.call(req, LONG) {
                        Ok(r) if r == answer(&req) => {}
                        Ok(_) => {
                            progress.send(b'X');
                            return 2;
                        }
                        Err(_) => {
                            progress.send(b'E');
                            return 3;
                        }
                    }
                    if seq == 50 {
                        progress.send(b'o');
                    }
                }
                0
            }),
            Some(child) => child,
        }
    };
    let mut live: Vec<(Child, Pipe)> = Vec::new();
    for id in 0..LIVE as u64 {
        let p = Pipe::new();
        live.push((spawn(id, &mut control, &p), p));
    }
    for generation in 0..GENERATIONS {
        // Kill the oldest once it has made progress; start a new one in its place.
        let (mut child, progress) = live.remove(0);
        assert_eq!(
            progress.wait(),
            b'o',
            "generation {generation}: a client saw a wrong answer or an error"
        );
        assert_eq!(child.kill(), 128 + libc::SIGKILL);
        let p = Pipe::new();
        live.push((spawn(LIVE as u64 + generation, &mut control, &p), p));
    }
    for (mut child, progress) in live {
        assert_eq!(progress.wait(), b'o');
        child.kill();
    }
    let c = control.as_ref().unwrap();
    let req = Req::new(999, 0);
    assert_eq!(c.call(req, LONG).unwrap(), answer(&req));
    drop(control);
    assert_eq!(server_proc.wait(), 0, "server process failed");
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}
