//! The tls scenario's load generator: load.rs's closed loop, over rustls (or plain TCP, for
//! the reference rows), in two shapes: keep-alive (N connections, each handshaken once during
//! the warm-up, then one request after another) and one connection per request (connect, a full
//! handshake, one request with `connection: close`, the response, a reset; N of these in
//! flight). It owns the client side only: the probe reads the servers at the window's edges.
//!
//! The client does as little TLS work as the protocol lets it: no session resumption (every
//! new connection is a full handshake, which is what is measured) and no certificate or
//! handshake-signature verification in the load itself (`SkipVerify`): the server still signs
//! every handshake, the client just does not check the signature. Even so a full handshake
//! costs this client about as much CPU as it costs a server (its own key exchange, key
//! schedule and TCP connect), so with one client thread the handshake rate can be the client's:
//! the caller reports the client's CPU share beside every figure, and server CPU per
//! handshake is exact either way. `check` makes one request with a client that
//! verifies everything against the harness's CA, before any load, so each server is known to
//! present the certificate made for it. Every loop is bounded in time and count, as load.rs's.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::load::{LoadResult, Phase, parse_response, thread_cpu};

/// A server that answers nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after the window closed.
const DRAIN: Duration = Duration::from_secs(3);
/// A pause before the window opens, for the server to finish what follows its last response.
const SETTLE: Duration = Duration::from_millis(1);
/// The largest response the client accepts (hello world is a few hundred bytes).
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// How connections are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reuse {
    /// Each connection carries request after request.
    KeepAlive,
    /// Each request gets a connection of its own (and, over TLS, a full handshake).
    PerRequest,
}

/// What to send, to whom, and for how long.
#[derive(Clone, Debug)]
pub struct TlsLoadSpec {
    pub endpoint: SocketAddr,
    /// None: plain TCP.
    pub tls: Option<Arc<ClientConfig>>,
    /// The SNI name (and the certificate's name).
    pub server_name: ServerName<'static>,
    pub host: String,
    pub path: String,
    pub reuse: Reuse,
    /// Requests (or connections, one request each) in flight at once.
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The window also ends after this many responses.
    pub requests_max: u64,
}

/// The client configurations the scenario uses: `verifying` trusts only the harness's CA
/// (certificate DER) and checks everything; `load` skips the checks (module docs). Both offer
/// the same versions, suites and groups (rustls's defaults with the ring provider: TLS 1.3
/// first, X25519 first), ALPN `http/1.1`, and no resumption.
pub fn client_configs(ca_der: &[u8]) -> Result<(Arc<ClientConfig>, Arc<ClientConfig>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).context("the CA certificate")?;
    let base = || ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions();
    let mut verifying = base().context("TLS versions")?.with_root_certificates(roots).with_no_client_auth();
    let mut load = base()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipVerify { provider: provider.clone() }))
        .with_no_client_auth();
    for config in [&mut verifying, &mut load] {
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok((Arc::new(verifying), Arc::new(load)))
}

/// Accepts any certificate and handshake signature: for the load only, after `check` verified
/// the server with the real verifier.
#[derive(Debug)]
struct SkipVerify {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One GET over a fresh, fully verified TLS connection: the status, the body, and what was
/// negotiated ("TLSv1_3, TLS13_AES_256_GCM_SHA384, X25519").
pub fn check(
    endpoint: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    host: &str,
    path: &str,
) -> Result<(u16, Vec<u8>, String)> {
    let mut conn = ClientConnection::new(config, server_name).context("a TLS client")?;
    let mut socket = std::net::TcpStream::connect_timeout(&endpoint, Duration::from_secs(5))
        .with_context(|| format!("connect to {endpoint}"))?;
    socket.set_read_timeout(Some(Duration::from_secs(10))).context("SO_RCVTIMEO")?;
    let mut stream = rustls::Stream::new(&mut conn, &mut socket);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
        .context("TLS handshake and request")?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (status, body) = loop {
        if let Some(response) = parse_response(&buffer, true).map_err(|e| anyhow!("bad response: {e}"))? {
            break (response.status, response.body);
        }
        if buffer.len() > RESPONSE_BYTES_MAX {
            bail!("response larger than {RESPONSE_BYTES_MAX} bytes");
        }
        let n = stream.read(&mut chunk).context("receive over TLS")?;
        if n == 0 {
            bail!("the server closed the connection before a whole response");
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let negotiated = format!(
        "{}, {}, {}",
        conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_else(|| "?".into()),
        conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_else(|| "?".into()),
        conn.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name())).unwrap_or_else(|| "?".into()),
    );
    Ok((status, body, negotiated))
}

/// One connection of the load.
struct Conn {
    stream: TcpStream,
    tls: Option<ClientConnection>,
    /// Plaintext received and not yet parsed.
    buffer: Vec<u8>,
    /// The request in flight and when it started (per request: before the connect).
    in_flight: Option<Instant>,
}

/// Where a measurement is (load.rs's stages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Warmup,
    Settling,
    Measuring,
    Draining,
}

/// Runs one measurement on the calling thread (which the caller has pinned). `probe` is called
/// at the window's start and end.
pub fn run(spec: &TlsLoadSpec, probe: &mut dyn FnMut(Phase)) -> Result<LoadResult> {
    if spec.concurrency == 0 {
        bail!("a load needs a concurrency above zero");
    }
    let close = if spec.reuse == Reuse::PerRequest { "connection: close\r\n" } else { "" };
    let request = format!("GET {} HTTP/1.1\r\nhost: {}\r\n{close}\r\n", spec.path, spec.host).into_bytes();
    let mut poll = Poll::new().context("epoll")?;
    let mut slots: Vec<Option<Conn>> = (0..spec.concurrency).map(|_| None).collect();
    let mut idle: Vec<usize> = (0..spec.concurrency).rev().collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).context("histogram")?;
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];

    let mut in_flight: usize = 0;
    let mut stage = Stage::Warmup;
    let mut requests: u64 = 0;
    let mut failures: u64 = 0;
    let started = Instant::now();
    let mut window_start = started;
    let window_end;
    let mut client_cpu_start = Duration::ZERO;
    let client_cpu;
    let mut deadline = started + spec.warmup;
    let mut last_progress = started;

    loop {
        // Fill the pipeline up to the concurrency: a request on an idle keep-alive connection,
        // or on a new connection.
        let issuing = matches!(stage, Stage::Warmup | Stage::Measuring);
        while issuing && let Some(slot) = idle.pop() {
            let begun = Instant::now();
            let conn = match slots[slot].take() {
                Some(conn) if spec.reuse == Reuse::KeepAlive => Some(conn),
                Some(mut old) => {
                    let _ = poll.registry().deregister(&mut old.stream);
                    None
                }
                None => None,
            };
            let mut conn = match conn {
                Some(conn) => conn,
                None => {
                    let mut conn = open(spec)?;
                    poll.registry()
                        .register(&mut conn.stream, Token(slot), Interest::READABLE | Interest::WRITABLE)
                        .context("epoll_ctl")?;
                    conn
                }
            };
            in_flight += 1;
            conn.in_flight = Some(begun);
            // A write that fails shows as a closed connection on the next event (or a stall).
            let _ = send(&mut conn, &request);
            slots[slot] = Some(conn);
        }
        let now = Instant::now();
        match stage {
            Stage::Warmup if now >= deadline => {
                stage = Stage::Settling;
                deadline = now + DRAIN;
                continue;
            }
            Stage::Settling if in_flight == 0 => {
                std::thread::sleep(SETTLE);
                probe(Phase::Start);
                window_start = Instant::now();
                client_cpu_start = thread_cpu();
                deadline = window_start + spec.duration;
                stage = Stage::Measuring;
                last_progress = window_start;
                continue;
            }
            Stage::Measuring if now >= deadline || requests >= spec.requests_max => {
                stage = Stage::Draining;
                deadline = now + DRAIN;
                continue;
            }
            Stage::Draining if in_flight == 0 => {
                probe(Phase::End);
                window_end = Instant::now();
                client_cpu = thread_cpu().saturating_sub(client_cpu_start);
                break;
            }
            Stage::Settling | Stage::Draining if now >= deadline => {
                bail!("{in_flight} requests still in flight {} s after the load stopped", DRAIN.as_secs());
            }
            _ => {}
        }
        if now.duration_since(last_progress) > STALL {
            bail!("no response for {} s ({in_flight} requests in flight)", STALL.as_secs());
        }
        let timeout = deadline.saturating_duration_since(now).min(Duration::from_millis(100));
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("epoll_wait"),
        }
        for event in events.iter() {
            let slot = event.token().0;
            let Some(Some(conn)) = slots.get_mut(slot) else { continue };
            let closed = receive(conn, &mut chunk);
            let mut done = false;
            if let Some(response) = parse_response(&conn.buffer, false).map_err(|e| anyhow!("bad response: {e}"))? {
                conn.buffer.drain(..response.consumed);
                let Some(sent) = conn.in_flight.take() else {
                    bail!("a response arrived with no request in flight");
                };
                let finished = Instant::now();
                last_progress = finished;
                in_flight -= 1;
                if matches!(stage, Stage::Measuring | Stage::Draining) {
                    if response.status == 200 {
                        requests += 1;
                        histogram.saturating_record(finished.duration_since(sent).as_nanos().max(1) as u64);
                    } else {
                        failures += 1;
                    }
                }
                done = true;
                if response.close && spec.reuse == Reuse::KeepAlive {
                    // The server ended a keep-alive connection: open a new one next time.
                    let mut old = slots[slot].take();
                    if let Some(old) = &mut old {
                        let _ = poll.registry().deregister(&mut old.stream);
                    }
                }
            } else if conn.buffer.len() > RESPONSE_BYTES_MAX {
                bail!("a response larger than {RESPONSE_BYTES_MAX} bytes");
            } else if closed {
                // The connection ended without a whole response: a failure if a request was
                // on it; a new connection takes the slot (an idle slot is already free).
                if conn.in_flight.take().is_some() {
                    in_flight -= 1;
                    if matches!(stage, Stage::Measuring | Stage::Draining) {
                        failures += 1;
                    }
                    done = true;
                }
                let mut old = slots[slot].take();
                if let Some(old) = &mut old {
                    let _ = poll.registry().deregister(&mut old.stream);
                }
            }
            if done {
                idle.push(slot);
            }
        }
    }
    // Connections close with a reset as they drop (SO_LINGER 0).
    drop(slots);
    let window = window_end.duration_since(window_start);
    Ok(LoadResult { requests, failures, window, histogram, client_cpu })
}

/// A new connection (a blocking connect: on loopback it completes inside the system call), and
/// its TLS client, whose handshake starts with the first flush.
fn open(spec: &TlsLoadSpec) -> Result<Conn> {
    let stream = std::net::TcpStream::connect_timeout(&spec.endpoint, Duration::from_secs(5))
        .with_context(|| format!("connect to {}", spec.endpoint))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger).context("SO_LINGER")?;
    stream.set_nonblocking(true).context("O_NONBLOCK")?;
    let tls = match &spec.tls {
        Some(config) => Some(ClientConnection::new(config.clone(), spec.server_name.clone()).context("a TLS client")?),
        None => None,
    };
    Ok(Conn { stream: TcpStream::from_std(stream), tls, buffer: Vec::with_capacity(4096), in_flight: None })
}

/// Writes one request (over TLS: into the session, which holds it until the handshake is done,
/// then flushes what it can).
fn send(conn: &mut Conn, request: &[u8]) -> std::io::Result<()> {
    match &mut conn.tls {
        Some(tls) => {
            tls.writer().write_all(request)?;
            flush(tls, &mut conn.stream)
        }
        None => {
            // One request at a time per connection: the send buffer is empty, so a request of
            // a few dozen bytes is written whole or the connection is broken.
            let n = conn.stream.write(request)?;
            if n != request.len() {
                return Err(std::io::Error::other("a partial write of a request"));
            }
            Ok(())
        }
    }
}

fn flush(tls: &mut ClientConnection, stream: &mut TcpStream) -> std::io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Reads whatever has arrived into the connection's plaintext buffer (through TLS if it has
/// it), and flushes what TLS wants to send; true if the connection is over (end of stream, an
/// error, a TLS alert or close_notify).
fn receive(conn: &mut Conn, chunk: &mut [u8]) -> bool {
    let Some(tls) = &mut conn.tls else {
        loop {
            match conn.stream.read(chunk) {
                Ok(0) => return true,
                Ok(n) => conn.buffer.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    };
    let mut closed = false;
    loop {
        match tls.read_tls(&mut conn.stream) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {
                if tls.process_new_packets().is_err() {
                    closed = true;
                    break;
                }
                loop {
                    match tls.reader().read(chunk) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => conn.buffer.extend_from_slice(&chunk[..n]),
                        Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if closed {
                    break;
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    if flush(tls, &mut conn.stream).is_err() {
        closed = true;
    }
    closed
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::PrivateKeyDer;

    use super::*;

    /// A blocking TLS server on one thread, one connection at a time, answering `ok` to each
    /// request and closing after one that asks for it; it serves until `stop` is set.
    fn serve(listener: std::net::TcpListener, config: Arc<rustls::ServerConfig>, stop: Arc<AtomicBool>) {
        while let Ok((socket, _)) = listener.accept() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else { continue };
            let mut stream = rustls::StreamOwned::new(conn, socket);
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match stream.read(&mut chunk) {
                        Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                    continue;
                };
                let head: Vec<u8> = buffer.drain(..end + 4).collect();
                if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").is_err() {
                    break;
                }
                if head.windows(17).any(|w| w == b"connection: close") {
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                    break;
                }
            }
        }
    }

    #[test]
    fn handshakes_and_keep_alive_against_a_rustls_server() {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(params, ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        let server_config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).unwrap())
                .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = std::thread::spawn({
            let stop = stop.clone();
            move || serve(listener, Arc::new(server_config), stop)
        });

        let (verifying, load) = client_configs(ca.der()).unwrap();
        let name = ServerName::try_from("localhost".to_string()).unwrap();
        let (status, body, negotiated) = check(endpoint, verifying, name.clone(), "localhost", "/").unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
        assert!(negotiated.starts_with("TLSv1_3, "), "{negotiated}");
        for reuse in [Reuse::PerRequest, Reuse::KeepAlive] {
            let spec = TlsLoadSpec {
                endpoint,
                tls: Some(load.clone()),
                server_name: name.clone(),
                host: "localhost".into(),
                path: "/".into(),
                reuse,
                concurrency: 1,
                warmup: Duration::from_millis(50),
                duration: Duration::from_millis(200),
                requests_max: 10_000,
            };
            let mut probes = Vec::new();
            let result = run(&spec, &mut |phase| probes.push(phase)).unwrap();
            assert!(result.requests > 0 && result.failures == 0, "{reuse:?}: {result:?}");
            assert_eq!(probes, [Phase::Start, Phase::End]);
        }
        stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(endpoint);
        server.join().unwrap();
    }
}
