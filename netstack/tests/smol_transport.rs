//! SmolNet over a real io_uring, with no root and no namespace: a `socketpair(AF_UNIX,
//! SOCK_SEQPACKET)` carries Ethernet frames (one message = one frame) between the SmolNet under
//! test (driven through a Ring on the test thread, like kernel_transport.rs) and a client
//! smoltcp interface that the test drives itself on the other end. Every loop is bounded.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kernel_shim::ring::{Errno, Ring, RingConfig, key_tag};
use netstack::frame::{self, VNET_HDR_LEN, VnetHeader};
use netstack::http1::{Limits, Response};
use netstack::smol::{IpCidr, TIMED_OUT};
use netstack::{
    ConnAdmission, ConnCaps, ConnEvent, ConnId, Forwarder, HttpServer, IncomingRequest, LinkKind, SendError,
    SmolConfig, SmolNet, Steering, TAG_NET, Transport,
};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
};

mod support;
use support::Event;

const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 8080;

// ---------------------------------------------------------------------------------------------
// The link: a SOCK_SEQPACKET pair.

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: socketpair just returned these descriptors; nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// How the client frames what it writes, when the server expects virtio-net headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vnet {
    /// Plain Ethernet frames.
    Off,
    /// A zeroed header (complete frames).
    Zero,
    /// TCP frames with a partial checksum, as the kernel sends them with checksum offload on.
    Partial,
}

#[derive(Default)]
struct ClientDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct ClientRx(Vec<u8>);
struct ClientTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for ClientRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for ClientTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let result = f(&mut buf);
        self.0.push_back(buf);
        result
    }
}

impl Device for ClientDevice {
    type RxToken<'a> = ClientRx;
    type TxToken<'a> = ClientTx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(ClientRx, ClientTx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((ClientRx(frame), ClientTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<ClientTx<'_>> {
        // Bounded, so a blocked socketpair back-pressures the client's sockets.
        (self.tx.len() < 64).then_some(ClientTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// The peer on the other end of the link: a smoltcp interface the test drives, plus raw frame
/// injection and capture.
struct Client {
    fd: OwnedFd,
    vnet: Vnet,
    iface: Interface,
    device: ClientDevice,
    sockets: SocketSet<'static>,
    epoch: Instant,
    /// Frames the server sent, when capturing.
    captured: Vec<Vec<u8>>,
    capture: bool,
    /// The client does not answer at all (a peer that vanished).
    deaf: bool,
}

impl Client {
    fn new(fd: OwnedFd, vnet: Vnet, epoch: Instant) -> Client {
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            assert!(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) == 0);
        }
        let mut device = ClientDevice::default();
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
        config.random_seed = 7;
        let mut iface = Interface::new(config, &mut device, SmolInstant::ZERO);
        iface.update_ip_addrs(|addrs| addrs.push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), 24)).unwrap());
        Client {
            fd,
            vnet,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            epoch,
            captured: Vec::new(),
            capture: false,
            deaf: false,
        }
    }

    fn now(&self) -> SmolInstant {
        SmolInstant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// A TCP socket with buffers of `bytes`, tuned like the server's.
    fn socket(&mut self, bytes: usize) -> SocketHandle {
        let mut socket =
            tcp::Socket::new(tcp::SocketBuffer::new(vec![0; bytes]), tcp::SocketBuffer::new(vec![0; bytes]));
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        self.sockets.add(socket)
    }

    fn connect(&mut self, local_port: u16, bytes: usize) -> SocketHandle {
        self.connect_to(PORT, local_port, bytes)
    }

    fn connect_to(&mut self, port: u16, local_port: u16, bytes: usize) -> SocketHandle {
        let handle = self.socket(bytes);
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(cx, (IpAddress::Ipv4(SERVER_IP), port), local_port)
            .unwrap();
        handle
    }

    fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    /// Writes one raw frame (the vnet header is added as configured).
    fn inject(&mut self, frame: &[u8]) {
        let mut out = match self.vnet {
            Vnet::Off => Vec::new(),
            Vnet::Zero | Vnet::Partial => VnetHeader::NONE.to_bytes().to_vec(),
        };
        out.extend_from_slice(frame);
        self.write_raw(&out);
    }

    /// Writes bytes as one message, exactly as given.
    fn write_raw(&self, bytes: &[u8]) {
        // SAFETY: `bytes` is readable for its length.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        assert_eq!(sent, bytes.len() as isize, "send: {}", std::io::Error::last_os_error());
    }

    /// Moves frames: link -> client interface -> link.
    fn pump(&mut self) {
        let mut buf = vec![0u8; 70_000];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n <= 0 {
                break;
            }
            let mut frame = &buf[..n as usize];
            if self.vnet != Vnet::Off {
                assert_eq!(frame::parse_vnet_header(frame), Ok(VnetHeader::NONE), "the server sends zeroed headers");
                frame = &frame[VNET_HDR_LEN..];
            }
            if self.capture {
                self.captured.push(frame.to_vec());
            }
            if !self.deaf {
                self.device.rx.push_back(frame.to_vec());
            }
        }
        let now = self.now();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        while let Some(frame) = self.device.tx.front() {
            let out = match self.vnet {
                Vnet::Off => frame.clone(),
                Vnet::Zero => [&VnetHeader::NONE.to_bytes()[..], frame].concat(),
                Vnet::Partial => with_partial_checksum(frame),
            };
            // SAFETY: `out` is readable for its length.
            let sent = unsafe { libc::send(self.fd.as_raw_fd(), out.as_ptr().cast(), out.len(), libc::MSG_DONTWAIT) };
            if sent < 0 {
                break; // the socketpair is full: the server reads it on its next turn
            }
            self.device.tx.pop_front();
        }
    }
}

/// What the kernel does to a TCP/IPv4 frame with checksum offload: the checksum field holds the
/// folded pseudo-header sum and the header says where to complete it.
fn with_partial_checksum(frame: &[u8]) -> Vec<u8> {
    let plain = [&VnetHeader::NONE.to_bytes()[..], frame].concat();
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return plain;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let tcp_at = 14 + ihl;
    let tcp_len = usize::from(u16::from_be_bytes([frame[16], frame[17]])) - ihl;
    let pseudo = frame::sum_be16(&frame[26..34], 6 + tcp_len as u64);
    let mut partial = frame.to_vec();
    partial[tcp_at + 16..tcp_at + 18].copy_from_slice(&frame::fold(pseudo).to_be_bytes());
    let header =
        VnetHeader { flags: frame::F_NEEDS_CSUM, csum_start: tcp_at as u16, csum_offset: 16, ..VnetHeader::NONE };
    [&header.to_bytes()[..], &partial].concat()
}

// ---------------------------------------------------------------------------------------------
// The server side, like kernel_transport.rs's harness.

fn config() -> SmolConfig {
    let mut config = SmolConfig::new(SERVER_MAC, vec![IpCidr::new(IpAddress::Ipv4(SERVER_IP), 24)], PORT);
    config.conns_max = 256;
    config.backlog = 8;
    config
}

struct Harness {
    ring: Ring,
    net: SmolNet,
    client: Client,
    backlog: VecDeque<Event>,
    seen: Vec<Event>,
    /// Events the test's handler produced are counted here for open-connection assertions.
    open_max: usize,
}

impl Harness {
    fn new(config: SmolConfig, kind: LinkKind, vnet: Vnet) -> Harness {
        Harness::with_forwarder(config, kind, vnet, Forwarder::single())
    }

    fn with_forwarder(config: SmolConfig, kind: LinkKind, vnet: Vnet, forwarder: Forwarder) -> Harness {
        assert_eq!(config.vnet_hdr, vnet != Vnet::Off);
        // Provided buffers (Packet links) hold a whole frame with its header.
        let mut ring = Ring::new(RingConfig { entries: 256, recv_buffers: 256, recv_buffer_bytes: 2048 }).unwrap();
        let (server_end, client_end) = socketpair();
        let epoch = Instant::now();
        let mut net = SmolNet::new(server_end, kind, config, forwarder).unwrap();
        net.start(&mut ring, epoch);
        let client = Client::new(client_end, vnet, epoch);
        Harness { ring, net, client, backlog: VecDeque::new(), seen: Vec::new(), open_max: 0 }
    }

    /// One turn: wait for completions (up to 1 ms, or not at all when the stack is due), run
    /// the stack, then let the client move its frames.
    fn turn(&mut self) {
        let timeout = match self.net.poll_at() {
            Some(at) => at.saturating_duration_since(Instant::now()).min(Duration::from_millis(1)),
            None => Duration::from_millis(1),
        };
        let mut completions = Vec::new();
        self.ring.wait(Some(timeout), &mut completions).unwrap();
        let now = Instant::now();
        let mut events = Vec::new();
        for completion in completions {
            assert_eq!(key_tag(completion.key), TAG_NET, "only SmolNet submits to this ring");
            self.net
                .on_completion(&mut self.ring, completion, now, &mut |e: ConnEvent<'_>| events.push(Event::from(e)));
        }
        if self.net.poll_at().is_some_and(|at| at <= now) {
            self.net.poll(&mut self.ring, now, &mut |e: ConnEvent<'_>| events.push(Event::from(e)));
        }
        self.seen.extend(events.iter().cloned());
        self.backlog.extend(events);
        self.open_max = self.open_max.max(self.net.open_conns());
        self.client.pump();
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
        panic!("the transport did not reach the expected state within {time_max:?}; seen: {:?}", self.summary());
    }

    /// Turns until `done` holds (the client's state, usually); fails after `time_max`.
    fn until(&mut self, time_max: Duration, mut done: impl FnMut(&mut Harness) -> bool) {
        let deadline = Instant::now() + time_max;
        while !done(self) {
            assert!(Instant::now() < deadline, "condition not reached within {time_max:?}; seen: {:?}", self.summary());
            self.turn();
        }
    }

    fn expect(&mut self, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(index) = self.backlog.iter().position(&wanted) {
                return self.backlog.remove(index).unwrap();
            }
            assert!(Instant::now() < deadline, "no expected event within 10 s; seen: {:?}", self.summary());
            self.turn();
        }
    }

    fn idle(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while Instant::now() < deadline {
            self.turn();
        }
    }

    fn accept_one(&mut self) -> ConnId {
        match self.expect(|e| matches!(e, Event::Accepted(..))) {
            Event::Accepted(conn, _) => conn,
            _ => unreachable!(),
        }
    }

    /// Events without their bytes, for failure messages.
    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|e| match e {
                Event::Received(c, bytes) => format!("Received({c:?}, {} bytes)", bytes.len()),
                other => format!("{other:?}"),
            })
            .collect()
    }
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed * 13) % 251) as u8).collect()
}

/// Client-side: sends what it can of `data[*sent..]`, receives into `got`.
fn client_transfer(socket: &mut tcp::Socket<'static>, data: &[u8], sent: &mut usize, got: &mut Vec<u8>) {
    if *sent < data.len() && socket.can_send() {
        *sent += socket.send_slice(&data[*sent..]).unwrap();
    }
    while socket.can_recv() {
        socket
            .recv(|bytes| {
                got.extend_from_slice(bytes);
                (bytes.len(), ())
            })
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Connections.

#[test]
fn accepts_and_echoes_then_closes_gracefully() {
    let mut h = Harness::new(config(), LinkKind::Tap, Vnet::Off);
    let client = h.client.connect(40000, 16 * 1024);
    let conn = h.accept_one();
    let Some(Event::Accepted(_, peer)) = h.seen.first().cloned() else { panic!() };
    assert_eq!(peer, SocketAddr::from((CLIENT_IP, 40000)));
    h.client.tcp(client).send_slice(b"hello").unwrap();
    let received = h.expect(|e| matches!(e, Event::Received(..)));
    assert_eq!(received, Event::Received(conn, b"hello".to_vec()));
    h.net.send(&mut h.ring, conn, b"hello back").unwrap();
    h.expect(|e| *e == Event::SendDone(conn));
    let mut got = Vec::new();
    h.until(Duration::from_secs(5), |h| {
        client_transfer(h.client.tcp(client), &[], &mut 0, &mut got);
        got.len() == 10
    });
    assert_eq!(got, b"hello back");
    h.client.tcp(client).close();
    h.expect(|e| *e == Event::PeerClosed(conn));
    h.net.close(&mut h.ring, conn);
    h.expect(|e| *e == Event::Closed(conn));
    assert_eq!(h.net.open_conns(), 0);
    // The client closed first: its side waits in TIME-WAIT, ours is gone.
    h.until(Duration::from_secs(5), |h| h.client.tcp(client).state() == State::TimeWait);
    assert_eq!(h.net.send(&mut h.ring, conn, b"late"), Err(SendError::Closed), "the id is stale");
    let stats = h.net.stats();
    assert_eq!(stats.conns_accepted, 1);
    assert_eq!(stats.malformed_frames, 0);
    assert!(stats.lingering <= 1, "at most our side's TIME-WAIT: {stats:?}");
}

#[test]
fn an_answer_carries_the_ack_and_an_unanswered_segment_is_acked_on_the_next_turn() {
    let mut h = Harness::new(config(), LinkKind::Tap, Vnet::Off);
    let client = h.client.connect(40001, 16 * 1024);
    let conn = h.accept_one();
    h.until(Duration::from_secs(5), |h| h.client.tcp(client).state() == State::Established);
    h.idle(Duration::from_millis(5));

    // A request answered before the stack's next turn: one frame out, the answer with the ACK.
    let before = h.net.stats().frames_out;
    h.client.tcp(client).send_slice(b"request").unwrap();
    assert_eq!(h.expect(|e| matches!(e, Event::Received(..))), Event::Received(conn, b"request".to_vec()));
    h.net.send(&mut h.ring, conn, b"answer").unwrap();
    let mut got = Vec::new();
    h.until(Duration::from_secs(5), |h| {
        client_transfer(h.client.tcp(client), &[], &mut 0, &mut got);
        got.len() == 6
    });
    assert_eq!(got, b"answer");
    assert_eq!(h.net.stats().frames_out - before, 1, "the answer carried the ACK: no separate pure ACK");
    assert_eq!(h.client.tcp(client).send_queue(), 0, "the request is acknowledged");

    // Not answered: the ACK leaves alone on the stack's next turn, not after a delayed-ACK
    // timer (smoltcp's default would hold it 10 ms, about ten of these 1 ms turns).
    h.client.tcp(client).send_slice(b"more").unwrap();
    assert_eq!(h.expect(|e| matches!(e, Event::Received(..))), Event::Received(conn, b"more".to_vec()));
    let mut turns = 0;
    while h.client.tcp(client).send_queue() != 0 {
        turns += 1;
        assert!(turns <= 3, "the pure ACK did not leave within 3 turns of the stack");
        h.turn();
    }
    assert_eq!(h.net.stats().frames_out - before, 2, "one pure ACK");
}

/// 4 MiB each way through an echo, on every link flavour.
fn four_mib_round_trip(kind: LinkKind, vnet: Vnet) {
    const BYTES: usize = 4 << 20;
    let mut config = config();
    config.vnet_hdr = vnet != Vnet::Off;
    let mut h = Harness::new(config, kind, vnet);
    let client = h.client.connect(40001, 256 * 1024);
    let conn = h.accept_one();
    let data = pattern(BYTES, 1);
    let (mut sent, mut got) = (0, Vec::new());
    // What the echo could not queue yet: reading pauses until the queue drains (back-pressure
    // as the HTTP server does it).
    let mut stash: Vec<u8> = Vec::new();
    let (mut pauses, start) = (0, Instant::now());
    let deadline = start + Duration::from_secs(60);
    while got.len() < BYTES {
        assert!(Instant::now() < deadline, "echoed {} of {BYTES} bytes in 60 s", got.len());
        while let Some(event) = h.backlog.pop_front() {
            if let Event::Received(c, bytes) = event {
                assert_eq!(c, conn);
                stash.extend_from_slice(&bytes);
            }
        }
        if !stash.is_empty() {
            match h.net.send(&mut h.ring, conn, &stash) {
                Ok(()) => {
                    stash.clear();
                    h.net.resume_recv(&mut h.ring, conn);
                }
                Err(SendError::QueueFull { .. }) => {
                    pauses += 1;
                    h.net.pause_recv(&mut h.ring, conn);
                }
                Err(error) => panic!("{error}"),
            }
        }
        client_transfer(h.client.tcp(client), &data, &mut sent, &mut got);
        h.turn();
    }
    assert!(got == data, "the echo came back intact");
    eprintln!("4 MiB echoed in {:?} ({kind:?}, {vnet:?}, {pauses} pauses)", start.elapsed());
    let stats = h.net.stats();
    assert_eq!(stats.malformed_frames, 0);
    if vnet == Vnet::Partial {
        assert!(stats.checksums_completed > 1000, "partial checksums were completed: {stats:?}");
    }
    h.net.abort(&mut h.ring, conn);
    h.expect(|e| *e == Event::Closed(conn));
}

#[test]
fn four_mib_round_trip_over_tap_reads() {
    four_mib_round_trip(LinkKind::Tap, Vnet::Off);
}

#[test]
fn four_mib_round_trip_with_partial_checksums() {
    four_mib_round_trip(LinkKind::Tap, Vnet::Partial);
}

#[test]
fn four_mib_round_trip_over_multishot_receives() {
    four_mib_round_trip(LinkKind::Packet, Vnet::Zero);
}

#[test]
fn two_hundred_concurrent_connections_within_the_pool() {
    const CLIENTS: usize = 200;
    const BYTES: usize = 3000;
    let mut config = config();
    config.conns_max = 240;
    config.backlog = 16;
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    let clients: Vec<SocketHandle> = (0..CLIENTS).map(|i| h.client.connect(41000 + i as u16, 8 * 1024)).collect();
    let mut accepted = 0;
    h.run(Duration::from_secs(20), |_, event| {
        if let Event::Accepted(..) = event {
            accepted += 1;
        }
        accepted == CLIENTS
    });
    assert_eq!(h.net.open_conns(), CLIENTS, "all clients connected at once");
    // Every client sends its own pattern; the server echoes; every client checks.
    let mut sent = vec![0; CLIENTS];
    let mut got = vec![Vec::new(); CLIENTS];
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.iter().any(|g| g.len() < BYTES) {
        assert!(Instant::now() < deadline, "echo of 200 clients incomplete");
        while let Some(event) = h.backlog.pop_front() {
            if let Event::Received(conn, bytes) = event {
                h.net.send(&mut h.ring, conn, &bytes).unwrap();
            }
        }
        for (i, handle) in clients.iter().enumerate() {
            client_transfer(h.client.tcp(*handle), &pattern(BYTES, i), &mut sent[i], &mut got[i]);
        }
        h.turn();
    }
    for (i, g) in got.iter().enumerate() {
        assert!(*g == pattern(BYTES, i), "client {i} got other bytes back");
    }
    // Clients leave; the server closes each on PeerClosed.
    for handle in &clients {
        h.client.tcp(*handle).close();
    }
    let mut closed = 0;
    h.run(Duration::from_secs(20), |h, event| {
        match event {
            Event::PeerClosed(conn) => h.net.close(&mut h.ring, conn),
            Event::Closed(_) => closed += 1,
            _ => {}
        }
        closed == CLIENTS
    });
    assert_eq!(h.net.open_conns(), 0);
    let stats = h.net.stats();
    assert!(stats.sockets_max <= 240, "the pool bound held: {stats:?}");
    assert!(stats.sockets <= 240);
    assert_eq!(stats.conns_accepted, CLIENTS as u64);
}

#[test]
fn syns_beyond_the_pool_are_reset_and_the_pool_holds() {
    let mut config = config();
    config.conns_max = 8;
    config.backlog = 2;
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    let clients: Vec<SocketHandle> = (0..14).map(|i| h.client.connect(42000 + i, 4096)).collect();
    h.until(Duration::from_secs(10), |h| {
        clients.iter().all(|c| matches!(h.client.tcp(*c).state(), State::Established | State::Closed))
    });
    h.idle(Duration::from_millis(50));
    let established = clients.iter().filter(|c| h.client.tcp(**c).state() == State::Established).count();
    let reset = clients.iter().filter(|c| h.client.tcp(**c).state() == State::Closed).count();
    let stats = h.net.stats();
    assert!(stats.sockets_max <= 8, "never more than conns_max sockets: {stats:?}");
    assert_eq!(established + reset, 14);
    assert!((1..=8).contains(&established), "{established} established");
    assert!(reset >= 6, "SYNs that found no listener were reset: {reset}");
    assert!(stats.listen_starved > 0);
    assert_eq!(h.net.open_conns(), established);
    // The pool frees up as connections close: a new client gets in.
    let first = clients.iter().find(|c| h.client.tcp(**c).state() == State::Established).copied().unwrap();
    h.client.tcp(first).abort();
    h.until(Duration::from_secs(5), |h| h.seen.iter().any(|e| matches!(e, Event::Closed(_))));
    let late = h.client.connect(42100, 4096);
    h.until(Duration::from_secs(5), |h| h.client.tcp(late).state() == State::Established);
}

#[test]
fn a_client_beyond_its_cap_is_reset_once_established_and_counted() {
    let mut h = Harness::new(config(), LinkKind::Tap, Vnet::Off);
    let admission = ConnAdmission::new(ConnCaps { per_client_max: 2, total_max: 100 });
    h.net.set_admission(admission.clone());
    let kept: Vec<SocketHandle> = (0..2).map(|i| h.client.connect(43000 + i, 4096)).collect();
    h.accept_one();
    h.accept_one();
    // The third completes its handshake, then the server resets it: no Accepted event.
    let third = h.client.connect(43010, 4096);
    h.until(Duration::from_secs(10), |h| h.net.stack().refused().per_client == 1);
    h.until(Duration::from_secs(5), |h| h.client.tcp(third).state() == State::Closed);
    assert!(kept.iter().all(|c| h.client.tcp(*c).state() == State::Established));
    assert_eq!(h.net.open_conns(), 2);
    assert_eq!(admission.client_conns(IpAddr::V4(CLIENT_IP)), 2);
    assert_eq!(h.seen.iter().filter(|e| matches!(e, Event::Accepted(..))).count(), 2);
    // A closed connection gives its place back.
    h.client.tcp(kept[0]).abort();
    h.until(Duration::from_secs(5), |h| h.seen.iter().any(|e| matches!(e, Event::Closed(_))));
    assert_eq!(admission.client_conns(IpAddr::V4(CLIENT_IP)), 1);
    let late = h.client.connect(43020, 4096);
    h.accept_one();
    assert_eq!(h.client.tcp(late).state(), State::Established);
}

#[test]
fn a_client_reset_mid_transfer_fails_then_closes() {
    let mut config = config();
    config.send_queue_bytes_max = 4 << 20;
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    let client = h.client.connect(40002, 16 * 1024);
    let conn = h.accept_one();
    h.net.send_owned(&mut h.ring, conn, pattern(2 << 20, 3)).unwrap();
    let mut got = Vec::new();
    h.until(Duration::from_secs(10), |h| {
        client_transfer(h.client.tcp(client), &[], &mut 0, &mut got);
        got.len() >= 64 * 1024
    });
    h.client.tcp(client).abort();
    let failed = h.expect(|e| matches!(e, Event::Failed(..)));
    assert_eq!(failed, Event::Failed(conn, Errno::CONNECTION_RESET));
    h.expect(|e| *e == Event::Closed(conn));
    let after_closed = h.seen.iter().skip_while(|e| **e != Event::Closed(conn)).skip(1);
    assert!(after_closed.clone().all(|e| !matches!(e, Event::Received(c, _) | Event::SendDone(c) if *c == conn)));
    assert_eq!(h.net.open_conns(), 0);
    assert_eq!(h.net.queued_bytes(conn), 0);
}

#[test]
fn graceful_close_flushes_everything_queued() {
    const BYTES: usize = 3 << 20;
    let mut config = config();
    config.send_queue_bytes_max = 4 << 20;
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    let client = h.client.connect(40003, 64 * 1024);
    let conn = h.accept_one();
    let data = pattern(BYTES, 4);
    for piece in data.chunks(256 * 1024) {
        h.net.send(&mut h.ring, conn, piece).unwrap();
    }
    assert!(h.net.queued_bytes(conn) > 2 << 20, "most of it waits beyond the socket buffer");
    h.net.close(&mut h.ring, conn);
    assert_eq!(h.net.send(&mut h.ring, conn, b"x"), Err(SendError::Closed), "closing refuses more output");
    let mut got = Vec::new();
    h.until(Duration::from_secs(30), |h| {
        let socket = h.client.tcp(client);
        client_transfer(socket, &[], &mut 0, &mut got);
        // The FIN arrived after all the data: the client may not receive any more.
        !socket.may_recv()
    });
    assert_eq!(got.len(), BYTES);
    assert!(got == data);
    h.client.tcp(client).close();
    h.expect(|e| *e == Event::Closed(conn));
    assert!(h.seen.iter().all(|e| !matches!(e, Event::Failed(..))), "{:?}", h.summary());
    h.until(Duration::from_secs(5), |h| h.client.tcp(client).state() == State::Closed);
}

#[test]
fn a_close_the_peer_never_finishes_is_reset_after_the_close_timeout() {
    let mut config = config();
    config.close_timeout = Duration::from_millis(200);
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    let client = h.client.connect(40004, 16 * 1024);
    let conn = h.accept_one();
    h.net.close(&mut h.ring, conn);
    let start = Instant::now();
    h.expect(|e| *e == Event::Closed(conn));
    assert!(start.elapsed() >= Duration::from_millis(200));
    // The client saw our FIN, never closed its side, then got the reset.
    h.until(Duration::from_secs(5), |h| h.client.tcp(client).state() == State::Closed);
}

#[test]
fn a_peer_that_vanishes_times_out() {
    let mut config = config();
    config.idle_timeout = Duration::from_secs(1);
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    let _client = h.client.connect(40005, 16 * 1024);
    let conn = h.accept_one();
    h.client.deaf = true;
    h.net.send(&mut h.ring, conn, &pattern(1000, 5)).unwrap();
    let failed = h.expect(|e| matches!(e, Event::Failed(..)));
    assert_eq!(failed, Event::Failed(conn, TIMED_OUT));
    h.expect(|e| *e == Event::Closed(conn));
}

#[test]
fn paused_connections_close_their_window() {
    let mut h = Harness::new(config(), LinkKind::Tap, Vnet::Off);
    let client = h.client.connect(40006, 512 * 1024);
    let conn = h.accept_one();
    h.net.pause_recv(&mut h.ring, conn);
    let data = pattern(1 << 20, 6);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        client_transfer(h.client.tcp(client), &data, &mut sent, &mut Vec::new());
        h.turn();
    }
    assert!(h.backlog.iter().all(|e| !matches!(e, Event::Received(..))), "a paused connection delivered bytes");
    let in_flight = h.client.tcp(client).send_queue();
    assert!(sent - in_flight <= 128 * 1024 + 1500, "the peer filled our window and stopped: {}", sent - in_flight);
    assert!(in_flight > 0, "the client holds what it could not send");
    h.net.resume_recv(&mut h.ring, conn);
    let mut received = Vec::new();
    h.run(Duration::from_secs(20), |h, event| {
        if let Event::Received(_, bytes) = event {
            received.extend_from_slice(&bytes);
        }
        client_transfer(h.client.tcp(client), &data, &mut sent, &mut Vec::new());
        received.len() == data.len()
    });
    assert!(received == data);
}

#[test]
fn the_send_queue_is_bounded() {
    let mut config = config();
    config.send_queue_bytes_max = 1000;
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    let _client = h.client.connect(40007, 4096);
    let conn = h.accept_one();
    h.client.deaf = true; // nothing is acknowledged: the socket buffer (128 KiB) fills
    h.net.send(&mut h.ring, conn, &vec![1; 128 * 1024]).unwrap();
    h.net.send(&mut h.ring, conn, &[2; 600]).unwrap();
    assert_eq!(h.net.queued_bytes(conn), 600);
    assert_eq!(
        h.net.send(&mut h.ring, conn, &[3; 600]),
        Err(SendError::QueueFull { queued_bytes: 600, queued_bytes_max: 1000 })
    );
    h.net.abort(&mut h.ring, conn);
    h.expect(|e| *e == Event::Closed(conn));
    assert_eq!(h.net.queued_bytes(conn), 0);
}

#[test]
fn outbound_connect_uses_this_cores_ports() {
    let mut config = config();
    config.steering = Steering::even(1, 2).unwrap();
    let forwarder = Forwarder::mesh(2, 64, Arc::new(|_| {})).pop().unwrap();
    let mut h = Harness::with_forwarder(config, LinkKind::Tap, Vnet::Off, forwarder);
    let listener = h.client.socket(16 * 1024);
    h.client.tcp(listener).listen(9000).unwrap();
    let conn = h.net.connect(&mut h.ring, SocketAddr::from((CLIENT_IP, 9000))).unwrap();
    // Bytes sent before the connection is up wait for it.
    h.net.send(&mut h.ring, conn, b"ping").unwrap();
    h.expect(|e| *e == Event::Connected(conn));
    let local = h.net.local_addr(conn).unwrap();
    assert_eq!(local.ip(), IpAddr::V4(SERVER_IP));
    assert!((57344..=65535).contains(&local.port()), "core 1 of 2 connects from its range: {local}");
    let mut got = Vec::new();
    h.until(Duration::from_secs(5), |h| {
        client_transfer(h.client.tcp(listener), &[], &mut 0, &mut got);
        got.len() == 4
    });
    assert_eq!(got, b"ping");
    h.client.tcp(listener).send_slice(b"pong").unwrap();
    let received = h.expect(|e| matches!(e, Event::Received(..)));
    assert_eq!(received, Event::Received(conn, b"pong".to_vec()));
    h.net.close(&mut h.ring, conn);
    h.until(Duration::from_secs(5), |h| !h.client.tcp(listener).may_recv());
    h.client.tcp(listener).close();
    h.expect(|e| *e == Event::Closed(conn));
    assert_eq!(h.net.stats().conns_connected, 1);
    assert_eq!(h.net.stats().forwarded_out, 0, "the replies came to the core that owns the port");
}

#[test]
fn outbound_connect_to_a_closed_port_is_refused() {
    let mut h = Harness::new(config(), LinkKind::Tap, Vnet::Off);
    let conn = h.net.connect(&mut h.ring, SocketAddr::from((CLIENT_IP, 9001))).unwrap();
    let failed = h.expect(|e| matches!(e, Event::ConnectFailed(..)));
    assert_eq!(failed, Event::ConnectFailed(conn, Errno::CONNECTION_REFUSED));
    h.expect(|e| *e == Event::Closed(conn));
    assert_eq!(h.net.open_conns(), 0);
}

#[test]
fn stop_accepting_closes_the_listeners_and_resets_new_syns() {
    let mut h = Harness::new(config(), LinkKind::Tap, Vnet::Off);
    let client = h.client.connect(40008, 4096);
    let conn = h.accept_one();
    h.net.stop_accepting(&mut h.ring);
    h.expect(|e| *e == Event::ListenerClosed);
    assert!(!h.net.is_listening());
    let refused = h.client.connect(40009, 4096);
    h.until(Duration::from_secs(5), |h| h.client.tcp(refused).state() == State::Closed);
    // The open connection still works.
    h.client.tcp(client).send_slice(b"still here").unwrap();
    let received = h.expect(|e| matches!(e, Event::Received(..)));
    assert_eq!(received, Event::Received(conn, b"still here".to_vec()));
    assert_eq!(h.net.stats().listening, 0);
}

#[test]
fn ipv6_link_local_connections_work() {
    let server_ip = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    let client_ip = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    let mut config = config();
    config.ips.push(IpCidr::new(IpAddress::Ipv6(server_ip), 64));
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Off);
    h.client.iface.update_ip_addrs(|addrs| addrs.push(IpCidr::new(IpAddress::Ipv6(client_ip), 64)).unwrap());
    let client = h.client.socket(16 * 1024);
    let cx = h.client.iface.context();
    h.client.sockets.get_mut::<tcp::Socket>(client).connect(cx, (IpAddress::Ipv6(server_ip), PORT), 40020).unwrap();
    let conn = h.accept_one();
    let Some(Event::Accepted(_, peer)) = h.seen.first().cloned() else { panic!() };
    assert_eq!(peer, SocketAddr::from((client_ip, 40020)));
    h.client.tcp(client).send_slice(b"over v6").unwrap();
    let received = h.expect(|e| matches!(e, Event::Received(..)));
    assert_eq!(received, Event::Received(conn, b"over v6".to_vec()));
    // And outbound, to the client's v6 address.
    let listener = h.client.socket(16 * 1024);
    h.client.tcp(listener).listen(9002).unwrap();
    let out = h.net.connect(&mut h.ring, SocketAddr::from((client_ip, 9002))).unwrap();
    h.expect(|e| *e == Event::Connected(out));
    assert_eq!(h.net.local_addr(out).map(|a| a.ip()), Some(IpAddr::V6(server_ip)));
}

// ---------------------------------------------------------------------------------------------
// Link-level: ARP, ICMP, steering, malformed frames.

fn arp_request() -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(CLIENT_MAC),
        source_protocol_addr: CLIENT_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: SERVER_IP,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    arp.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
    frame
}

fn echo_request(seq_no: u16, data: &[u8]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no, data };
    let ip = Ipv4Repr {
        src_addr: CLIENT_IP,
        dst_addr: SERVER_IP,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC),
        dst_addr: EthernetAddress(SERVER_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    let caps = ChecksumCapabilities::default();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..34]), &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut frame[34..]), &caps);
    frame
}

/// A TCP SYN from the client to `dst_port` on the server.
fn syn_to(dst_port: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&SERVER_MAC);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&CLIENT_IP.octets());
    ip.extend_from_slice(&SERVER_IP.octets());
    frame.extend_from_slice(&ip);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&43000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&8192u16.to_be_bytes());
    frame.extend_from_slice(&tcp);
    Ipv4Packet::new_unchecked(&mut frame[14..34]).fill_checksum();
    let (src, dst) = (IpAddress::Ipv4(CLIENT_IP), IpAddress::Ipv4(SERVER_IP));
    TcpPacket::new_unchecked(&mut frame[34..]).fill_checksum(&src, &dst);
    frame
}

fn is_echo_reply(frame: &[u8], seq: u16, data: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return false };
    if eth.ethertype() != EthernetProtocol::Ipv4 || eth.dst_addr() != EthernetAddress(CLIENT_MAC) {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return false };
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else { return false };
    match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()) {
        Ok(Icmpv4Repr::EchoReply { ident, seq_no, data: echoed }) => ident == 0x1234 && seq_no == seq && echoed == data,
        _ => false,
    }
}

fn is_arp_reply_from_server(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return false };
    let Ok(arp) = ArpPacket::new_checked(eth.payload()) else { return false };
    matches!(ArpRepr::parse(&arp), Ok(ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    }) if source_hardware_addr == EthernetAddress(SERVER_MAC) && source_protocol_addr == SERVER_IP
        && target_protocol_addr == CLIENT_IP)
}

#[test]
fn arp_and_icmp_echo_are_answered() {
    let mut h = Harness::new(config(), LinkKind::Tap, Vnet::Off);
    h.client.capture = true;
    h.client.inject(&arp_request());
    h.until(Duration::from_secs(5), |h| h.client.captured.iter().any(|f| is_arp_reply_from_server(f)));
    let payload = pattern(1000, 9);
    h.client.inject(&echo_request(1, &payload));
    h.until(Duration::from_secs(5), |h| h.client.captured.iter().any(|f| is_echo_reply(f, 1, &payload)));
}

fn two_core_harness() -> (Harness, Forwarder, Arc<Mutex<Vec<usize>>>) {
    let mut config = config();
    config.steering = Steering::even(0, 2).unwrap();
    let woken = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&woken);
    let mut mesh = Forwarder::mesh(2, 64, Arc::new(move |core| log.lock().unwrap().push(core)));
    let other = mesh.pop().unwrap();
    let ours = mesh.pop().unwrap();
    (Harness::with_forwarder(config, LinkKind::Tap, Vnet::Off, ours), other, woken)
}

#[test]
fn frames_for_another_cores_port_are_forwarded_not_processed() {
    let (mut h, other, woken) = two_core_harness();
    h.client.capture = true;
    let syn = syn_to(60000); // core 1's range: 57344..=65535
    h.client.inject(&syn);
    h.until(Duration::from_secs(5), |h| h.net.stats().forwarded_out == 1);
    assert_eq!(other.try_recv(), Some(syn), "core 1 got the frame as it was");
    assert_eq!(*woken.lock().unwrap(), vec![1], "and was woken once");
    h.idle(Duration::from_millis(50));
    assert!(h.client.captured.is_empty(), "core 0 did not answer (no reset): {:?}", h.client.captured);
    // A SYN for a port nobody listens on and nobody owns is ours: smoltcp resets it.
    h.client.inject(&syn_to(9999));
    h.until(Duration::from_secs(5), |h| !h.client.captured.is_empty());
    assert_eq!(h.net.stats().forwarded_out, 1);
}

#[test]
fn arp_is_answered_here_and_copied_to_the_other_cores() {
    let (mut h, other, _) = two_core_harness();
    h.client.capture = true;
    h.client.inject(&arp_request());
    h.until(Duration::from_secs(5), |h| h.client.captured.iter().any(|f| is_arp_reply_from_server(f)));
    let copy = other.try_recv().expect("core 1 got a copy");
    let mut expected = arp_request();
    expected[21] = 2; // ... as a reply, so core 1 learns the sender without answering too
    assert_eq!(copy, expected);
    let replies = h.client.captured.iter().filter(|f| is_arp_reply_from_server(f)).count();
    assert_eq!(replies, 1);
}

#[test]
fn frames_forwarded_to_this_core_are_processed() {
    let (mut h, mut other, woken) = two_core_harness();
    h.client.capture = true;
    // Teach the server the client's MAC, so its replies need no ARP round.
    h.client.inject(&arp_request());
    h.until(Duration::from_secs(5), |h| !h.client.captured.is_empty());
    assert_eq!(other.try_recv().map(|copy| copy[21]), Some(2), "core 1 got the ARP as a reply");
    woken.lock().unwrap().clear();
    // The scheduler hands a forwarded frame over itself ...
    let payload = b"forwarded by hand".to_vec();
    let mut events = Vec::new();
    h.net.receive_forwarded(&mut h.ring, Instant::now(), echo_request(2, &payload), &mut |e: ConnEvent<'_>| {
        events.push(Event::from(e))
    });
    h.until(Duration::from_secs(5), |h| h.client.captured.iter().any(|f| is_echo_reply(f, 2, &payload)));
    // ... or core 1 sends it to our inbox and wakes us; our next poll takes it.
    let payload = b"through the inbox".to_vec();
    assert!(other.send(0, echo_request(3, &payload)));
    other.flush_wakes();
    assert_eq!(*woken.lock().unwrap(), vec![0]);
    assert!(h.net.poll_at().is_some_and(|at| at <= Instant::now()), "a waiting inbox makes the stack due");
    h.until(Duration::from_secs(5), |h| h.client.captured.iter().any(|f| is_echo_reply(f, 3, &payload)));
    assert_eq!(h.net.stats().forwarded_in, 2);
    // A SYN forwarded here is accepted like any other.
    let client = h.client.connect(40010, 4096);
    h.accept_one();
    assert_eq!(h.client.tcp(client).state(), State::Established);
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let mut config = config();
    config.vnet_hdr = true;
    let mut h = Harness::new(config, LinkKind::Tap, Vnet::Zero);
    let good = echo_request(4, b"after the garbage");
    let partial = |start: u16, offset: u16| {
        let header =
            VnetHeader { flags: frame::F_NEEDS_CSUM, csum_start: start, csum_offset: offset, ..VnetHeader::NONE };
        [&header.to_bytes()[..], &good].concat()
    };
    let udp_gso = VnetHeader { gso_type: frame::GSO_UDP_L4, gso_size: 1000, ..VnetHeader::NONE };
    let tcp_gso_of_icmp = VnetHeader { gso_type: frame::GSO_TCPV4, gso_size: 100, ..VnetHeader::NONE };
    let garbage: Vec<Vec<u8>> = vec![
        vec![1, 2, 3],                                            // shorter than the vnet header
        VnetHeader::NONE.to_bytes().to_vec(),                     // a header and no frame
        [&VnetHeader::NONE.to_bytes()[..], &[0xab; 13]].concat(), // a runt
        partial(u16::MAX, 0),                                     // checksum start past the end
        partial(0, good.len() as u16),                            // checksum field past the end
        [&tcp_gso_of_icmp.to_bytes()[..], &good].concat(),        // GSO of something not TCP
    ];
    for bytes in &garbage {
        h.client.write_raw(bytes);
    }
    h.client.write_raw(&[&udp_gso.to_bytes()[..], &good].concat());
    // Frames smoltcp itself rejects (bad checksum) are not ours to count, but must not hurt.
    let mut bad_checksum = echo_request(5, b"x");
    bad_checksum[40] ^= 0xff;
    h.client.inject(&bad_checksum);
    h.until(Duration::from_secs(5), |h| h.net.stats().frames_in == garbage.len() as u64 + 2);
    let stats = h.net.stats();
    assert_eq!(stats.malformed_frames, garbage.len() as u64, "{stats:?}");
    assert_eq!(stats.gso_unsupported, 1);
    // The stack still works.
    h.client.capture = true;
    h.client.inject(&arp_request());
    h.client.inject(&good);
    h.until(Duration::from_secs(5), |h| h.client.captured.iter().any(|f| is_echo_reply(f, 4, b"after the garbage")));
    let client = h.client.connect(40011, 4096);
    h.accept_one();
    assert_eq!(h.client.tcp(client).state(), State::Established);
}

// ---------------------------------------------------------------------------------------------
// The HTTP server runs on SmolNet as on KernelNet.

#[test]
fn the_http_server_serves_over_smolnet() {
    let mut ring = Ring::new(RingConfig { entries: 256, recv_buffers: 0, recv_buffer_bytes: 0 }).unwrap();
    let (server_end, client_end) = socketpair();
    let epoch = Instant::now();
    let mut net = SmolNet::new(server_end, LinkKind::Tap, config(), Forwarder::single()).unwrap();
    net.start(&mut ring, epoch);
    let mut http = HttpServer::new(net, Limits::default());
    let mut client = Client::new(client_end, Vnet::Off, epoch);
    let socket = client.connect(40012, 16 * 1024);
    let mut requests: Vec<IncomingRequest> = Vec::new();
    let mut sent = 0;
    let request = b"GET /hello HTTP/1.1\r\nhost: isobar\r\n\r\n".to_vec();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.ends_with(b"hi from smoltcp") {
        assert!(Instant::now() < deadline, "no response; got {:?}", String::from_utf8_lossy(&got));
        let mut completions = Vec::new();
        ring.wait(Some(Duration::from_millis(1)), &mut completions).unwrap();
        let now = Instant::now();
        for completion in completions {
            http.on_completion(&mut ring, completion, now, &mut requests);
        }
        http.poll(&mut ring, now, &mut requests);
        for incoming in requests.drain(..) {
            assert_eq!(incoming.request.target(), "/hello");
            let response =
                Response::new(200).with_header("content-type", "text/plain").with_body(&b"hi from smoltcp"[..]);
            http.respond(&mut ring, incoming.conn, incoming.request.id(), response, now, &mut Vec::new());
        }
        client_transfer(client.tcp(socket), &request, &mut sent, &mut got);
        client.pump();
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(http.stats().requests, 1);
}

/// A certificate for `name` from a CA made for the test, and a client that trusts that CA.
fn test_certificate(name: &str) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let pair = netstack::tls::CertKeyPem {
        source_name: "test",
        key_source_name: "test key",
        cert_chain: cert_pem.as_bytes(),
        key: key_pem.as_bytes(),
    };
    let server = netstack::tls::server_config(&[pair]).unwrap();
    let client = netstack::tls::client_config(&[("test CA", ca.pem().as_bytes())]).unwrap();
    (server, client)
}

#[test]
fn the_http_server_serves_https_beside_http_over_smolnet() {
    const TLS_PORT: u16 = 8443;
    let (server_tls, client_tls) = test_certificate("smol.test");
    let mut ring = Ring::new(RingConfig { entries: 256, recv_buffers: 0, recv_buffer_bytes: 0 }).unwrap();
    let (server_end, client_end) = socketpair();
    let epoch = Instant::now();
    let mut smol = config();
    smol.extra_listen_ports = vec![TLS_PORT];
    let mut net = SmolNet::new(server_end, LinkKind::Tap, smol, Forwarder::single()).unwrap();
    net.start(&mut ring, epoch);
    let mut http = HttpServer::new(net, Limits::default());
    http.set_tls(Some(netstack::server::ServerTls::new(TLS_PORT, server_tls)));
    let mut client = Client::new(client_end, Vnet::Off, epoch);
    let plain = client.connect(40020, 16 * 1024);
    let secure = client.connect_to(TLS_PORT, 40021, 16 * 1024);
    let name = rustls::pki_types::ServerName::try_from("smol.test").unwrap();
    let mut tls = rustls::ClientConnection::new(client_tls, name).unwrap();
    // Two requests on the TLS connection (keep-alive), one on the plain one.
    std::io::Write::write_all(&mut tls.writer(), b"GET /s1 HTTP/1.1\r\nhost: smol.test\r\n\r\n").unwrap();
    std::io::Write::write_all(&mut tls.writer(), b"GET /s2 HTTP/1.1\r\nhost: smol.test\r\n\r\n").unwrap();
    let plain_request = b"GET /p HTTP/1.1\r\nhost: smol.test\r\n\r\n".to_vec();
    let (mut plain_sent, mut plain_got) = (0, Vec::new());
    let (mut records_out, mut secure_got) = (Vec::<u8>::new(), Vec::new());
    let mut requests: Vec<IncomingRequest> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = |secure_got: &[u8], plain_got: &[u8]| {
        String::from_utf8_lossy(secure_got).matches("HTTP/1.1 200").count() == 2 && plain_got.ends_with(b"/p plain")
    };
    while !done(&secure_got, &plain_got) {
        assert!(
            Instant::now() < deadline,
            "no responses; tls {:?}, plain {:?}",
            String::from_utf8_lossy(&secure_got),
            String::from_utf8_lossy(&plain_got)
        );
        let mut completions = Vec::new();
        ring.wait(Some(Duration::from_millis(1)), &mut completions).unwrap();
        let now = Instant::now();
        for completion in completions {
            http.on_completion(&mut ring, completion, now, &mut requests);
        }
        http.poll(&mut ring, now, &mut requests);
        for incoming in requests.drain(..) {
            let kind = if incoming.tls { "tls" } else { "plain" };
            let body = format!("{} {kind}", incoming.request.target());
            let response = Response::new(200).with_body(body.into_bytes());
            http.respond(&mut ring, incoming.conn, incoming.request.id(), response, now, &mut Vec::new());
        }
        client_transfer(client.tcp(plain), &plain_request, &mut plain_sent, &mut plain_got);
        // The TLS client over the smoltcp socket: records out, records in, plaintext out.
        let socket = client.tcp(secure);
        while tls.wants_write() {
            tls.write_tls(&mut records_out).unwrap();
        }
        if !records_out.is_empty() && socket.can_send() {
            let sent = socket.send_slice(&records_out).unwrap();
            records_out.drain(..sent);
        }
        while socket.can_recv() {
            socket
                .recv(|bytes| {
                    let mut reader: &[u8] = bytes;
                    let read = tls.read_tls(&mut reader).unwrap();
                    (read, ())
                })
                .unwrap();
            tls.process_new_packets().unwrap();
        }
        let mut chunk = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut tls.reader(), &mut chunk) {
            if n == 0 {
                break;
            }
            secure_got.extend_from_slice(&chunk[..n]);
        }
        client.pump();
    }
    let text = String::from_utf8_lossy(&secure_got);
    assert!(text.contains("/s1 tls") && text.ends_with("/s2 tls"), "{text}");
    assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]));
    let stats = http.stats();
    assert_eq!((stats.requests, stats.tls_handshakes, stats.tls_errors), (3, 1, 0));
}
