//! WebSocket framing (RFC 6455) after the HTTP upgrade, sans-IO, for both roles: serving a
//! Worker's `WebSocketPair` and opening `new WebSocket(url)`.
//!
//! The protocol is tungstenite's (`WebSocketContext`: framing, masking, fragmentation, control
//! frames, the close handshake, UTF-8 checks), driven over an in-memory byte pipe instead of a
//! socket: [`WsConnection::receive`] puts the peer's bytes in, [`WsConnection::poll_message`]
//! takes messages out, [`WsConnection::send`] queues messages and
//! [`WsConnection::take_output`] drains the bytes to write. No socket, no clock. Every buffer has
//! a bound ([`WsLimits`]); a frame or message over its bound closes the connection with 1009
//! and an error, a protocol violation with 1002, bad UTF-8 with 1007. What it must not do: the
//! HTTP upgrade itself (the codecs and the caller do it, with [`accept_key`]), timeouts (the
//! caller's), or hold a peer's bytes without bound.
//!
//! Why tungstenite: its protocol layer is the most used WebSocket implementation in Rust,
//! already written for non-blocking streams (it returns `WouldBlock` and resumes), so it runs
//! over a buffer unchanged. One caveat: a client masks its frames with keys from `rand`'s
//! thread-local generator, which seeds itself from the OS; that is the one place netstack's
//! dependencies read system randomness (masks must be unpredictable, RFC 6455 §5.3).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use tungstenite::error::{CapacityError, Error as TungError};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Message, Role, WebSocketConfig, WebSocketContext};

/// Which end of the connection this is: the server (answered the upgrade; receives masked
/// frames) or the client (sent it; masks its frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRole {
    Server,
    Client,
}

/// Bounds on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// One frame's payload, either direction's incoming side. Larger -> close 1009.
    pub frame_bytes_max: usize,
    /// One message (all its fragments). Larger -> close 1009; larger outgoing -> refused.
    pub message_bytes_max: usize,
    /// Peer bytes held before the protocol reads them; `receive` takes no more.
    pub incoming_bytes_max: usize,
    /// Bytes to write held until taken; `send` refuses new messages past it.
    pub outgoing_bytes_max: usize,
}

impl Default for WsLimits {
    /// Workers allow messages up to 1 MiB.
    fn default() -> Self {
        Self {
            frame_bytes_max: 1024 * 1024,
            message_bytes_max: 1024 * 1024,
            incoming_bytes_max: 64 * 1024,
            outgoing_bytes_max: 1024 * 1024 + 64 * 1024,
        }
    }
}

/// A message, either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Text(String),
    Binary(Vec<u8>),
    /// Answered with a pong by the protocol itself.
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The peer started or answered the close handshake, with its code and reason if any.
    Close(Option<(u16, String)>),
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsState {
    Open,
    /// A close frame was sent or received; the handshake is finishing.
    Closing,
    /// Over: write what [`WsConnection::take_output`] gives, then close the TCP connection.
    Closed,
}

/// Why the connection failed (the close frame named is queued for the peer), or why a send
/// was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum WsError {
    /// a frame or message is larger than {max_bytes} bytes (closed with 1009)
    TooLarge { max_bytes: usize },
    /// the peer broke the WebSocket protocol: {reason} (closed with 1002)
    Protocol { reason: String },
    /// a text message is not valid UTF-8 (closed with 1007)
    InvalidUtf8,
    /// the peer closed the connection without a close frame
    ResetWithoutClose,
    /// the message is larger than {max_bytes} bytes and was not sent
    MessageTooLarge { max_bytes: usize },
    /// {queued_bytes} bytes wait to be written: take the output first
    OutgoingFull { queued_bytes: usize },
    /// the connection is closing or closed
    Closed,
    /// close code {code} may not be sent (RFC 6455 §7.4)
    InvalidCloseCode { code: u16 },
}

/// `Sec-WebSocket-Accept` for a request's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(request_key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(request_key)
}

/// A fresh `Sec-WebSocket-Key` for a client's upgrade request (16 random bytes, base64).
pub fn client_key() -> String {
    tungstenite::handshake::client::generate_key()
}

/// The byte pipe tungstenite reads from and writes to.
#[derive(Debug, Default)]
struct Pipe {
    incoming: Vec<u8>,
    read_pos: usize,
    eof: bool,
    outgoing: Vec<u8>,
}

impl Pipe {
    fn unread(&self) -> usize {
        self.incoming.len() - self.read_pos
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let unread = &self.incoming[self.read_pos..];
        if unread.is_empty() {
            // No bytes yet is not the end of the stream: tungstenite resumes on the next call.
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = unread.len().min(buf.len());
        buf[..n].copy_from_slice(&unread[..n]);
        self.read_pos += n;
        if self.read_pos == self.incoming.len() {
            self.incoming.clear();
            self.read_pos = 0;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One WebSocket connection after the upgrade. See the module documentation.
pub struct WsConnection {
    context: WebSocketContext,
    pipe: Pipe,
    limits: WsLimits,
    /// The close handshake is over, or the connection failed.
    terminated: bool,
    error: Option<WsError>,
}

impl std::fmt::Debug for WsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnection")
            .field("state", &self.state())
            .field("limits", &self.limits)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl WsConnection {
    pub fn new(role: WsRole, limits: WsLimits) -> Self {
        let role = match role {
            WsRole::Server => Role::Server,
            WsRole::Client => Role::Client,
        };
        let mut config = WebSocketConfig::default();
        // Small reads: the pipe hands over what it has; a large eager buffer would cost memory
        // per idle connection.
        config.read_buffer_size = 4096;
        // Frames go into the pipe at once; the pipe's own bound is the back-pressure.
        config.write_buffer_size = 0;
        config.max_frame_size = Some(limits.frame_bytes_max);
        config.max_message_size = Some(limits.message_bytes_max);
        // RFC 6455 §5.1: a server must fail a connection on unmasked client frames.
        config.accept_unmasked_frames = false;
        Self {
            context: WebSocketContext::new(role, Some(config)),
            pipe: Pipe::default(),
            limits,
            terminated: false,
            error: None,
        }
    }

    /// Feeds bytes from the peer (the first ones may be what followed the `101` head) and
    /// returns how many were taken: at most what fits under `incoming_bytes_max`; take messages
    /// with [`Self::poll_message`] and offer the rest again. After the end, input is discarded.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.terminated || self.pipe.eof {
            return bytes.len();
        }
        let room = self.limits.incoming_bytes_max.saturating_sub(self.pipe.unread());
        let taken = bytes.len().min(room);
        self.pipe.incoming.extend_from_slice(&bytes[..taken]);
        taken
    }

    /// The peer closed the TCP connection. Without a completed close handshake that is
    /// [`WsError::ResetWithoutClose`], reported by the next [`Self::poll_message`].
    pub fn peer_closed(&mut self) {
        self.pipe.eof = true;
    }

    /// The next message, `None` when more bytes are needed (or the connection is over), or the
    /// error that ended the connection (once).
    pub fn poll_message(&mut self) -> Option<Result<WsMessage, WsError>> {
        if self.terminated {
            return None;
        }
        match self.context.read(&mut self.pipe) {
            Ok(message) => Some(Ok(convert(message))),
            Err(TungError::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                // Answers the protocol owes (pongs, a close reply) go out even with no message.
                self.flush();
                None
            }
            Err(TungError::ConnectionClosed | TungError::AlreadyClosed) => {
                self.terminated = true;
                None
            }
            Err(error) => Some(Err(self.fail(error))),
        }
    }

    /// Queues a message. Refused (nothing queued) when the output waiting is over
    /// `outgoing_bytes_max`, when the message is over `message_bytes_max`, and once closing.
    pub fn send(&mut self, message: WsMessage) -> Result<(), WsError> {
        if self.terminated || !self.context.can_write() {
            return Err(WsError::Closed);
        }
        let size = match &message {
            WsMessage::Text(text) => text.len(),
            WsMessage::Binary(data) | WsMessage::Ping(data) | WsMessage::Pong(data) => data.len(),
            WsMessage::Close(reason) => reason.as_ref().map_or(0, |(_, text)| text.len()),
        };
        if size > self.limits.message_bytes_max {
            return Err(WsError::MessageTooLarge { max_bytes: self.limits.message_bytes_max });
        }
        if self.pipe.outgoing.len() >= self.limits.outgoing_bytes_max {
            return Err(WsError::OutgoingFull { queued_bytes: self.pipe.outgoing.len() });
        }
        let message = match message {
            WsMessage::Text(text) => Message::text(text),
            WsMessage::Binary(data) => Message::binary(data),
            // Control frames carry at most 125 bytes (RFC 6455 §5.5).
            WsMessage::Ping(data) if data.len() <= 125 => Message::Ping(data.into()),
            WsMessage::Pong(data) if data.len() <= 125 => Message::Pong(data.into()),
            WsMessage::Ping(_) | WsMessage::Pong(_) => return Err(WsError::MessageTooLarge { max_bytes: 125 }),
            WsMessage::Close(Some((code, reason))) => return self.close(code, &reason),
            WsMessage::Close(None) => return self.close(1005, ""),
        };
        let written = self.context.write(&mut self.pipe, message);
        self.flush();
        written.map_err(|error| self.fail(error))
    }

    /// Starts the close handshake with `code` (1000 normal, 1001 going away, ...; 1005 sends no
    /// code) and `reason` (at most 123 bytes, cut at a character boundary). Codes an endpoint
    /// may not send (RFC 6455 §7.4: 1004-1006, 1015, unassigned ones below 3000, 5000 and up)
    /// are refused.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), WsError> {
        if self.terminated {
            return Err(WsError::Closed);
        }
        let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) || code == 1005;
        if !sendable {
            return Err(WsError::InvalidCloseCode { code });
        }
        let frame =
            (code != 1005).then(|| CloseFrame { code: CloseCode::from(code), reason: truncate(reason, 123).into() });
        let result = self.context.close(&mut self.pipe, frame);
        match result {
            Ok(()) | Err(TungError::ConnectionClosed) => Ok(()),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Moves the bytes to write into `out` (appended, or swapped in when `out` is empty).
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.pipe.outgoing);
        } else {
            out.extend_from_slice(&self.pipe.outgoing);
            self.pipe.outgoing.clear();
        }
    }

    /// Whether [`Self::send`] takes a message now as far as buffered output goes (it may still
    /// refuse one over `message_bytes_max`, or once closing).
    pub fn has_room(&self) -> bool {
        self.pipe.outgoing.len() < self.limits.outgoing_bytes_max
    }

    /// Bytes waiting to be taken.
    pub fn output_bytes(&self) -> usize {
        self.pipe.outgoing.len()
    }

    pub fn state(&self) -> WsState {
        if self.terminated {
            WsState::Closed
        } else if self.context.can_write() {
            WsState::Open
        } else {
            WsState::Closing
        }
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<&WsError> {
        self.error.as_ref()
    }

    /// Whether the caller should read from the socket.
    pub fn wants_read(&self) -> bool {
        !self.terminated && !self.pipe.eof && self.pipe.unread() < self.limits.incoming_bytes_max
    }

    fn flush(&mut self) {
        match self.context.flush(&mut self.pipe) {
            Ok(()) => {}
            // The server wrote its close reply: the handshake is over.
            Err(TungError::ConnectionClosed | TungError::AlreadyClosed) => self.terminated = true,
            Err(error) => {
                tracing::debug!(%error, "websocket: flush failed");
                self.terminated = true;
            }
        }
    }

    /// Fails the connection: the close frame RFC 6455 §7.4.1 names for the cause goes out
    /// (when the protocol may still send one), then it is over.
    fn fail(&mut self, error: TungError) -> WsError {
        let (code, error) = match error {
            TungError::Capacity(CapacityError::MessageTooLong { max_size, .. }) => {
                (CloseCode::Size, WsError::TooLarge { max_bytes: max_size })
            }
            TungError::Capacity(other) => (CloseCode::Size, WsError::Protocol { reason: other.to_string() }),
            TungError::Utf8(_) => (CloseCode::Invalid, WsError::InvalidUtf8),
            TungError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
                (CloseCode::Abnormal, WsError::ResetWithoutClose)
            }
            TungError::Protocol(reason) => (CloseCode::Protocol, WsError::Protocol { reason: reason.to_string() }),
            TungError::ConnectionClosed | TungError::AlreadyClosed => (CloseCode::Normal, WsError::Closed),
            other => (CloseCode::Error, WsError::Protocol { reason: other.to_string() }),
        };
        tracing::debug!(%error, "websocket: connection failed");
        if code != CloseCode::Abnormal && self.context.can_write() {
            let frame = CloseFrame { code, reason: "".into() };
            let _ = self.context.close(&mut self.pipe, Some(frame));
        }
        self.terminated = true;
        self.error = Some(error.clone());
        error
    }
}

/// What a [`WsEndpoint`] reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsUpdate {
    /// A text or binary message from the peer (pings and pongs are the protocol's).
    Message(WsMessage),
    /// The WebSocket is over, reported once: the peer's close frame (`clean`), or a failure
    /// (code 1006, or the code the failure sent: 1009 for a message over the limits, 1002 for
    /// a protocol error, 1007 for bad UTF-8).
    Closed { code: u16, reason: String, clean: bool },
}

/// How long the peer has to answer our close frame before the connection is cut.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of messages an endpoint holds for a peer that does not read, beyond the protocol's
/// own buffer ([`WsLimits::outgoing_bytes_max`]). Past it, a send is refused.
pub const BACKLOG_BYTES_MAX: usize = 16 << 20;

/// One end of a WebSocket as a server or a client drives it over a connection: the protocol
/// ([`WsConnection`]) plus what the connection's owner needs around it, the same on both sides:
/// a bounded backlog of messages for a slow peer, the close handshake's deadline, and one
/// [`WsUpdate::Closed`] however the socket ends.
#[derive(Debug)]
pub struct WsEndpoint {
    conn: WsConnection,
    /// The close handshake we started must be over by then.
    close_deadline: Option<Instant>,
    /// `Closed` was reported.
    reported: bool,
    backlog: VecDeque<WsMessage>,
    backlog_bytes: usize,
}

impl WsEndpoint {
    pub fn new(role: WsRole, limits: WsLimits) -> WsEndpoint {
        WsEndpoint {
            conn: WsConnection::new(role, limits),
            close_deadline: None,
            reported: false,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
        }
    }

    /// The peer's bytes; see [`WsConnection::receive`].
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        self.conn.receive(bytes)
    }

    pub fn wants_read(&self) -> bool {
        self.conn.wants_read()
    }

    /// The peer closed the TCP connection (EOF).
    pub fn peer_closed(&mut self) {
        self.conn.peer_closed();
    }

    /// Moves the bytes to write into `out` (appended).
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        self.conn.take_output(out);
    }

    /// Queues a message: into the protocol now if it has room, else into the backlog. Refused
    /// once closing, past [`BACKLOG_BYTES_MAX`], or over the message limit.
    pub fn send(&mut self, message: WsMessage) -> Result<(), WsError> {
        if self.close_deadline.is_some() || self.reported {
            return Err(WsError::Closed);
        }
        if self.backlog.is_empty() && self.conn.has_room() {
            return self.conn.send(message);
        }
        let bytes = message_bytes(&message);
        if self.backlog_bytes + bytes > BACKLOG_BYTES_MAX {
            return Err(WsError::OutgoingFull { queued_bytes: self.backlog_bytes });
        }
        self.backlog_bytes += bytes;
        self.backlog.push_back(message);
        Ok(())
    }

    /// Starts the close handshake after the messages queued; the peer has [`CLOSE_TIMEOUT`]
    /// to answer.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if self.close_deadline.is_some() || self.reported {
            return;
        }
        self.close_deadline = Some(now + CLOSE_TIMEOUT);
        let message = WsMessage::Close(Some((code, reason.to_string())));
        self.backlog_bytes += message_bytes(&message);
        self.backlog.push_back(message);
    }

    /// Takes the messages that arrived and what ended the socket into `out`, and moves the
    /// backlog into the protocol as its buffer drains.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<WsUpdate>) {
        while let Some(result) = self.conn.poll_message() {
            match result {
                Ok(message @ (WsMessage::Text(_) | WsMessage::Binary(_))) if !self.reported => {
                    out.push(WsUpdate::Message(message))
                }
                Ok(WsMessage::Close(frame)) if !self.reported => {
                    let (code, reason) = frame.unwrap_or((1005, String::new()));
                    self.report(out, code, reason, true);
                }
                Ok(_) => {}
                Err(error) => self.report(out, failure_code(&error), error.to_string(), false),
            }
        }
        while self.conn.has_room()
            && let Some(message) = self.backlog.pop_front()
        {
            self.backlog_bytes -= message_bytes(&message);
            if self.conn.send(message).is_err() && self.conn.state() != WsState::Open {
                // Closing or closed: nothing queued can go any more. (A message the protocol
                // refuses while open is dropped.)
                self.backlog.clear();
                self.backlog_bytes = 0;
            }
        }
        if self.late(now) {
            self.report(out, 1006, "the peer did not answer the close in time".into(), false);
        }
    }

    /// The connection is gone (closed, failed, cut): the socket is over.
    pub fn gone(&mut self, out: &mut Vec<WsUpdate>) {
        self.report(out, 1006, "the connection was closed without a close frame".into(), false);
    }

    /// Our close was not answered in time: cut the connection.
    pub fn late(&self, now: Instant) -> bool {
        self.close_deadline.is_some_and(|at| at <= now)
    }

    /// The close handshake is over: flush the output, then close the connection.
    pub fn is_over(&self) -> bool {
        self.conn.state() == WsState::Closed
    }

    /// When [`Self::poll`] must run again (the close deadline), if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.close_deadline
    }

    fn report(&mut self, out: &mut Vec<WsUpdate>, code: u16, reason: String, clean: bool) {
        if !self.reported {
            self.reported = true;
            out.push(WsUpdate::Closed { code, reason, clean });
        }
    }
}

fn message_bytes(message: &WsMessage) -> usize {
    match message {
        WsMessage::Text(text) => text.len(),
        WsMessage::Binary(data) | WsMessage::Ping(data) | WsMessage::Pong(data) => data.len(),
        WsMessage::Close(reason) => reason.as_ref().map_or(0, |(_, text)| text.len()) + 2,
    }
}

/// The close code RFC 6455 §7.4.1 gives the failure (the one sent, when one was).
fn failure_code(error: &WsError) -> u16 {
    match error {
        WsError::TooLarge { .. } | WsError::MessageTooLarge { .. } => 1009,
        WsError::Protocol { .. } => 1002,
        WsError::InvalidUtf8 => 1007,
        _ => 1006,
    }
}

fn convert(message: Message) -> WsMessage {
    match message {
        Message::Text(text) => WsMessage::Text(text.as_str().to_owned()),
        Message::Binary(data) => WsMessage::Binary(data.into()),
        Message::Ping(data) => WsMessage::Ping(data.into()),
        Message::Pong(data) => WsMessage::Pong(data.into()),
        Message::Close(frame) => WsMessage::Close(frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))),
        // Raw frames are only ever written, never read.
        Message::Frame(frame) => WsMessage::Binary(frame.into_payload().into()),
    }
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a character.
fn truncate(text: &str, bytes_max: usize) -> &str {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
