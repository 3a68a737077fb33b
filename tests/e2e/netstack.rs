//! isobar's userspace TCP/IP stack (smoltcp per core) on raw links, in network namespaces these
//! tests create: each test runs on its own thread moved into a fresh namespace, creates the
//! link there (a TAP, or a veth pair for AF_PACKET), starts isobar from that thread (so it is in
//! the namespace too) and talks to it from the kernel side of the link. Nothing touches the
//! host's network.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use isobar_e2e::{Client, Isobar, run_expecting_failure};
use kernel_shim::link;

/// Runs `test` on a new thread inside a fresh network namespace with `lo` up.
pub(crate) fn in_namespace(test: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        link::unshare_network_namespace().expect("a fresh network namespace (run the tests as root)");
        test();
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

/// A persistent multi-queue TAP with virtio-net headers (the flags isobar opens it with), its
/// kernel side at 10.0.0.1/24 and up.
pub(crate) fn kernel_side_tap(name: &str) {
    let fds = link::open_tap(name, 1, true).expect("create the TAP");
    link::set_persistent(std::os::fd::AsFd::as_fd(&fds[0]), true).expect("persistent TAP");
    drop(fds);
    link::set_ipv4(name, Ipv4Addr::new(10, 0, 0, 1), 24).expect("kernel side address");
    link::set_up(name).expect("TAP up");
}

fn start_on(net: &str, ip: &str, worker: &str, extra: &[&str]) -> Isobar {
    let mut args = vec!["run", worker, "--net", net, "--ip", ip, "--listen", "0.0.0.0:8080"];
    args.extend_from_slice(extra);
    Isobar::start(&args)
}

const TAP_ADDR: &str = "10.0.0.2:8080";

fn tap_addr() -> SocketAddr {
    TAP_ADDR.parse().unwrap()
}

/// The checksum tests/workers/bytes.js computes.
fn sum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |s, b| s.wrapping_mul(31).wrapping_add(*b as u32))
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn tap_serves_http_from_the_kernel_side_on_every_core() {
    in_namespace(|| {
        kernel_side_tap("isotap0");
        let isobar = start_on("tap:isotap0", "10.0.0.2/24", "examples/echo.js", &[]);
        assert_eq!(isobar.addr, tap_addr());
        let mut client = Client::connect(tap_addr());
        let response = client.request("POST", "/over/tap", &[("x-a", "b")], b"through smoltcp");
        assert_eq!(response.status, 200);
        let json = response.json();
        assert_eq!(json["body"], "through smoltcp");
        assert_eq!(json["headers"]["x-a"], "b");
        // Keep-alive over the userspace stack.
        for i in 0..20 {
            assert_eq!(client.request("GET", &format!("/{i}"), &[], b"").status, 200);
        }

        // 200 connections open at once, all answered, on both cores' stacks.
        let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(tap_addr())).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.send("GET", &format!("/c{i}"), &[], b"");
        }
        let mut cores = BTreeSet::new();
        for c in &mut clients {
            let response = c.read_response(false);
            assert_eq!(response.status, 200);
            cores.insert(response.header("x-isobar-core").unwrap().to_string());
        }
        if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) >= 2 {
            assert!(cores.len() >= 2, "200 connections all landed on cores {cores:?}");
        }
    });
}

/// `fetch()` from a Worker on the userspace stack: the subrequest leaves through smoltcp on the
/// TAP (isobar's address 10.0.0.2) to an origin on the kernel side (10.0.0.1), and its response
/// comes back the same way, on a kept-alive connection the second time.
#[test]
fn fetch_goes_out_through_the_userspace_stack() {
    in_namespace(|| {
        kernel_side_tap("isotapf");
        let origin = crate::fetch::Origin::start_on("10.0.0.1");
        let isobar = start_on("tap:isotapf", "10.0.0.2/24", "tests/workers/fetch.js", &["--cores", "1"]);
        let mut client = Client::connect(tap_addr());
        for round in 0..2 {
            let path = format!("/pass?to={}", crate::fetch::q(&origin.url(&format!("/hello?round={round}"))));
            let response = client.request("GET", &path, &[], b"");
            assert_eq!(response.status, 200, "{}", response.text());
            assert_eq!(response.text(), "hello from the origin\n");
            assert_eq!(response.header("x-target"), Some(format!("/hello?round={round}").as_str()));
        }
        assert_eq!(origin.seen().len(), 2, "both requests reached the origin");
        assert_eq!(origin.connections(), 1, "the second one on the kept-alive connection");
        assert_eq!(origin.peers(), vec![std::net::IpAddr::from(Ipv4Addr::new(10, 0, 0, 2))], "from smoltcp's address");
        drop(isobar);
    });
}

#[test]
fn four_mebibytes_round_trip_intact_over_the_tap() {
    in_namespace(|| {
        kernel_side_tap("isotap1");
        let _isobar = start_on(
            "tap:isotap1",
            "10.0.0.2/24",
            "tests/workers/bytes.js",
            &["--body-limit", "8388608", "--cpu-ms", "5000"],
        );
        let body = pseudo_random(4 << 20, 7);
        let mut client = Client::connect(tap_addr());
        let started = Instant::now();
        let response = client.request("POST", "/bytes", &[], &body);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-length"), Some("4194304"));
        assert_eq!(response.header("x-sum").unwrap(), sum(&body).to_string(), "the worker saw the same bytes");
        assert_eq!(response.body.len(), body.len());
        assert!(response.body == body, "the response came back byte for byte");
        assert!(started.elapsed() < Duration::from_secs(60));
    });
}

#[test]
fn ping_is_answered_by_the_userspace_stack() {
    in_namespace(|| {
        kernel_side_tap("isotap2");
        let _isobar = start_on("tap:isotap2", "10.0.0.2/24", "examples/hello.js", &[]);
        let replies = icmp_echo(Ipv4Addr::new(10, 0, 0, 2), 3);
        assert_eq!(replies, 3, "three echo requests, three replies");
    });
}

#[test]
fn a_peer_resetting_mid_body_leaves_the_server_serving() {
    in_namespace(|| {
        kernel_side_tap("isotap3");
        let _isobar = start_on(
            "tap:isotap3",
            "10.0.0.2/24",
            "tests/workers/bytes.js",
            &["--body-limit", "8388608", "--cpu-ms", "5000"],
        );
        for _ in 0..5 {
            let mut stream = TcpStream::connect(tap_addr()).unwrap();
            stream.write_all(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 1000000\r\n\r\n").unwrap();
            stream.write_all(&pseudo_random(300_000, 3)).unwrap();
            reset(stream);
        }
        // The server and the stack are fine: a full request on a new connection works.
        let body = pseudo_random(100_000, 9);
        let response = Client::connect(tap_addr()).request("POST", "/after", &[], &body);
        assert_eq!(response.status, 200);
        assert!(response.body == body);
    });
}

#[test]
fn af_packet_on_a_veth_pair_with_the_peers_offloads_on() {
    in_namespace(|| {
        link::create_veth("isoveth0", "isoveth1").expect("veth pair");
        link::set_ipv4("isoveth0", Ipv4Addr::new(10, 0, 1, 1), 24).unwrap();
        link::set_up("isoveth0").unwrap();
        // The kernel side keeps checksum offload, TSO and GSO: frames reach isobar with partial
        // checksums and as GSO super-frames, described by virtio-net headers.
        let _ = link::set_offloads("isoveth0", true);
        let isobar = start_on(
            "packet:isoveth1",
            "10.0.1.2/24",
            "tests/workers/bytes.js",
            &["--body-limit", "8388608", "--cpu-ms", "5000"],
        );
        let addr: SocketAddr = "10.0.1.2:8080".parse().unwrap();
        assert_eq!(isobar.addr, addr);
        wait_running("isoveth0");
        let mut client = Client::connect(addr);
        assert_eq!(client.request("POST", "/small", &[], b"hello veth").body, b"hello veth");
        let body = pseudo_random(4 << 20, 11);
        let response = client.request("POST", "/big", &[], &body);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-sum").unwrap(), sum(&body).to_string());
        assert!(response.body == body, "4 MiB back intact over AF_PACKET");
        assert_eq!(icmp_echo(Ipv4Addr::new(10, 0, 1, 2), 2), 2);
    });
}

/// Waits until the interface's carrier is up (a veth end drops frames for up to a second after
/// coming up, see kernel_shim::link::set_up).
fn wait_running(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !link::interface(name).map(|i| i.running).unwrap_or(false) {
        assert!(Instant::now() < deadline, "{name} never got a carrier");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// Closes with a reset instead of a FIN (SO_LINGER with a zero timeout).
fn reset(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket we own with a valid linger struct of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(stream);
}

/// Sends `count` ICMP echo requests to `to` from a raw socket; returns how many replies came.
fn icmp_echo(to: Ipv4Addr, count: u16) -> usize {
    // SAFETY: a raw ICMP socket (root, in our own namespace); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(fd >= 0, "raw ICMP socket: {}", std::io::Error::last_os_error());
    let timeout = libc::timeval { tv_sec: 2, tv_usec: 0 };
    // SAFETY: setting a receive timeout on our socket with a valid timeval.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let dest = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.octets()) },
        sin_zero: [0; 8],
    };
    let ident: u16 = 0x1b0b;
    let mut replies = 0;
    for seq in 0..count {
        let mut packet = vec![8u8, 0, 0, 0, (ident >> 8) as u8, ident as u8, (seq >> 8) as u8, seq as u8];
        packet.extend_from_slice(b"isobar ping payload");
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
        // SAFETY: sendto with a valid buffer and sockaddr_in of the sizes passed.
        let sent = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&dest as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(sent, packet.len() as isize);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            // SAFETY: recv into a valid buffer of the length passed.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            let icmp = &buf[ihl..n as usize];
            let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
            if from == to
                && icmp.len() >= 8
                && icmp[0] == 0
                && icmp[4..6] == ident.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                assert_eq!(&icmp[8..], b"isobar ping payload", "the echo carries our payload back");
                replies += 1;
                break;
            }
        }
    }
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(fd) };
    replies
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[allow(dead_code)]
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// A bad `--net` is a start-up error that says what is wrong and what to write instead.
#[test]
fn network_settings_that_cannot_work_are_refused_with_the_reason() {
    in_namespace(|| {
        let cases: [(&[&str], &str); 4] = [
            (&["--net", "packet:nosuch0", "--ip", "10.0.0.2/24"], "no interface named nosuch0"),
            (&["--net", "tap:isobad0"], "needs --ip ADDR/PREFIX"),
            (&["--net", "tap:isobad0", "--ip", "10.0.0.2"], "use ADDRESS/PREFIX"),
            (&["--net", "bogus"], "use kernel, tap:NAME or packet:IFNAME"),
        ];
        for (net, expected) in cases {
            let mut args = vec!["run", "examples/hello.js", "--listen", "0.0.0.0:0"];
            args.extend_from_slice(net);
            let (code, stderr) = run_expecting_failure(&args);
            assert_eq!(code, Some(1), "{net:?} must fail at start-up: {stderr}");
            assert!(stderr.contains(expected), "{net:?}: expected {expected:?} in:\n{stderr}");
        }
    });
}
