//! What the servers under test cost the machine, read from /proc: CPU time and context switches
//! summed over every thread of every process of a server (sampled before and after a window),
//! and memory per process (RSS, and USS from smaps_rollup). It only reads /proc; it never
//! signals or changes a process.
//!
//! CPU time is each process's CPU clock (`clock_getcpuclockid`: every thread's time, exited
//! threads' included, in nanoseconds), falling back to the sum of its threads' `schedstat`; not
//! `stat`'s utime+stime, which count in 10 ms ticks. Context switches are each thread's
//! `voluntary_ctxt_switches + nonvoluntary_ctxt_switches` from its `status` (a process's own
//! `status` shows only its main thread's); a thread that exits inside a window takes its switch
//! counts with it (the servers measured here keep their threads).

use std::time::Duration;

/// CPU time and context switches of a set of processes, summed over all their threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Duration,
    pub context_switches: u64,
}

impl Usage {
    /// The growth from `before` to `self`.
    pub fn since(self, before: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(before.cpu),
            context_switches: self.context_switches.saturating_sub(before.context_switches),
        }
    }
}

/// The summed usage of every thread of `pids` (processes that are gone count nothing).
pub fn usage(pids: &[u32]) -> Usage {
    let mut total = Usage::default();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        let process_clock = process_cpu(*pid);
        total.cpu += process_clock.unwrap_or_default();
        for task in tasks.flatten() {
            let path = task.path();
            if process_clock.is_none()
                && let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
            {
                total.cpu += Duration::from_nanos(ns);
            }
            if let Ok(status) = std::fs::read_to_string(path.join("status")) {
                total.context_switches += status_field(&status, "voluntary_ctxt_switches:")
                    + status_field(&status, "nonvoluntary_ctxt_switches:");
            }
        }
    }
    total
}

/// The CPU clock of process `pid`: every thread's time, exited threads' included.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let pid = i32::try_from(pid).ok()?;
    let clock = nix::time::clock_getcpuclockid(nix::unistd::Pid::from_raw(pid)).ok()?;
    nix::time::clock_gettime(clock).ok().map(Duration::from)
}

/// CPU time of the one thread of `pid` named `name` (its `comm`), e.g. "isobar-core-0".
pub fn thread_cpu(pid: u32, name: &str) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let path = task.path();
        if std::fs::read_to_string(path.join("comm")).ok()?.trim_end() == name {
            let text = std::fs::read_to_string(path.join("schedstat")).ok()?;
            return text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos);
        }
    }
    None
}

fn status_field(status: &str, key: &str) -> u64 {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Memory of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// Resident set: every page mapped and present, shared ones included.
    pub rss_bytes: u64,
    /// Unique set: pages only this process maps (Private_Clean + Private_Dirty): what the
    /// machine gets back when the process exits. With one process of a binary running its text
    /// counts as private; with several, as shared.
    pub uss_bytes: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, other: Memory) -> Memory {
        Memory { rss_bytes: self.rss_bytes + other.rss_bytes, uss_bytes: self.uss_bytes + other.uss_bytes }
    }
}

/// The memory of `pid`, from smaps_rollup (zero if the process is gone).
pub fn memory(pid: u32) -> Memory {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { return Memory::default() };
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Memory {
        rss_bytes: kib("Rss:"),
        uss_bytes: kib("Private_Clean:") + kib("Private_Dirty:") + kib("Private_Hugetlb:"),
    }
}

/// An error saying why a configuration is skipped when it would need more than `share` of the
/// memory available now (the machine is shared: a run must not push others out of memory).
pub fn ensure_memory(needed_bytes: u64, share: f64, what: &str) -> anyhow::Result<()> {
    let available = memory_available_bytes();
    anyhow::ensure!(
        (needed_bytes as f64) < available as f64 * share || available == 0,
        "skipped: {what} would need about {} MB, {} MB available",
        needed_bytes >> 20,
        available >> 20
    );
    Ok(())
}

/// `MemAvailable` of the machine.
pub fn memory_available_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let before = usage(&[pid]);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = usage(&[pid]);
        assert!(after.since(before).cpu > Duration::ZERO, "{before:?} -> {after:?} ({x})");
        let memory = memory(pid);
        assert!(memory.rss_bytes > 0 && memory.uss_bytes > 0 && memory.uss_bytes <= memory.rss_bytes, "{memory:?}");
        assert!(usage(&[u32::MAX]) == Usage::default());
    }
}
