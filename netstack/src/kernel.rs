//! [`Transport`] over kernel TCP sockets, driven through the core's io_uring.
//!
//! Per core: one SO_REUSEPORT listener per served port (HTTP, HTTPS) with a multishot accept
//! each, one multishot recv per
//! connection drawing from the ring's provided-buffer pool (no buffer is tied to an idle
//! connection), and at most one send in flight per connection with later bytes coalesced
//! behind it.
//!
//! Completion keys: the top 8 bits are [`TAG_NET`]; below, the purpose of the operation, the
//! low 16 bits of the connection's generation (checked) and its table slot. Listener
//! operations carry the listener's index instead of a generation, and `LISTENER_SLOT`. A slot is freed
//! only once no operation carrying it is left in the ring (`Conn::ops` counts them), so a
//! completion always finds the connection it was submitted for.
//!
//! Teardown order, for memory and fd safety: cancel every operation on the fd (`CancelFd`),
//! then `Close` it, in that order in the same submission (the kernel issues SQEs in order, and
//! the cancel resolves the fd before the close removes it). Buffers of cancelled sends come
//! back in their completions (the ring owns them until then); the slot is freed and `Closed`
//! reported when the last completion for it arrives.

use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel_shim::net::{Family, peer_addr, tcp_socket};
use kernel_shim::ring::{Completion, CompletionData, Errno, Op, OpId, Ring, key_tag, tagged_key};
use slab::Slab;

use crate::admission::{Admitted, ConnAdmission, RefusedConns};
use crate::transport::{ConnEvent, ConnId, ConnectError, NetLimits, SendError, Transport};

/// The subsystem tag (top 8 bits of a ring key) of this module's operations. Route completions
/// with `key_tag(c.key) == TAG_NET` to [`KernelNet::on_completion`]; every other tag is the
/// caller's.
pub const TAG_NET: u8 = 0x01;

/// How long to wait before accepting again after accept failed (EMFILE, ENFILE, ENOMEM):
/// retrying at once would spin on the same error.
const ACCEPT_RETRY_MS: u64 = 100;

/// A drained send buffer is kept for the next send if it is at most this large; larger ones
/// are freed, so an idle connection never pins a big buffer.
const SPARE_BYTES_MAX: usize = 64 * 1024;

/// The slot that listener operations carry in their keys.
const LISTENER_SLOT: u32 = u32::MAX;

/// Listeners one transport may have (their index goes in the keys' generation bits).
const LISTENERS_MAX: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Purpose {
    Accept = 1,
    AcceptRetry,
    ListenerCancel,
    ListenerClose,
    Refuse,
    Recv,
    Send,
    Connect,
    Shutdown,
    CloseTimer,
    Cancel,
    Close,
}

impl Purpose {
    const ALL: [Purpose; 12] = [
        Purpose::Accept,
        Purpose::AcceptRetry,
        Purpose::ListenerCancel,
        Purpose::ListenerClose,
        Purpose::Refuse,
        Purpose::Recv,
        Purpose::Send,
        Purpose::Connect,
        Purpose::Shutdown,
        Purpose::CloseTimer,
        Purpose::Cancel,
        Purpose::Close,
    ];
}

fn key(purpose: Purpose, slot: u32, generation: u32) -> u64 {
    let low = (u64::from(purpose as u8) << 48) | (u64::from(generation & 0xffff) << 32) | u64::from(slot);
    tagged_key(TAG_NET, low)
}

/// Counters of operations in flight: a completion without a matching submission is a bug in
/// this module, caught in release builds too.
fn decrement(counter: &mut u32) {
    *counter = counter.checked_sub(1).expect("a completion for an operation that was not counted");
}

fn decode(key: u64) -> (Purpose, u32, u16) {
    assert_eq!(key_tag(key), TAG_NET, "a completion without TAG_NET reached KernelNet");
    let code = (key >> 48) as u8;
    let purpose = Purpose::ALL.into_iter().find(|p| *p as u8 == code);
    let purpose = purpose.unwrap_or_else(|| panic!("KernelNet key with unknown purpose {code}"));
    (purpose, key as u32, (key >> 32) as u16)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Outbound, CONNECT in flight.
    Connecting,
    Open,
    /// `close` was called: flushing the send queue.
    Draining,
    /// Flushed and shut down for writing: waiting for the peer's end of stream.
    Lingering,
    /// Cancel and close submitted: waiting for the last completions.
    TearingDown,
}

struct Conn {
    generation: u32,
    /// Some until teardown hands it to a CLOSE.
    fd: Option<OwnedFd>,
    raw_fd: RawFd,
    phase: Phase,
    recv_op: Option<OpId>,
    recv_paused: bool,
    peer_closed: bool,
    send_in_flight: bool,
    /// Bytes of the in-flight send not yet reported sent.
    in_flight_bytes: usize,
    /// Bytes queued behind the in-flight send.
    pending: Vec<u8>,
    /// An empty buffer kept for the next `pending`.
    spare: Vec<u8>,
    close_timer_op: Option<OpId>,
    /// Operations in the ring that carry this slot in their key.
    ops: u32,
    /// Of those, the ones bound to the fd (recv, send, connect, shutdown).
    fd_ops: u32,
    /// The connection's place under the edge caps (accepted connections, when caps are set);
    /// given back when the slot is freed.
    _admitted: Option<Admitted>,
}

/// One listening socket and its accept.
struct Listener {
    /// Some until it is handed to a CLOSE.
    fd: Option<OwnedFd>,
    /// The port it listens on, reported with each connection it accepts.
    port: u16,
    accept_op: Option<OpId>,
    accept_retry_op: Option<OpId>,
}

impl Conn {
    fn new(fd: OwnedFd, generation: u32, phase: Phase, admitted: Option<Admitted>) -> Conn {
        Conn {
            _admitted: admitted,
            generation,
            raw_fd: fd.as_raw_fd(),
            fd: Some(fd),
            phase,
            recv_op: None,
            recv_paused: false,
            peer_closed: false,
            send_in_flight: false,
            in_flight_bytes: 0,
            pending: Vec::new(),
            spare: Vec::new(),
            close_timer_op: None,
            ops: 0,
            fd_ops: 0,
        }
    }

    fn queued_bytes(&self) -> usize {
        self.in_flight_bytes + self.pending.len()
    }

    /// Reading continues while open and not paused; while closing it continues regardless, so
    /// late bytes are drained (closing with unread bytes would send a reset and could destroy
    /// the output we just flushed).
    fn wants_recv(&self) -> bool {
        !self.peer_closed
            && match self.phase {
                Phase::Open => !self.recv_paused,
                Phase::Draining | Phase::Lingering => true,
                Phase::Connecting | Phase::TearingDown => false,
            }
    }
}

/// Kernel TCP sockets through io_uring, for one core. See the module documentation.
///
/// Drop it together with its [`Ring`], not before: completions of its operations carry slots of
/// its table, and no other `KernelNet` can route them.
pub struct KernelNet {
    limits: NetLimits,
    conns: Slab<Conn>,
    generation: u32,
    /// In the order `listen` was called; the index is in their operations' keys.
    listeners: Vec<Listener>,
    stopping: bool,
    listeners_closed_reported: bool,
    /// Operations in the ring on behalf of the listeners.
    listener_ops: u32,
    refused: RefusedConns,
    admission: Option<Arc<ConnAdmission>>,
}

impl std::fmt::Debug for KernelNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelNet")
            .field("open_conns", &self.conns.len())
            .field("accepting", &self.listeners.iter().filter(|l| l.accept_op.is_some()).count())
            .field("refused", &self.refused)
            .finish()
    }
}

impl KernelNet {
    /// A transport with no listener; the connection table is allocated here, once.
    pub fn new(limits: NetLimits) -> KernelNet {
        assert!(limits.conns_max > 0 && limits.conns_max < LISTENER_SLOT);
        assert!(limits.send_queue_bytes_max > 0);
        KernelNet {
            limits,
            conns: Slab::with_capacity(limits.conns_max as usize),
            generation: 0,
            listeners: Vec::new(),
            stopping: false,
            listeners_closed_reported: false,
            listener_ops: 0,
            refused: RefusedConns::default(),
            admission: None,
        }
    }

    /// Puts accepted connections under the per-client and total caps of `admission` (shared
    /// with the other cores): one beyond a cap is closed at once and counted.
    pub fn set_admission(&mut self, admission: Arc<ConnAdmission>) {
        self.admission = Some(admission);
    }

    /// Starts accepting on `listener` (bound and listening, e.g. from
    /// [`kernel_shim::net::reuseport_listener`]; one per core and port). Call it once per port
    /// served (HTTP, HTTPS); connections are reported with the port that accepted them.
    pub fn listen(&mut self, ring: &mut Ring, listener: OwnedFd) {
        assert!(!self.stopping, "KernelNet::listen after stop_accepting");
        assert!(self.listeners.len() < LISTENERS_MAX, "KernelNet listens on at most {LISTENERS_MAX} listeners");
        // A bound socket always has an address; failing here is a caller's bug (not a socket),
        // and its connections are then reported on port 0.
        let port = kernel_shim::net::local_addr(listener.as_fd()).map(|addr| addr.port()).unwrap_or_else(|error| {
            tracing::error!(%error, "cannot read a listener's address");
            0
        });
        self.listeners.push(Listener { fd: Some(listener), port, accept_op: None, accept_retry_op: None });
        self.arm_accept(ring, self.listeners.len() - 1);
    }

    /// Accepted connections closed at once because `conns_max` was reached.
    pub fn refused_conns(&self) -> u64 {
        self.refused.table_full
    }

    /// Accepted connections closed at once, by reason.
    pub fn refused(&self) -> RefusedConns {
        self.refused
    }

    /// Whether a listener is still open.
    pub fn is_listening(&self) -> bool {
        self.listeners.iter().any(|l| l.fd.is_some())
    }

    fn listener_key(purpose: Purpose, index: usize) -> u64 {
        key(purpose, LISTENER_SLOT, index as u32)
    }

    fn arm_accept(&mut self, ring: &mut Ring, index: usize) {
        let listener = &mut self.listeners[index];
        let fd = listener.fd.as_ref().expect("accept without a listener").as_raw_fd();
        listener.accept_op = Some(ring.submit(Op::AcceptMulti { fd }, Self::listener_key(Purpose::Accept, index)));
        self.listener_ops += 1;
    }

    /// `ListenerClosed`, once, after `stop_accepting` and the last listener operation.
    fn report_listeners_closed(&mut self, events: &mut impl FnMut(ConnEvent<'_>)) {
        let open = self.listeners.iter().any(|l| l.fd.is_some() || l.accept_op.is_some());
        if self.stopping && !open && self.listener_ops == 0 && !self.listeners_closed_reported {
            self.listeners_closed_reported = true;
            events(ConnEvent::ListenerClosed);
        }
    }

    fn close_listener(&mut self, ring: &mut Ring, index: usize) {
        if let Some(fd) = self.listeners[index].fd.take() {
            ring.submit(Op::Close { fd }, Self::listener_key(Purpose::ListenerClose, index));
            self.listener_ops += 1;
        }
    }

    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        let slot = conn.slot as usize;
        self.conns.get(slot).filter(|c| c.generation == conn.generation).map(|_| slot)
    }

    fn id(&self, slot: usize) -> ConnId {
        ConnId { slot: slot as u32, generation: self.conns[slot].generation }
    }

    fn insert(&mut self, fd: OwnedFd, phase: Phase, admitted: Option<Admitted>) -> usize {
        assert!(self.conns.len() < self.limits.conns_max as usize);
        self.generation = self.generation.wrapping_add(1);
        self.conns.insert(Conn::new(fd, self.generation, phase, admitted))
    }

    fn submit(&mut self, ring: &mut Ring, slot: usize, purpose: Purpose, op: Op) -> OpId {
        let conn = &mut self.conns[slot];
        let fd_bound = matches!(op, Op::RecvMulti { .. } | Op::Send { .. } | Op::Connect { .. } | Op::Shutdown { .. });
        conn.ops += 1;
        conn.fd_ops += u32::from(fd_bound);
        ring.submit(op, key(purpose, slot as u32, conn.generation))
    }

    fn arm_recv(&mut self, ring: &mut Ring, slot: usize) {
        let conn = &self.conns[slot];
        assert!(conn.recv_op.is_none() && conn.wants_recv());
        let fd = conn.raw_fd;
        let op = self.submit(ring, slot, Purpose::Recv, Op::RecvMulti { fd });
        self.conns[slot].recv_op = Some(op);
    }

    fn rearm_recv_if_wanted(&mut self, ring: &mut Ring, slot: usize) {
        let conn = &self.conns[slot];
        if conn.recv_op.is_none() && conn.wants_recv() {
            self.arm_recv(ring, slot);
        }
    }

    /// Hands `pending` to the ring as the one in-flight send.
    fn start_send(&mut self, ring: &mut Ring, slot: usize) {
        let conn = &mut self.conns[slot];
        assert!(!conn.send_in_flight && !conn.pending.is_empty());
        let buf = std::mem::replace(&mut conn.pending, std::mem::take(&mut conn.spare));
        conn.in_flight_bytes = buf.len();
        conn.send_in_flight = true;
        let fd = conn.raw_fd;
        self.submit(ring, slot, Purpose::Send, Op::Send { fd, buf, offset: 0 });
    }

    fn check_send(&self, conn: ConnId, len: usize) -> Result<usize, SendError> {
        let slot = self.slot_of(conn).ok_or(SendError::Closed)?;
        let c = &self.conns[slot];
        if !matches!(c.phase, Phase::Open | Phase::Connecting) {
            return Err(SendError::Closed);
        }
        let queued_bytes_max = self.limits.send_queue_bytes_max;
        // An empty queue takes one buffer of any size: a caller that sends one response at a
        // time (the HTTP server) must be able to send a response larger than the bound.
        if c.queued_bytes() > 0 && c.queued_bytes() + len > queued_bytes_max {
            return Err(SendError::QueueFull { queued_bytes: c.queued_bytes(), queued_bytes_max });
        }
        Ok(slot)
    }

    fn after_enqueue(&mut self, ring: &mut Ring, slot: usize) {
        let conn = &self.conns[slot];
        if conn.phase == Phase::Open && !conn.send_in_flight && !conn.pending.is_empty() {
            self.start_send(ring, slot);
        }
    }

    /// Everything queued has been sent: what the connection does next.
    fn on_drained(&mut self, ring: &mut Ring, slot: usize, events: &mut impl FnMut(ConnEvent<'_>)) {
        match self.conns[slot].phase {
            Phase::Open => events(ConnEvent::SendDone { conn: self.id(slot) }),
            Phase::Draining => self.begin_linger(ring, slot),
            Phase::Connecting | Phase::Lingering | Phase::TearingDown => {}
        }
    }

    fn begin_linger(&mut self, ring: &mut Ring, slot: usize) {
        let conn = &mut self.conns[slot];
        assert_eq!(conn.phase, Phase::Draining);
        conn.phase = Phase::Lingering;
        if conn.peer_closed {
            self.teardown(ring, slot);
            return;
        }
        let fd = conn.raw_fd;
        self.submit(ring, slot, Purpose::Shutdown, Op::Shutdown { fd, how: Shutdown::Write });
        self.rearm_recv_if_wanted(ring, slot);
    }

    /// Cancels everything on the fd, then closes it; `Closed` is reported once the last
    /// completion for the slot arrives (`release_if_done`).
    fn teardown(&mut self, ring: &mut Ring, slot: usize) {
        let conn = &mut self.conns[slot];
        if conn.phase == Phase::TearingDown {
            return;
        }
        conn.phase = Phase::TearingDown;
        conn.pending = Vec::new();
        conn.spare = Vec::new();
        let fd = conn.fd.take().expect("a connection not yet torn down owns its fd");
        let (raw_fd, fd_ops, timer) = (conn.raw_fd, conn.fd_ops, conn.close_timer_op.take());
        if let Some(target) = timer {
            self.submit(ring, slot, Purpose::Cancel, Op::Cancel { target });
        }
        // The cancel goes first: it must find the operations through the fd before the close
        // removes the fd from the table (the kernel issues SQEs in submission order).
        if fd_ops > 0 {
            self.submit(ring, slot, Purpose::Cancel, Op::CancelFd { fd: raw_fd });
        }
        self.submit(ring, slot, Purpose::Close, Op::Close { fd });
    }

    fn fail(&mut self, ring: &mut Ring, slot: usize, error: Errno, events: &mut impl FnMut(ConnEvent<'_>)) {
        match self.conns[slot].phase {
            Phase::Open => events(ConnEvent::Failed { conn: self.id(slot), error }),
            Phase::Connecting => events(ConnEvent::ConnectFailed { conn: self.id(slot), error }),
            // The caller already closed it; it only waits for `Closed`.
            Phase::Draining | Phase::Lingering | Phase::TearingDown => {}
        }
        self.teardown(ring, slot);
    }

    fn release_if_done(&mut self, slot: usize, events: &mut impl FnMut(ConnEvent<'_>)) {
        let conn = &self.conns[slot];
        if conn.phase == Phase::TearingDown && conn.ops == 0 {
            assert!(conn.fd.is_none() && conn.fd_ops == 0 && conn.recv_op.is_none() && !conn.send_in_flight);
            let id = self.id(slot);
            self.conns.remove(slot);
            events(ConnEvent::Closed { conn: id });
        }
    }

    fn admit(&mut self, ring: &mut Ring, fd: OwnedFd, local_port: u16, events: &mut impl FnMut(ConnEvent<'_>)) {
        if self.conns.len() >= self.limits.conns_max as usize {
            self.refused.table_full += 1;
            ring.submit(Op::Close { fd }, key(Purpose::Refuse, LISTENER_SLOT, 0));
            return;
        }
        let peer = match peer_addr(fd.as_fd()) {
            Ok(peer) => peer,
            Err(error) => {
                // Reset between the handshake and our accept: nothing to serve.
                tracing::debug!(%error, "accepted a connection whose peer is already gone");
                ring.submit(Op::Close { fd }, key(Purpose::Refuse, LISTENER_SLOT, 0));
                return;
            }
        };
        let admitted = match self.admission.as_ref().map(|a| a.admit(peer.ip())) {
            None => None,
            Some(Ok(admitted)) => Some(admitted),
            Some(Err(refusal)) => {
                // Closed before a byte is read or a buffer is spent on it.
                self.refused.count(refusal);
                ring.submit(Op::Close { fd }, key(Purpose::Refuse, LISTENER_SLOT, 0));
                return;
            }
        };
        let slot = self.insert(fd, Phase::Open, admitted);
        events(ConnEvent::Accepted { conn: self.id(slot), peer, local_port });
        // The callback cannot have paused it (it cannot reach us), so reading starts now.
        self.arm_recv(ring, slot);
    }

    fn on_accept(&mut self, ring: &mut Ring, index: usize, c: Completion, events: &mut impl FnMut(ConnEvent<'_>)) {
        if !c.more {
            self.listeners[index].accept_op = None;
            decrement(&mut self.listener_ops);
        }
        let port = self.listeners[index].port;
        match (c.result, c.data) {
            (Ok(_), CompletionData::Accepted(fd)) => self.admit(ring, fd, port, events),
            (Err(Errno::CANCELED), _) => {}
            (Err(error), _) => tracing::warn!(%error, port, "accept failed"),
            (Ok(_), data) => panic!("an accept completed without a descriptor: {data:?}"),
        }
        if c.more || self.listeners[index].accept_op.is_some() {
            return;
        }
        if self.stopping {
            self.close_listener(ring, index);
        } else if c.result.is_err() {
            let op = Op::Timeout { after: Duration::from_millis(ACCEPT_RETRY_MS) };
            let retry = ring.submit(op, Self::listener_key(Purpose::AcceptRetry, index));
            self.listeners[index].accept_retry_op = Some(retry);
            self.listener_ops += 1;
        } else {
            self.arm_accept(ring, index);
        }
    }

    fn on_recv(&mut self, ring: &mut Ring, slot: usize, c: Completion, events: &mut impl FnMut(ConnEvent<'_>)) {
        let conn = &mut self.conns[slot];
        if !c.more {
            conn.recv_op = None;
            decrement(&mut conn.fd_ops);
        }
        match (c.result, c.data) {
            (Ok(_), CompletionData::Provided { buf_id, len }) => {
                if conn.phase == Phase::Open {
                    let id = ConnId { slot: slot as u32, generation: conn.generation };
                    events(ConnEvent::Received { conn: id, bytes: ring.provided(buf_id, len) });
                }
                // The codec copied what it keeps; the buffer goes straight back to the kernel.
                ring.recycle(buf_id);
            }
            (Ok(0), _) => {
                conn.peer_closed = true;
                match conn.phase {
                    Phase::Open => events(ConnEvent::PeerClosed { conn: self.id(slot) }),
                    Phase::Lingering => self.teardown(ring, slot),
                    Phase::Connecting | Phase::Draining | Phase::TearingDown => {}
                }
            }
            // The pool ran dry (the buffers are back by now) or we cancelled: re-arm if wanted.
            (Err(Errno::NO_BUFFERS | Errno::CANCELED), _) => {}
            (Err(error), _) => self.fail(ring, slot, error, events),
            (Ok(len), data) => panic!("a recv of {len} bytes without a provided buffer: {data:?}"),
        }
        if !c.more {
            self.rearm_recv_if_wanted(ring, slot);
        }
    }

    fn on_send(&mut self, ring: &mut Ring, slot: usize, c: Completion, events: &mut impl FnMut(ConnEvent<'_>)) {
        let conn = &mut self.conns[slot];
        conn.send_in_flight = false;
        decrement(&mut conn.fd_ops);
        let CompletionData::Sent { mut buf, offset } = c.data else {
            panic!("a send completed without its buffer: {:?}", c.data)
        };
        match c.result {
            Ok(sent) if sent > 0 => {
                let sent = sent as usize;
                conn.in_flight_bytes -= sent;
                if conn.phase == Phase::TearingDown {
                    return;
                }
                if offset + sent < buf.len() {
                    // Partial: send the rest of the same buffer.
                    conn.send_in_flight = true;
                    let fd = conn.raw_fd;
                    self.submit(ring, slot, Purpose::Send, Op::Send { fd, buf, offset: offset + sent });
                    return;
                }
                assert_eq!(conn.in_flight_bytes, 0);
                if buf.capacity() <= SPARE_BYTES_MAX && conn.spare.capacity() == 0 {
                    buf.clear();
                    conn.spare = buf;
                }
                if conn.pending.is_empty() {
                    self.on_drained(ring, slot, events);
                } else {
                    self.start_send(ring, slot);
                }
            }
            Err(Errno::CANCELED) if conn.phase == Phase::TearingDown => {}
            // A stream send of > 0 bytes that sends nothing cannot make progress.
            Ok(_) => self.fail(ring, slot, Errno::BROKEN_PIPE, events),
            Err(error) => self.fail(ring, slot, error, events),
        }
    }

    fn on_connect(&mut self, ring: &mut Ring, slot: usize, c: Completion, events: &mut impl FnMut(ConnEvent<'_>)) {
        let conn = &mut self.conns[slot];
        decrement(&mut conn.fd_ops);
        if conn.phase != Phase::Connecting {
            return;
        }
        match c.result {
            Ok(_) => {
                conn.phase = Phase::Open;
                events(ConnEvent::Connected { conn: self.id(slot) });
                self.rearm_recv_if_wanted(ring, slot);
                self.after_enqueue(ring, slot);
            }
            Err(error) => self.fail(ring, slot, error, events),
        }
    }

    fn on_close_timer(&mut self, ring: &mut Ring, slot: usize, c: Completion) {
        let conn = &mut self.conns[slot];
        conn.close_timer_op = None;
        if c.result.is_ok() && matches!(conn.phase, Phase::Draining | Phase::Lingering) {
            tracing::debug!(slot, "graceful close timed out; dropping the connection");
            self.teardown(ring, slot);
        }
    }
}

impl Transport for KernelNet {
    fn on_completion(&mut self, ring: &mut Ring, c: Completion, _now: Instant, events: &mut impl FnMut(ConnEvent<'_>)) {
        let (purpose, slot, generation) = decode(c.key);
        // For listener operations the generation bits hold the listener's index.
        let index = usize::from(generation);
        match purpose {
            Purpose::Accept => return self.on_accept(ring, index, c, events),
            Purpose::AcceptRetry => {
                decrement(&mut self.listener_ops);
                self.listeners[index].accept_retry_op = None;
                if c.result.is_ok() && !self.stopping && self.listeners[index].fd.is_some() {
                    self.arm_accept(ring, index);
                }
                return;
            }
            Purpose::ListenerCancel | Purpose::ListenerClose => {
                decrement(&mut self.listener_ops);
                self.report_listeners_closed(events);
                return;
            }
            Purpose::Refuse => return,
            _ => {}
        }
        let slot = slot as usize;
        let conn = self.conns.get_mut(slot);
        let conn = conn.unwrap_or_else(|| panic!("completion {purpose:?} for free connection slot {slot}"));
        assert_eq!(conn.generation as u16, generation, "completion for an older connection in slot {slot}");
        if !c.more {
            decrement(&mut conn.ops);
        }
        match purpose {
            Purpose::Recv => self.on_recv(ring, slot, c, events),
            Purpose::Send => self.on_send(ring, slot, c, events),
            Purpose::Connect => self.on_connect(ring, slot, c, events),
            Purpose::Shutdown => decrement(&mut conn.fd_ops),
            Purpose::CloseTimer => self.on_close_timer(ring, slot, c),
            Purpose::Cancel | Purpose::Close => {}
            Purpose::Accept
            | Purpose::AcceptRetry
            | Purpose::ListenerCancel
            | Purpose::ListenerClose
            | Purpose::Refuse => {
                unreachable!("listener purposes return above")
            }
        }
        self.release_if_done(slot, events);
    }

    fn send(&mut self, ring: &mut Ring, conn: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        let slot = self.check_send(conn, bytes.len())?;
        self.conns[slot].pending.extend_from_slice(bytes);
        self.after_enqueue(ring, slot);
        Ok(())
    }

    fn send_owned(&mut self, ring: &mut Ring, conn: ConnId, bytes: Vec<u8>) -> Result<(), SendError> {
        let slot = self.check_send(conn, bytes.len())?;
        let c = &mut self.conns[slot];
        if c.pending.is_empty() {
            // Nothing waiting: the caller's buffer becomes the queue, no copy.
            let empty = std::mem::replace(&mut c.pending, bytes);
            if c.spare.capacity() == 0 && empty.capacity() <= SPARE_BYTES_MAX {
                c.spare = empty;
            }
        } else {
            c.pending.extend_from_slice(&bytes);
        }
        self.after_enqueue(ring, slot);
        Ok(())
    }

    fn queued_bytes(&self, conn: ConnId) -> usize {
        self.slot_of(conn).map_or(0, |slot| self.conns[slot].queued_bytes())
    }

    fn close(&mut self, ring: &mut Ring, conn: ConnId) {
        let Some(slot) = self.slot_of(conn) else {
            return;
        };
        match self.conns[slot].phase {
            Phase::Connecting => self.teardown(ring, slot),
            Phase::Open => {
                self.conns[slot].phase = Phase::Draining;
                let after = Duration::from_millis(self.limits.close_timeout_ms);
                let timer = self.submit(ring, slot, Purpose::CloseTimer, Op::Timeout { after });
                let c = &mut self.conns[slot];
                c.close_timer_op = Some(timer);
                if !c.send_in_flight && c.pending.is_empty() {
                    self.begin_linger(ring, slot);
                } else {
                    self.rearm_recv_if_wanted(ring, slot);
                }
            }
            Phase::Draining | Phase::Lingering | Phase::TearingDown => {}
        }
    }

    fn abort(&mut self, ring: &mut Ring, conn: ConnId) {
        if let Some(slot) = self.slot_of(conn) {
            self.teardown(ring, slot);
        }
    }

    fn pause_recv(&mut self, ring: &mut Ring, conn: ConnId) {
        let Some(slot) = self.slot_of(conn) else {
            return;
        };
        let c = &mut self.conns[slot];
        if !matches!(c.phase, Phase::Open | Phase::Connecting) || c.recv_paused {
            return;
        }
        c.recv_paused = true;
        if let Some(target) = c.recv_op {
            // The recv ends with ECANCELED (after any bytes already on their way).
            self.submit(ring, slot, Purpose::Cancel, Op::Cancel { target });
        }
    }

    fn resume_recv(&mut self, ring: &mut Ring, conn: ConnId) {
        let Some(slot) = self.slot_of(conn) else {
            return;
        };
        let c = &mut self.conns[slot];
        if c.recv_paused {
            c.recv_paused = false;
            // If the cancelled recv has not ended yet, its last completion re-arms it.
            self.rearm_recv_if_wanted(ring, slot);
        }
    }

    fn connect(&mut self, ring: &mut Ring, addr: SocketAddr) -> Result<ConnId, ConnectError> {
        let conns_max = self.limits.conns_max;
        if self.conns.len() >= conns_max as usize {
            return Err(ConnectError::TooManyConns { conns_max });
        }
        let fd = tcp_socket(Family::of(&addr)).map_err(|error| ConnectError::Socket { error })?;
        let raw_fd = fd.as_raw_fd();
        let slot = self.insert(fd, Phase::Connecting, None);
        self.submit(ring, slot, Purpose::Connect, Op::Connect { fd: raw_fd, addr });
        Ok(self.id(slot))
    }

    fn stop_accepting(&mut self, ring: &mut Ring) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        for index in 0..self.listeners.len() {
            if let Some(target) = self.listeners[index].accept_op {
                // The listener is closed when the accept's last completion arrives.
                ring.submit(Op::Cancel { target }, Self::listener_key(Purpose::ListenerCancel, index));
                self.listener_ops += 1;
                continue;
            }
            if let Some(target) = self.listeners[index].accept_retry_op.take() {
                ring.submit(Op::Cancel { target }, Self::listener_key(Purpose::ListenerCancel, index));
                self.listener_ops += 1;
            }
            self.close_listener(ring, index);
        }
    }

    fn open_conns(&self) -> usize {
        self.conns.len()
    }
}
