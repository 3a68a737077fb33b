//! The per-connection state machine: reads requests, orders responses, keeps time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::chunked::{CHUNK_LINE_BYTES_MAX, ChunkLimits, ChunkedDecoder};
use super::request::{self, Framing, Head, Request};
use super::response::{self, CONTINUE, ConnectionField, FramingField, LAST_CHUNK, Response, ResponseHead};
use super::{Limits, RequestError, RequestId, RespondError, Version};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Reading requests and writing responses.
    Open,
    /// No more requests will be read (input is discarded); responses still owed or output not
    /// yet taken.
    Closing,
    /// Nothing left: write out what was taken, shut the write side down, close the socket.
    Closed,
    /// The connection switched protocols ([`ServerConn::upgrade`]): write out what was taken;
    /// every byte after that belongs to the new protocol, not to this codec.
    Upgraded,
}

/// Above this capacity the head buffer is released between requests rather than kept: most
/// heads are small, and a connection that once sent a 32 KiB head should not keep 32 KiB.
const HEAD_BUFFER_KEEP_BYTES: usize = 4096;

/// The most body bytes reserved up front from a declared Content-Length. A peer can declare a
/// length for free; it has to send bytes to make us hold more than this.
const BODY_RESERVE_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug)]
enum Reader {
    /// Between requests or inside a head (`ServerConn::head_buf`).
    Head,
    Body(BodyInProgress),
    /// Not reading: closing, after an error, a `close`, a timeout or the peer's EOF.
    Stopped,
    /// The last request asked to switch protocols (`upgrade`): nothing after it is read until
    /// its answer says whether the connection switches ([`ServerConn::upgrade`]) or stays HTTP.
    UpgradeAsked(RequestId),
    /// Switched protocols: the codec reads nothing more.
    Upgraded,
}

#[derive(Debug)]
struct BodyInProgress {
    request: Request,
    decoder: BodyDecoder,
    last_progress: Instant,
}

#[derive(Debug)]
enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// One request's place in the response order.
#[derive(Debug)]
struct Slot {
    id: RequestId,
    version: Version,
    is_head: bool,
    /// The request asked for the connection to close after its response.
    close_requested: bool,
    /// Handed to the caller by `poll_request`; only then may the caller respond.
    delivered: bool,
    /// `100 Continue` is owed and goes out when this slot reaches the front.
    continue_pending: bool,
    progress: Progress,
    /// The connection closes once this slot's response is written.
    close_after: bool,
    /// Response bytes held back until every earlier response is written. Always empty for the
    /// front slot, which writes straight into the output.
    buffered: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Waiting,
    Streaming(BodyMode),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    /// HEAD, 204, 205, 304: body bytes are dropped.
    Discard,
    Sized {
        remaining: u64,
    },
    Chunked,
    /// HTTP/1.0 with unknown length: the body ends when the connection does.
    UntilClose,
}

/// The HTTP/1.1 server side of one connection. See the module documentation for the loop.
#[derive(Debug)]
pub struct ServerConn {
    limits: Limits,
    reader: Reader,
    /// The head received so far when it did not arrive in one piece; at most `head_bytes_max`.
    head_buf: Vec<u8>,
    /// `head_buf` has been searched for an empty line up to here.
    head_scan_pos: usize,
    /// `head_buf` length at the last parse attempt; the next happens at an empty line or at
    /// twice this length, which keeps a head dribbled byte by byte O(n) and still rejects
    /// garbage early.
    head_attempt_len: usize,
    /// When the first byte of the head in progress arrived.
    head_started: Option<Instant>,
    /// Complete requests not yet polled. Each has a slot, so this is bounded like `slots`.
    ready: VecDeque<Request>,
    /// Requests whose responses are not fully written, in request order: at most
    /// `pipeline_depth_max` plus one error response.
    slots: VecDeque<Slot>,
    next_id: u64,
    output: Vec<u8>,
    /// Since when nothing has been in flight; `None` while busy, or idle but not yet stamped
    /// (responses are given without a time; the next `poll` or `receive` stamps it).
    idle_since: Option<Instant>,
    last_now: Instant,
    error: Option<RequestError>,
    #[cfg(test)]
    pub(super) head_parse_attempts: usize,
}

impl ServerConn {
    /// A connection accepted at `now`. `limits` are clamped to what the codec can enforce
    /// ([`Limits::clamped`]).
    pub fn new(limits: Limits, now: Instant) -> Self {
        let limits = limits.clamped();
        Self {
            limits,
            reader: Reader::Head,
            head_buf: Vec::new(),
            head_scan_pos: 0,
            head_attempt_len: 0,
            head_started: None,
            ready: VecDeque::with_capacity(limits.pipeline_depth_max),
            slots: VecDeque::with_capacity(limits.pipeline_depth_max + 1),
            next_id: 0,
            output: Vec::new(),
            idle_since: Some(now),
            last_now: now,
            error: None,
            #[cfg(test)]
            head_parse_attempts: 0,
        }
    }

    /// Feeds bytes read from the peer and returns how many were consumed.
    ///
    /// Everything is consumed unless the codec is back-pressured ([`Self::wants_read`] turns
    /// false: `pipeline_depth_max` unanswered requests, or `backlog_bytes_max` of response
    /// waiting); then it stops at the start of the next request, and the caller keeps the rest
    /// and offers it again once `wants_read` is true. Bytes are copied out as they are consumed:
    /// a head that arrives whole is parsed in place, a partial one is buffered (at most
    /// `head_bytes_max`), bodies go straight into their request. Once reading has stopped
    /// ([`ConnState::Closing`] or [`ConnState::Closed`]) input is discarded and reported consumed.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) -> usize {
        self.last_now = self.last_now.max(now);
        let mut pos = 0;
        // Every pass consumes at least one byte or leaves, so this runs at most `bytes.len()`
        // times; the bound makes that explicit.
        for _ in 0..=bytes.len() {
            if pos >= bytes.len() {
                break;
            }
            let consumed = match self.reader {
                Reader::Stopped => bytes.len() - pos,
                // Bytes after an upgrade request wait for its answer (the caller keeps them).
                Reader::UpgradeAsked(_) | Reader::Upgraded => 0,
                Reader::Body(_) => self.receive_body(&bytes[pos..], now),
                Reader::Head => {
                    if self.head_buf.is_empty() {
                        // Between requests: skip empty lines (RFC 9112 §2.2). They do not count
                        // as activity, so they cannot hold an idle connection open.
                        let rest = &bytes[pos..];
                        let skip = rest.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                        pos += skip;
                        if pos == bytes.len() || self.is_blocked() {
                            break;
                        }
                    }
                    self.receive_head(&bytes[pos..], now)
                }
            };
            if consumed == 0 {
                break;
            }
            pos += consumed;
        }
        self.stamp_idle(now);
        pos
    }

    /// The peer closed its side (EOF). A request in progress is dropped without a response;
    /// requests already complete are still answered (the peer may only have half-closed).
    pub fn peer_closed(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if let Reader::Body(body) = &self.reader
            && self.slots.back().is_some_and(|slot| slot.id == body.request.id())
        {
            self.slots.pop_back();
        }
        self.stop_reading();
    }

    /// The next complete request, in arrival order.
    pub fn poll_request(&mut self) -> Option<Request> {
        let request = self.ready.pop_front()?;
        if let Some(index) = self.slot_index(request.id()) {
            self.slots[index].delivered = true;
        }
        Some(request)
    }

    /// Answers a request with a complete response, in any order: it is written once every
    /// earlier response has been. The codec writes `content-length` (none for 204 and 304) and,
    /// if the connection closes after it, `connection: close`. A HEAD request gets the head only,
    /// with the length of the body given.
    pub fn respond(&mut self, id: RequestId, response: Response) -> Result<(), RespondError> {
        let index = self.waiting_slot(id)?;
        let Response { status, reason, headers, body } = response;
        let close_asked = response::check(status, reason.as_deref(), &headers)?;
        self.upgrade_declined(id);
        let slot = &self.slots[index];
        let discard_body = slot.is_head || response::status_forbids_body(status);
        let framing = match status {
            204 | 304 => FramingField::None,
            205 => FramingField::Length(0),
            _ => FramingField::Length(body.len() as u64),
        };
        let close = slot.close_requested || close_asked;
        let connection = connection_field(slot.version, close);
        let sink = self.sink(index);
        response::write_head(sink, status, reason.as_deref(), &headers, framing, connection);
        if !discard_body {
            sink.extend_from_slice(&body);
        }
        self.finish(index, close);
        Ok(())
    }

    /// Starts a streamed response; follow with [`Self::body_chunk`]s and [`Self::body_end`].
    /// With `content_length: None` the body is chunked (or, for an HTTP/1.0 request,
    /// delimited by closing the connection).
    pub fn respond_head(&mut self, id: RequestId, head: ResponseHead) -> Result<(), RespondError> {
        let index = self.waiting_slot(id)?;
        let ResponseHead { status, reason, headers, content_length } = head;
        let close_asked = response::check(status, reason.as_deref(), &headers)?;
        self.upgrade_declined(id);
        let slot = &self.slots[index];
        let (framing, mode) = if response::status_forbids_body(status) {
            let framing = if status == 205 { FramingField::Length(0) } else { FramingField::None };
            (framing, BodyMode::Discard)
        } else if slot.is_head {
            (content_length.map_or(FramingField::None, FramingField::Length), BodyMode::Discard)
        } else {
            match (content_length, slot.version) {
                (Some(length), _) => (FramingField::Length(length), BodyMode::Sized { remaining: length }),
                (None, Version::Http11) => (FramingField::Chunked, BodyMode::Chunked),
                (None, Version::Http10) => (FramingField::None, BodyMode::UntilClose),
            }
        };
        let close = slot.close_requested || close_asked || mode == BodyMode::UntilClose;
        let connection = connection_field(slot.version, close);
        response::write_head(self.sink(index), status, reason.as_deref(), &headers, framing, connection);
        let slot = &mut self.slots[index];
        slot.progress = Progress::Streaming(mode);
        slot.close_after = close;
        if close {
            self.drop_after(index);
        }
        Ok(())
    }

    /// More body of a streamed response. Bodies of HEAD/204/205/304 responses are dropped.
    pub fn body_chunk(&mut self, id: RequestId, data: &[u8]) -> Result<(), RespondError> {
        let (index, mode) = self.streaming_slot(id)?;
        match mode {
            BodyMode::Discard => {}
            BodyMode::Sized { remaining } => {
                let length = data.len() as u64;
                if length > remaining {
                    return Err(RespondError::BodyOverrun);
                }
                self.sink(index).extend_from_slice(data);
                self.slots[index].progress = Progress::Streaming(BodyMode::Sized { remaining: remaining - length });
            }
            BodyMode::Chunked => response::write_chunk(self.sink(index), data),
            BodyMode::UntilClose => self.sink(index).extend_from_slice(data),
        }
        Ok(())
    }

    /// Ends a streamed response. Short of the declared content-length, the response cannot be
    /// repaired: it ends, the connection closes after it, and `BodyUnderrun` says so.
    pub fn body_end(&mut self, id: RequestId) -> Result<(), RespondError> {
        let (index, mode) = self.streaming_slot(id)?;
        let mut close = self.slots[index].close_after;
        let mut result = Ok(());
        match mode {
            BodyMode::Sized { remaining } if remaining > 0 => {
                close = true;
                result = Err(RespondError::BodyUnderrun);
            }
            BodyMode::Chunked => self.sink(index).extend_from_slice(LAST_CHUNK),
            BodyMode::Discard | BodyMode::Sized { .. } | BodyMode::UntilClose => {}
        }
        self.finish(index, close);
        result
    }

    /// Gives up on a response (the isolate failed mid-stream, say): what was written stays, the
    /// rest never comes, and the connection closes after it, so the peer sees a truncated
    /// response rather than a complete-looking wrong one. Also valid before any head.
    pub fn body_abort(&mut self, id: RequestId) -> Result<(), RespondError> {
        let index = self.slot_index(id).ok_or(RespondError::UnknownRequest)?;
        let slot = &self.slots[index];
        if !slot.delivered || slot.progress == Progress::Done {
            return Err(RespondError::UnknownRequest);
        }
        self.upgrade_declined(id);
        self.finish(index, true);
        Ok(())
    }

    /// Answers request `id`, which asked to switch protocols, with `101 Switching Protocols`,
    /// `headers` (the new protocol's: `upgrade`, `sec-websocket-accept`, ...) and
    /// `connection: upgrade`. From then on the connection is the caller's: the codec reads
    /// nothing more and its state is [`ConnState::Upgraded`] once the head is taken. Only the
    /// last request read may switch, and only once every earlier response is written.
    pub fn upgrade(&mut self, id: RequestId, headers: &[(String, Vec<u8>)]) -> Result<(), RespondError> {
        let index = self.waiting_slot(id)?;
        if !matches!(self.reader, Reader::UpgradeAsked(asked) if asked == id) || index != 0 {
            return Err(RespondError::NotUpgradable);
        }
        response::check(200, None, headers)?;
        response::write_head(&mut self.output, 101, None, headers, FramingField::None, ConnectionField::Upgrade);
        self.slots.clear();
        self.ready.clear();
        self.stop_reading();
        self.reader = Reader::Upgraded;
        Ok(())
    }

    /// Request `id` asked to switch protocols and gets an ordinary answer: reading goes on.
    fn upgrade_declined(&mut self, id: RequestId) {
        if matches!(self.reader, Reader::UpgradeAsked(asked) if asked == id) {
            self.reader = Reader::Head;
        }
    }

    /// Moves the bytes to write into `out`: by swapping buffers when `out` is empty (no copy;
    /// `out`'s old allocation is recycled for later output), by appending otherwise.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.output);
        } else {
            out.extend_from_slice(&self.output);
            self.output.clear();
        }
    }

    /// Response bytes waiting in the codec: not yet taken, plus those held behind an earlier
    /// response. A caller streaming a body should pause its source while this is large.
    pub fn backlog_bytes(&self) -> usize {
        self.output.len() + self.slots.iter().map(|slot| slot.buffered.len()).sum::<usize>()
    }

    /// When [`Self::poll`] next has something to do (a timeout), if ever. An instant in the past
    /// means "poll now" (an idle period began without a timestamp, after a response).
    pub fn poll_at(&self) -> Option<Instant> {
        match &self.reader {
            // After an upgrade request, the application's limits hold.
            Reader::Stopped | Reader::UpgradeAsked(_) | Reader::Upgraded => None,
            Reader::Body(body) => body.last_progress.checked_add(self.limits.body_timeout),
            Reader::Head => match self.head_started {
                Some(started) => started.checked_add(self.limits.head_timeout),
                None if self.slots.is_empty() => match self.idle_since {
                    Some(since) => since.checked_add(self.limits.idle_timeout),
                    None => Some(self.last_now),
                },
                // Waiting for the application, which has its own limits.
                None => None,
            },
        }
    }

    /// Applies timeouts as of `now`: idle keep-alive -> close without a response; head or body
    /// not arriving in time -> 408 and close.
    pub fn poll(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let expired =
            |since: Instant, timeout: Duration| since.checked_add(timeout).is_some_and(|deadline| now >= deadline);
        match (&self.reader, self.head_started) {
            (Reader::Body(body), _) if expired(body.last_progress, self.limits.body_timeout) => {
                self.fail(RequestError::BodyTimeout);
            }
            (Reader::Head, Some(started)) if expired(started, self.limits.head_timeout) => {
                self.fail(RequestError::HeadTimeout);
            }
            (Reader::Head, None) if self.slots.is_empty() => match self.idle_since {
                Some(since) if expired(since, self.limits.idle_timeout) => {
                    tracing::trace!("http1: idle keep-alive connection timed out");
                    self.stop_reading();
                }
                Some(_) => {}
                None => self.idle_since = Some(now),
            },
            // Waiting for the application, which has its own limits; or not reading at all.
            _ => {}
        }
    }

    /// Whether the caller should read from the socket (and offer what it kept back).
    pub fn wants_read(&self) -> bool {
        match self.reader {
            Reader::Stopped | Reader::UpgradeAsked(_) | Reader::Upgraded => false,
            Reader::Body(_) => true,
            Reader::Head => !self.head_buf.is_empty() || !self.is_blocked(),
        }
    }

    pub fn state(&self) -> ConnState {
        match self.reader {
            Reader::Head | Reader::Body(_) | Reader::UpgradeAsked(_) => ConnState::Open,
            Reader::Upgraded if self.output.is_empty() => ConnState::Upgraded,
            Reader::Upgraded => ConnState::Closing,
            Reader::Stopped if self.slots.is_empty() && self.output.is_empty() => ConnState::Closed,
            Reader::Stopped => ConnState::Closing,
        }
    }

    /// Why the last request was rejected, for logs and metrics.
    pub fn error(&self) -> Option<RequestError> {
        self.error
    }

    /// Input bytes held by the codec (partial head, partial body, unpolled requests).
    #[cfg(test)]
    pub(super) fn input_bytes(&self) -> usize {
        let body = match &self.reader {
            Reader::Body(body) => body.request.held_bytes(),
            Reader::Head | Reader::Stopped | Reader::UpgradeAsked(_) | Reader::Upgraded => 0,
        };
        self.head_buf.len() + body + self.ready.iter().map(Request::held_bytes).sum::<usize>()
    }

    fn is_blocked(&self) -> bool {
        self.slots.len() >= self.limits.pipeline_depth_max || self.backlog_bytes() >= self.limits.backlog_bytes_max
    }

    fn receive_head(&mut self, input: &[u8], now: Instant) -> usize {
        if self.head_buf.is_empty() {
            // The head starts here. Usually it is all in `input`: parse it in place.
            self.head_started = Some(now);
            self.idle_since = None;
            let window = &input[..input.len().min(self.limits.head_bytes_max)];
            return match self.parse_attempt(window) {
                Ok(Some(head)) => {
                    let len = head.len;
                    self.head_complete(head, now);
                    len
                }
                Ok(None) if window.len() < self.limits.head_bytes_max => {
                    self.head_buf.extend_from_slice(window);
                    self.head_scan_pos = window.len();
                    self.head_attempt_len = window.len();
                    window.len()
                }
                Ok(None) => {
                    self.fail(request::overflow_error(window, &self.limits));
                    input.len()
                }
                Err(error) => {
                    self.fail(error);
                    input.len()
                }
            };
        }

        let old_len = self.head_buf.len();
        let take = self.limits.head_bytes_max.saturating_sub(old_len).min(input.len());
        self.head_buf.extend_from_slice(&input[..take]);
        let mut complete = None;
        // Each pass either parses (at most once per empty line found, plus once per doubling)
        // or leaves; the scan position only moves forward.
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
            // Heads end at the first empty line and every empty line was tried when it arrived,
            // so this head ends inside the new bytes.
            let Some(used) = head.len.checked_sub(old_len).filter(|&used| used > 0) else {
                self.fail(RequestError::Malformed);
                return input.len();
            };
            self.reset_head_buffer();
            self.head_complete(head, now);
            return used;
        }
        if self.head_buf.len() >= self.limits.head_bytes_max {
            self.fail(request::overflow_error(&self.head_buf, &self.limits));
            return input.len();
        }
        take
    }

    fn parse_attempt(&mut self, buf: &[u8]) -> Result<Option<Head>, RequestError> {
        #[cfg(test)]
        {
            self.head_parse_attempts += 1;
        }
        request::parse_head(buf, &self.limits)
    }

    fn reset_head_buffer(&mut self) {
        if self.head_buf.capacity() > HEAD_BUFFER_KEEP_BYTES {
            self.head_buf = Vec::new();
        } else {
            self.head_buf.clear();
        }
        self.head_scan_pos = 0;
        self.head_attempt_len = 0;
    }

    fn head_complete(&mut self, head: Head, now: Instant) {
        let Head { mut request, framing, expect_continue, .. } = head;
        self.head_started = None;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        request.set_id(id);
        self.push_slot(Slot {
            id,
            version: request.version(),
            is_head: request.is_head(),
            close_requested: !request.keep_alive(),
            delivered: false,
            continue_pending: expect_continue,
            progress: Progress::Waiting,
            close_after: false,
            buffered: Vec::new(),
        });
        let decoder = match framing {
            Framing::Empty => {
                self.request_complete(request);
                return;
            }
            Framing::Length(length) => {
                let reserve = usize::try_from(length).unwrap_or(usize::MAX).min(BODY_RESERVE_BYTES_MAX);
                request.body_mut().reserve_exact(reserve);
                BodyDecoder::Length { remaining: length }
            }
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
        };
        self.reader = Reader::Body(BodyInProgress { request, decoder, last_progress: now });
    }

    fn receive_body(&mut self, input: &[u8], now: Instant) -> usize {
        let Reader::Body(body) = &mut self.reader else {
            return 0;
        };
        let result = match &mut body.decoder {
            BodyDecoder::Length { remaining } => {
                let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                body.request.body_mut().extend_from_slice(&input[..n]);
                *remaining -= n as u64;
                Ok((n, *remaining == 0))
            }
            BodyDecoder::Chunked(decoder) => {
                let limits = ChunkLimits {
                    body_bytes_max: u64::try_from(self.limits.body_bytes_max).unwrap_or(u64::MAX),
                    line_bytes_max: CHUNK_LINE_BYTES_MAX,
                    trailer_bytes_max: self.limits.head_bytes_max,
                };
                decoder
                    .decode(input, body.request.body_mut(), usize::MAX, limits)
                    .map(|n| (n, decoder.is_done()))
                    .map_err(RequestError::from)
            }
        };
        match result {
            Ok((consumed, done)) => {
                if consumed > 0 {
                    body.last_progress = now;
                }
                if done && let Reader::Body(body) = std::mem::replace(&mut self.reader, Reader::Head) {
                    self.request_complete(body.request);
                }
                consumed
            }
            Err(error) => {
                self.fail(error);
                input.len()
            }
        }
    }

    fn request_complete(&mut self, request: Request) {
        let keep_alive = request.keep_alive();
        let upgrade = asks_upgrade(&request);
        let id = request.id();
        self.ready.push_back(request);
        if upgrade {
            // RFC 9110 §7.8: the bytes after it may already be the new protocol's.
            self.reader = Reader::UpgradeAsked(id);
        } else if keep_alive {
            self.reader = Reader::Head;
        } else {
            // RFC 9112 §9.6: nothing after a request that asked to close is processed.
            self.stop_reading();
        }
    }

    fn push_slot(&mut self, mut slot: Slot) {
        if self.slots.is_empty() && slot.continue_pending {
            self.output.extend_from_slice(CONTINUE);
            slot.continue_pending = false;
        }
        self.slots.push_back(slot);
    }

    /// Rejects the request being read: its error response takes its place in the order (a new
    /// one if its head never completed), then the connection closes.
    fn fail(&mut self, error: RequestError) {
        tracing::debug!(%error, status = error.status(), "http1: rejecting request");
        self.error = Some(error);
        let body_id = match &self.reader {
            Reader::Body(body) => Some(body.request.id()),
            Reader::Head | Reader::Stopped | Reader::UpgradeAsked(_) | Reader::Upgraded => None,
        };
        self.stop_reading();
        let index = match self.slots.back() {
            // Its `100 Continue`, if owed, still goes first: the same bytes whichever way the
            // input was split.
            Some(slot) if Some(slot.id) == body_id => self.slots.len() - 1,
            _ => {
                let id = RequestId(self.next_id);
                self.next_id += 1;
                self.push_slot(Slot {
                    id,
                    version: Version::Http11,
                    is_head: false,
                    close_requested: true,
                    delivered: false,
                    continue_pending: false,
                    progress: Progress::Waiting,
                    close_after: true,
                    buffered: Vec::new(),
                });
                self.slots.len() - 1
            }
        };
        response::write_error(self.sink(index), error);
        self.finish(index, true);
    }

    /// Marks a slot's response complete and writes out every response now in order.
    fn finish(&mut self, index: usize, close: bool) {
        let slot = &mut self.slots[index];
        slot.progress = Progress::Done;
        slot.close_after = close;
        if close {
            self.drop_after(index);
        }
        while let Some(front) = self.slots.front() {
            if front.progress != Progress::Done {
                break;
            }
            let close = front.close_after;
            self.slots.pop_front();
            if close {
                self.stop_reading();
                self.slots.clear();
                self.ready.clear();
                break;
            }
            if let Some(next) = self.slots.front_mut() {
                if next.continue_pending {
                    next.continue_pending = false;
                    self.output.extend_from_slice(CONTINUE);
                }
                if self.output.is_empty() {
                    std::mem::swap(&mut self.output, &mut next.buffered);
                } else {
                    self.output.extend_from_slice(&next.buffered);
                    next.buffered = Vec::new();
                }
            }
        }
    }

    /// The connection closes after slot `index`: stop reading and forget every later request.
    fn drop_after(&mut self, index: usize) {
        let id = self.slots[index].id;
        self.slots.truncate(index + 1);
        self.ready.retain(|request| request.id() <= id);
        self.stop_reading();
    }

    fn stop_reading(&mut self) {
        self.reader = Reader::Stopped;
        self.head_buf = Vec::new();
        self.head_scan_pos = 0;
        self.head_attempt_len = 0;
        self.head_started = None;
        self.idle_since = None;
    }

    /// Starts the idle clock if the connection just became idle.
    fn stamp_idle(&mut self, now: Instant) {
        let idle = matches!(self.reader, Reader::Head) && self.head_buf.is_empty() && self.slots.is_empty();
        if idle && self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    /// Where slot `index` writes: the output itself for the front slot, else its own buffer.
    fn sink(&mut self, index: usize) -> &mut Vec<u8> {
        if index == 0 { &mut self.output } else { &mut self.slots[index].buffered }
    }

    fn slot_index(&self, id: RequestId) -> Option<usize> {
        let front = self.slots.front()?.id.0;
        let index = usize::try_from(id.0.checked_sub(front)?).ok()?;
        // Slot ids are consecutive: assigned in order, removed from the front or the back.
        self.slots.get(index).filter(|slot| slot.id == id).map(|_| index)
    }

    fn waiting_slot(&self, id: RequestId) -> Result<usize, RespondError> {
        let index = self.slot_index(id).ok_or(RespondError::UnknownRequest)?;
        let slot = &self.slots[index];
        match slot.progress {
            _ if !slot.delivered => Err(RespondError::UnknownRequest),
            Progress::Waiting => Ok(index),
            Progress::Streaming(_) | Progress::Done => Err(RespondError::AlreadyResponded),
        }
    }

    fn streaming_slot(&self, id: RequestId) -> Result<(usize, BodyMode), RespondError> {
        let index = self.slot_index(id).ok_or(RespondError::UnknownRequest)?;
        match self.slots[index].progress {
            Progress::Streaming(mode) if self.slots[index].delivered => Ok((index, mode)),
            _ => Err(RespondError::NotStreaming),
        }
    }
}

/// An HTTP/1.1 request that asks to switch protocols: an `upgrade` field named by a
/// `connection` option (RFC 9110 §7.8).
fn asks_upgrade(request: &Request) -> bool {
    request.version() == Version::Http11
        && request.header("upgrade").is_some()
        && request.headers().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value.split(|&b| b == b',').any(|option| option.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

fn connection_field(version: Version, close: bool) -> ConnectionField {
    match (close, version) {
        (true, _) => ConnectionField::Close,
        (false, Version::Http10) => ConnectionField::KeepAlive,
        (false, Version::Http11) => ConnectionField::None,
    }
}

/// The index of the first LF at or after `from` that ends an empty line (`\n\n` or `\n\r\n`).
pub(super) fn find_empty_line(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.min(buf.len());
    buf[start..].iter().enumerate().find_map(|(offset, &byte)| {
        let i = start + offset;
        let ends_empty_line =
            byte == b'\n' && (i >= 1 && buf[i - 1] == b'\n' || i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n');
        ends_empty_line.then_some(i)
    })
}
