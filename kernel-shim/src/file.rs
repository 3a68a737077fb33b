//! Reading small configuration files (certificates, keys, resolv.conf) whole, with a bound: a
//! path that names something huge or endless (`/dev/zero`, a log by mistake) is an error, not
//! an allocation without end. And private files: a cache only this process's user may have
//! written (the V8 startup snapshot), mapped only if that holds, and written so that a reader
//! never sees half of one.
//!
//! Blocking file I/O: for the control thread (start-up, SIGHUP reloads), never a core's loop.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The whole of the file at `path`, or an error if it holds more than `bytes_max` bytes.
pub fn read_bounded(path: &Path, bytes_max: usize) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    // Room for the whole file at once (and the byte that tells it ended): grown by doubling from
    // nothing, the system's 220 KB CA bundle was read through six buffers, each new memory.
    let size = file.metadata().map_or(0, |meta| meta.len()).min(bytes_max as u64) as usize;
    let mut bytes = Vec::with_capacity(size.saturating_add(1));
    let limit = u64::try_from(bytes_max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut bytes)?;
    if bytes.len() > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {bytes_max} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// The effective user ID of this process: whose files a private file or directory must be.
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether `meta` (of `path`) is something only this process's user can have written: owned by
/// the effective user, and writable by neither its group nor others.
fn check_private(path: &Path, meta: &Metadata) -> io::Result<()> {
    let denied =
        |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("{}: {why}", path.display())));
    if meta.uid() != effective_uid() {
        return denied(format!("belongs to uid {}, not to this process's user (uid {})", meta.uid(), effective_uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return denied(format!("other users may write to it (mode {:o})", meta.mode() & 0o7777));
    }
    Ok(())
}

/// The regular file at `path`, mapped read-only, if only this process's user can have written it
/// (see [`check_private`]) and it holds at most `bytes_max` bytes. A symbolic link is refused
/// (`O_NOFOLLOW`), and the checks are made on the file opened, not on the name, so the file
/// cannot be swapped between check and map.
///
/// A mapping, not a read: the V8 snapshot is ~700 KB, and reading it into memory of its own
/// cost ~0.45 ms of every start (~180 pages allocated and filled); mapped, its pages are the
/// page cache's, made present in one call (`MAP_POPULATE`). The catch is a mapping's: a file cut
/// short while mapped takes the pages past its new end with it, and reading them is SIGBUS. So
/// a caller keeps a mapping only while it must be fast, and copies what it keeps longer (see
/// `runtime::engine::detach_snapshot`). Writers of private files here replace them whole
/// ([`write_private`] renames), which leaves a mapping of the old file intact.
pub fn map_private(path: &Path, bytes_max: usize) -> io::Result<Mapped> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a regular file", path.display())));
    }
    check_private(path, &meta)?;
    if meta.len() > bytes_max as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {bytes_max} bytes", path.display()),
        ));
    }
    let len = meta.len() as usize;
    if len == 0 {
        return Ok(Mapped { start: std::ptr::NonNull::dangling(), len: 0 });
    }
    // SAFETY: a new private read-only mapping of a file we opened; no existing memory is named.
    let start = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_POPULATE,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    if start == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = std::ptr::NonNull::new(start.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave address 0"))?;
    Ok(Mapped { start, len })
}

/// A private file mapped read-only by [`map_private`]; unmapped when dropped unless leaked.
pub struct Mapped {
    start: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by the `Mapped` alone.
unsafe impl Send for Mapped {}
// SAFETY: as above: it is only ever read.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// The bytes, mapped for the rest of the process.
    pub fn leak(self) -> &'static [u8] {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the mapping is never unmapped now.
        unsafe { std::slice::from_raw_parts(this.start.as_ptr(), this.len) }
    }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes (or none, at a dangling address) live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: our own mapping, no longer borrowed.
            unsafe { libc::munmap(self.start.as_ptr().cast(), self.len) };
        }
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped").field("len", &self.len).finish()
    }
}

/// Makes `dir` (and its missing parents) with mode 0700 if it does not exist, and checks that
/// only this process's user can write to it: a private file in a directory others may write
/// to could be replaced by them.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io::Error::new(error.kind(), format!("cannot create {}: {error}", dir.display()))),
    }
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a directory", dir.display())));
    }
    check_private(dir, &meta)
}

/// Writes `bytes` to `dir/name` (mode 0600) as a whole: into a new file beside it first, which
/// is then renamed over `name`, so a reader sees the old file or the new one, never a part.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temporary)
        .and_then(|mut file: File| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&temporary, dir.join(name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_files_within_the_bound() {
        let dir = std::env::temp_dir().join(format!("kernel-shim-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("small.pem");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap(), b"0123456789");
        let error = read_bounded(&path, 9).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("larger than 9 bytes"), "{error}");
        // An endless file stops at the bound.
        assert_eq!(read_bounded(Path::new("/dev/zero"), 4096).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(read_bounded(&dir.join("missing"), 10).unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn private_files_are_read_only_if_no_one_else_can_have_written_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kernel-shim-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        private_dir(&dir.join("cache")).unwrap();
        let cache = dir.join("cache");
        assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o700);

        write_private(&cache, "blob", b"0123456789").unwrap();
        assert_eq!(std::fs::metadata(cache.join("blob")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(&*map_private(&cache.join("blob"), 10).unwrap(), b"0123456789");
        assert!(map_private(&cache.join("blob"), 9).unwrap_err().to_string().contains("larger than 9"));
        // Written again as a whole, over the old one.
        write_private(&cache, "blob", b"abc").unwrap();
        assert_eq!(&*map_private(&cache.join("blob"), 10).unwrap(), b"abc");
        // A mapping outlives the file's replacement: writers rename a new file over the name.
        let old = map_private(&cache.join("blob"), 10).unwrap();
        write_private(&cache, "blob", b"xyz123").unwrap();
        assert_eq!(&*old, b"abc");
        assert_eq!(map_private(&cache.join("blob"), 10).unwrap().leak(), b"xyz123");
        // An empty file maps to nothing.
        write_private(&cache, "empty", b"").unwrap();
        assert!(map_private(&cache.join("empty"), 10).unwrap().is_empty());

        // Writable by others: refused, as is a directory others may write to.
        std::fs::set_permissions(cache.join("blob"), std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = map_private(&cache.join("blob"), 10).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("other users may write"), "{error}");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&cache).unwrap_err().to_string().contains("other users may write"));
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();

        // Another user's file is refused even when no one else may write to it (as root, the
        // test can make one).
        if effective_uid() == 0 {
            std::fs::set_permissions(cache.join("blob"), std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(cache.join("blob"), Some(65534), None).unwrap();
            let error = map_private(&cache.join("blob"), 10).unwrap_err();
            assert!(error.to_string().contains("belongs to uid 65534"), "{error}");
        }

        // A symbolic link is not followed, and a directory is not a file.
        std::os::unix::fs::symlink(cache.join("blob"), cache.join("link")).unwrap();
        assert!(map_private(&cache.join("link"), 10).is_err());
        assert!(map_private(&cache, 10).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
