//! The harness's load generator: a closed loop of HTTP/1.1 keep-alive requests over plain
//! non-blocking sockets (epoll through mio), on one thread that the caller pins to the client's
//! CPU. It owns the client side of every measurement and nothing else: it does not start
//! servers and does not read /proc itself (the caller's probe does, at the window's edges).
//!
//! A measurement rotates over a list of requests (request k is `requests[k % len]`), each for
//! one of several endpoints: one endpoint with N Host names (isobar's tenants, routed by Host),
//! or N endpoints (one port per tenant, for a process or a thread per tenant). `concurrency`
//! requests are in flight at once. After a warm-up on the same connections, the probe is called
//! at the start and at the end of the measured window; only responses completed inside the
//! window count, so connection set-up and warm-up cost nothing. Every loop is bounded in time
//! and count, and a server that stops answering for `STALL` ends the measurement with an
//! error rather than hanging the run.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Where a measurement is: warming up, waiting for the warm-up's requests to finish, measuring,
/// waiting for the window's last requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Warmup,
    Settling,
    Measuring,
    Draining,
}

/// A pause before the window opens, for the server to finish what follows its last response.
const SETTLE: Duration = Duration::from_millis(1);
/// A server that answers nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after the window closed.
const DRAIN: Duration = Duration::from_secs(3);
/// The largest response the client accepts (the benchmarks' responses are a few hundred bytes).
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// One request of the rotation: which endpoint it goes to, and its bytes on the wire.
#[derive(Clone, Debug)]
pub struct Request {
    pub endpoint: usize,
    pub bytes: Vec<u8>,
}

impl Request {
    /// `GET path` with the given Host header.
    pub fn get(endpoint: usize, host: &str, path: &str) -> Request {
        Request { endpoint, bytes: format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").into_bytes() }
    }
}

/// What to send, to whom, and for how long.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub endpoints: Vec<SocketAddr>,
    /// The rotation; every `endpoint` must index `endpoints`.
    pub requests: Vec<Request>,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The window also ends after this many responses.
    pub requests_max: u64,
}

/// The edges of the measured window, for the caller's probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Start,
    End,
}

/// What the client saw inside the window.
#[derive(Debug)]
pub struct LoadResult {
    /// Responses with status 200.
    pub requests: u64,
    /// Responses with another status, and requests lost to a closed connection.
    pub failures: u64,
    pub window: Duration,
    /// Latency of the window's 200 responses, in nanoseconds, from write to complete response.
    pub histogram: Histogram<u64>,
    /// CPU time of the client's own thread in the window.
    pub client_cpu: Duration,
}

impl LoadResult {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn percentile_us(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Connections per endpoint: with one endpoint, one per request in flight; with many, enough
/// that a request rarely waits for its endpoint's connection (consecutive requests go to
/// different endpoints), and at most one per request in flight.
fn connections_per_endpoint(endpoints: usize, concurrency: usize) -> usize {
    if endpoints <= 1 { concurrency } else { (2 * concurrency).div_ceil(endpoints).clamp(1, concurrency) }
}

struct Conn {
    stream: TcpStream,
    endpoint: usize,
    buffer: Vec<u8>,
    /// The request in flight on this connection and when it was written.
    in_flight: Option<Instant>,
}

/// Runs one measurement on the calling thread (which the caller has pinned, and moved into a
/// network namespace if the servers are in one). `probe` is called at the window's start and
/// end.
pub fn run(spec: &LoadSpec, probe: &mut dyn FnMut(Phase)) -> Result<LoadResult> {
    if spec.requests.is_empty() || spec.endpoints.is_empty() || spec.concurrency == 0 {
        bail!("a load needs requests, endpoints and a concurrency above zero");
    }
    if let Some(bad) = spec.requests.iter().find(|r| r.endpoint >= spec.endpoints.len()) {
        bail!("a request names endpoint {} of {}", bad.endpoint, spec.endpoints.len());
    }
    let mut poll = Poll::new().context("epoll")?;
    let per_endpoint = connections_per_endpoint(spec.endpoints.len(), spec.concurrency);
    let mut conns: Vec<Conn> = Vec::with_capacity(per_endpoint * spec.endpoints.len());
    let mut idle: Vec<Vec<usize>> = vec![Vec::new(); spec.endpoints.len()];
    for (endpoint, addr) in spec.endpoints.iter().enumerate() {
        for _ in 0..per_endpoint {
            let index = conns.len();
            let mut stream = connect(*addr)?;
            poll.registry().register(&mut stream, Token(index), Interest::READABLE).context("epoll_ctl")?;
            conns.push(Conn { stream, endpoint, buffer: Vec::with_capacity(4096), in_flight: None });
            idle[endpoint].push(index);
        }
    }
    let mut waiting: Vec<VecDeque<usize>> = vec![VecDeque::new(); spec.endpoints.len()];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).context("histogram")?;
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];

    let mut next_request: u64 = 0;
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
        // Fill the pipeline up to the concurrency.
        while matches!(stage, Stage::Warmup | Stage::Measuring) && in_flight < spec.concurrency {
            let index = (next_request % spec.requests.len() as u64) as usize;
            next_request += 1;
            in_flight += 1;
            let endpoint = spec.requests[index].endpoint;
            match idle[endpoint].pop() {
                Some(conn) => send(&mut conns[conn], &spec.requests[index].bytes)?,
                None => waiting[endpoint].push_back(index),
            }
        }
        let now = Instant::now();
        match stage {
            Stage::Warmup if now >= deadline => {
                stage = Stage::Settling;
                deadline = now + DRAIN;
                continue;
            }
            Stage::Settling if in_flight == 0 => {
                // The server has answered everything and gone back to waiting: its CPU clocks
                // are exact now, and everything it does from here on is for the window.
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
            let index = event.token().0;
            let Some(conn) = conns.get_mut(index) else { continue };
            let mut closed = false;
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => conn.buffer.extend_from_slice(&chunk[..n]),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let mut must_reconnect = closed;
            while let Some(response) = parse_response(&conn.buffer, false).map_err(|e| anyhow!("bad response: {e}"))? {
                conn.buffer.drain(..response.consumed);
                let Some(sent) = conn.in_flight.take() else {
                    bail!("a response arrived with no request in flight");
                };
                let done = Instant::now();
                last_progress = done;
                in_flight -= 1;
                if matches!(stage, Stage::Measuring | Stage::Draining) {
                    if response.status == 200 {
                        requests += 1;
                        histogram.saturating_record(done.duration_since(sent).as_nanos().max(1) as u64);
                    } else {
                        failures += 1;
                    }
                }
                if response.close {
                    must_reconnect = true;
                    break;
                }
                let endpoint = conn.endpoint;
                match waiting[endpoint].pop_front() {
                    Some(request) => send(conn, &spec.requests[request].bytes)?,
                    None => idle[endpoint].push(index),
                }
            }
            if conn.buffer.len() > RESPONSE_BYTES_MAX {
                bail!("a response larger than {RESPONSE_BYTES_MAX} bytes");
            }
            if must_reconnect {
                // A lost request counts as a failure; the connection is replaced.
                if conn.in_flight.take().is_some() {
                    in_flight -= 1;
                    if matches!(stage, Stage::Measuring | Stage::Draining) {
                        failures += 1;
                    }
                }
                let _ = poll.registry().deregister(&mut conn.stream);
                let mut stream = connect(spec.endpoints[conn.endpoint])?;
                poll.registry().register(&mut stream, Token(index), Interest::READABLE).context("epoll_ctl")?;
                conn.stream = stream;
                conn.buffer.clear();
                let endpoint = conn.endpoint;
                match waiting[endpoint].pop_front() {
                    Some(request) => send(conn, &spec.requests[request].bytes)?,
                    None => idle[endpoint].push(index),
                }
            }
        }
    }
    let window = window_end.duration_since(window_start);
    Ok(LoadResult { requests, failures, window, histogram, client_cpu })
}

fn send(conn: &mut Conn, bytes: &[u8]) -> Result<()> {
    // One request at a time per connection: the socket's send buffer is empty, so a request of
    // a few dozen bytes is written whole or the connection is broken.
    match conn.stream.write(bytes) {
        Ok(n) if n == bytes.len() => {
            conn.in_flight = Some(Instant::now());
            Ok(())
        }
        Ok(n) => bail!("wrote {n} of {} bytes of a request", bytes.len()),
        Err(error) => Err(error).context("write a request"),
    }
}

/// A connected, non-blocking, no-delay socket that resets (rather than lingering in
/// TIME_WAIT) when closed, so thousands of connections per run do not exhaust ports.
fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    reset_on_close(&stream)?;
    stream.set_nonblocking(true).context("O_NONBLOCK")?;
    Ok(TcpStream::from_std(stream))
}

fn reset_on_close(stream: &impl AsFd) -> Result<()> {
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &linger).context("SO_LINGER")
}

/// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID: exact, unlike the running thread's
/// own schedstat, which lags by up to a scheduler tick).
pub fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map(Duration::from).unwrap_or_default()
}

/// A complete response at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Bytes of the buffer it took.
    pub consumed: usize,
    pub status: u16,
    /// The server said `connection: close`.
    pub close: bool,
    /// The body, decoded, when asked for.
    pub body: Vec<u8>,
}

/// Parses one response from the start of `buffer`: `Ok(None)` while it is incomplete. Bodies
/// are framed by content-length or chunked encoding (no trailers); a response with neither has
/// an empty body (the benchmark servers always frame theirs).
pub fn parse_response(buffer: &[u8], want_body: bool) -> Result<Option<Response>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buffer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let status = response.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).map_err(|_| "content-length is not text")?;
            length = Some(text.trim().parse::<usize>().map_err(|_| format!("content-length {text:?}"))?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header.value.eq_ignore_ascii_case(b"chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let rest = &buffer[head..];
    if chunked {
        let mut at = 0;
        let mut body = Vec::new();
        loop {
            let (size_len, size) = match httparse::parse_chunk_size(&rest[at..]) {
                Ok(httparse::Status::Complete(parsed)) => parsed,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err("bad chunk size".into()),
            };
            at += size_len;
            let size = usize::try_from(size).map_err(|_| "chunk too large")?;
            if size > RESPONSE_BYTES_MAX {
                return Err("chunk too large".into());
            }
            if size == 0 {
                if rest.len() < at + 2 {
                    return Ok(None);
                }
                return Ok(Some(Response { consumed: head + at + 2, status, close, body }));
            }
            if rest.len() < at + size + 2 {
                return Ok(None);
            }
            if want_body {
                body.extend_from_slice(&rest[at..at + size]);
            }
            at += size + 2;
        }
    }
    let length = length.unwrap_or(0);
    if length > RESPONSE_BYTES_MAX {
        return Err(format!("content-length {length} is too large"));
    }
    if rest.len() < length {
        return Ok(None);
    }
    let body = if want_body { rest[..length].to_vec() } else { Vec::new() };
    Ok(Some(Response { consumed: head + length, status, close, body }))
}

/// A blocking keep-alive client for one-off requests: readiness checks, warm-up, first
/// responses of new tenants.
pub struct Client {
    stream: std::net::TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Client> {
        let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client { stream, buffer: Vec::new() })
    }

    /// One GET; its status and body.
    pub fn get(&mut self, host: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        self.request(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
    }

    /// Sends `bytes` (one whole request) and reads its response.
    pub fn request(&mut self, bytes: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.stream.write_all(bytes).context("send")?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(response) = parse_response(&self.buffer, true).map_err(|e| anyhow!("bad response: {e}"))? {
                self.buffer.drain(..response.consumed);
                return Ok((response.status, response.body));
            }
            if self.buffer.len() > RESPONSE_BYTES_MAX {
                bail!("response larger than {RESPONSE_BYTES_MAX} bytes");
            }
            let n = self.stream.read(&mut chunk).context("receive")?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked() {
        let text = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1";
        let r = parse_response(text, true).unwrap().unwrap();
        assert_eq!((r.consumed, r.status, r.body.as_slice()), (43, 200, &b"hello"[..]));
        let chunked = b"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response(chunked, true).unwrap().unwrap();
        assert_eq!((r.consumed, r.status, r.close, r.body.as_slice()), (chunked.len(), 503, true, &b"abcde"[..]));
        assert_eq!(parse_response(&chunked[..chunked.len() - 1], true), Ok(None));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhell", false), Ok(None));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false).is_err());
    }

    #[test]
    fn connections_cover_the_rotation() {
        assert_eq!(connections_per_endpoint(1, 64), 64);
        assert_eq!(connections_per_endpoint(2, 8), 8);
        assert_eq!(connections_per_endpoint(10, 8), 2);
        assert_eq!(connections_per_endpoint(1000, 8), 1);
    }
}
