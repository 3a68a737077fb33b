//! Fuzzes the HTTP/1.1 client codec (`netstack::http1::ClientConn`) with whatever an origin
//! could answer, cut into reads of fuzzer-chosen sizes, with the caller pulling events at a
//! fuzzer-chosen pace, a request body still being written while the answer comes, and the clock
//! moving so the timeouts fire. Nothing may panic; what the codec holds and hands out must
//! respect its limits (head buffer, body buffer, send buffer); every exchange ends exactly once
//! (`End`, `Upgraded` or `Failed`), with at most one head before it; and a reusable connection
//! carries a second exchange on the same input.
//!
//! Run (from `netstack/`, stable Rust; see the top of `frame.rs` for the flags):
//!
//! ```text
//! cargo fuzz run -s none http1_client fuzz/corpus/http1_client fuzz/seeds/http1_client -- -max_total_time=120
//! ```
//!
//! Input layout: byte 0 picks the configuration (bit 0: small limits so every bound is reachable;
//! bit 1: a HEAD request; bit 2: the request asks for an upgrade; bits 3-4: the request body:
//! none, sized, chunked, or sized and left short); byte 1 seeds the sequence of read sizes, pulls
//! and clock steps; the rest is the byte stream from the origin.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::http1::{BodyFraming, ClientConn, ClientEvent, ClientLimits, ClientState, OutgoingRequest};

fn limits(small: bool) -> ClientLimits {
    if small {
        ClientLimits {
            head_bytes_max: 256,
            headers_max: 8,
            interim_responses_max: 2,
            chunk_line_bytes_max: 32,
            trailer_bytes_max: 32,
            body_buffer_bytes_max: 1024,
            request_head_bytes_max: 256,
            send_buffer_bytes_max: 1024,
            head_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
        }
    } else {
        ClientLimits::default()
    }
}

/// A small deterministic generator for read sizes, pulls and clock steps (xorshift).
struct Steps(u32);

impl Steps {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// What one exchange's events added up to.
#[derive(Default)]
struct Seen {
    heads: usize,
    endings: usize,
    reusable: bool,
}

fn pull(conn: &mut ClientConn, limits: &ClientLimits, seen: &mut Seen) {
    while let Some(event) = conn.poll_event() {
        match event {
            ClientEvent::Head(head) => {
                assert!(head.headers().count() <= limits.headers_max);
                assert!((100..=999).contains(&head.status()));
                seen.heads += 1;
            }
            ClientEvent::Body(piece) => {
                assert!(!piece.is_empty());
                assert!(piece.len() <= limits.body_buffer_bytes_max);
                assert_eq!(seen.heads, 1, "body before a head");
            }
            ClientEvent::End { reusable } => {
                seen.endings += 1;
                seen.reusable = reusable;
                let expected = if reusable { ClientState::Idle } else { ClientState::Closed };
                assert_eq!(conn.state(), expected);
            }
            ClientEvent::Upgraded => {
                seen.endings += 1;
                assert_eq!(conn.state(), ClientState::Upgraded);
            }
            ClientEvent::Failed(_) => {
                seen.endings += 1;
                assert_eq!(conn.state(), ClientState::Closed);
            }
        }
    }
}

/// Runs one exchange over `input` and returns the input left over.
fn exchange<'a>(
    conn: &mut ClientConn,
    flags: u8,
    limits: &ClientLimits,
    steps: &mut Steps,
    now: &mut Instant,
    input: &'a [u8],
) -> (&'a [u8], Seen) {
    let method = if flags & 2 != 0 { "HEAD" } else { "POST" };
    let mut request = OutgoingRequest::new(method, "/fuzz", "origin.test");
    if flags & 4 != 0 {
        request = request.with_header("upgrade", "websocket").with_header("connection", "upgrade");
    }
    let body = [b'b'; 3000];
    let mut body_left = match (flags >> 3) & 3 {
        0 => 0,
        1 | 3 => {
            request.body = BodyFraming::Length(body.len() as u64);
            body.len()
        }
        _ => {
            request.body = BodyFraming::Chunked;
            body.len()
        }
    };
    conn.send_request(&request, *now).expect("an idle connection takes a valid request");
    let mut out = Vec::new();
    let mut seen = Seen::default();
    let mut rest = input;
    for _ in 0..4 * input.len() + 16 {
        if body_left > 0 {
            let offered = &body[body.len() - body_left..][..(steps.next() % 1500 + 1) as usize % (body_left + 1)];
            match conn.write_body(offered, *now) {
                Ok(taken) => body_left -= taken,
                Err(_) => body_left = 0,
            }
            if body_left == 0 || (flags >> 3) & 3 == 3 && steps.next() % 4 == 0 {
                body_left = 0;
                let _ = conn.finish_body(*now);
            }
        }
        assert!(conn.output_bytes() <= limits.send_buffer_bytes_max + limits.request_head_bytes_max + 5);
        if steps.next() % 3 != 0 {
            conn.take_output(&mut out);
            out.clear();
        }
        let size = ((steps.next() % 97 + 1) as usize).min(rest.len());
        let consumed = conn.receive(&rest[..size], *now);
        assert!(consumed <= size);
        rest = &rest[consumed..];
        if steps.next() % 4 != 0 {
            pull(conn, limits, &mut seen);
        }
        *now += Duration::from_millis(u64::from(steps.next() % 3000));
        if conn.poll_at().is_some_and(|at| at <= *now) {
            conn.poll(*now);
        }
        if seen.endings > 0 || conn.state() == ClientState::Upgraded || rest.is_empty() && body_left == 0 {
            break;
        }
    }
    pull(conn, limits, &mut seen);
    (rest, seen)
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, input @ ..] = data else { return };
    let limits = limits(flags & 1 != 0);
    let mut steps = Steps(u32::from(*seed) | 0x100);
    let t0 = Instant::now();
    let mut now = t0;
    let mut conn = ClientConn::new(limits, t0);
    let (rest, mut seen) = exchange(&mut conn, *flags, &limits, &mut steps, &mut now, input);
    assert!(seen.heads <= 1);
    let mut rest = rest;
    if seen.endings == 1 && seen.reusable && conn.state() == ClientState::Idle {
        // A second exchange on the same connection, over what the origin sent after the first.
        let (second_rest, second) = exchange(&mut conn, *flags, &limits, &mut steps, &mut now, rest);
        rest = second_rest;
        seen = second;
        assert!(seen.heads <= 1);
    }
    if conn.state() != ClientState::Upgraded {
        // Offer what is left (a stalled caller may have left some), then the origin's EOF.
        for _ in 0..=rest.len() {
            let consumed = conn.receive(rest, now);
            rest = &rest[consumed..];
            pull(&mut conn, &limits, &mut seen);
            if rest.is_empty() || consumed == 0 {
                break;
            }
        }
        conn.peer_closed(now);
        pull(&mut conn, &limits, &mut seen);
        assert_eq!(seen.endings, 1, "every exchange ends exactly once");
        assert_eq!(conn.state(), ClientState::Closed);
    }
});
