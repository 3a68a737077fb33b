//! Defence in depth and abuse at the edge, against the real binary: the system-call filter
//! stops a thread that makes a forbidden call and says which; `--user` drops root for good;
//! connection caps per client and in all; ten thousand idle and slow connections leave a
//! normal client served and memory bounded; the admin API's access rules.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use isobar_e2e::{Client, Isobar, run_expecting_failure, run_to_exit};

/// The exit code of a process stopped by its system-call filter (128 + SIGSYS).
const SECCOMP_EXIT_CODE: i32 = 159;

#[test]
fn a_forbidden_system_call_stops_the_process_and_the_log_names_it() {
    // The hidden test hook: a core opens a netlink socket right after confining itself.
    let env = [("ISOBAR_TEST_SECCOMP_VIOLATION", "1")];
    let args = ["run", "examples/hello.js", "--listen", "127.0.0.1:0", "--cores", "1"];
    let (code, stderr) = run_to_exit(&args, &env, Duration::from_secs(60));
    assert_eq!(code, Some(SECCOMP_EXIT_CODE), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "isobar: fatal: seccomp: the core thread made a forbidden system call {} (socket); stopping the process",
            libc::SYS_socket
        )),
        "stderr:\n{stderr}"
    );

    // With the kernel only logging, the same call runs and the server goes on serving.
    let mut args = args.to_vec();
    args.extend(["--seccomp", "log"]);
    let isobar = Isobar::try_start_with_env(&args, &env).unwrap_or_else(|e| panic!("isobar did not start: {e}"));
    assert_eq!(isobar.get("/").status, 200);
    assert_eq!(isobar.status_field("Seccomp").as_deref(), Some("2"), "filter mode");
}

#[test]
fn every_thread_runs_filtered_without_new_privileges_by_default() {
    let isobar = Isobar::start(&["run", "examples/hello.js", "--admin", "127.0.0.1:0"]);
    assert_eq!(isobar.get("/").status, 200);
    assert_eq!(isobar.admin_request("GET", "/metrics", &[], b"").status, 200);
    // The signal thread confines itself the next time it wakes from its short wait after the
    // seal (it cannot be interrupted to do so): give every thread a moment to be filtered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", isobar.pid())).unwrap();
        let all_confined = tasks.flatten().all(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let filters = status.lines().find_map(|l| l.strip_prefix("Seccomp_filters:")).map(str::trim);
            filters.and_then(|f| f.parse::<u32>().ok()).is_some_and(|f| f >= 2)
        });
        if all_confined {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tasks = std::fs::read_dir(format!("/proc/{}/task", isobar.pid())).unwrap();
    let mut names = Vec::new();
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        let name = field("Name:");
        assert_eq!(field("Seccomp:"), "2", "thread {name} runs without a filter");
        assert_eq!(field("NoNewPrivs:"), "1", "thread {name}");
        // The process-wide filter and the role's (plus the file refusal, for all but main).
        let filters: u32 = field("Seccomp_filters:").parse().unwrap_or(0);
        assert!(filters >= 2, "thread {name} has {filters} filter(s)");
        names.push(name);
    }
    for expected in ["isobar-core-0", "isobar-admin", "isobar-watchdog", "isobar-signals", "isobar-log"] {
        assert!(names.iter().any(|n| n == expected), "no thread {expected} in {names:?}");
    }
}

#[test]
fn run_as_user_drops_root_after_binding() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping root needs a test run as root");
        return;
    }
    let isobar = Isobar::start(&["run", "examples/hello.js", "--user", "nobody", "--admin", "127.0.0.1:0"]);
    assert_eq!(isobar.get("/").status, 200, "it serves as nobody");
    assert_eq!(isobar.admin_request("GET", "/metrics", &[], b"").status, 200);
    let ids =
        |field: &str| isobar.status_field(field).unwrap().split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(ids("Uid"), ["65534"; 4], "real, effective, saved and file-system user IDs");
    assert_eq!(ids("Gid"), ["65534"; 4]);
    assert_eq!(ids("Groups"), ["65534"], "no supplementary group but its own");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(isobar.status_field(caps).as_deref(), Some("0000000000000000"), "{caps}");
    }
    assert_eq!(isobar.status_field("NoNewPrivs").as_deref(), Some("1"));

    let (code, stderr) = run_expecting_failure(&["run", "examples/hello.js", "--user", "no-such-user-isobar"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no user named \"no-such-user-isobar\""), "{stderr}");
}

#[test]
fn run_as_user_reads_the_scripts_imports_before_dropping_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping root needs a test run as root");
        return;
    }
    // A directory only root may read: an import read after the drop would fail the start.
    let dir = isobar_e2e::TempDir::new("root-only");
    let main = dir.write(
        "main.js",
        "import { word } from \"./word.js\";\nexport default { fetch() { return new Response(word); } };\n",
    );
    dir.write("word.js", "export const word = \"read as root\";\n");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let isobar = Isobar::start(&["run", main.to_str().unwrap(), "--user", "nobody"]);
    let response = isobar.get("/");
    assert_eq!((response.status, response.text().as_str()), (200, "read as root"));
    assert_eq!(isobar.status_field("Uid").as_deref().and_then(|ids| ids.split_whitespace().next()), Some("65534"));
}

/// A TCP connection to `to` from `from` (any address of 127.0.0.0/8), opened with libc because
/// std cannot bind before connecting.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.ip().octets()) },
            sin_zero: [0; 8],
        }
    }
    let SocketAddr::V4(to) = to else { panic!("an IPv4 server") };
    // SAFETY: socket(2) with integer arguments; the descriptor is owned by the TcpStream below
    // (or closed on error).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours and owned by nobody else.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sockaddr(SocketAddrV4::new(from, 0));
    let remote = sockaddr(to);
    // SAFETY: both addresses are valid sockaddr_in values of `len` bytes.
    unsafe {
        if libc::bind(fd, (&raw const local).cast(), len) != 0
            || libc::connect(fd, (&raw const remote).cast(), len) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(stream)
}

/// True if `stream` is closed by the peer without a byte of response within `timeout`.
fn closed_without_response(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn connections_beyond_the_per_client_and_total_caps_are_closed_and_counted() {
    let isobar = Isobar::start(&[
        "run",
        "examples/hello.js",
        "--admin",
        "127.0.0.1:0",
        "--conns-per-client",
        "3",
        "--conns-max",
        "5",
    ]);
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(isobar.addr)).collect();
    for client in &mut held {
        assert_eq!(client.request("GET", "/", &[], b"").status, 200);
    }
    // The fourth from the same address is closed at once, without a response.
    let mut fourth = connect_from(one, isobar.addr).unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(closed_without_response(&mut fourth, Duration::from_secs(10)));
    // Another address is still served, up to the total of five.
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let mut others: Vec<TcpStream> = (0..2).map(|_| connect_from(two, isobar.addr).unwrap()).collect();
    for other in &mut others {
        other.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        other.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = [0u8; 12];
        other.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let mut sixth = connect_from(Ipv4Addr::new(127, 0, 0, 3), isobar.addr).unwrap();
    assert!(closed_without_response(&mut sixth, Duration::from_secs(10)), "beyond the total cap");
    let metrics = isobar.metrics();
    assert_eq!(metrics.sum("isobar_connections_refused_total", &[("reason", "per_client")]), 1.0);
    assert_eq!(metrics.sum("isobar_connections_refused_total", &[("reason", "total")]), 1.0);
    // Places come back: close one of the first three and the same address is served again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from(one, isobar.addr).unwrap();
        again.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        again.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = [0u8; 12];
        if again.read_exact(&mut head).is_ok() {
            assert_eq!(&head, b"HTTP/1.1 200");
            break;
        }
        assert!(Instant::now() < deadline, "the closed connection's place never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Idle connections, slow heads (one byte every two seconds), stalled bodies, how many of each.
const IDLE_CONNS: usize = 4_000;
const SLOW_CONNS: usize = 5_000;
const STALLED_CONNS: usize = 1_000;
/// The client addresses they come from (127.0.1.1 ...): 250 each, under the default cap of 256.
const CLIENT_ADDRESSES: usize = 40;

#[test]
fn ten_thousand_idle_and_slow_connections_leave_a_normal_client_served() {
    // 10,000 sockets here and 10,000 in isobar: both need the open-files soft limit raised
    // (isobar raises its own to the hard limit).
    let files = kernel_shim::limits::raise_open_files_limit().unwrap();
    let total = IDLE_CONNS + SLOW_CONNS + STALLED_CONNS;
    if files < (total + 512) as u64 {
        eprintln!("skipped: the open-files hard limit is {files}");
        return;
    }
    let isobar = Isobar::start(&["run", "examples/hello.js", "--admin", "127.0.0.1:0"]);
    let started = Instant::now();
    let time_max = Duration::from_secs(120);
    // A normal client's latency before the flood, for the report.
    let normal = |isobar: &Isobar| {
        let at = Instant::now();
        let response = isobar.get("/");
        (response.status, at.elapsed())
    };
    let (status, baseline) = normal(&isobar);
    assert_eq!(status, 200);
    let rss_before = isobar.rss_bytes();

    let from = |i: usize| Ipv4Addr::new(127, 0, 1, 1 + (i % CLIENT_ADDRESSES) as u8);
    let mut idle = Vec::with_capacity(IDLE_CONNS);
    let mut slow = Vec::with_capacity(SLOW_CONNS);
    let mut stalled = Vec::with_capacity(STALLED_CONNS);
    let mut worst = Duration::ZERO;
    for i in 0..total {
        assert!(started.elapsed() < time_max, "opening connections took too long");
        let mut stream = connect_from(from(i), isobar.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        match i % 10 {
            0..=3 => idle.push(stream),
            4..=8 => {
                // A request head that never ends: a slowloris.
                stream.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n").unwrap();
                slow.push(stream);
            }
            _ => {
                // A body that stops after ten of its thousand bytes.
                stream.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789").unwrap();
                stalled.push(stream);
            }
        }
        if i % 1000 == 999 {
            let (status, took) = normal(&isobar);
            assert_eq!(status, 200, "a normal request during the flood");
            worst = worst.max(took);
        }
    }
    let opened = started.elapsed();
    let rss_flooded = isobar.rss_bytes();
    let open_now = isobar.metrics().sum("isobar_core_connections", &[]);
    assert!(open_now >= total as f64, "isobar holds {open_now} connections");

    // Trickle a header byte into every slow connection every two seconds, serving a normal
    // client in between, until the head timeout (10 s from the first byte) has closed them.
    let mut answered_408 = 0;
    let mut write_failed = 0;
    let mut trickle = Instant::now();
    while !slow.is_empty() {
        assert!(started.elapsed() < time_max, "{} slow connections still open", slow.len());
        // Read first, so a 408 that arrived is seen before the next byte goes out.
        slow.retain_mut(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 256];
            let done = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    answered_408 += usize::from(buf[..n].starts_with(b"HTTP/1.1 408"));
                    true
                }
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            !done
        });
        if trickle.elapsed() >= Duration::from_secs(2) {
            slow.retain_mut(|stream| {
                let ok = stream.write_all(b"x").is_ok();
                write_failed += usize::from(!ok);
                ok
            });
            trickle = Instant::now();
        }
        let (status, took) = normal(&isobar);
        assert_eq!(status, 200);
        worst = worst.max(took);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered_408 >= SLOW_CONNS * 8 / 10, "{answered_408} slow heads got 408 ({write_failed} were reset)");

    // Stalled bodies get 408 at the body timeout (30 s without progress).
    let deadline = started + time_max;
    let mut stalled_408 = 0;
    for stream in &mut stalled {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(left)).unwrap();
        let mut head = [0u8; 12];
        if stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 408" {
            stalled_408 += 1;
        }
    }
    assert_eq!(stalled_408, STALLED_CONNS, "every stalled body got 408");

    // The idle ones go at the idle timeout (30 s), without a response.
    for stream in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        assert!(closed_without_response(stream, left), "an idle connection outlived the idle timeout");
    }
    let (status, took) = normal(&isobar);
    assert_eq!(status, 200);
    worst = worst.max(took);
    let rss_after = isobar.rss_bytes();
    eprintln!(
        "{total} connections opened in {opened:?}; RSS {} MiB before, {} MiB with them open, {} MiB after; \
         a normal GET took {baseline:?} before, at worst {worst:?} during",
        rss_before >> 20,
        rss_flooded >> 20,
        rss_after >> 20
    );
    // Generous: the codec holds little per connection and receive buffers are pooled.
    assert!(rss_flooded < rss_before + (256 << 20), "RSS grew from {rss_before} to {rss_flooded} bytes");
    assert!(worst < Duration::from_secs(5), "a normal request took {worst:?} during the flood");
    let metrics = isobar.metrics();
    assert_eq!(metrics.sum("isobar_connections_refused_total", &[]), 0.0, "nobody was over a cap");
}

#[test]
fn the_admin_api_wants_loopback_or_a_token() {
    // Without a token, a non-loopback admin address is refused at start-up.
    let dir = isobar_e2e::TempDir::new("admin-open");
    let config = dir.write(
        "isobar.toml",
        &format!(
            "[[tenant]]\nname = \"a\"\nscript = \"{}\"\nroutes = [\"*\"]\n",
            isobar_e2e::workspace().join("examples/hello.js").display()
        ),
    );
    let config = config.to_str().unwrap();
    let (code, stderr) = run_expecting_failure(&["serve", "--config", config, "--admin", "0.0.0.0:0"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not a loopback address: set server.admin_token"), "{stderr}");
}
