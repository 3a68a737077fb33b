//! CompressionStream and DecompressionStream (the WHATWG Compression Standard) for "gzip",
//! "deflate" (zlib) and "deflate-raw": the streams in `compression.js`, the codec in Rust.
//!
//! The codec is `flate2` on its default `miniz_oxide` backend: pure Rust (no C zlib to build or
//! link, nothing `unsafe` of ours around it), the most used DEFLATE crate, and it gives both the
//! streaming writers (with gzip header and CRC handling) and the raw `Decompress` whose status
//! tells where a zlib or raw stream ends. Nothing here parses a format by hand.
//!
//! Each stream's codec state is a resource in the isolate's table. Work is driven chunk by
//! chunk from JavaScript: one op call reads input from the script's buffer in place (never
//! copying a whole chunk into Rust), feeds the codec at most [`FEED_BYTES_MAX`] at a time and
//! hands back at most the output buffer's length (64 KiB in `compression.js`), so a
//! decompression bomb produces its output one bounded piece at a time; the JavaScript enqueues
//! each piece only when the reader wants more, and every piece is allocated as a JS buffer,
//! counted against the isolate's ArrayBuffer budget (running out is a RangeError that errors the
//! stream, not a dead isolate). What a codec keeps in Rust is bounded too: its state, its window
//! and less than one feed's output.
//!
//! It must not keep a script's input past a call, nor grow a buffer with a peer's data beyond
//! those bounds.

use std::cell::Cell;
use std::io::Write as _;
use std::rc::Rc;

use flate2::write::{DeflateEncoder, GzDecoder, GzEncoder, ZlibEncoder};
use flate2::{Compression, Decompress, FlushDecompress, Status};

use crate::bridge::resources::Resource;
use crate::bridge::{self, JsError, OpDecl, Scope, args};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:compression", include_str!("compression.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("compressionNew", compression_new),
        op_decl!("compressionRun", compression_run),
        op_decl!("compressionFree", compression_free),
    ]
}

/// Input fed to the codec in one step: small enough that what one step can produce (a DEFLATE
/// stream expands at most ~1032 times, and flate2 writes through a 32 KiB buffer) stays small.
pub const FEED_BYTES_MAX: usize = 16 << 10;

/// How many compression streams one isolate may have open at once. A compressor's state is
/// about 300 KiB of Rust memory that V8's heap limit does not see, so this bounds it (64 of
/// them is about 20 MiB); a script that needs more must finish or cancel some first.
pub const STREAMS_MAX: usize = 64;

/// What can go wrong in a codec; each is a TypeError in JavaScript, with workerd's messages.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// Corrupt input or a failed checksum.
    #[error("Decompression failed.")]
    Corrupt,
    /// Bytes after the end of the compressed data (a second gzip member counts).
    #[error("Trailing bytes after end of compressed data")]
    Trailing,
    /// The input ended before the compressed data did.
    #[error("Called close() on a decompression stream with incomplete data")]
    Truncated,
    /// The encoder failed (it cannot on a Vec, but flate2's signature allows it).
    #[error("Compression failed.")]
    Compress,
}

/// The codec of one stream.
enum Codec {
    GzipEncode(GzEncoder<Vec<u8>>),
    ZlibEncode(ZlibEncoder<Vec<u8>>),
    RawEncode(DeflateEncoder<Vec<u8>>),
    /// flate2's gzip writer parses the header and checks the CRC and length at the end.
    GzipDecode(GzDecoder<Vec<u8>>),
    /// zlib (with its header and Adler-32 check) or raw DEFLATE; `ended` once the stream's end
    /// was decoded.
    Inflate {
        inflater: Box<Decompress>,
        sink: Vec<u8>,
        ended: bool,
    },
}

/// Output of one inflate step: what flate2 writes into before it is moved to the sink.
const INFLATE_STEP_BYTES: usize = 32 << 10;

impl Codec {
    fn new(format: &str, decompress: bool) -> Option<Codec> {
        let level = Compression::default();
        Some(match (format, decompress) {
            ("gzip", false) => Codec::GzipEncode(GzEncoder::new(Vec::new(), level)),
            ("deflate", false) => Codec::ZlibEncode(ZlibEncoder::new(Vec::new(), level)),
            ("deflate-raw", false) => Codec::RawEncode(DeflateEncoder::new(Vec::new(), level)),
            ("gzip", true) => Codec::GzipDecode(GzDecoder::new(Vec::new())),
            ("deflate", true) => {
                Codec::Inflate { inflater: Box::new(Decompress::new(true)), sink: Vec::new(), ended: false }
            }
            ("deflate-raw", true) => {
                Codec::Inflate { inflater: Box::new(Decompress::new(false)), sink: Vec::new(), ended: false }
            }
            _ => return None,
        })
    }

    /// The output produced and not yet handed out.
    fn sink(&mut self) -> &mut Vec<u8> {
        match self {
            Codec::GzipEncode(e) => e.get_mut(),
            Codec::ZlibEncode(e) => e.get_mut(),
            Codec::RawEncode(e) => e.get_mut(),
            Codec::GzipDecode(d) => d.get_mut(),
            Codec::Inflate { sink, .. } => sink,
        }
    }

    /// Feeds `input` (not empty); returns how much of it the codec took.
    fn feed(&mut self, input: &[u8]) -> Result<usize, CompressionError> {
        match self {
            Codec::GzipEncode(e) => e.write(input).map_err(|_| CompressionError::Compress),
            Codec::ZlibEncode(e) => e.write(input).map_err(|_| CompressionError::Compress),
            Codec::RawEncode(e) => e.write(input).map_err(|_| CompressionError::Compress),
            Codec::GzipDecode(d) => match d.write(input) {
                // The writer takes nothing more once the member and its trailer are complete.
                Ok(0) => Err(CompressionError::Trailing),
                Ok(n) => Ok(n),
                Err(_) => Err(CompressionError::Corrupt),
            },
            Codec::Inflate { inflater, sink, ended } => {
                if *ended {
                    return Err(CompressionError::Trailing);
                }
                let mut step = [0u8; INFLATE_STEP_BYTES];
                let before_in = inflater.total_in();
                let before_out = inflater.total_out();
                let status = inflater
                    .decompress(input, &mut step, FlushDecompress::None)
                    .map_err(|_| CompressionError::Corrupt)?;
                let consumed = (inflater.total_in() - before_in) as usize;
                let produced = (inflater.total_out() - before_out) as usize;
                sink.extend_from_slice(step.get(..produced).unwrap_or(&[]));
                match status {
                    Status::StreamEnd => {
                        *ended = true;
                        if consumed < input.len() {
                            return Err(CompressionError::Trailing);
                        }
                    }
                    // No progress with input left: the data cannot be decoded.
                    Status::BufError if consumed == 0 && produced == 0 => return Err(CompressionError::Corrupt),
                    _ => {}
                }
                Ok(consumed)
            }
        }
    }

    /// The input is over: writes what the encoder still holds, or checks that the compressed
    /// data was complete.
    fn finish(&mut self) -> Result<(), CompressionError> {
        match self {
            Codec::GzipEncode(e) => e.try_finish().map_err(|_| CompressionError::Compress),
            Codec::ZlibEncode(e) => e.try_finish().map_err(|_| CompressionError::Compress),
            Codec::RawEncode(e) => e.try_finish().map_err(|_| CompressionError::Compress),
            Codec::GzipDecode(d) => d.try_finish().map_err(|_| CompressionError::Truncated),
            Codec::Inflate { ended, .. } => {
                if *ended {
                    Ok(())
                } else {
                    Err(CompressionError::Truncated)
                }
            }
        }
    }
}

/// The number of open compression streams of one isolate (an isolate slot), shared with each
/// stream so that dropping one, however it is dropped, counts down.
#[derive(Clone, Default)]
struct OpenStreams(Rc<Cell<usize>>);

/// One stream's state in the resource table.
struct CodecState {
    codec: Codec,
    /// Bytes of the sink already handed out.
    sink_read: usize,
    finished: bool,
    open: OpenStreams,
}

impl Drop for CodecState {
    fn drop(&mut self) {
        self.open.0.set(self.open.0.get().saturating_sub(1));
    }
}

impl Resource for CodecState {
    fn name(&self) -> &'static str {
        "CompressionStream"
    }
}

impl CodecState {
    /// Moves produced output into `out`; returns how much.
    fn drain(&mut self, out: &mut [u8]) -> usize {
        let read = self.sink_read;
        let sink = self.codec.sink();
        let available = sink.get(read..).unwrap_or(&[]);
        let n = available.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        if read + n >= sink.len() {
            sink.clear();
            self.sink_read = 0;
        } else {
            self.sink_read = read + n;
        }
        n
    }

    fn pending_output(&mut self) -> bool {
        let read = self.sink_read;
        self.codec.sink().len() > read
    }

    /// One op call: fills `out` from `input` (and, if `finish`, the end of the stream) until
    /// `out` is full or there is nothing more to do. Returns (input consumed, output written).
    fn run(&mut self, input: &[u8], out: &mut [u8], finish: bool) -> Result<(usize, usize), CompressionError> {
        let mut consumed = 0;
        let mut written = 0;
        loop {
            written += self.drain(out.get_mut(written..).unwrap_or(&mut []));
            if written == out.len() {
                return Ok((consumed, written));
            }
            let rest = input.get(consumed..).unwrap_or(&[]);
            if !rest.is_empty() {
                let feed = rest.get(..FEED_BYTES_MAX).unwrap_or(rest);
                let taken = self.codec.feed(feed)?;
                // A codec that takes nothing and gives nothing would loop here forever.
                if taken == 0 && !self.pending_output() {
                    return Err(CompressionError::Corrupt);
                }
                consumed += taken;
                continue;
            }
            if finish && !self.finished {
                self.finished = true;
                self.codec.finish()?;
                continue;
            }
            if !self.pending_output() {
                return Ok((consumed, written));
            }
        }
    }
}

/// The open-stream counter of this isolate, made on first use.
fn open_streams(scope: &mut Scope) -> OpenStreams {
    if let Some(open) = scope.get_slot::<OpenStreams>() {
        return open.clone();
    }
    let open = OpenStreams::default();
    scope.set_slot(open.clone());
    open
}

op!(fn compression_new(scope, args) {
    let format = args::string_coerced(scope, &args, 0, 32, "CompressionStream")?;
    let decompress = args.get(1).boolean_value(scope);
    let Some(codec) = Codec::new(&format, decompress) else {
        return Err(JsError::type_error("The compression format must be either 'deflate', 'deflate-raw' or 'gzip'."));
    };
    let open = open_streams(scope);
    if open.0.get() >= STREAMS_MAX {
        return Err(JsError::range_error(format!(
            "too many compression streams open in this worker (the limit is {STREAMS_MAX}); finish or cancel some first"
        )));
    }
    open.0.set(open.0.get() + 1);
    let state = CodecState { codec, sink_read: 0, finished: false, open };
    let id = bridge::state(scope).borrow_mut().resources.add(state)?;
    Ok(id)
});

op!(fn compression_run(scope, args) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    let offset = args.get(2).integer_value(scope).unwrap_or(0).max(0) as usize;
    let finish = args.get(4).boolean_value(scope);
    let Ok(output) = v8::Local::<v8::Uint8Array>::try_from(args.get(3)) else {
        return Err(JsError::type_error("compressionRun: the output must be a Uint8Array"));
    };
    let mut out = vec![0u8; output.byte_length()];
    let input_value = args.get(1);
    let view = v8::Local::<v8::ArrayBufferView>::try_from(input_value).ok();
    if view.is_none() && !input_value.is_undefined() {
        return Err(JsError::type_error("compressionRun: the input must be an ArrayBufferView"));
    }
    // Read in place (a whole chunk is never copied into Rust); small on-heap arrays are copied
    // into `storage`. No JavaScript runs while the slice is held.
    let mut storage = [0u8; v8::TYPED_ARRAY_MAX_SIZE_IN_HEAP];
    let input: &[u8] = match &view {
        Some(view) => view.get_contents(&mut storage),
        None => &[],
    };
    let input = input.get(offset..).unwrap_or(&[]);
    let result = {
        let state = bridge::state(scope);
        let mut state = state.borrow_mut();
        let codec = state.resources.get_mut::<CodecState>(id, "CompressionStream")?;
        codec.run(input, &mut out, finish)
    };
    let (consumed, written) = match result {
        Ok(counts) => counts,
        Err(error) => {
            // A failed stream keeps nothing: its state goes now.
            bridge::state(scope).borrow_mut().resources.close(id);
            return Err(JsError::type_error(error.to_string()));
        }
    };
    args::copy_into_view(scope, output.into(), out.get(..written).unwrap_or(&[]));
    let consumed = v8::Number::new(scope, consumed as f64);
    let written = v8::Number::new(scope, written as f64);
    Ok(v8::Array::new_with_elements(scope, &[consumed.into(), written.into()]))
});

op!(fn compression_free(scope, args) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    bridge::state(scope).borrow_mut().resources.close(id);
    Ok(())
});

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn compression_streams() {
        crate::testing::api_test("compression/test.js", &crate::testing::Req::get("http://example.com/"));
    }

    fn state(format: &str, decompress: bool) -> CodecState {
        let codec = Codec::new(format, decompress).unwrap();
        CodecState { codec, sink_read: 0, finished: false, open: OpenStreams::default() }
    }

    /// Runs `input` through a codec in `out`-sized pieces, as compression.js does.
    fn run_all(state: &mut CodecState, input: &[u8], out_bytes: usize) -> Result<Vec<u8>, CompressionError> {
        let mut output = Vec::new();
        let mut out = vec![0u8; out_bytes];
        let mut offset = 0;
        loop {
            let (consumed, written) = state.run(&input[offset..], &mut out, false)?;
            offset += consumed;
            output.extend_from_slice(&out[..written]);
            if written < out_bytes && offset == input.len() {
                break;
            }
        }
        loop {
            let (_, written) = state.run(&[], &mut out, true)?;
            output.extend_from_slice(&out[..written]);
            if written < out_bytes {
                return Ok(output);
            }
        }
    }

    #[test]
    fn every_format_round_trips_through_flate2() {
        let text: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for format in ["gzip", "deflate", "deflate-raw"] {
            let compressed = run_all(&mut state(format, false), &text, 1000).unwrap();
            assert!(compressed.len() < text.len(), "{format} compresses");
            let restored = run_all(&mut state(format, true), &compressed, 777).unwrap();
            assert_eq!(restored, text, "{format}");
        }
        // What the gzip encoder makes, a standard decoder reads.
        let compressed = run_all(&mut state("gzip", false), b"hello", 64).unwrap();
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_string(&mut decoded).unwrap();
        assert_eq!(decoded, "hello");
    }

    #[test]
    fn a_bomb_comes_out_in_bounded_pieces() {
        // 64 MiB of zeros compress to about 64 KiB; one call never yields more than its buffer,
        // and the codec never holds more than a step's output.
        let zeros = vec![0u8; 64 << 20];
        let bomb = run_all(&mut state("deflate", false), &zeros, 1 << 20).unwrap();
        assert!(bomb.len() < 128 << 10);
        let mut codec = state("deflate", true);
        let mut out = vec![0u8; 64 << 10];
        let (consumed, written) = codec.run(&bomb, &mut out, false).unwrap();
        assert_eq!(written, out.len(), "the call stopped at its buffer");
        assert!(consumed < bomb.len(), "and left input for later calls");
        assert!(codec.codec.sink().capacity() <= 2 * INFLATE_STEP_BYTES + FEED_BYTES_MAX, "bounded sink");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let good = run_all(&mut state("gzip", false), b"some text", 64).unwrap();
        // Truncated.
        let err = run_all(&mut state("gzip", true), &good[..good.len() - 3], 64).unwrap_err();
        assert!(matches!(err, CompressionError::Truncated), "{err:?}");
        // Trailing garbage, and a second member.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(run_all(&mut state("gzip", true), &trailing, 64), Err(CompressionError::Trailing)));
        let twice = [good.clone(), good.clone()].concat();
        assert!(matches!(run_all(&mut state("gzip", true), &twice, 64), Err(CompressionError::Trailing)));
        // A flipped CRC byte.
        let mut crc = good.clone();
        let at = crc.len() - 6;
        crc[at] ^= 0xff;
        assert!(run_all(&mut state("gzip", true), &crc, 64).is_err());
        // Not compressed data at all.
        assert!(run_all(&mut state("deflate", true), b"plain text, not zlib", 64).is_err());
        assert!(run_all(&mut state("gzip", true), b"plain text, not gzip", 64).is_err());
        let zlib = run_all(&mut state("deflate", false), b"abc", 64).unwrap();
        assert!(matches!(
            run_all(&mut state("deflate", true), &zlib[..zlib.len() - 1], 64),
            Err(CompressionError::Truncated)
        ));
        let mut zlib_trailing = zlib.clone();
        zlib_trailing.extend_from_slice(b"x");
        assert!(matches!(run_all(&mut state("deflate", true), &zlib_trailing, 64), Err(CompressionError::Trailing)));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..4096), format in 0..3usize) {
            let format = ["gzip", "deflate", "deflate-raw"][format];
            let _ = run_all(&mut state(format, true), &input, 100);
        }
    }
}
