//! The smoltcp [`Device`] of one core's link: frames that came in (already past `frame` and
//! `steer`) wait in `rx`; frames smoltcp emits wait in `tx` until the I/O shell hands them to
//! the ring. Both queues are bounded by their owner; buffers are recycled through small pools
//! so the steady state allocates nothing.

use std::collections::VecDeque;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant as SmolInstant;

/// A received frame: the Ethernet frame is `buf[start..]` (a read buffer keeps its virtio-net
/// header in front, so the frame is never moved).
#[derive(Debug)]
pub(crate) struct RxFrame {
    pub buf: Vec<u8>,
    pub start: usize,
}

impl RxFrame {
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

#[derive(Debug)]
pub(crate) struct LinkDevice {
    pub rx: VecDeque<RxFrame>,
    /// Buffers of frames smoltcp has consumed, for the owner to recycle.
    pub rx_spent: Vec<Vec<u8>>,
    /// Frames ready to be written, each starting with `tx_header` zero bytes.
    pub tx: VecDeque<Vec<u8>>,
    /// Frames handed to the ring and not completed yet.
    pub tx_in_flight: usize,
    /// Bound on `tx.len() + tx_in_flight`: beyond it `transmit` says no and smoltcp keeps the
    /// data in its socket buffers until writes complete.
    pub tx_frames_max: usize,
    /// Bytes in front of each frame we send: a zeroed virtio-net header, or nothing.
    pub tx_header: usize,
    /// Empty buffers for outgoing frames.
    pub frame_pool: Vec<Vec<u8>>,
    pub frame_pool_max: usize,
    /// Ethernet MTU: IP MTU + 14.
    pub mtu: usize,
}

impl LinkDevice {
    pub fn tx_blocked(&self) -> bool {
        self.tx.len() + self.tx_in_flight >= self.tx_frames_max
    }

    /// A buffer for an outgoing frame (or a segment), from the pool when it has one.
    pub fn frame_buffer(&mut self) -> Vec<u8> {
        self.frame_pool.pop().unwrap_or_else(|| Vec::with_capacity(self.tx_header + self.mtu))
    }

    /// Gives a frame buffer back; kept only while the pool is short and the buffer small.
    pub fn recycle_frame(&mut self, mut buf: Vec<u8>) {
        if self.frame_pool.len() < self.frame_pool_max && buf.capacity() <= 2 * (self.tx_header + self.mtu) {
            buf.clear();
            self.frame_pool.push(buf);
        }
    }
}

pub(crate) struct LinkRx<'a> {
    frame: RxFrame,
    spent: &'a mut Vec<Vec<u8>>,
}

impl RxToken for LinkRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.frame.bytes());
        self.spent.push(self.frame.buf);
        result
    }
}

pub(crate) struct LinkTx<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
    pool: &'a mut Vec<Vec<u8>>,
    header: usize,
    mtu: usize,
}

impl TxToken for LinkTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(self.header + self.mtu));
        // Zeroed: the virtio-net header says "complete frame, no offload", and smoltcp writes
        // every byte of the frame itself.
        buf.clear();
        buf.resize(self.header + len, 0);
        let result = f(&mut buf[self.header..]);
        self.tx.push_back(buf);
        result
    }
}

impl Device for LinkDevice {
    type RxToken<'a> = LinkRx<'a>;
    type TxToken<'a> = LinkTx<'a>;

    fn receive(&mut self, _timestamp: SmolInstant) -> Option<(LinkRx<'_>, LinkTx<'_>)> {
        // The reply token ignores the tx bound: at most one reply per received frame, and the
        // receive queue is bounded.
        let frame = self.rx.pop_front()?;
        let rx = LinkRx { frame, spent: &mut self.rx_spent };
        let tx = LinkTx { tx: &mut self.tx, pool: &mut self.frame_pool, header: self.tx_header, mtu: self.mtu };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: SmolInstant) -> Option<LinkTx<'_>> {
        if self.tx_blocked() {
            return None;
        }
        Some(LinkTx { tx: &mut self.tx, pool: &mut self.frame_pool, header: self.tx_header, mtu: self.mtu })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        // No burst limit: the kernel queue behind the fd (TAP: tx_queue_len, 500 frames by
        // default; AF_PACKET: SO_RCVBUF) absorbs a window's worth of frames, and smoltcp's
        // `max_burst_size` clamps the *scaled* window field, which would cap windows at
        // burst x MSS x 2^shift and defeat window scaling.
        caps.max_burst_size = None;
        // Checksums verified on receive and computed on send (the default): `frame` completes
        // the partial ones the kernel hands over.
        caps
    }
}
