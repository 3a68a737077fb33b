//! `Request`, native. An incoming request is made by Rust with four fields set (method, URL, the
//! raw header block, the body); its Headers object is built only if the script reads
//! `request.headers`.

use crate::bridge::class::{self, ClassDecl, ClassId};
use crate::bridge::{JsError, Ret, Scope, args, hooks};
use crate::op;

use super::body::{self, Kind, Slots};
use super::headers;

pub const METHOD: usize = 1;
pub const URL: usize = 2;
pub const HEADERS: usize = 3;
/// An incoming request's headers as received, `name:value\n` per header (names lower case),
/// until a script asks for `request.headers`.
pub const RAW_HEADERS: usize = 4;
pub const BODY: usize = 5;
pub const FLAGS: usize = 6;
pub const SIGNAL: usize = 7;
pub const CF: usize = 8;
pub const INTEGRITY: usize = 9;
pub const FIELDS: usize = 10;

pub const SLOTS: Slots = Slots { body: BODY, flags: FLAGS, what: "Request" };

const REDIRECT_SHIFT: i32 = 1;
const REDIRECT_MASK: i32 = 0b11 << REDIRECT_SHIFT;
const REDIRECT_NAMES: [&str; 3] = ["follow", "manual", "error"];
/// The headers may not change (an incoming request's).
const FLAG_IMMUTABLE_HEADERS: i32 = 1 << 3;
const FLAG_KEEPALIVE: i32 = 1 << 4;
/// `cache: "no-store"` was asked for.
const FLAG_NO_STORE: i32 = 1 << 5;

pub fn class() -> ClassDecl {
    use v8::MapFnTo;
    let mut decl = ClassDecl::new(ClassId::Request, "Request", FIELDS);
    decl.constructor = Some(constructor.map_fn_to());
    decl.length = 1;
    decl.methods = vec![
        ("clone", clone.map_fn_to(), 0),
        ("text", text.map_fn_to(), 0),
        ("json", json.map_fn_to(), 0),
        ("arrayBuffer", array_buffer.map_fn_to(), 0),
        ("bytes", bytes.map_fn_to(), 0),
        ("blob", blob.map_fn_to(), 0),
        ("formData", form_data.map_fn_to(), 0),
    ];
    decl.accessors = vec![
        ("method", method.map_fn_to(), None),
        ("url", url.map_fn_to(), None),
        ("headers", headers_getter.map_fn_to(), None),
        ("redirect", redirect.map_fn_to(), None),
        ("signal", signal.map_fn_to(), None),
        ("cf", cf.map_fn_to(), None),
        ("integrity", integrity.map_fn_to(), None),
        ("keepalive", keepalive.map_fn_to(), None),
        ("cache", cache.map_fn_to(), None),
        ("fetcher", fetcher.map_fn_to(), None),
        ("body", body_getter.map_fn_to(), None),
        ("bodyUsed", body_used.map_fn_to(), None),
    ];
    decl
}

/// What isobar passes for an incoming request.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Lower-case names; values as received.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// The Request object of an incoming HTTP request, made in `this`: a Request made by
/// `class::new_instance` and not yet filled in.
pub fn incoming_into<'s>(
    scope: &mut Scope<'s, '_>,
    this: v8::Local<'s, v8::Object>,
    request: &Incoming,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    // A plain string: internalizing it would look it up in the isolate's string table, cold
    // memory in an isolate that serves one request in a thousand, to save a few bytes.
    let method = args::new_string(scope, request.method)?;
    class::set_field(this, METHOD, method.into());
    let url = args::new_string(scope, request.url)?;
    class::set_field(this, URL, url.into());
    let size: usize = request.headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut block = Vec::with_capacity(size);
    for (name, value) in request.headers {
        block.extend_from_slice(name.as_bytes());
        block.push(b':');
        block.extend_from_slice(value);
        block.push(b'\n');
    }
    let raw = args::new_one_byte_string(scope, &block)?;
    class::set_field(this, RAW_HEADERS, raw.into());
    let body: v8::Local<v8::Value> = if request.body.is_empty() {
        v8::null(scope).into()
    } else {
        args::new_u8_array(scope, request.body.to_vec())?.into()
    };
    class::set_field(this, BODY, body);
    let flags = v8::Integer::new(scope, FLAG_IMMUTABLE_HEADERS);
    class::set_field(this, FLAGS, flags.into());
    Ok(this)
}

fn flags(scope: &mut Scope, this: v8::Local<v8::Object>) -> i32 {
    body::flags(scope, this, SLOTS)
}

/// The request's Headers, built now from the raw block if they were not yet.
pub fn headers_of<'s>(
    scope: &mut Scope<'s, '_>,
    this: v8::Local<'s, v8::Object>,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let existing = class::field(scope, this, HEADERS);
    if let Ok(headers) = v8::Local::<v8::Object>::try_from(existing) {
        return Ok(headers);
    }
    let headers = headers::new(scope, headers::GUARD_NONE)?;
    let raw = class::field(scope, this, RAW_HEADERS);
    if let Ok(raw) = v8::Local::<v8::String>::try_from(raw) {
        let block = args::byte_string(scope, raw).unwrap_or_default();
        for line in block.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let name = args::new_one_byte_string(scope, &line[..colon])?;
            let value = args::new_one_byte_string(scope, &line[colon + 1..])?;
            headers::append_unguarded(scope, headers, name.into(), value.into())?;
        }
        let undefined = v8::undefined(scope).into();
        class::set_field(this, RAW_HEADERS, undefined);
    }
    if flags(scope, this) & FLAG_IMMUTABLE_HEADERS != 0 {
        headers::set_guard(scope, headers, headers::GUARD_IMMUTABLE);
    }
    class::set_field(this, HEADERS, headers.into());
    Ok(headers)
}

/// The standard's method normalisation: a token, upper-cased if it is one of the standard
/// methods, and never CONNECT, TRACE or TRACK.
fn normalize_method<'s>(
    scope: &mut Scope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::String>, JsError> {
    let s = args::to_js_string(scope, value)?;
    let text = args::to_rust_string(scope, s, 256, "Request method")?;
    let is_token =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        return Err(JsError::type_error(format!("Invalid HTTP method: {text:?}")));
    }
    let upper = text.to_ascii_uppercase();
    if matches!(upper.as_str(), "CONNECT" | "TRACE" | "TRACK") {
        return Err(JsError::type_error(format!("Forbidden HTTP method: {text}")));
    }
    let normalized = if matches!(upper.as_str(), "DELETE" | "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" | "PATCH") {
        upper
    } else {
        text
    };
    args::new_string(scope, &normalized)
}

fn member<'s>(
    scope: &mut Scope<'s, '_>,
    init: Option<v8::Local<'s, v8::Object>>,
    key: &'static str,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    match init {
        Some(init) => args::get(scope, init, key),
        None => Ok(v8::undefined(scope).into()),
    }
}

op!(fn constructor(scope, args) {
    if args.new_target().is_undefined() {
        return Err(JsError::type_error("Failed to construct 'Request': Please use the 'new' operator"));
    }
    if args.length() == 0 {
        return Err(JsError::type_error("Failed to construct 'Request': 1 argument required, but only 0 present."));
    }
    let this = args.this();
    class::set_brand(scope, this, ClassId::Request);
    let input = args.get(0);
    let init_value = args.get(1);
    let init = if init_value.is_null_or_undefined() {
        None
    } else {
        Some(v8::Local::<v8::Object>::try_from(init_value).map_err(|_| JsError::type_error("Request: the init argument must be an object"))?)
    };

    // Start from the input: another Request, or a URL.
    let mut method = args::name(scope, "GET")?;
    let mut flags = 0;
    let mut input_body: Option<(v8::Local<v8::Object>, v8::Local<v8::Value>)> = None;
    let mut input_headers: Option<v8::Local<v8::Object>> = None;
    if class::is_instance(scope, input, ClassId::Request) {
        let source = v8::Local::<v8::Object>::try_from(input).map_err(|_| JsError::type_error("Request"))?;
        for field in [URL, SIGNAL, CF, INTEGRITY] {
            let value = class::field(scope, source, field);
            class::set_field(this, field, value);
        }
        let m = class::field(scope, source, METHOD);
        method = v8::Local::<v8::String>::try_from(m).map_err(|_| JsError::type_error("Request"))?;
        flags = flags_of_copy(scope, source);
        input_headers = Some(headers_of(scope, source)?);
        let raw_body = body::raw(scope, source, SLOTS);
        if !raw_body.is_null_or_undefined() {
            input_body = Some((source, raw_body));
        }
    } else {
        let url = args::string_coerced(scope, &args, 0, crate::api::url::URL_BYTES_MAX, "Request")?;
        let Some(parsed) = crate::api::url::parse(&url, None) else {
            return Err(JsError::type_error(format!("Invalid URL: {url}")));
        };
        let href = args::new_string(scope, parsed.as_str())?;
        class::set_field(this, URL, href.into());
    }

    // Dictionary members, in Web IDL's order.
    let body_init = member(scope, init, "body")?;
    let cache = member(scope, init, "cache")?;
    let cf = member(scope, init, "cf")?;
    let headers_init = member(scope, init, "headers")?;
    let integrity = member(scope, init, "integrity")?;
    let method_init = member(scope, init, "method")?;
    let redirect = member(scope, init, "redirect")?;
    let signal = member(scope, init, "signal")?;

    if !cache.is_undefined() {
        let mode = args::to_js_string(scope, cache)?.to_rust_string_lossy(scope);
        match mode.as_str() {
            "default" => flags &= !FLAG_NO_STORE,
            "no-store" => flags |= FLAG_NO_STORE,
            // As workerd: the other modes of the standard have no meaning without a browser cache.
            other => return Err(JsError::type_error(format!("Unsupported cache mode: {other}"))),
        }
    }
    if !cf.is_undefined() {
        class::set_field(this, CF, cf);
    }
    if !integrity.is_undefined() {
        let value = args::to_js_string(scope, integrity)?;
        class::set_field(this, INTEGRITY, value.into());
    }
    if !method_init.is_undefined() {
        method = normalize_method(scope, method_init)?;
    }
    class::set_field(this, METHOD, method.into());
    if !redirect.is_undefined() {
        let mode = args::to_js_string(scope, redirect)?.to_rust_string_lossy(scope);
        let Some(index) = REDIRECT_NAMES.iter().position(|m| *m == mode) else {
            return Err(JsError::type_error(format!("Invalid redirect mode: {mode}; it must be follow, manual or error")));
        };
        flags = (flags & !REDIRECT_MASK) | ((index as i32) << REDIRECT_SHIFT);
    }
    if !signal.is_undefined() {
        if !signal.is_null() && !is_abort_signal(scope, signal)? {
            return Err(JsError::type_error("Request: init.signal must be an AbortSignal"));
        }
        class::set_field(this, SIGNAL, signal);
    }

    // Headers: the init's replace the input's.
    let headers = headers::new(scope, headers::GUARD_NONE)?;
    if !headers_init.is_undefined() {
        headers::fill(scope, headers, headers_init)?;
    } else if let Some(source) = input_headers {
        headers::copy_into(scope, source, headers)?;
    }
    class::set_field(this, HEADERS, headers.into());

    // Body: the init's, or the input Request's (which is then used up).
    let method_name = method.to_rust_string_lossy(scope);
    let mut body_value: v8::Local<v8::Value> = v8::null(scope).into();
    if !body_init.is_undefined() {
        let extracted = body::extract(scope, body_init)?;
        if let Some(content_type) = extracted.content_type
            && !headers::contains(scope, headers, "content-type")?
        {
            let name = args::name(scope, "content-type")?;
            headers::append_unguarded(scope, headers, name.into(), content_type.into())?;
        }
        body_value = extracted.body;
    } else if let Some((source, raw_body)) = input_body {
        if body::used(scope, source, SLOTS)? {
            return Err(JsError::type_error("Request: the input Request's body has already been used"));
        }
        let source_flags = body::flags(scope, source, SLOTS);
        body::set_flags(scope, source, SLOTS, source_flags | body::FLAG_USED);
        body_value = raw_body;
    }
    if !body_value.is_null() && (method_name == "GET" || method_name == "HEAD") {
        return Err(JsError::type_error("Request with a GET or HEAD method cannot have a body."));
    }
    body::set_raw(this, SLOTS, body_value);
    let flags_value = v8::Integer::new(scope, flags);
    class::set_field(this, FLAGS, flags_value.into());
    Ok(())
});

/// The flags a copy of `source` starts with: its redirect mode, keepalive and cache mode.
fn flags_of_copy(scope: &mut Scope, source: v8::Local<v8::Object>) -> i32 {
    flags(scope, source) & (REDIRECT_MASK | FLAG_KEEPALIVE | FLAG_NO_STORE)
}

fn is_abort_signal(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<bool, JsError> {
    let check = hooks::get(scope, hooks::Hook::IsAbortSignal).ok_or(JsError::type_error("Request: not ready"))?;
    let undefined = v8::undefined(scope).into();
    let result = check.call(scope, undefined, &[value]).ok_or(JsError::Pending)?;
    Ok(result.is_true())
}

op!(fn method(scope, args) {
    Ok(class::field(scope, args.this(), METHOD))
});

op!(fn url(scope, args) {
    Ok(class::field(scope, args.this(), URL))
});

op!(fn headers_getter(scope, args) {
    headers_of(scope, args.this())
});

op!(fn redirect(scope, args) {
    let index = ((flags(scope, args.this()) & REDIRECT_MASK) >> REDIRECT_SHIFT) as usize;
    args::name(scope, REDIRECT_NAMES.get(index).copied().unwrap_or("follow"))
});

op!(fn signal(scope, args) {
    let this = args.this();
    let existing = class::field(scope, this, SIGNAL);
    if existing.is_object() {
        return Ok(existing);
    }
    // A signal that never aborts, made on first use.
    let make = hooks::get(scope, hooks::Hook::NewAbortSignal).ok_or(JsError::type_error("Request: not ready"))?;
    let undefined = v8::undefined(scope).into();
    let signal = make.call(scope, undefined, &[]).ok_or(JsError::Pending)?;
    class::set_field(this, SIGNAL, signal);
    Ok(signal)
});

op!(fn cf(scope, args) {
    Ok(class::field(scope, args.this(), CF))
});

op!(fn integrity(scope, args) {
    let value = class::field(scope, args.this(), INTEGRITY);
    if value.is_string() { Ok(value) } else { Ok(v8::String::empty(scope).into()) }
});

op!(fn keepalive(scope, args) {
    Ok(flags(scope, args.this()) & FLAG_KEEPALIVE != 0)
});

op!(fn cache(scope, args) {
    if flags(scope, args.this()) & FLAG_NO_STORE != 0 {
        Ok(Ret::Value(args::name(scope, "no-store")?.into()))
    } else {
        Ok(Ret::Undefined)
    }
});

op!(fn fetcher(scope, args) {
    let _ = &args;
    let _ = scope;
    Ok(Ret::Null)
});

op!(fn body_getter(scope, args) {
    body::stream(scope, args.this(), SLOTS)
});

op!(fn body_used(scope, args) {
    body::used(scope, args.this(), SLOTS)
});

fn consume<'s>(
    scope: &mut Scope<'s, '_>,
    this: v8::Local<'s, v8::Object>,
    kind: Kind,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let content_type = if matches!(kind, Kind::Blob | Kind::FormData) {
        let headers = headers_of(scope, this)?;
        super::header_value(scope, headers, "content-type")?
    } else {
        None
    };
    body::consume(scope, this, SLOTS, kind, content_type)
}

op!(fn text(scope, args) {
    consume(scope, args.this(), Kind::Text)
});

op!(fn json(scope, args) {
    consume(scope, args.this(), Kind::Json)
});

op!(fn array_buffer(scope, args) {
    consume(scope, args.this(), Kind::ArrayBuffer)
});

op!(fn bytes(scope, args) {
    consume(scope, args.this(), Kind::Bytes)
});

op!(fn blob(scope, args) {
    consume(scope, args.this(), Kind::Blob)
});

op!(fn form_data(scope, args) {
    consume(scope, args.this(), Kind::FormData)
});

op!(fn clone(scope, args) {
    let this = args.this();
    let body = body::clone_body(scope, this, SLOTS)?;
    let copy = class::new_instance(scope, ClassId::Request)?;
    for field in [METHOD, URL, SIGNAL, CF, INTEGRITY] {
        let value = class::field(scope, this, field);
        class::set_field(copy, field, value);
    }
    let source_flags = flags(scope, this);
    let flags_value = v8::Integer::new(scope, source_flags & !body::FLAG_USED);
    class::set_field(copy, FLAGS, flags_value.into());
    let source_headers = headers_of(scope, this)?;
    let headers = headers::new(scope, headers::GUARD_NONE)?;
    headers::copy_into(scope, source_headers, headers)?;
    if source_flags & FLAG_IMMUTABLE_HEADERS != 0 {
        headers::set_guard(scope, headers, headers::GUARD_IMMUTABLE);
    }
    class::set_field(copy, HEADERS, headers.into());
    body::set_raw(copy, SLOTS, body);
    Ok(copy)
});
