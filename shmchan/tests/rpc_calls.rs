//! rpc across processes: concurrent client processes each get exactly their own answers
//! (anonymous, POSIX and System V channels), types are checked at connect, a reply to a call
//! that timed out is never taken for the next call's answer, and nothing leaks.

mod rpc_support;

use std::time::{Duration, Instant};

use rpc_support::{
    Child, Pipe, Req, Resp, answer, child_main, fork, leftover_shm, posix_name, serial,
};
use shmchan::{Error, Key, rpc};

const CLIENTS: u64 = 4;
const CALLS: u64 = 300;
const LONG: Duration = Duration::from_secs(20);

/// The body of a client process: `CALLS` calls, each answer checked against its request.
/// Exit code 0 if all were right, 2 for a wrong answer, 3 for a failed call.
fn client_calls(client: &rpc::Client<Req, Resp>, id: u64) -> i32 {
    for seq in 0..CALLS {
        let req = Req::new(id, seq);
        match client.call(req, LONG) {
            Ok(r) if r == answer(&req) => {}
            Ok(_) => return 2,
            Err(_) => return 3,
        }
    }
    0
}

/// Serves until every client is gone; returns how many requests it answered.
fn serve(server: &rpc::Server<Req, Resp>) -> u64 {
    let mut n = 0;
    loop {
        match server.recv_timeout(LONG) {
            Ok((req, replier)) => {
                replier.reply(answer(&req)).unwrap();
                n += 1;
            }
            Err(Error::Disconnected) => return n,
            Err(e) => panic!("server: {e}"),
        }
    }
}

fn reap_all(children: &mut [Child]) {
    for (i, c) in children.iter_mut().enumerate() {
        assert_eq!(c.wait(), 0, "client process {i} failed");
    }
}

#[test]
fn concurrent_client_processes_each_get_exactly_their_own_answers() {
    let _g = serial();
    let (server, client) = rpc::channel::<Req, Resp>(8).unwrap();
    let mut children: Vec<Child> = (0..CLIENTS)
        .map(|id| match fork() {
            // Each child calls through its inherited copy: it gets its own slot.
            None => child_main(|| client_calls(&client, id)),
            Some(c) => c,
        })
        .collect();
    drop(client);
    assert_eq!(serve(&server), CLIENTS * CALLS);
    reap_all(&mut children);
    assert_eq!(server.stale_requests(), 0);
    assert_eq!(server.dropped_replies(), 0);
}

#[test]
fn keyed_clients_connect_by_posix_name_and_system_v_key() {
    let _g = serial();
    let name = posix_name("keyed");
    let sysv = Key::raw(0x5C70_0000 | (std::process::id() as i32 & 0xFFFF));
    for key in [Key::name(&name).unwrap(), sysv] {
        let server = rpc::Server::<Req, Resp>::create(key, 4).unwrap();
        let connected = Pipe::new();
        let mut children: Vec<Child> = (0..CLIENTS)
            .map(|id| match fork() {
                None => child_main(|| match rpc::Client::<Req, Resp>::connect(key) {
                    Ok(c) => {
                        connected.send(1);
                        client_calls(&c, id)
                    }
                    Err(_) => 4,
                }),
                Some(c) => c,
            })
            .collect();
        // Once every client has connected, the server's `Disconnected` means "all done" (a
        // keyed server between two clients has none, and says so).
        for _ in 0..CLIENTS {
            connected.wait();
        }
        assert_eq!(serve(&server), CLIENTS * CALLS);
        reap_all(&mut children);
        drop(server);
        assert!(matches!(
            rpc::Client::<Req, Resp>::connect(key),
            Err(Error::NotFound { .. })
        ));
    }
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}

#[test]
fn connect_checks_both_message_types_and_the_kind() {
    let _g = serial();
    let name = posix_name("types");
    let key = Key::name(&name).unwrap();
    let server = rpc::Server::<Req, Resp>::create(key, 4).unwrap();
    assert!(matches!(
        rpc::Client::<Req, Req>::connect(key),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        rpc::Client::<Resp, Resp>::connect(key),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        shmchan::mpmc::Sender::<Req>::open(key),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        rpc::Server::<Req, Resp>::create(key, 4),
        Err(Error::Exists { .. })
    ));
    assert!(rpc::Client::<Req, Resp>::connect(key).is_ok());
    drop(server);
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}

#[test]
fn a_late_reply_to_a_timed_out_call_is_never_the_next_calls_answer() {
    let _g = serial();
    let (server, client) = rpc::channel::<Req, Resp>(8).unwrap();
    let (got_first, late_now, replied) = (Pipe::new(), Pipe::new(), Pipe::new());
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(client);
            // Take call 1 and hold its replier until the client has given up on it.
            let Ok((first, late)) = server.recv_timeout(LONG) else {
                return 10;
            };
            got_first.send(1);
            late_now.wait();
            if late.client_waiting() {
                return 11;
            }
            // The late reply carries call 1's answer with a poisoned check.
            let mut wrong = answer(&first);
            wrong.check ^= 1;
            late.reply(wrong).unwrap();
            replied.send(1);
            // Call 2 gets its right answer.
            let Ok((second, replier)) = server.recv_timeout(LONG) else {
                return 12;
            };
            replier.reply(answer(&second)).unwrap();
            if server.dropped_replies() != 1 {
                return 13;
            }
            0
        })
    };
    drop(server); // the child is the only server
    let first = Req::new(7, 1);
    let t0 = Instant::now();
    match client.call(first, Duration::from_secs(2)) {
        Err(Error::Timeout { holder_pid, .. }) => assert_eq!(holder_pid, Some(child.pid as u32)),
        other => panic!("call 1 must time out, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        got_first.wait_timeout(Duration::from_secs(10)),
        Some(1),
        "the server never received call 1"
    );
    late_now.send(1);
    assert_eq!(replied.wait(), 1);
    let second = Req::new(7, 2);
    assert_eq!(client.call(second, LONG).unwrap(), answer(&second));
    assert_eq!(child.wait(), 0, "server process failed");
}

#[test]
fn a_dropped_server_disconnects_waiting_and_later_calls() {
    let _g = serial();
    let (server, client) = rpc::channel::<Req, Resp>(8).unwrap();
    let got = Pipe::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(client);
            let Ok((_req, replier)) = server.recv_timeout(LONG) else {
                return 10;
            };
            got.send(1);
            // Leave without replying: dropping the server wakes the waiting client.
            drop(replier);
            drop(server);
            0
        })
    };
    drop(server);
    let t0 = Instant::now();
    assert!(matches!(
        client.call(Req::new(1, 1), LONG),
        Err(Error::Disconnected)
    ));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(got.wait(), 1);
    assert_eq!(child.wait(), 0);
    assert!(client.is_disconnected());
    assert!(matches!(
        client.call(Req::new(1, 2), LONG),
        Err(Error::Disconnected)
    ));
}
