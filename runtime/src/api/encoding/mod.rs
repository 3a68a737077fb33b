//! TextEncoder, TextDecoder (all WHATWG encoding labels through `encoding_rs`, the encoding
//! library Firefox uses), and the forgiving base64 of `atob`/`btoa` (the `base64` crate).
//!
//! Every input is bounded before it is copied ([`args::BUFFER_BYTES_MAX`]); an output V8 cannot
//! hold as a string is a RangeError. Streaming decoders are resources (bounded per isolate).

use base64::Engine as _;

use crate::bridge::resources::Resource;
use crate::bridge::{self, JsError, OpDecl, args};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:encoding", include_str!("encoding.js"));
/// TextEncoderStream and TextDecoderStream, evaluated after the streams code they build on.
pub const STREAM_JS: (&str, &str) = ("isobar:encoding/stream", include_str!("stream.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("encodeUtf8", encode_utf8),
        op_decl!("encodeUtf8Into", encode_utf8_into),
        op_decl!("decodeUtf8", decode_utf8),
        op_decl!("encodingForLabel", encoding_for_label),
        op_decl!("decoderNew", decoder_new),
        op_decl!("decoderDecode", decoder_decode),
        op_decl!("decoderFree", decoder_free),
        op_decl!("btoa", btoa),
        op_decl!("atob", atob),
    ]
}

/// A streaming TextDecoder's state.
struct StreamDecoder {
    decoder: encoding_rs::Decoder,
    fatal: bool,
}

impl Resource for StreamDecoder {
    fn name(&self) -> &'static str {
        "TextDecoder"
    }
}

op!(fn encode_utf8(scope, args) {
    let s = args::string(&args, 0, "TextEncoder.encode")?;
    let len = s.utf8_length(scope);
    if len > args::BUFFER_BYTES_MAX {
        return Err(JsError::range_error("TextEncoder.encode: the string is too long"));
    }
    let mut bytes = Vec::with_capacity(len);
    args::write_utf8(scope, s, &mut bytes);
    args::new_u8_array(scope, bytes)
});

op!(fn encode_utf8_into(scope, args) {
    let s = args::string(&args, 0, "TextEncoder.encodeInto")?;
    let Ok(dest) = v8::Local::<v8::Uint8Array>::try_from(args.get(1)) else {
        return Err(JsError::type_error("TextEncoder.encodeInto: destination must be a Uint8Array"));
    };
    let mut buffer = vec![0u8; dest.byte_length()];
    let mut read = 0usize;
    let written = s.write_utf8_v2(scope, &mut buffer, v8::WriteFlags::kReplaceInvalidUtf8, Some(&mut read));
    let written = args::copy_into_view(scope, dest.into(), &buffer[..written]);
    let result = v8::Object::new(scope);
    let read_value = v8::Number::new(scope, read as f64);
    let written_value = v8::Number::new(scope, written as f64);
    args::set(scope, result, "read", read_value.into())?;
    args::set(scope, result, "written", written_value.into())?;
    Ok(result)
});

op!(fn decode_utf8(scope, args) {
    let bytes = args::bytes(args.get(0), args::BUFFER_BYTES_MAX, "TextDecoder.decode")?;
    let fatal = args.get(1).boolean_value(scope);
    let ignore_bom = args.get(2).boolean_value(scope);
    let mut slice = bytes.as_slice();
    if !ignore_bom && slice.starts_with(&[0xEF, 0xBB, 0xBF]) {
        slice = &slice[3..];
    }
    let text = if fatal {
        match std::str::from_utf8(slice) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => return Ok(None), // undefined: the JS side throws the TypeError
        }
    } else {
        String::from_utf8_lossy(slice)
    };
    Ok(Some(args::new_string(scope, &text)?))
});

op!(fn encoding_for_label(scope, args) {
    let label = args::string_coerced(scope, &args, 0, 256, "TextDecoder")?;
    let Some(encoding) = encoding_rs::Encoding::for_label(label.trim().as_bytes()) else { return Ok(None) };
    // The "replacement" encoding exists to neutralise dangerous labels; TextDecoder rejects it.
    if encoding == encoding_rs::REPLACEMENT {
        return Ok(None);
    }
    let name = encoding.name().to_ascii_lowercase();
    Ok(Some(args::new_string(scope, &name)?))
});

op!(fn decoder_new(scope, args) {
    let label = args::string_coerced(scope, &args, 0, 256, "TextDecoder")?;
    let fatal = args.get(1).boolean_value(scope);
    let ignore_bom = args.get(2).boolean_value(scope);
    let Some(encoding) = encoding_rs::Encoding::for_label(label.as_bytes()) else {
        return Err(JsError::range_error("TextDecoder: unsupported encoding"));
    };
    let decoder =
        if ignore_bom { encoding.new_decoder_without_bom_handling() } else { encoding.new_decoder_with_bom_removal() };
    let id = bridge::state(scope).borrow_mut().resources.add(StreamDecoder { decoder, fatal })?;
    Ok(id)
});

op!(fn decoder_decode(scope, args) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    let bytes = args::bytes(args.get(1), args::BUFFER_BYTES_MAX, "TextDecoder.decode")?;
    let last = !args.get(2).boolean_value(scope);
    let state = bridge::state(scope);
    let decoded = {
        let mut state = state.borrow_mut();
        let stream = state.resources.get_mut::<StreamDecoder>(id, "TextDecoder.decode")?;
        decode(stream, &bytes, last)
    };
    if last || decoded.is_none() {
        state.borrow_mut().resources.close(id);
    }
    match decoded {
        Some(text) => Ok(Some(args::new_string(scope, &text)?)),
        None => Ok(None), // undefined: fatal decoding error, the JS side throws
    }
});

fn decode(stream: &mut StreamDecoder, bytes: &[u8], last: bool) -> Option<String> {
    let capacity = stream.decoder.max_utf8_buffer_length(bytes.len()).unwrap_or(bytes.len().saturating_mul(3) + 16);
    let mut out = String::with_capacity(capacity);
    if stream.fatal {
        let (result, _read) = stream.decoder.decode_to_string_without_replacement(bytes, &mut out, last);
        match result {
            encoding_rs::DecoderResult::Malformed(_, _) => None,
            _ => Some(out),
        }
    } else {
        let (_result, _read, _replaced) = stream.decoder.decode_to_string(bytes, &mut out, last);
        Some(out)
    }
}

op!(fn decoder_free(scope, args) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    bridge::state(scope).borrow_mut().resources.close(id);
    Ok(())
});

/// The forgiving-base64 decoder of the HTML standard: padding optional, trailing bits ignored.
fn forgiving() -> base64::engine::GeneralPurpose {
    let config = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config)
}

op!(fn btoa(scope, args) {
    let s = args::string(&args, 0, "btoa")?;
    if s.length() > args::BUFFER_BYTES_MAX {
        return Err(JsError::range_error("btoa: the string is too long"));
    }
    let Some(bytes) = args::byte_string(scope, s) else { return Ok(None) };
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(Some(args::new_string(scope, &encoded)?))
});

op!(fn atob(scope, args) {
    let s = args::string(&args, 0, "atob")?;
    if s.length() > args::BUFFER_BYTES_MAX {
        return Err(JsError::range_error("atob: the string is too long"));
    }
    // Not a one-byte string: it has a character outside base64's alphabet.
    let Some(bytes) = args::byte_string(scope, s) else { return Ok(None) };
    let mut input: Vec<u8> = bytes.into_iter().filter(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')).collect();
    if input.len().is_multiple_of(4) {
        if input.ends_with(b"==") {
            input.truncate(input.len() - 2);
        } else if input.ends_with(b"=") {
            input.truncate(input.len() - 1);
        }
    }
    if input.len() % 4 == 1 || input.iter().any(|b| !(b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')) {
        return Ok(None);
    }
    let Ok(decoded) = forgiving().decode(&input) else { return Ok(None) };
    Ok(Some(args::new_one_byte_string(scope, &decoded)?))
});

#[cfg(test)]
mod tests {
    #[test]
    fn behaves_as_the_standard_says() {
        crate::testing::api_test("encoding/test.js", &crate::testing::Req::get("http://example.com/"));
    }

    #[test]
    fn encoder_and_decoder_streams() {
        crate::testing::api_test("encoding/test_stream.js", &crate::testing::Req::get("http://example.com/"));
    }
}
