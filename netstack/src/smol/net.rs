//! [`SmolNet`]: the I/O shell around a [`SmolStack`]: it keeps reads in flight on the link fd,
//! writes the frames the stack emits, and implements [`Transport`] by delegating to the stack.
//!
//! Completion keys: the top 8 bits are [`TAG_NET`] (a core runs one transport, so the scheduler
//! routes `TAG_NET` completions to it); below, the purpose of the operation, with codes of their
//! own (0x81..) so a completion routed to the wrong transport is caught by its assertion.
//! Buffers belong to the ring while an operation is in flight and come back in its completion.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use kernel_shim::ring::{Completion, CompletionData, Errno, Op, OpId, Ring, key_tag, tagged_key};

use super::stack::SmolStack;
use super::{READ_RETRY, SmolConfig, SmolConfigError, SmolStats};
use crate::kernel::TAG_NET;
use crate::steer::Forwarder;
use crate::transport::{ConnEvent, ConnId, ConnectError, SendError, Transport};

/// What the link fd is, which decides how frames are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A TAP queue: `reads_in_flight` `Op::Read`s, each returning one frame into its own buffer.
    Tap,
    /// An AF_PACKET socket: one `Op::RecvMulti`, one frame per completion, from the ring's
    /// provided-buffer pool (whose `recv_buffer_bytes` must hold a whole frame).
    Packet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Purpose {
    Read = 0x81,
    RecvMulti,
    Write,
    ReadRetry,
}

impl Purpose {
    const ALL: [Purpose; 4] = [Purpose::Read, Purpose::RecvMulti, Purpose::Write, Purpose::ReadRetry];
}

fn key(purpose: Purpose) -> u64 {
    tagged_key(TAG_NET, u64::from(purpose as u8) << 48)
}

fn decode(key: u64) -> Purpose {
    assert_eq!(key_tag(key), TAG_NET, "a completion without TAG_NET reached SmolNet");
    let code = (key >> 48) as u8;
    let purpose = Purpose::ALL.into_iter().find(|p| *p as u8 == code);
    purpose.unwrap_or_else(|| panic!("SmolNet got a completion with purpose {code:#x}: not one of its operations"))
}

/// smoltcp on a raw link, as a [`Transport`] on the core's ring. See the module documentation
/// of [`crate::smol`].
///
/// Drop it together with its [`Ring`], not before: completions of its reads and writes carry
/// its key, and no other transport can route them.
pub struct SmolNet {
    stack: SmolStack,
    fd: OwnedFd,
    kind: LinkKind,
    reads_armed: usize,
    recv_multi: Option<OpId>,
    retry: Option<OpId>,
    /// The link reported end of file (a closed socketpair): reading stops.
    link_closed: bool,
    started: bool,
}

impl std::fmt::Debug for SmolNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolNet").field("kind", &self.kind).field("stack", &self.stack).finish()
    }
}

impl SmolNet {
    /// A transport on `fd` (a TAP queue or an AF_PACKET socket bound to its interface, from
    /// `kernel_shim::link`). Nothing is read until [`SmolNet::start`].
    pub fn new(
        fd: OwnedFd,
        kind: LinkKind,
        config: SmolConfig,
        forwarder: Forwarder,
    ) -> Result<SmolNet, SmolConfigError> {
        Ok(SmolNet {
            stack: SmolStack::new(config, forwarder)?,
            fd,
            kind,
            reads_armed: 0,
            recv_multi: None,
            retry: None,
            link_closed: false,
            started: false,
        })
    }

    /// Opens the listeners and starts reading the link.
    pub fn start(&mut self, ring: &mut Ring, now: Instant) {
        assert!(!self.started, "SmolNet::start is called once");
        self.started = true;
        if self.kind == LinkKind::Packet {
            let needed = self.stack.frame_bytes_max();
            let have = ring.provided_buffer_bytes() as usize;
            if have < needed {
                tracing::warn!(
                    have,
                    needed,
                    "the ring's provided buffers are smaller than a frame from this link: longer frames arrive \
                     truncated and are dropped; raise RingConfig::recv_buffer_bytes (to 64 KiB + 28 if the \
                     interface has GSO/GRO on)"
                );
            }
        }
        self.stack.start(now);
        self.arm_reads(ring);
    }

    /// The sans-IO stack inside.
    pub fn stack(&self) -> &SmolStack {
        &self.stack
    }

    pub fn stats(&self) -> SmolStats {
        self.stack.stats()
    }

    /// See [`SmolStack::set_admission`].
    pub fn set_admission(&mut self, admission: std::sync::Arc<crate::admission::ConnAdmission>) {
        self.stack.set_admission(admission);
    }

    /// A frame another core steered to this one (for a scheduler that drains the inbox itself,
    /// see [`Forwarder::take_inbox`]): processed now.
    pub fn receive_forwarded(
        &mut self,
        ring: &mut Ring,
        now: Instant,
        frame: Vec<u8>,
        events: &mut impl FnMut(ConnEvent<'_>),
    ) {
        self.stack.receive_forwarded(frame, now, events);
        self.flush(ring);
    }

    /// Whether the listeners are open.
    pub fn is_listening(&self) -> bool {
        self.stack.is_listening()
    }

    /// The local address of `conn`: for an outbound connection, its port is from this core's
    /// steering range.
    pub fn local_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.stack.local_addr(conn)
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn arm_reads(&mut self, ring: &mut Ring) {
        if !self.started || self.link_closed || self.retry.is_some() {
            return;
        }
        match self.kind {
            LinkKind::Tap => {
                while self.reads_armed < self.stack.config().reads_in_flight {
                    let buf = self.stack.read_buffer();
                    ring.submit(Op::Read { fd: self.raw_fd(), buf }, key(Purpose::Read));
                    self.reads_armed += 1;
                }
            }
            LinkKind::Packet => {
                if self.recv_multi.is_none() {
                    self.recv_multi = Some(ring.submit(Op::RecvMulti { fd: self.raw_fd() }, key(Purpose::RecvMulti)));
                }
            }
        }
    }

    fn on_read_error(&mut self, ring: &mut Ring, error: Errno) {
        self.stack.count_read_error();
        // EIO while the interface is down, ENETDOWN, ...: retrying at once would spin.
        tracing::warn!(%error, "reading from the link failed; retrying in {READ_RETRY:?}");
        if self.retry.is_none() {
            self.retry = Some(ring.submit(Op::Timeout { after: READ_RETRY }, key(Purpose::ReadRetry)));
        }
    }

    fn on_link_closed(&mut self) {
        if !self.link_closed {
            tracing::warn!("the link reported end of file; no more frames will be read");
            self.link_closed = true;
        }
    }

    /// Writes every frame the stack has ready, then keeps the reads armed.
    fn flush(&mut self, ring: &mut Ring) {
        let fd = self.raw_fd();
        while let Some(buf) = self.stack.take_tx() {
            ring.submit(Op::Write { fd, buf, offset: 0 }, key(Purpose::Write));
        }
        self.arm_reads(ring);
    }
}

impl Transport for SmolNet {
    fn on_completion(&mut self, ring: &mut Ring, c: Completion, now: Instant, events: &mut impl FnMut(ConnEvent<'_>)) {
        match decode(c.key) {
            Purpose::Read => {
                self.reads_armed = self.reads_armed.checked_sub(1).expect("a read completion without a read");
                match (c.result, c.data) {
                    (Ok(0), CompletionData::Buffer(buf)) => {
                        self.stack.recycle_read(buf);
                        self.on_link_closed();
                    }
                    (Ok(_), CompletionData::Buffer(buf)) => self.stack.receive_link(buf, now, events),
                    (Err(Errno::CANCELED), CompletionData::Buffer(buf)) => self.stack.recycle_read(buf),
                    (Err(error), CompletionData::Buffer(buf)) => {
                        self.stack.recycle_read(buf);
                        self.on_read_error(ring, error);
                    }
                    (result, data) => panic!("a read completed with {result:?} and without its buffer: {data:?}"),
                }
            }
            Purpose::RecvMulti => {
                if !c.more {
                    self.recv_multi = None;
                }
                match (c.result, c.data) {
                    (Ok(_), CompletionData::Provided { buf_id, len }) => {
                        let bytes = ring.provided(buf_id, len);
                        let mut frame = self.stack.frame_buffer(bytes.len());
                        frame.extend_from_slice(bytes);
                        // The copy is ours; the provided buffer goes straight back to the kernel.
                        ring.recycle(buf_id);
                        self.stack.receive_link(frame, now, events);
                    }
                    (Ok(_), _) => self.on_link_closed(),
                    // The pool ran dry (its buffers are back by now) or we cancelled: re-arm.
                    (Err(Errno::NO_BUFFERS | Errno::CANCELED), _) => {}
                    (Err(error), _) => self.on_read_error(ring, error),
                }
            }
            Purpose::Write => {
                let CompletionData::Sent { buf, .. } = c.data else {
                    panic!("a write completed without its buffer: {:?}", c.data)
                };
                self.stack.tx_complete(buf, c.result.map(|written| written as usize));
            }
            Purpose::ReadRetry => self.retry = None,
        }
        self.flush(ring);
    }

    fn poll(&mut self, ring: &mut Ring, now: Instant, events: &mut impl FnMut(ConnEvent<'_>)) {
        self.stack.poll(now, events);
        self.flush(ring);
    }

    fn poll_at(&self) -> Option<Instant> {
        self.stack.poll_at()
    }

    fn send(&mut self, _ring: &mut Ring, conn: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        self.stack.send(conn, bytes)
    }

    fn send_owned(&mut self, _ring: &mut Ring, conn: ConnId, bytes: Vec<u8>) -> Result<(), SendError> {
        self.stack.send_owned(conn, bytes)
    }

    fn queued_bytes(&self, conn: ConnId) -> usize {
        self.stack.queued_bytes(conn)
    }

    fn close(&mut self, _ring: &mut Ring, conn: ConnId) {
        self.stack.close(conn);
    }

    fn abort(&mut self, _ring: &mut Ring, conn: ConnId) {
        self.stack.abort(conn);
    }

    fn pause_recv(&mut self, _ring: &mut Ring, conn: ConnId) {
        self.stack.pause_recv(conn);
    }

    fn resume_recv(&mut self, _ring: &mut Ring, conn: ConnId) {
        self.stack.resume_recv(conn);
    }

    fn connect(&mut self, _ring: &mut Ring, addr: SocketAddr) -> Result<ConnId, ConnectError> {
        self.stack.connect(addr)
    }

    fn stop_accepting(&mut self, _ring: &mut Ring) {
        self.stack.stop_accepting();
    }

    fn open_conns(&self) -> usize {
        self.stack.open_conns()
    }
}
