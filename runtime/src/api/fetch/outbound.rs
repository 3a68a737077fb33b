//! `fetch()`'s native side: turning a Request into a subrequest for the core
//! (`crate::outbound`), the Response made from the origin's head, and the native body source
//! that stands for the origin's body until a script reads it.
//!
//! A subrequest's response body stays outside JavaScript: the Response holds a `BodySource`
//! (a native object naming the subrequest). Returned as the handler's response, it is passed
//! from the origin to the client by the core without entering the isolate; read by the script
//! (`text()`, `.body`), it becomes a ReadableStream whose pulls are `bodyRead` ops.

use crate::bridge::class::{self, ClassDecl, ClassId};
use crate::bridge::{self, JsError, OpDecl, Scope, args, context};
use crate::outbound::outbox::{self, Work};
use crate::outbound::{FetchRequest, RequestBody, ResponseMeta};
use crate::{op, op_decl};

use super::{body, headers, request, response};

/// BodySource fields: the subrequest's key.
const KEY: usize = 1;
const FIELDS: usize = 2;

/// The message Workers throws past the subrequest limit.
pub const TOO_MANY_SUBREQUESTS: &str = "Too many subrequests.";

pub fn class() -> ClassDecl {
    ClassDecl::new(ClassId::BodySource, "BodySource", FIELDS)
}

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("fetchStart", fetch_start),
        op_decl!("fetchWrite", fetch_write),
        op_decl!("fetchFinish", fetch_finish),
        op_decl!("fetchAbort", fetch_abort),
        op_decl!("bodyRead", body_read),
        op_decl!("bodyCancel", body_cancel),
        op_decl!("bodySourceKey", body_source_key),
        op_decl!("fetchBodyKind", fetch_body_kind),
        op_decl!("fetchRedirected", fetch_redirected),
    ]
}

/// A native body source for subrequest `key`.
pub fn new_source<'s>(scope: &mut Scope<'s, '_>, key: u64) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let source = class::new_instance(scope, ClassId::BodySource)?;
    let key = v8::Number::new(scope, key as f64);
    class::set_field(source, KEY, key.into());
    Ok(source)
}

/// The subrequest key of a body source, if `value` is one.
pub fn source_key(scope: &mut Scope, value: v8::Local<v8::Value>) -> Option<u64> {
    if !class::is_instance(scope, value, ClassId::BodySource) {
        return None;
    }
    let object = v8::Local::<v8::Object>::try_from(value).ok()?;
    let key = class::field(scope, object, KEY).number_value(scope)?;
    (key >= 0.0).then_some(key as u64)
}

/// The Response of a subrequest: the origin's status and headers (immutable, as in Workers), its
/// body as a source, and the URL it came from.
pub fn response_from_origin<'s>(
    scope: &mut Scope<'s, '_>,
    meta: &ResponseMeta,
    key: u64,
    url: &str,
    redirected: bool,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let headers = headers::new(scope, headers::GUARD_NONE)?;
    for (name, value) in &meta.headers {
        let name = args::new_one_byte_string(scope, name.as_bytes())?;
        let value = args::new_one_byte_string(scope, value)?;
        // An origin's header the Headers class would refuse (a name that is not a token) is
        // left out rather than failing the whole response.
        let _ = headers::append_unguarded(scope, headers, name.into(), value.into());
    }
    let has_body = !matches!(meta.status, 101 | 103 | 204 | 205 | 304);
    let body: v8::Local<v8::Value> = if has_body { new_source(scope, key)?.into() } else { v8::null(scope).into() };
    let reason = args::new_one_byte_string(scope, meta.reason.as_bytes())?;
    let url = args::new_string(scope, url)?;
    response::from_origin(scope, meta.status, reason, headers, body, url, redirected)
}

/// The request the running code works for, with its subrequest counted: the error Workers
/// throws past the limit, or when there is no request at all.
pub(crate) fn count_subrequest(scope: &mut Scope) -> Result<u64, JsError> {
    let state = bridge::state(scope);
    let id = context::current(scope);
    let mut state = state.borrow_mut();
    let Some(request) = id.and_then(|id| state.requests.get_mut(id)) else {
        return Err(JsError::type_error(crate::api::timers::OUTSIDE_REQUEST));
    };
    if request.subrequests >= request.subrequests_max {
        return Err(JsError::Plain(TOO_MANY_SUBREQUESTS.into()));
    }
    request.subrequests += 1;
    Ok(request.id)
}

// `fetchStart(request)`: starts the subrequest of a native Request; returns `[key, promise of
// the Response, whether the body is a stream]`. A stream body is then sent by the JS side with
// fetchWrite.
op!(fn fetch_start(scope, args) {
    let request_object = class::unwrap(scope, args.get(0), ClassId::Request, "fetch")?;
    let request_id = count_subrequest(scope)?;
    let method = class::field(scope, request_object, request::METHOD).to_rust_string_lossy(scope);
    let url_text = class::field(scope, request_object, request::URL).to_rust_string_lossy(scope);
    let url = url::Url::parse(&url_text).map_err(|_| JsError::type_error(format!("fetch: invalid URL {url_text:?}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(JsError::type_error(format!(
            "Fetch API cannot load: {url_text}; only http: and https: URLs are supported"
        )));
    }
    let headers_object = request::headers_of(scope, request_object)?;
    let mut wire_headers = Vec::new();
    headers::to_wire(scope, headers_object, &mut wire_headers, response::WIRE_HEADERS_MAX, response::WIRE_HEADER_BYTES_MAX)
        .map_err(|message| JsError::type_error(format!("fetch: {message}")))?;
    let raw = body::raw(scope, request_object, request::SLOTS);
    let body = if raw.is_null_or_undefined() {
        RequestBody::None
    } else if raw.is_string() || raw.is_array_buffer_view() {
        let bytes = body::body_bytes(scope, raw)?;
        RequestBody::Bytes(bytes)
    } else {
        if body::used(scope, request_object, request::SLOTS)? {
            return Err(JsError::type_error("fetch: the request's body has already been used"));
        }
        RequestBody::Streamed { length: body::known_length(scope, raw) }
    };
    let streamed = matches!(body, RequestBody::Streamed { .. });
    let state = bridge::state(scope);
    let key = {
        let mut state = state.borrow_mut();
        state.last_fetch_key += 1;
        state.last_fetch_key
    };
    let (op, promise) = state.borrow_mut().async_ops.start(scope, Some(request_id))?;
    let fetch = Box::new(FetchRequest { url, method, headers: wire_headers, body });
    outbox::push(scope, Work::Fetch { op, request: request_id, key, fetch })?;
    let key_value = v8::Number::new(scope, key as f64);
    let streamed = v8::Boolean::new(scope, streamed);
    Ok(v8::Array::new_with_elements(scope, &[key_value.into(), promise.into(), streamed.into()]))
});

fn key_arg(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<u64, JsError> {
    let key = args::enforce_range(scope, value, 0.0..=(u32::MAX as f64) * 65536.0, "fetch")?;
    Ok(key as u64)
}

// `fetchWrite(key, chunk)`: a promise settled once the chunk was taken.
op!(fn fetch_write(scope, args) {
    let key = key_arg(scope, args.get(0))?;
    let bytes = args::bytes(args.get(1), body::BODY_BYTES_MAX, "fetch: request body chunk")?;
    let request = context::current(scope);
    let state = bridge::state(scope);
    let (op, promise) = state.borrow_mut().async_ops.start(scope, request)?;
    outbox::push(scope, Work::UploadWrite { op, key, bytes })?;
    Ok(promise)
});

op!(fn fetch_finish(scope, args) {
    let key = key_arg(scope, args.get(0))?;
    outbox::push(scope, Work::UploadFinish { key })?;
    Ok(())
});

op!(fn fetch_abort(scope, args) {
    let key = key_arg(scope, args.get(0))?;
    outbox::push(scope, Work::Abort { key })?;
    Ok(())
});

// `bodyRead(source)`: a promise of the next Uint8Array of the body, or null at its end.
op!(fn body_read(scope, args) {
    let Some(key) = source_key(scope, args.get(0)) else {
        return Err(JsError::type_error("bodyRead: not a body source"));
    };
    let request = context::current(scope);
    let state = bridge::state(scope);
    let (op, promise) = state.borrow_mut().async_ops.start(scope, request)?;
    outbox::push(scope, Work::BodyRead { op, key })?;
    Ok(promise)
});

op!(fn body_cancel(scope, args) {
    if let Some(key) = source_key(scope, args.get(0)) {
        outbox::push(scope, Work::BodyCancel { key })?;
    }
    Ok(())
});

op!(fn body_source_key(scope, args) {
    Ok(source_key(scope, args.get(0)).map(|k| k as f64))
});

// `fetchBodyKind(request)`: "none", "bytes" or "stream" (without making a stream of it).
op!(fn fetch_body_kind(scope, args) {
    let request_object = class::unwrap(scope, args.get(0), ClassId::Request, "fetch")?;
    let raw = body::raw(scope, request_object, request::SLOTS);
    let kind = if raw.is_null_or_undefined() {
        "none"
    } else if raw.is_string() || raw.is_array_buffer_view() {
        "bytes"
    } else {
        "stream"
    };
    args::name(scope, kind)
});

// `fetchRedirected(response)`: the Response ends followed redirects.
op!(fn fetch_redirected(scope, args) {
    let response_object = class::unwrap(scope, args.get(0), ClassId::Response, "fetch")?;
    response::mark_redirected(scope, response_object);
    Ok(())
});
