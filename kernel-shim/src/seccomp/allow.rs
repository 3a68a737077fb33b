//! The allow-lists: which system calls each thread role makes once start-up is over.
//!
//! How they were found: the whole end-to-end suite (`cargo test -p isobar-e2e -- --skip qemu`:
//! kernel sockets, the userspace stack on a TAP and on AF_PACKET, admin PUT/DELETE, SIGHUP
//! reloads, drains, CPU and heap limits) ran against the real binary under
//! `strace -f -ff` with `--seccomp log`; every call a thread made after its own `seccomp()` was
//! sorted by the thread's name (`prctl(PR_SET_NAME)`). Each entry below says who makes it.
//! Calls seen once per process that have a safe failure are answered with an error instead of
//! being allowed (see [`NO_FILES`]).

use std::collections::BTreeMap;

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use super::Host;

/// What a thread does, which decides the system calls it may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The main thread after start-up: waits for signals and core events, reloads, drains.
    Main,
    /// A core: its ring, its isolates (V8 and its JIT), its allocator.
    Core,
    /// The admin API: its own ring and HTTP server, and compiling uploaded scripts.
    Admin,
    /// Reads every core's CPU clock and interrupts V8.
    Watchdog,
    /// Waits for SIGINT, SIGTERM, SIGHUP.
    Signals,
    /// Writes log lines to stderr.
    Log,
    /// The embedded KV store's thread (`isobar-kv`): reads and writes its one database file,
    /// opened before the seal, and makes it durable.
    Storage,
    /// The Cache API store's thread (`isobar-cache`): creates, reads and removes entry files in
    /// its directory (the disk tier), one file per response.
    Cache,
}

impl Role {
    pub const ALL: [Role; 8] =
        [Role::Main, Role::Core, Role::Admin, Role::Watchdog, Role::Signals, Role::Log, Role::Storage, Role::Cache];

    /// The name in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Core => "core",
            Role::Admin => "admin",
            Role::Watchdog => "watchdog",
            Role::Signals => "signal",
            Role::Log => "log",
            Role::Storage => "storage",
            Role::Cache => "cache",
        }
    }
}

/// One condition on an argument: `(argument index, comparison, value)`. Every argument we
/// check is a C `int` (or `unsigned int`), so only its low 32 bits are compared: the kernel
/// ignores the upper half of the register, and callers (glibc's variadic `prctl`) may leave
/// anything there.
type Condition = (u8, SeccompCmpOp, u64);

/// A system call and the conditions under which it is allowed (none: always). Several entries
/// for the same call are alternatives.
type Allowed = (i64, &'static [Condition]);

const fn always(nr: i64) -> Allowed {
    (nr, &[])
}

const SOCKET_DOMAIN: u8 = 0;
const SOCKET_TYPE: u8 = 1;

/// Every role: locks, memory (the allocator and V8's heap and JIT: V8 maps its code space
/// read-write-execute, so `PROT_EXEC` cannot be refused), time, randomness, the SIGSYS report
/// (`write`, `exit_group`), a thread's end, and an abort's (V8's fatal errors raise SIGABRT).
const COMMON: &[Allowed] = &[
    always(libc::SYS_futex),
    always(libc::SYS_sched_yield),
    always(libc::SYS_mmap),
    always(libc::SYS_munmap),
    always(libc::SYS_mprotect),
    always(libc::SYS_madvise),
    always(libc::SYS_clock_gettime),
    always(libc::SYS_clock_nanosleep),
    always(libc::SYS_nanosleep),
    always(libc::SYS_getrandom),
    always(libc::SYS_getpid),
    always(libc::SYS_gettid),
    always(libc::SYS_write),
    always(libc::SYS_close),
    always(libc::SYS_exit),
    always(libc::SYS_exit_group),
    always(libc::SYS_rt_sigprocmask),
    always(libc::SYS_rt_sigreturn),
    // The kernel resumes a sleep a signal interrupted with this call.
    always(libc::SYS_restart_syscall),
    always(libc::SYS_sigaltstack),
    // V8 names its mappings (PR_SET_VMA_ANON_NAME) when it makes an isolate.
    (libc::SYS_prctl, &[(0, SeccompCmpOp::Eq, libc::PR_SET_VMA as u64)]),
    // Debug builds of std check a descriptor before closing it.
    (libc::SYS_fcntl, &[(1, SeccompCmpOp::Eq, libc::F_GETFD as u64)]),
    // abort(): SIGABRT to itself, after putting its default action back.
    // (and tgkill to this process with SIGABRT, added in `rules`: it needs the pid.)
    (libc::SYS_rt_sigaction, &[(0, SeccompCmpOp::Eq, libc::SIGABRT as u64)]),
    // V8 reads the thread's stack bounds (pthread_getattr_np) and the CPUs it may use when it
    // makes an isolate.
    always(libc::SYS_sched_getaffinity),
    always(libc::SYS_sched_getparam),
    always(libc::SYS_sched_getscheduler),
    // Refused with EACCES by NO_FILES in every role but main: listed so that they are
    // answered, not trapped (V8 looks for /sys/.../tsc_freq_khz on a core once).
    always(libc::SYS_open),
    always(libc::SYS_openat),
];

/// A core: its ring, the peer address of each accepted connection, its eventfd wake-ups of
/// other cores (`write`, in COMMON), and outbound TCP sockets for `KernelNet::connect`.
const CORE: &[Allowed] = &[
    always(libc::SYS_io_uring_enter),
    always(libc::SYS_getpeername),
    always(libc::SYS_getsockname),
    (
        libc::SYS_socket,
        &[
            (SOCKET_DOMAIN, SeccompCmpOp::Eq, libc::AF_INET as u64),
            (SOCKET_TYPE, SeccompCmpOp::Eq, (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64),
        ],
    ),
    (
        libc::SYS_socket,
        &[
            (SOCKET_DOMAIN, SeccompCmpOp::Eq, libc::AF_INET6 as u64),
            (SOCKET_TYPE, SeccompCmpOp::Eq, (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64),
        ],
    ),
    (
        libc::SYS_setsockopt,
        &[(1, SeccompCmpOp::Eq, libc::IPPROTO_TCP as u64), (2, SeccompCmpOp::Eq, libc::TCP_NODELAY as u64)],
    ),
];

/// A thread starting: `Worker::validate` runs a guard thread beside a script it checks (on the
/// main thread for a reload, on the admin thread for a PUT). No other role makes threads.
const THREAD_START: &[Allowed] = &[always(libc::SYS_clone3), always(libc::SYS_rseq), always(libc::SYS_set_robust_list)];

/// The admin API: its ring and accepted connections, and compiling uploaded scripts.
const ADMIN: &[Allowed] = &[
    always(libc::SYS_io_uring_enter),
    always(libc::SYS_getpeername),
    // `KernelNet::listen` reads its listener's port (which decides whether a port is TLS).
    always(libc::SYS_getsockname),
];

/// The main thread: waits on channels, re-reads the configuration and the scripts on SIGHUP
/// (read-only opens), prints, drains and exits.
const MAIN: &[Allowed] = &[
    always(libc::SYS_read),
    always(libc::SYS_lseek),
    always(libc::SYS_statx),
    always(libc::SYS_newfstatat),
    always(libc::SYS_fstat),
    // The first isolate V8 makes on the main thread asks for the thread's stack bounds, and
    // glibc answers that for the main thread from /proc/self/maps and its own stack limit
    // (getrlimit is prlimit64 on pid 0). That first isolate may come after the seal: a reload
    // of a server whose only tenant core 0 built checks the new script here. Only this process's
    // own stack limit.
    (libc::SYS_prlimit64, &[(0, SeccompCmpOp::Eq, 0), (1, SeccompCmpOp::Eq, libc::RLIMIT_STACK as u64)]),
];

/// The watchdog: reads other threads' CPU clocks (clock_gettime, in COMMON), sleeps.
const WATCHDOG: &[Allowed] = &[];

/// The signal thread: waits for SIGINT, SIGTERM, SIGHUP.
const SIGNALS: &[Allowed] = &[always(libc::SYS_rt_sigtimedwait)];

/// The log writer: `write(2)` to stderr and its queue's locks, all in COMMON.
const LOG: &[Allowed] = &[];

/// The KV store's thread (redb on one file opened at start-up): positioned reads and writes,
/// growing the file, making it durable (`fdatasync` before each acknowledgement), its size,
/// and unlocking it when the store closes (seen under the end-to-end KV tests). No file is opened after start-up.
const STORAGE: &[Allowed] = &[
    always(libc::SYS_pread64),
    always(libc::SYS_pwrite64),
    always(libc::SYS_preadv),
    always(libc::SYS_pwritev),
    always(libc::SYS_read),
    always(libc::SYS_lseek),
    always(libc::SYS_fdatasync),
    always(libc::SYS_fsync),
    always(libc::SYS_ftruncate),
    always(libc::SYS_fallocate),
    always(libc::SYS_fstat),
    always(libc::SYS_newfstatat),
    always(libc::SYS_statx),
    always(libc::SYS_flock),
    // redb releases its file lock with fcntl when the store closes at exit.
    always(libc::SYS_fcntl),
];

/// The Cache API store's thread: an entry file is created and written whole (`File::create`,
/// `write` in COMMON), read whole (`File::open`, then std sizes its buffer with `statx` or
/// `fstat` and `lseek`), and removed (`unlink`, or `unlinkat` without AT_REMOVEDIR). Which files
/// it may open is narrowed by [`CACHE_FILES`]; seccomp cannot see paths, so the directory itself
/// is not enforced here (docs/threat-model.md).
const CACHE: &[Allowed] = &[
    always(libc::SYS_read),
    always(libc::SYS_lseek),
    always(libc::SYS_fstat),
    always(libc::SYS_newfstatat),
    always(libc::SYS_statx),
    always(libc::SYS_unlink),
    (libc::SYS_unlinkat, &[(2, SeccompCmpOp::Eq, 0)]),
];

fn list(role: Role) -> &'static [&'static [Allowed]] {
    match role {
        Role::Main => &[MAIN, THREAD_START],
        Role::Core => &[CORE],
        Role::Admin => &[ADMIN, THREAD_START],
        Role::Watchdog => &[WATCHDOG],
        Role::Signals => &[SIGNALS],
        Role::Log => &[LOG],
        Role::Storage => &[STORAGE],
        Role::Cache => &[CACHE],
    }
}

/// Calls answered with EACCES instead of run, in every role but main: opening files. Only the
/// main thread reads the disk (a reload); a core, the admin API and the rest never do, and
/// the one file V8 looks for on a core (a CPU frequency under /sys) has a fallback.
pub(super) const NO_FILES: &[i64] = &[libc::SYS_open, libc::SYS_openat, libc::SYS_openat2, libc::SYS_creat];

/// The two ways std opens an entry file: `File::open` and `File::create`.
const CACHE_OPEN_READ: u64 = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
const CACHE_OPEN_CREATE: u64 = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u64;

/// Calls answered with EACCES for the cache thread instead of [`NO_FILES`]: every way to open a
/// file but `openat` with exactly the flags of reading or creating an entry (so no `O_PATH`, no
/// directory, no read-write, no appending to a file it did not create). A call is refused when
/// every condition of its entry holds (a flag word that is neither of the two).
pub(super) const CACHE_FILES: &[Allowed] = &[
    always(libc::SYS_open),
    always(libc::SYS_openat2),
    always(libc::SYS_creat),
    (libc::SYS_openat, &[(2, SeccompCmpOp::Ne, CACHE_OPEN_READ), (2, SeccompCmpOp::Ne, CACHE_OPEN_CREATE)]),
];

/// Which refusal of opening files is stacked on `role`'s filter, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FileRefusal {
    /// [`NO_FILES`]: the thread opens no file after start-up.
    All,
    /// [`CACHE_FILES`]: only entry files, read or created.
    CacheEntries,
}

/// The refusal `role` gets: none for main (a reload reads the configuration and scripts).
pub(super) fn file_refusal(role: Role) -> Option<FileRefusal> {
    match role {
        Role::Main => None,
        Role::Cache => Some(FileRefusal::CacheEntries),
        _ => Some(FileRefusal::All),
    }
}

/// Extra calls for the guest's PID 1: powering off (main thread), and the power button's thread
/// (under the process-wide filter only) sending SIGTERM to the process.
const GUEST_MAIN: &[Allowed] = &[
    always(libc::SYS_sync),
    always(libc::SYS_reboot),
    // (and kill of this process with SIGTERM, added in `rules`: it needs the pid.)
    always(libc::SYS_read),
];

/// What the process-wide filter allows beyond every role's calls: a thread starting, and each
/// thread confining itself under it (`seccompiler` sets PR_SET_NO_NEW_PRIVS before each filter it installs). No role's
/// own filter allows these: once confined, a thread installs nothing more.
const CONFINING: &[Allowed] = &[
    (libc::SYS_prctl, &[(0, SeccompCmpOp::Eq, libc::PR_SET_NO_NEW_PRIVS as u64)]),
    // A thread spawned just before the seal (the signal thread) may name itself after it.
    (libc::SYS_prctl, &[(0, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64)]),
    (libc::SYS_seccomp, &[(0, SeccompCmpOp::Eq, libc::SECCOMP_SET_MODE_FILTER as u64), (1, SeccompCmpOp::Eq, 0)]),
];

/// The rules of the union of `roles`, in the form `seccompiler` compiles; with `confining`, the
/// calls a thread makes to confine itself too (the process-wide filter). `pid` is this
/// process's: the only one signals may go to.
pub(super) fn rules(roles: &[Role], host: Host, pid: u32, confining: bool) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut unconditional: BTreeMap<i64, bool> = BTreeMap::new();
    let mut conditional: BTreeMap<i64, Vec<Vec<Condition>>> = BTreeMap::new();
    let mut add = |&(nr, conditions): &Allowed| {
        if conditions.is_empty() {
            unconditional.insert(nr, true);
        } else {
            conditional.entry(nr).or_default().push(conditions.to_vec());
        }
    };
    COMMON.iter().for_each(&mut add);
    if confining {
        CONFINING.iter().for_each(&mut add);
    }
    let mut guest_main = false;
    for role in roles {
        list(*role).iter().flat_map(|l| l.iter()).for_each(&mut add);
        if host == Host::GuestInit && *role == Role::Main {
            GUEST_MAIN.iter().for_each(&mut add);
            guest_main = true;
        }
    }
    let pid = u64::from(pid);
    conditional
        .entry(libc::SYS_tgkill)
        .or_default()
        .push(vec![(0, SeccompCmpOp::Eq, pid), (2, SeccompCmpOp::Eq, libc::SIGABRT as u64)]);
    if guest_main {
        conditional
            .entry(libc::SYS_kill)
            .or_default()
            .push(vec![(0, SeccompCmpOp::Eq, pid), (1, SeccompCmpOp::Eq, libc::SIGTERM as u64)]);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in unconditional.keys() {
        rules.insert(*nr, Vec::new());
    }
    for (nr, alternatives) in conditional {
        if unconditional.contains_key(&nr) {
            continue;
        }
        rules.insert(nr, alternatives.iter().map(|conditions| rule(conditions)).collect());
    }
    rules
}

/// One `seccompiler` rule: all of `conditions` hold (each on an argument's low 32 bits).
fn rule(conditions: &[Condition]) -> SeccompRule {
    let conditions = conditions
        .iter()
        .map(|(arg, op, value)| {
            SeccompCondition::new(*arg, SeccompCmpArgLen::Dword, op.clone(), *value)
                .expect("argument indexes in the lists are below 6")
        })
        .collect();
    SeccompRule::new(conditions).expect("every conditional entry has a condition")
}

/// The rules of a refusal list such as [`CACHE_FILES`]: a call matches (and is refused) when it
/// is listed without conditions, or when every condition of one of its entries holds.
pub(super) fn refusal_rules(list: &[Allowed]) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(nr, conditions) in list {
        let entry = rules.entry(nr).or_default();
        if !conditions.is_empty() {
            entry.push(rule(conditions));
        }
    }
    rules
}

/// Whether `role`'s list allows `nr` under some arguments.
#[cfg(test)]
pub(super) fn mentions(role: Role, nr: i64) -> bool {
    COMMON.iter().chain(list(role).iter().flat_map(|l| l.iter())).any(|(n, _)| *n == nr)
}
