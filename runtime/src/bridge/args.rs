//! Converting values between JavaScript and Rust without trusting them.
//!
//! Every conversion either succeeds or returns the [`JsError`] the caller throws: a wrong type is
//! a TypeError, a size beyond the op's cap or beyond what V8 can allocate is a RangeError. Sizes
//! are checked before anything is copied, so a script cannot make an op allocate more than its
//! cap in Rust memory (which V8's heap limit does not see).

use std::borrow::Cow;

use super::{JsError, Scope};

/// The longest string an op takes unless it says otherwise (64 MiB of UTF-8).
pub const STRING_BYTES_MAX: usize = 64 << 20;
/// The largest buffer an op copies unless it says otherwise.
pub const BUFFER_BYTES_MAX: usize = 128 << 20;

/// Argument `i` as a JS string (no conversion: anything else is a TypeError).
pub fn string<'s>(
    args: &v8::FunctionCallbackArguments<'s>,
    i: i32,
    what: &str,
) -> Result<v8::Local<'s, v8::String>, JsError> {
    v8::Local::<v8::String>::try_from(args.get(i))
        .map_err(|_| JsError::type_error(format!("{what}: argument {} must be a string", i + 1)))
}

/// A JS string as Rust UTF-8 (lone surrogates become U+FFFD), at most `bytes_max` bytes.
pub fn to_rust_string(
    scope: &mut Scope,
    value: v8::Local<v8::String>,
    bytes_max: usize,
    what: &str,
) -> Result<String, JsError> {
    let len = value.utf8_length(scope);
    if len > bytes_max {
        return Err(JsError::range_error(format!("{what}: {len} bytes is more than the {bytes_max} allowed")));
    }
    let mut out = Vec::with_capacity(len);
    write_utf8(scope, value, &mut out);
    // write_utf8 replaces invalid sequences, so the bytes are UTF-8.
    String::from_utf8(out).map_err(|_| JsError::type_error(format!("{what}: the string is not valid UTF-16")))
}

/// Argument `i` converted with JS `String(value)` semantics (a Symbol throws, as in JS), at most
/// `bytes_max` bytes of UTF-8.
pub fn string_coerced<'s>(
    scope: &mut Scope<'s, '_>,
    args: &v8::FunctionCallbackArguments<'s>,
    i: i32,
    bytes_max: usize,
    what: &str,
) -> Result<String, JsError> {
    let value = args.get(i);
    let s = to_js_string(scope, value)?;
    to_rust_string(scope, s, bytes_max, what)
}

/// `String(value)`: a pending exception (a throwing `toString`, a Symbol) is reported as such.
pub fn to_js_string<'s>(
    scope: &mut Scope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::String>, JsError> {
    if let Ok(s) = v8::Local::<v8::String>::try_from(value) {
        return Ok(s);
    }
    if value.is_symbol() {
        return Err(JsError::type_error("Cannot convert a Symbol value to a string"));
    }
    value.to_string(scope).ok_or(JsError::Pending)
}

/// Writes a JS string as UTF-8 onto `out` (lone surrogates become U+FFFD, as TextEncoder does).
pub fn write_utf8(scope: &mut Scope, s: v8::Local<v8::String>, out: &mut Vec<u8>) {
    let len = s.utf8_length(scope);
    let start = out.len();
    out.resize(start + len, 0);
    let written = s.write_utf8_v2(scope, &mut out[start..], v8::WriteFlags::kReplaceInvalidUtf8, None);
    out.truncate(start + written);
}

/// Reads a ByteString (every character <= 0xFF, e.g. a header value) as bytes; `None` if a
/// character is wider than a byte.
pub fn byte_string(scope: &mut Scope, s: v8::Local<v8::String>) -> Option<Vec<u8>> {
    if !s.contains_only_onebyte() {
        return None;
    }
    let mut out = vec![0u8; s.length()];
    s.write_one_byte_v2(scope, 0, &mut out, v8::WriteFlags::empty());
    Some(out)
}

/// A JS string of `text`; a RangeError if V8 cannot make one that long.
pub fn new_string<'s>(scope: &mut Scope<'s, '_>, text: &str) -> Result<v8::Local<'s, v8::String>, JsError> {
    v8::String::new_from_utf8(scope, text.as_bytes(), v8::NewStringType::Normal).ok_or_else(too_long)
}

/// A JS string whose characters are `bytes` (Latin-1), e.g. a header value; a RangeError if too long.
pub fn new_one_byte_string<'s>(scope: &mut Scope<'s, '_>, bytes: &[u8]) -> Result<v8::Local<'s, v8::String>, JsError> {
    v8::String::new_from_one_byte(scope, bytes, v8::NewStringType::Normal).ok_or_else(too_long)
}

/// An internalized JS string for a short name known to isobar (a property key).
pub fn name<'s>(scope: &mut Scope<'s, '_>, text: &'static str) -> Result<v8::Local<'s, v8::String>, JsError> {
    v8::String::new_from_utf8(scope, text.as_bytes(), v8::NewStringType::Internalized).ok_or_else(too_long)
}

fn too_long() -> JsError {
    JsError::range_error("the string would be longer than V8's maximum string length")
}

/// The bytes of an ArrayBuffer or ArrayBufferView, at most `bytes_max`; anything else is a
/// TypeError naming `what`.
pub fn bytes(value: v8::Local<v8::Value>, bytes_max: usize, what: &str) -> Result<Vec<u8>, JsError> {
    let len = buffer_len(value)
        .ok_or_else(|| JsError::type_error(format!("{what}: expected an ArrayBuffer or an ArrayBufferView")))?;
    if len > bytes_max {
        return Err(JsError::range_error(format!("{what}: {len} bytes is more than the {bytes_max} allowed")));
    }
    let mut out = vec![0u8; len];
    if let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(value) {
        let copied = view.copy_contents(&mut out);
        out.truncate(copied);
    } else if let Ok(buffer) = v8::Local::<v8::ArrayBuffer>::try_from(value) {
        let store = buffer.get_backing_store();
        if let Some(data) = store.data() {
            let n = len.min(store.byte_length());
            // SAFETY: `data` points to the buffer's backing store of `byte_length()` bytes, which
            // `store` keeps alive; `n` is within it, and no JS runs while we copy.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr().cast::<u8>(), out.as_mut_ptr(), n) };
            out.truncate(n);
        } else {
            out.clear();
        }
    }
    Ok(out)
}

/// Byte length of an ArrayBuffer or ArrayBufferView (`None` for anything else).
pub fn buffer_len(value: v8::Local<v8::Value>) -> Option<usize> {
    if let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(value) {
        return Some(view.byte_length());
    }
    if let Ok(buffer) = v8::Local::<v8::ArrayBuffer>::try_from(value) {
        return Some(buffer.byte_length());
    }
    None
}

/// Copies `src` into the memory a Uint8Array views (as much as fits); returns how much was copied.
pub fn copy_into_view(scope: &mut Scope, view: v8::Local<v8::ArrayBufferView>, src: &[u8]) -> usize {
    let n = src.len().min(view.byte_length());
    let Some(buffer) = view.buffer(scope) else { return 0 };
    let store = buffer.get_backing_store();
    let offset = view.byte_offset();
    if offset.saturating_add(n) > store.byte_length() {
        return 0;
    }
    let Some(data) = store.data() else { return 0 };
    // SAFETY: `offset + n` is within the backing store (checked above), which `store` keeps
    // alive; no JS runs while the pointer is held, so the buffer cannot be detached or resized.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), data.as_ptr().cast::<u8>().add(offset), n) };
    n
}

/// A Uint8Array that owns `bytes` (no second copy).
pub fn new_u8_array<'s>(scope: &mut Scope<'s, '_>, bytes: Vec<u8>) -> Result<v8::Local<'s, v8::Uint8Array>, JsError> {
    let len = bytes.len();
    let store = v8::ArrayBuffer::new_backing_store_from_vec(bytes).make_shared();
    let buffer = v8::ArrayBuffer::with_backing_store(scope, &store);
    v8::Uint8Array::new(scope, buffer, 0, len).ok_or_else(|| JsError::range_error("cannot allocate a Uint8Array"))
}

/// An ArrayBuffer that owns `bytes`.
pub fn new_array_buffer<'s>(scope: &mut Scope<'s, '_>, bytes: Vec<u8>) -> v8::Local<'s, v8::ArrayBuffer> {
    let store = v8::ArrayBuffer::new_backing_store_from_vec(bytes).make_shared();
    v8::ArrayBuffer::with_backing_store(scope, &store)
}

/// Argument `i` as a number converted to an integer in `range`, as Web IDL's `[EnforceRange]`
/// does: NaN, infinities and values outside the range are a TypeError.
pub fn enforce_range(
    scope: &mut Scope,
    value: v8::Local<v8::Value>,
    range: std::ops::RangeInclusive<f64>,
    what: &str,
) -> Result<f64, JsError> {
    let n = value.number_value(scope).ok_or(JsError::Pending)?;
    if !n.is_finite() {
        return Err(JsError::type_error(format!("{what}: {n} is not a finite number")));
    }
    let n = n.trunc();
    if !range.contains(&n) {
        return Err(JsError::type_error(format!(
            "{what}: {n} is outside the range {}..={}",
            range.start(),
            range.end()
        )));
    }
    Ok(n)
}

/// `object[key]` (a getter may run and throw).
pub fn get<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    key: &'static str,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let key = name(scope, key)?;
    object.get(scope, key.into()).ok_or(JsError::Pending)
}

/// `object[key] = value` on an object isobar made (a plain data property).
pub fn set<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    key: &'static str,
    value: v8::Local<'s, v8::Value>,
) -> Result<(), JsError> {
    let key = name(scope, key)?;
    object.create_data_property(scope, key.into(), value).ok_or(JsError::Pending)?;
    Ok(())
}

/// A message naming a value's type for errors, without running any of its code.
pub fn type_name(value: v8::Local<v8::Value>) -> Cow<'static, str> {
    Cow::Borrowed(if value.is_undefined() {
        "undefined"
    } else if value.is_null() {
        "null"
    } else if value.is_string() {
        "a string"
    } else if value.is_number() {
        "a number"
    } else if value.is_boolean() {
        "a boolean"
    } else if value.is_symbol() {
        "a symbol"
    } else if value.is_big_int() {
        "a bigint"
    } else if value.is_function() {
        "a function"
    } else {
        "an object"
    })
}
