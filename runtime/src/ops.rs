//! The native functions behind isobar's JavaScript API: the only bridge from tenant JS to Rust.
//!
//! Every op is a plain `fn` so the table can also serve as the external references of a startup
//! snapshot. Ops validate their arguments and throw a JS `TypeError` on misuse; they never panic,
//! because a panic here would unwind through V8 and take every tenant of the process down.

use std::cell::RefCell;
use std::rc::Rc;

use crate::state::{IsolateState, LogLevel, Outcome, WireResponse};

type Scope<'s, 'i> = v8::PinScope<'s, 'i>;

/// The name under which each op appears on the `ops` object the JS bootstrap receives.
pub(crate) fn table() -> Vec<(&'static str, v8::FunctionCallback)> {
    use v8::MapFnTo;
    vec![
        ("print", print.map_fn_to()),
        ("now", now.map_fn_to()),
        ("timeOrigin", time_origin.map_fn_to()),
        ("encodeUtf8", encode_utf8.map_fn_to()),
        ("encodeUtf8Into", encode_utf8_into.map_fn_to()),
        ("decodeUtf8", decode_utf8.map_fn_to()),
        ("encodingForLabel", encoding_for_label.map_fn_to()),
        ("decoderNew", decoder_new.map_fn_to()),
        ("decoderDecode", decoder_decode.map_fn_to()),
        ("decoderFree", decoder_free.map_fn_to()),
        ("timerStart", timer_start.map_fn_to()),
        ("timerCancel", timer_cancel.map_fn_to()),
        ("respond", respond.map_fn_to()),
        ("fail", fail.map_fn_to()),
        ("urlParse", url_parse.map_fn_to()),
        ("urlSet", url_set.map_fn_to()),
        ("formDecode", form_decode.map_fn_to()),
        ("formEncode", form_encode.map_fn_to()),
        ("randomFill", random_fill.map_fn_to()),
    ]
}

/// The isolate's state. Every isolate isobar serves from gets its slot at creation; only the
/// snapshot-building isolate has none (its warm-up requests run ops too). An op never panics
/// over it, since a panic cannot unwind through V8: it gets a detached state instead.
fn state(scope: &mut Scope) -> Rc<RefCell<IsolateState>> {
    match scope.get_slot::<Rc<RefCell<IsolateState>>>() {
        Some(state) => state.clone(),
        None => Rc::new(RefCell::new(IsolateState::new("snapshot"))),
    }
}

fn throw_type_error(scope: &mut Scope, message: &str) {
    let message = v8::String::new(scope, message).unwrap_or_else(|| v8::String::empty(scope));
    let error = v8::Exception::type_error(scope, message);
    scope.throw_exception(error);
}

fn throw_range_error(scope: &mut Scope, message: &str) {
    let message = v8::String::new(scope, message).unwrap_or_else(|| v8::String::empty(scope));
    let error = v8::Exception::range_error(scope, message);
    scope.throw_exception(error);
}

fn string_arg<'s>(
    scope: &mut Scope<'_, '_>,
    args: &v8::FunctionCallbackArguments<'s>,
    i: i32,
    op: &str,
) -> Option<v8::Local<'s, v8::String>> {
    match v8::Local::<v8::String>::try_from(args.get(i)) {
        Ok(s) => Some(s),
        Err(_) => {
            throw_type_error(scope, &format!("{op}: argument {} must be a string", i + 1));
            None
        }
    }
}

fn u8_array_arg<'s>(
    scope: &mut Scope<'_, '_>,
    args: &v8::FunctionCallbackArguments<'s>,
    i: i32,
    op: &str,
) -> Option<v8::Local<'s, v8::Uint8Array>> {
    match v8::Local::<v8::Uint8Array>::try_from(args.get(i)) {
        Ok(a) => Some(a),
        Err(_) => {
            throw_type_error(scope, &format!("{op}: argument {} must be a Uint8Array", i + 1));
            None
        }
    }
}

/// Copies the bytes a typed array views into `out` (cleared first).
pub(crate) fn copy_view_bytes(view: v8::Local<v8::ArrayBufferView>, out: &mut Vec<u8>) {
    out.clear();
    let len = view.byte_length();
    out.resize(len, 0);
    let copied = view.copy_contents(out);
    out.truncate(copied);
}

/// Makes a Uint8Array that owns `bytes` without copying them again.
pub(crate) fn new_u8_array<'s>(scope: &mut Scope<'s, '_>, bytes: Vec<u8>) -> Option<v8::Local<'s, v8::Uint8Array>> {
    let len = bytes.len();
    let store = v8::ArrayBuffer::new_backing_store_from_vec(bytes).make_shared();
    let buffer = v8::ArrayBuffer::with_backing_store(scope, &store);
    v8::Uint8Array::new(scope, buffer, 0, len)
}

/// Writes a JS string as UTF-8 into `out` (lone surrogates become U+FFFD, as TextEncoder does).
pub(crate) fn write_utf8(scope: &mut Scope, s: v8::Local<v8::String>, out: &mut Vec<u8>) {
    let len = s.utf8_length(scope);
    let start = out.len();
    out.resize(start + len, 0);
    let written = s.write_utf8_v2(scope, &mut out[start..], v8::WriteFlags::kReplaceInvalidUtf8, None);
    out.truncate(start + written);
}

/// Reads a JS string whose characters are all <= 0xFF (a ByteString, e.g. a header value) as bytes.
/// Returns None if a character is wider than a byte.
pub(crate) fn byte_string(scope: &mut Scope, s: v8::Local<v8::String>, out: &mut Vec<u8>) -> bool {
    out.clear();
    if !s.contains_only_onebyte() {
        return false;
    }
    out.resize(s.length(), 0);
    s.write_one_byte_v2(scope, 0, out, v8::WriteFlags::empty());
    true
}

fn print(scope: &mut Scope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue<v8::Value>) {
    let level = match args.get(0).int32_value(scope).unwrap_or(1) {
        0 => LogLevel::Debug,
        2 => LogLevel::Warn,
        3 => LogLevel::Error,
        _ => LogLevel::Info,
    };
    let message = args.get(1).to_rust_string_lossy(scope);
    state(scope).borrow_mut().log(level, &message);
}

fn now(scope: &mut Scope, _args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let ms = state(scope).borrow().clock.now_ms();
    rv.set_double(ms);
}

fn time_origin(scope: &mut Scope, _args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let ms = state(scope).borrow().clock.origin_ms();
    rv.set_double(ms);
}

fn encode_utf8(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let Some(s) = string_arg(scope, &args, 0, "encodeUtf8") else { return };
    let mut bytes = Vec::new();
    write_utf8(scope, s, &mut bytes);
    if let Some(array) = new_u8_array(scope, bytes) {
        rv.set(array.into());
    }
}

fn encode_utf8_into(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let Some(s) = string_arg(scope, &args, 0, "encodeInto") else { return };
    let Some(dest) = u8_array_arg(scope, &args, 1, "encodeInto") else { return };
    let capacity = dest.byte_length();
    let mut buffer = vec![0u8; capacity];
    let mut read = 0usize;
    // NO_NULL_TERMINATION is the default of the v2 API; invalid surrogates become U+FFFD.
    let written = s.write_utf8_v2(scope, &mut buffer, v8::WriteFlags::kReplaceInvalidUtf8, Some(&mut read));
    // Copy the written bytes into the destination's backing store.
    let Some(store) = dest.buffer(scope).map(|b| b.get_backing_store()) else { return };
    let offset = dest.byte_offset();
    if let Some(data) = store.data() {
        // SAFETY: `data` points to the backing store of `dest`'s buffer, which holds at least
        // `offset + capacity` bytes (the view lies inside it); `written <= capacity`, and no JS
        // runs while this op holds the pointer, so the buffer cannot be detached or resized.
        unsafe {
            std::ptr::copy_nonoverlapping(buffer.as_ptr(), data.as_ptr().cast::<u8>().add(offset), written);
        }
    }
    let result = v8::Object::new(scope);
    let k_read = v8::String::new(scope, "read").unwrap();
    let k_written = v8::String::new(scope, "written").unwrap();
    let v_read = v8::Number::new(scope, read as f64);
    let v_written = v8::Number::new(scope, written as f64);
    result.set(scope, k_read.into(), v_read.into());
    result.set(scope, k_written.into(), v_written.into());
    rv.set(result.into());
}

fn decode_utf8(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(args.get(0)) else {
        throw_type_error(scope, "decode: argument 1 must be an ArrayBufferView");
        return;
    };
    let fatal = args.get(1).boolean_value(scope);
    let ignore_bom = args.get(2).boolean_value(scope);
    let mut bytes = Vec::new();
    copy_view_bytes(view, &mut bytes);
    let mut slice = bytes.as_slice();
    if !ignore_bom && slice.starts_with(&[0xEF, 0xBB, 0xBF]) {
        slice = &slice[3..];
    }
    let text = if fatal {
        match std::str::from_utf8(slice) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => return, // undefined: the JS side throws the TypeError
        }
    } else {
        String::from_utf8_lossy(slice)
    };
    match v8::String::new_from_utf8(scope, text.as_bytes(), v8::NewStringType::Normal) {
        Some(s) => rv.set(s.into()),
        None => throw_range_error(scope, "decode: the string would be longer than V8 allows"),
    }
}

fn encoding_for_label(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let label = args.get(0).to_rust_string_lossy(scope);
    let Some(encoding) = encoding_rs::Encoding::for_label(label.trim().as_bytes()) else { return };
    // The "replacement" encoding exists to neutralise dangerous labels; TextDecoder rejects it.
    if encoding == encoding_rs::REPLACEMENT {
        return;
    }
    let name = encoding.name().to_ascii_lowercase();
    let s = v8::String::new(scope, &name).unwrap();
    rv.set(s.into());
}

fn decoder_new(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let label = args.get(0).to_rust_string_lossy(scope);
    let fatal = args.get(1).boolean_value(scope);
    let ignore_bom = args.get(2).boolean_value(scope);
    let Some(encoding) = encoding_rs::Encoding::for_label(label.as_bytes()) else {
        throw_range_error(scope, "TextDecoder: unsupported encoding");
        return;
    };
    let decoder =
        if ignore_bom { encoding.new_decoder_without_bom_handling() } else { encoding.new_decoder_with_bom_removal() };
    match state(scope).borrow_mut().decoders.insert(decoder, fatal) {
        Some(id) => rv.set_uint32(id),
        None => throw_range_error(scope, "TextDecoder: too many streaming decoders are open in this worker"),
    }
}

fn decoder_decode(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let id = args.get(0).uint32_value(scope).unwrap_or(u32::MAX);
    let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(args.get(1)) else {
        throw_type_error(scope, "decode: argument must be an ArrayBufferView");
        return;
    };
    let stream = args.get(2).boolean_value(scope);
    let mut bytes = Vec::new();
    copy_view_bytes(view, &mut bytes);
    let state = state(scope);
    let decoded = state.borrow_mut().decoders.decode(id, &bytes, !stream);
    match decoded {
        Some(Ok(text)) => {
            if let Some(s) = v8::String::new_from_utf8(scope, text.as_bytes(), v8::NewStringType::Normal) {
                rv.set(s.into());
            } else {
                throw_range_error(scope, "decode: the string would be longer than V8 allows");
            }
        }
        Some(Err(())) => {} // undefined: fatal decoding error, the JS side throws
        None => throw_type_error(scope, "decode: this TextDecoder's stream was already closed"),
    }
}

fn decoder_free(scope: &mut Scope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue<v8::Value>) {
    let id = args.get(0).uint32_value(scope).unwrap_or(u32::MAX);
    state(scope).borrow_mut().decoders.remove(id);
}

fn timer_start(scope: &mut Scope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue<v8::Value>) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    let delay_ms = args.get(1).number_value(scope).unwrap_or(0.0).clamp(0.0, i32::MAX as f64) as u64;
    let state = state(scope);
    if let Err(message) = state.borrow_mut().timers.start(id, delay_ms) {
        throw_range_error(scope, message);
    }
}

fn timer_cancel(scope: &mut Scope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue<v8::Value>) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    state(scope).borrow_mut().timers.cancel(id);
}

/// `respond(id, status, statusText, flatHeaders, body)`: a handler's Response, ready for the wire.
fn respond(scope: &mut Scope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue<v8::Value>) {
    let Some(id) = args.get(0).number_value(scope) else { return };
    let id = id as u64;
    let status = args.get(1).uint32_value(scope).unwrap_or(500).min(999) as u16;
    let reason = args.get(2).to_rust_string_lossy(scope);
    let mut headers = Vec::new();
    if let Ok(flat) = v8::Local::<v8::Array>::try_from(args.get(3)) {
        let n = flat.length();
        let mut i = 0;
        while i + 1 < n {
            let (Some(name), Some(value)) = (flat.get_index(scope, i), flat.get_index(scope, i + 1)) else { break };
            let name = name.to_rust_string_lossy(scope);
            let mut bytes = Vec::new();
            match v8::Local::<v8::String>::try_from(value) {
                Ok(s) if byte_string(scope, s, &mut bytes) => {}
                // Headers only ever holds ByteStrings; anything else is a bug in isobar's JS.
                _ => bytes = value.to_rust_string_lossy(scope).into_bytes(),
            }
            headers.push((name, bytes));
            i += 2;
        }
    }
    let body_value = args.get(4);
    let mut body = Vec::new();
    if let Ok(s) = v8::Local::<v8::String>::try_from(body_value) {
        write_utf8(scope, s, &mut body);
    } else if let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(body_value) {
        copy_view_bytes(view, &mut body);
    }
    let response = WireResponse { status, reason, headers, body };
    state(scope).borrow_mut().outcomes.push(Outcome::Response { id, response });
}

/// `fail(id, description)`: the handler threw, rejected, or returned something that is not a Response.
fn fail(scope: &mut Scope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue<v8::Value>) {
    let Some(id) = args.get(0).number_value(scope) else { return };
    let message = args.get(1).to_rust_string_lossy(scope);
    state(scope).borrow_mut().outcomes.push(Outcome::Failed { id: id as u64, message });
}

fn url_components<'s>(scope: &mut Scope<'s, '_>, url: &url::Url) -> v8::Local<'s, v8::Array> {
    use url::quirks;
    let parts = [
        quirks::href(url),
        quirks::protocol(url),
        quirks::username(url),
        quirks::password(url),
        quirks::host(url),
        quirks::hostname(url),
        quirks::port(url),
        quirks::pathname(url),
        quirks::search(url),
        quirks::hash(url),
    ];
    let origin = quirks::origin(url);
    let mut values: Vec<v8::Local<v8::Value>> = Vec::with_capacity(parts.len() + 1);
    for p in parts {
        values.push(v8::String::new(scope, p).unwrap().into());
    }
    values.push(v8::String::new(scope, &origin).unwrap().into());
    v8::Array::new_with_elements(scope, &values)
}

fn url_parse(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let input = args.get(0).to_rust_string_lossy(scope);
    let base = args.get(1);
    let parsed = if base.is_undefined() {
        url::Url::parse(&input)
    } else {
        let base = base.to_rust_string_lossy(scope);
        match url::Url::parse(&base) {
            Ok(b) => b.join(&input),
            Err(e) => Err(e),
        }
    };
    if let Ok(url) = parsed {
        let array = url_components(scope, &url);
        rv.set(array.into());
    }
}

fn url_set(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    use url::quirks;
    let href = args.get(0).to_rust_string_lossy(scope);
    let which = args.get(1).uint32_value(scope).unwrap_or(u32::MAX);
    let value = args.get(2).to_rust_string_lossy(scope);
    let Ok(mut url) = url::Url::parse(&href) else { return };
    let ok = match which {
        0 => match url::Url::parse(&value) {
            Ok(u) => {
                url = u;
                true
            }
            Err(_) => false,
        },
        1 => quirks::set_protocol(&mut url, &value).is_ok(),
        2 => quirks::set_username(&mut url, &value).is_ok(),
        3 => quirks::set_password(&mut url, &value).is_ok(),
        4 => quirks::set_host(&mut url, &value).is_ok(),
        5 => quirks::set_hostname(&mut url, &value).is_ok(),
        6 => quirks::set_port(&mut url, &value).is_ok(),
        7 => {
            quirks::set_pathname(&mut url, &value);
            true
        }
        8 => {
            quirks::set_search(&mut url, &value);
            true
        }
        9 => {
            quirks::set_hash(&mut url, &value);
            true
        }
        _ => false,
    };
    // A setter the standard says to ignore leaves the URL as it was; report it unchanged.
    if ok || which != 0 {
        let array = url_components(scope, &url);
        rv.set(array.into());
    }
}

fn form_decode(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let input = args.get(0).to_rust_string_lossy(scope);
    let mut values: Vec<v8::Local<v8::Value>> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(input.as_bytes()) {
        values.push(v8::String::new(scope, &k).unwrap().into());
        values.push(v8::String::new(scope, &v).unwrap().into());
    }
    let array = v8::Array::new_with_elements(scope, &values);
    rv.set(array.into());
}

fn form_encode(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let Ok(flat) = v8::Local::<v8::Array>::try_from(args.get(0)) else {
        throw_type_error(scope, "formEncode: argument must be an array");
        return;
    };
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    let n = flat.length();
    let mut i = 0;
    while i + 1 < n {
        let k = flat.get_index(scope, i).map(|v| v.to_rust_string_lossy(scope)).unwrap_or_default();
        let v = flat.get_index(scope, i + 1).map(|v| v.to_rust_string_lossy(scope)).unwrap_or_default();
        serializer.append_pair(&k, &v);
        i += 2;
    }
    let s = v8::String::new(scope, &serializer.finish()).unwrap();
    rv.set(s.into());
}

fn random_fill(scope: &mut Scope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue<v8::Value>) {
    let Some(array) = u8_array_arg(scope, &args, 0, "getRandomValues") else { return };
    let len = array.byte_length();
    let mut bytes = vec![0u8; len];
    if kernel_shim::random::fill(&mut bytes).is_err() {
        throw_type_error(scope, "getRandomValues: the kernel's random source failed");
        return;
    }
    let Some(store) = array.buffer(scope).map(|b| b.get_backing_store()) else { return };
    let offset = array.byte_offset();
    if let Some(data) = store.data() {
        // SAFETY: the view `array` lies inside its buffer, so `offset + len` bytes are in bounds of
        // the backing store; no JS runs while the pointer is held.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.as_ptr().cast::<u8>().add(offset), len);
        }
    }
    rv.set(array.into());
}
