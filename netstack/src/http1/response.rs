//! Responses as the caller gives them, and their serialization.
//!
//! Tenant code chooses header names and values, so everything is validated before a byte is
//! written: a CR or LF in a value would otherwise let a tenant forge a second response
//! (response splitting) on a connection the codec believes it frames.

use super::{RequestError, RespondError};

/// A complete response: the codec frames the body with `content-length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `None`: the standard phrase for the status (or none for unknown codes).
    pub reason: Option<String>,
    /// Written in order, names as given. `content-length`, `transfer-encoding` and `connection`
    /// are the codec's: those fields are dropped (a `close` token in `connection` is honored).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self { status, reason: None, headers: Vec::new(), body: Vec::new() }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// The head of a streamed response (see [`super::ServerConn::respond_head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Option<String>,
    /// As in [`Response::headers`].
    pub headers: Vec<(String, Vec<u8>)>,
    /// `Some(n)`: exactly `n` body bytes follow, framed by `content-length`. `None`: length
    /// unknown, framed by `transfer-encoding: chunked` (HTTP/1.1 requests) or by closing the
    /// connection (HTTP/1.0 requests, which cannot read chunked).
    pub content_length: Option<u64>,
}

impl ResponseHead {
    pub fn new(status: u16, content_length: Option<u64>) -> Self {
        Self { status, reason: None, headers: Vec::new(), content_length }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The framing field the codec writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FramingField {
    None,
    Length(u64),
    Chunked,
}

/// The `connection` field the codec writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectionField {
    None,
    KeepAlive,
    Close,
    /// A `101 Switching Protocols`.
    Upgrade,
}

pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Whether a response with this status never has a body (RFC 9110 §6.4.1). 205 is included: it
/// must not have content either (§15.3.6).
pub(super) fn status_forbids_body(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 205 | 304)
}

/// Validates what the caller chose. Returns whether its `connection` field asked to close.
pub(super) fn check(status: u16, reason: Option<&str>, headers: &[(String, Vec<u8>)]) -> Result<bool, RespondError> {
    if !(200..=999).contains(&status) {
        return Err(RespondError::InvalidStatus(status));
    }
    if let Some(reason) = reason
        && !reason.bytes().all(|b| b == b'\t' || b == b' ' || is_visible_or_obs(b))
    {
        return Err(RespondError::InvalidReason);
    }
    let mut close = false;
    for (index, (name, value)) in headers.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(RespondError::InvalidHeaderName(index));
        }
        if !value.iter().all(|&b| b == b'\t' || b == b' ' || is_visible_or_obs(b)) {
            return Err(RespondError::InvalidHeaderValue(index));
        }
        if name.eq_ignore_ascii_case("connection") {
            close |= value.split(|&b| b == b',').any(|e| e.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    Ok(close)
}

/// Writes a status line and header section. `check` must have accepted the arguments.
pub(super) fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    reason: Option<&str>,
    headers: &[(String, Vec<u8>)],
    framing: FramingField,
    connection: ConnectionField,
) {
    let reason = reason.unwrap_or_else(|| canonical_reason(status));
    let fields_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(13 + reason.len() + 2 + fields_bytes + 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    // `check` bounded the status to three digits.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason.as_bytes());
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
    match framing {
        FramingField::None => {}
        FramingField::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            write_decimal(out, length);
            out.extend_from_slice(b"\r\n");
        }
        FramingField::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    match connection {
        ConnectionField::None => {}
        ConnectionField::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
        ConnectionField::Close => out.extend_from_slice(b"connection: close\r\n"),
        ConnectionField::Upgrade => out.extend_from_slice(b"connection: upgrade\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// One chunk of a chunked body. Empty data writes nothing: an empty chunk would end the body.
pub(super) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    let mut digits = [0u8; 16];
    let mut n = data.len() as u64;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The codec's own response to a rejected request: short text, then the connection closes.
pub(super) fn write_error(out: &mut Vec<u8>, error: RequestError) {
    let message = error.to_string();
    let headers = [(String::from("content-type"), b"text/plain; charset=utf-8".to_vec())];
    let length = message.len() as u64 + 1;
    write_head(out, error.status(), None, &headers, FramingField::Length(length), ConnectionField::Close);
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
}

pub(super) fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn is_codec_field(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding")
        || name.eq_ignore_ascii_case("connection")
}

pub(super) fn is_visible_or_obs(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// RFC 9110 §15 reason phrases; unknown codes get an empty phrase (the status line stays valid).
fn canonical_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_string(
        status: u16,
        headers: &[(&str, &str)],
        framing: FramingField,
        connection: ConnectionField,
    ) -> String {
        let headers: Vec<_> = headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
        let mut out = Vec::new();
        write_head(&mut out, status, None, &headers, framing, connection);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_head_and_replaces_codec_fields() {
        let head = head_string(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Content-Length", "999"),
                ("Transfer-Encoding", "gzip"),
                ("Connection", "x"),
            ],
            FramingField::Length(12345),
            ConnectionField::None,
        );
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 12345\r\n\r\n");
        let head = head_string(599, &[], FramingField::Chunked, ConnectionField::Close);
        assert_eq!(head, "HTTP/1.1 599 \r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
        let head = head_string(204, &[], FramingField::None, ConnectionField::KeepAlive);
        assert_eq!(head, "HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n");
    }

    #[test]
    fn chunks_and_decimal() {
        let mut out = Vec::new();
        write_chunk(&mut out, &[7u8; 0x1a]);
        write_chunk(&mut out, b"");
        assert!(out.starts_with(b"1a\r\n"));
        assert_eq!(out.len(), 4 + 0x1a + 2);
        let mut out = Vec::new();
        write_decimal(&mut out, 0);
        write_decimal(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
    }

    #[test]
    fn check_refuses_injection_and_bad_status() {
        let h = |n: &str, v: &[u8]| vec![(n.to_string(), v.to_vec())];
        assert_eq!(check(200, None, &h("x", b"ok\tok")), Ok(false));
        assert_eq!(check(200, None, &h("Connection", b"Keep-Alive, CLOSE")), Ok(true));
        assert_eq!(check(200, None, &h("x", b"a\r\nSet-Cookie: y")), Err(RespondError::InvalidHeaderValue(0)));
        assert_eq!(check(200, None, &h("x", b"a\0")), Err(RespondError::InvalidHeaderValue(0)));
        assert_eq!(check(200, None, &h("x y", b"a")), Err(RespondError::InvalidHeaderName(0)));
        assert_eq!(check(200, None, &h("", b"a")), Err(RespondError::InvalidHeaderName(0)));
        assert_eq!(check(200, Some("OK\r\n"), &[]), Err(RespondError::InvalidReason));
        assert_eq!(check(101, None, &[]), Err(RespondError::InvalidStatus(101)));
        assert_eq!(check(1000, None, &[]), Err(RespondError::InvalidStatus(1000)));
        assert_eq!(check(99, None, &[]), Err(RespondError::InvalidStatus(99)));
    }
}
