//! Fuzzes the HTTP/1.1 server codec (`netstack::http1::ServerConn`) with whatever a client
//! could send, cut into reads of fuzzer-chosen sizes, answered in fuzzer-chosen ways (whole
//! responses, streamed sized or chunked ones, out of order, aborted), with the clock moving so
//! the timeouts fire. Nothing may panic, and what the codec holds and hands out must respect its
//! limits: no request larger than the limits allow, no more unanswered requests than the
//! pipeline depth, response backlog bounded, and a connection closed by the peer ends Closed.
//!
//! Run (from `netstack/`, stable Rust; see the top of `frame.rs` for the flags):
//!
//! ```text
//! cargo fuzz run -s none http1 fuzz/corpus/http1 fuzz/seeds/http1 -- -max_total_time=60
//! ```
//!
//! Input layout: byte 0 picks the limits (bit 0: small limits so every bound is reachable) and
//! how answers are given (bits 1-2); byte 1 seeds the sequence of read sizes and clock steps;
//! the rest is the byte stream from the client.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::http1::{ConnState, Limits, RequestId, Response, ResponseHead, ServerConn};

fn limits(small: bool) -> Limits {
    if small {
        Limits {
            head_bytes_max: 256,
            headers_max: 8,
            target_bytes_max: 64,
            body_bytes_max: 64,
            pipeline_depth_max: 4,
            backlog_bytes_max: 512,
            ..Limits::default()
        }
    } else {
        Limits::default()
    }
}

/// A small deterministic generator for read sizes and clock steps (xorshift).
struct Steps(u32);

impl Steps {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Answers the oldest unanswered request in one of four ways.
fn answer(conn: &mut ServerConn, id: RequestId, how: u32) {
    let result = match how % 4 {
        0 => conn.respond(id, Response::new(200).with_header("x-a", "b").with_body("hello")),
        1 => conn.respond_head(id, ResponseHead::new(200, Some(3))).and_then(|()| {
            conn.body_chunk(id, b"abc")?;
            conn.body_end(id)
        }),
        2 => conn.respond_head(id, ResponseHead::new(200, None)).and_then(|()| {
            conn.body_chunk(id, b"chunk")?;
            conn.body_chunk(id, b"")?;
            conn.body_end(id)
        }),
        _ => conn.respond_head(id, ResponseHead::new(200, Some(10))).and_then(|()| conn.body_abort(id)),
    };
    // A request dropped by a close may refuse its answer; any answer to a live one must work.
    if conn.state() == ConnState::Open {
        result.expect("answering a delivered request on an open connection");
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, input @ ..] = data else { return };
    let limits = limits(flags & 1 != 0);
    let answer_mode = u32::from(flags >> 1) & 3;
    let mut steps = Steps(u32::from(*seed) | 0x100);
    let t0 = Instant::now();
    let mut now = t0;
    let mut conn = ServerConn::new(limits, t0);
    let mut pending: Vec<RequestId> = Vec::new();
    let mut out = Vec::new();
    let mut rest = input;
    // Each pass either consumes input or answers a request; the bound makes termination plain.
    for _ in 0..4 * input.len() + 16 {
        let size = (steps.next() % 97 + 1) as usize;
        let size = size.min(rest.len());
        let consumed = conn.receive(&rest[..size], now);
        assert!(consumed <= size);
        rest = &rest[consumed..];
        while let Some(request) = conn.poll_request() {
            assert!(request.body().len() <= limits.body_bytes_max);
            assert!(request.target().len() <= limits.target_bytes_max);
            assert!(request.headers().count() <= limits.headers_max);
            pending.push(request.id());
        }
        assert!(pending.len() <= limits.pipeline_depth_max);
        // A response is a few hundred bytes at most here: the backlog may pass its bound by one.
        assert!(conn.backlog_bytes() <= limits.backlog_bytes_max + 512, "{}", conn.backlog_bytes());
        if !pending.is_empty() && (answer_mode == 0 || steps.next() % 3 != 0) {
            let id = if answer_mode == 3 { pending.pop() } else { Some(pending.remove(0)) };
            answer(&mut conn, id.expect("pending is not empty"), steps.next());
        }
        if steps.next() % 4 == 0 {
            conn.take_output(&mut out);
            out.clear();
        }
        now += Duration::from_millis(u64::from(steps.next() % 4000));
        if conn.poll_at().is_some_and(|at| at <= now) {
            conn.poll(now);
        }
        if rest.is_empty() && pending.is_empty() {
            break;
        }
    }
    conn.peer_closed(now);
    while let Some(request) = conn.poll_request() {
        pending.push(request.id());
    }
    for id in pending.drain(..) {
        answer(&mut conn, id, 0);
    }
    conn.take_output(&mut out);
    assert_eq!(conn.state(), ConnState::Closed);
});
