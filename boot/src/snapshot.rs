//! Where V8's startup snapshot comes from when isobar starts: the file `--snapshot` names, else
//! the snapshot cache, else it is built — and then written to the cache, so that the next start
//! of the same binary with the same V8 flags loads it (~1 ms) instead of building it again
//! (~50 ms of CPU natively, seconds under TCG). docs/why-snapshot.md says why a cache and not a
//! snapshot embedded at build time.
//!
//! Nothing read here reaches V8 unchecked: a file must belong to this process's user and be
//! writable by no one else (`kernel_shim::file::read_private`), and its key (this binary's
//! build ID, V8's version and flags, isobar's JavaScript API and op table), length and checksum
//! must match (`runtime::engine::use_snapshot_bytes`). A file that fails any check is named in
//! a warning with the reason, and the snapshot is built as if there were none: a bad cache can
//! cost a start its speed, never its start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::cli::SnapshotSource;

/// `--snapshot-cache off`: no cache.
const CACHE_OFF: &str = "off";
/// The largest snapshot file read (today's is about 1 MB).
const SNAPSHOT_BYTES_MAX: usize = 64 << 20;
/// Snapshots of other builds or flags kept beside the one in use: a host may run two versions
/// of isobar in turn; each rebuild of a developer's binary would otherwise add a file.
const OTHERS_KEPT: usize = 3;
/// A temporary file this old was left by a writer that died; younger ones may be in use.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Where this process's snapshot came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The file `--snapshot` named.
    File(PathBuf),
    /// The snapshot cache.
    Cache(PathBuf),
    /// Built by this process (and written to the cache, if there is one).
    Built,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(_) => f.write_str("from its file"),
            Origin::Cache(_) => f.write_str("from the cache"),
            Origin::Built => f.write_str("built"),
        }
    }
}

/// Starts V8 with a snapshot from `source` (or built); see the module's documentation. Call it
/// after `runtime::engine::set_extra_flags`, on the main thread, before the process is sealed.
pub fn prepare(source: &SnapshotSource) -> anyhow::Result<Origin> {
    let origin = load(source);
    runtime::engine::init().map_err(|e| anyhow::anyhow!("V8 failed to start: {e}"))?;
    if origin == Origin::Built
        && source.snapshot.is_none()
        && let Some(dir) = cache_dir(source)
    {
        store(&dir);
    }
    Ok(origin)
}

/// Hands V8 the snapshot of the `--snapshot` file or of the cache, if one passes every check.
fn load(source: &SnapshotSource) -> Origin {
    if let Some(path) = &source.snapshot {
        return match read(path) {
            Ok(()) => {
                tracing::info!("snapshot loaded from {}", path.display());
                Origin::File(path.clone())
            }
            Err(why) => {
                tracing::warn!("not using the snapshot file {}: {why}; building the snapshot", path.display());
                Origin::Built
            }
        };
    }
    let Some(dir) = cache_dir(source) else { return Origin::Built };
    let path = dir.join(cache_file_name());
    if let Err(error) = kernel_shim::file::private_dir(&dir) {
        tracing::warn!(
            "not using the snapshot cache: {error}; building the snapshot (choose a directory only this user \
             may write to with --snapshot-cache DIR, or turn it off with --snapshot-cache off)"
        );
        return Origin::Built;
    }
    match read(&path) {
        Ok(()) => {
            tracing::info!("snapshot loaded from the cache {}", path.display());
            Origin::Cache(path)
        }
        Err(why) if !path.exists() => {
            tracing::info!("no snapshot in the cache yet ({}: {why}); building it", path.display());
            Origin::Built
        }
        Err(why) => {
            tracing::warn!("not using the cached snapshot {}: {why}; building it again", path.display());
            Origin::Built
        }
    }
}

/// Reads `path` as a private file and gives it to V8 if its key, length and checksum match.
fn read(path: &Path) -> Result<(), String> {
    let bytes = kernel_shim::file::map_private(path, SNAPSHOT_BYTES_MAX).map_err(|e| e.to_string())?;
    runtime::engine::use_snapshot_bytes(bytes)
}

/// The cache file of this binary with these flags.
fn cache_file_name() -> String {
    format!("snapshot-{:016x}.bin", runtime::engine::snapshot_key())
}

/// The snapshot cache directory, if there is one: `--snapshot-cache` (or
/// `ISOBAR_SNAPSHOT_CACHE`), else systemd's `CACHE_DIRECTORY`, else /var/cache/isobar for
/// root, else the user's cache directory. None when it is off, when no place is known, or when
/// this binary has no build ID to key it with.
fn cache_dir(source: &SnapshotSource) -> Option<PathBuf> {
    if kernel_shim::executable::build_id().is_none() {
        tracing::info!(
            "this binary has no GNU build ID to key a cached snapshot with: the snapshot is built each start"
        );
        return None;
    }
    if let Some(dir) = &source.snapshot_cache {
        return (dir.as_os_str() != CACHE_OFF).then(|| dir.clone());
    }
    let env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    if let Some(dirs) = env("CACHE_DIRECTORY") {
        // systemd gives one directory per CacheDirectory= entry, separated by colons.
        let first = dirs.to_string_lossy().split(':').next().map(PathBuf::from);
        return first.map(|dir| dir.join("snapshot"));
    }
    if kernel_shim::user::is_root() {
        return Some(PathBuf::from("/var/cache/isobar"));
    }
    env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|home| home.join(".cache"))).map(|dir| dir.join("isobar"))
}

/// Writes this process's snapshot into the cache `dir` (already checked by [`load`]), and
/// removes the oldest snapshots of other builds beyond [`OTHERS_KEPT`].
fn store(dir: &Path) {
    let name = cache_file_name();
    let written = runtime::engine::snapshot_file().map_err(|e| std::io::Error::other(e.to_string())).and_then(|file| {
        kernel_shim::file::private_dir(dir).and_then(|()| kernel_shim::file::write_private(dir, &name, &file))
    });
    match written {
        Ok(()) => tracing::info!("snapshot written to the cache {}", dir.join(&name).display()),
        Err(error) => tracing::warn!("the snapshot could not be written to the cache {}: {error}", dir.display()),
    }
    prune(dir, &name);
}

/// Removes snapshots of other builds beyond the newest [`OTHERS_KEPT`], and temporary files
/// left by writers that died.
fn prune(dir: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let now = SystemTime::now();
    let mut others: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(now);
        if name.starts_with(".snapshot-") && name.ends_with(".tmp") {
            if now.duration_since(modified).unwrap_or_default() > ABANDONED_AFTER {
                let _ = std::fs::remove_file(entry.path());
            }
        } else if name.starts_with("snapshot-") && name.ends_with(".bin") && name != current {
            others.push((modified, entry.path()));
        }
    }
    others.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in others.into_iter().skip(OTHERS_KEPT) {
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!("removed the old cached snapshot {}", path.display()),
            Err(error) => tracing::debug!("cannot remove the old cached snapshot {}: {error}", path.display()),
        }
    }
}

/// How long each phase of start-up took, in wall time and in the main thread's CPU time (which
/// the other work of a shared host does not inflate), logged as one line once the process
/// serves.
#[derive(Debug)]
pub struct Timeline {
    started: (Instant, Duration),
    last: (Instant, Duration),
    phases: Vec<(&'static str, Duration, Duration)>,
}

impl Timeline {
    pub fn new() -> Timeline {
        let now = (Instant::now(), kernel_shim::cpu::thread_cpu_time());
        Timeline { started: now, last: now, phases: Vec::new() }
    }

    /// Ends the phase `name` now.
    pub fn mark(&mut self, name: &'static str) {
        let now = (Instant::now(), kernel_shim::cpu::thread_cpu_time());
        self.phases.push((name, now.0 - self.last.0, now.1.saturating_sub(self.last.1)));
        self.last = now;
    }

    /// The line for the log: every phase in order (wall/CPU milliseconds), and the totals.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let phases: Vec<String> =
            self.phases.iter().map(|(name, wall, cpu)| format!("{name} {:.2}/{:.2}", ms(*wall), ms(*cpu))).collect();
        format!(
            "{:.2} ms, {:.2} ms of the main thread's CPU ({}; wall/CPU ms)",
            ms(self.last.0 - self.started.0),
            ms(self.last.1.saturating_sub(self.started.1)),
            phases.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_current_snapshot_and_the_newest_others() {
        let dir = std::env::temp_dir().join(format!("isobar-snapshot-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        let make = |name: &str, age_s: u64| {
            let path = dir.join(name);
            let file = std::fs::File::create(&path).unwrap();
            file.set_modified(now - Duration::from_secs(age_s)).unwrap();
        };
        make("snapshot-current.bin", 10_000);
        for (i, age) in [10, 20, 30, 40, 50].into_iter().enumerate() {
            make(&format!("snapshot-other{i}.bin"), age);
        }
        make(".snapshot-current.bin.1.tmp", 2 * 3600);
        make(".snapshot-current.bin.2.tmp", 60);
        make("unrelated.txt", 99_999);
        prune(&dir, "snapshot-current.bin");
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".snapshot-current.bin.2.tmp",
                "snapshot-current.bin",
                "snapshot-other0.bin",
                "snapshot-other1.bin",
                "snapshot-other2.bin",
                "unrelated.txt"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_timeline_names_every_phase_in_order() {
        let mut timeline = Timeline::new();
        timeline.mark("one");
        timeline.mark("two");
        let line = timeline.summary();
        assert!(line.contains("(one ") && line.contains(", two ") && line.ends_with("wall/CPU ms)"), "{line}");
    }
}
