//! A parsed response head, and the rules that turn it into body framing (RFC 9112 §6.3).
//!
//! The origin is a stranger: a Worker's `fetch()` proxies whatever it says to someone else, so
//! every framing ambiguity a proxy could resolve differently from the next hop is an error here
//! (both Content-Length and Transfer-Encoding, several differing lengths, a chunked coding that
//! is not last or not alone, obs-fold), never a guess.

use std::mem::MaybeUninit;

use super::super::request::{Span, list_elements, parse_decimal, trim_ows};
use super::super::{HEADERS_CEILING, Headers, Version};
use super::{ClientLimits, ResponseError};

/// A response head as the origin sent it.
///
/// Kept as the bytes received plus an index of spans into them, so a response costs two
/// allocations (head and index) however many header fields it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingResponse {
    status: u16,
    version: Version,
    body_length: Option<u64>,
    head: Vec<u8>,
    reason: Span,
    headers: Vec<(Span, Span)>,
}

impl IncomingResponse {
    /// The status code, 100..=999 (httparse reads exactly three digits; below 100 is refused).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase, empty when the origin sent none or sent non-ASCII bytes in it.
    pub fn reason(&self) -> &str {
        // httparse checked that the phrase is visible ASCII, so this never falls back to "".
        std::str::from_utf8(self.reason.get(&self.head)).unwrap_or_default()
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Header fields in the order received, names as received (compare them case-insensitively),
    /// values without surrounding whitespace. Framing fields (`content-length`,
    /// `transfer-encoding`) are included as sent; the body events are already unframed.
    pub fn headers(&self) -> Headers<'_> {
        Headers::new(&self.head, &self.headers)
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The exact body length when the framing gives it: `Some(0)` for responses without a body
    /// (HEAD, 1xx, 204, 304), the Content-Length otherwise; `None` for chunked or close-delimited
    /// bodies.
    pub fn body_length(&self) -> Option<u64> {
        self.body_length
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseFraming {
    /// No body: HEAD, 1xx, 204, 304, or Content-Length: 0.
    Empty,
    Length(u64),
    Chunked,
    /// The body ends when the connection does; the connection is not reusable.
    UntilClose,
}

/// A complete, valid response head.
#[derive(Debug)]
pub(super) struct ParsedHead {
    /// Bytes of the input the head took, final empty line included.
    pub(super) len: usize,
    pub(super) response: IncomingResponse,
    pub(super) framing: ResponseFraming,
    /// The origin allows another request on this connection after this response.
    pub(super) keep_alive: bool,
}

/// Parses a response head at the start of `buf`: `Ok(None)` if more bytes are needed.
/// `request_is_head`: the request was HEAD, so the response has no body whatever it says.
pub(super) fn parse_response_head(
    buf: &[u8],
    limits: &ClientLimits,
    request_is_head: bool,
) -> Result<Option<ParsedHead>, ResponseError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_CEILING];
    let headers_max = limits.headers_max.min(HEADERS_CEILING);
    let mut parsed = httparse::Response::new(&mut []);
    // The defaults are the strict ones: no obs-fold, no space before a colon, single spaces in
    // the status line.
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots[..headers_max]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(parse_error(error, buf)),
    };
    if len > limits.head_bytes_max {
        return Err(ResponseError::HeadTooLarge);
    }
    let (Some(minor), Some(status), Some(reason)) = (parsed.version, parsed.code, parsed.reason) else {
        return Err(ResponseError::Malformed);
    };
    if status < 100 {
        return Err(ResponseError::Malformed);
    }
    let version = if minor == 1 { Version::Http11 } else { Version::Http10 };

    let mut facts = HeaderFacts::default();
    for header in parsed.headers.iter() {
        facts.add(header.name, header.value)?;
    }
    let framing = facts.framing(version, status, request_is_head)?;
    let keep_alive = framing != ResponseFraming::UntilClose
        && match version {
            Version::Http11 => !facts.close,
            Version::Http10 => facts.keep_alive && !facts.close,
        };
    let body_length = match framing {
        ResponseFraming::Empty => Some(0),
        ResponseFraming::Length(length) => Some(length),
        ResponseFraming::Chunked | ResponseFraming::UntilClose => None,
    };

    let head = buf[..len].to_vec();
    let headers = parsed.headers.iter().map(|h| (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value))).collect();
    let response =
        IncomingResponse { status, version, body_length, reason: Span::of(buf, reason.as_bytes()), head, headers };
    Ok(Some(ParsedHead { len, response, framing, keep_alive }))
}

fn parse_error(error: httparse::Error, buf: &[u8]) -> ResponseError {
    match error {
        httparse::Error::Version => ResponseError::UnsupportedVersion,
        httparse::Error::TooManyHeaders => ResponseError::TooManyHeaders,
        // httparse refuses a line that starts with whitespace as a bad header name; say what it
        // is, since obs-fold is a known way to make two parsers disagree on a field.
        httparse::Error::HeaderName if starts_folded_line(buf) => ResponseError::ObsoleteLineFolding,
        httparse::Error::HeaderName
        | httparse::Error::HeaderValue
        | httparse::Error::NewLine
        | httparse::Error::Status
        | httparse::Error::Token => ResponseError::Malformed,
    }
}

/// Whether a line of the header section (before its empty line) starts with SP or HTAB.
fn starts_folded_line(buf: &[u8]) -> bool {
    let end = super::super::conn::find_empty_line(buf, 0).unwrap_or(buf.len());
    buf[..end].windows(2).any(|pair| pair[0] == b'\n' && (pair[1] == b' ' || pair[1] == b'\t'))
}

/// What the framing-relevant header fields said, gathered in one pass.
#[derive(Debug, Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    /// Transfer codings seen, how many of them were `chunked`, and whether the last one was.
    transfer_codings: usize,
    chunked_count: usize,
    last_is_chunked: bool,
    close: bool,
    keep_alive: bool,
}

impl HeaderFacts {
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), ResponseError> {
        // Dispatch on length first: most fields are none of these and cost one compare.
        match name.len() {
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
                    let length = parse_decimal(trim_ows(element)).ok_or(ResponseError::BadContentLength)?;
                    if self.content_length.is_some_and(|known| known != length) {
                        return Err(ResponseError::BadContentLength);
                    }
                    self.content_length = Some(length);
                    any = true;
                }
                if !any {
                    return Err(ResponseError::BadContentLength);
                }
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                for element in list_elements(value) {
                    self.transfer_codings += 1;
                    self.last_is_chunked = element.eq_ignore_ascii_case(b"chunked");
                    self.chunked_count += usize::from(self.last_is_chunked);
                }
                if self.transfer_codings == 0 {
                    return Err(ResponseError::BadTransferEncoding);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// RFC 9112 §6.3, refusing every ambiguity. Checked for every response, even those whose
    /// body is known to be empty: an origin that frames a 204 two ways is not to be trusted with
    /// the next response on the connection either.
    fn framing(&self, version: Version, status: u16, request_is_head: bool) -> Result<ResponseFraming, ResponseError> {
        if self.transfer_codings > 0 && self.content_length.is_some() {
            return Err(ResponseError::ContentLengthWithTransferEncoding);
        }
        // §6.3 rule 1: these never have a body, whatever their fields say.
        if request_is_head || (100..=199).contains(&status) || status == 204 || status == 304 {
            return Ok(ResponseFraming::Empty);
        }
        if self.transfer_codings > 0 {
            // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. A response
            // whose last coding is not chunked would be close-delimited and still encoded with a
            // coding we do not decode: refused rather than handed on garbled.
            if version == Version::Http10 || !self.last_is_chunked || self.chunked_count > 1 {
                return Err(ResponseError::BadTransferEncoding);
            }
            if self.transfer_codings > 1 {
                return Err(ResponseError::UnsupportedTransferCoding);
            }
            return Ok(ResponseFraming::Chunked);
        }
        Ok(match self.content_length {
            Some(0) => ResponseFraming::Empty,
            Some(length) => ResponseFraming::Length(length),
            None => ResponseFraming::UntilClose,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<Option<ParsedHead>, ResponseError> {
        parse_response_head(input.as_bytes(), &ClientLimits::default(), false)
    }

    #[test]
    fn parses_status_reason_fields_and_spans() {
        let head = parse("HTTP/1.1 201 Created Here\r\nX-A:  v 1 \r\ncontent-length: 3\r\n\r\nabc").unwrap().unwrap();
        assert_eq!(head.len, 60);
        assert_eq!(head.framing, ResponseFraming::Length(3));
        assert!(head.keep_alive);
        let r = &head.response;
        assert_eq!((r.status(), r.reason(), r.version()), (201, "Created Here", Version::Http11));
        let fields: Vec<_> = r.headers().collect();
        assert_eq!(fields, [("X-A", &b"v 1"[..]), ("content-length", b"3")]);
        assert_eq!(r.header("x-a"), Some(&b"v 1"[..]));
        assert_eq!(r.body_length(), Some(3));
        let head = parse("HTTP/1.1 204\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.response.reason(), head.framing), ("", ResponseFraming::Empty));
        assert!(parse("HTTP/1.1 200 OK\r\nA: b\r\n").unwrap().is_none());
    }

    #[test]
    fn framing_rules() {
        use ResponseError::*;
        use ResponseFraming::*;
        let cases: &[(&str, &str, Result<ResponseFraming, ResponseError>)] = &[
            ("200", "Content-Length: 5", Ok(Length(5))),
            ("200", "Content-Length: 5, 5", Ok(Length(5))),
            ("200", "Content-Length: 5\r\nContent-Length: 005", Ok(Length(5))),
            ("200", "Content-Length: 0", Ok(Empty)),
            ("200", "", Ok(UntilClose)),
            ("200", "Transfer-Encoding: chunked", Ok(Chunked)),
            ("200", "Transfer-Encoding: Chunked", Ok(Chunked)),
            ("200", "Content-Length: 5, 6", Err(BadContentLength)),
            ("200", "Content-Length: 5\r\nContent-Length: 6", Err(BadContentLength)),
            ("200", "Content-Length: -1", Err(BadContentLength)),
            ("200", "Content-Length: 1e3", Err(BadContentLength)),
            ("200", "Content-Length:", Err(BadContentLength)),
            ("200", "Content-Length: 5\r\nTransfer-Encoding: chunked", Err(ContentLengthWithTransferEncoding)),
            ("204", "Content-Length: 5\r\nTransfer-Encoding: chunked", Err(ContentLengthWithTransferEncoding)),
            ("200", "Transfer-Encoding: gzip", Err(BadTransferEncoding)),
            ("200", "Transfer-Encoding: chunked, gzip", Err(BadTransferEncoding)),
            ("200", "Transfer-Encoding: chunked, chunked", Err(BadTransferEncoding)),
            ("200", "Transfer-Encoding:", Err(BadTransferEncoding)),
            ("200", "Transfer-Encoding: gzip, chunked", Err(UnsupportedTransferCoding)),
            ("204", "Content-Length: 5", Ok(Empty)),
            ("304", "Content-Length: 5", Ok(Empty)),
            ("304", "Transfer-Encoding: chunked", Ok(Empty)),
            ("103", "Link: </a>", Ok(Empty)),
            ("205", "Content-Length: 0", Ok(Empty)),
        ];
        for (status, fields, expected) in cases {
            let input = format!("HTTP/1.1 {status} X\r\n{fields}\r\n\r\n");
            let got = parse(&input).map(|h| h.unwrap().framing);
            assert_eq!(&got, expected, "{status} {fields:?}");
        }
        let head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", &ClientLimits::default(), true);
        assert_eq!(head.unwrap().unwrap().framing, ResponseFraming::Empty);
    }

    #[test]
    fn keep_alive_rules() {
        let keep = |input: &str| parse(input).unwrap().unwrap().keep_alive;
        assert!(keep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep("HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep("HTTP/1.1 200 OK\r\n\r\n"), "close-delimited");
        assert!(!keep("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), "close-delimited");
        assert_eq!(
            parse("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").err(),
            Some(ResponseError::BadTransferEncoding)
        );
    }

    #[test]
    fn malformed_heads() {
        use ResponseError::*;
        let cases: &[(&str, ResponseError)] = &[
            ("HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", ObsoleteLineFolding),
            ("HTTP/1.1 200 OK\r\nA: b\r\n\tfolded\r\n\r\n", ObsoleteLineFolding),
            ("HTTP/1.1 200 OK\r\nA : b\r\n\r\n", Malformed),
            ("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", Malformed),
            ("HTTP/1.1 20 OK\r\n\r\n", Malformed),
            ("HTTP/1.1 099 Low\r\n\r\n", Malformed),
            ("HTTP/1.1 2000 OK\r\n\r\n", Malformed),
            ("HTTP/1.1  200 OK\r\n\r\n", Malformed),
            ("HTTP/1.1 200 O\x01K\r\n\r\n", Malformed),
            ("HTTP/2 200\r\n\r\n", UnsupportedVersion),
            ("HTTP/2.0 200 OK\r\n\r\n", UnsupportedVersion),
            ("ICY 200 OK\r\n\r\n", UnsupportedVersion),
            ("\x16\x03\x03\x00\x02\x02\x28", UnsupportedVersion),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).err(), Some(*expected), "{input:?}");
        }
    }

    #[test]
    fn too_many_headers() {
        let limits = ClientLimits { headers_max: 2, ..ClientLimits::default() };
        let input = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(parse_response_head(input, &limits, false).err(), Some(ResponseError::TooManyHeaders));
    }
}
