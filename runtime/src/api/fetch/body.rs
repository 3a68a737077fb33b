//! The Body mixin of Request and Response: how a body is kept and read, natively.
//!
//! A body is kept in one internal field as the cheapest form it came in: `null`, a string, a
//! Uint8Array (isobar's own copy), or a ReadableStream. `text()`, `json()`, `arrayBuffer()` and
//! `bytes()` of a string or bytes body run no JavaScript at all; a stream body is read by the
//! streams code (`fetch.js`), and `.body` makes a stream only when a script asks for it.

use crate::bridge::class;
use crate::bridge::{JsError, Scope, args, hooks};

/// Bit of the flags field: the body was read (or its stream taken).
pub const FLAG_USED: i32 = 1;

/// The largest body isobar reads into one string or buffer for a script.
pub const BODY_BYTES_MAX: usize = 128 << 20;

/// The Content-Type of a string body (a plain string each time: see request.rs on internalizing).
const TEXT_PLAIN: &str = "text/plain;charset=UTF-8";

/// Where a class keeps its body and flags.
#[derive(Clone, Copy)]
pub struct Slots {
    pub body: usize,
    pub flags: usize,
    /// For error messages: "Request" or "Response".
    pub what: &'static str,
}

pub fn flags(scope: &mut Scope, object: v8::Local<v8::Object>, slots: Slots) -> i32 {
    class::field(scope, object, slots.flags).int32_value(scope).unwrap_or(0)
}

pub fn set_flags(scope: &mut Scope, object: v8::Local<v8::Object>, slots: Slots, flags: i32) {
    let value = v8::Integer::new(scope, flags);
    class::set_field(object, slots.flags, value.into());
}

/// The body as it is kept (null, a string, a Uint8Array or a stream).
pub fn raw<'s>(scope: &mut Scope<'s, '_>, object: v8::Local<v8::Object>, slots: Slots) -> v8::Local<'s, v8::Value> {
    class::field(scope, object, slots.body)
}

pub fn set_raw(object: v8::Local<v8::Object>, slots: Slots, body: v8::Local<v8::Value>) {
    class::set_field(object, slots.body, body);
}

/// A body kept as a JS ReadableStream (an object that is neither bytes nor a native source).
fn is_stream(scope: &mut Scope, value: v8::Local<v8::Value>) -> bool {
    value.is_object() && !value.is_array_buffer_view() && !is_source(scope, value)
}

/// A body still at its origin (a subrequest's response body; see `outbound.rs`).
fn is_source(scope: &mut Scope, value: v8::Local<v8::Value>) -> bool {
    crate::bridge::class::is_instance(scope, value, crate::bridge::class::ClassId::BodySource)
}

/// A source body becomes a ReadableStream, kept in place of the source.
fn source_to_stream<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    slots: Slots,
    source: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let stream = call_hook(scope, hooks::Hook::StreamFromSource, &[source])?;
    set_raw(object, slots, stream);
    Ok(stream)
}

/// `bodyUsed`: read through a method, or its stream disturbed.
pub fn used(scope: &mut Scope, object: v8::Local<v8::Object>, slots: Slots) -> Result<bool, JsError> {
    if flags(scope, object, slots) & FLAG_USED != 0 {
        return Ok(true);
    }
    let body = raw(scope, object, slots);
    if is_stream(scope, body) {
        let disturbed = call_hook(scope, hooks::Hook::StreamDisturbed, &[body])?;
        return Ok(disturbed.boolean_value(scope));
    }
    Ok(false)
}

fn call_hook<'s>(
    scope: &mut Scope<'s, '_>,
    hook: hooks::Hook,
    args: &[v8::Local<'s, v8::Value>],
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let function = hooks::get(scope, hook).ok_or_else(|| JsError::type_error("isobar: the API is not ready"))?;
    let undefined = v8::undefined(scope).into();
    function.call(scope, undefined, args).ok_or(JsError::Pending)
}

/// What a `BodyInit` becomes: the kept body and the Content-Type it implies, if any.
pub struct Extracted<'s> {
    pub body: v8::Local<'s, v8::Value>,
    pub content_type: Option<v8::Local<'s, v8::String>>,
}

/// The Fetch Standard's "extract a body" for the kinds isobar keeps natively (string, buffer);
/// Blob, FormData, URLSearchParams and streams go through `fetch.js`.
pub fn extract<'s>(scope: &mut Scope<'s, '_>, init: v8::Local<'s, v8::Value>) -> Result<Extracted<'s>, JsError> {
    if init.is_null_or_undefined() {
        return Ok(Extracted { body: v8::null(scope).into(), content_type: None });
    }
    if let Ok(text) = v8::Local::<v8::String>::try_from(init) {
        let content_type = args::new_string(scope, TEXT_PLAIN)?;
        return Ok(Extracted { body: text.into(), content_type: Some(content_type) });
    }
    if args::buffer_len(init).is_some() {
        let bytes = args::bytes(init, BODY_BYTES_MAX, "body")?;
        let array = args::new_u8_array(scope, bytes)?;
        return Ok(Extracted { body: array.into(), content_type: None });
    }
    if init.is_object() {
        // [body, contentType | null]
        let pair = call_hook(scope, hooks::Hook::ExtractBody, &[init])?;
        let pair = v8::Local::<v8::Array>::try_from(pair).map_err(|_| JsError::type_error("body: bad body"))?;
        let body = pair.get_index(scope, 0).ok_or(JsError::Pending)?;
        let content_type = pair.get_index(scope, 1).ok_or(JsError::Pending)?;
        let content_type = v8::Local::<v8::String>::try_from(content_type).ok();
        return Ok(Extracted { body, content_type });
    }
    // Numbers, booleans...: Web IDL converts them with String() (a Symbol throws).
    let text = args::to_js_string(scope, init)?;
    let content_type = args::new_string(scope, TEXT_PLAIN)?;
    Ok(Extracted { body: text.into(), content_type: Some(content_type) })
}

/// What a body-reading method produces.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Json,
    ArrayBuffer,
    Bytes,
    Blob,
    FormData,
}

impl Kind {
    fn js_name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Json => "json",
            Kind::ArrayBuffer => "arrayBuffer",
            Kind::Bytes => "bytes",
            Kind::Blob => "blob",
            Kind::FormData => "formData",
        }
    }
}

/// A promise settled now: resolved with `value`, or rejected with what `value` threw.
fn settled<'s>(
    scope: &mut Scope<'s, '_>,
    value: Result<v8::Local<'s, v8::Value>, JsError>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let resolver = v8::PromiseResolver::new(scope).ok_or(JsError::Pending)?;
    match value {
        Ok(v) => {
            resolver.resolve(scope, v);
        }
        Err(JsError::Pending) => return Err(JsError::Pending),
        Err(error) => {
            let exception = error.to_value(scope).ok_or(JsError::Pending)?;
            resolver.reject(scope, exception);
        }
    }
    Ok(resolver.get_promise(scope).into())
}

/// `text()`, `json()`, `arrayBuffer()`, `bytes()`, `blob()`, `formData()`: always a promise.
pub fn consume<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    slots: Slots,
    kind: Kind,
    content_type: Option<v8::Local<'s, v8::Value>>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    if used(scope, object, slots)? {
        let message = format!(
            "{}: Body has already been used. It can only be used once. Use tee() first if you need to read it twice.",
            kind.js_name()
        );
        return settled(scope, Err(JsError::type_error(message)));
    }
    let mut body = raw(scope, object, slots);
    if is_source(scope, body) {
        body = source_to_stream(scope, object, slots, body)?;
    }
    let f = flags(scope, object, slots);
    set_flags(scope, object, slots, f | FLAG_USED);
    if is_stream(scope, body) {
        // The streams code reads it to the end and converts (a promise).
        let kind_name = args::name(scope, kind.js_name())?;
        let content_type = content_type.unwrap_or_else(|| v8::null(scope).into());
        return call_hook(scope, hooks::Hook::ConsumeStream, &[body, kind_name.into(), content_type]);
    }
    let value = convert(scope, body, kind, content_type);
    settled(scope, value)
}

/// Converts a string or bytes body (or null) to what `kind` asks for.
fn convert<'s>(
    scope: &mut Scope<'s, '_>,
    body: v8::Local<'s, v8::Value>,
    kind: Kind,
    content_type: Option<v8::Local<'s, v8::Value>>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    match kind {
        Kind::Text | Kind::Json => {
            let text = body_text(scope, body)?;
            if kind == Kind::Text {
                return Ok(text.into());
            }
            json_parse(scope, text)
        }
        Kind::ArrayBuffer => {
            let bytes = body_bytes(scope, body)?;
            Ok(args::new_array_buffer(scope, bytes).into())
        }
        Kind::Bytes => {
            let bytes = body_bytes(scope, body)?;
            Ok(args::new_u8_array(scope, bytes)?.into())
        }
        Kind::Blob | Kind::FormData => {
            let bytes = body_bytes(scope, body)?;
            let bytes = args::new_u8_array(scope, bytes)?;
            let content_type = content_type.unwrap_or_else(|| v8::null(scope).into());
            let hook = if kind == Kind::Blob { hooks::Hook::MakeBlob } else { hooks::Hook::ParseFormData };
            call_hook(scope, hook, &[bytes.into(), content_type])
        }
    }
}

/// `JSON.parse(text)`, with a SyntaxError rejected rather than thrown.
fn json_parse<'s>(
    scope: &mut Scope<'s, '_>,
    text: v8::Local<'s, v8::String>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    v8::tc_scope!(let tc, scope);
    match v8::json::parse(tc, text) {
        Some(value) => Ok(value),
        None => {
            if tc.has_terminated() {
                return Err(JsError::Pending);
            }
            let message = tc.exception().map(|e| e.to_rust_string_lossy(tc)).unwrap_or_default();
            tc.reset();
            Err(JsError::Syntax(message.into()))
        }
    }
}

/// A string or bytes body as text (UTF-8 decoded, BOM removed, errors replaced).
pub fn body_text<'s>(
    scope: &mut Scope<'s, '_>,
    body: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::String>, JsError> {
    if let Ok(text) = v8::Local::<v8::String>::try_from(body) {
        return Ok(text);
    }
    if body.is_null_or_undefined() {
        return Ok(v8::String::empty(scope));
    }
    let bytes = args::bytes(body, BODY_BYTES_MAX, "body")?;
    let slice = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(&bytes);
    args::new_string(scope, &String::from_utf8_lossy(slice))
}

/// A string or bytes body as bytes (a new copy).
pub fn body_bytes(scope: &mut Scope, body: v8::Local<v8::Value>) -> Result<Vec<u8>, JsError> {
    if let Ok(text) = v8::Local::<v8::String>::try_from(body) {
        let len = text.utf8_length(scope);
        if len > BODY_BYTES_MAX {
            return Err(JsError::range_error("body: larger than isobar reads at once"));
        }
        let mut out = Vec::with_capacity(len);
        args::write_utf8(scope, text, &mut out);
        return Ok(out);
    }
    if body.is_null_or_undefined() {
        return Ok(Vec::new());
    }
    args::bytes(body, BODY_BYTES_MAX, "body")
}

/// `.body`: null, or a ReadableStream (made on first access from a string or bytes body and kept).
pub fn stream<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    slots: Slots,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let body = raw(scope, object, slots);
    if is_source(scope, body) {
        return source_to_stream(scope, object, slots, body);
    }
    if body.is_null_or_undefined() || is_stream(scope, body) {
        return Ok(body);
    }
    // A body already read through text() etc. has only an empty, closed stream left (made
    // from null); its bodyUsed stays true through the flag.
    let used = flags(scope, object, slots) & FLAG_USED != 0;
    let source = if used { v8::null(scope).into() } else { body };
    let stream = call_hook(scope, hooks::Hook::StreamFromBody, &[source])?;
    set_raw(object, slots, stream);
    Ok(stream)
}

/// A copy of the body for `clone()`: strings and bytes are shared or copied; a stream is teed
/// (the original keeps one branch).
pub fn clone_body<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    slots: Slots,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    if used(scope, object, slots)? {
        return Err(JsError::type_error(format!("{}.clone(): the body has already been used", slots.what)));
    }
    let mut body = raw(scope, object, slots);
    if is_source(scope, body) {
        body = source_to_stream(scope, object, slots, body)?;
    }
    if is_stream(scope, body) {
        // [branch for the original, branch for the clone]
        let branches = call_hook(scope, hooks::Hook::TeeStream, &[body])?;
        let branches =
            v8::Local::<v8::Array>::try_from(branches).map_err(|_| JsError::type_error("clone: tee failed"))?;
        let mine = branches.get_index(scope, 0).ok_or(JsError::Pending)?;
        let theirs = branches.get_index(scope, 1).ok_or(JsError::Pending)?;
        set_raw(object, slots, mine);
        return Ok(theirs);
    }
    if body.is_array_buffer_view() {
        let bytes = args::bytes(body, BODY_BYTES_MAX, "clone")?;
        return Ok(args::new_u8_array(scope, bytes)?.into());
    }
    Ok(body)
}

/// How a body leaves for the wire: bytes now, a subrequest's body passed through, or a script's
/// stream read chunk by chunk.
pub enum Outgoing {
    Bytes(Vec<u8>),
    Source(u64),
    /// The stream, and its known length (a FixedLengthStream's), if any.
    Stream(v8::Global<v8::Object>, Option<u64>),
}

/// Takes the body of a handler's Response for the wire (the body is used afterwards).
pub fn take_for_wire(scope: &mut Scope, object: v8::Local<v8::Object>, slots: Slots) -> Result<Outgoing, String> {
    let body = raw(scope, object, slots);
    let f = flags(scope, object, slots);
    set_flags(scope, object, slots, f | FLAG_USED);
    if let Some(key) = super::outbound::source_key(scope, body) {
        return Ok(Outgoing::Source(key));
    }
    if is_stream(scope, body) {
        let reader = call_hook(scope, hooks::Hook::StreamReader, &[body])
            .map_err(|_| "the response's body stream is locked or not a ReadableStream".to_string())?;
        let reader = v8::Local::<v8::Object>::try_from(reader).map_err(|_| "no reader".to_string())?;
        let length = known_length(scope, body);
        return Ok(Outgoing::Stream(v8::Global::new(scope, reader), length));
    }
    body_bytes(scope, body).map(Outgoing::Bytes).map_err(|_| "the response body is too large".to_string())
}

/// A stream's known length (a FixedLengthStream's readable side), if it has one.
pub fn known_length<'s>(scope: &mut Scope<'s, '_>, stream: v8::Local<'s, v8::Value>) -> Option<u64> {
    let length = call_hook(scope, hooks::Hook::StreamKnownLength, &[stream]).ok()?;
    let n = length.number_value(scope)?;
    (length.is_number() && n >= 0.0 && n.fract() == 0.0).then_some(n as u64)
}
