//! Process resource limits isobar adjusts at start-up.

use std::io;

/// Raises the soft limit on open files to the hard limit (every connection is a file) and
/// returns the new soft limit. Raising the hard limit needs CAP_SYS_RESOURCE, which isobar
/// does not ask for.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

/// The most memory mappings a process may have (`vm.max_map_count`). Every V8 isolate takes about
/// nine (its heap pages, code range and tables), and V8 aborts the whole process when it cannot
/// map memory, so this bounds how many isolates one process may hold.
pub fn max_map_count() -> io::Result<u64> {
    let text = std::fs::read_to_string(MAX_MAP_COUNT)?;
    text.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{MAX_MAP_COUNT}: {text:?}")))
}

/// Raises `vm.max_map_count` to `count` (needs root and a writable /proc/sys; a dedicated host's
/// sole service may do this, as databases do). Never lowers it.
pub fn raise_max_map_count(count: u64) -> io::Result<u64> {
    let current = max_map_count()?;
    if current >= count {
        return Ok(current);
    }
    std::fs::write(MAX_MAP_COUNT, count.to_string())?;
    max_map_count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_map_count_is_readable_and_never_lowered() {
        let current = super::max_map_count().unwrap();
        assert!(current > 0);
        // Asking for less than there is changes nothing.
        assert_eq!(super::raise_max_map_count(current / 2).unwrap(), current);
    }

    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        let soft = super::raise_open_files_limit().unwrap();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is valid and writable.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(soft, limit.rlim_max);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
