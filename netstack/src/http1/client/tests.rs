//! `ClientConn` driven with byte strings and explicit time, and against netstack's own server
//! codec both ways.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::http1::Version;
use crate::http1::{ConnState, Limits, Response, ResponseHead, ServerConn};

/// A response head as the caller saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenHead {
    status: u16,
    reason: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    body_length: Option<u64>,
}

impl SeenHead {
    fn of(response: &IncomingResponse) -> Self {
        Self {
            status: response.status(),
            reason: response.reason().to_owned(),
            version: response.version(),
            headers: response.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
            body_length: response.body_length(),
        }
    }
}

/// Everything observable from one exchange. Body pieces are joined: how the body was cut
/// depends on how the input was, and is not part of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transcript {
    heads: Vec<SeenHead>,
    body: Vec<u8>,
    /// `End`, `Upgraded` or `Failed`, in order.
    ends: Vec<ClientEvent>,
    /// Input not consumed (after a 101).
    rest: Vec<u8>,
    state: ClientState,
    error: Option<ResponseError>,
}

impl Transcript {
    fn status(&self) -> Option<u16> {
        self.heads.first().map(|h| h.status)
    }
}

fn collect(conn: &mut ClientConn, t: &mut Transcript) {
    while let Some(event) = conn.poll_event() {
        match event {
            ClientEvent::Head(head) => t.heads.push(SeenHead::of(&head)),
            ClientEvent::Body(piece) => {
                assert!(!piece.is_empty(), "empty body event");
                t.body.extend_from_slice(&piece);
            }
            other => t.ends.push(other),
        }
    }
}

/// Sends `request` (with `body` for a sized or chunked one), then feeds `pieces` in order,
/// taking events after each and offering bytes refused under back-pressure again; then the
/// origin's EOF if `eof`.
fn drive_with(limits: ClientLimits, request: &OutgoingRequest, pieces: &[&[u8]], eof: bool) -> Transcript {
    let now = Instant::now();
    let mut conn = ClientConn::new(limits, now);
    conn.send_request(request, now).unwrap();
    if request.body != BodyFraming::None {
        let body = [b'q'; 10];
        let mut offered = &body[..];
        if let BodyFraming::Length(n) = request.body {
            offered = &body[..n as usize];
        }
        let taken = conn.write_body(offered, now).unwrap();
        assert_eq!(taken, offered.len());
        if request.body == BodyFraming::Chunked {
            conn.finish_body(now).unwrap();
        }
    }
    let mut t = Transcript {
        heads: Vec::new(),
        body: Vec::new(),
        ends: Vec::new(),
        rest: Vec::new(),
        state: ClientState::Busy,
        error: None,
    };
    for piece in pieces {
        let mut rest = *piece;
        for _ in 0..=rest.len() {
            let consumed = conn.receive(rest, now);
            rest = &rest[consumed..];
            collect(&mut conn, &mut t);
            if rest.is_empty() || consumed == 0 && !conn.wants_read() {
                break;
            }
        }
        t.rest.extend_from_slice(rest);
    }
    if eof {
        conn.peer_closed(now);
        collect(&mut conn, &mut t);
    }
    t.state = conn.state();
    t.error = conn.error();
    assert!(t.ends.len() <= 1, "more than one ending: {:?}", t.ends);
    t
}

fn get() -> OutgoingRequest {
    OutgoingRequest::new("GET", "/", "example.com")
}

fn drive(request: &OutgoingRequest, pieces: &[&[u8]], eof: bool) -> Transcript {
    drive_with(ClientLimits::default(), request, pieces, eof)
}

/// Runs `input` whole, split in two at every position, and byte by byte; all must agree.
fn split_invariant_with(limits: ClientLimits, request: &OutgoingRequest, input: &[u8], eof: bool) -> Transcript {
    let whole = drive_with(limits, request, &[input], eof);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(
            drive_with(limits, request, &[a, b], eof),
            whole,
            "split at {at} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive_with(limits, request, &bytes, eof), whole, "byte by byte: {:?}", String::from_utf8_lossy(input));
    whole
}

fn split_invariant(request: &OutgoingRequest, input: &[u8], eof: bool) -> Transcript {
    split_invariant_with(ClientLimits::default(), request, input, eof)
}

fn small_limits() -> ClientLimits {
    ClientLimits {
        head_bytes_max: 256,
        headers_max: 8,
        interim_responses_max: 2,
        chunk_line_bytes_max: 32,
        trailer_bytes_max: 32,
        body_buffer_bytes_max: 1024,
        request_head_bytes_max: 256,
        send_buffer_bytes_max: 1024,
        ..ClientLimits::default()
    }
}

const END_REUSABLE: ClientEvent = ClientEvent::End { reusable: true };
const END_CLOSE: ClientEvent = ClientEvent::End { reusable: false };

// ---------------------------------------------------------------- request encoding

fn encoded(request: &OutgoingRequest) -> String {
    let now = Instant::now();
    let mut conn = ClientConn::new(ClientLimits::default(), now);
    conn.send_request(request, now).unwrap();
    let mut out = Vec::new();
    conn.take_output(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn request_heads_and_framing() {
    assert_eq!(encoded(&get()), "GET / HTTP/1.1\r\nhost: example.com\r\n\r\n");
    let request = OutgoingRequest::new("HEAD", "/a?b=c", "h:8080")
        .with_header("Accept", "*/*")
        .with_header("Host", "evil")
        .with_header("content-length", "5")
        .with_header("Transfer-Encoding", "chunked");
    assert_eq!(encoded(&request), "HEAD /a?b=c HTTP/1.1\r\nhost: h:8080\r\nAccept: */*\r\n\r\n");
    assert_eq!(
        encoded(&OutgoingRequest::new("POST", "/", "h")),
        "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(encoded(&OutgoingRequest::new("DELETE", "/", "h")), "DELETE / HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(
        encoded(&OutgoingRequest::new("PUT", "/", "h").with_body(BodyFraming::Length(12))),
        "PUT / HTTP/1.1\r\nhost: h\r\ncontent-length: 12\r\n\r\n"
    );
    assert_eq!(
        encoded(&OutgoingRequest::new("POST", "/", "h").with_body(BodyFraming::Chunked)),
        "POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        encoded(&OutgoingRequest::new("OPTIONS", "*", "[::1]:1")),
        "OPTIONS * HTTP/1.1\r\nhost: [::1]:1\r\n\r\n"
    );
}

#[test]
fn request_refusals_write_nothing() {
    use EncodeError::*;
    let now = Instant::now();
    let cases: Vec<(OutgoingRequest, EncodeError)> = vec![
        (OutgoingRequest::new("G ET", "/", "h"), InvalidMethod),
        (OutgoingRequest::new("", "/", "h"), InvalidMethod),
        (OutgoingRequest::new("CONNECT", "/", "h"), UnsupportedMethod),
        (OutgoingRequest::new("GET", "", "h"), InvalidTarget),
        (OutgoingRequest::new("GET", "a", "h"), InvalidTarget),
        (OutgoingRequest::new("GET", "http://h/", "h"), InvalidTarget),
        (OutgoingRequest::new("GET", "/ HTTP/1.1\r\nX: y", "h"), InvalidTarget),
        (OutgoingRequest::new("GET", "/a#frag", "h"), InvalidTarget),
        (OutgoingRequest::new("GET", "/\u{e9}", "h"), InvalidTarget),
        (OutgoingRequest::new("GET", "*", "h"), InvalidTarget),
        (OutgoingRequest::new("GET", "/", ""), InvalidHost),
        (OutgoingRequest::new("GET", "/", "h\r\nx: y"), InvalidHost),
        (OutgoingRequest::new("GET", "/", "a b"), InvalidHost),
        (get().with_header("ok", "1").with_header("x y", "1"), InvalidHeaderName(1)),
        (get().with_header("", "1"), InvalidHeaderName(0)),
        (get().with_header("x", "a\r\nset-cookie: y"), InvalidHeaderValue(0)),
        (get().with_header("x", b"a\0".to_vec()), InvalidHeaderValue(0)),
        (get().with_header("x", "y".repeat(70 * 1024)), HeadTooLarge),
    ];
    for (request, expected) in cases {
        let mut conn = ClientConn::new(ClientLimits::default(), now);
        assert_eq!(conn.send_request(&request, now), Err(expected), "{request:?}");
        assert_eq!(conn.output_bytes(), 0);
        assert_eq!(conn.state(), ClientState::Idle);
    }
    let mut conn = ClientConn::new(ClientLimits::default(), now);
    conn.send_request(&get(), now).unwrap();
    assert_eq!(conn.send_request(&get(), now), Err(Busy));
    assert_eq!(conn.write_body(b"x", now), Err(NoBodyInProgress));
    assert_eq!(conn.finish_body(now), Err(NoBodyInProgress));
}

#[test]
fn sized_body_overrun_underrun_and_back_pressure() {
    let now = Instant::now();
    let limits = ClientLimits { send_buffer_bytes_max: 1024, ..ClientLimits::default() };
    let mut conn = ClientConn::new(limits, now);
    conn.send_request(&OutgoingRequest::new("PUT", "/", "h").with_body(BodyFraming::Length(3000)), now).unwrap();
    let head_len = conn.output_bytes();
    assert_eq!(conn.write_body(&[1; 3001], now), Err(EncodeError::BodyOverrun));
    assert_eq!(conn.output_bytes(), head_len, "nothing of an overrun is taken");
    let body = vec![7u8; 3000];
    let mut sent = 0;
    let mut wire = Vec::new();
    for _ in 0..10 {
        let taken = conn.write_body(&body[sent..], now).unwrap();
        assert!(conn.output_bytes() <= 1024);
        sent += taken;
        if taken == 0 {
            let mut out = Vec::new();
            conn.take_output(&mut out);
            wire.extend_from_slice(&out);
        }
        if sent == body.len() {
            break;
        }
    }
    assert_eq!(sent, 3000);
    assert!(conn.request_complete());
    assert_eq!(conn.write_body(b"x", now), Err(EncodeError::NoBodyInProgress));
    conn.take_output(&mut wire);
    assert_eq!(wire.len(), head_len + 3000);

    // Short of the length: an underrun, and the connection is single-use.
    let mut conn = ClientConn::new(limits, now);
    conn.send_request(&OutgoingRequest::new("PUT", "/", "h").with_body(BodyFraming::Length(5)), now).unwrap();
    assert_eq!(conn.write_body(b"abc", now), Ok(3));
    assert_eq!(conn.finish_body(now), Err(EncodeError::BodyUnderrun));
    assert!(!conn.request_complete());
    conn.receive(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", now);
    assert_eq!(conn.poll_event().map(|e| matches!(e, ClientEvent::Head(_))), Some(true));
    assert_eq!(conn.poll_event(), Some(END_CLOSE));
    assert_eq!(conn.state(), ClientState::Closed);
}

#[test]
fn chunked_body_pieces_fit_the_send_buffer() {
    let now = Instant::now();
    let limits = ClientLimits { send_buffer_bytes_max: 1024, ..ClientLimits::default() };
    let mut conn = ClientConn::new(limits, now);
    conn.send_request(&OutgoingRequest::new("POST", "/up", "h").with_body(BodyFraming::Chunked), now).unwrap();
    let mut wire = Vec::new();
    conn.take_output(&mut wire);
    let body: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let mut sent = 0;
    for _ in 0..100 {
        if sent == body.len() {
            break;
        }
        let taken = conn.write_body(&body[sent..], now).unwrap();
        assert!(conn.output_bytes() <= 1024, "{}", conn.output_bytes());
        sent += taken;
        conn.take_output(&mut wire);
    }
    assert_eq!(sent, body.len());
    assert_eq!(conn.write_body(b"", now), Ok(0), "an empty piece writes nothing (it would end the body)");
    conn.finish_body(now).unwrap();
    conn.take_output(&mut wire);
    // The server codec reads back exactly the body.
    let mut server = ServerConn::new(Limits { body_bytes_max: 1 << 20, ..Limits::default() }, now);
    assert_eq!(server.receive(&wire, now), wire.len());
    let request = server.poll_request().unwrap();
    assert_eq!(request.body(), &body[..]);
    assert_eq!(request.target(), "/up");
}

// ---------------------------------------------------------------- valid responses

#[test]
fn valid_responses_are_split_invariant() {
    /// Input, EOF after it, status, body, ending.
    type Case = (&'static [u8], bool, Option<u16>, &'static [u8], ClientEvent);
    let cases: &[Case] = &[
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, Some(200), b"hello", END_REUSABLE),
        (b"\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\nhi", false, Some(200), b"hi", END_REUSABLE),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\"\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
            false,
            Some(200),
            b"hello world",
            END_REUSABLE,
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
            false,
            Some(201),
            b"x",
            END_REUSABLE,
        ),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", false, Some(204), b"", END_REUSABLE),
        (b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false, Some(304), b"", END_REUSABLE),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false, Some(200), b"ok", END_CLOSE),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true, Some(200), b"until the end", END_CLOSE),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, Some(200), b"ok", END_CLOSE),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            false,
            Some(200),
            b"ok",
            END_REUSABLE,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, Some(200), b"", END_REUSABLE),
    ];
    for (input, eof, status, body, end) in cases {
        let t = split_invariant(&get(), input, *eof);
        let context = String::from_utf8_lossy(input);
        assert_eq!(t.status(), *status, "{context}");
        assert_eq!(t.heads.len(), 1, "{context}");
        assert_eq!(&t.body, body, "{context}");
        assert_eq!(t.ends, std::slice::from_ref(end), "{context}");
        assert_eq!(t.error, None, "{context}");
        let expected_state = if *end == END_REUSABLE { ClientState::Idle } else { ClientState::Closed };
        assert_eq!(t.state, expected_state, "{context}");
    }
}

#[test]
fn head_request_response_has_no_body() {
    let head = OutgoingRequest::new("HEAD", "/", "h");
    let t = split_invariant(&head, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", false);
    assert_eq!((t.status(), t.body.as_slice(), t.ends.as_slice()), (Some(200), &b""[..], &[END_REUSABLE][..]));
    assert_eq!(t.heads[0].body_length, Some(0));
    // The same head to GET waits for the body.
    let t = drive(&get(), &[b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"], false);
    assert!(t.ends.is_empty());
    assert_eq!(t.heads[0].body_length, Some(1234));
}

#[test]
fn response_fields_are_kept_in_order() {
    let t = split_invariant(
        &get(),
        b"HTTP/1.1 404 Not Here\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 1\r\n\r\n!",
        false,
    );
    let head = &t.heads[0];
    assert_eq!((head.status, head.reason.as_str(), head.version), (404, "Not Here", Version::Http11));
    let names: Vec<_> = head.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Content-Type", "Set-Cookie", "set-cookie", "Content-Length"]);
}

#[test]
fn upgrade_hands_the_rest_back() {
    let ws = get().with_header("Connection", "Upgrade").with_header("Upgrade", "websocket");
    let input = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi";
    let t = split_invariant(&ws, input, false);
    assert_eq!(t.status(), Some(101));
    assert_eq!(t.ends, [ClientEvent::Upgraded]);
    assert_eq!(t.rest, b"\x81\x02hi");
    assert_eq!(t.state, ClientState::Upgraded);
    // A 101 nobody asked for is an error.
    let t = split_invariant(&get(), input, false);
    assert_eq!(t.ends, [ClientEvent::Failed(ResponseError::UnexpectedUpgrade)]);
    assert!(t.heads.is_empty());
    assert_eq!(t.state, ClientState::Closed);
}

#[test]
fn connection_is_reused_for_the_next_exchange() {
    let now = Instant::now();
    let mut conn = ClientConn::new(ClientLimits::default(), now);
    for i in 0..3 {
        conn.send_request(&OutgoingRequest::new("GET", format!("/{i}"), "h"), now).unwrap();
        let mut out = Vec::new();
        conn.take_output(&mut out);
        assert_eq!(out, format!("GET /{i} HTTP/1.1\r\nhost: h\r\n\r\n").as_bytes());
        let response = format!("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{i}");
        assert_eq!(conn.receive(response.as_bytes(), now), response.len());
        assert!(matches!(conn.poll_event(), Some(ClientEvent::Head(_))));
        assert_eq!(conn.poll_event(), Some(ClientEvent::Body(i.to_string().into_bytes())));
        assert_eq!(conn.state(), ClientState::Busy, "busy until End is polled");
        assert_eq!(conn.poll_event(), Some(END_REUSABLE));
        assert_eq!(conn.poll_event(), None);
        assert_eq!(conn.state(), ClientState::Idle);
    }
    // The origin closing an idle connection closes it quietly.
    conn.peer_closed(now);
    assert_eq!(conn.state(), ClientState::Closed);
    assert_eq!(conn.poll_event(), None);
    assert_eq!(conn.send_request(&get(), now), Err(EncodeError::Closed));
}

#[test]
fn stray_bytes_spoil_the_connection() {
    let now = Instant::now();
    // On an idle connection: closed.
    let mut conn = ClientConn::new(ClientLimits::default(), now);
    assert_eq!(conn.receive(b"HTTP/1.1 408 Timeout\r\n\r\n", now), 24);
    assert_eq!(conn.state(), ClientState::Closed);
    // After the response: the connection is closed whenever they arrive. `End` says what was
    // known when it was polled, so only the final state is the same for every split.
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n";
    let whole = drive(&get(), &[input], false);
    assert_eq!((whole.body.as_slice(), whole.ends.as_slice()), (&b"x"[..], &[END_CLOSE][..]));
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        let t = drive(&get(), &[a, b], false);
        assert_eq!((t.body.as_slice(), t.state, t.rest.as_slice()), (&b"x"[..], ClientState::Closed, &b""[..]));
    }
}

#[test]
fn response_before_the_request_body_ends_closes_after() {
    let now = Instant::now();
    let mut conn = ClientConn::new(ClientLimits::default(), now);
    conn.send_request(&OutgoingRequest::new("POST", "/", "h").with_body(BodyFraming::Chunked), now).unwrap();
    conn.write_body(b"part", now).unwrap();
    conn.receive(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n", now);
    assert!(matches!(conn.poll_event(), Some(ClientEvent::Head(h)) if h.status() == 413));
    assert_eq!(conn.poll_event(), Some(END_CLOSE));
    assert_eq!(conn.write_body(b"more", now), Err(EncodeError::NoBodyInProgress));
}

// ---------------------------------------------------------------- errors

#[test]
fn every_error_class_fails_the_exchange() {
    use ResponseError::*;
    let long_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "b".repeat(300));
    let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: 1\r\n".repeat(9));
    let interim = "HTTP/1.1 100 Continue\r\n\r\n".repeat(3) + "HTTP/1.1 200 OK\r\n\r\n";
    let trailers = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: {}\r\n\r\n", "v".repeat(40));
    let ext = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(40));
    let cases: Vec<(&[u8], ResponseError)> = vec![
        (b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\nContent-Length: 0\r\n\r\n", ObsoleteLineFolding),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nA\x01: b\r\n\r\n", Malformed),
        (b"SSH-2.0-OpenSSH_9.6\r\n", UnsupportedVersion),
        (b"HTTP/2.0 200 OK\r\n\r\n", UnsupportedVersion),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", BadContentLength),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", BadContentLength),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na", BadContentLength),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n", BadTransferEncoding),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BadTransferEncoding),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferCoding),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", BadChunk),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", BadChunk),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", BadChunk),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n", BadChunk),
        (ext.as_bytes(), BadChunk),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", ChunkSizeOverflow),
        (trailers.as_bytes(), TrailersTooLarge),
        (long_head.as_bytes(), HeadTooLarge),
        (many.as_bytes(), TooManyHeaders),
        (interim.as_bytes(), TooManyInterimResponses),
    ];
    for (input, error) in cases {
        let t = split_invariant_with(small_limits(), &get(), input, false);
        let context = String::from_utf8_lossy(input);
        assert_eq!(t.error, Some(error), "{context}");
        assert_eq!(t.ends.last(), Some(&ClientEvent::Failed(error)), "{context}");
        assert_eq!(t.state, ClientState::Closed, "{context}");
    }
}

#[test]
fn body_before_a_chunk_error_is_delivered_first() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n";
    let t = split_invariant(&get(), input, false);
    assert_eq!(t.body, b"abc");
    assert_eq!(t.ends, [ClientEvent::Failed(ResponseError::BadChunk)]);
}

#[test]
fn eof_before_and_during_the_response() {
    let t = drive(&get(), &[], true);
    assert_eq!(t.ends, [ClientEvent::Failed(ResponseError::ClosedBeforeResponse)]);
    for partial in [&b"H"[..], b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"] {
        let t = split_invariant(&get(), partial, true);
        assert_eq!(t.ends, [ClientEvent::Failed(ResponseError::Truncated)], "{partial:?}");
    }
    let t = split_invariant(&get(), b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true);
    assert_eq!(
        (t.body.as_slice(), t.ends.as_slice()),
        (&b"abc"[..], &[ClientEvent::Failed(ResponseError::Truncated)][..])
    );
    let t = split_invariant(&get(), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", true);
    assert_eq!(t.ends, [ClientEvent::Failed(ResponseError::Truncated)]);
    // A complete response followed by EOF: fine, and the connection is closed after it.
    let t = split_invariant(&get(), b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", true);
    assert_eq!((t.ends.as_slice(), t.state), (&[END_REUSABLE][..], ClientState::Closed));
}

// ---------------------------------------------------------------- bounds and back-pressure

#[test]
fn body_buffer_applies_back_pressure() {
    let now = Instant::now();
    let limits = ClientLimits { body_buffer_bytes_max: 1024, ..ClientLimits::default() };
    for framing in ["content-length: 5000", "transfer-encoding: chunked", "connection: close"] {
        let mut conn = ClientConn::new(limits, now);
        conn.send_request(&get(), now).unwrap();
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut input = format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n").into_bytes();
        if framing.starts_with("transfer") {
            for chunk in body.chunks(700) {
                input.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                input.extend_from_slice(chunk);
                input.extend_from_slice(b"\r\n");
            }
            input.extend_from_slice(b"0\r\n\r\n");
        } else {
            input.extend_from_slice(&body);
        }
        let mut rest = &input[..];
        let mut got = Vec::new();
        let mut ended = false;
        for _ in 0..100 {
            let consumed = conn.receive(rest, now);
            rest = &rest[consumed..];
            assert!(conn.input_bytes() <= 1024, "{framing}: {}", conn.input_bytes());
            if !rest.is_empty() {
                assert!(!conn.wants_read(), "{framing}: refused bytes while wanting to read");
                assert_eq!(conn.receive(rest, now), 0);
            }
            while let Some(event) = conn.poll_event() {
                match event {
                    ClientEvent::Body(piece) => {
                        assert!(piece.len() <= 1024);
                        got.extend_from_slice(&piece);
                    }
                    ClientEvent::End { .. } => ended = true,
                    ClientEvent::Head(_) => {}
                    other => panic!("{framing}: {other:?}"),
                }
            }
            if rest.is_empty() {
                break;
            }
        }
        if framing.starts_with("connection") {
            conn.peer_closed(now);
            ended = conn.poll_event() == Some(END_CLOSE);
        }
        assert!(ended, "{framing}");
        assert_eq!(got, body, "{framing}");
    }
}

#[test]
fn dribbled_head_is_parsed_a_logarithmic_number_of_times() {
    let now = Instant::now();
    let lines: String = (0..90).map(|i| format!("X-{i}: {}\r\n", "v".repeat(40))).collect();
    let head = format!("HTTP/1.1 200 OK\r\n{lines}Content-Length: 0\r\n\r\n");
    let mut conn = ClientConn::new(ClientLimits::default(), now);
    conn.send_request(&get(), now).unwrap();
    for byte in head.as_bytes() {
        assert_eq!(conn.receive(std::slice::from_ref(byte), now), 1);
    }
    assert!(matches!(conn.poll_event(), Some(ClientEvent::Head(_))));
    let bound = 2 * (usize::BITS - head.len().leading_zeros()) as usize + 2;
    assert!(conn.head_parse_attempts <= bound, "{} attempts for {} bytes", conn.head_parse_attempts, head.len());
}

#[test]
fn limits_are_clamped() {
    let limits = ClientLimits {
        head_bytes_max: 0,
        headers_max: 10_000,
        chunk_line_bytes_max: 0,
        trailer_bytes_max: usize::MAX,
        body_buffer_bytes_max: 0,
        request_head_bytes_max: 1,
        send_buffer_bytes_max: 0,
        ..ClientLimits::default()
    }
    .clamped();
    assert_eq!(
        (
            limits.head_bytes_max,
            limits.headers_max,
            limits.chunk_line_bytes_max,
            limits.trailer_bytes_max,
            limits.body_buffer_bytes_max,
            limits.request_head_bytes_max,
            limits.send_buffer_bytes_max
        ),
        (256, HEADERS_CEILING, 16, 1024 * 1024, 1024, 256, 1024)
    );
    // A zero-sized buffer would stall forever; clamped, bodies still flow.
    let t = drive_with(limits, &get(), &[b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"], false);
    assert_eq!(t.body, b"abc");
}

// ---------------------------------------------------------------- timeouts

#[test]
fn head_timeout_runs_from_the_end_of_the_request() {
    let t0 = Instant::now();
    let limits = ClientLimits::default();
    let mut conn = ClientConn::new(limits, t0);
    assert_eq!(conn.poll_at(), None, "idle: no timer");
    conn.send_request(&OutgoingRequest::new("POST", "/", "h").with_body(BodyFraming::Chunked), t0).unwrap();
    assert_eq!(conn.poll_at(), None, "an upload in progress is the caller's pace");
    let t1 = t0 + Duration::from_secs(500);
    conn.write_body(b"x", t1).unwrap();
    conn.finish_body(t1).unwrap();
    assert_eq!(conn.poll_at(), Some(t1 + limits.head_timeout));
    // Interim responses do not extend it.
    conn.receive(b"HTTP/1.1 100 Continue\r\n\r\n", t1 + Duration::from_secs(50));
    assert_eq!(conn.poll_at(), Some(t1 + limits.head_timeout));
    conn.poll(t1 + limits.head_timeout - Duration::from_millis(1));
    assert_eq!(conn.state(), ClientState::Busy);
    conn.poll(t1 + limits.head_timeout);
    assert_eq!(conn.poll_event(), Some(ClientEvent::Failed(ResponseError::HeadTimeout)));
    assert_eq!(conn.state(), ClientState::Closed);
    assert_eq!(conn.poll_at(), None);
}

#[test]
fn body_timeout_pauses_while_the_caller_holds_a_full_buffer() {
    let t0 = Instant::now();
    let limits = ClientLimits { body_buffer_bytes_max: 1024, ..ClientLimits::default() };
    let mut conn = ClientConn::new(limits, t0);
    conn.send_request(&get(), t0).unwrap();
    let mut input = b"HTTP/1.1 200 OK\r\ncontent-length: 3000\r\n\r\n".to_vec();
    input.extend_from_slice(&[b'b'; 2000]);
    let consumed = conn.receive(&input, t0);
    assert!(consumed < input.len());
    assert_eq!(conn.poll_at(), None, "the buffer is full: the stall is ours");
    conn.poll(t0 + Duration::from_secs(3600));
    assert_eq!(conn.state(), ClientState::Busy);
    while conn.poll_event().is_some() {}
    let t1 = t0 + Duration::from_secs(3601);
    assert_eq!(conn.poll_at(), Some(t0 + limits.body_timeout), "the last progress was at t0");
    conn.receive(&input[consumed..], t1);
    assert_eq!(conn.poll_at(), Some(t1 + limits.body_timeout));
    conn.poll(t1 + limits.body_timeout);
    let events: Vec<_> = std::iter::from_fn(|| conn.poll_event()).collect();
    assert_eq!(events.last(), Some(&ClientEvent::Failed(ResponseError::BodyTimeout)));
}

#[test]
fn timeouts_never_overflow() {
    let t0 = Instant::now();
    let limits = ClientLimits { head_timeout: Duration::MAX, ..ClientLimits::default() };
    let mut conn = ClientConn::new(limits, t0);
    conn.send_request(&get(), t0).unwrap();
    assert_eq!(conn.poll_at(), None);
    conn.poll(t0 + Duration::from_secs(1 << 20));
    assert_eq!(conn.state(), ClientState::Busy);
}

// ---------------------------------------------------------------- against the server codec

/// A request as the server codec saw it.
#[derive(Debug, PartialEq, Eq)]
struct ServerSaw {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

#[derive(Debug, Clone)]
struct GenRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
    pieces: Vec<usize>,
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-CUSTOM"]),
        "/[a-zA-Z0-9._~/%-]{0,24}(\\?[a-z0-9=&%]{0,16})?",
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "([!-~]([ -~]{0,20}[!-~])?)?"), 0..6),
        prop::collection::vec(any::<u8>(), 0..2000),
        any::<bool>(),
        prop::collection::vec(1usize..900, 1..6),
    )
        .prop_map(|(method, target, headers, body, chunked, pieces)| GenRequest {
            method: method.to_owned(),
            target,
            headers: headers.into_iter().map(|(n, v)| (format!("x-{n}"), v)).collect(),
            body,
            chunked,
            pieces,
        })
}

#[derive(Debug, Clone)]
struct GenResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `None`: one `respond`; else streamed (chunked) in pieces of these sizes.
    streamed: Option<Vec<usize>>,
}

fn gen_response() -> impl Strategy<Value = GenResponse> {
    (
        prop::sample::select(vec![200u16, 201, 204, 206, 301, 304, 404, 418, 500, 599]),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "([!-~]([ -~]{0,20}[!-~])?)?"), 0..6),
        prop::collection::vec(any::<u8>(), 0..3000),
        prop::option::of(prop::collection::vec(1usize..700, 1..6)),
    )
        .prop_map(|(status, headers, body, streamed)| GenResponse {
            status,
            headers: headers.into_iter().map(|(n, v)| (format!("x-{n}"), v)).collect(),
            body,
            streamed,
        })
}

/// Cuts `bytes` into pieces of the given sizes (cycled).
fn cut<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// One exchange: the client encodes `request`, the server codec parses it and answers with
/// `response`, the client parses that. Returns what the server saw and what the client saw.
fn exchange(request: &GenRequest, response: &GenResponse, now: Instant) -> (ServerSaw, Transcript) {
    let limits = ClientLimits { body_buffer_bytes_max: 1024, send_buffer_bytes_max: 1024, ..ClientLimits::default() };
    let mut client = ClientConn::new(limits, now);
    let mut server = ServerConn::new(Limits::default(), now);
    let mut outgoing = OutgoingRequest::new(request.method.clone(), request.target.clone(), "origin.test:8080");
    for (name, value) in &request.headers {
        outgoing = outgoing.with_header(name.clone(), value.clone());
    }
    let has_body = !request.body.is_empty();
    outgoing.body = match (has_body, request.chunked) {
        (false, _) => BodyFraming::None,
        (true, true) => BodyFraming::Chunked,
        (true, false) => BodyFraming::Length(request.body.len() as u64),
    };
    client.send_request(&outgoing, now).unwrap();
    let mut wire = Vec::new();
    // The body goes in pieces through the bounded send buffer, and the wire is fed to the
    // server as it is produced.
    let mut deliver = |client: &mut ClientConn, server: &mut ServerConn| {
        client.take_output(&mut wire);
        assert_eq!(server.receive(&wire, now), wire.len());
        wire.clear();
    };
    if has_body {
        for piece in cut(&request.body, &request.pieces) {
            let mut rest = piece;
            for _ in 0..=rest.len() {
                let taken = client.write_body(rest, now).unwrap();
                rest = &rest[taken..];
                if rest.is_empty() {
                    break;
                }
                deliver(&mut client, &mut server);
            }
        }
        if request.chunked {
            client.finish_body(now).unwrap();
        }
    }
    assert!(client.request_complete());
    deliver(&mut client, &mut server);
    let seen = server.poll_request().expect("server parsed the request");
    let saw = ServerSaw {
        method: seen.method().to_owned(),
        target: seen.target().to_owned(),
        headers: seen.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
        body: seen.body().to_vec(),
    };
    let id = seen.id();
    match &response.streamed {
        None => {
            let mut answer = Response::new(response.status).with_body(response.body.clone());
            for (name, value) in &response.headers {
                answer = answer.with_header(name.clone(), value.clone());
            }
            server.respond(id, answer).unwrap();
        }
        Some(sizes) => {
            let mut head = ResponseHead::new(response.status, None);
            for (name, value) in &response.headers {
                head = head.with_header(name.clone(), value.clone());
            }
            server.respond_head(id, head).unwrap();
            for piece in cut(&response.body, sizes) {
                server.body_chunk(id, piece).unwrap();
            }
            server.body_end(id).unwrap();
        }
    }
    let mut response_bytes = Vec::new();
    server.take_output(&mut response_bytes);
    assert_eq!(server.state(), ConnState::Open);
    let mut t = Transcript {
        heads: Vec::new(),
        body: Vec::new(),
        ends: Vec::new(),
        rest: Vec::new(),
        state: ClientState::Busy,
        error: None,
    };
    let mut rest = &response_bytes[..];
    for _ in 0..=rest.len() {
        let consumed = client.receive(rest, now);
        rest = &rest[consumed..];
        collect(&mut client, &mut t);
        if rest.is_empty() {
            break;
        }
    }
    t.state = client.state();
    t.error = client.error();
    (saw, t)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// What the client encodes, the server codec parses back identically; what the server codec
    /// encodes, the client parses back identically; and the connection stays reusable.
    #[test]
    fn round_trip_against_the_server_codec(request in gen_request(), response in gen_response()) {
        let now = Instant::now();
        let (saw, t) = exchange(&request, &response, now);

        let mut expected_headers = vec![("host".to_owned(), b"origin.test:8080".to_vec())];
        expected_headers.extend(request.headers.iter().map(|(n, v)| (n.clone(), v.clone().into_bytes())));
        if !request.body.is_empty() {
            if request.chunked {
                expected_headers.push(("transfer-encoding".to_owned(), b"chunked".to_vec()));
            } else {
                expected_headers.push(("content-length".to_owned(), request.body.len().to_string().into_bytes()));
            }
        } else if matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") {
            expected_headers.push(("content-length".to_owned(), b"0".to_vec()));
        }
        prop_assert_eq!(&saw.method, &request.method);
        prop_assert_eq!(&saw.target, &request.target);
        prop_assert_eq!(&saw.headers, &expected_headers);
        prop_assert_eq!(&saw.body, &request.body);

        prop_assert_eq!(t.error, None);
        prop_assert_eq!(t.heads.len(), 1);
        let head = &t.heads[0];
        prop_assert_eq!(head.status, response.status);
        let given: Vec<(String, Vec<u8>)> =
            response.headers.iter().map(|(n, v)| (n.clone(), v.clone().into_bytes())).collect();
        let caller_fields: Vec<_> = head.headers.iter()
            .filter(|(n, _)| n.starts_with("x-"))
            .cloned()
            .collect();
        prop_assert_eq!(caller_fields, given);
        let bodiless = matches!(response.status, 204 | 304);
        let expected_body: &[u8] = if bodiless { b"" } else { &response.body };
        prop_assert_eq!(&t.body, expected_body);
        prop_assert_eq!(&t.ends, &vec![END_REUSABLE]);
        prop_assert_eq!(t.state, ClientState::Idle);
    }

    /// Arbitrary origin bytes, cut anywhere, with the clock moving and the caller pulling at its
    /// own pace: no panic, memory within the limits, and the exchange always ends.
    #[test]
    fn arbitrary_responses_never_panic_and_stay_bounded(
        fragments in prop::collection::vec(response_fragment(), 0..40),
        sizes in prop::collection::vec(1usize..300, 1..8),
        pull_pattern in prop::collection::vec(any::<bool>(), 1..8),
        steps_ms in prop::collection::vec(0u64..20_000, 1..8),
        head_request in any::<bool>(),
        upgrade in any::<bool>(),
    ) {
        let limits = small_limits();
        let input = fragments.concat();
        let t0 = Instant::now();
        let mut now = t0;
        let mut conn = ClientConn::new(limits, t0);
        let mut request = OutgoingRequest::new(if head_request { "HEAD" } else { "GET" }, "/", "h");
        if upgrade {
            request = request.with_header("upgrade", "websocket");
        }
        conn.send_request(&request, t0).unwrap();
        let mut rest = input.as_slice();
        let mut endings = 0;
        let mut heads = 0;
        for step in 0..4 * input.len() + 8 {
            let size = sizes[step % sizes.len()].min(rest.len());
            let consumed = conn.receive(&rest[..size], now);
            prop_assert!(consumed <= size);
            rest = &rest[consumed..];
            prop_assert!(conn.input_bytes() <= limits.head_bytes_max + limits.body_buffer_bytes_max);
            if pull_pattern[step % pull_pattern.len()] {
                while let Some(event) = conn.poll_event() {
                    match event {
                        ClientEvent::Head(_) => heads += 1,
                        ClientEvent::Body(piece) => prop_assert!(piece.len() <= limits.body_buffer_bytes_max),
                        ClientEvent::End { .. } | ClientEvent::Upgraded | ClientEvent::Failed(_) => endings += 1,
                    }
                }
            }
            now += Duration::from_millis(steps_ms[step % steps_ms.len()]);
            conn.poll(now);
            if rest.is_empty() || conn.state() == ClientState::Upgraded {
                break;
            }
        }
        conn.peer_closed(now);
        while let Some(event) = conn.poll_event() {
            match event {
                ClientEvent::Head(_) => heads += 1,
                ClientEvent::Body(_) => {}
                ClientEvent::End { .. } | ClientEvent::Upgraded | ClientEvent::Failed(_) => endings += 1,
            }
        }
        prop_assert!(heads <= 1);
        prop_assert_eq!(endings, 1, "exactly one ending");
        prop_assert!(matches!(conn.state(), ClientState::Closed | ClientState::Upgraded));
    }
}

/// Pieces of HTTP responses and noise, so that random input reaches deep states.
fn response_fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
        Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        Just(b"HTTP/1.1 101 Switching Protocols\r\n".to_vec()),
        Just(b"HTTP/1.0 204 No Content\r\n".to_vec()),
        Just(b"Content-Length: 5\r\n".to_vec()),
        Just(b"Content-Length: 99999\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"5\r\nhello\r\n".to_vec()),
        Just(b"ffffffff\r\n".to_vec()),
        Just(b"0\r\nT: v\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..400),
    ]
}
