//! Workers KV bindings (`env.NAME` of a `[[tenant.kv]]`): the ops behind `KVNamespace` (kv.js)
//! and the conversion of the store's replies into JavaScript values.
//!
//! An op turns the script's arguments into an [`isobar_state::kv::KvOp`] and queues it in the
//! isolate's outbox as [`Work::Kv`] with the index of the binding; the core (scheduler/kv.rs)
//! resolves the binding to the tenant's namespace, hands the operation to its store client, and
//! settles the op with [`settle_reply`] when the store answers. What this module must not do:
//! touch the store, or copy anything larger than Workers' limits into Rust (an oversized key,
//! value or metadata is refused with the store's own error before it is copied).

use isobar_state::kv::{Expiration, KEY_BYTES_MAX, KvError, KvOp, KvReply, METADATA_BYTES_MAX, VALUE_BYTES_MAX};

use crate::bridge::async_ops::Settle;
use crate::bridge::{self, JsError, OpDecl, Scope, args, context};
use crate::outbound::outbox::{self, WORK_MAX, Work};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:kv", include_str!("kv.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("kvGet", kv_get),
        op_decl!("kvPut", kv_put),
        op_decl!("kvDelete", kv_delete),
        op_decl!("kvList", kv_list),
    ]
}

/// The JavaScript error a script gets for a KV error: workerd's class, the store's message.
pub fn js_error(error: &KvError) -> JsError {
    match error.js_class() {
        "TypeError" => JsError::type_error(error.to_string()),
        _ => JsError::Plain(error.to_string().into()),
    }
}

/// The settlement of a KV op from the store's answer: `get` resolves with null or
/// `[Uint8Array, metadata JSON text or null]`, `put` and `delete` with undefined, `list` with
/// `[list_complete, cursor or null, names, expirations (undefined where none), metadata texts
/// (null where none)]`; kv.js makes Workers' shapes of them.
pub fn settle_reply(result: Result<KvReply, KvError>) -> Settle {
    settle_with(move |scope| {
        let reply = result.map_err(|error| js_error(&error))?;
        match reply {
            KvReply::Done => Ok(v8::undefined(scope).into()),
            KvReply::Value(None) => Ok(v8::null(scope).into()),
            KvReply::Value(Some(value)) => {
                let bytes = args::new_u8_array(scope, value.value)?;
                let metadata = optional_string(scope, value.metadata.as_deref())?;
                Ok(v8::Array::new_with_elements(scope, &[bytes.into(), metadata]).into())
            }
            KvReply::List(page) => {
                let complete = v8::Boolean::new(scope, page.list_complete);
                let cursor = optional_string(scope, page.cursor.as_deref())?;
                let mut names = Vec::with_capacity(page.keys.len());
                let mut expirations = Vec::with_capacity(page.keys.len());
                let mut metadatas = Vec::with_capacity(page.keys.len());
                for key in &page.keys {
                    names.push(args::new_string(scope, &key.name)?.into());
                    expirations.push(match key.expiration {
                        Some(at) => v8::Number::new(scope, at as f64).into(),
                        None => v8::undefined(scope).into(),
                    });
                    metadatas.push(optional_string(scope, key.metadata.as_deref())?);
                }
                let names = v8::Array::new_with_elements(scope, &names);
                let expirations = v8::Array::new_with_elements(scope, &expirations);
                let metadatas = v8::Array::new_with_elements(scope, &metadatas);
                let elements = [complete.into(), cursor, names.into(), expirations.into(), metadatas.into()];
                Ok(v8::Array::new_with_elements(scope, &elements).into())
            }
        }
    })
}

/// Boxes a settlement, with the closure's signature (and its lifetimes) stated by the bound.
fn settle_with(
    make: impl for<'s, 'i> FnOnce(&mut v8::PinScope<'s, 'i>) -> Result<v8::Local<'s, v8::Value>, JsError> + 'static,
) -> Settle {
    Box::new(make)
}

fn optional_string<'s>(scope: &mut Scope<'s, '_>, text: Option<&str>) -> Result<v8::Local<'s, v8::Value>, JsError> {
    Ok(match text {
        Some(text) => args::new_string(scope, text)?.into(),
        None => v8::null(scope).into(),
    })
}

/// The binding index a KVNamespace holds (kv.js passes its own private field).
fn binding_arg(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<u32, JsError> {
    let index = args::enforce_range(scope, value, 0.0..=(u32::MAX as f64), "KVNamespace")?;
    Ok(index as u32)
}

/// The error of an operation refused here, before it was queued (a Workers limit checked before
/// the bytes are copied); the core counts it, and its error, for the tenant as the store would.
fn refuse(scope: &mut Scope, verb: &'static str, error: KvError) -> JsError {
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    if state.outbox.len() < WORK_MAX {
        state.outbox.push(Work::KvRefused { verb });
    }
    js_error(&error)
}

/// A key, refused with the store's error when longer than Workers allow (before it is copied).
fn key_arg<'s>(
    scope: &mut Scope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
    verb: &'static str,
) -> Result<String, JsError> {
    let text = args::to_js_string(scope, value)?;
    let len = text.utf8_length(scope);
    if len > KEY_BYTES_MAX {
        return Err(refuse(scope, verb, KvError::KeyTooLong(len)));
    }
    args::to_rust_string(scope, text, KEY_BYTES_MAX, "KV key")
}

/// A count of seconds kv.js has already made a non-negative integer, or undefined.
fn seconds_arg(scope: &mut Scope, value: v8::Local<v8::Value>) -> Option<u64> {
    if value.is_undefined() {
        return None;
    }
    let n = value.number_value(scope)?;
    // `as` saturates: a huge number becomes u64::MAX, which the store treats as "far away".
    (n.is_finite() && n >= 0.0).then_some(n as u64)
}

/// Starts op `kv` on binding `binding` for the running request; returns its promise.
fn start<'s>(scope: &mut Scope<'s, '_>, binding: u32, kv: KvOp) -> Result<v8::Local<'s, v8::Promise>, JsError> {
    let Some(request) = context::current(scope) else {
        return Err(JsError::type_error(crate::api::timers::OUTSIDE_REQUEST));
    };
    outbox::start_op(scope, request, |op| Work::Kv { op, binding, kv: Box::new(kv) })
}

// `kvGet(binding, key, cacheTtl)`: a promise of null or [bytes, metadata].
op!(fn kv_get(scope, args) {
    let binding = binding_arg(scope, args.get(0))?;
    let key = key_arg(scope, args.get(1), "get")?;
    let cache_ttl_secs = seconds_arg(scope, args.get(2));
    start(scope, binding, KvOp::Get { key, cache_ttl_secs })
});

// `kvPut(binding, key, bytes, expiration, expirationTtl, metadata)`: a promise settled once
// the store has made the value durable.
op!(fn kv_put(scope, args) {
    let binding = binding_arg(scope, args.get(0))?;
    let key = key_arg(scope, args.get(1), "put")?;
    let value = args.get(2);
    let len = args::buffer_len(value).ok_or_else(|| JsError::type_error("KV put(): the value is not bytes"))?;
    if len > VALUE_BYTES_MAX {
        return Err(refuse(scope, "put", KvError::ValueTooLarge(len)));
    }
    let value = args::bytes(value, VALUE_BYTES_MAX, "KV put()")?;
    let expiration = match (seconds_arg(scope, args.get(3)), seconds_arg(scope, args.get(4))) {
        (_, Some(ttl)) => Expiration::Ttl(ttl),
        (Some(at), None) => Expiration::At(at),
        (None, None) => Expiration::Never,
    };
    let metadata_arg = args.get(5);
    let metadata = if metadata_arg.is_string() {
        let text = args::to_js_string(scope, metadata_arg)?;
        let len = text.utf8_length(scope);
        if len > METADATA_BYTES_MAX {
            return Err(refuse(scope, "put", KvError::MetadataTooLarge(len)));
        }
        Some(args::to_rust_string(scope, text, METADATA_BYTES_MAX, "KV metadata")?)
    } else {
        None
    };
    start(scope, binding, KvOp::Put { key, value, expiration, metadata })
});

op!(fn kv_delete(scope, args) {
    let binding = binding_arg(scope, args.get(0))?;
    let key = key_arg(scope, args.get(1), "delete")?;
    start(scope, binding, KvOp::Delete { key })
});

// `kvList(binding, prefix, limit, cursor)`: a promise of one page.
op!(fn kv_list(scope, args) {
    let binding = binding_arg(scope, args.get(0))?;
    let prefix = args::to_js_string(scope, args.get(1))?;
    let len = prefix.utf8_length(scope);
    if len > KEY_BYTES_MAX {
        return Err(refuse(scope, "list", KvError::PrefixTooLong(len)));
    }
    let prefix = args::to_rust_string(scope, prefix, KEY_BYTES_MAX, "KV list prefix")?;
    let limit = args.get(2).number_value(scope).unwrap_or(0.0);
    // Out of range is the store's error with the number the script gave (clamped to u32).
    let limit = if limit.is_finite() { limit.clamp(0.0, u32::MAX as f64) as u32 } else { 0 };
    let cursor_arg = args.get(3);
    let cursor = if cursor_arg.is_string() {
        let text = args::to_js_string(scope, cursor_arg)?;
        // A cursor is one key's base64; anything much longer is not one of ours.
        if text.utf8_length(scope) > KEY_BYTES_MAX * 2 {
            return Err(refuse(scope, "list", KvError::InvalidCursor));
        }
        Some(args::to_rust_string(scope, text, KEY_BYTES_MAX * 2, "KV list cursor")?)
    } else {
        None
    };
    start(scope, binding, KvOp::List { prefix, limit, cursor })
});

#[cfg(test)]
mod tests;
