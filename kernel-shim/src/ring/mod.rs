//! A per-core io_uring driver whose operations own their resources until completion.
//!
//! The caller hands an [`Op`] to [`Ring::submit`] *by value*: the buffer, the socket address or
//! the timespec that the kernel will read or write moves into the ring's table of operations
//! and stays there until the operation's last completion is reaped, when it comes back in
//! [`Completion::data`]. So no kernel access can outlive the memory it touches, whatever the
//! caller does (this is monoio's owned-buffer idea, without futures).
//!
//! Multishot receives use a provided-buffer ring (one pool per `Ring`, see [`RingConfig`]): the
//! kernel picks a buffer when data arrives, the completion lends it to the caller
//! ([`CompletionData::Provided`], read with [`Ring::provided`]) and the caller gives it back with
//! [`Ring::recycle`]. When the pool runs dry, a multishot recv ends with `ENOBUFS` (its last
//! completion has `more == false`): recycle what you hold, then submit a new `RecvMulti`. No
//! data is lost; it waits in the socket.
//!
//! Completion keys are the caller's: by convention the top 8 bits name the subsystem that
//! submitted the operation ([`key_tag`], [`tagged_key`]) so one ring can serve the network, the
//! scheduler's timers and its cross-core wake-ups.

mod provided;
mod setup;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{EnterFlags, IoUring, cqueue, opcode, squeue, types};
use slab::Slab;

pub use setup::RingError;

use crate::net::RawSocketAddr;
use provided::ProvidedBuffers;

/// Key bits above this shift are the subsystem tag; the 56 bits below belong to that subsystem.
pub const KEY_TAG_SHIFT: u32 = 56;

/// The subsystem tag of a completion key.
pub const fn key_tag(key: u64) -> u8 {
    (key >> KEY_TAG_SHIFT) as u8
}

/// A key carrying `tag` in its top 8 bits and `low` (which must fit in 56 bits) below.
pub const fn tagged_key(tag: u8, low: u64) -> u64 {
    assert!(low >> KEY_TAG_SHIFT == 0, "the low part of a key must fit in 56 bits");
    ((tag as u64) << KEY_TAG_SHIFT) | low
}

/// How to size a [`Ring`].
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    /// Submission queue entries (rounded up to a power of two by the kernel). The completion
    /// queue gets four times as many, because multishot operations post many completions each.
    pub entries: u32,
    /// Buffers in the provided-buffer pool used by [`Op::RecvMulti`]: a power of two up to
    /// 32768, or 0 for a ring that never receives with multishot.
    pub recv_buffers: u16,
    /// Bytes of each provided buffer: the most one multishot completion can carry.
    pub recv_buffer_bytes: u32,
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        RingConfig { entries: 256, recv_buffers: 256, recv_buffer_bytes: 16 * 1024 }
    }
}

/// An operation to submit. Each one moves its resources into the ring until its final
/// completion. `fd`s are borrowed by number: the caller keeps them open until the operation
/// completes (an early close is not memory-unsafe; the operation then fails or acts on
/// whatever file the number names, which is a bug in the caller).
#[derive(Debug)]
pub enum Op {
    /// Multishot accept: each completion carries a new connection ([`CompletionData::Accepted`]),
    /// opened with `SOCK_CLOEXEC`, until one arrives with `more == false`.
    AcceptMulti { fd: RawFd },
    /// Multishot recv into the provided-buffer pool ([`CompletionData::Provided`]). `Ok(0)` is
    /// end of stream. Ends with `ENOBUFS` when the pool is empty: recycle, then submit again.
    RecvMulti { fd: RawFd },
    /// Single-shot recv into the spare capacity of `buf` (`buf.capacity() - buf.len()` bytes,
    /// which must be > 0); the completion gives `buf` back with `len` grown by the result.
    Recv { fd: RawFd, buf: Vec<u8> },
    /// Sends `buf[offset..]` (with MSG_NOSIGNAL); may be partial: the completion gives back
    /// `buf` and `offset`, and the caller resubmits from `offset + result`.
    Send { fd: RawFd, buf: Vec<u8>, offset: usize },
    /// `read(2)` into the spare capacity of `buf`, like [`Op::Recv`] (eventfd, TAP).
    Read { fd: RawFd, buf: Vec<u8> },
    /// `write(2)` of `buf[offset..]`, like [`Op::Send`] (eventfd, TAP).
    Write { fd: RawFd, buf: Vec<u8>, offset: usize },
    /// Connects a socket (from [`crate::net::tcp_socket`]) to `addr`.
    Connect { fd: RawFd, addr: SocketAddr },
    /// Fires after `after`: completes with `Ok(0)`, or `Err(Errno::CANCELED)` when cancelled.
    Timeout { after: Duration },
    /// Cancels one operation: `Ok(0)` when found, `Err(NOT_FOUND)` when it had already ended
    /// (a stale `OpId` never matches a newer operation), `Err(ALREADY)` when it is running.
    Cancel { target: OpId },
    /// Cancels every operation on `fd`: `Ok(count)` or `Err(NOT_FOUND)`.
    CancelFd { fd: RawFd },
    /// `shutdown(2)`.
    Shutdown { fd: RawFd, how: Shutdown },
    /// Closes `fd`. Operations still pending on it keep the file open and keep waiting, so
    /// submit [`Op::CancelFd`] first (submissions run in order).
    Close { fd: OwnedFd },
}

/// Names one submitted operation: slab slot and generation, so a stale id never matches a newer
/// operation that reuses the slot. It is also the SQE's user_data.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(u64);

impl OpId {
    fn new(slot: usize, generation: u32) -> OpId {
        OpId((u64::from(generation) << 32) | slot as u64)
    }
    fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({}#{})", self.slot(), self.generation())
    }
}

/// A positive `errno` value that an operation completed with.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// ECANCELED: the operation was cancelled.
    pub const CANCELED: Errno = Errno(libc::ECANCELED);
    /// ENOBUFS: the provided-buffer pool was empty.
    pub const NO_BUFFERS: Errno = Errno(libc::ENOBUFS);
    /// ENOENT: a cancel found nothing to cancel.
    pub const NOT_FOUND: Errno = Errno(libc::ENOENT);
    /// EALREADY: a cancel found its target already running.
    pub const ALREADY: Errno = Errno(libc::EALREADY);
    /// EPIPE: the peer is gone; nothing more can be sent.
    pub const BROKEN_PIPE: Errno = Errno(libc::EPIPE);
    /// ECONNRESET: the peer reset the connection.
    pub const CONNECTION_RESET: Errno = Errno(libc::ECONNRESET);
    /// ECONNREFUSED: nothing listens at the address connected to.
    pub const CONNECTION_REFUSED: Errno = Errno(libc::ECONNREFUSED);

    pub const fn from_raw(errno: i32) -> Errno {
        assert!(errno > 0);
        Errno(errno)
    }
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, io::Error::from_raw_os_error(self.0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        io::Error::from_raw_os_error(self.0).fmt(f)
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for io::Error {
    fn from(errno: Errno) -> io::Error {
        io::Error::from_raw_os_error(errno.0)
    }
}

/// One completion of one operation.
#[derive(Debug)]
pub struct Completion {
    /// The caller's routing key given to [`Ring::submit`].
    pub key: u64,
    pub op: OpId,
    /// The operation's result (bytes, count, 0) or the errno it failed with.
    pub result: Result<u32, Errno>,
    /// A multishot operation goes on: more completions with this `op` will follow.
    pub more: bool,
    pub data: CompletionData,
}

/// What an operation gives back.
#[derive(Debug)]
pub enum CompletionData {
    None,
    /// `Recv`/`Read`: the buffer, its `len` grown by the bytes read (unchanged on error).
    Buffer(Vec<u8>),
    /// `Send`/`Write`: the buffer and the offset this operation started at.
    Sent {
        buf: Vec<u8>,
        offset: usize,
    },
    /// `RecvMulti`: a provided buffer lent to the caller; read it with [`Ring::provided`] and
    /// give it back with [`Ring::recycle`].
    Provided {
        buf_id: u16,
        len: u32,
    },
    /// `AcceptMulti`: the new connection.
    Accepted(OwnedFd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    AcceptMulti,
    RecvMulti,
    Fill,
    Drain,
    Connect,
    Timeout,
    Other,
}

/// What an in-flight operation holds for the kernel.
enum Held {
    Nothing,
    Buffer(Vec<u8>),
    Sent { buf: Vec<u8>, offset: usize },
    // Boxed so that the address the SQE points at does not move when the slab grows.
    Addr(#[allow(dead_code)] Box<RawSocketAddr>),
    Time(#[allow(dead_code)] Box<types::Timespec>),
}

struct Slot {
    generation: u32,
    key: u64,
    kind: Kind,
    held: Held,
}

/// The user_data of the cancel-everything request issued when a ring is dropped. `OpId`s never
/// take this value (slots stay below `OPS_MAX`).
const DROP_CANCEL_USER_DATA: u64 = u64::MAX;

/// The most operations in flight at once: a bound on the table, far above any core's needs.
const OPS_MAX: usize = 1 << 24;

/// How long dropping a ring waits for cancelled operations to finish before it leaks their
/// memory rather than free it under the kernel.
const DROP_DRAIN_MS: u64 = 1000;

/// A per-core io_uring. `!Send`: create it on the thread that uses it (SINGLE_ISSUER binds the
/// ring to that thread).
pub struct Ring {
    // Field order matters for Drop: `uring` (the ring fd) is dropped first, then the memory that
    // in-flight operations point into (`ops`, `buffers`). See `Drop for Ring`.
    uring: IoUring,
    ops: Slab<Slot>,
    buffers: Option<ProvidedBuffers>,
    /// SQEs that found the submission queue full and could not be flushed at once; they go to
    /// the kernel first at the next `wait`, in order.
    backlog: VecDeque<squeue::Entry>,
    generation: u32,
    _not_send: PhantomData<*mut ()>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.ops.len())
            .field("backlog", &self.backlog.len())
            .field("buffers_lent", &self.buffers_lent())
            .finish()
    }
}

impl Ring {
    /// Creates the ring, probes the kernel for every opcode it uses, registers the
    /// provided-buffer pool, and restricts the ring to the driver's opcodes before enabling it
    /// (see `setup`). Errors name the cause and the fix.
    pub fn new(config: RingConfig) -> Result<Ring, RingError> {
        if config.entries == 0 || config.entries > 32768 {
            return Err(RingError::Config("entries must be between 1 and 32768"));
        }
        if config.recv_buffers != 0
            && (!config.recv_buffers.is_power_of_two() || config.recv_buffers > provided::BUFFERS_MAX)
        {
            return Err(RingError::Config("recv_buffers must be 0 or a power of two up to 32768"));
        }
        if config.recv_buffers != 0 && config.recv_buffer_bytes == 0 {
            return Err(RingError::Config("recv_buffer_bytes must be > 0"));
        }
        let uring = setup::create(config.entries, config.entries * 4)?;
        let buffers = match config.recv_buffers {
            0 => None,
            count => {
                let pool = ProvidedBuffers::new(count, config.recv_buffer_bytes)?;
                pool.register(&uring.submitter())?;
                Some(pool)
            }
        };
        setup::restrict_and_enable(&uring)?;
        Ok(Ring {
            uring,
            ops: Slab::with_capacity(config.entries as usize),
            buffers,
            backlog: VecDeque::new(),
            generation: 0,
            _not_send: PhantomData,
        })
    }

    /// Queues `op`; its completions carry `key`. If the submission queue is full the queued
    /// entries are flushed to the kernel first; an op is never lost.
    pub fn submit(&mut self, op: Op, key: u64) -> OpId {
        assert!(self.ops.len() < OPS_MAX, "more than {OPS_MAX} io_uring operations in flight");
        self.generation = self.generation.wrapping_add(1);
        let slot = self.ops.vacant_key();
        let id = OpId::new(slot, self.generation);
        let (sqe, kind, held) = build_sqe(op);
        // The SQE's pointers target heap memory owned by `held` (a Vec's buffer, a Box): moving
        // `held` into the slab does not move what they point at.
        self.ops.insert(Slot { generation: self.generation, key, kind, held });
        self.push(sqe.user_data(id.0));
        id
    }

    /// Submits everything queued, then waits until at least one completion is ready or
    /// `timeout` passes (`None`: no limit; `Some(ZERO)`: just poll). Appends the completions to
    /// `out` and returns how many it appended (0 on timeout or signal).
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> Result<usize, RingError> {
        let before = out.len();
        self.submit_backlog()?;
        let entered = if !self.uring.completion().is_empty() {
            // Completions are ready: submit without sleeping.
            self.uring.submit()
        } else {
            match timeout {
                None => self.uring.submit_and_wait(1),
                // Just a look: no wait, so no timer. Arming even a zero timeout costs the kernel a
                // timer (a VM exit under virtualization) on every turn of a busy loop.
                Some(Duration::ZERO) => {
                    let queued = u32::try_from(self.uring.submission().len()).unwrap_or(u32::MAX);
                    // SAFETY: a plain io_uring_enter on our own ring with no argument: submit what
                    // is queued (every entry's memory is held in `ops`) and, with GETEVENTS and
                    // min_complete 0, run the deferred completions (DEFER_TASKRUN only runs them
                    // for an enter that asks for events) without waiting for any.
                    unsafe {
                        self.uring.submitter().enter::<libc::sigset_t>(queued, 0, EnterFlags::GETEVENTS.bits(), None)
                    }
                }
                Some(after) => {
                    let timespec = types::Timespec::from(after);
                    let args = types::SubmitArgs::new().timespec(&timespec);
                    self.uring.submitter().submit_with_args(1, &args)
                }
            }
        };
        match entered {
            Ok(_) => {}
            Err(error) => match error.raw_os_error() {
                // Timed out, interrupted by a signal, or the CQ is backed up: reap what is there.
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => return Err(RingError::Enter { error }),
            },
        }
        self.reap(out);
        Ok(out.len() - before)
    }

    /// The first `len` bytes of provided buffer `buf_id`, lent by a [`CompletionData::Provided`].
    pub fn provided(&self, buf_id: u16, len: u32) -> &[u8] {
        self.buffers.as_ref().expect("a ring without provided buffers lent one").bytes(buf_id, len)
    }

    /// Gives provided buffer `buf_id` back to the kernel. Every lent buffer must come back
    /// exactly once, or the pool shrinks until every multishot recv ends with ENOBUFS.
    pub fn recycle(&mut self, buf_id: u16) {
        self.buffers.as_mut().expect("a ring without provided buffers lent one").give_back(buf_id);
    }

    /// Bytes in each provided buffer (the most one multishot completion carries).
    pub fn provided_buffer_bytes(&self) -> u32 {
        self.buffers.as_ref().map_or(0, ProvidedBuffers::buffer_bytes)
    }

    /// Provided buffers currently lent to the caller.
    pub fn buffers_lent(&self) -> usize {
        self.buffers.as_ref().map_or(0, ProvidedBuffers::lent_count)
    }

    /// Operations submitted whose final completion has not been reaped yet.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    fn push(&mut self, sqe: squeue::Entry) {
        if self.backlog.is_empty() && self.try_push(&sqe) {
            return;
        }
        // Full: give the queued entries to the kernel (which consumes all of them, with
        // SUBMIT_ALL) and try again; if even that fails, keep the entry for the next `wait`.
        if let Err(error) = self.uring.submit() {
            tracing::debug!(%error, "io_uring submit on a full queue failed; deferring the SQE");
        }
        self.move_backlog();
        if !(self.backlog.is_empty() && self.try_push(&sqe)) {
            self.backlog.push_back(sqe);
        }
    }

    fn try_push(&mut self, sqe: &squeue::Entry) -> bool {
        // SAFETY: every pointer in `sqe` targets memory held by its slot in `self.ops` (or by the
        // kernel ABI's by-value fields) until the final CQE for it is reaped in `reap`, and the
        // fd numbers it names cannot cause memory unsafety. Established in `build_sqe`/`submit`.
        unsafe { self.uring.submission().push(sqe).is_ok() }
    }

    fn move_backlog(&mut self) {
        while let Some(sqe) = self.backlog.pop_front() {
            if !self.try_push(&sqe) {
                self.backlog.push_front(sqe);
                break;
            }
        }
    }

    /// Hands the whole backlog to the kernel before any wait, so an op that the wait depends on
    /// is never left in user space.
    /// Hands every queued operation to the kernel now, without waiting for completions: call
    /// before work that takes a while (making an isolate), so a response already queued goes out
    /// first instead of at the next [`Ring::wait`].
    pub fn flush(&mut self) -> Result<(), RingError> {
        self.submit_backlog()?;
        self.uring.submit().map_err(|error| RingError::Enter { error })?;
        Ok(())
    }

    fn submit_backlog(&mut self) -> Result<(), RingError> {
        let rounds_max = self.backlog.len() + 1;
        for _ in 0..rounds_max {
            if self.backlog.is_empty() {
                return Ok(());
            }
            self.move_backlog();
            self.uring.submit().map_err(|error| RingError::Enter { error })?;
        }
        assert!(self.backlog.is_empty(), "the kernel accepted no SQE for {rounds_max} rounds");
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.uring.completion();
        cq.sync();
        for cqe in &mut cq {
            if cqe.user_data() == DROP_CANCEL_USER_DATA {
                continue;
            }
            out.push(complete(&mut self.ops, self.buffers.as_mut(), cqe.user_data(), cqe.result(), cqe.flags()));
        }
    }
}

/// Builds the SQE for `op` and what the op must hold until its final completion.
fn build_sqe(op: Op) -> (squeue::Entry, Kind, Held) {
    match op {
        Op::AcceptMulti { fd } => {
            let sqe = opcode::AcceptMulti::new(types::Fd(fd)).flags(libc::SOCK_CLOEXEC).build();
            (sqe, Kind::AcceptMulti, Held::Nothing)
        }
        Op::RecvMulti { fd } => {
            let sqe = opcode::RecvMulti::new(types::Fd(fd), provided::BUFFER_GROUP).build();
            (sqe, Kind::RecvMulti, Held::Nothing)
        }
        Op::Recv { fd, mut buf } => {
            let (ptr, len) = spare_capacity(&mut buf);
            (opcode::Recv::new(types::Fd(fd), ptr, len).build(), Kind::Fill, Held::Buffer(buf))
        }
        Op::Read { fd, mut buf } => {
            let (ptr, len) = spare_capacity(&mut buf);
            // Offset -1: the file position (or none, for eventfd and TAP).
            let sqe = opcode::Read::new(types::Fd(fd), ptr, len).offset(u64::MAX).build();
            (sqe, Kind::Fill, Held::Buffer(buf))
        }
        Op::Send { fd, buf, offset } => {
            let (ptr, len) = unsent(&buf, offset);
            let sqe = opcode::Send::new(types::Fd(fd), ptr, len).flags(libc::MSG_NOSIGNAL).build();
            (sqe, Kind::Drain, Held::Sent { buf, offset })
        }
        Op::Write { fd, buf, offset } => {
            let (ptr, len) = unsent(&buf, offset);
            let sqe = opcode::Write::new(types::Fd(fd), ptr, len).offset(u64::MAX).build();
            (sqe, Kind::Drain, Held::Sent { buf, offset })
        }
        Op::Connect { fd, addr } => {
            let raw = Box::new(RawSocketAddr::from(addr));
            let sqe = opcode::Connect::new(types::Fd(fd), raw.as_ptr(), raw.len()).build();
            (sqe, Kind::Connect, Held::Addr(raw))
        }
        Op::Timeout { after } => {
            let timespec = Box::new(types::Timespec::from(after));
            let sqe = opcode::Timeout::new(&*timespec).build();
            (sqe, Kind::Timeout, Held::Time(timespec))
        }
        Op::Cancel { target } => (opcode::AsyncCancel::new(target.0).build(), Kind::Other, Held::Nothing),
        Op::CancelFd { fd } => {
            let builder = types::CancelBuilder::fd(types::Fd(fd)).all();
            (opcode::AsyncCancel2::new(builder).build(), Kind::Other, Held::Nothing)
        }
        Op::Shutdown { fd, how } => {
            let how = match how {
                Shutdown::Read => libc::SHUT_RD,
                Shutdown::Write => libc::SHUT_WR,
                Shutdown::Both => libc::SHUT_RDWR,
            };
            (opcode::Shutdown::new(types::Fd(fd), how).build(), Kind::Other, Held::Nothing)
        }
        Op::Close { fd } => {
            // The kernel closes it; from here the number is the op's, not an `OwnedFd`'s.
            let sqe = opcode::Close::new(types::Fd(fd.into_raw_fd())).build();
            (sqe, Kind::Other, Held::Nothing)
        }
    }
}

fn spare_capacity(buf: &mut Vec<u8>) -> (*mut u8, u32) {
    let spare = buf.capacity() - buf.len();
    assert!(spare > 0, "a read into a buffer without spare capacity would look like end of file");
    let len = u32::try_from(spare).unwrap_or(u32::MAX);
    (buf.spare_capacity_mut().as_mut_ptr().cast::<u8>(), len)
}

fn unsent(buf: &[u8], offset: usize) -> (*const u8, u32) {
    assert!(offset <= buf.len(), "send offset {offset} past the end of a {}-byte buffer", buf.len());
    let rest = &buf[offset..];
    (rest.as_ptr(), u32::try_from(rest.len()).unwrap_or(u32::MAX))
}

/// Turns one CQE into a [`Completion`], giving back what the op held if this is its last one.
fn complete(
    ops: &mut Slab<Slot>,
    buffers: Option<&mut ProvidedBuffers>,
    user_data: u64,
    res: i32,
    flags: u32,
) -> Completion {
    let id = OpId(user_data);
    let slot = ops.get(id.slot()).filter(|slot| slot.generation == id.generation());
    let slot = slot.unwrap_or_else(|| panic!("CQE for {id:?}, which this ring did not submit"));
    let (key, kind) = (slot.key, slot.kind);
    let more = cqueue::more(flags);
    let mut result = if res >= 0 { Ok(res as u32) } else { Err(Errno(-res)) };
    let mut data = CompletionData::None;

    match kind {
        Kind::AcceptMulti => {
            if let Ok(fd) = result {
                // SAFETY: the kernel installed this descriptor for us in this completion and
                // nothing else in the process knows its number: we are its only owner.
                data = CompletionData::Accepted(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            }
        }
        Kind::RecvMulti => {
            if let Some(buf_id) = cqueue::buffer_select(flags) {
                let pool = buffers.expect("a provided buffer from a ring without a pool");
                let len = result.expect("a provided buffer with an error result");
                // Some files report a frame's full length even when the buffer cut it: what was
                // written is at most the buffer. The caller sees the cut (a length field that
                // says more than it got), never an out-of-bounds length.
                let len = len.min(pool.buffer_bytes());
                if let Ok(result) = result.as_mut() {
                    *result = len;
                }
                pool.lend(buf_id);
                data = CompletionData::Provided { buf_id, len };
            }
        }
        Kind::Timeout => {
            // A timeout that fires "fails" with ETIME; to the caller that is its success.
            if result == Err(Errno(libc::ETIME)) {
                result = Ok(0);
            }
        }
        Kind::Fill | Kind::Drain | Kind::Connect | Kind::Other => {
            assert!(!more, "a single-shot operation posted a CQE with IORING_CQE_F_MORE");
        }
    }

    if !more {
        let slot = ops.remove(id.slot());
        match slot.held {
            Held::Buffer(mut buf) => {
                if let Ok(read) = result.as_mut() {
                    // As above: a result longer than the space given (a TAP reporting a frame's
                    // full length) is clamped to what the kernel could have written.
                    let spare = (buf.capacity() - buf.len()) as u32;
                    if *read > spare {
                        *read = spare;
                    }
                    let read = *read as usize;
                    // SAFETY: the kernel wrote `read` bytes into the spare capacity that
                    // `spare_capacity` handed it, so they are initialised.
                    unsafe { buf.set_len(buf.len() + read) };
                }
                data = CompletionData::Buffer(buf);
            }
            Held::Sent { buf, offset } => data = CompletionData::Sent { buf, offset },
            Held::Nothing | Held::Addr(_) | Held::Time(_) => {}
        }
    }
    Completion { key, op: id, result, more, data }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if !self.ops.is_empty() {
            // Ask the kernel to cancel everything, then reap until every op has ended, so that
            // nothing it could still write into is freed. Bounded: an op that does not end in
            // time (a blocking read in an io-wq worker) keeps its memory forever instead.
            let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
            self.push(cancel_all.user_data(DROP_CANCEL_USER_DATA));
            let deadline = Instant::now() + Duration::from_millis(DROP_DRAIN_MS);
            let mut scratch = Vec::new();
            while !self.ops.is_empty() && Instant::now() < deadline {
                if self.wait(Some(Duration::from_millis(10)), &mut scratch).is_err() {
                    break;
                }
                scratch.clear();
            }
        }
        if !self.ops.is_empty() {
            tracing::error!(
                in_flight = self.ops.len(),
                "io_uring dropped with operations that did not end; leaking their buffers"
            );
            std::mem::forget(std::mem::take(&mut self.ops));
            if let Some(pool) = self.buffers.take() {
                pool.leak();
            }
        }
        // SAFETY (memory): from here no operation is in flight, so the kernel holds no pointer
        // into `ops` or the data buffers; the fields then drop in declaration order: `uring`
        // first (closing the ring fd tears the provided-buffer registration down), and only
        // then the buffers (`ops`) and the pool mappings (`buffers`). When ops did not end, their
        // memory was leaked above instead.
    }
}

#[cfg(test)]
mod tests;
