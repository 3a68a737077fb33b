//! Sans-IO HTTP/1.1 codecs: the server side ([`ServerConn`]) and the client side
//! ([`client::ClientConn`], for `fetch()`); bytes in, bytes out, time passed in.
//!
//! One [`ServerConn`] per TCP connection. It owns no socket and reads no clock, so the same state
//! machine runs over io_uring kernel sockets and over smoltcp, and every test drives it with
//! explicit `Instant`s. The peer is hostile: no input panics, and every queue has a bound
//! ([`Limits`]). What it must not do: add `date`/`server` headers, decode content codings, or
//! upgrade connections; those belong to the caller.
//!
//! The caller's loop, per connection:
//! 1. bytes arrive: `n = conn.receive(&buf, now)`; keep `buf[n..]` and offer it again once
//!    [`ServerConn::wants_read`] is true again (back-pressure; see [`ServerConn::receive`]);
//! 2. `while let Some(req) = conn.poll_request()` hand each request to its isolate;
//! 3. answers come back in any order: [`ServerConn::respond`], or the streaming trio
//!    [`ServerConn::respond_head`] / [`ServerConn::body_chunk`] / [`ServerConn::body_end`];
//! 4. [`ServerConn::take_output`] and write those bytes; the codec writes responses in request
//!    order whatever order they were given in;
//! 5. after any of the above, `conn.poll(now)`, then sleep until [`ServerConn::poll_at`];
//! 6. once [`ServerConn::state`] is [`ConnState::Closed`], flush what was taken, shut the write
//!    side down and close the socket.

mod chunked;
pub mod client;
mod conn;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use client::{
    BodyFraming, ClientConn, ClientEvent, ClientLimits, ClientState, EncodeError, IncomingResponse, OutgoingRequest,
    ResponseError,
};
pub use conn::{ConnState, ServerConn};
pub use request::{Headers, Request};
pub use response::{Response, ResponseHead};

/// The most header fields [`Limits::headers_max`] may allow: the parser keeps its header index on
/// the stack, this many entries long.
pub const HEADERS_CEILING: usize = 128;

/// Bounds on everything one connection may hold or wait for. Values out of range are clamped by
/// [`ServerConn::new`] (see [`Limits::clamped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header fields plus the empty line; also the bound on a chunked body's
    /// trailer section. Larger -> 431 (or 414 when the request line alone does not fit).
    pub head_bytes_max: usize,
    /// Header fields per request, at most [`HEADERS_CEILING`]. More -> 431.
    pub headers_max: usize,
    /// Request target. Longer -> 414.
    pub target_bytes_max: usize,
    /// Request body (Content-Length, or the sum of the chunks). Larger -> 413.
    pub body_bytes_max: usize,
    /// Requests parsed but not yet fully answered. At this depth the codec stops reading new
    /// requests until one is answered.
    pub pipeline_depth_max: usize,
    /// Response bytes waiting (not yet taken, or waiting behind an earlier response). Above this
    /// the codec stops reading new requests: a client that pipelines without reading must not make
    /// us buffer without end.
    pub backlog_bytes_max: usize,
    /// An open connection with nothing in flight is closed, without a response, after this long.
    pub idle_timeout: Duration,
    /// A request head must be complete this long after its first byte, or 408 and close.
    pub head_timeout: Duration,
    /// A request body that makes no progress for this long gets 408 and close.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            head_bytes_max: 32 * 1024,
            headers_max: 100,
            target_bytes_max: 8 * 1024,
            body_bytes_max: 1024 * 1024,
            pipeline_depth_max: 16,
            backlog_bytes_max: 256 * 1024,
            idle_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The limits the codec actually enforces: `head_bytes_max` within 256 B..=1 MiB (spans in a
    /// head are `u32`s and a head must hold a request line), `headers_max` within
    /// 1..=[`HEADERS_CEILING`], `target_bytes_max` within 1..=`head_bytes_max`,
    /// `pipeline_depth_max` within 1..=1024.
    pub fn clamped(self) -> Self {
        let head_bytes_max = self.head_bytes_max.clamp(256, 1024 * 1024);
        Self {
            head_bytes_max,
            headers_max: self.headers_max.clamp(1, HEADERS_CEILING),
            target_bytes_max: self.target_bytes_max.clamp(1, head_bytes_max),
            pipeline_depth_max: self.pipeline_depth_max.clamp(1, 1024),
            ..self
        }
    }
}

/// Identifies one request on its connection; responses are matched to requests by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The request's sequence number on its connection, from 0.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The request's HTTP version (responses are always written as HTTP/1.1, RFC 9110 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Why the codec rejected a request; [`RequestError::status`] is what the peer was sent.
/// The connection closes after the error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// malformed request line or header field
    #[error("malformed request line or header field")]
    Malformed,
    /// HTTP version not supported (only HTTP/1.0 and HTTP/1.1)
    #[error("HTTP version not supported")]
    UnsupportedVersion,
    /// request target too long
    #[error("request target too long")]
    TargetTooLong,
    /// request header section too large
    #[error("request header section too large")]
    HeadTooLarge,
    /// too many header fields
    #[error("too many header fields")]
    TooManyHeaders,
    /// missing, repeated or invalid Host header field
    #[error("missing, repeated or invalid Host header field")]
    BadHost,
    /// invalid or conflicting Content-Length
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// both Content-Length and Transfer-Encoding
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding not ending in a single chunked, or in an HTTP/1.0 request
    #[error("Transfer-Encoding must end in a single chunked coding")]
    BadTransferEncoding,
    /// transfer coding not implemented
    #[error("transfer coding not implemented")]
    UnsupportedTransferCoding,
    /// expectation not supported
    #[error("expectation not supported")]
    UnsupportedExpectation,
    /// malformed chunked body
    #[error("malformed chunked body")]
    BadChunk,
    /// chunk size too large
    #[error("chunk size too large")]
    ChunkSizeOverflow,
    /// trailer section too large
    #[error("trailer section too large")]
    TrailersTooLarge,
    /// request body too large
    #[error("request body too large")]
    BodyTooLarge,
    /// request head not received in time
    #[error("request head not received in time")]
    HeadTimeout,
    /// request body not received in time
    #[error("request body not received in time")]
    BodyTimeout,
}

impl From<chunked::ChunkError> for RequestError {
    fn from(error: chunked::ChunkError) -> Self {
        match error {
            chunked::ChunkError::Malformed => Self::BadChunk,
            chunked::ChunkError::SizeOverflow => Self::ChunkSizeOverflow,
            chunked::ChunkError::BodyTooLarge => Self::BodyTooLarge,
            chunked::ChunkError::TrailersTooLarge => Self::TrailersTooLarge,
        }
    }
}

impl RequestError {
    /// The status code of the error response.
    pub fn status(self) -> u16 {
        match self {
            Self::Malformed
            | Self::BadHost
            | Self::BadContentLength
            | Self::ContentLengthWithTransferEncoding
            | Self::BadTransferEncoding
            | Self::BadChunk
            | Self::ChunkSizeOverflow => 400,
            Self::HeadTimeout | Self::BodyTimeout => 408,
            Self::BodyTooLarge => 413,
            Self::TargetTooLong => 414,
            Self::UnsupportedExpectation => 417,
            Self::HeadTooLarge | Self::TooManyHeaders | Self::TrailersTooLarge => 431,
            Self::UnsupportedTransferCoding => 501,
            Self::UnsupportedVersion => 505,
        }
    }
}

/// Why the codec refused a response call. Nothing was written; unless said otherwise the request
/// still waits for its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// no request with this id awaits a response (never delivered, already answered, or dropped
    /// because the connection is closing)
    #[error("no request with this id awaits a response")]
    UnknownRequest,
    /// this request already has a response
    #[error("this request already has a response")]
    AlreadyResponded,
    /// this request has no streaming response in progress
    #[error("this request has no streaming response in progress")]
    NotStreaming,
    /// status code outside 200..=999 (1xx responses are the codec's own business)
    #[error("status code {0} is not a final status code")]
    InvalidStatus(u16),
    /// reason phrase contains a control character
    #[error("reason phrase contains a control character")]
    InvalidReason,
    /// header field name at this index is not a token
    #[error("header field name #{0} is not a token")]
    InvalidHeaderName(usize),
    /// header field value at this index contains a control character
    #[error("header field value #{0} contains a control character")]
    InvalidHeaderValue(usize),
    /// more body bytes than the declared content-length; nothing of this chunk was written
    #[error("more body bytes than the declared content-length")]
    BodyOverrun,
    /// fewer body bytes than the declared content-length; the response is over and the
    /// connection closes after it, since the framing cannot be repaired
    #[error("fewer body bytes than the declared content-length")]
    BodyUnderrun,
    /// the request did not ask to switch protocols, or earlier responses are still owed
    #[error("this request cannot switch protocols")]
    NotUpgradable,
}
