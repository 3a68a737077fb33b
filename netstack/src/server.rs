//! The per-core HTTP/1.1 server: the sans-IO codec ([`crate::http1`]) on top of any
//! [`Transport`], so the same server runs over kernel sockets and over smoltcp.
//!
//! The server turns transport events into complete requests for the caller (the runtime's
//! scheduler), and the caller's responses into bytes on the wire. It owns the per-connection
//! codecs, their deadlines, back-pressure (a connection whose requests are not answered stops
//! being read) and graceful drain. It does not know what a Worker is.
//!
//! Connections accepted on the HTTPS port ([`ServerTls`]) get a TLS layer between the transport
//! and the codec ([`tls`]): the codec, its limits and everything above it are the same.
//!
//! A request that asks to switch to WebSocket and that the caller accepts
//! ([`HttpServer::respond_upgrade`]) turns its connection into a WebSocket
//! ([`crate::websocket::WsEndpoint`]): from then on the peer's bytes (decrypted, on HTTPS) go
//! to the WebSocket, whose messages and end come out as [`StreamEvent::Ws`]; the caller sends
//! with [`HttpServer::ws_send`] and [`HttpServer::ws_close`].

mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use kernel_shim::ring::{Completion, Ring};
// Keyed by connection ids this process hands out (no peer chooses one), looked up several times
// per request: Fx, not SipHash.
use rustc_hash::FxHashMap as HashMap;

use crate::http1::{self, ConnState, RequestId, Response, ResponseHead, ServerConn};
use crate::transport::{ConnEvent, ConnId, SendError, Transport};
use crate::websocket::{WsEndpoint, WsError, WsLimits, WsMessage, WsRole, WsUpdate};

use tls::TlsConn;
pub use tls::{HANDSHAKE_TIMEOUT_DEFAULT, ServerTls};

/// One request, complete with its body, for the caller to answer with [`HttpServer::respond`].
#[derive(Debug)]
pub struct IncomingRequest {
    pub conn: ConnId,
    pub peer: SocketAddr,
    pub request: http1::Request,
    /// It came over TLS (the request's URL is `https:`).
    pub tls: bool,
}

/// Counters a core reports as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    pub conns_accepted: u64,
    pub requests: u64,
    /// Requests the codec refused (4xx/5xx written by the server itself).
    pub protocol_errors: u64,
    /// Bytes read from peers and written to them (on TLS connections, the records).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS connections closed because their session failed: a bad ClientHello, no certificate
    /// for the name asked, no common version or cipher, a broken record.
    pub tls_errors: u64,
    /// TLS connections closed because the handshake did not finish in time.
    pub tls_handshake_timeouts: u64,
}

/// What happened to streamed responses, for the caller that produces their bodies, and on
/// connections upgraded to WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The connection can take more of this response's body ([`HttpServer::stream_room`]).
    Writable { conn: ConnId, request: RequestId },
    /// The client went away: stop producing the body (cancel its source).
    Gone { conn: ConnId, request: RequestId },
    /// A message from a WebSocket peer, or the socket's end (once per connection).
    Ws { conn: ConnId, update: WsUpdate },
}

/// What reads a connection's plaintext and writes its answers: the HTTP codec, then (after an
/// upgrade) the WebSocket. The TLS layer sits below either.
pub(crate) trait Upper {
    fn receive(&mut self, bytes: &[u8], now: Instant) -> usize;
    fn peer_closed(&mut self, now: Instant);
    fn take_output(&mut self, out: &mut Vec<u8>);
}

/// A connection's upper layers, borrowed apart from its TLS session.
struct Layers<'a> {
    codec: &'a mut ServerConn,
    ws: Option<&'a mut WsEndpoint>,
}

impl Upper for Layers<'_> {
    fn receive(&mut self, bytes: &[u8], now: Instant) -> usize {
        match &mut self.ws {
            Some(ws) => ws.receive(bytes),
            None => self.codec.receive(bytes, now),
        }
    }

    fn peer_closed(&mut self, now: Instant) {
        match &mut self.ws {
            Some(ws) => ws.peer_closed(),
            None => self.codec.peer_closed(now),
        }
    }

    fn take_output(&mut self, out: &mut Vec<u8>) {
        // The 101 head first, then the WebSocket's frames.
        self.codec.take_output(out);
        if let Some(ws) = &mut self.ws {
            ws.take_output(out);
        }
    }
}

/// How much of a streamed body the server lets a caller hand over at once: the codec's backlog
/// and the transport's queue together stay near this, so a slow client costs at most this much
/// memory per streamed response.
pub const STREAM_ROOM_BYTES: usize = 64 << 10;

/// The most input bytes a paused connection may hold beyond what the codec took: the transport
/// may deliver a few more reads after a pause before the pause takes effect.
const STASH_BYTES_MAX: usize = 4 << 20;

#[derive(Debug)]
struct Conn {
    codec: ServerConn,
    /// Between the transport and the codec on an HTTPS connection (boxed: a TLS session is a
    /// few KiB, which plain connections should not carry).
    tls: Option<Box<TlsConn>>,
    peer: SocketAddr,
    /// Bytes read but not yet taken by the codec (it was back-pressured); ciphertext on an
    /// HTTPS connection.
    stash: Vec<u8>,
    recv_paused: bool,
    /// Requests handed to the caller and not yet answered.
    in_flight: usize,
    /// `close` was asked of the transport; only its `Closed` event is awaited now.
    closing: bool,
    /// This connection's entry in `HttpServer::deadlines`.
    scheduled: Option<Instant>,
    /// Responses whose bodies the caller is still streaming.
    streaming: Vec<RequestId>,
    /// The caller found no room for a streamed body: tell it when there is.
    blocked: bool,
    /// The WebSocket, once the connection is upgraded (boxed: most connections have none).
    ws: Option<Box<WsEndpoint>>,
}

impl Conn {
    /// Feeds bytes from the transport and returns how many were taken.
    fn receive(&mut self, bytes: &[u8], now: Instant, stats: &mut ServerStats) -> usize {
        let mut layers = Layers { codec: &mut self.codec, ws: self.ws.as_deref_mut() };
        match &mut self.tls {
            None => layers.receive(bytes, now),
            Some(tls) => tls.receive(&mut layers, bytes, now, stats),
        }
    }

    /// Moves the bytes to send into `out` (encrypted on an HTTPS connection).
    fn take_output(&mut self, out: &mut Vec<u8>) {
        let mut layers = Layers { codec: &mut self.codec, ws: self.ws.as_deref_mut() };
        match &mut self.tls {
            None => layers.take_output(out),
            Some(tls) => tls.take_output(&mut layers, out),
        }
    }

    /// Decrypted input waiting in the TLS layer: offer it again.
    fn deliver(&mut self, now: Instant) {
        if let Some(tls) = &mut self.tls {
            let mut layers = Layers { codec: &mut self.codec, ws: self.ws.as_deref_mut() };
            tls.deliver(&mut layers, now);
        }
    }

    fn peer_closed(&mut self, now: Instant) {
        let mut layers = Layers { codec: &mut self.codec, ws: self.ws.as_deref_mut() };
        match &mut self.tls {
            None => layers.peer_closed(now),
            Some(tls) => tls.peer_closed(&mut layers, now),
        }
    }

    /// Whether the layer above the transport takes input now.
    fn wants_read(&self) -> bool {
        match &self.ws {
            Some(ws) => ws.wants_read(),
            None => self.codec.wants_read(),
        }
    }

    /// The next codec deadline, or the TLS handshake's, or the WebSocket close's, if sooner.
    fn poll_at(&self) -> Option<Instant> {
        let handshake = self.tls.as_ref().and_then(|tls| tls.deadline());
        let ws_close = self.ws.as_ref().and_then(|ws| ws.deadline());
        [self.codec.poll_at(), handshake, ws_close].into_iter().flatten().min()
    }
}

pub struct HttpServer<T: Transport> {
    transport: T,
    limits: http1::Limits,
    conns: HashMap<ConnId, Conn>,
    /// Each connection's next codec deadline, earliest first: exactly one entry per connection
    /// that has a deadline, moved (remove + insert) when it changes and removed when the
    /// connection goes, so the map never holds more than the open connections.
    deadlines: BTreeMap<(Instant, u32, u32), ConnId>,
    draining: bool,
    listener_closed: bool,
    stats: ServerStats,
    touched: Vec<ConnId>,
    /// TLS on one port, if any; applies to connections accepted from now on.
    tls: Option<ServerTls>,
    stream_events: Vec<StreamEvent>,
}

impl<T: Transport> std::fmt::Debug for HttpServer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer").field("conns", &self.conns.len()).field("draining", &self.draining).finish()
    }
}

impl<T: Transport> HttpServer<T> {
    pub fn new(transport: T, limits: http1::Limits) -> HttpServer<T> {
        HttpServer {
            transport,
            limits: limits.clamped(),
            conns: HashMap::default(),
            deadlines: BTreeMap::new(),
            draining: false,
            listener_closed: false,
            stats: ServerStats::default(),
            touched: Vec::new(),
            tls: None,
            stream_events: Vec::new(),
        }
    }

    /// Terminates TLS on `tls.port` from now on (or, with `None`, on no port): connections
    /// accepted later use these settings; open ones keep theirs. A certificate reload is a call
    /// with the new configuration.
    pub fn set_tls(&mut self, tls: Option<ServerTls>) {
        self.tls = tls;
    }

    /// The TLS settings new connections get.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    pub fn open_conns(&self) -> usize {
        self.conns.len()
    }

    /// Handles one completion carrying the transport's tag; complete requests are appended to
    /// `requests`.
    pub fn on_completion(
        &mut self,
        ring: &mut Ring,
        completion: Completion,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
    ) {
        self.on_completion_routed(ring, completion, now, requests, &mut |_| {});
    }

    /// As [`Self::on_completion`], with the events of connections the server did not accept
    /// (outbound connections made through [`Self::transport_mut`]) passed to `foreign`.
    pub fn on_completion_routed(
        &mut self,
        ring: &mut Ring,
        completion: Completion,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
        foreign: &mut dyn FnMut(ConnEvent<'_>),
    ) {
        let mut sink = EventSink::new(
            self.limits,
            self.tls.as_ref(),
            now,
            &mut self.conns,
            &mut self.touched,
            &mut self.stats,
            &mut self.stream_events,
            foreign,
        );
        self.transport.on_completion(ring, completion, now, &mut |event| sink.handle(event));
        let outcome = sink.finish();
        self.after_events(ring, outcome, now, requests);
    }

    /// Applies everything one batch of transport events left behind: removed connections'
    /// deadlines, the listener's end, and the connections to bring up to date.
    fn after_events(
        &mut self,
        ring: &mut Ring,
        outcome: SinkOutcome,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
    ) {
        if outcome.listener_closed {
            self.listener_closed = true;
        }
        for (conn, scheduled) in outcome.removed {
            if let Some(at) = scheduled {
                self.deadlines.remove(&(at, conn.slot, conn.generation));
            }
        }
        let mut touched = std::mem::take(&mut self.touched);
        for conn in touched.drain(..) {
            self.service(ring, conn, now, requests);
        }
        self.touched = touched;
    }

    /// Answers a request. Stale connections (closed meanwhile) are ignored.
    pub fn respond(
        &mut self,
        ring: &mut Ring,
        conn: ConnId,
        id: RequestId,
        mut response: Response,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
    ) {
        let draining = self.draining;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if draining {
            // Tell the client not to send more on this connection.
            response.headers.push(("connection".into(), b"close".to_vec()));
        }
        if c.codec.respond(id, response).is_ok() {
            c.in_flight = c.in_flight.saturating_sub(1);
        } else {
            // The codec refused the response (e.g. a header with a control character): the
            // caller's bug must not leave the client hanging.
            let fallback =
                Response::new(500).with_header("content-type", "text/plain").with_body(&b"invalid response\n"[..]);
            if c.codec.respond(id, fallback).is_ok() {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
        self.service(ring, conn, now, requests);
    }

    /// Starts a streamed response to request `id`: its head now, its body through
    /// [`Self::respond_chunk`] and [`Self::respond_end`]. False if the connection is gone.
    pub fn respond_head(
        &mut self,
        ring: &mut Ring,
        conn: ConnId,
        id: RequestId,
        mut head: ResponseHead,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
    ) -> bool {
        let draining = self.draining;
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        if c.closing {
            return false;
        }
        if draining {
            head.headers.push(("connection".into(), b"close".to_vec()));
        }
        if c.codec.respond_head(id, head).is_err() {
            let fallback =
                Response::new(500).with_header("content-type", "text/plain").with_body(&b"invalid response\n"[..]);
            if c.codec.respond(id, fallback).is_ok() {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
            self.service(ring, conn, now, requests);
            return false;
        }
        c.streaming.push(id);
        self.service(ring, conn, now, requests);
        true
    }

    /// How many body bytes the caller may hand over for a streamed response on `conn` now. When
    /// it is zero the server sends [`StreamEvent::Writable`] once there is room again.
    pub fn stream_room(&mut self, conn: ConnId) -> usize {
        let Some(c) = self.conns.get_mut(&conn) else { return 0 };
        let tls = c.tls.as_ref().map_or(0, |tls| tls.held_bytes());
        let used = c.codec.backlog_bytes() + tls + self.transport.queued_bytes(conn);
        let room = STREAM_ROOM_BYTES.saturating_sub(used);
        if room == 0 {
            c.blocked = true;
        }
        room
    }

    /// Hands over a piece of a streamed body. False if the connection is gone or the body does
    /// not fit the response (the response is then cut and the connection closed).
    pub fn respond_chunk(
        &mut self,
        ring: &mut Ring,
        conn: ConnId,
        id: RequestId,
        data: &[u8],
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        if c.closing || !c.streaming.contains(&id) {
            return false;
        }
        if c.codec.body_chunk(id, data).is_err() {
            let _ = c.codec.body_abort(id);
            c.streaming.retain(|r| *r != id);
            c.in_flight = c.in_flight.saturating_sub(1);
            self.service(ring, conn, now, requests);
            return false;
        }
        self.service(ring, conn, now, requests);
        true
    }

    /// Ends a streamed body (`complete`), or cuts it short (the source failed): the client then
    /// sees a truncated response and the connection closes.
    pub fn respond_end(
        &mut self,
        ring: &mut Ring,
        conn: ConnId,
        id: RequestId,
        complete: bool,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.streaming.contains(&id) {
            return;
        }
        c.streaming.retain(|r| *r != id);
        c.in_flight = c.in_flight.saturating_sub(1);
        let _ = if complete { c.codec.body_end(id) } else { c.codec.body_abort(id) };
        self.service(ring, conn, now, requests);
    }

    /// Moves what happened to streamed responses since the last call into `out`.
    pub fn take_stream_events(&mut self, out: &mut Vec<StreamEvent>) {
        out.append(&mut self.stream_events);
    }

    /// The earliest deadline (a codec's or the transport's), for the scheduler's wait.
    pub fn poll_at(&self) -> Option<Instant> {
        let codec = self.deadlines.keys().next().map(|(at, _, _)| *at);
        match (codec, self.transport.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the transport's timers and applies codec timeouts due at `now`.
    pub fn poll(&mut self, ring: &mut Ring, now: Instant, requests: &mut Vec<IncomingRequest>) {
        self.poll_routed(ring, now, requests, &mut |_| {});
    }

    /// As [`Self::poll`], with outbound connections' events passed to `foreign`.
    pub fn poll_routed(
        &mut self,
        ring: &mut Ring,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
        foreign: &mut dyn FnMut(ConnEvent<'_>),
    ) {
        if self.transport.poll_at().is_some_and(|at| at <= now) {
            let mut sink = EventSink::new(
                self.limits,
                self.tls.as_ref(),
                now,
                &mut self.conns,
                &mut self.touched,
                &mut self.stats,
                &mut self.stream_events,
                foreign,
            );
            self.transport.poll(ring, now, &mut |event| sink.handle(event));
            let outcome = sink.finish();
            self.after_events(ring, outcome, now, requests);
        }
        // Take the due entries first: servicing a connection may schedule it again, and a
        // deadline that is still due then waits for the next turn instead of looping here.
        let due: Vec<((Instant, u32, u32), ConnId)> =
            self.deadlines.range(..=(now, u32::MAX, u32::MAX)).map(|(k, v)| (*k, *v)).collect();
        for (key, conn) in due {
            self.deadlines.remove(&key);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.scheduled = None;
            }
            // `service` applies the codec's due timeouts and schedules the next deadline.
            self.service(ring, conn, now, requests);
        }
    }

    /// Graceful drain: stop accepting, close idle connections now and busy ones once their
    /// requests are answered.
    pub fn drain(&mut self, ring: &mut Ring, now: Instant, requests: &mut Vec<IncomingRequest>) {
        if self.draining {
            return;
        }
        self.draining = true;
        self.transport.stop_accepting(ring);
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            if self.conns.get(&conn).is_some_and(|c| c.ws.is_some()) {
                self.ws_close(ring, conn, 1001, "the server is shutting down", now);
            }
            self.service(ring, conn, now, requests);
        }
    }

    /// Drained: the listener is closed and no connection is left.
    pub fn is_drained(&self) -> bool {
        self.draining && self.listener_closed && self.conns.is_empty()
    }

    /// Connections with a pending codec deadline (never more than the open connections).
    pub fn scheduled_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// Bytes the server holds for `conn` (`None` once it is gone): input the codec has not
    /// taken, decrypted or plain bytes waiting in the TLS layer, the codec's response backlog
    /// and the transport's send queue. rustls's own buffers are bounded by rustls (16 KiB of
    /// decrypted input, [`crate::TlsLimits::pending_bytes_max`] of output) and not counted.
    pub fn held_bytes(&self, conn: ConnId) -> Option<usize> {
        let c = self.conns.get(&conn)?;
        let tls = c.tls.as_ref().map_or(0, |tls| tls.held_bytes());
        Some(c.stash.len() + tls + c.codec.backlog_bytes() + self.transport.queued_bytes(conn))
    }

    /// Requests handed out and not yet answered, over all connections.
    pub fn in_flight(&self) -> usize {
        self.conns.values().map(|c| c.in_flight).sum()
    }

    /// Brings one connection up to date: feeds stashed input, hands out requests, writes
    /// output, closes when the codec is done, and records its next deadline.
    fn service(&mut self, ring: &mut Ring, conn: ConnId, now: Instant, requests: &mut Vec<IncomingRequest>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closing {
            return;
        }
        if c.tls.as_ref().is_some_and(|tls| tls.handshake_expired(now)) {
            // A client that does not finish its handshake in time gets nothing more: not even
            // the graceful close's wait for its end of stream.
            self.stats.tls_handshake_timeouts += 1;
            c.closing = true;
            self.transport.abort(ring, conn);
            return;
        }
        // A deadline that is due: let the codec apply it (an idle connection's deadline is in
        // the past right after its last response, until the codec stamps the idle start).
        if c.codec.poll_at().is_some_and(|at| at <= now) {
            c.codec.poll(now);
        }
        // Decrypted input the codec could not take yet: offer it again.
        c.deliver(now);
        // Input the codec could not take yet: offer it again when it wants more.
        if !c.stash.is_empty() && c.wants_read() {
            let stash = std::mem::take(&mut c.stash);
            let taken = c.receive(&stash, now, &mut self.stats);
            c.stash = stash;
            c.stash.drain(..taken);
        }
        if c.stash.len() > STASH_BYTES_MAX {
            // More than the pause should ever let through: the peer is not playing fair.
            c.closing = true;
            self.transport.abort(ring, conn);
            return;
        }
        if c.tls.as_ref().is_some_and(|tls| tls.failed()) {
            // The session failed (counted where it did): its alert goes out, then the
            // connection closes. Nothing else on it is read or answered.
            let mut alert = Vec::new();
            c.take_output(&mut alert);
            if !alert.is_empty() {
                self.stats.bytes_out += alert.len() as u64;
                let _ = self.transport.send(ring, conn, &alert);
            }
            c.closing = true;
            self.transport.close(ring, conn);
            return;
        }
        if c.ws.is_some() {
            self.service_ws(ring, conn, now);
            return;
        }
        let should_pause = !c.stash.is_empty();
        if should_pause && !c.recv_paused {
            c.recv_paused = true;
            self.transport.pause_recv(ring, conn);
        } else if !should_pause && c.recv_paused {
            c.recv_paused = false;
            self.transport.resume_recv(ring, conn);
        }

        while let Some(request) = c.codec.poll_request() {
            c.in_flight += 1;
            self.stats.requests += 1;
            requests.push(IncomingRequest { conn, peer: c.peer, request, tls: c.tls.is_some() });
        }
        if c.codec.error().is_some() && c.codec.state() != ConnState::Open {
            // Counted once: the codec stops reading after its error response.
            if !c.stash.is_empty() || c.in_flight == 0 {
                c.stash.clear();
            }
        }

        // Output: one buffer at a time, so the transport's queue stays bounded; the rest waits
        // in the codec (whose backlog bound stops reading new requests).
        if self.transport.queued_bytes(conn) == 0 {
            let mut out = Vec::new();
            c.take_output(&mut out);
            if !out.is_empty() {
                self.stats.bytes_out += out.len() as u64;
                match self.transport.send_owned(ring, conn, out) {
                    Ok(()) => {}
                    Err(SendError::Closed) => c.closing = true,
                    Err(SendError::QueueFull { .. }) => {
                        // Cannot happen with an empty queue unless one response exceeds the
                        // transport's bound; the connection cannot make progress.
                        c.closing = true;
                        self.transport.abort(ring, conn);
                        return;
                    }
                }
            }
        }

        if c.blocked && !c.streaming.is_empty() {
            let tls = c.tls.as_ref().map_or(0, |tls| tls.held_bytes());
            let used = c.codec.backlog_bytes() + tls + self.transport.queued_bytes(conn);
            if used < STREAM_ROOM_BYTES {
                c.blocked = false;
                for request in &c.streaming {
                    self.stream_events.push(StreamEvent::Writable { conn, request: *request });
                }
            }
        }

        let codec_done = c.codec.state() == ConnState::Closed;
        let drained_idle = self.draining && c.in_flight == 0;
        if (codec_done || drained_idle) && self.transport.queued_bytes(conn) == 0 {
            let mut rest = Vec::new();
            c.take_output(&mut rest);
            let flushed = rest.is_empty() && !c.tls.as_ref().is_some_and(|tls| tls.has_output());
            if flushed {
                if c.codec.error().is_some() {
                    self.stats.protocol_errors += 1;
                }
                close_gracefully(&mut self.transport, &mut self.stats, ring, c, conn);
                return;
            }
            if !rest.is_empty() {
                self.stats.bytes_out += rest.len() as u64;
                let _ = self.transport.send_owned(ring, conn, rest);
            }
        }

        reschedule(&mut self.deadlines, c, conn);
    }

    /// Turns request `id` on `conn`, which asked for a WebSocket, into one: writes `101
    /// Switching Protocols` with `headers` (`upgrade`, `sec-websocket-accept`, ...; the
    /// caller checked the request) and hands the connection to a server-side WebSocket with
    /// `limits`. False if the connection is gone, draining, or the request cannot switch (then
    /// answer it as usual).
    #[expect(clippy::too_many_arguments)]
    pub fn respond_upgrade(
        &mut self,
        ring: &mut Ring,
        conn: ConnId,
        id: RequestId,
        headers: &[(String, Vec<u8>)],
        limits: WsLimits,
        now: Instant,
        requests: &mut Vec<IncomingRequest>,
    ) -> bool {
        let draining = self.draining;
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        if c.closing || draining || c.codec.upgrade(id, headers).is_err() {
            return false;
        }
        c.in_flight = c.in_flight.saturating_sub(1);
        c.ws = Some(Box::new(WsEndpoint::new(WsRole::Server, limits)));
        self.service(ring, conn, now, requests);
        true
    }

    /// Sends a message on an upgraded connection. A peer that does not read gets up to
    /// [`crate::websocket::BACKLOG_BYTES_MAX`] queued; past that, or once the WebSocket is
    /// closing, the send is refused.
    pub fn ws_send(&mut self, ring: &mut Ring, conn: ConnId, message: WsMessage, now: Instant) -> Result<(), WsError> {
        let c = self.conns.get_mut(&conn).filter(|c| !c.closing).ok_or(WsError::Closed)?;
        c.ws.as_deref_mut().ok_or(WsError::Closed)?.send(message)?;
        self.service_ws(ring, conn, now);
        Ok(())
    }

    /// Starts the WebSocket's close handshake with `code` and `reason` after the messages
    /// queued; the peer has [`crate::websocket::CLOSE_TIMEOUT`] to answer before the
    /// connection is cut.
    pub fn ws_close(&mut self, ring: &mut Ring, conn: ConnId, code: u16, reason: &str, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn).filter(|c| !c.closing) else { return };
        let Some(ws) = c.ws.as_deref_mut() else { return };
        ws.close(code, reason, now);
        self.service_ws(ring, conn, now);
    }

    /// Brings an upgraded connection up to date: input to messages, the backlog to the
    /// protocol, output to the transport, and the end once the close handshake is over.
    fn service_ws(&mut self, ring: &mut Ring, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closing {
            return;
        }
        // Messages out of what arrived, and more input as the protocol takes it: each pass
        // takes input or leaves, and the stash is bounded.
        let mut updates = Vec::new();
        for _ in 0..=STASH_BYTES_MAX / 1024 {
            let Some(ws) = c.ws.as_deref_mut() else { return };
            ws.poll(now, &mut updates);
            if c.stash.is_empty() || !c.wants_read() {
                break;
            }
            let stash = std::mem::take(&mut c.stash);
            let taken = c.receive(&stash, now, &mut self.stats);
            c.stash = stash;
            c.stash.drain(..taken);
            if taken == 0 {
                break;
            }
        }
        self.stream_events.extend(updates.into_iter().map(|update| StreamEvent::Ws { conn, update }));
        let should_pause = !c.stash.is_empty();
        if should_pause != c.recv_paused {
            c.recv_paused = should_pause;
            if should_pause {
                self.transport.pause_recv(ring, conn);
            } else {
                self.transport.resume_recv(ring, conn);
            }
        }
        if c.ws.as_ref().is_some_and(|ws| ws.late(now)) {
            // The peer did not answer our close in time (reported by `poll`): cut it.
            c.closing = true;
            self.transport.abort(ring, conn);
            return;
        }
        if self.transport.queued_bytes(conn) == 0 {
            let mut out = Vec::new();
            c.take_output(&mut out);
            if !out.is_empty() {
                self.stats.bytes_out += out.len() as u64;
                if self.transport.send_owned(ring, conn, out).is_err() {
                    c.closing = true;
                    self.transport.abort(ring, conn);
                    return;
                }
            }
        }
        let over = c.ws.as_ref().is_some_and(|ws| ws.is_over());
        if over && self.transport.queued_bytes(conn) == 0 {
            close_gracefully(&mut self.transport, &mut self.stats, ring, c, conn);
            return;
        }
        reschedule(&mut self.deadlines, c, conn);
    }
}

/// Closes a connection whose output is flushed: TLS ends with close_notify, so the client
/// knows nothing was cut off; then the transport flushes what was sent, shuts our side down and
/// closes.
fn close_gracefully<T: Transport>(
    transport: &mut T,
    stats: &mut ServerStats,
    ring: &mut Ring,
    c: &mut Conn,
    conn: ConnId,
) {
    c.closing = true;
    if let Some(tls) = &mut c.tls {
        let mut close_notify = Vec::new();
        tls.close(&mut close_notify);
        if !close_notify.is_empty() {
            stats.bytes_out += close_notify.len() as u64;
            let _ = transport.send_owned(ring, conn, close_notify);
        }
    }
    transport.close(ring, conn);
}

/// Records `c`'s next deadline in `deadlines` (one entry per connection that has one).
fn reschedule(deadlines: &mut BTreeMap<(Instant, u32, u32), ConnId>, c: &mut Conn, conn: ConnId) {
    let next = c.poll_at();
    if next != c.scheduled {
        if let Some(old) = c.scheduled.take() {
            deadlines.remove(&(old, conn.slot, conn.generation));
        }
        if let Some(at) = next {
            deadlines.insert((at, conn.slot, conn.generation), conn);
            c.scheduled = Some(at);
        }
    }
}

/// What a batch of transport events changed, beyond the connections it touched.
struct SinkOutcome {
    listener_closed: bool,
    removed: Vec<(ConnId, Option<Instant>)>,
}

/// Applies transport events to the connection table while the transport is borrowed (its
/// callback cannot call back into the server); `HttpServer::after_events` does the rest.
struct EventSink<'a> {
    limits: http1::Limits,
    tls: Option<&'a ServerTls>,
    now: Instant,
    conns: &'a mut HashMap<ConnId, Conn>,
    touched: &'a mut Vec<ConnId>,
    stats: &'a mut ServerStats,
    stream_events: &'a mut Vec<StreamEvent>,
    /// Where events of connections the server did not accept go.
    foreign: &'a mut dyn FnMut(ConnEvent<'_>),
    listener_closed: bool,
    removed: Vec<(ConnId, Option<Instant>)>,
}

impl<'a> EventSink<'a> {
    // Each argument is a distinct borrow of the server's fields (split so the transport can be
    // borrowed mutably beside them); a struct for them would only rename this list.
    #[expect(clippy::too_many_arguments)]
    fn new(
        limits: http1::Limits,
        tls: Option<&'a ServerTls>,
        now: Instant,
        conns: &'a mut HashMap<ConnId, Conn>,
        touched: &'a mut Vec<ConnId>,
        stats: &'a mut ServerStats,
        stream_events: &'a mut Vec<StreamEvent>,
        foreign: &'a mut dyn FnMut(ConnEvent<'_>),
    ) -> EventSink<'a> {
        EventSink {
            limits,
            tls,
            now,
            conns,
            touched,
            stats,
            stream_events,
            foreign,
            listener_closed: false,
            removed: Vec::new(),
        }
    }

    /// The client of `conn` is gone: its streamed responses will never be read, and its
    /// WebSocket is over.
    fn streams_gone(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(ws) = c.ws.as_deref_mut() {
                let mut updates = Vec::new();
                ws.gone(&mut updates);
                self.stream_events.extend(updates.into_iter().map(|update| StreamEvent::Ws { conn, update }));
            }
            for request in c.streaming.drain(..) {
                // The response is over for the server too: cut short, the connection then closes.
                let _ = c.codec.body_abort(request);
                c.in_flight = c.in_flight.saturating_sub(1);
                self.stream_events.push(StreamEvent::Gone { conn, request });
            }
            self.touched.push(conn);
        }
    }

    fn finish(self) -> SinkOutcome {
        SinkOutcome { listener_closed: self.listener_closed, removed: self.removed }
    }

    fn handle(&mut self, event: ConnEvent<'_>) {
        let now = self.now;
        match event {
            ConnEvent::Accepted { conn, peer, local_port } => {
                self.stats.conns_accepted += 1;
                let mut codec = ServerConn::new(self.limits, now);
                let tls = match self.tls.filter(|tls| tls.port == local_port) {
                    None => None,
                    Some(settings) => match TlsConn::new(settings, now) {
                        Ok(tls) => Some(Box::new(tls)),
                        Err(error) => {
                            // Only a configuration rustls cannot use at all gets here. The
                            // connection is closed unread, as a codec that saw the end of
                            // its input closes it.
                            tracing::error!(%error, "tls: cannot start a session");
                            self.stats.tls_errors += 1;
                            codec.peer_closed(now);
                            None
                        }
                    },
                };
                self.conns.insert(
                    conn,
                    Conn {
                        codec,
                        tls,
                        peer,
                        stash: Vec::new(),
                        recv_paused: false,
                        in_flight: 0,
                        closing: false,
                        scheduled: None,
                        streaming: Vec::new(),
                        blocked: false,
                        ws: None,
                    },
                );
                self.touched.push(conn);
            }
            ConnEvent::Received { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    (self.foreign)(ConnEvent::Received { conn, bytes });
                    return;
                };
                self.stats.bytes_in += bytes.len() as u64;
                if c.closing {
                    return;
                }
                if c.stash.is_empty() {
                    let taken = c.receive(bytes, now, self.stats);
                    c.stash.extend_from_slice(&bytes[taken..]);
                } else {
                    c.stash.extend_from_slice(bytes);
                }
                self.touched.push(conn);
            }
            ConnEvent::PeerClosed { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer_closed(now);
                    self.touched.push(conn);
                    // A client that closes while its response streams has gone: it does not
                    // half-close and wait (no HTTP/1.1 client does), so stop the body's source.
                    self.streams_gone(conn);
                } else {
                    (self.foreign)(ConnEvent::PeerClosed { conn });
                }
            }
            ConnEvent::SendDone { conn } => {
                if self.conns.contains_key(&conn) {
                    self.touched.push(conn);
                } else {
                    (self.foreign)(ConnEvent::SendDone { conn });
                }
            }
            ConnEvent::Failed { conn, error } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    // The transport tears the connection down; nothing more can be written.
                    c.closing = true;
                    self.streams_gone(conn);
                } else {
                    (self.foreign)(ConnEvent::Failed { conn, error });
                }
            }
            ConnEvent::Closed { conn } => {
                self.streams_gone(conn);
                if let Some(c) = self.conns.remove(&conn) {
                    self.removed.push((conn, c.scheduled));
                } else {
                    (self.foreign)(ConnEvent::Closed { conn });
                }
            }
            ConnEvent::ListenerClosed => self.listener_closed = true,
            // The server only accepts; outbound connections belong to other users of the transport.
            event @ (ConnEvent::Connected { .. } | ConnEvent::ConnectFailed { .. }) => (self.foreign)(event),
        }
    }
}
