//! Incremental decoder of the chunked transfer coding (RFC 9112 §7.1), shared by the server
//! (request bodies) and the client (response bodies).
//!
//! Strict where framing is at stake: every line ends in CRLF (a bare LF is an error, since lenient
//! line endings in chunked bodies are a known request-smuggling vector), sizes are hex without
//! sign or whitespace before them, and data must be followed by CRLF. Chunk extensions are skipped
//! and trailer fields dropped, both bounded.

/// A chunk-size line (size plus extensions) longer than this is refused by the server. Extensions
/// carry nothing we use, and an unbounded line would let a peer hold the connection without
/// sending a body.
pub(super) const CHUNK_LINE_BYTES_MAX: usize = 4096;

/// Why a chunked body was refused; each side maps it to its own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkError {
    /// Not the chunked grammar (or a chunk-size line over its bound).
    Malformed,
    /// A chunk size that does not fit in 64 bits.
    SizeOverflow,
    /// The chunk sizes add up to more than [`ChunkLimits::body_bytes_max`].
    BodyTooLarge,
    /// The trailer section is over [`ChunkLimits::trailer_bytes_max`].
    TrailersTooLarge,
}

/// What one body may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChunkLimits {
    /// The sum of the chunk sizes; checked when a size line ends, before its data arrives.
    pub(super) body_bytes_max: u64,
    /// One chunk-size line with its extensions, CRLF excluded.
    pub(super) line_bytes_max: usize,
    /// The whole trailer section, final CRLF included.
    pub(super) trailer_bytes_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        size: u64,
        digits: bool,
    },
    /// After the size: optional whitespace and `;extension`s, up to CR.
    Extension {
        size: u64,
    },
    /// Saw the CR ending a size line.
    SizeLf {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the empty line ending the body.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug)]
pub(super) struct ChunkedDecoder {
    state: State,
    line_bytes: usize,
    trailer_bytes: usize,
    /// The sum of the chunk sizes announced so far.
    body_bytes: u64,
}

impl ChunkedDecoder {
    pub(super) fn new() -> Self {
        Self { state: State::Size { size: 0, digits: false }, line_bytes: 0, trailer_bytes: 0, body_bytes: 0 }
    }

    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes of `input`, appending at most `body_room` bytes of chunk data to `body`,
    /// and returns how many it used. It stops right after the final CRLF, so what follows belongs
    /// to the next message, or inside chunk data once `body_room` bytes were appended (the
    /// caller drains `body` and offers the rest again).
    pub(super) fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        body_room: usize,
        limits: ChunkLimits,
    ) -> Result<usize, ChunkError> {
        let mut pos = 0;
        let mut room = body_room;
        while pos < input.len() {
            if let State::Data { remaining } = self.state {
                // Bulk copy: the only state that sees many bytes per call.
                let available = input.len() - pos;
                let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(available).min(room);
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&input[pos..pos + n]);
                pos += n;
                room -= n;
                let remaining = remaining - n as u64;
                self.state = if remaining == 0 { State::DataCr } else { State::Data { remaining } };
                continue;
            }
            let byte = input[pos];
            pos += 1;
            self.state = match self.state {
                State::Size { size, digits } => {
                    self.line_bytes += 1;
                    if self.line_bytes > limits.line_bytes_max {
                        return Err(ChunkError::Malformed);
                    }
                    match (hex_value(byte), byte) {
                        (Some(value), _) => {
                            if size > u64::MAX >> 4 {
                                return Err(ChunkError::SizeOverflow);
                            }
                            State::Size { size: size << 4 | u64::from(value), digits: true }
                        }
                        (None, b'\r') if digits => State::SizeLf { size },
                        (None, b';' | b' ' | b'\t') if digits => State::Extension { size },
                        _ => return Err(ChunkError::Malformed),
                    }
                }
                State::Extension { size } => {
                    self.line_bytes += 1;
                    if self.line_bytes > limits.line_bytes_max {
                        return Err(ChunkError::Malformed);
                    }
                    match byte {
                        b'\r' => State::SizeLf { size },
                        b'\t' | b' '..=0x7e | 0x80..=0xff => State::Extension { size },
                        _ => return Err(ChunkError::Malformed),
                    }
                }
                State::SizeLf { size } => {
                    if byte != b'\n' {
                        return Err(ChunkError::Malformed);
                    }
                    self.line_bytes = 0;
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        let total = self.body_bytes.saturating_add(size);
                        if total > limits.body_bytes_max {
                            return Err(ChunkError::BodyTooLarge);
                        }
                        self.body_bytes = total;
                        State::Data { remaining: size }
                    }
                }
                State::DataCr if byte == b'\r' => State::DataLf,
                State::DataLf if byte == b'\n' => State::Size { size: 0, digits: false },
                State::TrailerStart | State::TrailerLine => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > limits.trailer_bytes_max {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    match byte {
                        b'\r' if self.state == State::TrailerStart => State::EndLf,
                        b'\r' => State::TrailerLf,
                        b'\t' | b' '..=0x7e | 0x80..=0xff => State::TrailerLine,
                        _ => return Err(ChunkError::Malformed),
                    }
                }
                State::TrailerLf if byte == b'\n' => State::TrailerStart,
                State::EndLf if byte == b'\n' => {
                    self.state = State::Done;
                    return Ok(pos);
                }
                State::Done => {
                    // Never reached: the caller stops feeding once done. Give the byte back.
                    return Ok(pos - 1);
                }
                State::Data { .. } | State::DataCr | State::DataLf | State::TrailerLf | State::EndLf => {
                    return Err(ChunkError::Malformed);
                }
            };
        }
        Ok(pos)
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(body_bytes_max: u64, trailer_bytes_max: usize) -> ChunkLimits {
        ChunkLimits { body_bytes_max, line_bytes_max: CHUNK_LINE_BYTES_MAX, trailer_bytes_max }
    }

    fn decode_all(input: &[u8]) -> Result<(usize, Vec<u8>), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let used = decoder.decode(input, &mut body, usize::MAX, limits(1 << 20, 1024))?;
        assert!(decoder.is_done(), "not done after {used} bytes");
        Ok((used, body))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let input = b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nExpires: never\r\nX: y\r\n\r\nNEXT";
        let (used, body) = decode_all(input).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(&input[used..], b"NEXT");
    }

    #[test]
    fn uppercase_hex_and_leading_zeros() {
        let (_, body) = decode_all(b"000A\r\n0123456789\r\n00\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn byte_by_byte_matches_whole() {
        let input = b"3\r\nabc\r\n1;e\r\nd\r\n0\r\nT: v\r\n\r\n";
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        for byte in input.iter() {
            assert_eq!(decoder.decode(std::slice::from_ref(byte), &mut body, usize::MAX, limits(100, 100)), Ok(1));
        }
        assert!(decoder.is_done());
        assert_eq!(body, b"abcd");
    }

    #[test]
    fn rejects_malformed_framing() {
        for bad in [
            &b"\r\n"[..],             // no size
            b"x\r\n",                 // not hex
            b" 5\r\nhello\r\n",       // whitespace before size
            b"-5\r\n",                // sign
            b"5\nhello\r\n",          // bare LF after size
            b"5\r\nhelloX\r\n",       // data longer than size
            b"5\r\nhello\n0\r\n\r\n", // bare LF after data
            b"0\r\nT: v\n\r\n",       // bare LF in trailer
            b"0\r\n\n",               // bare LF ending the body
            b"5;\x00\r\n",            // control byte in extension
        ] {
            let mut decoder = ChunkedDecoder::new();
            let mut body = Vec::new();
            let result = decoder.decode(bad, &mut body, usize::MAX, limits(100, 100));
            assert_eq!(result, Err(ChunkError::Malformed), "input {:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn rejects_size_overflow_and_limits() {
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.decode(b"10000000000000000\r\n", &mut Vec::new(), usize::MAX, limits(u64::MAX, 100)),
            Err(ChunkError::SizeOverflow)
        );
        // Sixteen hex digits fit in a u64; the body limit refuses it.
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.decode(b"ffffffffffffffff\r\n", &mut Vec::new(), usize::MAX, limits(1 << 20, 100)),
            Err(ChunkError::BodyTooLarge)
        );
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.decode(b"6\r\nabcdef\r\n5\r\n", &mut Vec::new(), usize::MAX, limits(10, 100)),
            Err(ChunkError::BodyTooLarge)
        );
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.decode(b"0\r\nTrailer: 0123456789\r\n\r\n", &mut Vec::new(), usize::MAX, limits(10, 8)),
            Err(ChunkError::TrailersTooLarge)
        );
        let mut decoder = ChunkedDecoder::new();
        let long_line = [b"1;".as_slice(), &[b'x'; CHUNK_LINE_BYTES_MAX]].concat();
        assert_eq!(decoder.decode(&long_line, &mut Vec::new(), usize::MAX, limits(10, 8)), Err(ChunkError::Malformed));
    }

    #[test]
    fn stops_when_the_body_has_no_room() {
        let input = b"6\r\nabcdef\r\n3\r\nghi\r\n0\r\n\r\nNEXT";
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut pos = 0;
        let mut calls = 0;
        while !decoder.is_done() {
            let used = decoder.decode(&input[pos..], &mut body, 4, limits(100, 100)).unwrap();
            assert!(used > 0, "no progress at {pos}");
            pos += used;
            calls += 1;
            assert!(body.len() <= 4 * calls);
        }
        assert_eq!(body, b"abcdefghi");
        assert_eq!(&input[pos..], b"NEXT");
        // No room at all inside data: nothing consumed, no error.
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(decoder.decode(b"2\r\nab", &mut Vec::new(), 0, limits(100, 100)), Ok(3));
    }
}
