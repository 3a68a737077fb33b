//! A cross-core wake-up: any thread calls [`EventFd::notify`]; the owning core keeps an
//! [`Op::Read`](crate::ring::Op::Read) of [`EventFd::READ_BYTES`] bytes in its ring, which
//! completes on the first notification (and is then re-armed by the core).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd counter. `Send + Sync`: share it (e.g. in an `Arc`) with the notifiers.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// The size of one read of the counter.
    pub const READ_BYTES: usize = 8;

    /// A blocking eventfd: io_uring then parks the read until a notification instead of failing
    /// it with EAGAIN (as it would for `EFD_NONBLOCK`).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd only reads its integer arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, waking the reader. Never blocks in practice: it would only block
    /// once the counter reached 2^64 - 2 without being read.
    pub fn notify(&self) -> io::Result<()> {
        let one = 1u64.to_ne_bytes();
        for _ in 0..16 {
            // SAFETY: `one` is readable for its 8 bytes, the length passed.
            let written = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            if written == one.len() as isize {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        Err(io::Error::new(io::ErrorKind::Interrupted, "eventfd write interrupted 16 times"))
    }

    /// The descriptor, for the core's `Op::Read`.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The number of notifications in a completed read.
    pub fn count(read: &[u8]) -> u64 {
        let bytes: [u8; Self::READ_BYTES] = read.try_into().expect("an eventfd read is 8 bytes");
        u64::from_ne_bytes(bytes)
    }
}
