//! Service bindings (`env.NAME` of a tenant's `services = { NAME = "other" }`): `fetch()` on a
//! `Fetcher` (service.js) calls the other tenant in the same process, on the same core, with no
//! socket: the request goes from one isolate to the other through the core.
//!
//! The op reads the native Request (method, URL, headers; the body was read by service.js) and
//! queues it in the isolate's outbox as [`Work::Service`] with the binding's index; the core
//! (scheduler/service.rs) dispatches it to the other tenant's isolate as a request, collects
//! its response (whole: streamed bodies are read to their end, up to [`body::BODY_BYTES_MAX`])
//! and settles the op with [`settle_response`]. A call counts as one of the caller's
//! subrequests, as on Workers. What this module must not do: reach the other isolate itself.

use crate::api::fetch::{body, headers, outbound, request, response};
use crate::bridge::async_ops::Settle;
use crate::bridge::class::{self, ClassId};
use crate::bridge::{JsError, OpDecl, args};
use crate::outbound::outbox::{self, Work};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:service", include_str!("service.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("serviceFetch", service_fetch)]
}

/// A request for another tenant, as the caller made it.
#[derive(Debug)]
pub struct ServiceCall {
    pub method: String,
    pub url: String,
    /// Lower-case names.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The other tenant's response, whole.
#[derive(Debug)]
pub struct ServiceResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Settles a `serviceFetch` op: `[status, statusText, [[name, value], ...], Uint8Array]`, or a
/// rejection with `error` (a TypeError, as `fetch()` rejects when it gets no response).
pub fn settle_response(result: Result<ServiceResponse, String>) -> Settle {
    Box::new(move |scope| {
        let response = result.map_err(JsError::type_error)?;
        let status = v8::Integer::new(scope, i32::from(response.status));
        let reason = args::new_one_byte_string(scope, response.reason.as_bytes())?;
        let mut pairs = Vec::with_capacity(response.headers.len());
        for (name, value) in &response.headers {
            let name = args::new_one_byte_string(scope, name.as_bytes())?;
            let value = args::new_one_byte_string(scope, value)?;
            pairs.push(v8::Array::new_with_elements(scope, &[name.into(), value.into()]).into());
        }
        let pairs = v8::Array::new_with_elements(scope, &pairs);
        let body = args::new_u8_array(scope, response.body)?;
        Ok(v8::Array::new_with_elements(scope, &[status.into(), reason.into(), pairs.into(), body.into()]).into())
    })
}

// `serviceFetch(binding, request, body)`: a promise of the other tenant's response (see
// `settle_response`); `body` is the request's body, read whole by service.js, or null.
op!(fn service_fetch(scope, args) {
    let binding = args::enforce_range(scope, args.get(0), 0.0..=(u32::MAX as f64), "fetch")? as u32;
    let request_object = class::unwrap(scope, args.get(1), ClassId::Request, "fetch")?;
    let request_id = outbound::count_subrequest(scope)?;
    let method = class::field(scope, request_object, request::METHOD).to_rust_string_lossy(scope);
    let url = class::field(scope, request_object, request::URL).to_rust_string_lossy(scope);
    let headers_object = request::headers_of(scope, request_object)?;
    let mut wire_headers = Vec::new();
    headers::to_wire(scope, headers_object, &mut wire_headers, response::WIRE_HEADERS_MAX, response::WIRE_HEADER_BYTES_MAX)
        .map_err(|message| JsError::type_error(format!("fetch: {message}")))?;
    let body_arg = args.get(2);
    let body =
        if body_arg.is_null_or_undefined() { Vec::new() } else { args::bytes(body_arg, body::BODY_BYTES_MAX, "fetch")? };
    let call = Box::new(ServiceCall { method, url, headers: wire_headers, body });
    outbox::start_op(scope, request_id, |op| Work::Service { op, request: request_id, binding, call })
});
