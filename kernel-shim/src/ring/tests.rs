//! Tests on a real io_uring and real loopback sockets. Every wait is bounded.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::EventFd;
use crate::net::{Family, local_addr, reuseport_listener, set_send_buffer_bytes, tcp_socket};

/// How long a test waits for any one completion before it fails.
const COMPLETION_WAIT_MS: u64 = 5000;

struct Driver {
    ring: Ring,
    queue: VecDeque<Completion>,
}

impl Driver {
    fn new(config: RingConfig) -> Driver {
        Driver { ring: Ring::new(config).unwrap(), queue: VecDeque::new() }
    }

    fn small() -> Driver {
        Driver::new(RingConfig { entries: 64, recv_buffers: 64, recv_buffer_bytes: 4096 })
    }

    /// The next completion with `key`, leaving others queued.
    fn next(&mut self, key: u64) -> Completion {
        let deadline = Instant::now() + Duration::from_millis(COMPLETION_WAIT_MS);
        loop {
            if let Some(index) = self.queue.iter().position(|c| c.key == key) {
                return self.queue.remove(index).unwrap();
            }
            assert!(Instant::now() < deadline, "no completion with key {key} within {COMPLETION_WAIT_MS} ms");
            let mut out = Vec::new();
            self.ring.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
            self.queue.extend(out);
        }
    }
}

fn listener() -> (OwnedFd, std::net::SocketAddr) {
    let fd = reuseport_listener("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let addr = local_addr(fd.as_fd()).unwrap();
    (fd, addr)
}

/// A connected pair: (accepted through the ring, std client).
fn accepted_pair(driver: &mut Driver) -> (OwnedFd, TcpStream, OwnedFd) {
    let (listen_fd, addr) = listener();
    driver.ring.submit(Op::AcceptMulti { fd: listen_fd.as_raw_fd() }, 1);
    let client = TcpStream::connect(addr).unwrap();
    let accepted = driver.next(1);
    assert!(accepted.more, "multishot accept ended: {:?}", accepted.result);
    let CompletionData::Accepted(fd) = accepted.data else { panic!("{accepted:?}") };
    (fd, client, listen_fd)
}

#[test]
fn accept_recv_multishot_and_send_round_trip() {
    let mut driver = Driver::small();
    let (listen_fd, addr) = listener();
    driver.ring.submit(Op::AcceptMulti { fd: listen_fd.as_raw_fd() }, 1);
    let mut clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut fds = Vec::new();
    for _ in 0..3 {
        let c = driver.next(1);
        assert!(c.more);
        let CompletionData::Accepted(fd) = c.data else { panic!("{c:?}") };
        fds.push(fd);
    }
    // Accept order is not connection order: map each accepted fd to its client by port.
    for (i, fd) in fds.iter().enumerate() {
        let key = 100 + i as u64;
        driver.ring.submit(Op::RecvMulti { fd: fd.as_raw_fd() }, key);
        let peer = crate::net::peer_addr(fd.as_fd()).unwrap();
        let client = clients.iter_mut().find(|c| c.local_addr().unwrap() == peer).unwrap();
        let message = format!("hello {i}");
        client.write_all(message.as_bytes()).unwrap();
        let mut got = Vec::new();
        while got.len() < message.len() {
            let c = driver.next(key);
            let CompletionData::Provided { buf_id, len } = c.data else { panic!("{c:?}") };
            assert_eq!(c.result, Ok(len));
            got.extend_from_slice(driver.ring.provided(buf_id, len));
            driver.ring.recycle(buf_id);
        }
        assert_eq!(got, message.as_bytes());

        let reply = format!("world {i}").into_bytes();
        driver.ring.submit(Op::Send { fd: fd.as_raw_fd(), buf: reply.clone(), offset: 0 }, 200);
        let c = driver.next(200);
        assert_eq!(c.result, Ok(reply.len() as u32));
        let CompletionData::Sent { buf, offset: 0 } = c.data else { panic!("{c:?}") };
        assert_eq!(buf, reply);
        let mut echoed = vec![0u8; reply.len()];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, reply);

        // End of stream ends the multishot recv with Ok(0).
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let c = driver.next(key);
        assert_eq!(c.result, Ok(0));
        assert!(!c.more);
    }
    assert_eq!(driver.ring.buffers_lent(), 0);
    drop(listen_fd);
}

#[test]
fn partial_sends_continue_from_the_returned_offset() {
    let mut driver = Driver::small();
    let (fd, mut client, _listen_fd) = accepted_pair(&mut driver);
    set_send_buffer_bytes(fd.as_fd(), 4096).unwrap();
    let total_bytes = 8 << 20;
    let payload: Vec<u8> = (0..total_bytes).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let reader = std::thread::spawn(move || {
        // Read late, so the first send meets a full socket and completes partially.
        std::thread::sleep(Duration::from_millis(100));
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = vec![0u8; total_bytes];
        client.read_exact(&mut got).unwrap();
        got
    });

    driver.ring.submit(Op::Send { fd: fd.as_raw_fd(), buf: payload, offset: 0 }, 7);
    let mut partial_sends = 0;
    let mut sends = 0;
    loop {
        sends += 1;
        assert!(sends < 100_000);
        let c = driver.next(7);
        let sent = c.result.unwrap() as usize;
        let CompletionData::Sent { buf, offset } = c.data else { panic!("{c:?}") };
        assert!(sent > 0);
        if offset + sent == buf.len() {
            break;
        }
        partial_sends += 1;
        driver.ring.submit(Op::Send { fd: fd.as_raw_fd(), buf, offset: offset + sent }, 7);
    }
    assert!(partial_sends >= 1, "an 8 MiB send to a sleeping reader completed in one piece");
    assert!(reader.join().unwrap() == expected);
}

#[test]
fn exhausted_buffers_end_multishot_with_enobufs_and_rearm_works() {
    let mut driver = Driver::new(RingConfig { entries: 16, recv_buffers: 2, recv_buffer_bytes: 64 });
    let (fd, mut client, _listen_fd) = accepted_pair(&mut driver);
    let message: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    client.write_all(&message).unwrap();

    // Hold every buffer until the kernel gives up with ENOBUFS.
    driver.ring.submit(Op::RecvMulti { fd: fd.as_raw_fd() }, 5);
    let mut held = Vec::new();
    let mut got = Vec::new();
    loop {
        let c = driver.next(5);
        match c.data {
            CompletionData::Provided { buf_id, len } => {
                got.extend_from_slice(driver.ring.provided(buf_id, len));
                held.push(buf_id);
                assert!(held.len() <= 2);
            }
            _ => {
                assert_eq!(c.result, Err(Errno::NO_BUFFERS));
                assert!(!c.more, "ENOBUFS must end the multishot recv");
                break;
            }
        }
    }
    assert_eq!(driver.ring.buffers_lent(), 2);
    for buf_id in held {
        driver.ring.recycle(buf_id);
    }

    // Re-arm and read the rest: nothing was lost, it waited in the socket.
    let mut rearms = 0;
    driver.ring.submit(Op::RecvMulti { fd: fd.as_raw_fd() }, 5);
    while got.len() < message.len() {
        let c = driver.next(5);
        if let CompletionData::Provided { buf_id, len } = c.data {
            got.extend_from_slice(driver.ring.provided(buf_id, len));
            driver.ring.recycle(buf_id);
        }
        if !c.more {
            rearms += 1;
            assert!(rearms < 1000);
            assert!(matches!(c.result, Ok(1..) | Err(Errno::NO_BUFFERS)), "{c:?}");
            driver.ring.submit(Op::RecvMulti { fd: fd.as_raw_fd() }, 5);
        }
    }
    assert_eq!(got, message);
    assert_eq!(driver.ring.buffers_lent(), 0);
}

#[test]
fn timeout_fires_and_can_be_cancelled() {
    let mut driver = Driver::small();
    let start = Instant::now();
    driver.ring.submit(Op::Timeout { after: Duration::from_millis(20) }, 3);
    let c = driver.next(3);
    assert_eq!(c.result, Ok(0));
    assert!(start.elapsed() >= Duration::from_millis(20));

    let timer = driver.ring.submit(Op::Timeout { after: Duration::from_secs(3600) }, 4);
    driver.ring.submit(Op::Cancel { target: timer }, 5);
    assert_eq!(driver.next(4).result, Err(Errno::CANCELED));
    assert_eq!(driver.next(5).result, Ok(0));
    // A stale id finds nothing, even after its slot is reused.
    driver.ring.submit(Op::Timeout { after: Duration::from_secs(3600) }, 6);
    driver.ring.submit(Op::Cancel { target: timer }, 7);
    assert_eq!(driver.next(7).result, Err(Errno::NOT_FOUND));
    assert_eq!(driver.ring.in_flight(), 1);
}

#[test]
fn cancel_of_a_pending_recv_returns_ecanceled_and_the_buffer() {
    let mut driver = Driver::small();
    let (fd, _client, _listen_fd) = accepted_pair(&mut driver);
    let recv = driver.ring.submit(Op::Recv { fd: fd.as_raw_fd(), buf: Vec::with_capacity(64) }, 8);
    driver.ring.submit(Op::Cancel { target: recv }, 9);
    let c = driver.next(8);
    assert_eq!(c.result, Err(Errno::CANCELED));
    let CompletionData::Buffer(buf) = c.data else { panic!("{c:?}") };
    assert!(buf.is_empty() && buf.capacity() >= 64);
    assert_eq!(driver.next(9).result, Ok(0));
}

#[test]
fn recv_fills_spare_capacity_after_existing_bytes() {
    let mut driver = Driver::small();
    let (fd, mut client, _listen_fd) = accepted_pair(&mut driver);
    client.write_all(b"world").unwrap();
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(b"hello ");
    driver.ring.submit(Op::Recv { fd: fd.as_raw_fd(), buf }, 8);
    let c = driver.next(8);
    let CompletionData::Buffer(buf) = c.data else { panic!("{c:?}") };
    assert_eq!(c.result, Ok(5));
    assert_eq!(buf, b"hello world");
}

#[test]
fn cancel_fd_cancels_every_op_on_the_socket() {
    let mut driver = Driver::small();
    let (fd, _client, _listen_fd) = accepted_pair(&mut driver);
    driver.ring.submit(Op::RecvMulti { fd: fd.as_raw_fd() }, 10);
    driver.ring.submit(Op::CancelFd { fd: fd.as_raw_fd() }, 11);
    let c = driver.next(10);
    assert_eq!(c.result, Err(Errno::CANCELED));
    assert!(!c.more);
    assert_eq!(driver.next(11).result, Ok(1));
}

#[test]
fn close_op_closes_the_socket() {
    let mut driver = Driver::small();
    let (fd, mut client, _listen_fd) = accepted_pair(&mut driver);
    driver.ring.submit(Op::Close { fd }, 12);
    assert_eq!(driver.next(12).result, Ok(0));
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(client.read(&mut byte).unwrap(), 0, "the peer sees end of stream");
}

#[test]
fn eventfd_wakes_the_ring_from_another_thread() {
    let mut driver = Driver::small();
    let wake = Arc::new(EventFd::new().unwrap());
    driver.ring.submit(Op::Read { fd: wake.fd(), buf: Vec::with_capacity(EventFd::READ_BYTES) }, 13);
    let mut out = Vec::new();
    assert_eq!(driver.ring.wait(Some(Duration::ZERO), &mut out).unwrap(), 0, "nothing before the notify");
    let notifier = Arc::clone(&wake);
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        notifier.notify().unwrap();
    });
    let c = driver.next(13);
    thread.join().unwrap();
    assert_eq!(c.result, Ok(8));
    let CompletionData::Buffer(buf) = c.data else { panic!("{c:?}") };
    assert_eq!(EventFd::count(&buf), 1);
}

#[test]
fn connect_succeeds_to_a_listener_and_fails_to_a_closed_port() {
    let mut driver = Driver::small();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = tcp_socket(Family::V4).unwrap();
    driver.ring.submit(Op::Connect { fd: fd.as_raw_fd(), addr }, 14);
    assert_eq!(driver.next(14).result, Ok(0));
    let (_server_side, peer) = listener.accept().unwrap();
    assert_eq!(peer, local_addr(fd.as_fd()).unwrap());

    drop(listener);
    let refused = tcp_socket(Family::V4).unwrap();
    driver.ring.submit(Op::Connect { fd: refused.as_raw_fd(), addr }, 15);
    assert_eq!(driver.next(15).result, Err(Errno::from_raw(libc::ECONNREFUSED)));
}

#[test]
fn a_full_submission_queue_loses_no_op() {
    let mut driver = Driver::new(RingConfig { entries: 4, recv_buffers: 0, recv_buffer_bytes: 0 });
    let ops = 200;
    for i in 0..ops {
        driver.ring.submit(Op::Timeout { after: Duration::from_millis(1 + i % 3) }, 20);
    }
    for _ in 0..ops {
        assert_eq!(driver.next(20).result, Ok(0));
    }
    assert_eq!(driver.ring.in_flight(), 0);
}

#[test]
fn poll_returns_at_once_when_nothing_is_ready() {
    let mut driver = Driver::small();
    driver.ring.submit(Op::Timeout { after: Duration::from_secs(3600) }, 21);
    let mut out = Vec::new();
    let start = Instant::now();
    assert_eq!(driver.ring.wait(Some(Duration::ZERO), &mut out).unwrap(), 0);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(driver.ring.in_flight(), 1);
}

#[test]
fn a_look_without_waiting_delivers_completions_finished_meanwhile() {
    // The eventfd read is armed (nothing to read yet), then made ready by this thread: the
    // kernel completes it through deferred task work, which only an enter that asks for events
    // runs. A zero-timeout wait must do that, or a busy core would never see it.
    let mut driver = Driver::small();
    let wake = EventFd::new().unwrap();
    driver.ring.submit(Op::Read { fd: wake.fd(), buf: Vec::with_capacity(EventFd::READ_BYTES) }, 22);
    let mut out = Vec::new();
    assert_eq!(driver.ring.wait(Some(Duration::ZERO), &mut out).unwrap(), 0, "nothing before the notify");
    wake.notify().unwrap();
    let mut looks = 0;
    while out.is_empty() {
        looks += 1;
        assert!(looks <= 1000, "1000 zero-timeout looks and the ready read never completed");
        driver.ring.wait(Some(Duration::ZERO), &mut out).unwrap();
    }
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].key, out[0].result), (22, Ok(8)));
}

#[test]
fn dropping_a_ring_with_ops_in_flight_is_safe() {
    let mut driver = Driver::small();
    let (fd, mut client, listen_fd) = accepted_pair(&mut driver);
    driver.ring.submit(Op::RecvMulti { fd: fd.as_raw_fd() }, 30);
    driver.ring.submit(Op::Recv { fd: fd.as_raw_fd(), buf: Vec::with_capacity(1 << 20) }, 31);
    driver.ring.submit(Op::Timeout { after: Duration::from_secs(3600) }, 32);
    let mut out = Vec::new();
    driver.ring.wait(Some(Duration::ZERO), &mut out).unwrap();
    assert!(driver.ring.in_flight() >= 4, "accept, recv multishot, recv, timeout");
    let start = Instant::now();
    drop(driver);
    assert!(start.elapsed() < Duration::from_millis(DROP_DRAIN_MS), "every op was cancelled and reaped");
    // Data sent now lands in no freed buffer: the socket is still open and simply unread.
    client.write_all(&[7u8; 4096]).unwrap();
    drop((fd, listen_fd));
}

#[test]
fn invalid_configurations_are_rejected() {
    for config in [
        RingConfig { entries: 0, ..RingConfig::default() },
        RingConfig { recv_buffers: 3, ..RingConfig::default() },
        RingConfig { recv_buffer_bytes: 0, ..RingConfig::default() },
    ] {
        assert!(matches!(Ring::new(config), Err(RingError::Config(_))), "{config:?}");
    }
}

#[test]
fn keys_carry_a_subsystem_tag() {
    let key = tagged_key(0x42, 12345);
    assert_eq!(key_tag(key), 0x42);
    assert_eq!(key & ((1 << KEY_TAG_SHIFT) - 1), 12345);
}

/// One raw SQE pushed past the driver (which never builds these), and its CQE's result.
fn raw_result(ring: &mut Ring, sqe: squeue::Entry) -> i32 {
    const RAW_USER_DATA: u64 = 0xfeed;
    // SAFETY: the SQE points at no memory (NOP, or an OPENAT whose path is a 'static C string),
    // and its completion is reaped right below, before `ring` can reap it as one of its own.
    unsafe { ring.uring.submission().push(&sqe.user_data(RAW_USER_DATA)).unwrap() };
    ring.uring.submit_and_wait(1).unwrap();
    let cqe = ring.uring.completion().next().expect("the raw SQE completed");
    assert_eq!(cqe.user_data(), RAW_USER_DATA);
    cqe.result()
}

#[test]
fn the_ring_refuses_opcodes_outside_the_drivers_list() {
    let mut driver = Driver::small();
    // Neither NOP nor OPENAT is an opcode the driver uses: the restricted ring refuses both with
    // EACCES, so code that took over a core cannot open a file through the ring it has.
    assert_eq!(raw_result(&mut driver.ring, opcode::Nop::new().build()), -libc::EACCES);
    let path = c"/etc/hostname";
    let openat = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr()).flags(libc::O_RDONLY).build();
    assert_eq!(raw_result(&mut driver.ring, openat), -libc::EACCES);
    // An SQE flag the driver does not set (IO_LINK) is refused too, even on an allowed opcode.
    let linked = opcode::Timeout::new(&types::Timespec::new()).build().flags(squeue::Flags::IO_LINK);
    assert_eq!(raw_result(&mut driver.ring, linked), -libc::EACCES);
    // And no register operation is allowed any more (here: a probe).
    let mut probe = io_uring::Probe::new();
    let error = driver.ring.uring.submitter().register_probe(&mut probe).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EACCES));
    // The driver's own operations still work on the same ring.
    driver.ring.submit(Op::Timeout { after: Duration::from_millis(1) }, 7);
    assert_eq!(driver.next(7).result, Ok(0));
}
