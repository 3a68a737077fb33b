//! Sans-IO HTTP/1.1 client codec: one request/response exchange at a time on one connection,
//! bytes in, bytes out, time passed in.
//!
//! One [`ClientConn`] per outbound connection (plain TCP or the plaintext side of TLS). Like the
//! server codec beside it, it owns no socket and reads no clock, so it runs over kernel sockets
//! and smoltcp alike and every test drives it with explicit `Instant`s. The origin is as much a
//! stranger as any client: no response panics it, every buffer has a bound ([`ClientLimits`]),
//! and framing ambiguities are refused with a typed [`ResponseError`]. What it must not do:
//! pipeline (one exchange at a time), follow redirects, decode content codings, pick
//! connections, or speak anything after a `101` (it hands those bytes back); those belong to the
//! caller.
//!
//! The caller's loop, per exchange:
//! 1. [`ClientConn::send_request`] writes the request head; with a body, offer it piece by piece
//!    to [`ClientConn::write_body`] (it takes what its bounded send buffer holds and says how
//!    much) and end it with [`ClientConn::finish_body`];
//! 2. [`ClientConn::take_output`] and write those bytes;
//! 3. bytes arrive: `n = conn.receive(&buf, now)`; keep `buf[n..]` and offer it again once the
//!    body events were taken (back-pressure: the body buffer is full), or, after a `101`, hand
//!    it to the new protocol;
//! 4. `while let Some(event) = conn.poll_event()`: [`ClientEvent::Head`], then
//!    [`ClientEvent::Body`] pieces, then [`ClientEvent::End`] (or [`ClientEvent::Upgraded`], or
//!    [`ClientEvent::Failed`]);
//! 5. after any of the above, `conn.poll(now)`, and sleep no later than [`ClientConn::poll_at`];
//! 6. on the peer's EOF, [`ClientConn::peer_closed`] (after offering every byte received);
//! 7. once `End { reusable: true }` was polled the connection is [`ClientState::Idle`] and may
//!    carry the next request (or go back to the pool); otherwise close it.

mod head;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use super::HEADERS_CEILING;
use super::chunked::{ChunkLimits, ChunkedDecoder};
use super::conn::find_empty_line;
use super::request::is_host_byte;
use super::response::{LAST_CHUNK, is_tchar, is_visible_or_obs, write_chunk, write_decimal};
use head::{ParsedHead, ResponseFraming, parse_response_head};

pub use head::IncomingResponse;

/// Bounds on everything one client connection may hold or wait for. Values out of range are
/// clamped by [`ClientConn::new`] (see [`ClientLimits::clamped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// One response head: status line plus header fields plus the empty line (each interim
    /// `1xx` head too). Larger -> [`ResponseError::HeadTooLarge`].
    pub head_bytes_max: usize,
    /// Header fields per response head, at most [`HEADERS_CEILING`].
    pub headers_max: usize,
    /// Interim (`1xx` other than 101) responses before the final one.
    pub interim_responses_max: usize,
    /// One chunk-size line with its extensions.
    pub chunk_line_bytes_max: usize,
    /// A chunked body's trailer section (read and dropped).
    pub trailer_bytes_max: usize,
    /// Response body bytes held until the caller takes them; at this much, `receive` stops
    /// consuming.
    pub body_buffer_bytes_max: usize,
    /// The request head the caller asks us to write.
    pub request_head_bytes_max: usize,
    /// Request bytes waiting to be taken: `write_body` takes no more than fits.
    pub send_buffer_bytes_max: usize,
    /// From the request being completely written (head and body) to the final response head
    /// being complete. An upload's own pace is the caller's business.
    pub head_timeout: Duration,
    /// A response body that makes no progress this long while the caller has room for it.
    pub body_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            head_bytes_max: 64 * 1024,
            headers_max: 100,
            interim_responses_max: 8,
            chunk_line_bytes_max: 4096,
            trailer_bytes_max: 16 * 1024,
            body_buffer_bytes_max: 64 * 1024,
            request_head_bytes_max: 64 * 1024,
            send_buffer_bytes_max: 64 * 1024,
            head_timeout: Duration::from_secs(100),
            body_timeout: Duration::from_secs(60),
        }
    }
}

impl ClientLimits {
    /// The limits the codec enforces: `head_bytes_max` and `request_head_bytes_max` within
    /// 256 B..=1 MiB (spans in a head are `u32`s), `headers_max` within 1..=[`HEADERS_CEILING`],
    /// `chunk_line_bytes_max` and `trailer_bytes_max` within 16 B..=1 MiB, and
    /// `body_buffer_bytes_max` and `send_buffer_bytes_max` within 1 KiB..=64 MiB (room for at
    /// least one useful chunk).
    pub fn clamped(self) -> Self {
        const MIB: usize = 1024 * 1024;
        Self {
            head_bytes_max: self.head_bytes_max.clamp(256, MIB),
            headers_max: self.headers_max.clamp(1, HEADERS_CEILING),
            chunk_line_bytes_max: self.chunk_line_bytes_max.clamp(16, MIB),
            trailer_bytes_max: self.trailer_bytes_max.clamp(16, MIB),
            body_buffer_bytes_max: self.body_buffer_bytes_max.clamp(1024, 64 * MIB),
            request_head_bytes_max: self.request_head_bytes_max.clamp(256, MIB),
            send_buffer_bytes_max: self.send_buffer_bytes_max.clamp(1024, 64 * MIB),
            ..self
        }
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body. POST, PUT and PATCH still say `content-length: 0` (RFC 9110 §8.6), others say
    /// nothing.
    None,
    /// Exactly this many bytes follow: `content-length`.
    Length(u64),
    /// Length unknown, streamed: `transfer-encoding: chunked`.
    Chunked,
}

/// A request as the caller gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    /// A token (`GET`, `POST`, ...), case preserved. CONNECT is refused (no origin form).
    pub method: String,
    /// Origin form: `/path?query` (visible ASCII, no fragment), or `*` for OPTIONS.
    pub target: String,
    /// The `host` field: `host[:port]` as in the URL's authority.
    pub host: String,
    /// Written in order after `host`, names as given. `host`, `content-length` and
    /// `transfer-encoding` are the codec's: those fields are dropped. `connection` and
    /// `upgrade` are the caller's (a `close` token makes the connection single-use; an
    /// `upgrade` field allows a `101` answer).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: BodyFraming,
}

impl OutgoingRequest {
    pub fn new(method: impl Into<String>, target: impl Into<String>, host: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            target: target.into(),
            host: host.into(),
            headers: Vec::new(),
            body: BodyFraming::None,
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: BodyFraming) -> Self {
        self.body = body;
        self
    }
}

/// What the response did, in order: one `Head`, then `Body` pieces, then one of `End`,
/// `Upgraded` or `Failed`. A `Failed` may also come before any `Head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The final response head (interim `1xx` heads are skipped), or a `101`.
    Head(IncomingResponse),
    /// The next piece of the body, unframed, at most `body_buffer_bytes_max` bytes.
    Body(Vec<u8>),
    /// The body is complete (trailers dropped). `reusable`: the connection is now
    /// [`ClientState::Idle`] and may carry another request; if false it is
    /// [`ClientState::Closed`]. An idle connection still closes if the origin later sends
    /// bytes or closes it: check [`ClientConn::state`] before reusing one.
    End { reusable: bool },
    /// After a `101` head: HTTP is over on this connection. Bytes `receive` did not consume
    /// belong to the new protocol.
    Upgraded,
    /// The response broke; the connection is [`ClientState::Closed`]. Body pieces delivered
    /// before were real, but the body is incomplete.
    Failed(ResponseError),
}

/// Where a client connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// No exchange: a request may be sent. Bytes from the origin now close it.
    Idle,
    /// An exchange is in progress (or its `End` not yet polled).
    Busy,
    /// A `101` switched protocols; the codec is done with this connection.
    Upgraded,
    /// Not usable: close the socket once the output was written and the events polled.
    Closed,
}

/// Why the codec refused a response. The connection is closed: after a framing error nothing
/// later on it can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum ResponseError {
    /// malformed status line or header field
    Malformed,
    /// HTTP version not supported (only HTTP/1.0 and HTTP/1.1)
    UnsupportedVersion,
    /// obsolete line folding in a header field
    ObsoleteLineFolding,
    /// response header section too large
    HeadTooLarge,
    /// too many header fields in the response
    TooManyHeaders,
    /// too many interim (1xx) responses
    TooManyInterimResponses,
    /// invalid or conflicting Content-Length in the response
    BadContentLength,
    /// response has both Content-Length and Transfer-Encoding
    ContentLengthWithTransferEncoding,
    /// response Transfer-Encoding does not end in a single chunked coding, or is in HTTP/1.0
    BadTransferEncoding,
    /// response transfer coding not implemented
    UnsupportedTransferCoding,
    /// malformed chunked response body
    BadChunk,
    /// chunk size too large in the response body
    ChunkSizeOverflow,
    /// response trailer section too large
    TrailersTooLarge,
    /// 101 Switching Protocols to a request that asked for no upgrade
    UnexpectedUpgrade,
    /// the connection closed before any byte of the response (a request on a reused connection
    /// may be retried on a new one)
    ClosedBeforeResponse,
    /// the connection closed in the middle of the response
    Truncated,
    /// response head not received in time
    HeadTimeout,
    /// response body made no progress in time
    BodyTimeout,
}

impl From<super::chunked::ChunkError> for ResponseError {
    fn from(error: super::chunked::ChunkError) -> Self {
        match error {
            super::chunked::ChunkError::Malformed => Self::BadChunk,
            // The client sets no total: the body streams through a bounded buffer.
            super::chunked::ChunkError::SizeOverflow | super::chunked::ChunkError::BodyTooLarge => {
                Self::ChunkSizeOverflow
            }
            super::chunked::ChunkError::TrailersTooLarge => Self::TrailersTooLarge,
        }
    }
}

/// Why the codec refused a request call. Nothing was written unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum EncodeError {
    /// an exchange is in progress on this connection
    Busy,
    /// the connection is closed or upgraded
    Closed,
    /// the method is not a token
    InvalidMethod,
    /// CONNECT needs a tunnel, not an origin-form request
    UnsupportedMethod,
    /// the target is not in origin form (or * for OPTIONS)
    InvalidTarget,
    /// the host is empty or has a byte not allowed in an authority
    InvalidHost,
    /// header field name #{0} is not a token
    InvalidHeaderName(usize),
    /// header field value #{0} contains a control character
    InvalidHeaderValue(usize),
    /// the request head is larger than request_head_bytes_max
    HeadTooLarge,
    /// no request body is being sent
    NoBodyInProgress,
    /// more body bytes than the declared content-length; nothing of this piece was taken
    BodyOverrun,
    /// fewer body bytes than the declared content-length; the connection cannot be reused
    BodyUnderrun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// Head and body (if any) written.
    Done,
    Sized {
        remaining: u64,
    },
    Chunked,
    /// The body could not be completed (underrun); the origin waits for bytes that will never
    /// come, so the connection cannot be reused.
    Broken,
}

#[derive(Debug)]
enum Reader {
    /// Between responses or inside a head (`ClientConn::head_buf`).
    Head,
    Body {
        decoder: BodyDecoder,
        last_progress: Instant,
    },
    /// The response is complete (or switched protocols).
    Done,
    /// The response broke; input is discarded.
    Failed,
}

#[derive(Debug)]
enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// The client side of one HTTP/1.1 connection. See the module documentation for the loop.
#[derive(Debug)]
pub struct ClientConn {
    limits: ClientLimits,
    state: ClientState,
    sender: Sender,
    reader: Reader,
    /// The request was HEAD: the response has no body.
    request_is_head: bool,
    /// The request carried an `upgrade` field: a `101` is allowed.
    request_upgrade: bool,
    /// The request said `connection: close`.
    request_close: bool,
    /// When the request was completely written: the head timeout runs from here.
    request_done_at: Option<Instant>,
    /// A byte of this exchange's response arrived (distinguishes ClosedBeforeResponse).
    response_started: bool,
    interim_responses: usize,
    /// The final head allows reuse (version, `connection`, framing).
    response_keep_alive: bool,
    /// Something makes the connection single-use whatever the response says: the peer's EOF,
    /// bytes after the response.
    spoiled: bool,
    /// The response head received so far when it did not arrive in one piece.
    head_buf: Vec<u8>,
    head_scan_pos: usize,
    head_attempt_len: usize,
    /// Events not yet polled, in their order.
    head_ready: Option<IncomingResponse>,
    body_buf: Vec<u8>,
    end_pending: bool,
    upgrade_pending: bool,
    failure_pending: Option<ResponseError>,
    error: Option<ResponseError>,
    output: Vec<u8>,
    last_now: Instant,
    #[cfg(test)]
    head_parse_attempts: usize,
}

impl ClientConn {
    /// A connection established at `now`, idle. `limits` are clamped ([`ClientLimits::clamped`]).
    pub fn new(limits: ClientLimits, now: Instant) -> Self {
        Self {
            limits: limits.clamped(),
            state: ClientState::Idle,
            sender: Sender::Done,
            reader: Reader::Done,
            request_is_head: false,
            request_upgrade: false,
            request_close: false,
            request_done_at: None,
            response_started: false,
            interim_responses: 0,
            response_keep_alive: false,
            spoiled: false,
            head_buf: Vec::new(),
            head_scan_pos: 0,
            head_attempt_len: 0,
            head_ready: None,
            body_buf: Vec::new(),
            end_pending: false,
            upgrade_pending: false,
            failure_pending: None,
            error: None,
            output: Vec::new(),
            last_now: now,
            #[cfg(test)]
            head_parse_attempts: 0,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Why the last response failed, for logs and metrics.
    pub fn error(&self) -> Option<ResponseError> {
        self.error
    }

    /// Writes a request head and starts an exchange. With [`BodyFraming::Length`] (non-zero) or
    /// [`BodyFraming::Chunked`], follow with [`Self::write_body`] and [`Self::finish_body`].
    pub fn send_request(&mut self, request: &OutgoingRequest, now: Instant) -> Result<(), EncodeError> {
        match self.state {
            ClientState::Idle => {}
            ClientState::Busy => return Err(EncodeError::Busy),
            ClientState::Upgraded | ClientState::Closed => return Err(EncodeError::Closed),
        }
        let checked = check_request(request)?;
        let framing_bytes = 40;
        let head_bytes = request.method.len()
            + request.target.len()
            + request.host.len()
            + request.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>()
            + framing_bytes;
        if head_bytes > self.limits.request_head_bytes_max {
            return Err(EncodeError::HeadTooLarge);
        }
        write_request_head(&mut self.output, request);
        self.last_now = self.last_now.max(now);
        self.state = ClientState::Busy;
        self.sender = match request.body {
            BodyFraming::None | BodyFraming::Length(0) => Sender::Done,
            BodyFraming::Length(remaining) => Sender::Sized { remaining },
            BodyFraming::Chunked => Sender::Chunked,
        };
        self.reader = Reader::Head;
        self.request_is_head = request.method == "HEAD";
        self.request_upgrade = checked.upgrade;
        self.request_close = checked.close;
        self.request_done_at = (self.sender == Sender::Done).then_some(now);
        self.response_started = false;
        self.interim_responses = 0;
        self.response_keep_alive = false;
        self.error = None;
        Ok(())
    }

    /// Offers the next piece of the request body and returns how many bytes of it were taken:
    /// at most what the send buffer has room for (0 when it is full: take the output, write it,
    /// and offer the rest again). Chunked framing makes each piece taken one chunk.
    pub fn write_body(&mut self, data: &[u8], now: Instant) -> Result<usize, EncodeError> {
        self.last_now = self.last_now.max(now);
        let room = self.send_room();
        match self.sender {
            _ if !matches!(self.state, ClientState::Busy) => Err(EncodeError::NoBodyInProgress),
            Sender::Done | Sender::Broken => Err(EncodeError::NoBodyInProgress),
            Sender::Sized { remaining } => {
                if data.len() as u64 > remaining {
                    return Err(EncodeError::BodyOverrun);
                }
                let taken = data.len().min(room);
                self.output.extend_from_slice(&data[..taken]);
                let remaining = remaining - taken as u64;
                if remaining == 0 {
                    self.request_sent(now);
                } else {
                    self.sender = Sender::Sized { remaining };
                }
                Ok(taken)
            }
            Sender::Chunked => {
                // A chunk costs its data plus at most 16 hex digits and two CRLFs.
                let taken = data.len().min(room.saturating_sub(20));
                write_chunk(&mut self.output, &data[..taken]);
                Ok(taken)
            }
        }
    }

    /// Ends the request body: the last chunk for chunked framing; for a declared length, a
    /// check that all of it was written (short of it, [`EncodeError::BodyUnderrun`], and the
    /// connection will not be reused: the origin still waits for the missing bytes).
    pub fn finish_body(&mut self, now: Instant) -> Result<(), EncodeError> {
        self.last_now = self.last_now.max(now);
        if !matches!(self.state, ClientState::Busy) {
            return Err(EncodeError::NoBodyInProgress);
        }
        match self.sender {
            Sender::Done | Sender::Broken => Err(EncodeError::NoBodyInProgress),
            Sender::Sized { .. } => {
                self.sender = Sender::Broken;
                // The origin may still answer (it times out the body, say): wait for that.
                self.request_done_at = Some(now);
                Err(EncodeError::BodyUnderrun)
            }
            Sender::Chunked => {
                self.output.extend_from_slice(LAST_CHUNK);
                self.request_sent(now);
                Ok(())
            }
        }
    }

    /// Whether the request (head and body) is completely written into the output.
    pub fn request_complete(&self) -> bool {
        self.sender == Sender::Done
    }

    /// Request bytes [`Self::write_body`] would take now.
    pub fn send_room(&self) -> usize {
        self.limits.send_buffer_bytes_max.saturating_sub(self.output.len())
    }

    /// Moves the bytes to write into `out`: by swapping buffers when `out` is empty (no copy),
    /// by appending otherwise.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.output);
        } else {
            out.extend_from_slice(&self.output);
            self.output.clear();
        }
    }

    /// Request bytes waiting to be taken.
    pub fn output_bytes(&self) -> usize {
        self.output.len()
    }

    /// Feeds bytes read from the origin and returns how many were consumed.
    ///
    /// Everything is consumed except: when the body buffer is full (take the `Body` events, then
    /// offer the rest again), and after a `101` head (the rest belongs to the new protocol).
    /// Bytes arriving on an idle connection close it (an origin must not speak unasked); bytes
    /// after a complete response make it single-use. On a closed connection input is discarded
    /// and reported consumed.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) -> usize {
        self.last_now = self.last_now.max(now);
        match self.state {
            ClientState::Busy => {}
            ClientState::Upgraded => return 0,
            ClientState::Closed => return bytes.len(),
            ClientState::Idle => {
                if !bytes.is_empty() {
                    tracing::debug!(bytes = bytes.len(), "http1 client: bytes on an idle connection");
                    self.close();
                }
                return bytes.len();
            }
        }
        let mut pos = 0;
        // Every pass consumes at least one byte or leaves, so this runs at most `bytes.len()`
        // times; the bound makes that explicit.
        for _ in 0..=bytes.len() {
            if pos >= bytes.len() {
                break;
            }
            let rest = &bytes[pos..];
            let consumed = match self.reader {
                Reader::Head => {
                    self.response_started = true;
                    self.receive_head(rest, now)
                }
                Reader::Body { .. } => self.receive_body(rest, now),
                Reader::Done if self.upgrade_pending || self.state == ClientState::Upgraded => 0,
                Reader::Done => {
                    self.spoiled = true;
                    rest.len()
                }
                Reader::Failed => rest.len(),
            };
            if consumed == 0 {
                break;
            }
            pos += consumed;
        }
        pos
    }

    /// The origin closed its side (EOF). Call it once every byte received was consumed. A
    /// close-delimited body ends; any other response in progress fails (`Truncated`, or
    /// `ClosedBeforeResponse` if none of it had arrived).
    pub fn peer_closed(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.spoiled = true;
        match self.state {
            ClientState::Idle => self.close(),
            ClientState::Busy => match &self.reader {
                Reader::Head if !self.response_started => self.fail(ResponseError::ClosedBeforeResponse),
                Reader::Head => self.fail(ResponseError::Truncated),
                Reader::Body { decoder: BodyDecoder::UntilClose, .. } => self.body_complete(),
                Reader::Body { .. } => self.fail(ResponseError::Truncated),
                Reader::Done | Reader::Failed => {}
            },
            ClientState::Upgraded | ClientState::Closed => {}
        }
    }

    /// The next event of the response, in order (see [`ClientEvent`]).
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(head) = self.head_ready.take() {
            return Some(ClientEvent::Head(head));
        }
        if !self.body_buf.is_empty() {
            return Some(ClientEvent::Body(std::mem::take(&mut self.body_buf)));
        }
        if std::mem::take(&mut self.upgrade_pending) {
            return Some(ClientEvent::Upgraded);
        }
        if std::mem::take(&mut self.end_pending) {
            let reusable = self.response_keep_alive
                && self.sender == Sender::Done
                && !self.request_close
                && !self.spoiled
                && self.state == ClientState::Busy;
            if reusable {
                self.state = ClientState::Idle;
                self.reader = Reader::Done;
            } else {
                self.close();
            }
            return Some(ClientEvent::End { reusable });
        }
        self.failure_pending.take().map(ClientEvent::Failed)
    }

    /// When [`Self::poll`] next has something to do (a timeout), if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.state != ClientState::Busy {
            return None;
        }
        match &self.reader {
            Reader::Head => self.request_done_at?.checked_add(self.limits.head_timeout),
            // A full buffer is the caller's stall, not the origin's.
            Reader::Body { last_progress, .. } if self.body_buf.len() < self.limits.body_buffer_bytes_max => {
                last_progress.checked_add(self.limits.body_timeout)
            }
            Reader::Body { .. } | Reader::Done | Reader::Failed => None,
        }
    }

    /// Applies timeouts as of `now`: a response head or body that does not arrive in time fails
    /// the exchange.
    pub fn poll(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.poll_at().is_some_and(|deadline| now >= deadline) {
            match self.reader {
                Reader::Head => self.fail(ResponseError::HeadTimeout),
                Reader::Body { .. } => self.fail(ResponseError::BodyTimeout),
                Reader::Done | Reader::Failed => {}
            }
        }
    }

    /// Whether the caller should read from the socket (and offer what it kept back): while a
    /// response is awaited and the body buffer has room, and on an idle connection (to notice
    /// the origin closing it).
    pub fn wants_read(&self) -> bool {
        match self.state {
            ClientState::Idle => true,
            ClientState::Busy => match self.reader {
                Reader::Head => true,
                Reader::Body { .. } => self.body_buf.len() < self.limits.body_buffer_bytes_max,
                Reader::Done | Reader::Failed => false,
            },
            ClientState::Upgraded | ClientState::Closed => false,
        }
    }

    /// Input bytes held by the codec (partial head, body not yet polled, head not yet polled).
    #[cfg(test)]
    fn input_bytes(&self) -> usize {
        self.head_buf.len() + self.body_buf.len()
    }

    fn request_sent(&mut self, now: Instant) {
        self.sender = Sender::Done;
        self.request_done_at = Some(now);
    }

    fn close(&mut self) {
        self.state = ClientState::Closed;
        self.head_buf = Vec::new();
        self.head_scan_pos = 0;
        self.head_attempt_len = 0;
        if !matches!(self.reader, Reader::Failed) {
            self.reader = Reader::Done;
        }
    }

    /// Fails the exchange: body bytes already buffered are still delivered, then `Failed`.
    fn fail(&mut self, error: ResponseError) {
        tracing::debug!(%error, "http1 client: response failed");
        self.error = Some(error);
        self.failure_pending = Some(error);
        self.close();
        self.reader = Reader::Failed;
    }

    fn receive_head(&mut self, input: &[u8], now: Instant) -> usize {
        let max = self.limits.head_bytes_max;
        if self.head_buf.is_empty() {
            // Usually the whole head is in `input`: parse it in place.
            let window = &input[..input.len().min(max)];
            return match self.parse_attempt(window) {
                Ok(Some(head)) => {
                    let len = head.len;
                    self.head_complete(head, now);
                    len
                }
                Ok(None) if window.len() < max => {
                    self.head_buf.extend_from_slice(window);
                    self.head_scan_pos = window.len();
                    self.head_attempt_len = window.len();
                    window.len()
                }
                Ok(None) => {
                    self.fail(ResponseError::HeadTooLarge);
                    input.len()
                }
                Err(error) => {
                    self.fail(error);
                    input.len()
                }
            };
        }

        let old_len = self.head_buf.len();
        let take = max.saturating_sub(old_len).min(input.len());
        self.head_buf.extend_from_slice(&input[..take]);
        let mut complete = None;
        // Each pass parses at most once per empty line found plus once per doubling, or leaves:
        // a head dribbled byte by byte costs O(n log n), and garbage is still refused early.
        for _ in 0..=take {
            let empty_line = find_empty_line(&self.head_buf, self.head_scan_pos);
            self.head_scan_pos = empty_line.map_or(self.head_buf.len(), |end| end + 1);
            let grown = self.head_buf.len() >= self.head_attempt_len.saturating_mul(2);
            if empty_line.is_none() && !grown {
                break;
            }
            self.head_attempt_len = self.head_buf.len();
            let buf = std::mem::take(&mut self.head_buf);
            let attempt = self.parse_attempt(&buf);
            self.head_buf = buf;
            match attempt {
                Ok(Some(head)) => {
                    complete = Some(head);
                    break;
                }
                Ok(None) if empty_line.is_some() => continue,
                Ok(None) => break,
                Err(error) => {
                    self.fail(error);
                    return input.len();
                }
            }
        }
        if let Some(head) = complete {
            // Every empty line was tried when it arrived, so this head ends in the new bytes.
            let Some(used) = head.len.checked_sub(old_len).filter(|&used| used > 0) else {
                self.fail(ResponseError::Malformed);
                return input.len();
            };
            self.head_buf.clear();
            self.head_scan_pos = 0;
            self.head_attempt_len = 0;
            self.head_complete(head, now);
            return used;
        }
        if self.head_buf.len() >= max {
            self.fail(ResponseError::HeadTooLarge);
            return input.len();
        }
        take
    }

    fn parse_attempt(&mut self, buf: &[u8]) -> Result<Option<ParsedHead>, ResponseError> {
        #[cfg(test)]
        {
            self.head_parse_attempts += 1;
        }
        parse_response_head(buf, &self.limits, self.request_is_head)
    }

    fn head_complete(&mut self, head: ParsedHead, now: Instant) {
        let ParsedHead { response, framing, keep_alive, .. } = head;
        // A head this large is released rather than kept for the next response.
        if self.head_buf.capacity() > 4096 {
            self.head_buf = Vec::new();
        }
        match response.status() {
            101 if self.request_upgrade => {
                self.head_ready = Some(response);
                self.upgrade_pending = true;
                self.reader = Reader::Done;
                self.state = ClientState::Upgraded;
            }
            101 => self.fail(ResponseError::UnexpectedUpgrade),
            100..=199 => {
                // Interim: skipped (RFC 9110 §15.2); the head timeout keeps running.
                self.interim_responses += 1;
                if self.interim_responses > self.limits.interim_responses_max {
                    self.fail(ResponseError::TooManyInterimResponses);
                }
            }
            _ => {
                self.head_ready = Some(response);
                self.response_keep_alive = keep_alive;
                let decoder = match framing {
                    ResponseFraming::Empty => {
                        self.body_complete();
                        return;
                    }
                    ResponseFraming::Length(remaining) => BodyDecoder::Length { remaining },
                    ResponseFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
                    ResponseFraming::UntilClose => BodyDecoder::UntilClose,
                };
                self.reader = Reader::Body { decoder, last_progress: now };
            }
        }
    }

    fn receive_body(&mut self, input: &[u8], now: Instant) -> usize {
        let room = self.limits.body_buffer_bytes_max.saturating_sub(self.body_buf.len());
        let Reader::Body { decoder, last_progress } = &mut self.reader else {
            return 0;
        };
        let result = match decoder {
            BodyDecoder::Length { remaining } => {
                let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len()).min(room);
                self.body_buf.extend_from_slice(&input[..n]);
                *remaining -= n as u64;
                Ok((n, *remaining == 0))
            }
            BodyDecoder::Chunked(decoder) => {
                let limits = ChunkLimits {
                    body_bytes_max: u64::MAX,
                    line_bytes_max: self.limits.chunk_line_bytes_max,
                    trailer_bytes_max: self.limits.trailer_bytes_max,
                };
                decoder.decode(input, &mut self.body_buf, room, limits).map(|n| (n, decoder.is_done()))
            }
            BodyDecoder::UntilClose => {
                let n = input.len().min(room);
                self.body_buf.extend_from_slice(&input[..n]);
                Ok((n, false))
            }
        };
        match result {
            Ok((consumed, done)) => {
                if consumed > 0 {
                    *last_progress = now;
                }
                if done {
                    self.body_complete();
                }
                consumed
            }
            Err(error) => {
                self.fail(error.into());
                input.len()
            }
        }
    }

    fn body_complete(&mut self) {
        self.reader = Reader::Done;
        self.end_pending = true;
    }
}

/// What the caller's header fields say that the codec must know.
struct CheckedRequest {
    upgrade: bool,
    close: bool,
}

/// Validates everything the caller chose: a CR or LF anywhere would let a tenant write a second
/// request (request splitting) onto a connection we believe we frame.
fn check_request(request: &OutgoingRequest) -> Result<CheckedRequest, EncodeError> {
    if request.method.is_empty() || !request.method.bytes().all(is_tchar) {
        return Err(EncodeError::InvalidMethod);
    }
    if request.method == "CONNECT" {
        return Err(EncodeError::UnsupportedMethod);
    }
    let target = request.target.as_bytes();
    let origin_form = target.first() == Some(&b'/') && target.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b'#');
    let asterisk_form = target == b"*" && request.method == "OPTIONS";
    if !(origin_form || asterisk_form) {
        return Err(EncodeError::InvalidTarget);
    }
    if request.host.is_empty() || !request.host.bytes().all(is_host_byte) {
        return Err(EncodeError::InvalidHost);
    }
    let mut checked = CheckedRequest { upgrade: false, close: false };
    for (index, (name, value)) in request.headers.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(EncodeError::InvalidHeaderName(index));
        }
        if !value.iter().all(|&b| b == b'\t' || b == b' ' || is_visible_or_obs(b)) {
            return Err(EncodeError::InvalidHeaderValue(index));
        }
        if name.eq_ignore_ascii_case("connection") {
            checked.close |= value.split(|&b| b == b',').any(|e| e.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case("upgrade") {
            checked.upgrade = true;
        }
    }
    Ok(checked)
}

/// Writes the request line and header section; `check_request` accepted the request.
fn write_request_head(out: &mut Vec<u8>, request: &OutgoingRequest) {
    let OutgoingRequest { method, target, host, headers, body } = request;
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if is_codec_field(name) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match body {
        BodyFraming::None if matches!(method.as_str(), "POST" | "PUT" | "PATCH") => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        BodyFraming::None => {}
        BodyFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            write_decimal(out, *length);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

fn is_codec_field(name: &str) -> bool {
    name.eq_ignore_ascii_case("host")
        || name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding")
}
