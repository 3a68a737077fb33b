//! `ServerConn` driven with byte strings and explicit time.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// A request as the caller saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Seen {
    fn of(request: &Request) -> Self {
        Self {
            method: request.method().to_owned(),
            target: request.target().to_owned(),
            version: request.version(),
            headers: request.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
            body: request.body().to_vec(),
            keep_alive: request.keep_alive(),
        }
    }
}

/// Everything observable from one run.
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    requests: Vec<Seen>,
    output: Vec<u8>,
    state: ConnState,
    error: Option<RequestError>,
}

impl Transcript {
    fn output(&self) -> &str {
        std::str::from_utf8(&self.output).unwrap()
    }
}

fn echo(request: &Request) -> Response {
    let tag = format!("{} {} {}", request.method(), request.target(), request.body().len());
    Response::new(200).with_header("x-echo", tag).with_body(request.body().to_vec())
}

fn answer_all(conn: &mut ServerConn, seen: &mut Vec<Seen>) {
    while let Some(request) = conn.poll_request() {
        seen.push(Seen::of(&request));
        conn.respond(request.id(), echo(&request)).unwrap();
    }
}

/// Feeds `pieces` in order, answering each request as soon as it is complete, and offering bytes
/// refused under back-pressure again after answering.
fn drive(limits: Limits, pieces: &[&[u8]]) -> Transcript {
    let now = Instant::now();
    let mut conn = ServerConn::new(limits, now);
    let mut requests = Vec::new();
    let mut output = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        for _ in 0..=rest.len() {
            let consumed = conn.receive(rest, now);
            rest = &rest[consumed..];
            answer_all(&mut conn, &mut requests);
            conn.take_output(&mut output);
            if rest.is_empty() || consumed == 0 && !conn.wants_read() {
                break;
            }
        }
    }
    Transcript { requests, output, state: conn.state(), error: conn.error() }
}

/// Runs `input` whole, split in two at every position, and byte by byte; all must agree.
fn split_invariant(limits: Limits, input: &[u8]) -> Transcript {
    let whole = drive(limits, &[input]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(drive(limits, &[a, b]), whole, "split at {at} of {:?}", String::from_utf8_lossy(input));
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(limits, &bytes), whole, "byte by byte: {:?}", String::from_utf8_lossy(input));
    whole
}

fn small_limits() -> Limits {
    Limits {
        head_bytes_max: 256,
        headers_max: 8,
        target_bytes_max: 64,
        body_bytes_max: 64,
        pipeline_depth_max: 4,
        ..Limits::default()
    }
}

/// Responses parsed back: (status, headers, body). Bodies follow content-length or chunked;
/// `head_responses` lists the indexes of final responses to HEAD requests (no body).
type ParsedResponse = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

fn parse_responses(mut bytes: &[u8], head_responses: &[usize]) -> Vec<ParsedResponse> {
    let mut out = Vec::new();
    let mut finals = 0;
    while !bytes.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut fields);
        let httparse::Status::Complete(len) = parsed.parse(bytes).unwrap() else {
            panic!("partial response head: {:?}", String::from_utf8_lossy(bytes));
        };
        let status = parsed.code.unwrap();
        let headers: Vec<(String, Vec<u8>)> =
            parsed.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
        bytes = &bytes[len..];
        let field = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        let no_body = (100..200).contains(&status) || matches!(status, 204 | 304) || head_responses.contains(&finals);
        if !no_body {
            if field("transfer-encoding").is_some() {
                loop {
                    let httparse::Status::Complete((used, size)) = httparse::parse_chunk_size(bytes).unwrap() else {
                        panic!("partial chunk")
                    };
                    let size = size as usize;
                    body.extend_from_slice(&bytes[used..used + size]);
                    bytes = &bytes[used + size + 2..];
                    if size == 0 {
                        break;
                    }
                }
            } else if let Some(length) = field("content-length") {
                let length: usize = std::str::from_utf8(&length).unwrap().parse().unwrap();
                body = bytes[..length].to_vec();
                bytes = &bytes[length..];
            } else {
                body = bytes.to_vec();
                bytes = &[];
            }
        }
        if status >= 200 {
            finals += 1;
        }
        out.push((status, headers, body));
    }
    out
}

fn statuses(output: &[u8]) -> Vec<u16> {
    parse_responses(output, &[]).into_iter().map(|(status, _, _)| status).collect()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

// ---------------------------------------------------------------- split invariance, valid input

#[test]
fn valid_requests_are_split_invariant() {
    let cases: &[&[u8]] = &[
        GET,
        b"\r\n\r\nGET /x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
          POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n\
          HEAD /4 HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /5 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n",
        b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    ];
    for input in cases {
        let t = split_invariant(Limits::default(), input);
        assert!(t.error.is_none(), "{t:?}");
        assert!(!t.requests.is_empty());
    }
}

#[test]
fn pipelined_batch_parses_every_request_in_order() {
    let input = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
        POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\nHEAD /4 HTTP/1.1\r\nHost: a\r\n\r\n";
    let t = drive(Limits::default(), &[input]);
    let targets: Vec<_> =
        t.requests.iter().map(|r| (r.method.as_str(), r.target.as_str(), r.body.as_slice())).collect();
    assert_eq!(targets, [("GET", "/1", &b""[..]), ("POST", "/2", b"abc"), ("POST", "/3", b"xy"), ("HEAD", "/4", b"")]);
    let responses = parse_responses(&t.output, &[3]);
    let tags: Vec<_> = responses.iter().map(|(_, h, _)| h[0].1.clone()).collect();
    assert_eq!(tags, [&b"GET /1 0"[..], b"POST /2 3", b"POST /3 2", b"HEAD /4 0"]);
    assert_eq!(t.state, ConnState::Open);
}

// ---------------------------------------------------------------- keep-alive and close

#[test]
fn keep_alive_and_close_rules() {
    let t = split_invariant(Limits::default(), GET);
    assert_eq!(t.output(), "HTTP/1.1 200 OK\r\nx-echo: GET / 0\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(t.state, ConnState::Open);

    let t = drive(Limits::default(), &[b"GET / HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"]);
    assert_eq!(t.requests.len(), 1);
    assert_eq!(t.output(), "HTTP/1.1 200 OK\r\nx-echo: GET / 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    assert_eq!(t.state, ConnState::Closed);

    let t = drive(Limits::default(), &[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
    assert!(t.output().contains("\r\nconnection: keep-alive\r\n"));
    assert_eq!(t.state, ConnState::Open);

    let t = drive(Limits::default(), &[b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"]);
    assert!(t.output().ends_with("connection: close\r\n\r\n"));
    assert_eq!(t.state, ConnState::Closed);
}

#[test]
fn response_connection_close_drops_later_requests() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    let input =
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(conn.receive(input, now), input.len());
    let first = conn.poll_request().unwrap();
    let second = conn.poll_request().unwrap();
    conn.respond(first.id(), Response::new(200).with_header("Connection", "close")).unwrap();
    assert!(conn.poll_request().is_none(), "request 3 is dropped");
    assert_eq!(conn.respond(second.id(), Response::new(200)), Err(RespondError::UnknownRequest));
    assert_eq!(conn.state(), ConnState::Closing);
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    assert_eq!(conn.state(), ConnState::Closed);
    assert_eq!(conn.receive(GET, now), GET.len(), "input after close is discarded");
    assert!(conn.poll_request().is_none());
}

// ---------------------------------------------------------------- ordering and back-pressure

#[test]
fn out_of_order_responses_are_written_in_request_order() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    let input =
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    conn.receive(input, now);
    let ids: Vec<RequestId> = std::iter::from_fn(|| conn.poll_request()).map(|r| r.id()).collect();
    assert_eq!(ids.iter().map(|id| id.get()).collect::<Vec<_>>(), [0, 1, 2]);
    let mut out = Vec::new();
    conn.respond(ids[2], Response::new(203).with_body("three")).unwrap();
    conn.respond_head(ids[1], ResponseHead::new(200, None)).unwrap();
    conn.body_chunk(ids[1], b"two").unwrap();
    conn.take_output(&mut out);
    assert!(out.is_empty(), "nothing before response 1");
    assert!(conn.backlog_bytes() > 0);
    conn.respond(ids[0], Response::new(404).with_body("one")).unwrap();
    conn.take_output(&mut out);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\none\
         HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n"
    );
    out.clear();
    conn.body_chunk(ids[1], b"!").unwrap();
    conn.body_end(ids[1]).unwrap();
    conn.take_output(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1\r\n!\r\n0\r\n\r\nHTTP/1.1 203 Non-Authoritative Information\r\ncontent-length: 5\r\n\r\nthree"
    );
    assert_eq!(conn.backlog_bytes(), 0);
    assert_eq!(conn.state(), ConnState::Open);
}

#[test]
fn pipeline_depth_applies_back_pressure() {
    let now = Instant::now();
    let limits = Limits { pipeline_depth_max: 2, ..Limits::default() };
    let mut conn = ServerConn::new(limits, now);
    let input = [GET, GET, GET, GET].concat();
    let consumed = conn.receive(&input, now);
    assert_eq!(consumed, 2 * GET.len());
    assert!(!conn.wants_read());
    assert_eq!(conn.receive(&input[consumed..], now), 0);
    let first = conn.poll_request().unwrap();
    conn.respond(first.id(), Response::new(200)).unwrap();
    assert!(conn.wants_read());
    assert_eq!(conn.receive(&input[consumed..], now), GET.len());
    assert!(!conn.wants_read());
}

#[test]
fn unread_output_applies_back_pressure() {
    let now = Instant::now();
    let limits = Limits { backlog_bytes_max: 100, ..Limits::default() };
    let mut conn = ServerConn::new(limits, now);
    conn.receive(GET, now);
    let request = conn.poll_request().unwrap();
    conn.respond(request.id(), Response::new(200).with_body(vec![b'x'; 200])).unwrap();
    assert!(!conn.wants_read());
    assert_eq!(conn.receive(GET, now), 0);
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert!(conn.wants_read());
    assert_eq!(conn.receive(GET, now), GET.len());
}

// ---------------------------------------------------------------- 100-continue

#[test]
fn expect_continue_is_sent_before_the_body_in_order() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    let mut out = Vec::new();
    conn.receive(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", now);
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(conn.poll_request().is_none());
    conn.receive(b"ok", now);
    let request = conn.poll_request().unwrap();
    assert_eq!(request.body(), b"ok");

    // Behind a pending response, the 100 waits for it.
    out.clear();
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", now);
    let first = conn.poll_request().unwrap();
    conn.take_output(&mut out);
    assert!(out.is_empty());
    conn.respond(first.id(), Response::new(200)).unwrap();
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n");

    // HTTP/1.0 and body-less requests get no 100.
    let t = drive(Limits::default(), &[b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"]);
    assert_eq!(statuses(&t.output), [200]);
    let t = drive(Limits::default(), &[b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"]);
    assert_eq!(statuses(&t.output), [200]);
}

#[test]
fn expect_continue_with_too_large_length_gets_413_at_once() {
    let t = split_invariant(
        small_limits(),
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 65\r\n\r\n",
    );
    assert_eq!(statuses(&t.output), [413]);
    assert!(t.output().contains("connection: close"));
    assert_eq!(t.state, ConnState::Closed);
    assert_eq!(t.error, Some(RequestError::BodyTooLarge));
}

// ---------------------------------------------------------------- response framing

#[test]
fn head_and_bodiless_statuses() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /s HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n\
        GET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /205 HTTP/1.1\r\nHost: a\r\n\r\n",
        now,
    );
    let ids: Vec<_> = std::iter::from_fn(|| conn.poll_request()).map(|r| (r.id(), r.is_head())).collect();
    assert_eq!(ids.iter().map(|(_, head)| *head).collect::<Vec<_>>(), [true, true, false, false, false]);
    conn.respond(ids[0].0, Response::new(200).with_body("12345")).unwrap();
    conn.respond_head(ids[1].0, ResponseHead::new(200, Some(7))).unwrap();
    conn.body_chunk(ids[1].0, b"ignored").unwrap();
    conn.body_end(ids[1].0).unwrap();
    conn.respond(ids[2].0, Response::new(204).with_body("dropped")).unwrap();
    conn.respond(ids[3].0, Response::new(304).with_header("etag", "\"x\"").with_body("dropped")).unwrap();
    conn.respond(ids[4].0, Response::new(205).with_body("dropped")).unwrap();
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n\
         HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n\
         HTTP/1.1 204 No Content\r\n\r\n\
         HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n\
         HTTP/1.1 205 Reset Content\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn caller_framing_fields_are_replaced() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(GET, now);
    let request = conn.poll_request().unwrap();
    let response = Response::new(200)
        .with_header("Content-Length", "100")
        .with_header("transfer-encoding", "chunked")
        .with_header("connection", "keep-alive")
        .with_header("server", "isobar")
        .with_body("hi");
    conn.respond(request.id(), response).unwrap();
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nserver: isobar\r\ncontent-length: 2\r\n\r\nhi");
}

#[test]
fn streamed_responses() {
    let now = Instant::now();
    // Sized: overrun refused, underrun ends the response and the connection.
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(GET, now);
    let id = conn.poll_request().unwrap().id();
    assert_eq!(conn.body_chunk(id, b"x"), Err(RespondError::NotStreaming));
    conn.respond_head(id, ResponseHead::new(200, Some(4)).with_header("content-type", "text/plain")).unwrap();
    assert_eq!(conn.respond(id, Response::new(200)), Err(RespondError::AlreadyResponded));
    conn.body_chunk(id, b"abc").unwrap();
    assert_eq!(conn.body_chunk(id, b"de"), Err(RespondError::BodyOverrun));
    assert_eq!(conn.body_end(id), Err(RespondError::BodyUnderrun));
    let mut out = Vec::new();
    conn.take_output(&mut out);
    // The head went out before the underrun, so it does not say close; the close itself does.
    assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nabc");
    assert_eq!(conn.state(), ConnState::Closed);

    // Unknown length to HTTP/1.0: delimited by close.
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", now);
    let id = conn.poll_request().unwrap().id();
    conn.respond_head(id, ResponseHead::new(200, None)).unwrap();
    conn.body_chunk(id, b"stream").unwrap();
    conn.body_end(id).unwrap();
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nstream");
    assert_eq!(conn.state(), ConnState::Closed);

    // Abort mid-chunked: no last chunk, connection closes.
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(GET, now);
    let id = conn.poll_request().unwrap().id();
    conn.respond_head(id, ResponseHead::new(200, None)).unwrap();
    conn.body_chunk(id, b"part").unwrap();
    conn.body_abort(id).unwrap();
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\npart\r\n");
    assert_eq!(conn.state(), ConnState::Closed);
}

#[test]
fn respond_refusals_leave_the_request_waiting() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", now);
    let id = conn.poll_request().unwrap().id();
    let undelivered = RequestId(id.get() + 1);
    assert_eq!(conn.respond(undelivered, Response::new(200)), Err(RespondError::UnknownRequest));
    assert_eq!(conn.respond(RequestId(99), Response::new(200)), Err(RespondError::UnknownRequest));
    let injected = Response::new(200).with_header("x", "a\r\nset-cookie: evil");
    assert_eq!(conn.respond(id, injected), Err(RespondError::InvalidHeaderValue(0)));
    assert_eq!(conn.respond(id, Response::new(100)), Err(RespondError::InvalidStatus(100)));
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert!(out.is_empty());
    conn.respond(id, Response::new(500)).unwrap();
    assert_eq!(conn.respond(id, Response::new(200)), Err(RespondError::UnknownRequest));
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
}

// ---------------------------------------------------------------- errors

#[test]
fn every_error_class_gets_its_status_then_close() {
    use RequestError::*;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(70));
    let long_line = format!("GET /{}", "a".repeat(300));
    let long_head = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(300));
    let chunked_total =
        format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n30\r\n{}\r\n11\r\n", "0".repeat(0x30));
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "A: 1\r\n".repeat(8));
    let cases: Vec<(&[u8], RequestError)> = vec![
        (b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", Malformed),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", Malformed),
        (b"GET / HTTP/1.1\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", BadHost),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", BadTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferCoding),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BadTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n", BodyTooLarge),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", BodyTooLarge),
        (chunked_total.as_bytes(), BodyTooLarge),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", BadChunk),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n", BadChunk),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", ChunkSizeOverflow),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", UnsupportedExpectation),
        (b"GET / HTTP/2.0\r\n\r\n", UnsupportedVersion),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", UnsupportedVersion),
        (long_target.as_bytes(), TargetTooLong),
        (long_line.as_bytes(), TargetTooLong),
        (long_head.as_bytes(), HeadTooLarge),
        (many.as_bytes(), TooManyHeaders),
    ];
    for (input, error) in cases {
        let t = split_invariant(small_limits(), input);
        let context = String::from_utf8_lossy(input);
        assert_eq!(t.error, Some(error), "{context}");
        assert_eq!(statuses(&t.output), [error.status()], "{context}");
        assert!(t.output().contains("\r\nconnection: close\r\n"), "{context}");
        assert!(t.output().ends_with(&format!("\r\n\r\n{error}\n")), "{context}");
        assert_eq!(t.state, ConnState::Closed, "{context}");
        assert!(t.requests.is_empty(), "{context}");
    }
}

#[test]
fn error_response_waits_for_earlier_responses() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    let input = [GET, b"BAD\x01\r\n\r\n".as_slice(), GET].concat();
    assert_eq!(conn.receive(&input, now), input.len());
    let first = conn.poll_request().unwrap();
    assert!(conn.poll_request().is_none());
    assert_eq!(conn.state(), ConnState::Closing);
    assert!(!conn.wants_read());
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert!(out.is_empty());
    conn.respond(first.id(), Response::new(200)).unwrap();
    conn.take_output(&mut out);
    assert_eq!(statuses(&out), [200, 400]);
    assert_eq!(conn.state(), ConnState::Closed);

    // An error in a body sent after 100 Continue: 100, then the error.
    let t = split_invariant(
        Limits::default(),
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\nzz",
    );
    assert_eq!(statuses(&t.output), [200, 100, 400]);
}

// ---------------------------------------------------------------- timeouts

#[test]
fn idle_keep_alive_closes_quietly() {
    let t0 = Instant::now();
    let limits = Limits::default();
    let mut conn = ServerConn::new(limits, t0);
    assert_eq!(conn.poll_at(), Some(t0 + limits.idle_timeout));
    // Empty lines are not activity.
    conn.receive(b"\r\n\r\n", t0 + Duration::from_secs(20));
    assert_eq!(conn.poll_at(), Some(t0 + limits.idle_timeout));
    conn.poll(t0 + Duration::from_secs(29));
    assert_eq!(conn.state(), ConnState::Open);
    conn.poll(t0 + limits.idle_timeout);
    assert_eq!(conn.state(), ConnState::Closed);
    assert_eq!(conn.backlog_bytes(), 0);
    assert_eq!(conn.poll_at(), None);
}

#[test]
fn idle_clock_restarts_after_the_last_response() {
    let t0 = Instant::now();
    let limits = Limits::default();
    let mut conn = ServerConn::new(limits, t0);
    let t1 = t0 + Duration::from_secs(1);
    conn.receive(GET, t1);
    let request = conn.poll_request().unwrap();
    assert_eq!(conn.poll_at(), None, "no timeout while the application works");
    conn.poll(t0 + Duration::from_secs(100));
    assert_eq!(conn.state(), ConnState::Open);
    conn.respond(request.id(), Response::new(200)).unwrap();
    // Idle since an unknown instant: poll now to stamp it.
    let due = conn.poll_at().unwrap();
    assert!(due <= t0 + Duration::from_secs(100));
    let t2 = t0 + Duration::from_secs(101);
    conn.poll(t2);
    assert_eq!(conn.poll_at(), Some(t2 + limits.idle_timeout));
    conn.poll(t2 + limits.idle_timeout);
    assert_eq!(conn.state(), ConnState::Closing, "output not yet taken");
    conn.take_output(&mut Vec::new());
    assert_eq!(conn.state(), ConnState::Closed);
}

#[test]
fn slow_head_gets_408() {
    let t0 = Instant::now();
    let limits = Limits::default();
    let mut conn = ServerConn::new(limits, t0);
    let t1 = t0 + Duration::from_secs(1);
    conn.receive(b"GET / HT", t1);
    assert_eq!(conn.poll_at(), Some(t1 + limits.head_timeout));
    // Dribbling does not extend the deadline.
    for (i, byte) in b"TP/1.1\r\nHost".iter().enumerate() {
        conn.receive(std::slice::from_ref(byte), t1 + Duration::from_millis(500 * i as u64));
    }
    conn.poll(t1 + limits.head_timeout - Duration::from_millis(1));
    assert_eq!(conn.state(), ConnState::Open);
    conn.poll(t1 + limits.head_timeout);
    assert_eq!(conn.error(), Some(RequestError::HeadTimeout));
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(statuses(&out), [408]);
    assert_eq!(conn.state(), ConnState::Closed);
}

#[test]
fn stalled_body_gets_408() {
    let t0 = Instant::now();
    let limits = Limits::default();
    let mut conn = ServerConn::new(limits, t0);
    conn.receive(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcde", t0);
    assert_eq!(conn.poll_at(), Some(t0 + limits.body_timeout));
    let t1 = t0 + Duration::from_secs(20);
    conn.receive(b"f", t1);
    assert_eq!(conn.poll_at(), Some(t1 + limits.body_timeout));
    conn.poll(t1 + limits.body_timeout);
    assert_eq!(conn.error(), Some(RequestError::BodyTimeout));
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(statuses(&out), [408]);
    assert!(conn.poll_request().is_none());
}

#[test]
fn timeouts_never_overflow() {
    let t0 = Instant::now();
    let limits = Limits { idle_timeout: Duration::MAX, head_timeout: Duration::MAX, ..Limits::default() };
    let mut conn = ServerConn::new(limits, t0);
    assert_eq!(conn.poll_at(), None);
    conn.receive(b"GET", t0);
    conn.poll(t0 + Duration::from_secs(1 << 20));
    assert_eq!(conn.state(), ConnState::Open);
}

// ---------------------------------------------------------------- peer EOF

#[test]
fn peer_close_drops_partial_requests_and_answers_complete_ones() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(b"GET / HT", now);
    conn.peer_closed(now);
    assert_eq!(conn.state(), ConnState::Closed);

    let mut conn = ServerConn::new(Limits::default(), now);
    conn.receive(
        &[GET, b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\nabc"].concat(),
        now,
    );
    conn.peer_closed(now);
    assert_eq!(conn.state(), ConnState::Closing);
    let request = conn.poll_request().unwrap();
    assert!(conn.poll_request().is_none());
    conn.respond(request.id(), Response::new(200)).unwrap();
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(statuses(&out), [200]);
    assert_eq!(conn.state(), ConnState::Closed);
}

// ---------------------------------------------------------------- cost and bounds

#[test]
fn dribbled_head_is_parsed_a_logarithmic_number_of_times() {
    let now = Instant::now();
    let value = "v".repeat(4000);
    let lines: String = (0..90).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\nHost: a\r\nBig: {value}\r\n{lines}\r\n");
    let mut conn = ServerConn::new(Limits::default(), now);
    for byte in head.as_bytes() {
        assert_eq!(conn.receive(std::slice::from_ref(byte), now), 1);
    }
    assert!(conn.poll_request().is_some());
    let bound = 2 * (usize::BITS - head.len().leading_zeros()) as usize + 2;
    assert!(conn.head_parse_attempts <= bound, "{} attempts for {} bytes", conn.head_parse_attempts, head.len());
}

#[test]
fn limits_are_clamped() {
    let limits = Limits {
        head_bytes_max: 0,
        headers_max: 10_000,
        target_bytes_max: usize::MAX,
        pipeline_depth_max: 0,
        ..Limits::default()
    }
    .clamped();
    assert_eq!(
        (limits.head_bytes_max, limits.headers_max, limits.target_bytes_max, limits.pipeline_depth_max),
        (256, HEADERS_CEILING, 256, 1)
    );
    // A connection with depth 1 still serves requests one by one.
    let t = drive(limits, &[&[GET, GET, GET].concat()]);
    assert_eq!(t.requests.len(), 3);
}

// ---------------------------------------------------------------- properties

/// Pieces of HTTP and noise, so that random input reaches deep states.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"GET / HTTP/1.1\r\n".to_vec()),
        Just(b"POST /p HTTP/1.1\r\n".to_vec()),
        Just(b"HEAD / HTTP/1.0\r\n".to_vec()),
        Just(b"Host: a\r\n".to_vec()),
        Just(b"Content-Length: 5\r\n".to_vec()),
        Just(b"Content-Length: 99\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Expect: 100-continue\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"5\r\nhello\r\n".to_vec()),
        Just(b"ffffffff\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(
        fragments in prop::collection::vec(fragment(), 0..40),
        sizes in prop::collection::vec(1usize..80, 1..8),
        answer_pattern in prop::collection::vec(any::<bool>(), 1..8),
        steps_ms in prop::collection::vec(0u64..5000, 1..8),
    ) {
        let limits = small_limits();
        let input = fragments.concat();
        let t0 = Instant::now();
        let mut now = t0;
        let mut conn = ServerConn::new(limits, t0);
        let mut pending = Vec::new();
        let mut out = Vec::new();
        let mut rest = input.as_slice();
        let bound = limits.head_bytes_max + limits.pipeline_depth_max * (limits.head_bytes_max + limits.body_bytes_max);
        for step in 0..4 * input.len() + 8 {
            let size = sizes[step % sizes.len()].min(rest.len());
            let consumed = conn.receive(&rest[..size], now);
            prop_assert!(consumed <= size);
            rest = &rest[consumed..];
            prop_assert!(conn.input_bytes() <= bound, "{} > {}", conn.input_bytes(), bound);
            while let Some(request) = conn.poll_request() {
                pending.push(request.id());
            }
            if answer_pattern[step % answer_pattern.len()] && !pending.is_empty() {
                let id = pending.remove(0);
                prop_assert_eq!(conn.respond(id, Response::new(200).with_body("ok")), Ok(()));
            }
            now += Duration::from_millis(steps_ms[step % steps_ms.len()]);
            conn.poll(now);
            if step % 3 == 0 {
                conn.take_output(&mut out);
            }
            if rest.is_empty() {
                break;
            }
        }
        conn.peer_closed(now);
        while let Some(request) = conn.poll_request() {
            pending.push(request.id());
        }
        for id in pending {
            // Some may have been dropped by a close; either answer is fine, a panic is not.
            let _ = conn.respond(id, Response::new(200));
        }
        conn.take_output(&mut out);
        prop_assert_eq!(conn.state(), ConnState::Closed);
    }

    #[test]
    fn valid_requests_round_trip(
        requests in prop::collection::vec(valid_request(), 1..5),
        sizes in prop::collection::vec(1usize..200, 1..6),
    ) {
        let input: Vec<u8> = requests.iter().flat_map(|r| r.encode()).collect();
        let mut pieces = Vec::new();
        let mut rest = input.as_slice();
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            pieces.push(piece);
            rest = tail;
        }
        let t = drive(Limits::default(), &pieces);
        prop_assert_eq!(t.error, None);
        let expected: Vec<Seen> = requests.iter().map(GenRequest::expected).collect();
        prop_assert_eq!(&t.requests, &expected);
        let responses = parse_responses(&t.output, &[]);
        prop_assert_eq!(responses.len(), requests.len());
        for ((status, headers, body), request) in responses.iter().zip(&requests) {
            prop_assert_eq!(*status, 200);
            let tag = format!("{} {} {}", request.method, request.target, request.body.len());
            prop_assert_eq!(&headers[0], &("x-echo".to_owned(), tag.into_bytes()));
            prop_assert_eq!(body, &request.body);
        }
        prop_assert_eq!(t.state, ConnState::Open);
    }
}

#[derive(Debug, Clone)]
struct GenRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `None`: Content-Length framing; else chunked with these chunk sizes (cycled).
    chunks: Option<Vec<usize>>,
}

fn valid_request() -> impl Strategy<Value = GenRequest> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-CUSTOM"]),
        "/[a-zA-Z0-9._~/-]{0,24}(\\?[a-z0-9=&%]{0,16})?",
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "([!-~]([ -~]{0,20}[!-~])?)?"), 0..6),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::option::of(prop::collection::vec(1usize..64, 1..8)),
    )
        .prop_map(|(method, target, headers, body, chunks)| GenRequest {
            method: method.to_owned(),
            target,
            // An `x-` prefix keeps generated names clear of the fields that steer framing.
            headers: headers.into_iter().map(|(n, v)| (format!("x-{n}"), v)).collect(),
            body,
            chunks,
        })
}

impl GenRequest {
    fn framing_field(&self) -> (String, String) {
        match &self.chunks {
            None => ("Content-Length".to_owned(), self.body.len().to_string()),
            Some(_) => ("Transfer-Encoding".to_owned(), "chunked".to_owned()),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: example.com\r\n", self.method, self.target).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let (name, value) = self.framing_field();
        out.extend_from_slice(format!("{name}: {value}\r\n\r\n").as_bytes());
        match &self.chunks {
            None => out.extend_from_slice(&self.body),
            Some(sizes) => {
                let mut rest = self.body.as_slice();
                for (i, size) in sizes.iter().cycle().enumerate() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                    let ext = if i == 0 { ";ext=\"v\"" } else { "" };
                    out.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                    rest = tail;
                }
                out.extend_from_slice(b"0\r\nx-trailer: dropped\r\n\r\n");
            }
        }
        out
    }

    fn expected(&self) -> Seen {
        let mut headers = vec![("Host".to_owned(), b"example.com".to_vec())];
        headers.extend(self.headers.iter().map(|(n, v)| (n.clone(), v.clone().into_bytes())));
        let (name, value) = self.framing_field();
        headers.push((name, value.into_bytes()));
        Seen {
            method: self.method.clone(),
            target: self.target.clone(),
            version: Version::Http11,
            headers,
            body: self.body.clone(),
            keep_alive: true,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Switching protocols (RFC 9110 §7.8): what follows an upgrade request waits for its answer.

const UPGRADE: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";

#[test]
fn an_accepted_upgrade_hands_the_connection_over() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    let mut input = UPGRADE.to_vec();
    input.extend_from_slice(b"\x81\x85frame bytes");
    let taken = conn.receive(&input, now);
    assert_eq!(taken, UPGRADE.len(), "the bytes after the upgrade request are not the codec's");
    assert!(!conn.wants_read());
    assert_eq!(conn.poll_at(), None, "the application's limits hold while it decides");
    let request = conn.poll_request().unwrap();
    let headers = vec![("upgrade".to_string(), b"websocket".to_vec())];
    conn.upgrade(request.id(), &headers).unwrap();
    assert_eq!(conn.state(), ConnState::Closing, "the head is not taken yet");
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(out, b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n");
    assert_eq!(conn.state(), ConnState::Upgraded);
    assert_eq!(conn.receive(b"more", now), 0, "an upgraded codec reads nothing");
    assert_eq!(conn.upgrade(request.id(), &headers), Err(RespondError::UnknownRequest));
}

#[test]
fn a_declined_upgrade_goes_on_as_http() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    let mut input = UPGRADE.to_vec();
    input.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    let taken = conn.receive(&input, now);
    assert_eq!(taken, UPGRADE.len());
    let request = conn.poll_request().unwrap();
    conn.respond(request.id(), Response::new(426)).unwrap();
    assert!(conn.wants_read(), "reading goes on after an ordinary answer");
    assert_eq!(conn.receive(&input[taken..], now), input.len() - taken);
    let next = conn.poll_request().unwrap();
    assert_eq!(next.target(), "/next");
    assert_eq!(conn.state(), ConnState::Open);
}

#[test]
fn only_an_upgrade_request_can_switch() {
    let now = Instant::now();
    let mut conn = ServerConn::new(Limits::default(), now);
    // `Upgrade` without the `connection: upgrade` option is not a request to switch.
    let plain = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(conn.receive(plain, now), plain.len());
    let first = conn.poll_request().unwrap();
    assert_eq!(conn.upgrade(first.id(), &[]), Err(RespondError::NotUpgradable));
    // An HTTP/1.0 request cannot switch either.
    let mut old = ServerConn::new(Limits::default(), now);
    let head = b"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    old.receive(head, now);
    let request = old.poll_request().unwrap();
    assert_eq!(old.upgrade(request.id(), &[]), Err(RespondError::NotUpgradable));
}

proptest! {
    /// However the upgrade request and what follows are split, the codec takes exactly the
    /// request, and the rest waits for the caller.
    #[test]
    fn upgrade_requests_split_anywhere(split in 0..UPGRADE.len() + 8) {
        let now = Instant::now();
        let mut conn = ServerConn::new(Limits::default(), now);
        let mut input = UPGRADE.to_vec();
        input.extend_from_slice(b"\x81\x02hi");
        let (a, b) = input.split_at(split.min(input.len()));
        let mut taken = conn.receive(a, now);
        if taken == a.len() {
            taken += conn.receive(b, now);
        }
        prop_assert_eq!(taken, UPGRADE.len());
        prop_assert!(conn.poll_request().is_some());
    }
}
