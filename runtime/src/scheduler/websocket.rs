//! WebSockets the core carries for isolates (`api::websocket`): a server end bound to a client's
//! connection when a handler answers `101` with a `webSocket`, and client ends the core opened.
//!
//! A bound end keeps the request that made it going (as a `waitUntil()` promise would) until it
//! closes; each event delivered to it may use the tenant's CPU limit afresh (as each incoming
//! message on Workers), and the request's wall-clock limit after the response is renewed while
//! a socket is open. The framing is netstack's: this module only routes messages between the
//! connections and the isolates, and closes the sockets of an isolate that goes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netstack::transport::ConnId;
use netstack::{WsLimits, WsMessage, WsUpdate};

use super::Core;
use super::io::{reject_with, resolve_with};
use crate::bridge::async_ops::Settle;
use crate::outbound::{ExchangeId, FetchRequest, Progress, RequestBody, ResponseMeta};

/// One bound end.
#[derive(Debug, Clone, Copy)]
struct Socket {
    /// The request it works for.
    request: u64,
    conn: ConnId,
    /// A client end the core opened (its connection is the outbound side's), not a server end
    /// on a client's connection.
    outbound: bool,
    /// Joined to this other socket of the same isolate: what arrives on one is sent on the
    /// other, without entering the isolate.
    splice: Option<u32>,
}

/// A WebSocket being opened: the exchange carrying its upgrade request.
#[derive(Debug)]
struct Connecting {
    version: u64,
    request: u64,
    socket: u32,
    op: u32,
    url: String,
    /// The `Sec-WebSocket-Key` sent.
    key: String,
    /// The `101` head, once it arrived.
    head: Option<ResponseMeta>,
}

/// The core's WebSockets, by (tenant version, id in the isolate) and by connection.
#[derive(Debug, Default)]
pub(super) struct CoreSockets {
    by_id: HashMap<(u64, u32), Socket>,
    by_conn: HashMap<ConnId, (u64, u32)>,
    /// How many are open for each request.
    per_request: HashMap<u64, u32>,
    connecting: HashMap<ExchangeId, Connecting>,
}

/// Whether a request asks for a WebSocket (RFC 6455 §4.2.1): its `Sec-WebSocket-Key` if so.
pub(super) fn upgrade_key(request: &netstack::http1::Request) -> Option<Box<[u8]>> {
    let websocket = request.header("upgrade").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"));
    let version = request.header("sec-websocket-version").is_some_and(|v| v.trim_ascii() == b"13");
    let key = request.header("sec-websocket-key")?.trim_ascii();
    (request.method() == "GET" && websocket && version && key.len() == 24).then(|| key.into())
}

impl Core {
    /// Answers pending request `id` with `101 Switching Protocols` and binds the end `socket`
    /// of its isolate to the connection. False if it cannot (the request did not ask for a
    /// WebSocket, or the connection is gone): the caller answers otherwise, and the end is told
    /// it closed.
    pub(super) fn accept_websocket(
        &mut self,
        id: u64,
        web_socket: crate::state::WireWebSocket,
        headers: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) -> Result<(), &'static str> {
        let socket = web_socket.id;
        let Some(pending) = self.pending.get(&id) else { return Err("the request is gone") };
        let super::ReplyTo::Client { conn, request } = pending.to else {
            return Err("a WebSocket cannot be returned to a service binding's caller");
        };
        let Some(key) = pending.upgrade.as_deref() else {
            return Err(
                "the worker returned a WebSocket to a request which did not ask for one (no `Upgrade: websocket`)",
            );
        };
        let version = pending.tenant.version;
        if let Some(origin) = web_socket.splice
            && !self.sockets.by_id.get(&(version, origin)).is_some_and(|s| s.outbound && s.splice.is_none())
        {
            return Err("the WebSocket to join is not open");
        }
        let mut head: Vec<(String, Vec<u8>)> = headers
            .into_iter()
            .filter(|(name, _)| !super::is_hop_by_hop(name) && !name.starts_with("sec-websocket-a"))
            .collect();
        head.push(("upgrade".into(), b"websocket".to_vec()));
        head.push(("sec-websocket-accept".into(), netstack::websocket::accept_key(key).into_bytes()));
        let limits = WsLimits::default();
        if !self.http.respond_upgrade(&mut self.ring, conn, request, &head, limits, now, &mut self.incoming) {
            return Err("the connection cannot switch to a WebSocket");
        }
        let splice = web_socket.splice;
        self.sockets.by_id.insert((version, socket), Socket { request: id, conn, outbound: false, splice });
        if let Some(origin) = splice
            && let Some(other) = self.sockets.by_id.get_mut(&(version, origin))
        {
            other.splice = Some(socket);
        }
        self.sockets.by_conn.insert(conn, (version, socket));
        *self.sockets.per_request.entry(id).or_default() += 1;
        if let Some(slot) = self.cache.slot(version) {
            slot.worker.hold_request(id);
        }
        Ok(())
    }

    /// Tells the end `socket` of `version`'s isolate that it is closed (it was never bound).
    pub(super) fn websocket_refused(&mut self, version: u64, request: u64, socket: u32, reason: &str, now: Instant) {
        let event = WsUpdate::Closed { code: 1006, reason: reason.to_string(), clean: false };
        self.deliver_ws_event(version, request, socket, event, now);
    }

    /// A message or the end of a server-side WebSocket, from the connection.
    pub(super) fn on_ws_event(&mut self, conn: ConnId, event: WsUpdate, now: Instant) {
        let Some(&(version, socket)) = self.sockets.by_conn.get(&conn) else { return };
        let Some(&bound) = self.sockets.by_id.get(&(version, socket)) else { return };
        let closed = matches!(event, WsUpdate::Closed { .. });
        if let Some(tenant) = self.cache.tenant(version) {
            let counters = self.counters.entry(tenant.name.clone()).or_default();
            if let WsUpdate::Message(message) = &event {
                counters.ws_messages_in += 1;
                counters.bytes_in += match message {
                    WsMessage::Text(text) => text.len() as u64,
                    WsMessage::Binary(data) => data.len() as u64,
                    _ => 0,
                };
            }
        }
        if closed {
            self.forget_socket(version, socket);
        }
        if let Some(other) = bound.splice {
            // Joined sockets: pass it on to the other connection.
            if let Some(other) = self.sockets.by_id.get(&(version, other)).copied() {
                match event {
                    WsUpdate::Message(message) => self.send_bound(version, other, message, now),
                    WsUpdate::Closed { code, reason, .. } => {
                        // 1005 and 1006 describe this side; they may not be sent.
                        let code = if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) { code } else { 1000 };
                        self.close_bound(other, code, &reason, now);
                    }
                }
            }
            if closed && let Some(slot) = self.cache.slot(version) {
                slot.worker.release_request(bound.request);
                self.touched.insert(version);
            }
            return;
        }
        self.deliver_ws_event(version, bound.request, socket, event, now);
        if closed && let Some(slot) = self.cache.slot(version) {
            slot.worker.release_request(bound.request);
            self.touched.insert(version);
        }
    }

    fn deliver_ws_event(&mut self, version: u64, request: u64, socket: u32, event: WsUpdate, now: Instant) {
        // Each event may use the tenant's CPU limit afresh.
        if let Some(background) = self.background.get_mut(&request) {
            background.cpu = Duration::ZERO;
        }
        let budget = self.entry_budget(version);
        let Some(slot) = self.cache.slot(version) else { return };
        if slot.worker.condemned().is_some() {
            return;
        }
        slot.worker.ws_event(request, socket, event, now, budget);
        let cpu = slot.worker.take_last_entry_cpu();
        self.charge(version, &[request], cpu);
        self.touched.insert(version);
    }

    /// A send or close the isolate asked for.
    pub(super) fn ws_send(&mut self, version: u64, socket: u32, message: WsMessage, now: Instant) {
        let Some(bound) = self.sockets.by_id.get(&(version, socket)).copied() else { return };
        self.send_bound(version, bound, message, now);
    }

    fn send_bound(&mut self, version: u64, bound: Socket, message: WsMessage, now: Instant) {
        if let Some(tenant) = self.cache.tenant(version) {
            let counters = self.counters.entry(tenant.name.clone()).or_default();
            counters.ws_messages_out += 1;
            counters.bytes_out += match &message {
                WsMessage::Text(text) => text.len() as u64,
                WsMessage::Binary(data) => data.len() as u64,
                _ => 0,
            };
        }
        let sent = if bound.outbound {
            let link = self.http.transport_mut();
            self.io.outbound.ws_send(link, &mut self.ring, bound.conn, message, now)
        } else {
            self.http.ws_send(&mut self.ring, bound.conn, message, now)
        };
        match sent {
            Ok(()) | Err(netstack::WsError::Closed) => {}
            Err(error) => {
                // A peer that reads nothing while the script sends on: the socket fails rather
                // than hold without bound.
                tracing::warn!(target: "worker", "WebSocket closed: {error}");
                self.close_bound(bound, 1011, "the peer does not read its messages", now);
            }
        }
    }

    pub(super) fn ws_close(&mut self, version: u64, socket: u32, code: u16, reason: &str, now: Instant) {
        let Some(bound) = self.sockets.by_id.get(&(version, socket)).copied() else { return };
        self.close_bound(bound, code, reason, now);
    }

    fn close_bound(&mut self, bound: Socket, code: u16, reason: &str, now: Instant) {
        if bound.outbound {
            let link = self.http.transport_mut();
            self.io.outbound.ws_close(link, &mut self.ring, bound.conn, code, reason, now);
        } else {
            self.http.ws_close(&mut self.ring, bound.conn, code, reason, now);
        }
    }

    fn forget_socket(&mut self, version: u64, socket: u32) -> Option<Socket> {
        let bound = self.sockets.by_id.remove(&(version, socket))?;
        self.sockets.by_conn.remove(&bound.conn);
        if let Some(n) = self.sockets.per_request.get_mut(&bound.request) {
            *n -= 1;
            if *n == 0 {
                self.sockets.per_request.remove(&bound.request);
            }
        }
        Some(bound)
    }

    /// Whether request `id` has a WebSocket open.
    pub(super) fn holds_socket(&self, id: u64) -> bool {
        self.sockets.per_request.contains_key(&id)
    }

    /// `version`'s isolate is gone: its WebSockets close with 1001 (going away).
    pub(super) fn websockets_isolate_gone(&mut self, version: u64, now: Instant) {
        let gone: Vec<u32> = self.sockets.by_id.keys().filter(|(v, _)| *v == version).map(|(_, s)| *s).collect();
        for socket in gone {
            if let Some(bound) = self.forget_socket(version, socket) {
                self.close_bound(bound, 1001, "the worker went away", now);
            }
        }
        let connecting: Vec<ExchangeId> =
            self.sockets.connecting.iter().filter(|(_, c)| c.version == version).map(|(e, _)| *e).collect();
        for exchange in connecting {
            self.sockets.connecting.remove(&exchange);
            let link = self.http.transport_mut();
            self.io.outbound.cancel(link, &mut self.ring, exchange);
        }
    }

    /// The core drains: the WebSockets it opened close with 1001 (going away), as the server
    /// closes those on its connections.
    pub(super) fn websockets_drain(&mut self, now: Instant) {
        let outbound: Vec<Socket> = self.sockets.by_id.values().filter(|s| s.outbound).copied().collect();
        for bound in outbound {
            self.close_bound(bound, 1001, "the server is shutting down", now);
        }
    }

    /// Request `id` ended: the WebSockets it was still opening are dropped.
    pub(super) fn websockets_request_ended(&mut self, version: u64, id: u64) {
        let connecting: Vec<ExchangeId> = self
            .sockets
            .connecting
            .iter()
            .filter(|(_, c)| c.version == version && c.request == id)
            .map(|(e, _)| *e)
            .collect();
        for exchange in connecting {
            self.sockets.connecting.remove(&exchange);
            let link = self.http.transport_mut();
            self.io.outbound.cancel(link, &mut self.ring, exchange);
        }
    }

    /// What happened on the client ends' connections.
    pub(super) fn outbound_ws_turn(&mut self, now: Instant) {
        let mut updates = Vec::new();
        self.io.outbound.take_ws_updates(&mut updates);
        for (conn, update) in updates {
            self.on_ws_event(conn, update, now);
        }
    }
}

impl Core {
    /// Opens a WebSocket for an isolate (`new WebSocket(url)`, `fetch()` with `Upgrade`): an
    /// upgrade request through the outbound side (its DNS, egress policy, TLS and limits), the
    /// op settled once the server's `101` is checked.
    #[expect(clippy::too_many_arguments)]
    pub(super) fn ws_connect(
        &mut self,
        version: u64,
        op: u32,
        request: u64,
        socket: u32,
        connect: crate::api::websocket::WsConnect,
        settled: &mut Vec<(u32, Settle)>,
        now: Instant,
    ) {
        let failed = |reason: String| reject_with(format!("WebSocket connection to {} failed: {reason}", connect.url));
        let url = match url::Url::parse(&connect.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return settled.push((op, failed("the URL is not a ws: or wss: URL".into()))),
        };
        let key = netstack::websocket::client_key();
        let mut headers: Vec<(String, Vec<u8>)> = connect
            .headers
            .into_iter()
            .filter(|(name, _)| !super::is_hop_by_hop(name) && !name.starts_with("sec-websocket-") && name != "host")
            .collect();
        headers.push(("upgrade".into(), b"websocket".to_vec()));
        headers.push(("connection".into(), b"Upgrade".to_vec()));
        headers.push(("sec-websocket-version".into(), b"13".to_vec()));
        headers.push(("sec-websocket-key".into(), key.clone().into_bytes()));
        if !connect.protocols.is_empty() {
            headers.push(("sec-websocket-protocol".into(), connect.protocols.into_bytes()));
        }
        if let Some(tenant) = self.cache.tenant(version) {
            self.counters.entry(tenant.name.clone()).or_default().subrequests += 1;
        }
        let fetch = FetchRequest { url, method: "GET".into(), headers, body: RequestBody::None };
        let link = self.http.transport_mut();
        match self.io.outbound.start(link, &mut self.ring, fetch, now) {
            Ok(exchange) => {
                let url = connect.url;
                let connecting = Connecting { version, request, socket, op, url, key, head: None };
                self.sockets.connecting.insert(exchange, connecting);
                self.io.ready.push(exchange);
            }
            Err(error) => settled.push((op, failed(error.to_string()))),
        }
    }

    /// Moves a WebSocket being opened on: its `101` head, checked, then the switch.
    pub(super) fn ws_connect_progress(&mut self, exchange: ExchangeId, now: Instant) {
        // Each pass takes one piece of progress; an exchange has a head and an end.
        for _ in 0..4 {
            if !self.sockets.connecting.contains_key(&exchange) {
                return;
            }
            let link = self.http.transport_mut();
            let Some(progress) = self.io.outbound.next_progress(link, &mut self.ring, exchange, now) else { return };
            let Some(connecting) = self.sockets.connecting.get_mut(&exchange) else { return };
            match progress {
                Progress::Head(meta) if meta.status == 101 => {
                    let expected = netstack::websocket::accept_key(connecting.key.as_bytes());
                    let accepted = header(&meta, "sec-websocket-accept") == Some(expected.as_bytes());
                    let websocket = header(&meta, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
                    if !accepted || !websocket {
                        let reason = "the server's 101 answer is not a valid WebSocket handshake".to_string();
                        return self.ws_connect_failed(exchange, reason, true);
                    }
                    connecting.head = Some(meta);
                }
                Progress::Head(meta) => {
                    let reason = format!("the server answered {} instead of switching protocols (101)", meta.status);
                    return self.ws_connect_failed(exchange, reason, true);
                }
                Progress::Upgraded(conn) => {
                    let Some(connecting) = self.sockets.connecting.remove(&exchange) else { return };
                    let Some(head) = connecting.head else {
                        let link = self.http.transport_mut();
                        self.io.outbound.ws_abort(link, &mut self.ring, conn);
                        let reason = "the connection switched protocols without a 101 head".to_string();
                        let settle =
                            reject_with(format!("WebSocket connection to {} failed: {reason}", connecting.url));
                        return self.settle(connecting.version, vec![(connecting.op, settle)]);
                    };
                    let Connecting { version, request, socket, op, .. } = connecting;
                    let bound = Socket { request, conn, outbound: true, splice: None };
                    self.sockets.by_id.insert((version, socket), bound);
                    self.sockets.by_conn.insert(conn, (version, socket));
                    *self.sockets.per_request.entry(request).or_default() += 1;
                    if let Some(slot) = self.cache.slot(version) {
                        slot.worker.hold_request(request);
                    }
                    let settle = resolve_with(move |scope| handshake_reply(scope, &head));
                    return self.settle(version, vec![(op, settle)]);
                }
                Progress::Failed(error) => return self.ws_connect_failed(exchange, error.to_string(), false),
                Progress::End | Progress::Chunk(_) => {
                    return self.ws_connect_failed(exchange, "the server did not switch protocols".into(), true);
                }
            }
        }
    }

    fn ws_connect_failed(&mut self, exchange: ExchangeId, reason: String, cancel: bool) {
        let Some(connecting) = self.sockets.connecting.remove(&exchange) else { return };
        if cancel {
            let link = self.http.transport_mut();
            self.io.outbound.cancel(link, &mut self.ring, exchange);
        }
        let settle = reject_with(format!("WebSocket connection to {} failed: {reason}", connecting.url));
        self.settle(connecting.version, vec![(connecting.op, settle)]);
    }
}

fn header<'m>(meta: &'m ResponseMeta, name: &str) -> Option<&'m [u8]> {
    meta.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim_ascii())
}

/// `[protocol, status, statusText, [[name, value], ...]]` of an accepted handshake.
fn handshake_reply<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    head: &ResponseMeta,
) -> Result<v8::Local<'s, v8::Value>, crate::bridge::JsError> {
    use crate::bridge::args;
    let protocol = header(head, "sec-websocket-protocol").unwrap_or_default();
    let protocol = args::new_one_byte_string(scope, protocol)?;
    let status = v8::Integer::new(scope, i32::from(head.status));
    let reason = args::new_one_byte_string(scope, head.reason.as_bytes())?;
    let mut pairs = Vec::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        let name = args::new_one_byte_string(scope, name.as_bytes())?;
        let value = args::new_one_byte_string(scope, value)?;
        pairs.push(v8::Array::new_with_elements(scope, &[name.into(), value.into()]).into());
    }
    let pairs = v8::Array::new_with_elements(scope, &pairs);
    Ok(v8::Array::new_with_elements(scope, &[protocol.into(), status.into(), reason.into(), pairs.into()]).into())
}
