//! `fetch()` from a Worker, end to end: the built binary, a real origin server this test starts on
//! loopback (std sockets, one thread per connection), a real DNS server on a loopback UDP port,
//! and real clients. The Worker is `tests/workers/fetch.js`; each of its paths is one scenario.
//!
//! Every wait is bounded; the origin and the resolver listen on 127.0.0.1 only, and isobar is
//! pointed at that resolver (`--dns`), so no query leaves the machine.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use isobar_e2e::{Client, Isobar, TempDir, workspace};

/// A request the origin received.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    method: String,
    pub(crate) target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP/1.1 origin on loopback: keep-alive, content-length and chunked bodies both ways.
pub(crate) struct Origin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// The addresses connections came from, each once.
    peers: Arc<Mutex<Vec<std::net::IpAddr>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Gate,
}

/// `/gate` answers only once the test opens it (or after 20 s).
type Gate = Arc<(Mutex<bool>, Condvar)>;

impl Origin {
    pub(crate) fn start() -> Origin {
        Origin::start_on("127.0.0.1")
    }

    /// An origin on `ip` (an address of a network namespace a test made, for one).
    pub(crate) fn start_on(ip: &str) -> Origin {
        let listener = TcpListener::bind((ip, 0)).expect("bind the origin");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate: Gate = Arc::new((Mutex::new(false), Condvar::new()));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (count, log, shared_gate, from) = (connections.clone(), seen.clone(), gate.clone(), peers.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(peer) = stream.peer_addr() {
                    let mut from = from.lock().unwrap();
                    if !from.contains(&peer.ip()) {
                        from.push(peer.ip());
                    }
                }
                let (log, gate) = (log.clone(), shared_gate.clone());
                std::thread::spawn(move || serve_origin(stream, addr, log, gate));
            }
        });
        Origin { addr, connections, peers, seen, gate }
    }

    fn open_gate(&self) {
        let (open, changed) = &*self.gate;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn peers(&self) -> Vec<std::net::IpAddr> {
        self.peers.lock().unwrap().clone()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves one connection until the peer closes it (or asks to).
fn serve_origin(stream: TcpStream, addr: SocketAddr, log: Arc<Mutex<Vec<Seen>>>, gate: Gate) {
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut body = Vec::new();
        if headers.get("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(len) = headers.get("content-length") {
            let mut buf = vec![0; len.parse().unwrap()];
            reader.read_exact(&mut buf).unwrap();
            body = buf;
        }
        let seen = Seen { method, target, headers, body };
        log.lock().unwrap().push(seen.clone());
        let close = seen.headers.get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if seen.target == "/gate" {
            let (open, changed) = &*gate;
            let guard = open.lock().unwrap();
            let _ = changed.wait_timeout_while(guard, Duration::from_secs(20), |open| !*open).unwrap();
        }
        if !respond(&mut out, addr, &seen) || close {
            return;
        }
    }
}

/// Answers one request; false when the connection must close.
fn respond(out: &mut TcpStream, addr: SocketAddr, seen: &Seen) -> bool {
    let path = seen.target.split('?').next().unwrap_or("");
    let send = |out: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n{headers}\r\n", body.len());
        out.write_all(head.as_bytes()).is_ok() && out.write_all(body).is_ok()
    };
    match path {
        "/hello" => {
            let from = seen.headers.get("x-from").cloned().unwrap_or_default();
            let headers = format!("content-type: text/plain\r\nx-seen-from: {from}\r\nx-target: {}\r\n", seen.target);
            send(out, "200 OK", &headers, b"hello from the origin\n")
        }
        "/echo" => {
            let ct = seen.headers.get("content-type").cloned().unwrap_or_default();
            let body = format!(
                "{} {} len={} ct={} body={}",
                seen.method,
                seen.target,
                seen.body.len(),
                ct,
                String::from_utf8_lossy(&seen.body[..seen.body.len().min(400)])
            );
            send(out, "200 OK", "content-type: text/plain\r\n", body.as_bytes())
        }
        "/chunked" => {
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if out.write_all(head.as_bytes()).is_err() {
                return false;
            }
            for piece in ["a", "b", "c"] {
                std::thread::sleep(Duration::from_millis(100));
                if out.write_all(format!("1\r\n{piece}\r\n").as_bytes()).is_err() {
                    return false;
                }
            }
            out.write_all(b"0\r\n\r\n").is_ok()
        }
        "/gate" => send(out, "200 OK", "", b"open"),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            send(out, "200 OK", "", b"slow\n")
        }
        "/loop" => send(out, "302 Found", "location: /loop\r\n", b""),
        "/see-other" => send(out, "303 See Other", "location: /echo\r\n", b""),
        _ if path.starts_with("/redirect/") => {
            let n: u32 = path["/redirect/".len()..].parse().unwrap_or(0);
            if n == 0 {
                send(out, "200 OK", "", b"landed")
            } else {
                // Absolute and relative locations alternate.
                let location = if n.is_multiple_of(2) {
                    format!("http://{addr}/redirect/{}", n - 1)
                } else {
                    format!("/redirect/{}", n - 1)
                };
                send(out, "302 Found", &format!("location: {location}\r\n"), b"")
            }
        }
        _ => send(out, "404 Not Found", "", b"no such path\n"),
    }
}

/// A DNS server on a loopback UDP port: `origin.test` is 127.0.0.1, every other name does not
/// exist. Counts the queries it answered.
struct Resolver {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
}

impl Resolver {
    fn start() -> Resolver {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the resolver");
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let count = queries.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(answer) = answer(&buf[..n]) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Resolver { addr, queries }
    }
}

/// The answer to one query (RFC 1035 §4.1): the question echoed, with an A record for
/// `origin.test` or NXDOMAIN.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let name = labels.join(".");
    let mut out = query[..question_end.min(query.len())].to_vec();
    out[2] = 0x81; // QR, RD
    let found = name == "origin.test";
    out[3] = if found { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
    let answers: u16 = if found && qtype == 1 { 1 } else { 0 };
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    out[8..12].fill(0);
    if answers == 1 {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// `isobar run tests/workers/fetch.js` on one core, asking `resolver` for names.
fn run_worker(resolver: &Resolver) -> Isobar {
    let dns = resolver.addr.to_string();
    Isobar::start(&["run", "tests/workers/fetch.js", "--cores", "1", "--dns", &dns])
}

fn get(isobar: &Isobar, path: &str) -> isobar_e2e::Response {
    isobar.get(path)
}

/// Percent-encodes a URL for a query parameter.
pub(crate) fn q(url: &str) -> String {
    url.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn a_proxied_response_passes_through_with_its_head_and_body() {
    let origin = Origin::start();
    let isobar = run_worker(&Resolver::start());
    let r = get(&isobar, &format!("/pass?to={}", q(&origin.url("/hello?x=1"))));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from the origin\n");
    assert_eq!(r.header("x-seen-from"), Some("isobar"), "the script's request header reached the origin");
    assert_eq!(r.header("x-target"), Some("/hello?x=1"));
    assert_eq!(r.header("content-length"), Some("22"), "a known length is kept: {:?}", r.headers);
    assert_eq!(r.headers.iter().filter(|(k, _)| k == "date").count(), 1, "one Date: {:?}", r.headers);

    // A chunked origin body under the script's own head arrives whole.
    let r = get(&isobar, &format!("/wrap?to={}", q(&origin.url("/chunked"))));
    assert_eq!((r.status, r.text().as_str(), r.header("x-wrapped")), (200, "abc", Some("200")));

    // A body read as text, after a POST with a body.
    let r = get(&isobar, &format!("/text?to={}", q(&origin.url("/echo"))));
    assert_eq!(r.text(), "200 text/plain POST /echo len=14 ct=text/plain;charset=UTF-8 body=sent by isobar\n");
}

#[test]
fn redirects_follow_the_fetch_standard() {
    let origin = Origin::start();
    let isobar = run_worker(&Resolver::start());
    let base = origin.url("");
    let r = get(&isobar, &format!("/redirect?to={}", q(&origin.url("/redirect/4"))));
    assert_eq!(r.text(), format!("200 true {base}/redirect/0 null landed\n"));

    let r = get(&isobar, &format!("/redirect?mode=manual&to={}", q(&origin.url("/redirect/3"))));
    assert_eq!(r.text(), format!("302 false {base}/redirect/3 /redirect/2\n"));

    let r = get(&isobar, &format!("/redirect?mode=error&to={}", q(&origin.url("/redirect/1"))));
    assert_eq!(r.status, 502);
    assert!(r.text().starts_with("TypeError: "), "{}", r.text());

    let before = origin.seen().len();
    let r = get(&isobar, &format!("/redirect?to={}", q(&origin.url("/loop"))));
    assert_eq!(r.status, 502);
    assert!(r.text().contains("more than 20 redirects"), "{}", r.text());
    assert_eq!(origin.seen().len() - before, 21, "the first request and 20 redirects");

    // 303 after POST: a GET without the body.
    let r = get(&isobar, &format!("/redirect?method=POST&to={}", q(&origin.url("/see-other"))));
    assert_eq!(r.text(), format!("200 true {base}/echo null GET /echo len=0 ct= body=\n"));
}

#[test]
fn timeouts_and_aborts_reject_with_their_dom_exceptions() {
    let origin = Origin::start();
    let isobar = run_worker(&Resolver::start());
    let started = Instant::now();
    let r = get(&isobar, &format!("/timeout?ms=200&to={}", q(&origin.url("/slow"))));
    assert_eq!(r.status, 502);
    assert!(r.text().starts_with("TimeoutError: "), "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(2500), "the timeout did not cut the 3 s origin short");

    let r = get(&isobar, &format!("/abort?to={}", q(&origin.url("/slow"))));
    assert_eq!(r.status, 502);
    assert!(r.text().starts_with("AbortError: "), "{}", r.text());
    // The core goes on serving.
    let r = get(&isobar, &format!("/any?to={}", q(&origin.url("/hello"))));
    assert_eq!(r.text(), "200 hello from the origin\n");
}

#[test]
fn the_subrequest_limit_throws_what_workers_throws_and_connections_are_reused() {
    let origin = Origin::start();
    let isobar = run_worker(&Resolver::start());
    let r = get(&isobar, &format!("/many?n=60&to={}", q(&origin.url("/hello"))));
    assert_eq!(r.text(), "after 50: Error: Too many subrequests.\n");
    assert_eq!(origin.seen().len(), 50);
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "50 sequential subrequests to one origin share one kept-alive connection"
    );
    // The limit is per request: the next one has its own 50.
    let r = get(&isobar, &format!("/many?n=3&to={}", q(&origin.url("/hello"))));
    assert_eq!(r.text(), "done 3\n");

    // Concurrent subrequests in one request.
    let r = get(&isobar, &format!("/parallel?n=8&to={}", q(&origin.url("/hello"))));
    assert_eq!(r.text(), format!("{}\n", ["hello from the origin"; 8].join(",")));
}

#[test]
fn names_resolve_on_the_core_and_a_missing_name_is_a_clean_error() {
    let origin = Origin::start();
    let resolver = Resolver::start();
    let isobar = run_worker(&resolver);
    let url = format!("http://origin.test:{}/hello", origin.addr.port());
    let r = get(&isobar, &format!("/any?to={}", q(&url)));
    assert_eq!(r.text(), "200 hello from the origin\n");
    assert!(resolver.queries.load(Ordering::SeqCst) >= 1);
    let host = origin.seen().last().unwrap().headers.get("host").cloned();
    assert_eq!(host.as_deref(), Some(format!("origin.test:{}", origin.addr.port()).as_str()));

    let r = get(&isobar, &format!("/any?to={}", q("http://no-such-name.test/")));
    assert_eq!(r.status, 502);
    assert!(r.text().starts_with("TypeError: fetch failed"), "{}", r.text());
    assert!(r.text().contains("no-such-name.test"), "the error names the host: {}", r.text());
}

#[test]
fn streamed_bodies_flow_both_ways() {
    let origin = Origin::start();
    let isobar = run_worker(&Resolver::start());

    // A script's stream reaches the client as it is produced: piece 0 arrives while the script
    // waits for the gate, which opens only once the test has read it (were the body buffered,
    // piece 0 would never come and the read would time out).
    let mut client = Client::connect(isobar.addr);
    client.send("GET", &format!("/stream?gate={}", q(&origin.url("/gate"))), &[], b"");
    let stream = client.stream();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(7).any(|w| w == b"piece 0") {
        let n = stream.read(&mut buf).expect("piece 0 arrives before the script writes piece 1");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!got.windows(7).any(|w| w == b"piece 1"), "piece 1 came before the gate opened");
    origin.open_gate();
    while !got.windows(5).any(|w| w == b"0\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains("piece 1") && text.contains("piece 2"), "{text}");

    // The client's body is streamed to the origin (chunked) and arrives whole.
    let body = vec![b'u'; 300_000];
    let mut client = Client::connect(isobar.addr);
    let r = client.request("POST", &format!("/upload?to={}", q(&origin.url("/echo"))), &[], &body);
    assert!(r.text().starts_with("POST /echo len=300000 ct= body=uuu"), "{}", &r.text()[..80.min(r.text().len())]);

    // FormData is sent as multipart.
    let r = get(&isobar, &format!("/form?to={}", q(&origin.url("/echo"))));
    let text = r.text();
    assert!(text.contains("ct=multipart/form-data; boundary="), "{text}");
    assert!(text.contains("name=\"file\"; filename=\"a.txt\""), "{text}");
    assert!(text.contains("file contents") && text.contains("isobar"), "{text}");
}

#[test]
fn a_slow_client_does_not_make_isobar_buffer_a_stream() {
    // Making 96 MiB in 64 KiB chunks takes more than the default 50 ms of CPU.
    let resolver = Resolver::start();
    let dns = resolver.addr.to_string();
    let isobar = Isobar::start(&["run", "tests/workers/fetch.js", "--cores", "1", "--dns", &dns, "--cpu-ms", "2000"]);
    const TOTAL: usize = 96 << 20;
    let mut client = Client::connect(isobar.addr);
    let rss_before = isobar.rss_bytes();
    client.send("GET", &format!("/big?n={TOTAL}"), &[], b"");
    // The client reads nothing for a while: isobar may fill the socket buffers, no more.
    std::thread::sleep(Duration::from_secs(2));
    let rss_stalled = isobar.rss_bytes();
    assert!(
        rss_stalled < rss_before + (32 << 20),
        "RSS grew by {} MiB while the client did not read",
        (rss_stalled - rss_before) >> 20
    );
    let response = client.read_response(false);
    assert_eq!(response.body.len(), TOTAL);
    assert!(response.body.iter().all(|&b| b == b'x'));
}

#[test]
fn wait_until_work_fetches_after_the_response() {
    let origin = Origin::start();
    let isobar = run_worker(&Resolver::start());
    let r = get(&isobar, &format!("/background?to={}", q(&origin.url("/slow"))));
    assert_eq!(r.text(), "answered first\n");
    // The origin takes 3 s to answer; the fetch was made after the response.
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.seen().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(origin.seen().len(), 1);
}

#[test]
fn wait_until_work_is_cut_at_its_wall_limit() {
    let origin = Origin::start();
    let isobar = run_worker(&Resolver::start());
    let started = Instant::now();
    let r = get(&isobar, &format!("/background-forever?to={}", q(&origin.url("/hello"))));
    assert_eq!(r.text(), "answered first\n");
    // Its first fetch happens after the response.
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.seen().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(origin.seen().len(), 1, "the work after the response ran");
    // Workers allow 30 s after the response; the work would take 60 s.
    let cut = "waitUntil() work went on for more than 30 s after the response; cancelled";
    let deadline = Instant::now() + Duration::from_secs(45);
    while !isobar.stderr().contains(cut) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(isobar.stderr().contains(cut), "{}", isobar.stderr());
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(29), "cut after {elapsed:?}, before its 30 s");
    // Its timer was cancelled with it: the second fetch never happens.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(origin.seen().len(), 1, "nothing of the cut work ran after the cut");
    // The tenant goes on serving.
    assert_eq!(get(&isobar, "/background?to=x").status, 200);
}

/// A `serve` configuration with one tenant running fetch.js and `extra` appended.
fn serve_config(dir: &TempDir, extra: &str) -> std::path::PathBuf {
    let script = workspace().join("tests/workers/fetch.js");
    dir.write(
        "isobar.toml",
        &format!("[[tenant]]\nname = \"proxy\"\nscript = \"{}\"\nroutes = [\"*\"]\n{extra}\n", script.display()),
    )
}

#[test]
fn under_serve_tenants_cannot_reach_local_addresses_unless_allowed() {
    let origin = Origin::start();
    let resolver = Resolver::start();
    let dns = resolver.addr.to_string();
    let dir = TempDir::new("fetch-egress");

    let strict = Isobar::serve(&serve_config(&dir, ""), &["--admin", "127.0.0.1:0", "--cores", "1", "--dns", &dns]);
    let admin = strict.admin_addr();
    for target in [
        origin.url("/hello"),
        format!("http://{admin}/metrics"),
        format!("http://localhost:{}/hello", origin.addr.port()),
        "http://[::1]:9/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
        format!("http://origin.test:{}/hello", origin.addr.port()),
        format!("http://{}/", strict.addr),
    ] {
        let r = strict.get(&format!("/any?to={}", q(&target)));
        assert_eq!(r.status, 502, "{target}: {}", r.text());
        assert!(r.text().contains("not allowed"), "{target}: {}", r.text());
    }
    assert!(origin.seen().is_empty(), "a denied subrequest reached the origin");
    // Refused subrequests are still subrequests (counted once the core publishes its figures).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut counted = 0.0;
    while counted < 8.0 && Instant::now() < deadline {
        counted = strict.metrics().sum("isobar_tenant_subrequests_total", &[("tenant", "proxy")]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counted, 8.0, "isobar_tenant_subrequests_total");
    drop(strict);

    // The operator allows loopback: the origin is reachable, isobar's own listeners still are not.
    let allowed = Isobar::serve(
        &serve_config(&dir, "[egress]\nallow = [\"127.0.0.0/8\"]\n"),
        &["--admin", "127.0.0.1:0", "--cores", "1", "--dns", &dns],
    );
    let r = allowed.get(&format!("/any?to={}", q(&origin.url("/hello"))));
    assert_eq!(r.text(), "200 hello from the origin\n");
    let admin = allowed.admin_addr();
    let r = allowed.get(&format!("/any?to={}", q(&format!("http://{admin}/metrics"))));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("not allowed"), "{}", r.text());
}

/// An `https://` origin on loopback whose certificate (for `origin.test`) a CA made for this
/// test signs; it answers every request with "hello over tls from PATH" and closes.
struct TlsOrigin {
    port: u16,
}

impl TlsOrigin {
    fn start(config: Arc<rustls::ServerConfig>) -> TlsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS origin");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let config = config.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
                        match tls.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return, // a refused handshake ends here
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("?");
                    let body = format!("hello over tls from {path}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsOrigin { port }
    }
}

/// `https://` subrequests are verified: an origin whose certificate a test CA signs is trusted
/// once `--ca` names that CA, and refused without it or by a name its certificate lacks; each
/// refusal is an error the script catches (502 here), and the worker serves on.
#[test]
fn https_origins_are_verified_against_the_configured_cas() {
    let ca = crate::certs::Ca::new("isobar e2e origin CA");
    let origin = TlsOrigin::start(ca.server(&["origin.test"]));
    let resolver = Resolver::start();
    let dir = TempDir::new("fetch-https");
    let ca_file = dir.write("origin-ca.pem", ca.pem());
    let dns = resolver.addr.to_string();
    let secure = format!("https://origin.test:{}/secure?x=1", origin.port);
    let args = ["run", "tests/workers/fetch.js", "--cores", "1", "--dns", &dns, "--ca", ca_file.to_str().unwrap()];
    let trusting = Isobar::start(&args);
    for round in 0..2 {
        let r = get(&trusting, &format!("/any?to={}", q(&secure)));
        assert_eq!(r.text(), "200 hello over tls from /secure?x=1\n", "round {round}");
    }
    // The same server by its address: the certificate names origin.test only.
    let by_address = format!("https://127.0.0.1:{}/", origin.port);
    let r = get(&trusting, &format!("/any?to={}", q(&by_address)));
    assert_eq!(r.status, 502, "{}", r.text());
    eprintln!("by address: {}", r.text());

    // Without --ca the test CA is not trusted (only the system's are).
    let untrusting = run_worker(&resolver);
    let r = get(&untrusting, &format!("/any?to={}", q(&secure)));
    assert_eq!(r.status, 502, "{}", r.text());
    eprintln!("without the CA: {}", r.text());
    assert!(r.text().to_lowercase().contains("certificate"), "{}", r.text());
    assert_eq!(get(&untrusting, "/any?to=").status, 502, "the worker still answers");
}
