//! WebSockets (`WebSocketPair`, `WebSocket`, `CloseEvent`): websocket.js holds the objects and
//! their events; the ops here hand a bound end's sends and closes to the core
//! ([`Work::WsSend`], [`Work::WsClose`]) and ask it to open one ([`Work::WsConnect`]). The core
//! (scheduler/websocket.rs) owns the connections and the framing (netstack's `websocket`), and
//! calls back into the isolate with [`event`] for what arrives. What this module must not do:
//! frame bytes itself, or reach a connection while the core is inside V8.

use netstack::{WsMessage, WsUpdate};

use crate::bridge::hooks::{self, Hook};
use crate::bridge::{self, JsError, OpDecl, Scope, args, context};
use crate::outbound::outbox::{self, Work};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:websocket", include_str!("websocket.js"));

/// Workers' limit on one message, both ways (websocket.js checks it on `send()` too).
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("wsSend", ws_send), op_decl!("wsClose", ws_close), op_decl!("wsConnect", ws_connect)]
}

/// A WebSocket to open for a script (`new WebSocket(url)`, or `fetch()` with `Upgrade`).
#[derive(Debug)]
pub struct WsConnect {
    pub url: String,
    /// `Sec-WebSocket-Protocol`, as the script listed them (may be empty).
    pub protocols: String,
    /// Other request headers (lower-case names), from `fetch()`.
    pub headers: Vec<(String, Vec<u8>)>,
}

fn socket_id(scope: &mut Scope, value: v8::Local<v8::Value>, what: &str) -> Result<u32, JsError> {
    Ok(args::enforce_range(scope, value, 1.0..=(u32::MAX as f64), what)? as u32)
}

// `wsSend(id, data)`: `data` is a string (a text message) or a Uint8Array (binary).
op!(fn ws_send(scope, args) {
    let socket = socket_id(scope, args.get(0), "WebSocket.send")?;
    let data = args.get(1);
    let message = if let Ok(text) = v8::Local::<v8::String>::try_from(data) {
        WsMessage::Text(args::to_rust_string(scope, text, MESSAGE_BYTES_MAX, "WebSocket.send")?)
    } else {
        WsMessage::Binary(args::bytes(data, MESSAGE_BYTES_MAX, "WebSocket.send")?)
    };
    outbox::push(scope, Work::WsSend { socket, message })
});

// `wsClose(id, code, reason)`.
op!(fn ws_close(scope, args) {
    let socket = socket_id(scope, args.get(0), "WebSocket.close")?;
    let code = args::enforce_range(scope, args.get(1), 1000.0..=4999.0, "WebSocket.close")? as u16;
    let reason = args::string_coerced(scope, &args, 2, 123, "WebSocket.close")?;
    outbox::push(scope, Work::WsClose { socket, code, reason })
});

// `wsConnect(id, url, protocols, headers)`: a promise of `[protocol]` once the server accepted
// the upgrade; it counts as a subrequest.
op!(fn ws_connect(scope, args) {
    let socket = socket_id(scope, args.get(0), "WebSocket")?;
    let url = args::string_coerced(scope, &args, 1, 16 << 10, "WebSocket")?;
    let protocols = args::string_coerced(scope, &args, 2, 4096, "WebSocket")?;
    let mut headers = Vec::new();
    if let Ok(list) = v8::Local::<v8::Array>::try_from(args.get(3)) {
        for i in 0..list.length().min(256) {
            let Some(pair) = list.get_index(scope, i).and_then(|p| v8::Local::<v8::Array>::try_from(p).ok()) else {
                continue;
            };
            let (Some(name), Some(value)) = (pair.get_index(scope, 0), pair.get_index(scope, 1)) else { continue };
            let name = name.to_rust_string_lossy(scope).to_ascii_lowercase();
            let value = value.to_rust_string_lossy(scope).into_bytes();
            headers.push((name, value));
        }
    }
    let request = crate::api::fetch::outbound::count_subrequest(scope)?;
    let connect = Box::new(WsConnect { url, protocols, headers });
    outbox::start_op(scope, request, |op| Work::WsConnect { op, request, socket, connect })
});

/// Binds the WebSocket a `101` Response carries to the client's connection: the id the
/// server end is bound as, and the id of the socket it is joined to when the script returned a
/// socket `fetch()` opened (the core then passes messages between the two connections), or why
/// it cannot be returned.
pub fn bind(scope: &mut Scope, client: v8::Local<v8::Value>) -> Result<crate::state::WireWebSocket, String> {
    let Some(hook) = hooks::get(scope, Hook::BindWebSocket) else {
        return Err("the isolate has no WebSocket support".into());
    };
    v8::tc_scope!(let tc, scope);
    let undefined = v8::undefined(tc).into();
    let Some(reply) = hook.call(tc, undefined, &[client]) else {
        return Err(crate::worker::exception_text(tc));
    };
    let pair = v8::Local::<v8::Array>::try_from(reply).map_err(|_| "bad WebSocket binding".to_string())?;
    let mut ids = [0u32; 2];
    for (i, id) in ids.iter_mut().enumerate() {
        *id = pair.get_index(tc, i as u32).and_then(|v| v.uint32_value(tc)).unwrap_or(0);
    }
    match ids {
        [0, _] => Err("bad WebSocket id".into()),
        [id, 0] => Ok(crate::state::WireWebSocket { id, splice: None }),
        [id, origin] => Ok(crate::state::WireWebSocket { id, splice: Some(origin) }),
    }
}

/// Delivers `event` to the end bound as `socket`, as request `request`'s work.
pub fn event(scope: &mut Scope, request: u64, socket: u32, event: WsUpdate) {
    let Some(hook) = hooks::get(scope, Hook::WebSocketEvent) else { return };
    context::enter(scope, Some(request));
    let id = v8::Integer::new_from_unsigned(scope, socket).into();
    let values: Option<[v8::Local<v8::Value>; 3]> = (|| {
        Some(match event {
            WsUpdate::Message(WsMessage::Text(text)) => {
                let text = v8::String::new(scope, &text)?;
                [v8::Integer::new(scope, 1).into(), text.into(), v8::undefined(scope).into()]
            }
            WsUpdate::Message(message) => {
                let bytes = match message {
                    WsMessage::Binary(bytes) => bytes,
                    _ => return None,
                };
                let array = args::new_u8_array(scope, bytes).ok()?;
                [v8::Integer::new(scope, 2).into(), array.into(), v8::undefined(scope).into()]
            }
            WsUpdate::Closed { code, reason, clean } => {
                let detail = v8::Object::new(scope);
                let code_key = v8::String::new(scope, "code")?;
                let code_value = v8::Integer::new(scope, i32::from(code));
                detail.set(scope, code_key.into(), code_value.into())?;
                let reason_key = v8::String::new(scope, "reason")?;
                let reason_value = v8::String::new(scope, &reason)?;
                detail.set(scope, reason_key.into(), reason_value.into())?;
                [v8::Integer::new(scope, 3).into(), detail.into(), v8::Boolean::new(scope, clean).into()]
            }
        })
    })();
    if let Some([kind, a, b]) = values {
        let undefined = v8::undefined(scope).into();
        v8::tc_scope!(let tc, scope);
        if hook.call(tc, undefined, &[id, kind, a, b]).is_none() && !tc.is_execution_terminating() {
            let text = crate::worker::exception_text(tc);
            let state = bridge::state(tc);
            state.borrow_mut().log(crate::state::LogLevel::Error, &format!("Uncaught {text}"));
        }
    }
    context::enter(scope, None);
}

#[cfg(test)]
mod tests;
