//! The CPU-time watchdog: stops JavaScript that runs past its budget.
//!
//! A core cannot interrupt itself while it is inside V8, so one watchdog thread per process
//! looks at every core a few hundred times a second. A core tells its [`CoreWatch`] when it
//! enters an isolate (the entry's start on the monotonic clock, and its CPU budget) and when it
//! leaves; the watchdog calls `terminate_execution` on the isolate once the entry has used its
//! budget. The entry's sequence number, checked under the same lock, guarantees the watchdog
//! never terminates a later entry (another tenant) by mistake.
//!
//! What "used" means: the core does not read its CPU clock when it enters (that clock is a
//! system call, ~0.3-0.8 us, which was 7% of a hello-world request). The watchdog reads the core
//! thread's CPU clock at its first look at an entry, and from then on counts the CPU the thread
//! used since that look plus the wall time before it. Both that figure and the entry's wall time
//! are at least the CPU the entry used, so the smaller of the two is what the entry is charged
//! against its budget: preemption by other processes after the first look costs the script
//! nothing, and the entry ends when its budget is used, never later than one polling period.
//! The core reads the same figures when the entry ends, to meter long entries exactly
//! ([`EntryEnd`]).
//!
//! Cost on the core: two uncontended mutex acquisitions and two monotonic clock reads (vDSO) per
//! entry. The watchdog's polling period is a tenth of the smallest CPU limit (at least 1 ms, at
//! most 10 ms), so a runaway script overshoots its limit by at most that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kernel_shim::cpu::ThreadClock;
use kernel_shim::seccomp::{Role, Sandbox};

#[derive(Default)]
struct Slot {
    /// Increments on every entry.
    sequence: u64,
    /// The isolate being run, while inside an entry.
    isolate: Option<v8::IsolateHandle>,
    /// When the entry started (monotonic).
    started: Option<Instant>,
    /// The entry's CPU budget.
    budget: Duration,
    /// The core thread's CPU clock at the watchdog's first look at this entry, and when.
    seen: Option<(Duration, Instant)>,
    /// The sequence number of the entry the watchdog terminated, if any.
    terminated: u64,
}

impl Slot {
    /// CPU the current entry has used at most, by `now` with the thread's CPU clock at `cpu_now`.
    fn spent(&self, now: Instant, cpu_now: Option<Duration>) -> Duration {
        let Some(started) = self.started else { return Duration::ZERO };
        cpu_at_most(started, now, self.seen, || cpu_now)
    }
}

/// CPU an entry that started at `started` has used at most by `now`: the smaller of its wall
/// time and, once the watchdog has `seen` it, the CPU the thread used since that look (the clock
/// is read through `cpu_now` only then) plus the wall time before it.
fn cpu_at_most(
    started: Instant,
    now: Instant,
    seen: Option<(Duration, Instant)>,
    cpu_now: impl FnOnce() -> Option<Duration>,
) -> Duration {
    let wall = now.saturating_duration_since(started);
    let since_look = seen.and_then(|(cpu_seen, at)| {
        cpu_now().map(|cpu| cpu.saturating_sub(cpu_seen) + at.saturating_duration_since(started))
    });
    since_look.map_or(wall, |cpu| wall.min(cpu))
}

/// What the core learns when an entry ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryEnd {
    /// The watchdog terminated the entry.
    pub terminated: bool,
    /// The watchdog looked at the entry while it ran: the thread's CPU clock then, and when.
    pub seen: Option<(Duration, Instant)>,
}

/// One core's entry in the watchdog's view.
pub struct CoreWatch {
    clock: ThreadClock,
    slot: Mutex<Slot>,
}

impl std::fmt::Debug for CoreWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreWatch").finish_non_exhaustive()
    }
}

impl CoreWatch {
    /// A watch for the calling thread (a core's thread).
    pub fn for_current_thread() -> std::io::Result<CoreWatch> {
        Ok(CoreWatch { clock: ThreadClock::current()?, slot: Mutex::new(Slot::default()) })
    }

    /// Called when the core enters `isolate` at `started` (monotonic) with `budget` of CPU time.
    /// Returns the entry's sequence number.
    pub fn begin(&self, isolate: &v8::IsolateHandle, started: Instant, budget: Duration) -> u64 {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.sequence += 1;
        slot.isolate = Some(isolate.clone());
        slot.started = Some(started);
        slot.budget = budget;
        slot.seen = None;
        slot.sequence
    }

    /// Called when the entry returns.
    pub fn end(&self, sequence: u64) -> EntryEnd {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(slot.sequence, sequence, "watchdog entries are strictly nested per core");
        slot.isolate = None;
        slot.started = None;
        EntryEnd { terminated: slot.terminated == sequence, seen: slot.seen.take() }
    }

    fn check(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.isolate.is_none() || slot.terminated == slot.sequence {
            return;
        }
        let cpu_now = self.clock.now().ok();
        let now = Instant::now();
        if slot.seen.is_none() {
            // The first look: from here on the CPU clock tells preemption from work.
            slot.seen = cpu_now.map(|cpu| (cpu, now));
        }
        if slot.spent(now, cpu_now) >= slot.budget
            && let Some(isolate) = slot.isolate.as_ref()
        {
            isolate.terminate_execution();
            slot.terminated = slot.sequence;
        }
    }
}

/// The CPU an entry that started at `started` and ended at `ended` (monotonic) used, as exactly
/// as the core can tell without reading its CPU clock on every entry: an entry the watchdog saw
/// is measured by the CPU clock from that look on (one clock read, made only for entries at
/// least a polling period long); a shorter one by its wall time, which is the same on a core
/// that is not preempted and more otherwise (never less).
pub fn entry_cpu(started: Instant, ended: Instant, end: &EntryEnd, cpu_now: impl FnOnce() -> Duration) -> Duration {
    cpu_at_most(started, ended, end.seen, || Some(cpu_now()))
}

/// The watchdog thread and the cores it watches.
pub struct Watchdog {
    cores: Arc<Mutex<Vec<Weak<CoreWatch>>>>,
    period: Arc<Mutex<Duration>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").finish_non_exhaustive()
    }
}

impl Watchdog {
    /// Starts the watchdog thread.
    pub fn start() -> std::io::Result<Watchdog> {
        Watchdog::start_confined(None)
    }

    /// Starts the watchdog thread, which confines itself to its seccomp role once the process
    /// is sealed. It checks at every period instead of waiting, because it must watch the
    /// cores during start-up too.
    pub fn start_confined(sandbox: Option<Arc<Sandbox>>) -> std::io::Result<Watchdog> {
        let mut sandbox = sandbox;
        let cores: Arc<Mutex<Vec<Weak<CoreWatch>>>> = Arc::default();
        let period = Arc::new(Mutex::new(Duration::from_millis(5)));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_cores, thread_period, thread_stop) = (cores.clone(), period.clone(), stop.clone());
        std::thread::Builder::new().name("isobar-watchdog".into()).spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                if let Some(pending) = &sandbox {
                    match pending.try_confine(Role::Watchdog) {
                        Ok(false) => {}
                        Ok(true) => sandbox = None,
                        // Start-up failed before the seal: the process is on its way out.
                        Err(kernel_shim::seccomp::SeccompError::Abandoned) => sandbox = None,
                        Err(error) => {
                            // Still under the process-wide filter; watching matters more than
                            // the narrower one.
                            tracing::error!("the watchdog could not confine itself: {error}");
                            sandbox = None;
                        }
                    }
                }
                let period = *thread_period.lock().unwrap_or_else(|e| e.into_inner());
                std::thread::sleep(period);
                let watches: Vec<Arc<CoreWatch>> = {
                    let mut cores = thread_cores.lock().unwrap_or_else(|e| e.into_inner());
                    cores.retain(|w| w.strong_count() > 0);
                    cores.iter().filter_map(Weak::upgrade).collect()
                };
                for watch in watches {
                    watch.check();
                }
            }
        })?;
        Ok(Watchdog { cores, period, stop })
    }

    /// Adds a core to watch; the watchdog forgets it when the last `Arc` is dropped.
    pub fn watch(&self, core: &Arc<CoreWatch>) {
        self.cores.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(core));
    }

    /// Sets the polling period from the smallest CPU limit in force (a tenth of it, 1..=10 ms).
    pub fn set_smallest_limit(&self, cpu_limit: Duration) {
        let period = (cpu_limit / 10).clamp(Duration::from_millis(1), Duration::from_millis(10));
        *self.period.lock().unwrap_or_else(|e| e.into_inner()) = period;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn slot(started: Instant, seen: Option<(Duration, Instant)>) -> Slot {
        Slot { sequence: 1, started: Some(started), budget: 50 * MS, seen, ..Slot::default() }
    }

    #[test]
    fn an_entry_not_yet_seen_is_charged_its_wall_time() {
        let started = Instant::now();
        assert_eq!(slot(started, None).spent(started + 7 * MS, Some(100 * MS)), 7 * MS);
    }

    #[test]
    fn preemption_after_the_first_look_is_not_charged() {
        // Seen 2 ms in with the thread's clock at 1 s; 100 ms later the thread has run 10 ms
        // (another process had the CPU for the rest).
        let started = Instant::now();
        let seen = Some((1000 * MS, started + 2 * MS));
        let spent = slot(started, seen).spent(started + 102 * MS, Some(1010 * MS));
        assert_eq!(spent, 12 * MS);
        // Running flat out, the CPU figure and the wall time agree, and the smaller is taken.
        let spent = slot(started, seen).spent(started + 102 * MS, Some(1100 * MS));
        assert_eq!(spent, 102 * MS);
    }

    #[test]
    fn entries_are_metered_by_the_cpu_clock_once_seen() {
        let started = Instant::now();
        let unseen = EntryEnd { terminated: false, seen: None };
        assert_eq!(entry_cpu(started, started + 3 * MS, &unseen, || unreachable!()), 3 * MS);
        let seen = EntryEnd { terminated: false, seen: Some((500 * MS, started + MS)) };
        assert_eq!(entry_cpu(started, started + 40 * MS, &seen, || 520 * MS), 21 * MS);
        // CPU time cannot outrun wall time: if the figures say so, the wall time is charged.
        assert_eq!(entry_cpu(started, started + 40 * MS, &seen, || 600 * MS), 40 * MS);
    }
}
