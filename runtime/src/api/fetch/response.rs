//! `Response`, native. Its headers are made only when a script asks for them: a handler that
//! answers `new Response("hello")` creates one object, and isobar reads it back in Rust with no
//! JavaScript run on either side.

use crate::bridge::class::{self, ClassDecl, ClassId};
use crate::bridge::{JsError, Ret, Scope, args};
use crate::op;

use super::body::{self, Kind, Slots};
use super::headers;

pub const STATUS: usize = 1;
pub const STATUS_TEXT: usize = 2;
pub const HEADERS: usize = 3;
pub const BODY: usize = 4;
pub const FLAGS: usize = 5;
pub const URL: usize = 6;
pub const WEB_SOCKET: usize = 7;
/// The Content-Type the body implies, kept here until the headers are made (then added to them).
pub const IMPLIED_TYPE: usize = 8;
pub const CF: usize = 9;
pub const FIELDS: usize = 10;

pub const SLOTS: Slots = Slots { body: BODY, flags: FLAGS, what: "Response" };

/// Response types (bits 1-3 of the flags).
const TYPE_SHIFT: i32 = 1;
const TYPE_MASK: i32 = 0b111 << TYPE_SHIFT;
const TYPE_DEFAULT: i32 = 0;
const TYPE_ERROR: i32 = 1;
const TYPE_BASIC: i32 = 2;
const TYPE_NAMES: [&str; 5] = ["default", "error", "basic", "cors", "opaque"];
const FLAG_REDIRECTED: i32 = 1 << 4;
/// The headers, once made, may not change (Response.redirect(), Response.error()).
const FLAG_IMMUTABLE: i32 = 1 << 5;

pub fn class() -> ClassDecl {
    use v8::MapFnTo;
    let mut decl = ClassDecl::new(ClassId::Response, "Response", FIELDS);
    decl.constructor = Some(constructor.map_fn_to());
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
        ("status", status.map_fn_to(), None),
        ("statusText", status_text.map_fn_to(), None),
        ("ok", ok.map_fn_to(), None),
        ("headers", headers_getter.map_fn_to(), None),
        ("type", type_getter.map_fn_to(), None),
        ("url", url.map_fn_to(), None),
        ("redirected", redirected.map_fn_to(), None),
        ("body", body_getter.map_fn_to(), None),
        ("bodyUsed", body_used.map_fn_to(), None),
        ("webSocket", web_socket.map_fn_to(), None),
        ("cf", cf.map_fn_to(), None),
    ];
    decl.statics = vec![
        ("json", static_json.map_fn_to(), 1),
        ("redirect", static_redirect.map_fn_to(), 1),
        ("error", static_error.map_fn_to(), 0),
    ];
    decl
}

/// Statuses whose response has no body.
pub fn is_null_body_status(status: i32) -> bool {
    matches!(status, 101 | 103 | 204 | 205 | 304)
}

fn is_redirect_status(status: i32) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn set_int(scope: &mut Scope, object: v8::Local<v8::Object>, field: usize, value: i32) {
    let value = v8::Integer::new(scope, value);
    class::set_field(object, field, value.into());
}

/// Sets every field of a new response to its default.
fn init_fields(scope: &mut Scope, this: v8::Local<v8::Object>) {
    set_int(scope, this, STATUS, 200);
    let empty = v8::String::empty(scope);
    class::set_field(this, STATUS_TEXT, empty.into());
    let null = v8::null(scope).into();
    class::set_field(this, BODY, null);
    set_int(scope, this, FLAGS, TYPE_DEFAULT << TYPE_SHIFT);
}

/// A Web IDL dictionary member `init[key]` (undefined when init is undefined).
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

/// The `ResponseInit` dictionary argument (undefined and null are an empty dictionary).
fn init_dictionary<'s>(
    value: v8::Local<'s, v8::Value>,
    what: &str,
) -> Result<Option<v8::Local<'s, v8::Object>>, JsError> {
    if value.is_null_or_undefined() {
        return Ok(None);
    }
    v8::Local::<v8::Object>::try_from(value)
        .map(Some)
        .map_err(|_| JsError::type_error(format!("{what}: the init argument must be an object")))
}

/// The standard's "initialize a response" with `init` and an extracted body.
fn initialize<'s>(
    scope: &mut Scope<'s, '_>,
    this: v8::Local<'s, v8::Object>,
    init: Option<v8::Local<'s, v8::Object>>,
    extracted: body::Extracted<'s>,
) -> Result<(), JsError> {
    // Dictionary members are read in Web IDL's (alphabetical) order.
    let cf = member(scope, init, "cf")?;
    let headers_init = member(scope, init, "headers")?;
    let status_value = member(scope, init, "status")?;
    let status_text = member(scope, init, "statusText")?;
    let web_socket = member(scope, init, "webSocket")?;
    let mut status = 200;
    if !status_value.is_undefined() {
        let n = args::enforce_range(scope, status_value, 0.0..=65535.0, "Response status").map_err(|_| {
            JsError::range_error(
                "Responses may only be constructed with status codes in the range 200 to 599, inclusive.",
            )
        })? as i32;
        // workerd accepts 101 for a WebSocket upgrade; otherwise the standard's 200..=599.
        let upgrade = n == 101 && !web_socket.is_null_or_undefined();
        if !(200..=599).contains(&n) && !upgrade {
            return Err(JsError::range_error(format!(
                "Responses may only be constructed with status codes in the range 200 to 599, inclusive. (got {n})"
            )));
        }
        status = n;
    }
    set_int(scope, this, STATUS, status);
    if !status_text.is_undefined() {
        let text = args::to_js_string(scope, status_text)?;
        // Length first: a huge string is refused without copying it out of V8.
        let bytes = (text.length() <= 1024).then(|| args::byte_string(scope, text)).flatten();
        let valid = bytes.is_some_and(|b| {
            b.len() <= 1024 && b.iter().all(|&c| c == b'\t' || (0x20..=0x7e).contains(&c) || c >= 0x80)
        });
        if !valid {
            return Err(JsError::type_error("Invalid statusText: it must be a reason phrase (no control characters)"));
        }
        class::set_field(this, STATUS_TEXT, text.into());
    }
    if !headers_init.is_undefined() {
        let headers = headers::new(scope, headers::GUARD_NONE)?;
        headers::fill(scope, headers, headers_init)?;
        class::set_field(this, HEADERS, headers.into());
    }
    if !extracted.body.is_null() && is_null_body_status(status) {
        return Err(JsError::type_error(format!("Response with null body status {status} cannot have a body.")));
    }
    if let Some(content_type) = extracted.content_type {
        set_implied_type(scope, this, content_type)?;
    }
    body::set_raw(this, SLOTS, extracted.body);
    if !cf.is_undefined() {
        class::set_field(this, CF, cf);
    }
    if !web_socket.is_null_or_undefined() {
        class::set_field(this, WEB_SOCKET, web_socket);
    }
    Ok(())
}

/// Records the Content-Type a body implies: in the headers if they exist (unless they have one),
/// else in a field until they are made.
fn set_implied_type(
    scope: &mut Scope,
    this: v8::Local<v8::Object>,
    content_type: v8::Local<v8::String>,
) -> Result<(), JsError> {
    let headers = class::field(scope, this, HEADERS);
    match v8::Local::<v8::Object>::try_from(headers) {
        Ok(headers) => {
            let value = content_type.to_rust_string_lossy(scope);
            headers::set_if_absent(scope, headers, "content-type", &value)
        }
        Err(_) => {
            class::set_field(this, IMPLIED_TYPE, content_type.into());
            Ok(())
        }
    }
}

/// The response's Headers, made now if they were not yet.
pub fn headers_of<'s>(
    scope: &mut Scope<'s, '_>,
    this: v8::Local<'s, v8::Object>,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let existing = class::field(scope, this, HEADERS);
    if let Ok(headers) = v8::Local::<v8::Object>::try_from(existing) {
        return Ok(headers);
    }
    let immutable = body::flags(scope, this, SLOTS) & FLAG_IMMUTABLE != 0;
    let headers = headers::new(scope, headers::GUARD_NONE)?;
    let implied = class::field(scope, this, IMPLIED_TYPE);
    if let Ok(content_type) = v8::Local::<v8::String>::try_from(implied) {
        let name = args::name(scope, "content-type")?;
        headers::append_unguarded(scope, headers, name.into(), content_type.into())?;
    }
    if immutable {
        headers::set_guard(scope, headers, headers::GUARD_IMMUTABLE);
    }
    class::set_field(this, HEADERS, headers.into());
    Ok(headers)
}

op!(fn constructor(scope, args) {
    if args.new_target().is_undefined() {
        return Err(JsError::type_error("Failed to construct 'Response': Please use the 'new' operator"));
    }
    let this = args.this();
    class::set_brand(scope, this, ClassId::Response);
    init_fields(scope, this);
    let init = init_dictionary(args.get(1), "Response")?;
    let extracted = body::extract(scope, args.get(0))?;
    initialize(scope, this, init, extracted)?;
    Ok(())
});

/// A new Response made by isobar (no constructor runs): status 200, no body, no headers.
pub fn new_internal<'s>(scope: &mut Scope<'s, '_>) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let this = class::new_instance(scope, ClassId::Response)?;
    init_fields(scope, this);
    Ok(this)
}

op!(fn static_json(scope, args) {
    let data = args.get(0);
    if data.is_undefined() || data.is_function() || data.is_symbol() {
        return Err(JsError::type_error("Response.json: the value cannot be converted to JSON"));
    }
    let text = v8::json::stringify(scope, data).ok_or(JsError::Pending)?;
    let init = init_dictionary(args.get(1), "Response.json")?;
    let this = new_internal(scope)?;
    let content_type = args::name(scope, "application/json")?;
    initialize(scope, this, init, body::Extracted { body: text.into(), content_type: Some(content_type) })?;
    Ok(this)
});

op!(fn static_redirect(scope, args) {
    let url = args::string_coerced(scope, &args, 0, crate::api::url::URL_BYTES_MAX, "Response.redirect")?;
    let Some(parsed) = crate::api::url::parse(&url, None) else {
        return Err(JsError::type_error(format!("Response.redirect: invalid URL {url:?}")));
    };
    let status = if args.get(1).is_undefined() {
        302
    } else {
        args::enforce_range(scope, args.get(1), 0.0..=65535.0, "Response.redirect").unwrap_or(0.0) as i32
    };
    if !is_redirect_status(status) {
        return Err(JsError::range_error(format!("Invalid redirect status: {status}; it must be 301, 302, 303, 307 or 308")));
    }
    let this = new_internal(scope)?;
    set_int(scope, this, STATUS, status);
    let headers = headers::new(scope, headers::GUARD_NONE)?;
    headers::set_unguarded(scope, headers, "location", parsed.as_str())?;
    headers::set_guard(scope, headers, headers::GUARD_IMMUTABLE);
    class::set_field(this, HEADERS, headers.into());
    Ok(this)
});

op!(fn static_error(scope, args) {
    let _ = &args;
    let this = new_internal(scope)?;
    set_int(scope, this, STATUS, 0);
    set_int(scope, this, FLAGS, (TYPE_ERROR << TYPE_SHIFT) | FLAG_IMMUTABLE);
    Ok(this)
});

op!(fn status(scope, args) {
    Ok(class::field(scope, args.this(), STATUS))
});

op!(fn status_text(scope, args) {
    Ok(class::field(scope, args.this(), STATUS_TEXT))
});

op!(fn ok(scope, args) {
    let status = class::field(scope, args.this(), STATUS).int32_value(scope).unwrap_or(0);
    Ok((200..=299).contains(&status))
});

op!(fn headers_getter(scope, args) {
    headers_of(scope, args.this())
});

op!(fn type_getter(scope, args) {
    let flags = body::flags(scope, args.this(), SLOTS);
    let kind = ((flags & TYPE_MASK) >> TYPE_SHIFT) as usize;
    args::name(scope, TYPE_NAMES.get(kind).copied().unwrap_or("default"))
});

op!(fn url(scope, args) {
    let url = class::field(scope, args.this(), URL);
    if url.is_string() { Ok(url) } else { Ok(v8::String::empty(scope).into()) }
});

op!(fn redirected(scope, args) {
    Ok(body::flags(scope, args.this(), SLOTS) & FLAG_REDIRECTED != 0)
});

op!(fn body_getter(scope, args) {
    body::stream(scope, args.this(), SLOTS)
});

op!(fn body_used(scope, args) {
    body::used(scope, args.this(), SLOTS)
});

op!(fn web_socket(scope, args) {
    let ws = class::field(scope, args.this(), WEB_SOCKET);
    Ok(if ws.is_undefined() { Ret::Null } else { Ret::Value(ws) })
});

op!(fn cf(scope, args) {
    Ok(class::field(scope, args.this(), CF))
});

fn content_type<'s>(
    scope: &mut Scope<'s, '_>,
    this: v8::Local<'s, v8::Object>,
) -> Result<Option<v8::Local<'s, v8::Value>>, JsError> {
    let headers = class::field(scope, this, HEADERS);
    if let Ok(headers) = v8::Local::<v8::Object>::try_from(headers) {
        return super::header_value(scope, headers, "content-type");
    }
    let implied = class::field(scope, this, IMPLIED_TYPE);
    Ok(implied.is_string().then_some(implied))
}

fn consume<'s>(
    scope: &mut Scope<'s, '_>,
    this: v8::Local<'s, v8::Object>,
    kind: Kind,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let content_type = if matches!(kind, Kind::Blob | Kind::FormData) { content_type(scope, this)? } else { None };
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
    let copy = class::new_instance(scope, ClassId::Response)?;
    for field in [STATUS, STATUS_TEXT, FLAGS, URL, IMPLIED_TYPE, CF] {
        let value = class::field(scope, this, field);
        class::set_field(copy, field, value);
    }
    body::set_raw(copy, SLOTS, body);
    let headers = class::field(scope, this, HEADERS);
    if let Ok(headers) = v8::Local::<v8::Object>::try_from(headers) {
        let guard = if body::flags(scope, this, SLOTS) & FLAG_IMMUTABLE != 0 {
            headers::GUARD_IMMUTABLE
        } else {
            headers::GUARD_NONE
        };
        let copied = headers::new(scope, headers::GUARD_NONE)?;
        headers::copy_into(scope, headers, copied)?;
        headers::set_guard(scope, copied, guard);
        class::set_field(copy, HEADERS, copied.into());
    }
    Ok(copy)
});

/// A subrequest's Response (see `outbound.rs`): status as the origin sent it, immutable headers,
/// the body as given.
pub fn from_origin<'s>(
    scope: &mut Scope<'s, '_>,
    status: u16,
    reason: v8::Local<'s, v8::String>,
    headers: v8::Local<'s, v8::Object>,
    body: v8::Local<'s, v8::Value>,
    url: v8::Local<'s, v8::String>,
    redirected: bool,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let this = new_internal(scope)?;
    set_int(scope, this, STATUS, i32::from(status));
    class::set_field(this, STATUS_TEXT, reason.into());
    headers::set_guard(scope, headers, headers::GUARD_IMMUTABLE);
    class::set_field(this, HEADERS, headers.into());
    body::set_raw(this, SLOTS, body);
    class::set_field(this, URL, url.into());
    let mut flags = (TYPE_BASIC << TYPE_SHIFT) | FLAG_IMMUTABLE;
    if redirected {
        flags |= FLAG_REDIRECTED;
    }
    set_int(scope, this, FLAGS, flags);
    Ok(this)
}

/// A Response from the Cache API (`cache.match`): type "default" and no URL, as workerd makes
/// it, immutable headers, the body as given.
pub fn from_cache<'s>(
    scope: &mut Scope<'s, '_>,
    status: u16,
    headers: v8::Local<'s, v8::Object>,
    body: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let this = new_internal(scope)?;
    set_int(scope, this, STATUS, i32::from(status));
    headers::set_guard(scope, headers, headers::GUARD_IMMUTABLE);
    class::set_field(this, HEADERS, headers.into());
    body::set_raw(this, SLOTS, body);
    set_int(scope, this, FLAGS, (TYPE_DEFAULT << TYPE_SHIFT) | FLAG_IMMUTABLE);
    Ok(this)
}

/// Marks a subrequest's Response as the end of followed redirects (`redirected` is true).
pub fn mark_redirected(scope: &mut Scope, response: v8::Local<v8::Object>) {
    let flags = body::flags(scope, response, SLOTS);
    body::set_flags(scope, response, SLOTS, flags | FLAG_REDIRECTED);
}

/// Header count and bytes a response may carry to the wire.
pub const WIRE_HEADERS_MAX: usize = 1000;
pub const WIRE_HEADER_BYTES_MAX: usize = 256 << 10;

/// What a handler's Response is on the wire, read in Rust. Errors say why it cannot be sent.
pub fn to_wire(scope: &mut Scope, response: v8::Local<v8::Object>) -> Result<crate::state::WireResponse, String> {
    let status = class::field(scope, response, STATUS).int32_value(scope).unwrap_or(500);
    if status == 0 {
        return Err("the handler returned Response.error()".into());
    }
    let reason = class::field(scope, response, STATUS_TEXT);
    let reason = v8::Local::<v8::String>::try_from(reason)
        .ok()
        .and_then(|s| args::byte_string(scope, s))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut wire_headers = Vec::new();
    let headers = class::field(scope, response, HEADERS);
    if let Ok(headers) = v8::Local::<v8::Object>::try_from(headers) {
        headers::to_wire(scope, headers, &mut wire_headers, WIRE_HEADERS_MAX, WIRE_HEADER_BYTES_MAX)?;
    } else {
        let implied = class::field(scope, response, IMPLIED_TYPE);
        if let Ok(content_type) = v8::Local::<v8::String>::try_from(implied) {
            wire_headers.push(("content-type".to_string(), content_type.to_rust_string_lossy(scope).into_bytes()));
        }
    }
    if body::used(scope, response, SLOTS).map_err(|_| "the response body could not be checked".to_string())? {
        return Err("the response's body was already used".into());
    }
    let (body, stream) = match body::take_for_wire(scope, response, SLOTS)? {
        body::Outgoing::Bytes(bytes) => (bytes, None),
        body::Outgoing::Source(key) => (Vec::new(), Some(crate::state::WireStream::Fetch { key })),
        body::Outgoing::Stream(reader, length) => {
            let state = crate::bridge::state(scope);
            let mut state = state.borrow_mut();
            state.last_body_reader = state.last_body_reader.wrapping_add(1).max(1);
            let id = state.last_body_reader;
            state.body_readers.insert(id, reader);
            (Vec::new(), Some(crate::state::WireStream::Js { reader: id, length }))
        }
    };
    let web_socket = match status {
        101 => {
            let client = class::field(scope, response, WEB_SOCKET);
            Some(crate::api::websocket::bind(scope, client)?)
        }
        _ => None,
    };
    Ok(crate::state::WireResponse { status: status as u16, reason, headers: wire_headers, body, stream, web_socket })
}
