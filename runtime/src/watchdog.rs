//! The CPU-time watchdog: stops JavaScript that runs past its budget.
//!
//! A core cannot interrupt itself while it is inside V8, so one watchdog thread per process
//! looks at every core a few hundred times a second. A core tells its [`CoreWatch`] when it
//! enters an isolate (with the CPU-time deadline of that entry) and when it leaves; the watchdog
//! reads the core thread's CPU clock and, past the deadline, calls `terminate_execution` on the
//! isolate. The entry's sequence number, checked under the same lock, guarantees the watchdog
//! never terminates a later entry (another tenant) by mistake.
//!
//! Cost on the core: two uncontended mutex acquisitions per entry. The watchdog's polling period
//! is a tenth of the smallest CPU limit (at least 1 ms, at most 10 ms), so a runaway script
//! overshoots its limit by at most that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kernel_shim::cpu::ThreadClock;
use kernel_shim::seccomp::{Role, Sandbox};

#[derive(Default)]
struct Slot {
    /// Increments on every entry.
    sequence: u64,
    /// The isolate being run, while inside an entry.
    isolate: Option<v8::IsolateHandle>,
    /// Terminate once the core thread's CPU clock passes this.
    deadline: Duration,
    /// The sequence number of the entry the watchdog terminated, if any.
    terminated: u64,
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

    /// Called when the core enters `isolate` with `budget` of CPU time; `cpu_now` is the core
    /// thread's CPU clock at entry. Returns the entry's sequence number.
    pub fn begin(&self, isolate: &v8::IsolateHandle, cpu_now: Duration, budget: Duration) -> u64 {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.sequence += 1;
        slot.isolate = Some(isolate.clone());
        slot.deadline = cpu_now.saturating_add(budget);
        slot.sequence
    }

    /// Called when the entry returns; true if the watchdog terminated it.
    pub fn end(&self, sequence: u64) -> bool {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(slot.sequence, sequence, "watchdog entries are strictly nested per core");
        slot.isolate = None;
        slot.terminated == sequence
    }

    fn check(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let Some(isolate) = slot.isolate.as_ref() else { return };
        let Ok(spent) = self.clock.now() else { return };
        if spent >= slot.deadline && slot.terminated != slot.sequence {
            isolate.terminate_execution();
            slot.terminated = slot.sequence;
        }
    }
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
