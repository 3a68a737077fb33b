//! HttpServer terminating TLS over KernelNet: real io_uring, real loopback sockets, and a rustls
//! client on its own thread over a std `TcpStream`, with a CA and certificates made for each
//! test by rcgen. The server is driven on the test thread; time can be moved forward by hand
//! (`Server::skew`) to reach a deadline without sleeping. Every loop is bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kernel_shim::net::{local_addr, reuseport_listener};
use kernel_shim::ring::{Ring, RingConfig, key_tag};
use netstack::http1::{Limits, Response};
use netstack::server::ServerTls;
use netstack::tls::{CertKeyPem, client_config, server_config};
use netstack::{HttpServer, IncomingRequest, KernelNet, NetLimits, TAG_NET};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A test CA.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate (PEM and DER) and its key.
struct Leaf {
    cert: String,
    der: Vec<u8>,
    key: String,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "isobar test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.pem(), der: cert.der().to_vec(), key: key.serialize_pem() }
    }

    fn client(&self) -> Arc<ClientConfig> {
        client_config(&[("test CA", self.ca_pem.as_bytes())]).unwrap()
    }
}

fn serving(leaves: &[&Leaf]) -> Arc<rustls::ServerConfig> {
    let pems: Vec<CertKeyPem<'_>> = leaves
        .iter()
        .map(|leaf| CertKeyPem {
            source_name: "test leaf",
            key_source_name: "test key",
            cert_chain: leaf.cert.as_bytes(),
            key: leaf.key.as_bytes(),
        })
        .collect();
    server_config(&pems).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The server: plain HTTP on one listener, HTTPS on another, one ring, driven here.

struct Server {
    ring: Ring,
    http: HttpServer<KernelNet>,
    plain: SocketAddr,
    https: SocketAddr,
    requests: Vec<IncomingRequest>,
    /// Added to the clock the server is given: moves it past a deadline without sleeping.
    skew: Duration,
}

impl Server {
    fn new(config: Arc<rustls::ServerConfig>, handshake_timeout: Duration, limits: Limits) -> Server {
        let mut ring = Ring::new(RingConfig { entries: 256, recv_buffers: 64, recv_buffer_bytes: 4096 }).unwrap();
        let plain_listener = reuseport_listener("127.0.0.1:0".parse().unwrap(), 128).unwrap();
        let tls_listener = reuseport_listener("127.0.0.1:0".parse().unwrap(), 128).unwrap();
        let plain = local_addr(plain_listener.as_fd()).unwrap();
        let https = local_addr(tls_listener.as_fd()).unwrap();
        let mut net = KernelNet::new(NetLimits { close_timeout_ms: 1000, ..NetLimits::default() });
        net.listen(&mut ring, plain_listener);
        net.listen(&mut ring, tls_listener);
        let mut http = HttpServer::new(net, limits);
        http.set_tls(Some(ServerTls { handshake_timeout, ..ServerTls::new(https.port(), config) }));
        Server { ring, http, plain, https, requests: Vec::new(), skew: Duration::ZERO }
    }

    fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    /// One loop turn: wait up to 10 ms, route completions, apply deadlines.
    fn turn(&mut self) {
        let mut completions = Vec::new();
        self.ring.wait(Some(Duration::from_millis(10)), &mut completions).unwrap();
        let now = self.now();
        for completion in completions {
            assert_eq!(key_tag(completion.key), TAG_NET);
            self.http.on_completion(&mut self.ring, completion, now, &mut self.requests);
        }
        self.http.poll(&mut self.ring, now, &mut self.requests);
    }

    fn respond(&mut self, request: &IncomingRequest, body: Vec<u8>) {
        let response = Response::new(200).with_body(body);
        let now = self.now();
        self.http.respond(&mut self.ring, request.conn, request.request.id(), response, now, &mut self.requests);
    }

    /// Turns until `done` returns true; fails after 10 s.
    fn run_until(&mut self, mut done: impl FnMut(&mut Server) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(Instant::now() < deadline, "the server did not reach the expected state within 10 s");
            self.turn();
        }
    }

    /// Answers every request with "TARGET tls|plain" until the client thread ends.
    fn echo_until_finished<T>(&mut self, client: JoinHandle<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !client.is_finished() {
            assert!(Instant::now() < deadline, "client did not finish within 20 s");
            self.turn();
            for request in std::mem::take(&mut self.requests) {
                let kind = if request.tls { "tls" } else { "plain" };
                let body = format!("{} {kind}", request.request.target());
                self.respond(&request, body.into_bytes());
            }
        }
        client.join().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// A TLS client to `name` at `addr`; the handshake happens on first use.
fn tls_connect(config: &Arc<ClientConfig>, addr: SocketAddr, name: &str) -> TlsStream {
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config.clone(), server_name).unwrap();
    StreamOwned::new(conn, connect(addr))
}

/// Reads one `content-length` response from `stream` and returns its body.
fn read_response(stream: &mut impl Read, buffer: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let body = buffer[end + 4..end + 4 + length].to_vec();
                buffer.drain(..end + 4 + length);
                return body;
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed while a response was expected");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn get(stream: &mut impl Write, target: &str) {
    stream.write_all(format!("GET {target} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).unwrap();
}

/// What a client sees after the server gave up on it: end of stream or a reset, never data.
fn closed_without_data(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(error) => error.kind() == ErrorKind::ConnectionReset,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn each_sni_name_gets_its_certificate_and_keep_alive_works() {
    let pki = Pki::new();
    let (alpha, beta) = (pki.leaf(&["alpha.test"]), pki.leaf(&["beta.test", "*.beta.test"]));
    let mut server = Server::new(serving(&[&alpha, &beta]), Duration::from_secs(10), Limits::default());
    let (addr, client) = (server.https, pki.client());
    let expected = [("alpha.test", alpha.der.clone()), ("www.beta.test", beta.der.clone())];
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (name, der) in expected {
            let mut stream = tls_connect(&client, addr, name);
            let mut buffer = Vec::new();
            for i in 0..3 {
                get(&mut stream, &format!("/{name}/{i}"));
                assert_eq!(read_response(&mut stream, &mut buffer), format!("/{name}/{i} tls").into_bytes());
            }
            let leaf = stream.conn.peer_certificates().unwrap()[0].to_vec();
            assert!(leaf == der, "{name} was served another certificate");
            assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            seen.push(name);
        }
        seen
    });
    assert_eq!(server.echo_until_finished(thread), ["alpha.test", "www.beta.test"]);
    let stats = server.http.stats();
    assert_eq!((stats.tls_handshakes, stats.requests, stats.tls_errors), (2, 6, 0));
}

#[test]
fn http_and_https_are_served_side_by_side() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["both.test"]);
    let mut server = Server::new(serving(&[&leaf]), Duration::from_secs(10), Limits::default());
    let (plain, https, client) = (server.plain, server.https, pki.client());
    let thread = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let mut stream = connect(plain);
        get(&mut stream, "/p");
        let plain_body = read_response(&mut stream, &mut buffer);
        let mut buffer = Vec::new();
        let mut secure = tls_connect(&client, https, "both.test");
        get(&mut secure, "/s");
        let tls_body = read_response(&mut secure, &mut buffer);
        (String::from_utf8(plain_body).unwrap(), String::from_utf8(tls_body).unwrap())
    });
    let (plain_body, tls_body) = server.echo_until_finished(thread);
    assert_eq!(plain_body, "/p plain");
    assert_eq!(tls_body, "/s tls");
    assert_eq!(server.http.stats().tls_handshakes, 1);
}

#[test]
fn a_garbage_client_hello_closes_only_its_connection() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["ok.test"]);
    let mut server = Server::new(serving(&[&leaf]), Duration::from_secs(10), Limits::default());
    let (addr, client) = (server.https, pki.client());
    // A good client connects first and keeps its connection through the bad one's failure.
    let mut good = tls_connect(&client, addr, "ok.test");
    let thread = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        get(&mut good, "/before");
        let before = read_response(&mut good, &mut buffer);
        // A handshake record whose ClientHello is garbage, then plain HTTP on the TLS port.
        let mut bad = connect(addr);
        bad.write_all(&[0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]).unwrap();
        let mut answer = Vec::new();
        let _ = bad.read_to_end(&mut answer);
        let mut http_on_tls = connect(addr);
        http_on_tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut http_answer = Vec::new();
        let _ = http_on_tls.read_to_end(&mut http_answer);
        get(&mut good, "/after");
        let after = read_response(&mut good, &mut buffer);
        // The good connection stays open (returned, not dropped) until the server is seen to
        // hold it alone: its close must not race the check below.
        (before, answer, http_answer, after, good)
    });
    let (before, answer, http_answer, after, good) = server.echo_until_finished(thread);
    assert_eq!(before, b"/before tls");
    assert_eq!(after, b"/after tls");
    // The bad clients got a TLS alert record (content type 21) and nothing else.
    assert_eq!(answer.first(), Some(&0x15), "{answer:?}");
    assert_eq!(http_answer.first(), Some(&0x15), "{http_answer:?}");
    assert!(!String::from_utf8_lossy(&http_answer).contains("HTTP/1.1"));
    server.run_until(|s| s.http.open_conns() == 1);
    drop(good);
    let stats = server.http.stats();
    assert_eq!((stats.tls_errors, stats.tls_handshakes, stats.requests), (2, 1, 2));
}

#[test]
fn a_handshake_that_does_not_finish_in_time_is_closed_and_a_finished_one_is_not() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["slow.test"]);
    let timeout = Duration::from_secs(10);
    let mut server = Server::new(serving(&[&leaf]), timeout, Limits::default());
    let (addr, client) = (server.https, pki.client());
    // A client that finishes its handshake, and one that sends half a ClientHello and stalls.
    let mut done = tls_connect(&client, addr, "slow.test");
    let handshake = std::thread::spawn(move || {
        done.conn.complete_io(&mut done.sock).unwrap();
        done
    });
    let mut done = server.echo_until_finished(handshake);
    let mut stalled = connect(addr);
    let mut hello = Vec::new();
    let mut half = ClientConnection::new(client.clone(), ServerName::try_from("slow.test").unwrap()).unwrap();
    half.write_tls(&mut hello).unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    server.run_until(|s| s.http.open_conns() == 2 && s.http.stats().bytes_in >= (hello.len() / 2) as u64);
    for _ in 0..5 {
        server.turn();
    }
    assert_eq!(server.http.open_conns(), 2, "nothing is closed before the deadline");
    // Past the handshake deadline (the clock moved by hand), the stalled one is dropped.
    server.skew = timeout + Duration::from_secs(1);
    server.run_until(|s| s.http.open_conns() == 1);
    assert!(closed_without_data(&mut stalled));
    assert_eq!(server.http.stats().tls_handshake_timeouts, 1);
    // The established connection is not held to the handshake deadline.
    let thread = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        get(&mut done, "/late");
        read_response(&mut done, &mut buffer)
    });
    assert_eq!(server.echo_until_finished(thread), b"/late tls");
    assert_eq!(server.http.stats().tls_handshake_timeouts, 1);
}

#[test]
fn the_server_ends_with_close_notify() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["bye.test"]);
    let mut server = Server::new(serving(&[&leaf]), Duration::from_secs(10), Limits::default());
    let (addr, client) = (server.https, pki.client());
    let thread = std::thread::spawn(move || {
        let mut stream = tls_connect(&client, addr, "bye.test");
        stream.write_all(b"GET /bye HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
        // rustls reports an end of stream without close_notify as UnexpectedEof.
        let mut everything = Vec::new();
        let result = stream.read_to_end(&mut everything).map(|_| ());
        (result.map_err(|e| e.kind()), String::from_utf8_lossy(&everything).to_string())
    });
    let (result, text) = server.echo_until_finished(thread);
    assert_eq!(result, Ok(()), "the server closed without close_notify");
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("/bye tls"), "{text}");
    server.run_until(|s| s.http.open_conns() == 0);
}

#[test]
fn names_without_a_certificate_and_foreign_protocols_are_refused() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["known.test"]);
    let mut server = Server::new(serving(&[&leaf]), Duration::from_secs(10), Limits::default());
    let (addr, ca) = (server.https, pki.ca_pem.clone());
    let thread = std::thread::spawn(move || {
        let config = client_config(&[("test CA", ca.as_bytes())]).unwrap();
        let mut unknown = tls_connect(&config, addr, "unknown.test");
        let unknown_result = unknown.conn.complete_io(&mut unknown.sock).map(|_| ());
        let mut h2_only = (*config).clone();
        h2_only.alpn_protocols = vec![b"h2".to_vec()];
        let mut foreign = tls_connect(&Arc::new(h2_only), addr, "known.test");
        let foreign_result = foreign.conn.complete_io(&mut foreign.sock).map(|_| ());
        (unknown_result.is_err(), foreign_result.is_err())
    });
    assert_eq!(server.echo_until_finished(thread), (true, true));
    server.run_until(|s| s.http.open_conns() == 0);
    assert_eq!(server.http.stats().tls_errors, 2);
    assert_eq!(server.http.stats().tls_handshakes, 0);
}

#[test]
fn new_certificates_apply_to_new_connections_only() {
    let pki = Pki::new();
    let (old, new) = (pki.leaf(&["swap.test"]), pki.leaf(&["swap.test"]));
    let mut server = Server::new(serving(&[&old]), Duration::from_secs(10), Limits::default());
    let (addr, client) = (server.https, pki.client());
    let mut first = tls_connect(&client, addr, "swap.test");
    let thread = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        get(&mut first, "/1");
        read_response(&mut first, &mut buffer);
        (first, buffer)
    });
    let (mut first, mut buffer) = server.echo_until_finished(thread);
    assert!(first.conn.peer_certificates().unwrap()[0].as_ref() == old.der.as_slice());

    let port = server.https.port();
    server.http.set_tls(Some(ServerTls::new(port, serving(&[&new]))));
    let thread = std::thread::spawn(move || {
        let mut second = tls_connect(&client, addr, "swap.test");
        let mut second_buffer = Vec::new();
        get(&mut second, "/2");
        read_response(&mut second, &mut second_buffer);
        // The connection opened before the swap goes on as it was.
        get(&mut first, "/3");
        let third = read_response(&mut first, &mut buffer);
        (second.conn.peer_certificates().unwrap()[0].to_vec(), third)
    });
    let (second_leaf, third) = server.echo_until_finished(thread);
    assert!(second_leaf == new.der, "the new connection did not get the new certificate");
    assert_eq!(third, b"/3 tls");
}

#[test]
fn a_client_that_does_not_read_cannot_make_the_server_buffer_without_bound() {
    const REQUESTS: usize = 400;
    const BODY_BYTES: usize = 128 * 1024;
    let pki = Pki::new();
    let leaf = pki.leaf(&["slow.test"]);
    let limits = Limits::default();
    let mut server = Server::new(serving(&[&leaf]), Duration::from_secs(10), limits);
    let (addr, client) = (server.https, pki.client());
    let mut stream = tls_connect(&client, addr, "slow.test");
    // Every request at once (16 KiB of them), then nothing read for a while.
    let (go_read_tx, go_read_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..REQUESTS {
            batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
        }
        stream.write_all(&batch).unwrap();
        stream.flush().unwrap();
        go_read_rx.recv().unwrap();
        let mut buffer = Vec::new();
        let mut bodies = 0;
        for _ in 0..REQUESTS {
            let body = read_response(&mut stream, &mut buffer);
            assert_eq!(body.len(), BODY_BYTES);
            bodies += 1;
        }
        bodies
    });
    let body = vec![b'x'; BODY_BYTES];
    let mut conn = None;
    let mut handed_out = 0;
    let mut held_max = 0;
    // Answer everything handed out until the server stops reading (nothing new for a while).
    let mut quiet_turns = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while quiet_turns < 50 {
        assert!(Instant::now() < deadline, "the server never stopped reading");
        server.turn();
        let requests = std::mem::take(&mut server.requests);
        quiet_turns = if requests.is_empty() { quiet_turns + 1 } else { 0 };
        for request in requests {
            conn = Some(request.conn);
            handed_out += 1;
            server.respond(&request, body.clone());
        }
        if let Some(held) = conn.and_then(|conn| server.http.held_bytes(conn)) {
            held_max = held_max.max(held);
        }
    }
    assert!(handed_out < REQUESTS, "every request was read although no response was: {handed_out}");
    // What the server holds for the connection, as on a plain one: a pipeline of answered
    // responses in the codec and the previous batch on its way out (in the TLS layer here, in
    // the transport's queue without TLS), plus one send buffer of records; far below the 50 MiB
    // the client asked for.
    let bound = 2 * limits.pipeline_depth_max * BODY_BYTES + limits.backlog_bytes_max + 2 * 256 * 1024 + 64 * 1024;
    assert!(held_max <= bound, "held {held_max} bytes for one connection (bound {bound})");
    // Reading again resumes everything, in order, with nothing lost.
    go_read_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "the client did not get every response within 60 s");
        server.turn();
        for request in std::mem::take(&mut server.requests) {
            server.respond(&request, body.clone());
            if let Some(held) = server.http.held_bytes(request.conn) {
                held_max = held_max.max(held);
            }
        }
    }
    assert_eq!(thread.join().unwrap(), REQUESTS);
    assert!(held_max <= bound, "held {held_max} bytes for one connection (bound {bound})");
}
