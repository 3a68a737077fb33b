//! [`SmolStack`]: one core's smoltcp interface, its sockets and the connection table, sans-IO.
//! Frames go in ([`SmolStack::receive_link`], [`SmolStack::receive_forwarded`]), time goes in
//! ([`SmolStack::poll`]), frames come out ([`SmolStack::take_tx`]) and connection events come
//! out through the callback, following the [`crate::transport`] grammar. [`super::SmolNet`] is
//! the thin I/O shell that moves frames between this and the core's ring; the fuzzer and
//! simulation tests drive this directly.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel_shim::ring::Errno;
use slab::Slab;
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::Socket;
use smoltcp::socket::tcp::{self, CongestionControl, State};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpEndpoint};

use super::device::{LinkDevice, RxFrame};
use super::{
    CONNECT_TIMEOUT, EGRESS_PASSES_MAX, HANDSHAKE_TIMEOUT, INBOX_BATCH_MAX, LINGER_MAX, PENDING_SPARE_BYTES_MAX,
    RX_QUEUE_FRAMES_MAX, SmolConfig, SmolConfigError, SmolStats, TX_BLOCKED_RETRY, TX_FRAMES_MAX,
};
use crate::admission::{Admitted, ConnAdmission, RefusedConns};
use crate::frame::{self, FrameError, Received, VNET_HDR_LEN};
use crate::steer::{self, Forwarder, Owner};
use crate::transport::{ConnEvent, ConnId, ConnectError, SendError};

const TCP_SYN: u8 = 0x02;
const VLAN_TAG_BYTES: usize = 4;
const TCP_ACK: u8 = 0x10;

/// ETIMEDOUT: the peer stopped answering (retransmissions, keep-alives or the handshake).
pub const TIMED_OUT: Errno = Errno::from_raw(libc::ETIMEDOUT);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Outbound, SYN sent.
    Connecting,
    Open,
    /// `close` was called: flushing the send queue into the socket.
    Draining,
    /// FIN queued: waiting for the socket to reach TIME-WAIT or CLOSED.
    Closing,
    /// `abort` was called (or the close timed out): `Closed` at the next scan.
    Aborted,
}

/// Where a socket lives: the set of its flow's bucket, and its handle in that set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sock {
    bucket: usize,
    handle: SocketHandle,
}

/// Sockets per set the stack aims at: smoltcp walks a whole set for every received segment
/// (to find its socket) and on every poll of the set, so sets stay small.
const SOCKETS_PER_SET: usize = 16;
/// The most sets, whatever `conns_max` is.
const SETS_MAX: usize = 256;

/// The set a flow's socket lives in: FNV-1a over the peer's address and port and our port.
fn bucket_of(peer_ip: &[u8], peer_port: u16, local_port: u16, sets: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in peer_ip.iter().chain(&peer_port.to_be_bytes()).chain(&local_port.to_be_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % sets as u64) as usize
}

fn ip_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (bytes, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

struct Conn {
    generation: u32,
    sock: Sock,
    phase: Phase,
    /// The local port taken from this core's range, for outbound connections.
    local_port: Option<u16>,
    /// Bytes that did not fit in the socket's transmit buffer: `pending[pending_at..]`.
    pending: Vec<u8>,
    pending_at: usize,
    recv_paused: bool,
    peer_closed: bool,
    /// A send happened and `SendDone` has not been reported since.
    send_done_owed: bool,
    /// When a graceful close gives up and resets: set by the first scan after `close` (which
    /// does not know the time; the stack's last `now` may be long past on an idle core).
    close_deadline: Option<Instant>,
    /// The connection's place under the edge caps (accepted connections, when caps are set);
    /// given back when it leaves the table.
    _admitted: Option<Admitted>,
}

impl Conn {
    fn queued(&self) -> usize {
        self.pending.len() - self.pending_at
    }
}

/// A socket no connection owns any more that still has something to do: TIME-WAIT (10 s in
/// smoltcp) or a reset not yet sent. It counts against the pool until it is done.
#[derive(Clone, Copy)]
struct Lingering {
    sock: Sock,
    local_port: Option<u16>,
    /// Set at the first scan after the socket began lingering (commands do not know the time).
    until: Option<Instant>,
}

/// This core's outbound ports, handed out in turn.
struct PortPool {
    first: u16,
    used: Vec<bool>,
    next: usize,
}

impl PortPool {
    fn new((first, count): (u16, u16)) -> PortPool {
        PortPool { first, used: vec![false; usize::from(count)], next: 0 }
    }

    fn take(&mut self) -> Option<u16> {
        let count = self.used.len();
        for _ in 0..count {
            let index = self.next;
            self.next = (self.next + 1) % count;
            if !self.used[index] {
                self.used[index] = true;
                return u16::try_from(usize::from(self.first) + index).ok();
            }
        }
        None
    }

    fn free(&mut self, port: u16) {
        if let Some(used) = port.checked_sub(self.first).and_then(|i| self.used.get_mut(usize::from(i))) {
            *used = false;
        }
    }
}

/// One core's TCP/IP stack, sans-IO. See the module documentation.
pub struct SmolStack {
    config: SmolConfig,
    iface: Interface,
    device: LinkDevice,
    /// The sockets, split by flow hash into small sets: a received frame is handed to its flow's
    /// set only, and only sets with work (touched, or a timer due) are polled.
    sets: Vec<SocketSet<'static>>,
    /// Sets changed since their last poll (a frame in, a send, a close, a new socket).
    touched: Vec<bool>,
    /// When each set next needs smoltcp, as of its last poll.
    set_poll_at: Vec<Option<SmolInstant>>,
    conns: Slab<Conn>,
    generation: u32,
    /// Sockets in LISTEN (as of the last look).
    listening: Vec<Sock>,
    /// Former listeners in SYN-RECEIVED: not yet connections, already counted.
    handshaking: Vec<Sock>,
    lingering: Vec<Lingering>,
    /// Closed sockets kept for reuse (their buffers are the expensive part), outside the set.
    spare: Vec<tcp::Socket<'static>>,
    ports: PortPool,
    forwarder: Forwarder,
    /// Empty read buffers of `read_bytes` capacity.
    read_pool: Vec<Vec<u8>>,
    read_pool_max: usize,
    read_bytes: usize,
    epoch: Option<Instant>,
    now: Option<Instant>,
    /// Something changed since the last poll that smoltcp has not seen.
    dirty: bool,
    stopping: bool,
    listener_closed_owed: bool,
    next_poll_at: Option<Instant>,
    stats: SmolStats,
    refused: RefusedConns,
    admission: Option<Arc<ConnAdmission>>,
    scratch: Vec<u8>,
    segments: Vec<Vec<u8>>,
    slots: Vec<usize>,
}

impl std::fmt::Debug for SmolStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolStack").field("conns", &self.conns.len()).field("stats", &self.stats()).finish()
    }
}

fn smol_duration(duration: Duration) -> SmolDuration {
    SmolDuration::from_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}

fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    if kernel_shim::random::fill(&mut seed).is_err() {
        // Only the ISNs depend on it; a per-process hash seed is random enough for that.
        use std::hash::{BuildHasher, Hasher};
        return std::collections::hash_map::RandomState::new().build_hasher().finish();
    }
    u64::from_ne_bytes(seed)
}

/// How long a pure ACK waits for data to carry it: smoltcp's clock is in microseconds, so this
/// holds it past the poll that received the segment (whose egress runs at the same instant) and
/// releases it on the next one, after the application had its turn to answer. Tiny on purpose:
/// a peer that waits for our ACK (its Nagle, a full window) waits one scheduler turn, never
/// smoltcp's default 10 ms.
const ACK_HOLD: SmolDuration = SmolDuration::from_micros(1);

/// Request/response tuning every socket gets, whatever it is used for.
fn tune(socket: &mut tcp::Socket<'static>, timeout: Duration, keep_alive: Option<Duration>) {
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(Some(ACK_HOLD));
    socket.set_congestion_control(CongestionControl::Reno);
    socket.set_timeout(Some(smol_duration(timeout)));
    socket.set_keep_alive(keep_alive.map(smol_duration));
}

impl SmolStack {
    /// A stack for one core. Allocates the connection table, the socket set's index and the
    /// port pool here; socket buffers are allocated as sockets are first needed and then
    /// reused.
    pub fn new(config: SmolConfig, forwarder: Forwarder) -> Result<SmolStack, SmolConfigError> {
        config.check()?;
        if forwarder.cores() != config.steering.cores || forwarder.core() != config.steering.core {
            return Err(SmolConfigError::ForwarderMismatch {
                forwarder_core: forwarder.core(),
                forwarder_cores: forwarder.cores(),
                core: config.steering.core,
                cores: config.steering.cores,
            });
        }
        let tx_header = if config.vnet_hdr { VNET_HDR_LEN } else { 0 };
        let mut device = LinkDevice {
            rx: std::collections::VecDeque::with_capacity(RX_QUEUE_FRAMES_MAX),
            rx_spent: Vec::new(),
            tx: std::collections::VecDeque::with_capacity(TX_FRAMES_MAX),
            tx_in_flight: 0,
            tx_frames_max: TX_FRAMES_MAX,
            tx_header,
            frame_pool: Vec::new(),
            frame_pool_max: 2 * TX_FRAMES_MAX,
            mtu: config.mtu + frame::ETHERNET_HEADER_LEN,
        };
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(config.mac)));
        iface_config.random_seed = config.random_seed.unwrap_or_else(random_seed);
        let mut iface = Interface::new(iface_config, &mut device, SmolInstant::ZERO);
        iface.update_ip_addrs(|addrs| {
            for cidr in &config.ips {
                // `check` bounded the count to what the interface holds.
                let _ = addrs.push(*cidr);
            }
        });
        for gateway in &config.gateways {
            // `check` allowed one gateway per family, which the route table holds.
            let _ = match gateway {
                IpAddr::V4(v4) => iface.routes_mut().add_default_ipv4_route(*v4),
                IpAddr::V6(v6) => iface.routes_mut().add_default_ipv6_route(*v6),
            };
        }
        // A TAP read reports a frame's full length even when the buffer was shorter (and the
        // ring treats that as a broken invariant), and the largest frame a TAP can hand over
        // is a 64 KiB IP packet whatever the MTU says (a TSO super-frame, or an MTU raised
        // behind our back): every read buffer holds one.
        let read_bytes = tx_header + frame::GSO_FRAME_BYTES_MAX + VLAN_TAG_BYTES;
        let sets = (config.conns_max / SOCKETS_PER_SET).clamp(1, SETS_MAX);
        Ok(SmolStack {
            iface,
            device,
            sets: (0..sets).map(|_| SocketSet::new(Vec::<SocketStorage<'static>>::new())).collect(),
            touched: vec![false; sets],
            set_poll_at: vec![None; sets],
            conns: Slab::with_capacity(config.conns_max),
            generation: 0,
            listening: Vec::with_capacity(config.backlog),
            handshaking: Vec::new(),
            lingering: Vec::new(),
            spare: Vec::with_capacity(config.backlog),
            ports: PortPool::new(config.steering.local_ports()),
            forwarder,
            read_pool: Vec::new(),
            read_pool_max: 2 * config.reads_in_flight,
            read_bytes,
            epoch: None,
            now: None,
            dirty: false,
            stopping: false,
            listener_closed_owed: false,
            next_poll_at: None,
            stats: SmolStats::default(),
            refused: RefusedConns::default(),
            admission: None,
            scratch: Vec::new(),
            segments: Vec::new(),
            slots: Vec::with_capacity(config.conns_max),
            config,
        })
    }

    /// Starts the clock and opens the listeners. Call once, before anything else.
    pub fn start(&mut self, now: Instant) {
        assert!(self.epoch.is_none(), "SmolStack::start is called once");
        self.epoch = Some(now);
        self.now = Some(now);
        self.dirty = true;
    }

    fn touch(&mut self, bucket: usize) {
        self.touched[bucket] = true;
    }

    fn socket(&self, sock: Sock) -> &tcp::Socket<'static> {
        self.sets[sock.bucket].get::<tcp::Socket>(sock.handle)
    }

    /// The socket, its set marked for the next poll.
    fn socket_mut(&mut self, sock: Sock) -> &mut tcp::Socket<'static> {
        self.touched[sock.bucket] = true;
        self.sets[sock.bucket].get_mut::<tcp::Socket>(sock.handle)
    }

    fn add_socket(&mut self, bucket: usize, socket: tcp::Socket<'static>) -> Sock {
        self.touched[bucket] = true;
        Sock { bucket, handle: self.sets[bucket].add(socket) }
    }

    /// The set of the flow from `peer` to our `local_port`.
    fn bucket_of_peer(&self, peer: IpAddr, peer_port: u16, local_port: u16) -> usize {
        let (bytes, len) = ip_bytes(peer);
        bucket_of(&bytes[..len], peer_port, local_port, self.sets.len())
    }

    pub fn config(&self) -> &SmolConfig {
        &self.config
    }

    /// Bytes of each read buffer: the largest frame a link can hand over.
    pub fn read_bytes(&self) -> usize {
        self.read_bytes
    }

    /// Bytes of the largest frame of MTU size, with its virtio-net header and a VLAN tag: what
    /// a provided buffer must hold at least (a GSO super-frame needs [`SmolStack::read_bytes`]).
    pub fn frame_bytes_max(&self) -> usize {
        self.device.tx_header + frame::ETHERNET_HEADER_LEN + VLAN_TAG_BYTES + self.config.mtu
    }

    /// An empty buffer of [`SmolStack::read_bytes`] capacity for the next read.
    pub fn read_buffer(&mut self) -> Vec<u8> {
        self.read_pool.pop().unwrap_or_else(|| Vec::with_capacity(self.read_bytes))
    }

    /// An empty buffer for a copy of one frame (from a provided buffer).
    pub fn frame_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.device.frame_buffer();
        buf.reserve(len);
        buf
    }

    /// Gives back a buffer from [`SmolStack::read_buffer`] or [`SmolStack::frame_buffer`] that
    /// did not carry a frame.
    pub fn recycle_read(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() >= self.read_bytes && self.read_pool.len() < self.read_pool_max {
            buf.clear();
            self.read_pool.push(buf);
        } else {
            self.device.recycle_frame(buf);
        }
    }

    fn clock(&self, now: Instant) -> SmolInstant {
        let epoch = self.epoch.expect("SmolStack::start was not called");
        SmolInstant::from_micros(i64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(i64::MAX))
    }

    fn instant_of(&self, at: SmolInstant) -> Instant {
        let epoch = self.epoch.expect("SmolStack::start was not called");
        epoch + Duration::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
    }

    /// One frame as read from the link (with its virtio-net header when configured): completed,
    /// split, steered, and queued for the next [`SmolStack::poll`] (or processed at once when
    /// the queue is full). Bad frames are dropped and counted, never an error.
    pub fn receive_link(&mut self, mut buf: Vec<u8>, now: Instant, events: &mut impl FnMut(ConnEvent<'_>)) {
        self.stats.frames_in += 1;
        self.stats.bytes_in += buf.len() as u64;
        match frame::receive(&mut buf, self.config.vnet_hdr) {
            Ok(Received::Frame { start }) => {
                if self.config.vnet_hdr
                    && frame::parse_vnet_header(&buf).is_ok_and(|h| h.flags & frame::F_NEEDS_CSUM != 0)
                {
                    self.stats.checksums_completed += 1;
                }
                self.steer(RxFrame { buf, start });
            }
            Ok(Received::Gso { start, gso }) => {
                let mut segments = std::mem::take(&mut self.segments);
                let mut scratch = std::mem::take(&mut self.scratch);
                let device = &mut self.device;
                let split = frame::segment(&buf[start..], gso, &mut scratch, |segment| {
                    let mut copy = device.frame_buffer();
                    copy.extend_from_slice(segment);
                    segments.push(copy);
                });
                match split {
                    Ok(count) => {
                        self.stats.gso_frames += 1;
                        self.stats.gso_segments += count as u64;
                    }
                    Err(error) => self.drop_frame(error),
                }
                for segment in segments.drain(..) {
                    self.steer(RxFrame { buf: segment, start: 0 });
                }
                self.segments = segments;
                self.scratch = scratch;
                self.recycle_read(buf);
            }
            Err(error) => {
                self.drop_frame(error);
                self.recycle_read(buf);
            }
        }
        self.dirty = true;
        if self.device.rx.len() >= RX_QUEUE_FRAMES_MAX {
            self.poll(now, events);
        }
    }

    fn drop_frame(&mut self, error: FrameError) {
        match error {
            FrameError::UnsupportedGso { .. } => self.stats.gso_unsupported += 1,
            _ => self.stats.malformed_frames += 1,
        }
        tracing::trace!(%error, "dropped a frame from the link");
    }

    fn steer(&mut self, frame: RxFrame) {
        match self.config.steering.owner(frame.bytes()) {
            Owner::Local => self.device.rx.push_back(frame),
            Owner::Core(core) => {
                // A copy of exactly the frame: the read buffer (up to 64 KiB) stays here.
                self.forwarder.send(core, frame.bytes().to_vec());
                self.recycle_read(frame.buf);
            }
            Owner::Everyone => {
                let here = self.config.steering.core;
                for core in (0..self.config.steering.cores).filter(|core| *core != here) {
                    self.forwarder.send(core, steer::arp_copy_for_peers(frame.bytes()));
                }
                self.device.rx.push_back(frame);
            }
        }
    }

    /// A frame another core steered here: processed now, never steered again.
    pub fn receive_forwarded(&mut self, frame: Vec<u8>, now: Instant, events: &mut impl FnMut(ConnEvent<'_>)) {
        self.stats.forwarded_in += 1;
        self.device.rx.push_back(RxFrame { buf: frame, start: 0 });
        self.poll(now, events);
    }

    /// The next frame to write to the link (it starts with the virtio-net header when
    /// configured). It counts as in flight until [`SmolStack::tx_complete`].
    pub fn take_tx(&mut self) -> Option<Vec<u8>> {
        let frame = self.device.tx.pop_front()?;
        self.device.tx_in_flight += 1;
        self.stats.frames_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        Some(frame)
    }

    /// A frame from [`SmolStack::take_tx`] was written (`Ok`) or not; its buffer comes back.
    pub fn tx_complete(&mut self, buf: Vec<u8>, result: Result<usize, Errno>) {
        let was_blocked = self.device.tx_blocked();
        self.device.tx_in_flight = self.device.tx_in_flight.checked_sub(1).expect("a write that was not taken");
        match result {
            Ok(written) if written == buf.len() => {}
            Ok(_) => self.stats.write_errors += 1,
            Err(error) => {
                // The frame is lost; TCP retransmits. ENOBUFS from a full qdisc is the usual cause.
                self.stats.write_errors += 1;
                tracing::debug!(%error, "writing a frame to the link failed");
            }
        }
        self.device.recycle_frame(buf);
        if was_blocked {
            self.dirty = true;
        }
    }

    pub(crate) fn count_read_error(&mut self) {
        self.stats.read_errors += 1;
    }

    /// Runs smoltcp at `now`: forwarded frames from the inbox, queued frames, timers, then
    /// every connection's events, then what there is to send.
    pub fn poll(&mut self, now: Instant, events: &mut impl FnMut(ConnEvent<'_>)) {
        let now = self.now.map_or(now, |last| last.max(now));
        self.now = Some(now);
        let t = self.clock(now);
        self.dirty = false;
        for _ in 0..INBOX_BATCH_MAX {
            let Some(frame) = self.forwarder.try_recv() else { break };
            self.stats.forwarded_in += 1;
            self.device.rx.push_back(RxFrame { buf: frame, start: 0 });
        }
        // A graceful close whose time is up is handled by the scan: its set must be scanned.
        for (_, c) in &self.conns {
            if c.close_deadline.is_some_and(|at| at <= now) {
                self.touched[c.sock.bucket] = true;
            }
        }
        self.iface.poll_maintenance(t);
        self.ingress(t);
        self.scan(now, false, events);
        self.egress(t);
        // Timers that fired while sending (a timeout) changed states: report them now.
        self.scan(now, true, events);
        if std::mem::take(&mut self.dirty) {
            self.egress(t);
        }
        for bucket in 0..self.sets.len() {
            if std::mem::take(&mut self.touched[bucket]) {
                self.set_poll_at[bucket] = self.iface.poll_at(t, &self.sets[bucket]);
            }
        }
        while let Some(buf) = self.device.rx_spent.pop() {
            self.recycle_read(buf);
        }
        self.forwarder.flush_wakes();
        self.next_poll_at = self.compute_poll_at(now, t);
    }

    fn ingress(&mut self, t: SmolInstant) {
        // One frame at a time, so a burst of SYNs finds a fresh listener for each (up to the
        // pool bound) instead of a reset once `backlog` listeners are taken.
        // Each frame goes to its flow's set only; a SYN to our port first gets a listener there.
        let sets = self.sets.len();
        while let Some(front) = self.device.rx.front() {
            let (bucket, syn) = match steer::tcp_source(front.bytes()) {
                Some((peer, peer_port, port, flags)) => (
                    bucket_of(peer, peer_port, port, sets),
                    (self.config.listens_on(port) && flags & (TCP_SYN | TCP_ACK) == TCP_SYN).then_some(port),
                ),
                // ARP, ICMP, UDP: the interface answers them itself, whatever the set.
                None => (0, None),
            };
            if let Some(port) = syn {
                self.ensure_listener(bucket, port);
            }
            self.touch(bucket);
            self.iface.poll_ingress_single(t, &mut self.device, &mut self.sets[bucket]);
            if syn.is_some() {
                self.refresh_listeners();
            }
        }
    }

    /// Sends what the sets that changed, or whose timers are due, have to send.
    fn egress(&mut self, t: SmolInstant) {
        for bucket in 0..self.sets.len() {
            if !self.touched[bucket] && self.set_poll_at[bucket].is_none_or(|at| at > t) {
                continue;
            }
            // A timer that fires here may end a connection: the scan after egress looks.
            self.touch(bucket);
            for _ in 0..EGRESS_PASSES_MAX {
                let result = self.iface.poll_egress(t, &mut self.device, &mut self.sets[bucket]);
                if result == PollResult::None || self.device.tx_blocked() {
                    break;
                }
            }
            if self.device.tx_blocked() {
                break;
            }
        }
    }

    fn compute_poll_at(&mut self, now: Instant, t: SmolInstant) -> Option<Instant> {
        if self.forwarder.has_inbound() || !self.device.rx.is_empty() {
            return Some(now);
        }
        let mut at = self.set_poll_at.iter().flatten().min().map(|at| self.instant_of((*at).max(t)));
        if self.device.tx_blocked() {
            // Sending must wait for writes to complete (which marks us dirty); do not spin.
            at = at.map(|at| at.max(now + TX_BLOCKED_RETRY));
        }
        let deadlines = self.conns.iter().filter_map(|(_, c)| c.close_deadline);
        let deadlines = deadlines.chain(self.lingering.iter().filter_map(|l| l.until));
        deadlines.fold(at, |at, deadline| Some(at.map_or(deadline, |at| at.min(deadline))))
    }

    /// When [`SmolStack::poll`] next has work: now if something changed since the last poll.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.dirty || self.forwarder.has_inbound() { self.now } else { self.next_poll_at }
    }

    fn sockets_in_use(&self) -> usize {
        self.listening.len() + self.handshaking.len() + self.conns.len() + self.lingering.len() + self.spare.len()
    }

    /// A socket for a new listener or connection, unless the pool is at `conns_max`.
    fn take_socket(&mut self) -> Option<tcp::Socket<'static>> {
        if let Some(socket) = self.spare.pop() {
            return Some(socket);
        }
        if self.sockets_in_use() >= self.config.conns_max {
            return None;
        }
        let rx = tcp::SocketBuffer::new(vec![0u8; self.config.rx_buffer_bytes]);
        let tx = tcp::SocketBuffer::new(vec![0u8; self.config.tx_buffer_bytes]);
        let socket = tcp::Socket::new(rx, tx);
        self.stats.sockets_max = self.stats.sockets_max.max(self.sockets_in_use() + 1);
        Some(socket)
    }

    /// Takes a socket out of the set for good: kept as a spare (bounded) or freed.
    fn release(&mut self, sock: Sock, local_port: Option<u16>) {
        let socket = self.sets[sock.bucket].remove(sock.handle);
        if let Some(port) = local_port {
            self.ports.free(port);
        }
        match socket {
            Socket::Tcp(mut socket) if self.spare.len() < self.config.backlog => {
                // A socket given up on in TIME-WAIT is still "open": close it, so that `listen`
                // and `connect` (which reset it) accept it again. Outside the set it sends nothing.
                if socket.state() != State::Closed {
                    socket.abort();
                }
                self.spare.push(socket);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// A socket whose connection is over: released now if it has nothing left to send, else
    /// kept (and counted) until its TIME-WAIT ends or its reset is out.
    fn retire(&mut self, sock: Sock, local_port: Option<u16>) {
        let socket = self.socket(sock);
        if socket.state() == State::Closed && socket.remote_endpoint().is_none() {
            self.release(sock, local_port);
        } else {
            self.lingering.push(Lingering { sock, local_port, until: None });
            self.touch(sock.bucket);
            self.dirty = true;
        }
    }

    /// Listeners that took a SYN become handshakes.
    fn refresh_listeners(&mut self) {
        let mut index = 0;
        while index < self.listening.len() {
            let sock = self.listening[index];
            if self.socket(sock).state() == State::Listen {
                index += 1;
            } else {
                self.listening.swap_remove(index);
                self.handshaking.push(sock);
            }
        }
    }

    /// A listener on `port` in `bucket`'s set, for a SYN about to be handed to it. Listeners
    /// are made as SYNs arrive, in the set of their flow, because smoltcp only offers a segment
    /// to the sockets of the set it is given.
    fn ensure_listener(&mut self, bucket: usize, port: u16) {
        let listening_here =
            |stack: &SmolStack, l: &Sock| l.bucket == bucket && stack.socket(*l).listen_endpoint().port == port;
        if self.stopping || !self.config.listens_on(port) || self.listening.iter().any(|l| listening_here(self, l)) {
            return;
        }
        let Some(mut socket) = self.take_socket() else {
            // The pool is full: smoltcp resets the SYN (no socket accepts it) until
            // connections close.
            self.stats.listen_starved += 1;
            return;
        };
        tune(&mut socket, HANDSHAKE_TIMEOUT, None);
        if let Err(error) = socket.listen(port) {
            // Cannot happen: a closed socket, a non-zero port.
            tracing::error!(%error, "a spare socket refused to listen");
            return;
        }
        let sock = self.add_socket(bucket, socket);
        self.listening.push(sock);
    }

    fn insert_conn(&mut self, sock: Sock, phase: Phase, local_port: Option<u16>, admitted: Option<Admitted>) -> ConnId {
        self.generation = self.generation.wrapping_add(1);
        let conn = Conn {
            _admitted: admitted,
            generation: self.generation,
            sock,
            phase,
            local_port,
            pending: Vec::new(),
            pending_at: 0,
            recv_paused: false,
            peer_closed: false,
            send_done_owed: false,
            close_deadline: None,
        };
        let slot = self.conns.insert(conn);
        ConnId { slot: slot as u32, generation: self.generation }
    }

    fn open_tuning(&self) -> (Duration, Option<Duration>) {
        (self.config.idle_timeout, Some(self.config.idle_timeout / 4))
    }

    /// Looks at every socket after smoltcp ran and reports what changed. `after_egress` tells
    /// how a socket that died did: during ingress it was a reset, while sending a timeout.
    fn scan(&mut self, now: Instant, after_egress: bool, events: &mut impl FnMut(ConnEvent<'_>)) {
        self.refresh_listeners();
        let (idle, keep_alive) = self.open_tuning();
        let mut index = 0;
        while index < self.handshaking.len() {
            let sock = self.handshaking[index];
            let socket = self.sets[sock.bucket].get_mut::<tcp::Socket>(sock.handle);
            match socket.state() {
                State::SynReceived => {
                    index += 1;
                    continue;
                }
                State::Established | State::CloseWait => {
                    tune(socket, idle, keep_alive);
                    let peer =
                        socket.remote_endpoint().map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), SocketAddr::from);
                    let local_port = socket.local_endpoint().map_or(0, |local| local.port);
                    self.handshaking.swap_remove(index);
                    let admitted = match self.admission.as_ref().map(|a| a.admit(peer.ip())) {
                        None => None,
                        Some(Ok(admitted)) => Some(admitted),
                        Some(Err(refusal)) => {
                            // Beyond a cap: reset now, before the HTTP server sees it.
                            self.refused.count(refusal);
                            socket.abort();
                            self.touch(sock.bucket);
                            self.retire(sock, None);
                            self.dirty = true;
                            continue;
                        }
                    };
                    let conn = self.insert_conn(sock, Phase::Open, None, admitted);
                    self.stats.conns_accepted += 1;
                    events(ConnEvent::Accepted { conn, peer, local_port });
                }
                // A reset during the handshake put it back to listening.
                State::Listen if !self.stopping && self.listening.len() < self.config.backlog => {
                    self.handshaking.swap_remove(index);
                    self.listening.push(sock);
                }
                State::Closed => {
                    // The handshake timed out or was reset before we saw it established.
                    self.handshaking.swap_remove(index);
                    self.retire(sock, None);
                }
                _ => {
                    socket.abort();
                    self.touch(sock.bucket);
                    self.handshaking.swap_remove(index);
                    self.retire(sock, None);
                    self.dirty = true;
                }
            }
        }

        let mut slots = std::mem::take(&mut self.slots);
        // Only connections whose set smoltcp or a command touched can have changed.
        slots.extend(self.conns.iter().filter(|(_, c)| self.touched[c.sock.bucket]).map(|(slot, _)| slot));
        for slot in slots.drain(..) {
            self.scan_conn(slot, now, after_egress, events);
        }
        self.slots = slots;

        let mut index = 0;
        while index < self.lingering.len() {
            let Lingering { sock, local_port, .. } = self.lingering[index];
            let socket = self.socket(sock);
            let done = socket.state() == State::Closed && socket.remote_endpoint().is_none();
            let until = *self.lingering[index].until.get_or_insert(now + LINGER_MAX);
            if done || now >= until {
                self.lingering.swap_remove(index);
                self.release(sock, local_port);
            } else {
                index += 1;
            }
        }
        if std::mem::take(&mut self.listener_closed_owed) {
            events(ConnEvent::ListenerClosed);
        }
    }

    fn scan_conn(&mut self, slot: usize, now: Instant, after_egress: bool, events: &mut impl FnMut(ConnEvent<'_>)) {
        let (idle, keep_alive) = self.open_tuning();
        let conn = &mut self.conns[slot];
        let id = ConnId { slot: slot as u32, generation: conn.generation };
        let socket = self.sets[conn.sock.bucket].get_mut::<tcp::Socket>(conn.sock.handle);
        let state = socket.state();

        if conn.phase == Phase::Connecting {
            match state {
                State::SynSent | State::SynReceived => return,
                State::Closed => {
                    let error = if after_egress { TIMED_OUT } else { Errno::CONNECTION_REFUSED };
                    events(ConnEvent::ConnectFailed { conn: id, error });
                    return self.finish(slot, events);
                }
                _ => {
                    tune(socket, idle, keep_alive);
                    conn.phase = Phase::Open;
                    self.stats.conns_connected += 1;
                    events(ConnEvent::Connected { conn: id });
                }
            }
        }
        if matches!(conn.phase, Phase::Draining | Phase::Closing)
            && *conn.close_deadline.get_or_insert(now + self.config.close_timeout) <= now
        {
            tracing::debug!(slot, "graceful close timed out; resetting the connection");
            socket.abort();
            conn.phase = Phase::Aborted;
            self.dirty = true;
        }
        match conn.phase {
            Phase::Connecting => unreachable!("handled above"),
            Phase::Open => {
                if state == State::Closed {
                    let error = if after_egress { TIMED_OUT } else { Errno::CONNECTION_RESET };
                    events(ConnEvent::Failed { conn: id, error });
                    return self.finish(slot, events);
                }
                if !conn.recv_paused {
                    // At most two contiguous pieces: the ring buffer's tail, then its head.
                    for _ in 0..2 {
                        let received = socket.recv(|bytes| {
                            if !bytes.is_empty() {
                                events(ConnEvent::Received { conn: id, bytes });
                            }
                            (bytes.len(), bytes.len())
                        });
                        match received {
                            Ok(0) | Err(_) => break,
                            Ok(_) => self.dirty = true, // the window opened
                        }
                    }
                }
                if flush_pending(conn, socket) {
                    self.dirty = true;
                }
                if conn.send_done_owed && conn.queued() == 0 {
                    conn.send_done_owed = false;
                    events(ConnEvent::SendDone { conn: id });
                }
                if !conn.peer_closed && !socket.may_recv() {
                    conn.peer_closed = true;
                    events(ConnEvent::PeerClosed { conn: id });
                }
            }
            Phase::Draining | Phase::Closing => {
                discard_received(socket);
                if state == State::Closed || (conn.phase == Phase::Closing && state == State::TimeWait) {
                    return self.finish(slot, events);
                }
                if conn.phase == Phase::Draining {
                    flush_pending(conn, socket);
                    if conn.queued() == 0 {
                        // FIN after what the socket holds.
                        socket.close();
                        conn.phase = Phase::Closing;
                    }
                    self.dirty = true;
                }
            }
            Phase::Aborted => self.finish(slot, events),
        }
    }

    /// Reports `Closed` and retires the socket; the id is stale from here.
    fn finish(&mut self, slot: usize, events: &mut impl FnMut(ConnEvent<'_>)) {
        let conn = self.conns.remove(slot);
        events(ConnEvent::Closed { conn: ConnId { slot: slot as u32, generation: conn.generation } });
        self.retire(conn.sock, conn.local_port);
    }

    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        let slot = conn.slot as usize;
        self.conns.get(slot).filter(|c| c.generation == conn.generation).map(|_| slot)
    }

    fn check_send(&self, conn: ConnId, len: usize) -> Result<usize, SendError> {
        let slot = self.slot_of(conn).ok_or(SendError::Closed)?;
        let c = &self.conns[slot];
        if !matches!(c.phase, Phase::Open | Phase::Connecting) {
            return Err(SendError::Closed);
        }
        let (queued, max) = (c.queued(), self.config.send_queue_bytes_max);
        if queued > 0 && queued + len > max {
            return Err(SendError::QueueFull { queued_bytes: queued, queued_bytes_max: max });
        }
        Ok(slot)
    }

    /// Copies `bytes` into the socket's transmit buffer; what does not fit waits in the
    /// connection's queue (bounded by `send_queue_bytes_max`, as [`crate::KernelNet`]'s).
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        let slot = self.check_send(conn, bytes.len())?;
        let c = &mut self.conns[slot];
        let mut taken = 0;
        if c.phase == Phase::Open && c.queued() == 0 {
            taken = self.sets[c.sock.bucket].get_mut::<tcp::Socket>(c.sock.handle).send_slice(bytes).unwrap_or(0);
        }
        c.pending.extend_from_slice(&bytes[taken..]);
        c.send_done_owed = true;
        self.touched[c.sock.bucket] = true;
        self.dirty = true;
        Ok(())
    }

    /// Like [`SmolStack::send`]; the rest of `bytes` becomes the queue without a copy.
    pub fn send_owned(&mut self, conn: ConnId, bytes: Vec<u8>) -> Result<(), SendError> {
        let slot = self.check_send(conn, bytes.len())?;
        let c = &mut self.conns[slot];
        if c.queued() == 0 {
            let taken = match c.phase {
                Phase::Open => {
                    self.sets[c.sock.bucket].get_mut::<tcp::Socket>(c.sock.handle).send_slice(&bytes).unwrap_or(0)
                }
                _ => 0,
            };
            if taken < bytes.len() {
                c.pending = bytes;
                c.pending_at = taken;
            }
        } else {
            c.pending.extend_from_slice(&bytes);
        }
        c.send_done_owed = true;
        self.touched[c.sock.bucket] = true;
        self.dirty = true;
        Ok(())
    }

    /// Bytes queued on `conn` that the socket has not taken yet (0 for a stale id).
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.slot_of(conn).map_or(0, |slot| self.conns[slot].queued())
    }

    /// Graceful close: flush the queue, FIN, wait (bounded by `close_timeout`) for the peer's
    /// FIN; bytes arriving meanwhile are discarded. `Closed` follows.
    pub fn close(&mut self, conn: ConnId) {
        let Some(slot) = self.slot_of(conn) else { return };
        let c = &mut self.conns[slot];
        match c.phase {
            Phase::Connecting => self.abort(conn),
            Phase::Open => {
                c.phase = Phase::Draining;
                self.touched[c.sock.bucket] = true;
                self.dirty = true;
            }
            Phase::Draining | Phase::Closing | Phase::Aborted => {}
        }
    }

    /// Reset now, discarding queued output. `Closed` follows.
    pub fn abort(&mut self, conn: ConnId) {
        let Some(slot) = self.slot_of(conn) else { return };
        let c = &mut self.conns[slot];
        if c.phase == Phase::Aborted {
            return;
        }
        self.touched[c.sock.bucket] = true;
        self.sets[c.sock.bucket].get_mut::<tcp::Socket>(c.sock.handle).abort();
        c.phase = Phase::Aborted;
        c.pending = Vec::new();
        c.pending_at = 0;
        self.dirty = true;
    }

    /// Stop draining `conn`'s receive buffer: the window closes and the peer stops sending.
    pub fn pause_recv(&mut self, conn: ConnId) {
        if let Some(slot) = self.slot_of(conn) {
            self.conns[slot].recv_paused = true;
        }
    }

    pub fn resume_recv(&mut self, conn: ConnId) {
        if let Some(slot) = self.slot_of(conn)
            && std::mem::take(&mut self.conns[slot].recv_paused)
        {
            self.touch(self.conns[slot].sock.bucket);
            self.dirty = true;
        }
    }

    /// Opens a connection from a port of this core's range; `Connected` or `ConnectFailed`
    /// follows (a reset: ECONNREFUSED; no answer within 10 s: ETIMEDOUT).
    pub fn connect(&mut self, addr: SocketAddr) -> Result<ConnId, ConnectError> {
        let conns_max = u32::try_from(self.config.conns_max).unwrap_or(u32::MAX);
        let Some(mut socket) = self.take_socket() else {
            return Err(ConnectError::TooManyConns { conns_max });
        };
        let Some(port) = self.ports.take() else {
            self.spare.push(socket);
            let error =
                io::Error::new(io::ErrorKind::AddrNotAvailable, "every local port of this core's range is in use");
            return Err(ConnectError::Socket { error });
        };
        tune(&mut socket, CONNECT_TIMEOUT, None);
        if let Err(error) = socket.connect(self.iface.context(), IpEndpoint::from(addr), port) {
            self.ports.free(port);
            self.spare.push(socket);
            let error = io::Error::new(io::ErrorKind::NetworkUnreachable, format!("cannot connect to {addr}: {error}"));
            return Err(ConnectError::Socket { error });
        }
        let bucket = self.bucket_of_peer(addr.ip(), addr.port(), port);
        let sock = self.add_socket(bucket, socket);
        self.dirty = true;
        Ok(self.insert_conn(sock, Phase::Connecting, Some(port), None))
    }

    /// Closes the listeners (resetting half-open handshakes); `ListenerClosed` follows at the
    /// next poll. Open connections go on.
    pub fn stop_accepting(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        for sock in std::mem::take(&mut self.listening) {
            self.socket_mut(sock).close();
            self.release(sock, None);
        }
        for sock in std::mem::take(&mut self.handshaking) {
            self.socket_mut(sock).abort();
            self.retire(sock, None);
        }
        self.listener_closed_owed = true;
        self.dirty = true;
    }

    /// Puts accepted connections under the per-client and total caps of `admission` (shared
    /// with the other cores): one beyond a cap is reset as soon as its handshake completes,
    /// and counted.
    pub fn set_admission(&mut self, admission: Arc<ConnAdmission>) {
        self.admission = Some(admission);
    }

    /// Connections reset at once, by reason (`table_full` stays 0: a full pool refuses the SYN
    /// instead, counted as `listen_starved`).
    pub fn refused(&self) -> RefusedConns {
        self.refused
    }

    /// Whether listeners are open.
    pub fn is_listening(&self) -> bool {
        !self.stopping && self.config.listen_ports().next().is_some()
    }

    /// Connections in the table (not TIME-WAIT sockets, which no connection owns).
    pub fn open_conns(&self) -> usize {
        self.conns.len()
    }

    /// The local address of `conn` (None for a stale id or before the handshake).
    pub fn local_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        let slot = self.slot_of(conn)?;
        self.socket(self.conns[slot].sock).local_endpoint().map(SocketAddr::from)
    }

    pub fn stats(&self) -> SmolStats {
        let forward = self.forwarder.stats();
        SmolStats {
            forwarded_out: forward.forwarded,
            forward_dropped: forward.dropped,
            sockets: self.sockets_in_use(),
            listening: self.listening.len(),
            handshaking: self.handshaking.len(),
            lingering: self.lingering.len(),
            ..self.stats
        }
    }
}

/// Moves queued bytes into the socket's transmit buffer; true if any moved.
fn flush_pending(conn: &mut Conn, socket: &mut tcp::Socket<'static>) -> bool {
    let mut moved = false;
    while conn.pending_at < conn.pending.len() && socket.can_send() {
        match socket.send_slice(&conn.pending[conn.pending_at..]) {
            Ok(0) | Err(_) => break,
            Ok(sent) => {
                conn.pending_at += sent;
                moved = true;
            }
        }
    }
    if conn.pending_at == conn.pending.len() && conn.pending_at > 0 {
        if conn.pending.capacity() > PENDING_SPARE_BYTES_MAX {
            conn.pending = Vec::new();
        } else {
            conn.pending.clear();
        }
        conn.pending_at = 0;
    }
    moved
}

/// Reads and drops whatever the peer sent (a closing connection keeps its window open so the
/// peer can finish and send its FIN).
fn discard_received(socket: &mut tcp::Socket<'static>) {
    for _ in 0..2 {
        if !matches!(socket.recv(|bytes| (bytes.len(), bytes.len())), Ok(1..)) {
            break;
        }
    }
}
