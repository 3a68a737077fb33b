//! Process signals handled synchronously: the main thread blocks them before spawning the
//! cores (threads inherit the mask, so no core is ever interrupted) and then waits for them
//! with `sigwaitinfo`.

use std::io;
use std::mem::MaybeUninit;

/// The signals isobar acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: stop (Ctrl-C).
    Interrupt,
    /// SIGTERM: drain and stop.
    Terminate,
    /// SIGHUP: reload the configuration.
    Hangup,
    /// SIGCHLD: a child exited (PID-1 duty: reap it).
    Child,
}

impl Signal {
    pub const ALL: [Signal; 4] = [Signal::Interrupt, Signal::Terminate, Signal::Hangup, Signal::Child];

    pub const fn number(self) -> libc::c_int {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Hangup => libc::SIGHUP,
            Signal::Child => libc::SIGCHLD,
        }
    }

    pub fn from_number(number: libc::c_int) -> Option<Signal> {
        Signal::ALL.into_iter().find(|signal| signal.number() == number)
    }
}

/// Sends `signal` to this process (e.g. a control thread asking the main thread to drain).
pub fn raise_in_process(signal: Signal) -> io::Result<()> {
    // SAFETY: kill(2) to our own pid with a valid signal number.
    if unsafe { libc::kill(libc::getpid(), signal.number()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks `signals` in the calling thread. Call it on the main thread before spawning any
/// other, so that every thread inherits the mask and the signals stay pending for
/// [`wait_signal`].
pub fn block_process_signals(signals: &[Signal]) -> io::Result<()> {
    let set = signal_set(signals);
    // SAFETY: `set` is an initialised sigset_t; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits until one of `signals` (which must be blocked, see [`block_process_signals`]) is
/// pending, consumes it and returns it. Retries when another signal's handler interrupts it.
pub fn wait_signal(signals: &[Signal]) -> io::Result<Signal> {
    let set = signal_set(signals);
    loop {
        // SAFETY: `set` is an initialised sigset_t; no siginfo is requested.
        let number = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if number >= 0 {
            let signal = Signal::from_number(number);
            return Ok(signal.expect("sigwaitinfo returned a signal outside the set it was given"));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Like [`wait_signal`], but gives up after `timeout`: `Ok(None)` if none of `signals` came.
/// For a signal thread that has something to do now and then (confine itself once the process
/// is sealed) besides waiting.
pub fn wait_signal_timeout(signals: &[Signal], timeout: std::time::Duration) -> io::Result<Option<Signal>> {
    let set = signal_set(signals);
    let timespec = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: `set` and `timespec` are initialised and outlive the call; no siginfo.
        let number = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timespec) };
        if number >= 0 {
            let signal = Signal::from_number(number);
            return Ok(Some(signal.expect("sigtimedwait returned a signal outside the set it was given")));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(error),
        }
    }
}

fn signal_set(signals: &[Signal]) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set; sigaddset with a valid signal number only
    // sets a bit in it. Both cannot fail with these arguments.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for signal in signals {
            libc::sigaddset(set.as_mut_ptr(), signal.number());
        }
        set.assume_init()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_signal_is_waited_for() {
        // A thread of its own, directed signals only: the rest of the test process is untouched.
        std::thread::spawn(|| {
            block_process_signals(&[Signal::Hangup, Signal::Child]).unwrap();
            // SAFETY: pthread_self is this live thread; SIGHUP is blocked in it, so it stays
            // pending for this thread instead of running the default action.
            let rc = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) };
            assert_eq!(rc, 0);
            assert_eq!(wait_signal(&[Signal::Hangup, Signal::Child]).unwrap(), Signal::Hangup);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_timed_wait_returns_none_then_the_signal() {
        std::thread::spawn(|| {
            block_process_signals(&[Signal::Hangup]).unwrap();
            let waited = wait_signal_timeout(&[Signal::Hangup], std::time::Duration::from_millis(20)).unwrap();
            assert_eq!(waited, None);
            // SAFETY: as above: a directed, blocked SIGHUP to this live thread.
            assert_eq!(unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) }, 0);
            let waited = wait_signal_timeout(&[Signal::Hangup], std::time::Duration::from_secs(5)).unwrap();
            assert_eq!(waited, Some(Signal::Hangup));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn numbers_round_trip() {
        for signal in Signal::ALL {
            assert_eq!(Signal::from_number(signal.number()), Some(signal));
        }
        assert_eq!(Signal::from_number(libc::SIGUSR1), None);
    }
}
