//! CPU placement and CPU-time accounting for per-core threads.

use std::io;
use std::time::Duration;

/// CPU masks are grown up to this many bits when the kernel says ours is too small.
const CPU_MASK_BITS_MAX: usize = 1 << 16;

/// The CPUs this process may run on (`sched_getaffinity` of the process, so `taskset` and
/// cgroup cpusets are respected), in increasing order. Call it before pinning the main thread:
/// the process's mask is its main thread's.
pub fn usable_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: getpid cannot fail and has no preconditions.
    let pid = unsafe { libc::getpid() };
    affinity(pid)
}

/// The CPUs the calling thread may run on.
pub fn current_thread_cpus() -> io::Result<Vec<usize>> {
    affinity(0)
}

/// Restricts the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= CPU_MASK_BITS_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {cpu} is beyond {CPU_MASK_BITS_MAX}")));
    }
    let words = (cpu / 64 + 1).max(16);
    let mut mask = vec![0u64; words];
    mask[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: `mask` is readable for `words * 8` bytes, the length passed; pid 0 is this thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setaffinity, 0, words * 8, mask.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPU time consumed by the calling thread (CLOCK_THREAD_CPUTIME_ID): what per-tenant metering
/// charges, as opposed to wall time.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    // The clock exists on every Linux and the pointer is valid, so this cannot fail.
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU-time clock of one thread, readable from any thread: a watchdog uses it to see how
/// long a core's thread has been running JavaScript without stopping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The calling thread's CPU clock.
    pub fn current() -> io::Result<ThreadClock> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `clock` is a valid, writable clockid_t; pthread_self() names a live thread.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(ThreadClock(clock))
    }

    /// CPU time the thread has consumed; an error once the thread has exited.
    pub fn now(&self) -> io::Result<Duration> {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid, writable timespec.
        if unsafe { libc::clock_gettime(self.0, &mut now) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
    }
}

fn affinity(pid: libc::pid_t) -> io::Result<Vec<usize>> {
    let mut words = 16; // 1024 CPUs, glibc's cpu_set_t
    loop {
        let mut mask = vec![0u64; words];
        // SAFETY: `mask` is writable for `words * 8` bytes, the length passed; the raw syscall
        // returns how many bytes it wrote.
        let written = unsafe { libc::syscall(libc::SYS_sched_getaffinity, pid, words * 8, mask.as_mut_ptr()) };
        if written >= 0 {
            let written_words = (written as usize).div_ceil(8).min(words);
            let cpus = mask[..written_words]
                .iter()
                .enumerate()
                .flat_map(|(word, bits)| {
                    (0..64).filter(move |bit| bits & (1 << bit) != 0).map(move |bit| word * 64 + bit)
                })
                .collect();
            return Ok(cpus);
        }
        let error = io::Error::last_os_error();
        // EINVAL: the kernel's mask is larger than ours.
        if error.raw_os_error() != Some(libc::EINVAL) || words * 64 >= CPU_MASK_BITS_MAX {
            return Err(error);
        }
        words *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_reads_back_one_cpu_for_each_usable_cpu() {
        let usable = usable_cpus().unwrap();
        assert!(!usable.is_empty());
        assert!(usable.windows(2).all(|pair| pair[0] < pair[1]));
        // A fresh thread, so the test harness's thread keeps its mask.
        std::thread::spawn(move || {
            for &cpu in &usable {
                pin_current_thread(cpu).unwrap();
                assert_eq!(current_thread_cpus().unwrap(), vec![cpu]);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pinning_to_an_absent_cpu_fails() {
        std::thread::spawn(|| {
            assert!(pin_current_thread(CPU_MASK_BITS_MAX).is_err());
            // A CPU the mask can name but the machine does not have: EINVAL from the kernel.
            assert!(pin_current_thread(CPU_MASK_BITS_MAX - 1).is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn another_thread_reads_a_threads_cpu_clock() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            tx.send(ThreadClock::current().unwrap()).unwrap();
            let mut x = 0u64;
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_millis(50) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            done_rx.recv().unwrap();
        });
        let clock = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(80));
        let spent = clock.now().unwrap();
        assert!(spent >= Duration::from_millis(20), "the busy thread consumed {spent:?}");
        assert!(spent < Duration::from_secs(5));
        done_tx.send(()).unwrap();
        worker.join().unwrap();
    }

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let start = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > start);
    }
}
