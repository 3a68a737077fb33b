//! KernelNet over real io_uring and real loopback sockets, with std clients. The transport is
//! driven on the test thread; clients run on their own threads. Every loop is bounded.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use kernel_shim::net::{local_addr, reuseport_listener};
use kernel_shim::ring::{Errno, Ring, RingConfig, key_tag};
use netstack::{ConnAdmission, ConnCaps, ConnEvent, ConnId, KernelNet, NetLimits, SendError, TAG_NET, Transport};

mod support;
use support::Event;

struct Harness {
    ring: Ring,
    net: KernelNet,
    addr: SocketAddr,
    /// Events not consumed yet, in arrival order.
    backlog: VecDeque<Event>,
    /// Every event ever delivered, for assertions about what happened along the way.
    seen: Vec<Event>,
}

impl Harness {
    fn new(limits: NetLimits, config: RingConfig) -> Harness {
        let mut ring = Ring::new(config).unwrap();
        let listener = reuseport_listener("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = local_addr(listener.as_fd()).unwrap();
        let mut net = KernelNet::new(limits);
        net.listen(&mut ring, listener);
        Harness { ring, net, addr, backlog: VecDeque::new(), seen: Vec::new() }
    }

    fn with_limits(limits: NetLimits) -> Harness {
        Harness::new(limits, RingConfig { entries: 256, recv_buffers: 64, recv_buffer_bytes: 4096 })
    }

    /// One turn of the event loop: wait up to 20 ms, handle every completion, queue the events.
    fn turn(&mut self) {
        let mut completions = Vec::new();
        self.ring.wait(Some(Duration::from_millis(20)), &mut completions).unwrap();
        let mut events = Vec::new();
        for completion in completions {
            assert_eq!(key_tag(completion.key), TAG_NET, "only KernelNet submits to this ring");
            self.net.on_completion(&mut self.ring, completion, Instant::now(), &mut |e: ConnEvent<'_>| {
                events.push(Event::from(e))
            });
        }
        self.seen.extend(events.iter().cloned());
        self.backlog.extend(events);
    }

    /// Hands events in order to `handle` until it returns true; fails after `time_max`.
    fn run(&mut self, time_max: Duration, mut handle: impl FnMut(&mut Harness, Event) -> bool) {
        let deadline = Instant::now() + time_max;
        while Instant::now() < deadline {
            while let Some(event) = self.backlog.pop_front() {
                if handle(self, event) {
                    return;
                }
            }
            self.turn();
        }
        panic!("the transport did not reach the expected state within {time_max:?}");
    }

    /// The first event matching `wanted`, turning until it comes; other events stay queued.
    fn expect(&mut self, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(index) = self.backlog.iter().position(&wanted) {
                return self.backlog.remove(index).unwrap();
            }
            assert!(Instant::now() < deadline, "no expected event within 10 s; seen: {:?}", self.seen);
            self.turn();
        }
    }

    /// Turns for `time` whatever happens; returns what arrived meanwhile (and consumes it).
    fn idle(&mut self, time: Duration) -> Vec<Event> {
        let deadline = Instant::now() + time;
        while Instant::now() < deadline {
            self.turn();
        }
        self.backlog.drain(..).collect()
    }

    fn accept_one(&mut self) -> ConnId {
        match self.expect(|e| matches!(e, Event::Accepted(..))) {
            Event::Accepted(conn, _) => conn,
            _ => unreachable!(),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed * 13) % 251) as u8).collect()
}

#[test]
fn echo_200_concurrent_clients() {
    const THREADS: usize = 4;
    const CLIENTS_PER_THREAD: usize = 50;
    const CLIENTS: usize = THREADS * CLIENTS_PER_THREAD;
    // A small pool (64 x 4 KiB) for 200 connections, so multishot recvs run dry and re-arm.
    let mut h = Harness::with_limits(NetLimits::default());
    let addr = h.addr;
    let all_connected = Arc::new(Barrier::new(THREADS));
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let all_connected = Arc::clone(&all_connected);
            std::thread::spawn(move || {
                let mut streams: Vec<TcpStream> = (0..CLIENTS_PER_THREAD).map(|_| connect(addr)).collect();
                // Hold every connection open until all 200 exist.
                all_connected.wait();
                for (i, stream) in streams.iter_mut().enumerate() {
                    stream.write_all(&pattern(10_000, t * 1000 + i)).unwrap();
                }
                for (i, stream) in streams.iter_mut().enumerate() {
                    let mut echoed = vec![0u8; 10_000];
                    stream.read_exact(&mut echoed).unwrap();
                    assert!(echoed == pattern(10_000, t * 1000 + i), "client {t}/{i} got other bytes back");
                    stream.shutdown(Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    stream.read_to_end(&mut rest).unwrap();
                    assert!(rest.is_empty());
                }
            })
        })
        .collect();

    let (mut accepted, mut closed, mut open_max) = (0, 0, 0);
    h.run(Duration::from_secs(60), |h, event| {
        match event {
            Event::Accepted(..) => accepted += 1,
            Event::Received(conn, bytes) => h.net.send(&mut h.ring, conn, &bytes).unwrap(),
            Event::PeerClosed(conn) => h.net.close(&mut h.ring, conn),
            Event::Closed(_) => closed += 1,
            Event::SendDone(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        open_max = open_max.max(h.net.open_conns());
        closed == CLIENTS
    });
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(accepted, CLIENTS);
    assert_eq!(open_max, CLIENTS, "all clients were connected at once");
    assert_eq!(h.net.open_conns(), 0);
    assert_eq!(h.ring.buffers_lent(), 0, "every provided buffer went back to the kernel");
}

#[test]
fn echo_survives_an_exhausted_buffer_pool() {
    // Two 64-byte buffers for a 20 kB message: the multishot recv ends with ENOBUFS again and
    // again, and KernelNet re-arms it each time without losing a byte.
    let ring = RingConfig { entries: 64, recv_buffers: 2, recv_buffer_bytes: 64 };
    let mut h = Harness::new(NetLimits::default(), ring);
    let mut client = connect(h.addr);
    let message = pattern(20_000, 3);
    let expected = message.clone();
    let writer = std::thread::spawn(move || {
        client.write_all(&message).unwrap();
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).unwrap();
        echoed
    });
    let mut received_bytes = 0;
    h.run(Duration::from_secs(20), |h, event| {
        if let Event::Received(conn, bytes) = event {
            received_bytes += bytes.len();
            h.net.send(&mut h.ring, conn, &bytes).unwrap();
        }
        received_bytes == expected.len()
    });
    let received_events = h.seen.iter().filter(|e| matches!(e, Event::Received(..))).count();
    assert!(received_events >= expected.len() / 64, "every event carried at most one 64-byte buffer");
    h.run(Duration::from_secs(10), |_, event| matches!(event, Event::SendDone(_)));
    assert!(writer.join().unwrap() == expected);
    assert_eq!(h.ring.buffers_lent(), 0);
}

#[test]
fn a_client_that_closes_mid_stream_is_torn_down() {
    let limits = NetLimits { send_queue_bytes_max: 16 << 20, ..NetLimits::default() };
    let mut h = Harness::with_limits(limits);
    let mut client = connect(h.addr);
    let conn = h.accept_one();
    // A response far larger than the socket buffers; the client reads a little and leaves.
    h.net.send_owned(&mut h.ring, conn, pattern(8 << 20, 1)).unwrap();
    let reader = std::thread::spawn(move || {
        let mut some = vec![0u8; 64 * 1024];
        client.read_exact(&mut some).unwrap();
        drop(client); // unread data: the kernel answers with a reset
    });
    h.expect(|e| matches!(e, Event::Closed(c) if *c == conn));
    reader.join().unwrap();
    let failed = h.seen.iter().find(|e| matches!(e, Event::Failed(..) | Event::PeerClosed(..)));
    assert!(failed.is_some(), "the transport noticed the departure: {:?}", h.seen);
    if let Some(Event::Failed(_, error)) = failed {
        assert!([Errno::BROKEN_PIPE, Errno::CONNECTION_RESET].contains(error), "{error:?}");
    }
    assert_eq!(h.net.open_conns(), 0);
    assert_eq!(h.net.send(&mut h.ring, conn, b"late"), Err(SendError::Closed), "the id is stale");
    assert_eq!(h.ring.buffers_lent(), 0);
}

#[test]
fn a_client_that_resets_before_the_response_is_torn_down() {
    let mut h = Harness::with_limits(NetLimits::default());
    let client = connect(h.addr);
    let conn = h.accept_one();
    (&client).write_all(b"GET / HTTP/1.1\r\n").unwrap();
    h.expect(|e| matches!(e, Event::Received(c, _) if *c == conn));
    // SO_LINGER {on, 0}: close sends a reset instead of a FIN.
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `linger` is a live struct of the size passed, for a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&client),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(client);
    let failed = h.expect(|e| matches!(e, Event::Failed(..) | Event::PeerClosed(..)));
    if let Event::PeerClosed(conn) = failed {
        h.net.close(&mut h.ring, conn);
    }
    h.expect(|e| matches!(e, Event::Closed(c) if *c == conn));
    assert_eq!(h.net.open_conns(), 0);
}

#[test]
fn graceful_close_flushes_queued_output_first() {
    const RESPONSE_BYTES: usize = 4 << 20;
    let limits = NetLimits { send_queue_bytes_max: 8 << 20, ..NetLimits::default() };
    let mut h = Harness::with_limits(limits);
    let client = connect(h.addr);
    let conn = h.accept_one();
    let response = pattern(RESPONSE_BYTES, 2);
    // Queue in pieces (coalesced behind the first in-flight send), then close at once.
    for piece in response.chunks(64 * 1024) {
        h.net.send(&mut h.ring, conn, piece).unwrap();
    }
    assert_eq!(h.net.queued_bytes(conn), RESPONSE_BYTES);
    h.net.close(&mut h.ring, conn);
    assert_eq!(h.net.send(&mut h.ring, conn, b"x"), Err(SendError::Closed), "closing refuses more output");
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50)); // let the close meet a full socket
        let mut got = Vec::new();
        (&client).read_to_end(&mut got).unwrap(); // to a FIN: a reset would be an error
        got
    });
    h.expect(|e| matches!(e, Event::Closed(c) if *c == conn));
    assert!(h.seen.iter().all(|e| !matches!(e, Event::Failed(..))), "{:?}", h.seen);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), RESPONSE_BYTES);
    assert!(got == response);
    assert_eq!(h.net.open_conns(), 0);
}

#[test]
fn graceful_close_gives_up_after_the_close_timeout() {
    let limits = NetLimits { close_timeout_ms: 100, ..NetLimits::default() };
    let mut h = Harness::with_limits(limits);
    let client = connect(h.addr);
    let conn = h.accept_one();
    h.net.close(&mut h.ring, conn);
    // The client never shuts its side down; the linger ends with the timeout.
    let start = Instant::now();
    h.expect(|e| matches!(e, Event::Closed(c) if *c == conn));
    assert!(start.elapsed() >= Duration::from_millis(100));
    let mut rest = Vec::new();
    (&client).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn outbound_connect_to_a_std_listener() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = server.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut ping = [0u8; 4];
        stream.read_exact(&mut ping).unwrap();
        stream.write_all(b"pong").unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        (ping, rest)
    });
    let mut h = Harness::with_limits(NetLimits::default());
    let conn = h.net.connect(&mut h.ring, server_addr).unwrap();
    // Bytes sent before the connection is up wait for it.
    h.net.send(&mut h.ring, conn, b"ping").unwrap();
    h.expect(|e| *e == Event::Connected(conn));
    let mut got = Vec::new();
    h.run(Duration::from_secs(10), |_, event| {
        if let Event::Received(c, bytes) = event {
            assert_eq!(c, conn);
            got.extend_from_slice(&bytes);
        }
        got.len() >= 4
    });
    assert_eq!(got, b"pong");
    h.net.close(&mut h.ring, conn);
    h.expect(|e| *e == Event::Closed(conn));
    let (ping, rest) = peer.join().unwrap();
    assert_eq!(&ping, b"ping");
    assert!(rest.is_empty());
}

#[test]
fn outbound_connect_to_a_closed_port_fails_then_closes() {
    let closed_addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut h = Harness::with_limits(NetLimits::default());
    let conn = h.net.connect(&mut h.ring, closed_addr).unwrap();
    let failed = h.expect(|e| matches!(e, Event::ConnectFailed(..)));
    assert_eq!(failed, Event::ConnectFailed(conn, Errno::CONNECTION_REFUSED));
    h.expect(|e| *e == Event::Closed(conn));
    assert_eq!(h.net.open_conns(), 0);
}

#[test]
fn stop_accepting_refuses_new_connections_while_open_ones_finish() {
    let mut h = Harness::with_limits(NetLimits::default());
    let mut client = connect(h.addr);
    let conn = h.accept_one();

    h.net.stop_accepting(&mut h.ring);
    h.expect(|e| *e == Event::ListenerClosed);
    assert!(!h.net.is_listening());
    let refused = TcpStream::connect(h.addr).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    // The open connection still works.
    client.write_all(b"still here").unwrap();
    let received = h.expect(|e| matches!(e, Event::Received(..)));
    assert_eq!(received, Event::Received(conn, b"still here".to_vec()));
    h.net.send(&mut h.ring, conn, b"yes").unwrap();
    h.expect(|e| *e == Event::SendDone(conn));
    let mut reply = [0u8; 3];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"yes");
    drop(client);
    h.expect(|e| *e == Event::PeerClosed(conn));
    h.net.close(&mut h.ring, conn);
    h.expect(|e| *e == Event::Closed(conn));
    assert_eq!(h.net.open_conns(), 0);
}

#[test]
fn connections_beyond_conns_max_are_closed_at_once() {
    let mut h = Harness::with_limits(NetLimits { conns_max: 2, ..NetLimits::default() });
    let kept: Vec<TcpStream> = (0..2).map(|_| connect(h.addr)).collect();
    h.accept_one();
    h.accept_one();
    let mut extra = connect(h.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.net.refused_conns() == 0 {
        assert!(Instant::now() < deadline, "the third connection was not refused");
        h.turn();
        assert!(h.backlog.is_empty(), "a refused connection makes no event: {:?}", h.backlog);
    }
    assert_eq!(h.net.open_conns(), 2);
    // The CLOSE reaches the kernel with the next wait.
    assert!(h.idle(Duration::from_millis(40)).is_empty());
    let mut byte = [0u8; 1];
    match extra.read(&mut byte) {
        Ok(0) => {}
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
        Ok(_) => panic!("a refused connection sent bytes"),
    }
    drop(kept);
}

/// Turns `h` until `refused` says a connection was refused; a refused connection makes no
/// event. Then checks that `extra` was closed without a byte.
fn expect_refused(h: &mut Harness, mut extra: TcpStream, refused: impl Fn(&KernelNet) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refused(&h.net) {
        assert!(Instant::now() < deadline, "the connection was not refused");
        h.turn();
        assert!(h.backlog.is_empty(), "a refused connection makes no event: {:?}", h.backlog);
    }
    assert!(h.idle(Duration::from_millis(40)).is_empty());
    let mut byte = [0u8; 1];
    match extra.read(&mut byte) {
        Ok(0) => {}
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
        Ok(_) => panic!("a refused connection sent bytes"),
    }
}

#[test]
fn a_client_beyond_its_cap_is_closed_at_once_and_gets_its_place_back() {
    let mut h = Harness::with_limits(NetLimits::default());
    let admission = ConnAdmission::new(ConnCaps { per_client_max: 2, total_max: 100 });
    h.net.set_admission(admission.clone());
    let first = connect(h.addr);
    let _second = connect(h.addr);
    let first_conn = h.accept_one();
    h.accept_one();
    assert_eq!(admission.client_conns("127.0.0.1".parse().unwrap()), 2);
    let extra = connect(h.addr);
    expect_refused(&mut h, extra, |net| net.refused().per_client == 1);
    assert_eq!(h.net.open_conns(), 2);
    // When one closes, its place is free again.
    drop(first);
    h.expect(|e| *e == Event::PeerClosed(first_conn));
    h.net.close(&mut h.ring, first_conn);
    h.expect(|e| *e == Event::Closed(first_conn));
    assert_eq!(admission.client_conns("127.0.0.1".parse().unwrap()), 1);
    let _third = connect(h.addr);
    h.accept_one();
    assert_eq!(h.net.refused().per_client, 1);
}

#[test]
fn the_total_cap_is_shared_by_every_core() {
    // Two transports (two cores) under one admission: together they hold at most three.
    let admission = ConnAdmission::new(ConnCaps { per_client_max: 100, total_max: 3 });
    let mut a = Harness::with_limits(NetLimits::default());
    let mut b = Harness::with_limits(NetLimits::default());
    a.net.set_admission(admission.clone());
    b.net.set_admission(admission.clone());
    let _held: Vec<TcpStream> = vec![connect(a.addr), connect(a.addr), connect(b.addr)];
    a.accept_one();
    a.accept_one();
    b.accept_one();
    let extra = connect(b.addr);
    expect_refused(&mut b, extra, |net| net.refused().total == 1);
    assert_eq!(admission.open_conns(), 3);
    assert_eq!((a.net.refused().total, b.net.refused().per_client), (0, 0));
}

#[test]
fn paused_connections_are_not_read_until_resumed() {
    let mut h = Harness::with_limits(NetLimits::default());
    let mut client = connect(h.addr);
    let conn = h.accept_one();
    h.net.pause_recv(&mut h.ring, conn);
    assert!(h.idle(Duration::from_millis(50)).is_empty());
    client.write_all(b"wait for it").unwrap();
    assert!(h.idle(Duration::from_millis(200)).is_empty(), "a paused connection delivered bytes");
    h.net.resume_recv(&mut h.ring, conn);
    let received = h.expect(|e| matches!(e, Event::Received(..)));
    assert_eq!(received, Event::Received(conn, b"wait for it".to_vec()));
    h.net.abort(&mut h.ring, conn);
    h.expect(|e| *e == Event::Closed(conn));
}

#[test]
fn the_send_queue_is_bounded() {
    let mut h = Harness::with_limits(NetLimits { send_queue_bytes_max: 1000, ..NetLimits::default() });
    let _client = connect(h.addr);
    let conn = h.accept_one();
    h.net.send(&mut h.ring, conn, &[1; 600]).unwrap();
    assert_eq!(
        h.net.send(&mut h.ring, conn, &[2; 600]),
        Err(SendError::QueueFull { queued_bytes: 600, queued_bytes_max: 1000 })
    );
    h.expect(|e| *e == Event::SendDone(conn));
    h.net.send(&mut h.ring, conn, &[2; 600]).unwrap();
    h.expect(|e| *e == Event::SendDone(conn));
    // An empty queue takes one buffer larger than the bound (a single large response).
    h.net.send(&mut h.ring, conn, &[3; 5000]).unwrap();
    h.net.abort(&mut h.ring, conn);
    h.expect(|e| *e == Event::Closed(conn));
    assert_eq!(h.net.queued_bytes(conn), 0);
}

#[test]
fn two_listeners_report_their_ports_and_close_together() {
    let mut ring = Ring::new(RingConfig { entries: 256, recv_buffers: 64, recv_buffer_bytes: 4096 }).unwrap();
    let first = reuseport_listener("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let second = reuseport_listener("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let (first_addr, second_addr) = (local_addr(first.as_fd()).unwrap(), local_addr(second.as_fd()).unwrap());
    let mut net = KernelNet::new(NetLimits::default());
    net.listen(&mut ring, first);
    net.listen(&mut ring, second);
    let mut accepted_ports = Vec::new();
    let mut listener_closed = 0;
    let turn = |ring: &mut Ring, net: &mut KernelNet, ports: &mut Vec<u16>, closed: &mut usize| {
        let mut completions = Vec::new();
        ring.wait(Some(Duration::from_millis(20)), &mut completions).unwrap();
        for completion in completions {
            net.on_completion(ring, completion, Instant::now(), &mut |event: ConnEvent<'_>| match event {
                ConnEvent::Accepted { local_port, .. } => ports.push(local_port),
                ConnEvent::ListenerClosed => *closed += 1,
                _ => {}
            });
        }
    };
    let _a = connect(second_addr);
    let _b = connect(first_addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted_ports.len() < 2 {
        assert!(Instant::now() < deadline, "both connections were not accepted within 10 s");
        turn(&mut ring, &mut net, &mut accepted_ports, &mut listener_closed);
    }
    accepted_ports.sort_unstable();
    let mut expected = vec![first_addr.port(), second_addr.port()];
    expected.sort_unstable();
    assert_eq!(accepted_ports, expected, "each connection is reported with the port that accepted it");

    net.stop_accepting(&mut ring);
    let deadline = Instant::now() + Duration::from_secs(10);
    while net.is_listening() || listener_closed == 0 {
        assert!(Instant::now() < deadline, "the listeners did not close within 10 s");
        turn(&mut ring, &mut net, &mut accepted_ports, &mut listener_closed);
    }
    for _ in 0..5 {
        turn(&mut ring, &mut net, &mut accepted_ports, &mut listener_closed);
    }
    assert_eq!(listener_closed, 1, "ListenerClosed is reported once, for every listener");
    for addr in [first_addr, second_addr] {
        assert_eq!(TcpStream::connect(addr).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    }
}
