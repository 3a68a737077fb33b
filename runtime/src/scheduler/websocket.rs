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

/// One bound end.
#[derive(Debug, Clone, Copy)]
struct Socket {
    /// The request it works for.
    request: u64,
    conn: ConnId,
}

/// The core's WebSockets, by (tenant version, id in the isolate) and by connection.
#[derive(Debug, Default)]
pub(super) struct CoreSockets {
    by_id: HashMap<(u64, u32), Socket>,
    by_conn: HashMap<ConnId, (u64, u32)>,
    /// How many are open for each request.
    per_request: HashMap<u64, u32>,
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
        socket: u32,
        headers: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) -> Result<(), &'static str> {
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
        self.sockets.by_id.insert((version, socket), Socket { request: id, conn });
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
        let cpu = slot.worker.last_entry_cpu();
        self.charge(version, &[request], cpu);
        self.touched.insert(version);
    }

    /// A send or close the isolate asked for.
    pub(super) fn ws_send(&mut self, version: u64, socket: u32, message: WsMessage, now: Instant) {
        let Some(bound) = self.sockets.by_id.get(&(version, socket)).copied() else { return };
        if let Some(tenant) = self.cache.tenant(version) {
            let counters = self.counters.entry(tenant.name.clone()).or_default();
            counters.ws_messages_out += 1;
            counters.bytes_out += match &message {
                WsMessage::Text(text) => text.len() as u64,
                WsMessage::Binary(data) => data.len() as u64,
                _ => 0,
            };
        }
        match self.http.ws_send(&mut self.ring, bound.conn, message, now) {
            Ok(()) | Err(netstack::WsError::Closed) => {}
            Err(error) => {
                // A peer that reads nothing while the script sends on: the socket fails rather
                // than hold without bound.
                tracing::warn!(target: "worker", "WebSocket closed: {error}");
                self.http.ws_close(&mut self.ring, bound.conn, 1011, "the peer does not read its messages", now);
            }
        }
    }

    pub(super) fn ws_close(&mut self, version: u64, socket: u32, code: u16, reason: &str, now: Instant) {
        let Some(bound) = self.sockets.by_id.get(&(version, socket)).copied() else { return };
        self.http.ws_close(&mut self.ring, bound.conn, code, reason, now);
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
                self.http.ws_close(&mut self.ring, bound.conn, 1001, "the worker went away", now);
            }
        }
    }
}

impl Core {
    /// Opens a WebSocket for an isolate (`new WebSocket(url)`, `fetch()` with `Upgrade`).
    #[expect(clippy::too_many_arguments)]
    pub(super) fn ws_connect(
        &mut self,
        _version: u64,
        op: u32,
        _request: u64,
        _socket: u32,
        connect: crate::api::websocket::WsConnect,
        settled: &mut Vec<(u32, crate::bridge::async_ops::Settle)>,
        _now: Instant,
    ) {
        let message =
            format!("WebSocket connection to {} failed: outgoing WebSockets are not supported yet", connect.url);
        settled.push((op, Box::new(move |_scope| Err(crate::bridge::JsError::type_error(message)))));
    }
}
