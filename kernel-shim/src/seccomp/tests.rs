//! The filters tried for real: each case runs in a forked child (a filter cannot be taken off,
//! and a violation ends the process), which only makes system calls between the fork and its
//! exit: the sandbox is built in the parent.

use std::io::Read;
use std::os::fd::FromRawFd;

use super::*;

/// Forks; the child runs `body` with stderr on a pipe and exits with what it returns. Returns
/// the child's exit code (or 128 + signal) and what it wrote to stderr.
fn in_child(body: impl FnOnce() -> i32) -> (i32, String) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes system calls (no allocation, no lock another thread could
    // hold) until it calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: dup2 of our own pipe onto stderr, then _exit: no Rust state is unwound.
        unsafe {
            libc::dup2(fds[1], libc::STDERR_FILENO);
            libc::_exit(body());
        }
    }
    // SAFETY: the write end is ours to close.
    unsafe { libc::close(fds[1]) };
    let mut stderr = String::new();
    // SAFETY: the read end is ours and owned by nothing else; the File takes it over.
    let _ = unsafe { std::fs::File::from_raw_fd(fds[0]) }.read_to_string(&mut stderr);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    (code, stderr)
}

/// Seals the child's process and confines its (only) thread to `role`.
fn sealed_as(sandbox: &Sandbox, role: Role) -> bool {
    sandbox.seal_process().is_ok() && sandbox.confine(role).is_ok()
}

#[test]
fn a_forbidden_call_stops_the_process_with_a_line_naming_it() {
    let sandbox = Sandbox::new(Mode::Kill, Host::Process).unwrap();
    install_violation_handler().unwrap();
    let (code, stderr) = in_child(|| {
        if !sealed_as(&sandbox, Role::Core) {
            return 2;
        }
        make_forbidden_call();
        3
    });
    assert_eq!(code, VIOLATION_EXIT_CODE, "stderr: {stderr}");
    assert_eq!(
        stderr,
        format!(
            "isobar: fatal: seccomp: the core thread made a forbidden system call {} (socket); stopping the process\n",
            libc::SYS_socket
        )
    );
}

#[test]
fn roles_differ_a_core_may_not_start_a_thread_but_main_may_read_files() {
    let sandbox = Sandbox::new(Mode::Kill, Host::Process).unwrap();
    install_violation_handler().unwrap();
    // clone3 with a null argument fails with EFAULT where it is allowed, and traps where not.
    // SAFETY: a null clone_args with size 0 is rejected by the kernel before anything happens.
    let try_clone3 = || unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    let (code, stderr) = in_child(|| if sealed_as(&sandbox, Role::Core) { try_clone3() as i32 } else { 2 });
    assert_eq!(code, VIOLATION_EXIT_CODE);
    assert!(stderr.contains("core thread made a forbidden system call") && stderr.contains("(clone3)"), "{stderr}");

    let (code, stderr) = in_child(|| {
        if !sealed_as(&sandbox, Role::Main) {
            return 2;
        }
        if try_clone3() != -1 {
            return 3;
        }
        // SAFETY: open and close of a 'static path.
        let fd = unsafe { libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return 4;
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        0
    });
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn every_role_but_main_is_refused_files_without_being_stopped() {
    let sandbox = Sandbox::new(Mode::Kill, Host::Process).unwrap();
    // (The cache thread too: it may open entry files only with std's flags, and this open has
    // no O_CLOEXEC.)
    for role in [Role::Core, Role::Admin, Role::Watchdog, Role::Signals, Role::Log, Role::Storage, Role::Cache] {
        let (code, stderr) = in_child(|| {
            if !sealed_as(&sandbox, role) {
                return 2;
            }
            // SAFETY: an open of a 'static path; the errno is read at once.
            let fd = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if fd == -1 && errno == libc::EACCES { 0 } else { 3 }
        });
        assert_eq!((code, stderr.as_str()), (0, ""), "role {role:?}");
    }
}

/// The cache thread's whole life with an entry file, as std makes the calls: create and write
/// it, read it back, remove it. Opening it any other way is refused, and a call of another role
/// (a socket) stops the process.
#[test]
fn the_cache_thread_creates_reads_and_removes_entry_files_only() {
    let sandbox = Sandbox::new(Mode::Kill, Host::Process).unwrap();
    install_violation_handler().unwrap();
    let dir = std::env::temp_dir().join(format!("kernel-shim-cache-role-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let entry = dir.join("1.entry");
    let (code, stderr) = in_child(|| {
        if !sealed_as(&sandbox, Role::Cache) {
            return 2;
        }
        if std::fs::write(&entry, b"cached").is_err() {
            return 3;
        }
        // What `read_to_end` does, without allocating in the forked child: open, size the
        // buffer (statx or fstat, and lseek), read.
        let Ok(mut file) = std::fs::File::open(&entry) else { return 4 };
        let mut bytes = [0u8; 16];
        let sized = file.metadata().is_ok_and(|m| m.len() == 6) && std::io::Seek::stream_position(&mut file).is_ok();
        if !sized || !matches!(std::io::Read::read(&mut file, &mut bytes), Ok(6)) || &bytes[..6] != b"cached" {
            return 4;
        }
        drop(file);
        let read_write = std::fs::OpenOptions::new().read(true).write(true).open(&entry);
        if !matches!(read_write, Err(ref e) if e.raw_os_error() == Some(libc::EACCES)) {
            return 5;
        }
        let appending = std::fs::OpenOptions::new().append(true).open(&entry);
        if !matches!(appending, Err(ref e) if e.raw_os_error() == Some(libc::EACCES)) {
            return 6;
        }
        if std::fs::remove_file(&entry).is_err() {
            return 7;
        }
        make_forbidden_call();
        8
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, VIOLATION_EXIT_CODE, "stderr: {stderr}");
    assert!(
        stderr.contains("the cache thread made a forbidden system call") && stderr.contains("(socket)"),
        "{stderr}"
    );
}

#[test]
fn log_mode_lets_the_forbidden_call_run() {
    let sandbox = Sandbox::new(Mode::Log, Host::Process).unwrap();
    let (code, stderr) = in_child(|| {
        if !sealed_as(&sandbox, Role::Core) {
            return 2;
        }
        // SAFETY: socket(2) with integer arguments, closed at once.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return 3;
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        0
    });
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn a_core_may_make_tcp_sockets_only() {
    let sandbox = Sandbox::new(Mode::Kill, Host::Process).unwrap();
    install_violation_handler().unwrap();
    let (code, _) = in_child(|| {
        if !sealed_as(&sandbox, Role::Core) {
            return 2;
        }
        // SAFETY: socket(2) with integer arguments, closed at once.
        let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return 3;
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        // A UDP socket is not something a core makes.
        // SAFETY: as above; expected to trap.
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        4
    });
    assert_eq!(code, VIOLATION_EXIT_CODE);
}

#[test]
fn waiting_threads_are_released_by_the_seal_or_its_abandonment() {
    let sandbox = std::sync::Arc::new(Sandbox::new(Mode::Kill, Host::Process).unwrap());
    assert!(!sandbox.try_confine(Role::Core).unwrap(), "nothing happens before the seal");
    let waiter = {
        let sandbox = sandbox.clone();
        std::thread::spawn(move || sandbox.wait_and_confine(Role::Core))
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!waiter.is_finished(), "it waits for the seal");
    sandbox.abandon();
    assert!(matches!(waiter.join().unwrap(), Err(SeccompError::Abandoned)));
    assert!(matches!(sandbox.try_confine(Role::Core), Err(SeccompError::Abandoned)));
}

#[test]
fn no_role_may_run_programs_debug_or_make_rings() {
    for role in Role::ALL {
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_register,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_setuid,
            libc::SYS_mount,
            libc::SYS_bpf,
            libc::SYS_connect,
            libc::SYS_bind,
        ] {
            assert!(!allow::mentions(role, nr), "{role:?} may call {}", names::name(nr));
        }
    }
    assert!(allow::mentions(Role::Core, libc::SYS_io_uring_enter));
    assert!(!allow::mentions(Role::Core, libc::SYS_clone3), "a core never starts a thread");
    assert!(!allow::mentions(Role::Log, libc::SYS_io_uring_enter));
}

#[test]
fn names_come_from_the_syscall_table() {
    assert_eq!(names::name(libc::SYS_read), "read");
    assert_eq!(names::name(libc::SYS_io_uring_setup), "io_uring_setup");
    assert_eq!(names::name(100_000), "unknown");
    let mut line = Line::new();
    line.push_number(0);
    line.push(b" ");
    line.push_number(-42);
    line.push(b" ");
    line.push_number(i64::MAX);
    assert_eq!(&line.bytes[..line.len], b"0 -42 9223372036854775807");
}

#[test]
fn no_new_privileges_is_set_for_the_thread() {
    std::thread::spawn(|| {
        forbid_new_privileges().unwrap();
        assert!(new_privileges_forbidden());
    })
    .join()
    .unwrap();
}

#[test]
fn modes_parse() {
    assert_eq!("kill".parse::<Mode>(), Ok(Mode::Kill));
    assert_eq!("log".parse::<Mode>(), Ok(Mode::Log));
    assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
    assert!("allow".parse::<Mode>().is_err());
}
