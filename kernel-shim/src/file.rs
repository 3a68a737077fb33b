//! Reading small configuration files (certificates, keys, resolv.conf) whole, with a bound: a
//! path that names something huge or endless (`/dev/zero`, a log by mistake) is an error, not
//! an allocation without end.
//!
//! Blocking file I/O: for the control thread (start-up, SIGHUP reloads), never a core's loop.

use std::io::{self, Read};
use std::path::Path;

/// The whole of the file at `path`, or an error if it holds more than `bytes_max` bytes.
pub fn read_bounded(path: &Path, bytes_max: usize) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
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
}
