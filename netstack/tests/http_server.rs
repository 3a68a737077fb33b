//! HttpServer (codec + KernelNet) over real io_uring and loopback sockets, with std clients on
//! their own threads and the server driven on the test thread. Every loop is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kernel_shim::net::{local_addr, reuseport_listener};
use kernel_shim::ring::{Ring, RingConfig, key_tag};
use netstack::http1::{Limits, Response};
use netstack::{HttpServer, IncomingRequest, KernelNet, NetLimits, TAG_NET};

struct Server {
    ring: Ring,
    http: HttpServer<KernelNet>,
    addr: SocketAddr,
    requests: Vec<IncomingRequest>,
}

impl Server {
    fn new(limits: Limits) -> Server {
        let mut ring = Ring::new(RingConfig { entries: 256, recv_buffers: 64, recv_buffer_bytes: 4096 }).unwrap();
        let listener = reuseport_listener("127.0.0.1:0".parse().unwrap(), 128).unwrap();
        let addr = local_addr(listener.as_fd()).unwrap();
        let mut net = KernelNet::new(NetLimits { close_timeout_ms: 1000, ..NetLimits::default() });
        net.listen(&mut ring, listener);
        Server { ring, http: HttpServer::new(net, limits), addr, requests: Vec::new() }
    }

    /// One loop turn: wait up to 10 ms, route completions, apply deadlines.
    fn turn(&mut self) {
        let mut completions = Vec::new();
        self.ring.wait(Some(Duration::from_millis(10)), &mut completions).unwrap();
        let now = Instant::now();
        for completion in completions {
            assert_eq!(key_tag(completion.key), TAG_NET);
            self.http.on_completion(&mut self.ring, completion, now, &mut self.requests);
        }
        self.http.poll(&mut self.ring, now, &mut self.requests);
    }

    fn respond(&mut self, request: &IncomingRequest, body: &str) {
        let response = Response::new(200).with_body(body.as_bytes().to_vec());
        self.http.respond(
            &mut self.ring,
            request.conn,
            request.request.id(),
            response,
            Instant::now(),
            &mut self.requests,
        );
    }

    /// Turns until `done` returns true; fails after 10 s.
    fn run_until(&mut self, mut done: impl FnMut(&mut Server) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(Instant::now() < deadline, "the server did not reach the expected state within 10 s");
            self.turn();
        }
    }

    /// Serves every request with its own target as the body until the client thread ends.
    fn echo_until_finished<T>(&mut self, client: JoinHandle<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !client.is_finished() {
            assert!(Instant::now() < deadline, "client did not finish within 20 s");
            self.turn();
            for request in std::mem::take(&mut self.requests) {
                let target = request.request.target().to_string();
                self.respond(&request, &target);
            }
        }
        client.join().unwrap()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads one `content-length` response and returns its body.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).to_string();
                buffer.drain(..end + 4 + length);
                return body;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed while a response was expected");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn keep_alive_serves_many_requests_and_deadlines_stay_bounded() {
    let mut server = Server::new(Limits::default());
    let addr = server.addr;
    let client = std::thread::spawn(move || {
        let mut stream = connect(addr);
        let mut buffer = Vec::new();
        for i in 0..500 {
            stream.write_all(format!("GET /{i} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).unwrap();
            assert_eq!(read_response(&mut stream, &mut buffer), format!("/{i}"));
        }
    });
    server.echo_until_finished(client);
    // One deadline per open connection, however many requests went by.
    assert!(
        server.http.scheduled_deadlines() <= server.http.open_conns().max(1),
        "{}",
        server.http.scheduled_deadlines()
    );
    assert_eq!(server.http.stats().requests, 500);
}

#[test]
fn answers_given_out_of_order_are_written_in_order() {
    let mut server = Server::new(Limits::default());
    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\nGET /c HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .unwrap();
    server.run_until(|s| s.requests.len() == 3);
    let requests = std::mem::take(&mut server.requests);
    for request in requests.iter().rev() {
        let target = request.request.target().to_string();
        server.respond(request, &target);
    }
    let client = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        (0..3).map(|_| read_response(&mut stream, &mut buffer)).collect::<Vec<_>>()
    });
    assert_eq!(server.echo_until_finished(client), ["/a", "/b", "/c"]);
}

#[test]
fn unanswered_pipelines_stop_being_read_until_answered() {
    let limits = Limits { pipeline_depth_max: 4, ..Limits::default() };
    let mut server = Server::new(limits);
    let mut stream = connect(server.addr);
    let mut batch = Vec::new();
    for i in 0..40 {
        batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
    }
    stream.write_all(&batch).unwrap();
    server.run_until(|s| s.requests.len() >= 4);
    for _ in 0..20 {
        server.turn();
    }
    assert_eq!(server.requests.len(), 4, "no more than the pipeline depth is handed out");
    let client = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        (0..40).map(|_| read_response(&mut stream, &mut buffer)).collect::<Vec<_>>()
    });
    let bodies = server.echo_until_finished(client);
    assert_eq!(bodies, (0..40).map(|i| format!("/{i}")).collect::<Vec<_>>());
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let limits = Limits { idle_timeout: Duration::from_millis(200), ..Limits::default() };
    let mut server = Server::new(limits);
    let addr = server.addr;
    let client = std::thread::spawn(move || {
        let mut stream = connect(addr);
        let mut buffer = Vec::new();
        stream.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut stream, &mut buffer), "/x");
        let started = Instant::now();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        (started.elapsed(), rest)
    });
    let (waited, rest) = server.echo_until_finished(client);
    assert!(rest.is_empty(), "no bytes after the response");
    assert!(waited >= Duration::from_millis(150), "closed too early: {waited:?}");
    server.run_until(|s| s.http.open_conns() == 0);
    assert_eq!(server.http.scheduled_deadlines(), 0, "a closed connection leaves no deadline behind");
}

#[test]
fn drain_finishes_in_flight_requests_and_refuses_new_connections() {
    let mut server = Server::new(Limits::default());
    let mut busy = connect(server.addr);
    let mut idle = connect(server.addr);
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    server.run_until(|s| s.requests.len() == 1 && s.http.open_conns() == 2);
    let now = Instant::now();
    let mut more = Vec::new();
    server.http.drain(&mut server.ring, now, &mut more);
    assert!(more.is_empty());
    // The idle connection is closed at once; the busy one waits for its answer.
    server.run_until(|s| s.http.open_conns() == 1);
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // The listener is gone: a new connection is refused (or reset once accepted by nobody).
    server.run_until(|s| !s.http.transport().is_listening());
    let refused = TcpStream::connect(server.addr).map(|mut s| {
        let mut byte = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        matches!(s.read(&mut byte), Ok(0) | Err(_))
    });
    assert!(refused.unwrap_or(true), "a connection after drain was served");
    let request = server.requests.pop().unwrap();
    server.respond(&request, "done");
    let client = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let body = read_response(&mut busy, &mut buffer);
        let head = String::from_utf8_lossy(&buffer).to_string();
        (body, head)
    });
    let (body, _) = server.echo_until_finished(client);
    assert_eq!(body, "done");
    server.run_until(|s| s.http.is_drained());
}

/// Streams a 4 MiB chunked body to a client that reads slowly: the server never holds more than
/// about `STREAM_ROOM_BYTES` of it, asks for more with `Writable`, and the client gets every byte.
#[test]
fn a_streamed_response_follows_the_client_and_arrives_whole() {
    use netstack::http1::ResponseHead;
    use netstack::{STREAM_ROOM_BYTES, StreamEvent};
    let mut server = Server::new(Limits::default());
    let addr = server.addr;
    const TOTAL: usize = 4 << 20;
    let client = std::thread::spawn(move || {
        let mut stream = connect(addr);
        stream.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut received = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..n]);
            if received.ends_with(b"0\r\n\r\n") {
                break;
            }
            // A slow reader: the server must wait for it, not buffer the whole body.
            std::thread::sleep(Duration::from_micros(200));
        }
        received
    });
    server.run_until(|s| !s.requests.is_empty());
    let request = server.requests.remove(0);
    let (conn, id) = (request.conn, request.request.id());
    let head = ResponseHead::new(200, None).with_header("content-type", "application/octet-stream");
    assert!(server.http.respond_head(&mut server.ring, conn, id, head, Instant::now(), &mut server.requests));
    let piece = vec![b'x'; 8192];
    let mut sent = 0;
    let mut writable_events = 0;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent < TOTAL {
        assert!(Instant::now() < deadline, "the stream did not finish in 20 s");
        let room = server.http.stream_room(conn);
        if room == 0 {
            server.turn();
            server.http.take_stream_events(&mut events);
            writable_events += events.drain(..).filter(|e| matches!(e, StreamEvent::Writable { .. })).count();
            continue;
        }
        let n = room.min(piece.len()).min(TOTAL - sent);
        assert!(server.http.respond_chunk(
            &mut server.ring,
            conn,
            id,
            &piece[..n],
            Instant::now(),
            &mut server.requests
        ));
        sent += n;
        // What the server holds for this response stays near the room it gives.
        assert!(room <= STREAM_ROOM_BYTES);
    }
    server.http.respond_end(&mut server.ring, conn, id, true, Instant::now(), &mut server.requests);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "client did not finish");
        server.turn();
    }
    let received = client.join().unwrap();
    let body_start = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&received[..body_start]).to_string();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    // Decode the chunked body and count the payload.
    let mut rest = &received[body_start..];
    let mut payload = 0;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        assert!(rest[..size].iter().all(|b| *b == b'x'));
        payload += size;
        rest = &rest[size + 2..];
    }
    assert_eq!(payload, TOTAL);
    assert!(writable_events > 0, "the slow client made the server wait for room at least once");
}

/// A client that goes away in the middle of a streamed response is reported as `Gone`.
#[test]
fn a_client_leaving_mid_stream_is_reported_gone() {
    use netstack::StreamEvent;
    use netstack::http1::ResponseHead;
    let mut server = Server::new(Limits::default());
    let addr = server.addr;
    let client = std::thread::spawn(move || {
        let mut stream = connect(addr);
        stream.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut chunk = [0u8; 1024];
        let _ = stream.read(&mut chunk).unwrap();
        // Leaves with the body unfinished.
    });
    server.run_until(|s| !s.requests.is_empty());
    let request = server.requests.remove(0);
    let (conn, id) = (request.conn, request.request.id());
    assert!(server.http.respond_head(
        &mut server.ring,
        conn,
        id,
        ResponseHead::new(200, None),
        Instant::now(),
        &mut server.requests
    ));
    assert!(server.http.respond_chunk(&mut server.ring, conn, id, b"first", Instant::now(), &mut server.requests));
    let mut events = Vec::new();
    server.run_until(|s| {
        s.http.take_stream_events(&mut events);
        events.contains(&StreamEvent::Gone { conn, request: id })
    });
    client.join().unwrap();
    // Nothing more can be written to it.
    assert!(!server.http.respond_chunk(&mut server.ring, conn, id, b"late", Instant::now(), &mut server.requests));
}
