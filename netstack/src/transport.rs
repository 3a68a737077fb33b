//! The one connection interface the HTTP server is written against, whatever carries the bytes:
//! kernel sockets through io_uring ([`crate::KernelNet`]) today, smoltcp on a raw link later.
//!
//! The model is sans-IO and event-driven on the core's [`Ring`]: the scheduler routes each
//! completion whose key carries the transport's tag to [`Transport::on_completion`], which turns
//! it into [`ConnEvent`]s for a callback. Commands (`send`, `close`, ...) only queue work; they
//! never block and never call back. The callback cannot call the transport (both are borrowed
//! during `on_completion`), so a caller records what to do and does it after the call returns.
//!
//! Every connection's events follow one grammar: `Accepted` or `Connected`/`ConnectFailed`
//! first, then any of `Received`, `SendDone`, `PeerClosed`, `Failed`, and exactly one `Closed`
//! last, after which its [`ConnId`] is stale. Commands on a stale id do nothing.

use std::net::SocketAddr;
use std::time::Instant;

use kernel_shim::ring::{Completion, Errno, Ring};

/// A connection: table slot plus generation, so an id kept after `Closed` never names the
/// connection that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// What happened on the transport. `Received` borrows the bytes for the duration of the
/// callback only.
#[derive(Debug)]
pub enum ConnEvent<'a> {
    /// A peer connected to one of our listeners: the one on `local_port` (a transport may
    /// listen on several ports, e.g. HTTP and HTTPS).
    Accepted { conn: ConnId, peer: SocketAddr, local_port: u16 },
    /// An outbound [`Transport::connect`] succeeded.
    Connected { conn: ConnId },
    /// An outbound connect failed; `Closed` follows.
    ConnectFailed { conn: ConnId, error: Errno },
    /// Bytes from the peer, valid only during the callback: copy what you keep. A connection
    /// whose consumer falls behind should [`Transport::pause_recv`]; a few more `Received` may
    /// still arrive before the pause takes effect.
    Received { conn: ConnId, bytes: &'a [u8] },
    /// Everything queued with `send` has been handed to the kernel (the send queue is empty).
    SendDone { conn: ConnId },
    /// The peer shut its side down (end of stream). We may still send, then `close`.
    PeerClosed { conn: ConnId },
    /// The connection broke (reset, broken pipe); it is being torn down and `Closed` follows.
    Failed { conn: ConnId, error: Errno },
    /// The connection is fully torn down: its socket closed, no operation left on it.
    Closed { conn: ConnId },
    /// The listeners are closed after [`Transport::stop_accepting`] (reported once, when the
    /// last one is); no connection will be accepted again.
    ListenerClosed,
}

/// Bounds on what peers can make a transport hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetLimits {
    /// Connections open at once (accepted and outbound, including those closing). Accepted
    /// connections beyond it are closed at once and counted.
    pub conns_max: u32,
    /// Bytes queued for sending on one connection (in flight plus waiting): a peer that does
    /// not read cannot make us buffer more. An empty queue accepts one buffer of any size, so
    /// the bound is this plus the largest single buffer a caller hands over.
    pub send_queue_bytes_max: usize,
    /// How long a graceful [`Transport::close`] may take to flush queued output and see the
    /// peer's end of stream before the connection is dropped.
    pub close_timeout_ms: u64,
}

impl Default for NetLimits {
    fn default() -> NetLimits {
        NetLimits { conns_max: 10_000, send_queue_bytes_max: 1 << 20, close_timeout_ms: 5_000 }
    }
}

/// Why bytes were not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum SendError {
    /// the connection is closed or closing
    Closed,
    /// the send queue holds {queued_bytes} bytes and may hold {queued_bytes_max}: wait for SendDone
    QueueFull { queued_bytes: usize, queued_bytes_max: usize },
}

/// Why an outbound connection was not started.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum ConnectError {
    /// the connection table is full ({conns_max} connections)
    TooManyConns { conns_max: u32 },
    /// could not create a socket: {error}
    Socket { error: std::io::Error },
}

/// A byte-stream transport driven by the core's ring. See the module documentation.
pub trait Transport {
    /// Handles one completion whose key carries this transport's tag.
    fn on_completion(
        &mut self,
        ring: &mut Ring,
        completion: Completion,
        now: Instant,
        events: &mut impl FnMut(ConnEvent<'_>),
    );

    /// Runs the transport's own timers due at `now` (a userspace TCP stack's retransmissions,
    /// acknowledgements and timeouts). Kernel sockets have none.
    fn poll(&mut self, _ring: &mut Ring, _now: Instant, _events: &mut impl FnMut(ConnEvent<'_>)) {}

    /// When [`Transport::poll`] next has something to do.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// Queues a copy of `bytes`. At most one send is in flight per connection; later bytes are
    /// coalesced behind it and partial sends continue where they stopped.
    fn send(&mut self, ring: &mut Ring, conn: ConnId, bytes: &[u8]) -> Result<(), SendError>;

    /// Queues `bytes` without copying them when nothing else is queued.
    fn send_owned(&mut self, ring: &mut Ring, conn: ConnId, bytes: Vec<u8>) -> Result<(), SendError>;

    /// Bytes queued on `conn` and not yet sent (0 for a stale id).
    fn queued_bytes(&self, conn: ConnId) -> usize;

    /// Graceful close: flush the send queue, shut our side down, wait (bounded by
    /// [`NetLimits::close_timeout_ms`]) for the peer's end of stream, then close. Bytes that
    /// arrive meanwhile are discarded. `Closed` follows.
    fn close(&mut self, ring: &mut Ring, conn: ConnId);

    /// Close now, discarding queued output. `Closed` follows.
    fn abort(&mut self, ring: &mut Ring, conn: ConnId);

    /// Stop reading from `conn` (back-pressure): the peer's bytes wait in the kernel.
    fn pause_recv(&mut self, ring: &mut Ring, conn: ConnId);

    /// Read from `conn` again after [`Transport::pause_recv`].
    fn resume_recv(&mut self, ring: &mut Ring, conn: ConnId);

    /// Opens an outbound connection; `Connected` or `ConnectFailed` follows. Bytes sent before
    /// `Connected` are queued.
    fn connect(&mut self, ring: &mut Ring, addr: SocketAddr) -> Result<ConnId, ConnectError>;

    /// Drain: accept no new connection, close the listeners (`ListenerClosed` follows); open
    /// connections go on until they close.
    fn stop_accepting(&mut self, ring: &mut Ring);

    /// Connections in the table, including those being torn down.
    fn open_conns(&self) -> usize;
}
