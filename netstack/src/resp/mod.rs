//! Sans-IO RESP2 client codec for Valkey and Redis: commands out as bytes, replies in as bytes,
//! time passed in.
//!
//! It owns the wire protocol only: encoding a command ([`encode_command`]), decoding replies
//! ([`Decoder`], on the `redis-protocol` crate), one pipelined connection with per-request
//! deadlines ([`RespConn`]) and the cluster's wire-level facts ([`cluster`]: key slots, the slot
//! map from `CLUSTER SLOTS`, `MOVED`/`ASK` redirections). It must not open sockets, block, spawn
//! threads or read clocks; whoever drives it (a core's io_uring loop, or a test's blocking
//! socket) moves the bytes and passes `now` in. The server is a peer like any other: a reply
//! larger than [`RespLimits::reply_bytes_max`] or nested deeper than [`REPLY_DEPTH_MAX`] is an
//! error, never a panic or an unbounded buffer.
//!
//! Why `redis-protocol`: it is the RESP codec behind `fred` (a widely used Redis client), it
//! decodes from a plain byte slice and reports "incomplete" instead of reading a socket, so it
//! fits a sans-IO design; we use its RESP2 decoder and its key-slot function, and encode
//! commands ourselves (an array of bulk strings is all a client ever sends).

pub mod cluster;
mod conn;

use std::fmt;

pub use conn::{RequestId, RespConn};

/// The deepest reply nesting accepted. isobar's replies nest at most three arrays deep
/// (`CLUSTER SLOTS`); the decoder recurses per level, so a hostile peer must not choose the depth.
pub const REPLY_DEPTH_MAX: usize = 8;

/// Bounds on what a server may make a connection hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// Bytes of one reply (a 25 MiB KV value plus its framing fits in the default).
    pub reply_bytes_max: usize,
    /// Commands sent and not yet answered on one connection.
    pub in_flight_max: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        Self { reply_bytes_max: 32 * 1024 * 1024, in_flight_max: 1024 }
    }
}

/// What went wrong on a connection. After any of these the connection's byte stream can no
/// longer be trusted: the caller closes it and every request still on it has failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum RespError {
    /// the server sent bytes that are not RESP2
    Malformed,
    /// the server's reply exceeds {0} bytes
    ReplyTooLarge(usize),
    /// the server's reply nests arrays deeper than the limit
    ReplyTooDeep,
    /// the server sent a reply nobody asked for
    UnexpectedReply,
    /// no reply within the deadline
    Timeout,
    /// the connection was closed or lost
    Closed,
    /// too many commands in flight on one connection
    TooManyInFlight,
}

/// One RESP2 reply. Errors from the server (`-ERR ...`, `-MOVED ...`) are replies, not
/// [`RespError`]s: the connection stays usable after them.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and friends.
    Simple(Vec<u8>),
    /// `-ERR ...`: the server refused this one command.
    Error(String),
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `*n` array.
    Array(Vec<Reply>),
    /// `$-1` or `*-1`.
    Nil,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values can be megabytes; a debug line shows their size and a short prefix.
        fn short(bytes: &[u8]) -> String {
            let shown = bytes.get(..bytes.len().min(48)).unwrap_or_default();
            format!("{:?}({} bytes)", String::from_utf8_lossy(shown), bytes.len())
        }
        match self {
            Self::Simple(s) => write!(f, "Simple({})", short(s)),
            Self::Error(e) => write!(f, "Error({e:?})"),
            Self::Integer(i) => write!(f, "Integer({i})"),
            Self::Bulk(b) => write!(f, "Bulk({})", short(b)),
            Self::Array(a) => f.debug_list().entries(a).finish(),
            Self::Nil => write!(f, "Nil"),
        }
    }
}

impl Reply {
    fn from_frame(frame: redis_protocol::resp2::types::OwnedFrame) -> Self {
        use redis_protocol::resp2::types::OwnedFrame;
        match frame {
            OwnedFrame::SimpleString(s) => Self::Simple(s),
            OwnedFrame::Error(e) => Self::Error(e),
            OwnedFrame::Integer(i) => Self::Integer(i),
            OwnedFrame::BulkString(b) => Self::Bulk(b),
            OwnedFrame::Array(items) => Self::Array(items.into_iter().map(Self::from_frame).collect()),
            OwnedFrame::Null => Self::Nil,
        }
    }

    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(b) | Self::Simple(b) => Some(b),
            _ => None,
        }
    }

    /// The server's error message, if this is an error reply.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            Self::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Appends `args` as one RESP2 command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Buffers bytes from the server and yields complete replies, within [`RespLimits`].
#[derive(Debug)]
pub struct Decoder {
    buffer: Vec<u8>,
    reply_bytes_max: usize,
}

impl Decoder {
    pub fn new(reply_bytes_max: usize) -> Self {
        Self { buffer: Vec::new(), reply_bytes_max }
    }

    /// Adds bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received and not yet decoded.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, RespError> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        // The depth check walks only the frame headers, so it is cheap even for a large value,
        // and it must come first: the decoder recurses once per nesting level.
        let scanned = scan_frame(&self.buffer, REPLY_DEPTH_MAX)?;
        let Some(frame_bytes) = scanned else {
            if self.buffer.len() > self.reply_bytes_max {
                return Err(RespError::ReplyTooLarge(self.reply_bytes_max));
            }
            return Ok(None);
        };
        if frame_bytes > self.reply_bytes_max {
            return Err(RespError::ReplyTooLarge(self.reply_bytes_max));
        }
        match redis_protocol::resp2::decode::decode(&self.buffer) {
            Ok(Some((frame, used))) => {
                self.buffer.drain(..used);
                Ok(Some(Reply::from_frame(frame)))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(RespError::Malformed),
        }
    }
}

/// Walks the headers of the first frame in `buf` without building it: `Ok(Some(len))` once the
/// whole frame is there, `Ok(None)` if it is incomplete, an error if it nests deeper than
/// `depth_max` or a header is not RESP2. Bulk payloads are skipped by their declared length,
/// so a frame is checked in time proportional to its element count, not its byte size.
fn scan_frame(buf: &[u8], depth_max: usize) -> Result<Option<usize>, RespError> {
    // Elements still expected at each open array level.
    let mut open: Vec<i64> = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(line_len) = buf.get(at..).and_then(|rest| rest.windows(2).position(|w| w == b"\r\n")) else {
            return Ok(None);
        };
        let line = buf.get(at..at + line_len).ok_or(RespError::Malformed)?;
        let (&kind, body) = line.split_first().ok_or(RespError::Malformed)?;
        at += line_len + 2;
        match kind {
            b'+' | b'-' | b':' => {}
            b'$' => {
                let len = parse_length(body)?;
                if len >= 0 {
                    let len = usize::try_from(len).map_err(|_| RespError::Malformed)?;
                    at = at.checked_add(len).and_then(|a| a.checked_add(2)).ok_or(RespError::Malformed)?;
                    if at > buf.len() {
                        return Ok(None);
                    }
                }
            }
            b'*' => {
                let count = parse_length(body)?;
                if count > 0 {
                    if open.len() >= depth_max {
                        return Err(RespError::ReplyTooDeep);
                    }
                    open.push(count);
                    continue;
                }
            }
            _ => return Err(RespError::Malformed),
        }
        // One element finished: close every array it completes.
        loop {
            match open.last_mut() {
                None => return Ok(Some(at)),
                Some(remaining) => {
                    *remaining -= 1;
                    if *remaining > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

fn parse_length(digits: &[u8]) -> Result<i64, RespError> {
    let text = std::str::from_utf8(digits).map_err(|_| RespError::Malformed)?;
    let value: i64 = text.parse().map_err(|_| RespError::Malformed)?;
    if value < -1 {
        return Err(RespError::Malformed);
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
