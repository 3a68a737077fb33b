//! The system-call filter isobar puts on itself once start-up is over: an allow-list per thread
//! role (seccomp-BPF), so that code which took over a thread, through a V8 bug say, can make
//! only the system calls that role makes anyway. It owns the filters, their installation, the
//! `SIGSYS` handler that reports a violation, and `PR_SET_NO_NEW_PRIVS`.
//!
//! How it is put in place ([`Sandbox`]):
//! 1. Before any thread exists: [`forbid_new_privileges`] and [`install_violation_handler`].
//! 2. Start-up runs unfiltered: V8, listeners, links, rings (io_uring_setup is forbidden after).
//! 3. The main thread calls [`Sandbox::seal_process`]: the union of every role's list goes on
//!    every thread of the process at once (`SECCOMP_FILTER_FLAG_TSYNC`), the log writer's and
//!    any thread isobar did not create included. A thread that had filtered itself already
//!    would make that fail, which is why every thread waits for the seal before step 4.
//! 4. Each thread then narrows itself to its own role ([`Sandbox::confine`]): filters stack and
//!    the strictest answer wins. Cores block in [`Sandbox::wait_and_confine`] between start-up
//!    and their loop; threads with a loop of their own check [`Sandbox::try_confine`].
//!
//! A forbidden call, in `kill` mode, returns `SECCOMP_RET_TRAP`: the kernel sends `SIGSYS` to
//! the thread, and the handler writes one line naming the role, the system call's number and
//! its name to stderr (with `write(2)` only: it must be async-signal-safe, and every filter
//! allows `write` and `exit_group`), then exits the process with [`VIOLATION_EXIT_CODE`]. In
//! `log` mode the kernel logs the call (`SECCOMP_RET_LOG`, audit type 1326) and lets it run.
//!
//! The filters are compiled with `seccompiler`, the crate Firecracker's jailer uses for the
//! same job: it turns a map of system calls and argument conditions into BPF, checks the
//! architecture, and applies with TSYNC; it is small, kept by rust-vmm, and has no dependency
//! but libc. Writing BPF by hand is where filters go wrong (jump offsets, 32/64-bit argument
//! halves). The lists themselves are in `allow.rs`, with how they were found.
//!
//! It must not decide which thread plays which role (the callers do) and keeps no global state
//! except the thread-local role that the signal handler reads.

mod allow;
mod names;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Condvar, Mutex};

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule};

pub use allow::Role;

/// The exit code of a process stopped for a forbidden system call: 128 + SIGSYS, what a shell
/// reports for a process killed by that signal, and no other path of isobar exits with it.
pub const VIOLATION_EXIT_CODE: i32 = 128 + libc::SIGSYS;

/// What a forbidden system call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The process stops with a line naming the call (`SECCOMP_RET_TRAP` and a SIGSYS handler).
    Kill,
    /// The kernel logs the call and lets it run (`SECCOMP_RET_LOG`): to find what a new
    /// feature needs without stopping the server.
    Log,
    /// No filter.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Mode, String> {
        match text {
            "kill" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            other => Err(format!("{other:?}: use kill, log or off")),
        }
    }
}

/// Where isobar runs, for the few calls only one place needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// An ordinary process on a host.
    Process,
    /// PID 1 of a guest: the main thread powers the machine off (`sync`, `reboot`) and the
    /// power-button thread signals the process (`kill`).
    GuestInit,
}

/// Why the filter could not be put in place.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum SeccompError {
    /// seccomp filters are built for x86_64 only; this is {0} (run with --seccomp off)
    Architecture(&'static str),
    /// building the {role} filter: {error}
    Build { role: &'static str, error: seccompiler::BackendError },
    /// installing the {role} filter: {error} (a kernel without CONFIG_SECCOMP_FILTER, or a container that forbids seccomp: run with --seccomp off)
    Install { role: &'static str, error: seccompiler::Error },
    /// PR_SET_NO_NEW_PRIVS failed: {0}
    NoNewPrivileges(io::Error),
    /// installing the SIGSYS handler failed: {0}
    Handler(io::Error),
    /// start-up stopped before the process was sealed
    Abandoned,
}

/// Whether the process-wide filter is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SealState {
    Pending,
    Sealed,
    Abandoned,
}

/// Every role's compiled filter and the process-wide union, plus the moment the union goes on.
/// Shared (`Arc`) by the threads that confine themselves.
pub struct Sandbox {
    mode: Mode,
    process: BpfProgram,
    roles: BTreeMap<Role, BpfProgram>,
    /// Answers opening a file with EACCES (stacked on every role's filter but main's and the
    /// cache thread's).
    no_files: BpfProgram,
    /// Answers opening anything but an entry file with EACCES (stacked on the cache thread's).
    cache_files: BpfProgram,
    state: Mutex<SealState>,
    sealed: Condvar,
    /// Test hook: this role makes a forbidden call right after confining itself.
    violation_after: Option<Role>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("mode", &self.mode).field("state", &self.state()).finish_non_exhaustive()
    }
}

thread_local! {
    /// The role the calling thread confined itself to, for the violation message.
    static THREAD_ROLE: Cell<Option<Role>> = const { Cell::new(None) };
}

impl Sandbox {
    /// Compiles every filter for `mode` (which must not be `Off`: then there is no sandbox).
    pub fn new(mode: Mode, host: Host) -> Result<Sandbox, SeccompError> {
        assert!(mode != Mode::Off, "Mode::Off has no sandbox");
        let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH)
            .ok()
            .filter(|_| cfg!(target_arch = "x86_64"))
            .ok_or(SeccompError::Architecture(std::env::consts::ARCH))?;
        let refused = match mode {
            Mode::Kill => SeccompAction::Trap,
            _ => SeccompAction::Log,
        };
        let compile = |name: &'static str, rules: BTreeMap<i64, Vec<SeccompRule>>, on_match, otherwise| {
            let filter = SeccompFilter::new(rules, otherwise, on_match, arch)
                .map_err(|error| SeccompError::Build { role: name, error })?;
            BpfProgram::try_from(filter).map_err(|error| SeccompError::Build { role: name, error })
        };
        let pid = std::process::id();
        let mut roles = BTreeMap::new();
        for role in Role::ALL {
            let rules = allow::rules(&[role], host, pid, false);
            roles.insert(role, compile(role.name(), rules, SeccompAction::Allow, refused.clone())?);
        }
        let process = compile("process", allow::rules(&Role::ALL, host, pid, true), SeccompAction::Allow, refused)?;
        let files = allow::NO_FILES.iter().map(|nr| (*nr, Vec::new())).collect();
        let no_files = compile("no-files", files, SeccompAction::Errno(libc::EACCES as u32), SeccompAction::Allow)?;
        let cache_files = compile(
            "cache-files",
            allow::refusal_rules(allow::CACHE_FILES),
            SeccompAction::Errno(libc::EACCES as u32),
            SeccompAction::Allow,
        )?;
        Ok(Sandbox {
            mode,
            process,
            roles,
            no_files,
            cache_files,
            state: Mutex::new(SealState::Pending),
            sealed: Condvar::new(),
            violation_after: None,
        })
    }

    /// Test hook (the end-to-end test of a violation): threads of `role` make a forbidden
    /// system call right after confining themselves.
    pub fn with_violation_after(mut self, role: Role) -> Sandbox {
        self.violation_after = Some(role);
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn state(&self) -> SealState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: SealState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.sealed.notify_all();
    }

    /// Puts the union of every role's list on every thread of the process (TSYNC), then
    /// releases the threads waiting to confine themselves. Call on the main thread once every
    /// thread has finished its start-up and none has filtered itself yet.
    pub fn seal_process(&self) -> Result<(), SeccompError> {
        let result = seccompiler::apply_filter_all_threads(&self.process)
            .map_err(|error| SeccompError::Install { role: "process", error });
        self.set_state(if result.is_ok() { SealState::Sealed } else { SealState::Abandoned });
        result
    }

    /// Start-up failed before the seal: threads waiting for it stop waiting (with an error).
    pub fn abandon(&self) {
        if self.state() == SealState::Pending {
            self.set_state(SealState::Abandoned);
        }
    }

    /// Narrows the calling thread to `role`'s list. The process must be sealed (or the thread
    /// spawned after the seal), or a later seal would fail.
    pub fn confine(&self, role: Role) -> Result<(), SeccompError> {
        // The file refusal first: once the role's own filter is on, the thread can install
        // nothing more (its list has neither prctl(PR_SET_NO_NEW_PRIVS) nor seccomp).
        let refusal = match allow::file_refusal(role) {
            Some(allow::FileRefusal::All) => Some(&self.no_files),
            Some(allow::FileRefusal::CacheEntries) => Some(&self.cache_files),
            None => None,
        };
        if let Some(refusal) = refusal {
            seccompiler::apply_filter(refusal).map_err(|error| SeccompError::Install { role: role.name(), error })?;
        }
        let program = &self.roles[&role];
        seccompiler::apply_filter(program).map_err(|error| SeccompError::Install { role: role.name(), error })?;
        THREAD_ROLE.with(|r| r.set(Some(role)));
        if self.violation_after == Some(role) {
            make_forbidden_call();
        }
        Ok(())
    }

    /// Waits for [`Sandbox::seal_process`], then confines the calling thread to `role`.
    pub fn wait_and_confine(&self, role: Role) -> Result<(), SeccompError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while *state == SealState::Pending {
            state = self.sealed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let sealed = *state == SealState::Sealed;
        drop(state);
        if !sealed {
            return Err(SeccompError::Abandoned);
        }
        self.confine(role)
    }

    /// Confines the calling thread to `role` if the process is sealed: `Ok(true)` once done,
    /// `Ok(false)` while the seal has not happened (ask again later).
    pub fn try_confine(&self, role: Role) -> Result<bool, SeccompError> {
        match self.state() {
            SealState::Pending => Ok(false),
            SealState::Abandoned => Err(SeccompError::Abandoned),
            SealState::Sealed => self.confine(role).map(|()| true),
        }
    }
}

/// Sets `PR_SET_NO_NEW_PRIVS` on the calling thread (threads spawned later inherit it): no
/// `execve` can ever gain privileges again (setuid binaries, file capabilities), and unprivileged
/// seccomp filters become possible. isobar never executes another program.
pub fn forbid_new_privileges() -> Result<(), SeccompError> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SeccompError::NoNewPrivileges(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether `PR_SET_NO_NEW_PRIVS` is set on the calling thread.
pub fn new_privileges_forbidden() -> bool {
    // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointer and returns 0 or 1.
    unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 }
}

/// Installs the SIGSYS handler that reports a forbidden call and stops the process (`kill`
/// mode). Process-wide; call once, early.
pub fn install_violation_handler() -> Result<(), SeccompError> {
    // SAFETY: a zeroed sigaction is a valid starting point; we set the handler (with the
    // signature SA_SIGINFO requires), the flags and an empty mask before passing it, and
    // sigaction only reads it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_violation as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(SeccompError::Handler(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The head of the kernel's `siginfo_t` for SIGSYS (`_sigsys` in the union, which starts at
/// byte 16 on 64-bit Linux): the `libc` crate has no accessor for `si_syscall`.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

/// `si_code` of a SIGSYS sent by seccomp.
const SYS_SECCOMP: libc::c_int = 1;

/// The SIGSYS handler: one line on stderr, then exit. Async-signal-safe: no allocation, no
/// lock, only `write(2)` and `_exit(2)` (which every filter allows).
extern "C" fn on_violation(_signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    let mut line = Line::new();
    line.push(b"isobar: fatal: seccomp: the ");
    let role = THREAD_ROLE.with(Cell::get);
    line.push(role.map_or("unconfined", Role::name).as_bytes());
    line.push(b" thread made a forbidden system call ");
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; SigsysInfo mirrors
    // its first fields, which exist for every signal (the SIGSYS ones are read only when the
    // code says seccomp sent it).
    let info = unsafe { &*(info as *const SigsysInfo) };
    if info.code == SYS_SECCOMP {
        let number = i64::from(info.syscall);
        line.push_number(number);
        line.push(b" (");
        line.push(names::name(number).as_bytes());
        line.push(b")");
    } else {
        line.push(b"(SIGSYS not from seccomp)");
    }
    line.push(b"; stopping the process\n");
    // SAFETY: write(2) of our own stack buffer to stderr, then _exit: both async-signal-safe.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.bytes.as_ptr().cast(), line.len);
        libc::_exit(VIOLATION_EXIT_CODE);
    }
}

/// A fixed buffer for the violation line (the handler may not allocate).
struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line { bytes: [0; 256], len: 0 }
    }

    fn push(&mut self, text: &[u8]) {
        for &b in text {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn push_number(&mut self, number: i64) {
        let mut digits = [0u8; 20];
        let mut n = number.unsigned_abs();
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if number < 0 {
            self.push(b"-");
        }
        self.push(&digits[at..]);
    }
}

/// The forbidden call the test hook makes: a netlink socket, which no confined role may open (a
/// core may only make TCP sockets), and which is harmless in `log` mode, where it runs: the
/// descriptor is closed at once.
fn make_forbidden_call() {
    // SAFETY: socket(2) with integer arguments; the descriptor, if any, is closed at once.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests;
