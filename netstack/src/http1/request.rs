//! A parsed request, and the rules that turn a request head into body framing (RFC 9112 §6).

use std::mem::MaybeUninit;

use super::{HEADERS_CEILING, Limits, RequestError, RequestId, Version};

/// A byte range inside [`Request::head`]. `u32` is enough: heads are at most 1 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, which must be a sub-slice of `base` (as httparse's results are).
    pub(super) fn of(base: &[u8], part: &[u8]) -> Self {
        // Pointer arithmetic on addresses only; no dereference, so no unsafe.
        let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
        let start = start.min(base.len());
        let end = (start + part.len()).min(base.len());
        Self { start: start as u32, end: end as u32 }
    }

    pub(super) fn get(self, bytes: &[u8]) -> &[u8] {
        bytes.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

/// One complete request: head and whole body.
///
/// The head is kept as the bytes received plus an index of spans into them, so a request costs
/// three allocations (head, index, body) however many header fields it has.
#[derive(Debug, Clone)]
pub struct Request {
    id: RequestId,
    version: Version,
    keep_alive: bool,
    head: Vec<u8>,
    method: Span,
    target: Span,
    headers: Vec<(Span, Span)>,
    body: Vec<u8>,
}

impl Request {
    /// Pass this to [`super::ServerConn::respond`] and friends.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The method token, case preserved (methods are case-sensitive).
    pub fn method(&self) -> &str {
        // httparse checked that the method is a token, so this never falls back to "".
        std::str::from_utf8(self.method.get(&self.head)).unwrap_or_default()
    }

    /// The request target as received (origin-, absolute-, authority- or asterisk-form).
    pub fn target(&self) -> &str {
        // httparse checked that the target is UTF-8, so this never falls back to "".
        std::str::from_utf8(self.target.get(&self.head)).unwrap_or_default()
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Header fields in the order received, names as received (compare them case-insensitively),
    /// values without surrounding whitespace.
    pub fn headers(&self) -> Headers<'_> {
        Headers { head: &self.head, spans: self.headers.iter() }
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Whether the connection stays open after this request's response (the response may still
    /// close it with `connection: close`).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether this is a HEAD request, whose response carries no body.
    pub fn is_head(&self) -> bool {
        self.method.get(&self.head) == b"HEAD"
    }

    pub(super) fn set_id(&mut self, id: RequestId) {
        self.id = id;
    }

    pub(super) fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// Bytes held by this request, for the memory bound in tests.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// Iterator over a request's header fields: `(name, value)`.
#[derive(Debug, Clone)]
pub struct Headers<'r> {
    head: &'r [u8],
    spans: std::slice::Iter<'r, (Span, Span)>,
}

impl<'r> Headers<'r> {
    /// The fields of a head kept as bytes plus spans (requests, and the client's responses).
    pub(super) fn new(head: &'r [u8], spans: &'r [(Span, Span)]) -> Self {
        Self { head, spans: spans.iter() }
    }
}

impl<'r> Iterator for Headers<'r> {
    type Item = (&'r str, &'r [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value) = self.spans.next()?;
        // httparse checked that names are tokens, so this never falls back to "".
        let name = std::str::from_utf8(name.get(self.head)).unwrap_or_default();
        Some((name, value.get(self.head)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// A complete, valid request head.
#[derive(Debug)]
pub(super) struct Head {
    /// Bytes of the input the head took, final empty line included.
    pub(super) len: usize,
    /// The request with an empty body and a placeholder id.
    pub(super) request: Request,
    pub(super) framing: Framing,
    /// HTTP/1.1 `Expect: 100-continue` on a request that has a body.
    pub(super) expect_continue: bool,
}

/// Parses a request head at the start of `buf`: `Ok(None)` if more bytes are needed.
pub(super) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, RequestError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_CEILING];
    let headers_max = limits.headers_max.min(HEADERS_CEILING);
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots[..headers_max]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(parse_error(error, buf)),
    };
    if len > limits.head_bytes_max {
        return Err(RequestError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(RequestError::Malformed);
    };
    if target.len() > limits.target_bytes_max {
        return Err(RequestError::TargetTooLong);
    }
    let version = if minor == 1 { Version::Http11 } else { Version::Http10 };

    let mut facts = HeaderFacts::default();
    for header in parsed.headers.iter() {
        facts.add(header.name, header.value)?;
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
    if facts.bad_host || facts.host_count > 1 || version == Version::Http11 && facts.host_count == 0 {
        return Err(RequestError::BadHost);
    }
    let framing = facts.framing(version, limits)?;
    let expect_continue = match version {
        // RFC 9110 §10.1.1: an HTTP/1.0 server ignores 100-continue.
        Version::Http10 => false,
        Version::Http11 => facts.expect_continue && framing != Framing::Empty,
    };
    let keep_alive = match version {
        Version::Http11 => !facts.close,
        Version::Http10 => facts.keep_alive && !facts.close,
    };

    let head = buf[..len].to_vec();
    let headers = parsed.headers.iter().map(|h| (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value))).collect();
    let request = Request {
        id: RequestId(0),
        version,
        keep_alive,
        method: Span::of(buf, method.as_bytes()),
        target: Span::of(buf, target.as_bytes()),
        head,
        headers,
        body: Vec::new(),
    };
    Ok(Some(Head { len, request, framing, expect_continue }))
}

/// Classifies a head that reached `head_bytes_max` without ending.
pub(super) fn overflow_error(buf: &[u8], limits: &Limits) -> RequestError {
    match parse_head(buf, limits) {
        Err(error) => error,
        // A request line that has not ended: its target is what is too long (RFC 9112 §3).
        Ok(None) if !buf.contains(&b'\n') && buf.contains(&b' ') => RequestError::TargetTooLong,
        Ok(_) => RequestError::HeadTooLarge,
    }
}

fn parse_error(error: httparse::Error, head: &[u8]) -> RequestError {
    match error {
        // 505 only for a well-formed version we do not speak (HTTP/2.0, HTTP/3); a request line
        // that merely does not end in a version is malformed.
        httparse::Error::Version if names_http_version(head) => RequestError::UnsupportedVersion,
        httparse::Error::Version => RequestError::Malformed,
        httparse::Error::TooManyHeaders => RequestError::TooManyHeaders,
        httparse::Error::HeaderName
        | httparse::Error::HeaderValue
        | httparse::Error::NewLine
        | httparse::Error::Status
        | httparse::Error::Token => RequestError::Malformed,
    }
}

/// Whether the request line's third word looks like `HTTP/<digit>...`.
fn names_http_version(head: &[u8]) -> bool {
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(head.len());
    let mut words = head[..line_end].split(|&b| b == b' ');
    let version = words.nth(2).unwrap_or_default();
    version.len() > 5 && version.starts_with(b"HTTP/") && version[5].is_ascii_digit()
}

/// What the framing-relevant header fields said, gathered in one pass.
#[derive(Debug, Default)]
struct HeaderFacts {
    host_count: usize,
    bad_host: bool,
    content_length: Option<u64>,
    /// Transfer codings seen, how many of them were `chunked`, and whether the last one was.
    transfer_codings: usize,
    chunked_count: usize,
    last_is_chunked: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    expect_other: bool,
}

impl HeaderFacts {
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), RequestError> {
        // Dispatch on length first: most fields are none of these and cost one compare.
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => {
                self.host_count += 1;
                self.bad_host |= !value.iter().all(|&b| is_host_byte(b));
            }
            6 if name.eq_ignore_ascii_case("expect") => {
                for element in list_elements(value) {
                    if element.eq_ignore_ascii_case(b"100-continue") {
                        self.expect_continue = true;
                    } else {
                        self.expect_other = true;
                    }
                }
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for element in list_elements(value) {
                    if element.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if element.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                let mut any = false;
                for element in value.split(|&b| b == b',') {
                    let length = parse_decimal(trim_ows(element)).ok_or(RequestError::BadContentLength)?;
                    if self.content_length.is_some_and(|known| known != length) {
                        return Err(RequestError::BadContentLength);
                    }
                    self.content_length = Some(length);
                    any = true;
                }
                if !any {
                    return Err(RequestError::BadContentLength);
                }
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                for element in list_elements(value) {
                    self.transfer_codings += 1;
                    self.last_is_chunked = element.eq_ignore_ascii_case(b"chunked");
                    self.chunked_count += usize::from(self.last_is_chunked);
                }
                if self.transfer_codings == 0 {
                    // A Transfer-Encoding field with no coding in it.
                    return Err(RequestError::BadTransferEncoding);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// RFC 9112 §6.1-6.3, refusing every ambiguity rather than guessing: request smuggling lives
    /// in the gap between two parsers' guesses.
    fn framing(&self, version: Version, limits: &Limits) -> Result<Framing, RequestError> {
        if self.expect_other && version == Version::Http11 {
            return Err(RequestError::UnsupportedExpectation);
        }
        if self.transfer_codings > 0 {
            if self.content_length.is_some() {
                return Err(RequestError::ContentLengthWithTransferEncoding);
            }
            // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            if version == Version::Http10 || !self.last_is_chunked || self.chunked_count > 1 {
                return Err(RequestError::BadTransferEncoding);
            }
            if self.transfer_codings > 1 {
                // e.g. `gzip, chunked`: we do not decode content codings for the application.
                return Err(RequestError::UnsupportedTransferCoding);
            }
            return Ok(Framing::Chunked);
        }
        match self.content_length {
            None | Some(0) => Ok(Framing::Empty),
            Some(length) if length > limits.body_bytes_max as u64 => Err(RequestError::BodyTooLarge),
            Some(length) => Ok(Framing::Length(length)),
        }
    }
}

/// `1*DIGIT`, saturating: a length too large for u64 is still a valid, too large, length.
pub(super) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// Non-empty elements of a comma-separated list, OWS trimmed (RFC 9110 §5.6.1).
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Bytes of `uri-host [":" port]` (reg-name, IPv4, IP-literal), RFC 3986 §3.2.2.
pub(super) fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'%'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<Option<Head>, RequestError> {
        parse_head(input.as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_head_fields_and_spans() {
        let head = parse("POST /a?b=c HTTP/1.1\r\nHost: x\r\nX-Thing:  v 1 \r\ncontent-length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Length(3));
        assert_eq!(head.len, 68);
        let r = &head.request;
        assert_eq!((r.method(), r.target(), r.version()), ("POST", "/a?b=c", Version::Http11));
        let headers: Vec<_> = r.headers().collect();
        assert_eq!(headers, [("Host", &b"x"[..]), ("X-Thing", b"v 1"), ("content-length", b"3")]);
        assert_eq!(r.header("x-thing"), Some(&b"v 1"[..]));
        assert!(r.keep_alive());
    }

    #[test]
    fn framing_rules() {
        use RequestError::*;
        let cases: &[(&str, Result<Framing, RequestError>)] = &[
            ("Content-Length: 5", Ok(Framing::Length(5))),
            ("Content-Length: 5, 5", Ok(Framing::Length(5))),
            ("Content-Length: 5\r\nContent-Length: 05", Ok(Framing::Length(5))),
            ("Content-Length: 0", Ok(Framing::Empty)),
            ("Content-Length: 5, 6", Err(BadContentLength)),
            ("Content-Length: 5\r\nContent-Length: 6", Err(BadContentLength)),
            ("Content-Length: +5", Err(BadContentLength)),
            ("Content-Length: 5a", Err(BadContentLength)),
            ("Content-Length: 0x5", Err(BadContentLength)),
            ("Content-Length: 5 5", Err(BadContentLength)),
            ("Content-Length:", Err(BadContentLength)),
            ("Content-Length: 5,", Err(BadContentLength)),
            ("Content-Length: 99999999999999999999999", Err(BodyTooLarge)),
            ("Content-Length: 1048577", Err(BodyTooLarge)),
            ("Transfer-Encoding: chunked", Ok(Framing::Chunked)),
            ("Transfer-Encoding: CHUNKED", Ok(Framing::Chunked)),
            ("Transfer-Encoding: chunked\r\nContent-Length: 5", Err(ContentLengthWithTransferEncoding)),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked", Err(ContentLengthWithTransferEncoding)),
            ("Transfer-Encoding: gzip", Err(BadTransferEncoding)),
            ("Transfer-Encoding: chunked, gzip", Err(BadTransferEncoding)),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip", Err(BadTransferEncoding)),
            ("Transfer-Encoding: chunked, chunked", Err(BadTransferEncoding)),
            ("Transfer-Encoding: chunked;x=1", Err(BadTransferEncoding)),
            ("Transfer-Encoding: ", Err(BadTransferEncoding)),
            ("Transfer-Encoding: xchunked", Err(BadTransferEncoding)),
            ("Transfer-Encoding: gzip, chunked", Err(UnsupportedTransferCoding)),
            ("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked", Err(UnsupportedTransferCoding)),
            ("Expect: 100-continue\r\nContent-Length: 1", Ok(Framing::Length(1))),
            ("Expect: something-else", Err(UnsupportedExpectation)),
        ];
        for (fields, expected) in cases {
            let input = format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n\r\n");
            let got = parse(&input).map(|h| h.unwrap().framing);
            assert_eq!(&got, expected, "fields {fields:?}");
        }
    }

    #[test]
    fn host_and_version_rules() {
        assert_eq!(parse("GET / HTTP/1.1\r\n\r\n").unwrap_err(), RequestError::BadHost);
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n").unwrap_err(), RequestError::BadHost);
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a b\r\n\r\n").unwrap_err(), RequestError::BadHost);
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n").unwrap_err(), RequestError::BadHost);
        assert!(parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").unwrap().is_some());
        assert!(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap().is_some());
        let head = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.request.keep_alive());
        let head = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(head.request.keep_alive());
        let head = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").unwrap().unwrap();
        assert!(!head.request.keep_alive());
        assert_eq!(
            parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            RequestError::BadTransferEncoding
        );
        // HTTP/1.0 ignores Expect altogether.
        let head = parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap().unwrap();
        assert!(!head.expect_continue);
        assert_eq!(parse("GET / HTTP/2.0\r\n\r\n").unwrap_err(), RequestError::UnsupportedVersion);
        assert_eq!(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap_err(), RequestError::UnsupportedVersion);
        assert_eq!(parse("GET / HTTP/3\r\n\r\n").unwrap_err(), RequestError::UnsupportedVersion);
        // Not a version at all: malformed, not "unsupported".
        assert_eq!(parse("THIS IS NOT HTTP\r\n\r\n").unwrap_err(), RequestError::Malformed);
        assert_eq!(parse("GET / HTTPS/1.1\r\n\r\n").unwrap_err(), RequestError::Malformed);
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03",
        ] {
            assert_eq!(parse(bad).err(), Some(RequestError::Malformed), "input {bad:?}");
        }
    }

    #[test]
    fn too_many_headers_and_long_target() {
        let limits = Limits { headers_max: 2, target_bytes_max: 8, ..Limits::default() };
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse_head(input, &limits).unwrap_err(), RequestError::TooManyHeaders);
        let input = b"GET /123456789 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse_head(input, &limits).unwrap_err(), RequestError::TargetTooLong);
        assert_eq!(overflow_error(b"GET /aaaaaaaaaaaaaaaa", &limits), RequestError::TargetTooLong);
        assert_eq!(overflow_error(b"GET / HTTP/1.1\r\nA: bbbbbbbb", &limits), RequestError::HeadTooLarge);
    }
}
