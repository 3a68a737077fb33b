//! Random bytes from the kernel's CSPRNG (`getrandom(2)`), for crypto.getRandomValues and
//! randomUUID. The call does not block once the kernel's pool is initialised, which it is long
//! before isobar serves requests (even as PID 1 in a fresh guest, after the first seconds).

use std::io;

/// Fills `buf` with cryptographically secure random bytes.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes for the duration of
        // the call; getrandom writes at most that many bytes into it.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_whole_buffer_with_varying_bytes() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        super::fill(&mut a).unwrap();
        super::fill(&mut b).unwrap();
        assert_ne!(a, b, "two 64-byte draws from the kernel CSPRNG were equal");
    }
}
