//! The Cache API (`caches.default`, `await caches.open(name)`): the ops behind `Cache` and
//! `CacheStorage` (cache.js), and the conversion between native Requests and Responses and the
//! store's entries ([`isobar_state::cache`]).
//!
//! An op reads what it needs from the native Request and Response in Rust (URL, method, status,
//! headers; a `put`'s body as cache.js read it, bounded like every body isobar reads whole),
//! and queues a [`CacheRequest`] in the isolate's outbox as [`Work::Cache`]; the core
//! (scheduler/cache.rs) adds the tenant, submits it to the host's store and settles the op with
//! [`settle_reply`] when the store answers. What this module must not do: touch the store, or
//! let a script name the tenant (a key's tenant is only ever the one the core serves, so one
//! tenant can never reach another's entries).

use isobar_state::cache::{
    CACHE_NAME_BYTES_MAX, CacheError, CacheKey, CacheOp, CacheReply, CachedResponse, URL_BYTES_MAX,
};

use crate::api::fetch::body::{self, BODY_BYTES_MAX};
use crate::api::fetch::{headers, request, response};
use crate::bridge::async_ops::Settle;
use crate::bridge::class::{self, ClassId};
use crate::bridge::{JsError, OpDecl, Scope, args, context};
use crate::outbound::outbox::{self, Work};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:cache", include_str!("cache.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("cacheMatch", cache_match),
        op_decl!("cacheDelete", cache_delete),
        op_decl!("cachePutCheck", cache_put_check),
        op_decl!("cachePut", cache_put),
    ]
}

/// One Cache API call as the isolate asks it, without the tenant (the core adds it).
#[derive(Debug)]
pub struct CacheRequest {
    /// `None` for `caches.default`, the name given to `caches.open()` otherwise.
    pub cache_name: Option<String>,
    /// The key: the request's URL, normalised as `new Request(url).url` is.
    pub url: String,
    pub method: String,
    pub call: CacheCall,
}

/// What is asked of the entry.
#[derive(Debug)]
pub enum CacheCall {
    Match { ignore_method: bool },
    Put { response: CachedResponse },
    Delete { ignore_method: bool },
}

impl CacheRequest {
    /// The verb, as the metrics' `verb` label names it.
    pub fn verb(&self) -> &'static str {
        match self.call {
            CacheCall::Match { .. } => "match",
            CacheCall::Put { .. } => "put",
            CacheCall::Delete { .. } => "delete",
        }
    }

    /// Whether this is a `match` that looks the entry up (a GET, or any method with
    /// `ignoreMethod`): what a hit or a miss is counted for.
    pub fn is_lookup(&self) -> bool {
        match self.call {
            CacheCall::Match { ignore_method } => ignore_method || self.method.eq_ignore_ascii_case("GET"),
            _ => false,
        }
    }

    /// The store's operation on `tenant`'s entry.
    pub fn into_op(self, tenant: &str) -> CacheOp {
        let key = CacheKey { tenant: tenant.to_owned(), cache_name: self.cache_name, url: self.url };
        let method = self.method;
        match self.call {
            CacheCall::Match { ignore_method } => CacheOp::Match { key, method, ignore_method },
            CacheCall::Put { response } => CacheOp::Put { key, method, response },
            CacheCall::Delete { ignore_method } => CacheOp::Delete { key, method, ignore_method },
        }
    }
}

/// The JavaScript error a script gets for a cache error: workerd's class, the store's message.
pub fn js_error(error: &CacheError) -> JsError {
    match error.js_class() {
        "TypeError" => JsError::type_error(error.to_string()),
        _ => JsError::Plain(error.to_string().into()),
    }
}

/// The settlement of a cache op from the store's answer: `match` resolves with a Response or
/// undefined, `put` with undefined, `delete` with a boolean.
pub fn settle_reply(result: Result<CacheReply, CacheError>) -> Settle {
    Box::new(move |scope| {
        let reply = result.map_err(|error| js_error(&error))?;
        match reply {
            CacheReply::Match(None) | CacheReply::Put(_) => Ok(v8::undefined(scope).into()),
            CacheReply::Match(Some(found)) => Ok(cached_response(scope, found)?.into()),
            CacheReply::Deleted(deleted) => Ok(v8::Boolean::new(scope, deleted).into()),
        }
    })
}

/// A stored response as a native Response: its status, its headers (immutable, as a fetched
/// response's are; `cf-cache-status: HIT` among them) and its body as bytes.
fn cached_response<'s>(scope: &mut Scope<'s, '_>, found: CachedResponse) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let headers = headers::new(scope, headers::GUARD_NONE)?;
    for (name, value) in &found.headers {
        let name = args::new_string(scope, name)?;
        let value = args::new_one_byte_string(scope, &latin1_bytes(value))?;
        headers::append_unguarded(scope, headers, name.into(), value.into())?;
    }
    let body = if response::is_null_body_status(i32::from(found.status)) {
        v8::null(scope).into()
    } else {
        args::new_u8_array(scope, found.body)?.into()
    };
    response::from_cache(scope, found.status, headers, body)
}

/// A header value as the store keeps it: each byte of the ByteString as one char (U+0000 to
/// U+00FF), so any value round-trips and the policy reads its ASCII as written.
fn latin1_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The bytes of a value [`latin1_string`] made (a char above U+00FF cannot occur; it is dropped).
fn latin1_bytes(text: &str) -> Vec<u8> {
    text.chars().filter_map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// The cache name cache.js passes: null for `caches.default`, else the (checked) name.
fn cache_name_arg<'s>(scope: &mut Scope<'s, '_>, value: v8::Local<'s, v8::Value>) -> Result<Option<String>, JsError> {
    if value.is_null_or_undefined() {
        return Ok(None);
    }
    let name = args::to_js_string(scope, value)?;
    if name.utf8_length(scope) > CACHE_NAME_BYTES_MAX {
        return Err(js_error(&CacheError::NameTooLong));
    }
    Ok(Some(args::to_rust_string(scope, name, CACHE_NAME_BYTES_MAX, "cache name")?))
}

/// A `RequestInfo` as workerd coerces it: a Request's URL and method, or anything else as the
/// URL of a GET (a URL string, a `URL` object, ...). An invalid URL is the cache's TypeError.
fn request_arg<'s>(scope: &mut Scope<'s, '_>, value: v8::Local<'s, v8::Value>) -> Result<(String, String), JsError> {
    if class::is_instance(scope, value, ClassId::Request) {
        let request = v8::Local::<v8::Object>::try_from(value).map_err(|_| JsError::type_error("Request"))?;
        let url = class::field(scope, request, request::URL);
        let method = class::field(scope, request, request::METHOD);
        let (Ok(url), Ok(method)) = (v8::Local::<v8::String>::try_from(url), v8::Local::<v8::String>::try_from(method))
        else {
            return Err(JsError::type_error("Request: the request is not initialised"));
        };
        let url = bounded_url(scope, url)?;
        let method = args::to_rust_string(scope, method, 64, "Request method")?;
        return Ok((url, method));
    }
    let text = args::to_js_string(scope, value)?;
    let text = bounded_url(scope, text)?;
    let Some(parsed) = crate::api::url::parse(&text, None) else {
        return Err(js_error(&CacheError::InvalidUrl));
    };
    let href = parsed.as_str();
    if href.len() > URL_BYTES_MAX {
        return Err(js_error(&CacheError::InvalidUrl));
    }
    Ok((href.to_owned(), "GET".to_owned()))
}

/// A URL no longer than the cache keeps (a longer one is an invalid key, refused before it is
/// copied out of V8).
fn bounded_url<'s>(scope: &mut Scope<'s, '_>, url: v8::Local<'s, v8::String>) -> Result<String, JsError> {
    if url.utf8_length(scope) > URL_BYTES_MAX {
        return Err(js_error(&CacheError::InvalidUrl));
    }
    args::to_rust_string(scope, url, URL_BYTES_MAX, "Cache key")
}

/// The Response argument of `put`, which must be a native Response.
fn response_arg<'s>(
    scope: &mut Scope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    if !class::is_instance(scope, value, ClassId::Response) {
        return Err(JsError::type_error("Failed to execute 'put' on 'Cache': parameter 2 is not of type 'Response'."));
    }
    v8::Local::<v8::Object>::try_from(value).map_err(|_| JsError::type_error("Response"))
}

/// A Response's status and headers as the store keeps them; workerd's TypeErrors for what a
/// cache must refuse (an error response, 206, a `Vary` naming `*`).
fn response_head<'s>(
    scope: &mut Scope<'s, '_>,
    response: v8::Local<'s, v8::Object>,
) -> Result<(u16, Vec<(String, String)>), JsError> {
    let status = class::field(scope, response, response::STATUS).int32_value(scope).unwrap_or(0);
    if status == 0 {
        return Err(JsError::type_error("Cache is unable to store an error response"));
    }
    if status == 206 {
        return Err(js_error(&CacheError::PartialContent));
    }
    let headers = response::headers_of(scope, response)?;
    let mut wire = Vec::new();
    headers::to_wire(scope, headers, &mut wire, response::WIRE_HEADERS_MAX, response::WIRE_HEADER_BYTES_MAX)
        .map_err(|message| JsError::type_error(format!("Cache.put(): {message}")))?;
    // workerd refuses any '*' in Vary, not only a whole `*` field.
    if wire.iter().any(|(name, value)| name == "vary" && value.contains(&b'*')) {
        return Err(js_error(&CacheError::VaryStar));
    }
    let status = u16::try_from(status).map_err(|_| JsError::type_error("Response: invalid status"))?;
    Ok((status, wire.into_iter().map(|(name, value)| (name, latin1_string(&value))).collect()))
}

/// Queues `call` for the running request; returns the promise the core settles.
fn start<'s>(scope: &mut Scope<'s, '_>, call: CacheRequest) -> Result<v8::Local<'s, v8::Promise>, JsError> {
    let Some(request) = context::current(scope) else {
        return Err(JsError::type_error(crate::api::timers::OUTSIDE_REQUEST));
    };
    outbox::start_op(scope, request, |op| Work::Cache { op, cache: Box::new(call) })
}

/// `cacheMatch(name, request, ignoreMethod)` and `cacheDelete(...)`: a promise of a Response or
/// undefined, or of a boolean. A non-GET request without `ignoreMethod` still goes to the store,
/// which answers it without a lookup, so every call is counted the same way.
fn lookup<'s>(
    scope: &mut Scope<'s, '_>,
    args: &v8::FunctionCallbackArguments<'s>,
    delete: bool,
) -> Result<v8::Local<'s, v8::Promise>, JsError> {
    let cache_name = cache_name_arg(scope, args.get(0))?;
    let (url, method) = request_arg(scope, args.get(1))?;
    let ignore_method = args.get(2).boolean_value(scope);
    let call = if delete { CacheCall::Delete { ignore_method } } else { CacheCall::Match { ignore_method } };
    start(scope, CacheRequest { cache_name, url, method, call })
}

op!(fn cache_match(scope, args) {
    lookup(scope, &args, false)
});

op!(fn cache_delete(scope, args) {
    lookup(scope, &args, true)
});

// `cachePutCheck(request, response)`: what workerd checks before it reads the body, in its
// order. Returns the key URL, or null for a 304 (discarded without touching the body, as
// workerd does: caching one would answer unconditional requests with an empty body).
op!(fn cache_put_check(scope, args) {
    let response = response_arg(scope, args.get(1))?;
    let (url, method) = request_arg(scope, args.get(0))?;
    if !method.eq_ignore_ascii_case("GET") {
        return Err(js_error(&CacheError::NonGetPut));
    }
    let (status, _) = response_head(scope, response)?;
    if status == 304 {
        return Ok(v8::null(scope).into());
    }
    if body::used(scope, response, response::SLOTS)? {
        return Err(JsError::type_error(
            "Body has already been used. It can only be used once. Use tee() first if you need to read it twice.",
        ));
    }
    let url: v8::Local<v8::Value> = args::new_string(scope, &url)?.into();
    Ok(url)
});

// `cachePut(name, url, response, bytes)`: stores the response with the body cache.js read (the
// URL is the one cachePutCheck returned). Settled once the store has it, or has decided not to
// keep it (no-store, private, Set-Cookie...: not an error, as on Workers).
op!(fn cache_put(scope, args) {
    let cache_name = cache_name_arg(scope, args.get(0))?;
    let url = args::to_js_string(scope, args.get(1))?;
    let url = bounded_url(scope, url)?;
    let response = response_arg(scope, args.get(2))?;
    let (status, headers) = response_head(scope, response)?;
    let body = args::bytes(args.get(3), BODY_BYTES_MAX, "Cache.put()")?;
    let response = CachedResponse { status, headers, body };
    start(scope, CacheRequest { cache_name, url, method: "GET".into(), call: CacheCall::Put { response } })
});

#[cfg(test)]
mod tests;
