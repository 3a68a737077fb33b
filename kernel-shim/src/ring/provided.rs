//! The provided-buffer ring: a fixed pool of receive buffers that the kernel picks from when a
//! multishot recv has data, so no buffer is tied to an idle connection.
//!
//! Every buffer is, at any instant, in exactly one of two places: in the kernel's ring (it may
//! write into it) or lent to the caller through a completion (the kernel will not touch it until
//! [`ProvidedBuffers::give_back`]). `lent` records which; the pair of assertions in `lend` and
//! `give_back` keeps the two sides honest.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::RingError;

/// The buffer group id of the ring's one pool.
pub(super) const BUFFER_GROUP: u16 = 0;

/// The largest pool the kernel accepts (`ring_entries` of IORING_REGISTER_PBUF_RING).
pub(super) const BUFFERS_MAX: u16 = 1 << 15;

/// An anonymous, page-aligned, private mapping, unmapped on drop unless leaked. Not populated:
/// a page is faulted in when the kernel first writes a received packet into it, so a core's pool
/// (4 MB by default) costs no start-up time and no memory beyond what traffic has used. The
/// entries' pages are pinned by the kernel when the pool is registered.
struct Mapping {
    ptr: NonNull<u8>,
    bytes: usize,
}

impl Mapping {
    fn new(bytes: usize) -> Result<Mapping, RingError> {
        assert!(bytes > 0);
        // SAFETY: an anonymous private mapping at an address the kernel picks aliases nothing;
        // the arguments are plain values and the result is checked against MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::BufferMemory { bytes, error: io::Error::last_os_error() });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap never returns NULL without MAP_FIXED");
        Ok(Mapping { ptr, bytes })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`bytes` are exactly what mmap returned in `Mapping::new`, and the owner
        // (`ProvidedBuffers`) only drops the mapping once the kernel can no longer write to it
        // (see `Ring`'s Drop); a leaked pool is `mem::forget`-ed instead of dropped.
        let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
        debug_assert_eq!(rc, 0, "munmap of our own mapping failed");
    }
}

pub(super) struct ProvidedBuffers {
    /// The `io_uring_buf` entries shared with the kernel; entry 0's `resv` field is the tail.
    entries: Mapping,
    /// `count` buffers of `buffer_bytes` each, back to back.
    data: Mapping,
    count: u16,
    buffer_bytes: u32,
    /// Our copy of the tail we last published.
    tail: u16,
    /// `lent[id]`: the caller holds buffer `id`; the kernel does not have it.
    lent: Vec<bool>,
    lent_count: usize,
}

impl ProvidedBuffers {
    pub(super) fn new(count: u16, buffer_bytes: u32) -> Result<ProvidedBuffers, RingError> {
        assert!(count.is_power_of_two() && count <= BUFFERS_MAX);
        assert!(buffer_bytes > 0);
        let page_bytes = page_bytes();
        let entries_bytes = (usize::from(count) * size_of::<BufRingEntry>()).next_multiple_of(page_bytes);
        let data_bytes = usize::from(count)
            .checked_mul(buffer_bytes as usize)
            .ok_or(RingError::Config("recv_buffers * recv_buffer_bytes overflows"))?;
        let mut pool = ProvidedBuffers {
            entries: Mapping::new(entries_bytes)?,
            data: Mapping::new(data_bytes)?,
            count,
            buffer_bytes,
            tail: 0,
            // Every buffer starts lent and is then handed to the kernel once, so the start-up
            // path goes through the same accounting as a recycle.
            lent: vec![true; usize::from(count)],
            lent_count: usize::from(count),
        };
        for id in 0..count {
            pool.give_back(id);
        }
        Ok(pool)
    }

    /// Registers the pool with the kernel as buffer group [`BUFFER_GROUP`].
    pub(super) fn register(&self, submitter: &io_uring::Submitter<'_>) -> Result<(), RingError> {
        let ring_addr = self.entries.ptr.as_ptr() as u64;
        // SAFETY: `entries` is a page-aligned mapping of at least `count` entries that lives until
        // the ring fd is closed: `Ring` declares `uring` before `buffers`, so the ring is dropped
        // (and the registration with it) before this mapping is unmapped.
        unsafe { submitter.register_buf_ring_with_flags(ring_addr, self.count, BUFFER_GROUP, 0) }
            .map_err(|error| RingError::BufferRegister { error })
    }

    pub(super) fn buffer_bytes(&self) -> u32 {
        self.buffer_bytes
    }

    /// The kernel handed buffer `id` to the caller in a completion.
    pub(super) fn lend(&mut self, id: u16) {
        assert!(id < self.count, "the kernel selected buffer {id} of a pool of {}", self.count);
        assert!(!self.lent[usize::from(id)], "buffer {id} was lent twice");
        self.lent[usize::from(id)] = true;
        self.lent_count += 1;
        debug_assert!(self.lent_count <= usize::from(self.count));
    }

    /// The caller is done with buffer `id`: publish it to the kernel again.
    pub(super) fn give_back(&mut self, id: u16) {
        assert!(id < self.count, "recycle of buffer {id} outside a pool of {}", self.count);
        assert!(self.lent[usize::from(id)], "recycle of buffer {id} that the kernel already has");
        self.lent[usize::from(id)] = false;
        self.lent_count -= 1;

        let mask = self.count - 1;
        let index = usize::from(self.tail & mask);
        let base = self.entries.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `index < count` and the mapping holds `count` entries. The kernel reads only
        // entries between its head and the published tail; this slot is at the (unpublished) tail
        // and the ring never holds more than `count` buffers (each id is in it at most once, by
        // the `lent` accounting above), so the kernel is not reading it now.
        let entry = unsafe { &mut *base.add(index) };
        entry.set_addr(self.data.ptr.as_ptr() as u64 + u64::from(id) * u64::from(self.buffer_bytes));
        entry.set_len(self.buffer_bytes);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `base` is the first entry of a live, page-aligned buffer ring, whose `resv`
        // field of entry 0 is the shared tail (the kernel ABI); u16 is naturally aligned there.
        let tail = unsafe { &*BufRingEntry::tail(base).cast::<AtomicU16>() };
        // Release: the entry written above must be visible before the kernel sees the new tail.
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of lent buffer `id`.
    pub(super) fn bytes(&self, id: u16, len: u32) -> &[u8] {
        assert!(id < self.count && self.lent[usize::from(id)], "buffer {id} is not lent out");
        assert!(len <= self.buffer_bytes);
        let offset = usize::from(id) * self.buffer_bytes as usize;
        // SAFETY: the range lies inside `data`; the buffer is lent, so the kernel does not write
        // it until `give_back`, which needs `&mut self` and so cannot run while this borrow lives.
        // The mapping was zero-filled by mmap, so every byte is initialised.
        unsafe { std::slice::from_raw_parts(self.data.ptr.as_ptr().add(offset), len as usize) }
    }

    pub(super) fn lent_count(&self) -> usize {
        self.lent_count
    }

    /// Keeps both mappings alive forever: used when the ring is dropped while the kernel might
    /// still write into a buffer.
    pub(super) fn leak(self) {
        std::mem::forget(self);
    }
}

fn page_bytes() -> usize {
    // SAFETY: sysconf only reads a constant of the process.
    let bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(bytes > 0, "sysconf(_SC_PAGESIZE) failed");
    bytes as usize
}
