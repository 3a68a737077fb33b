//! The core's I/O on behalf of isolates: subrequests (`crate::outbound`) tied to the promises and
//! body streams waiting on them, and response bodies streamed to clients — from a subrequest (passed
//! through without entering JavaScript) or from a script's ReadableStream (read a chunk at a
//! time) — at the pace the client reads (`HttpServer::stream_room`).

use std::collections::HashMap;
use std::time::Instant;

use netstack::StreamEvent;
use netstack::http1::{RequestId, ResponseHead};
use netstack::transport::ConnId;

use super::{Core, ReplyTo};
use crate::bridge::JsError;
use crate::bridge::async_ops::Settle;
use crate::outbound::outbox::Work;
use crate::outbound::{ExchangeId, Outbound, Progress};
use crate::state::WireStream;

/// A subrequest and who waits on it.
#[derive(Debug)]
struct Subrequest {
    version: u64,
    key: u64,
    /// The request that made it (its end cancels the subrequest, unless the subrequest's body
    /// became that request's response).
    request: u64,
    /// The promise of the Response, until the head arrives.
    head_op: Option<u32>,
    /// A pending `bodyRead`.
    read_op: Option<u32>,
    /// Upload bytes not yet taken, and the op to settle when they are.
    upload: Option<(u32, Vec<u8>)>,
    /// The body is some request's response, passed through: that request's id.
    passthrough: Option<u64>,
    /// The URL, for the Response.
    url: String,
    /// The origin's body length, if it said it.
    length: Option<u64>,
}

/// A streamed response body.
#[derive(Debug, Clone, Copy)]
pub(super) enum Streaming {
    Fetch { exchange: ExchangeId },
    Js { reader: u32, reading: bool },
}

/// The core's I/O bookkeeping.
#[derive(Debug)]
pub(super) struct CoreIo {
    pub(super) outbound: Outbound,
    subrequests: HashMap<ExchangeId, Subrequest>,
    by_key: HashMap<(u64, u64), ExchangeId>,
    /// Streamed responses by connection and request, to the pending request id.
    streams: HashMap<(ConnId, RequestId), u64>,
    /// Work the isolates asked for this turn.
    pub(super) work: Vec<Work>,
    pub(super) ready: Vec<ExchangeId>,
    stream_events: Vec<StreamEvent>,
}

impl CoreIo {
    /// Subrequest `key` of `version`'s isolate, made request `id`'s response body, passed on as
    /// it arrives; `None` if the subrequest's body was already read or cancelled.
    pub(super) fn pass_through(&mut self, version: u64, key: u64, id: u64) -> Option<ExchangeId> {
        let exchange = self.by_key.get(&(version, key)).copied()?;
        self.subrequests.get_mut(&exchange)?.passthrough = Some(id);
        Some(exchange)
    }

    pub(super) fn new(outbound: Outbound) -> CoreIo {
        CoreIo {
            outbound,
            subrequests: HashMap::new(),
            by_key: HashMap::new(),
            streams: HashMap::new(),
            work: Vec::new(),
            ready: Vec::new(),
            stream_events: Vec::new(),
        }
    }
}

/// What a plain `fetch()` rejects with when the origin switches protocols.
const UNEXPECTED_UPGRADE: &str =
    "fetch failed: the origin switched protocols (a WebSocket is opened with `Upgrade: websocket`)";

/// An async op's settlement: resolve with what `make` builds, or reject.
pub(super) fn resolve_with(
    make: impl for<'s, 'i> FnOnce(&mut v8::PinScope<'s, 'i>) -> Result<v8::Local<'s, v8::Value>, JsError> + 'static,
) -> Settle {
    Box::new(make)
}

fn reject(message: String) -> Settle {
    Box::new(move |_scope| Err(JsError::type_error(message)))
}

/// A rejection with a TypeError saying `message`.
pub(super) fn reject_with(message: String) -> Settle {
    reject(message)
}

impl Core {
    /// One pass over the core's I/O: transport events of subrequests, their timers, what their
    /// consumers can take now, and the server's streamed responses.
    pub(super) fn io_turn(&mut self, now: Instant) {
        self.kv_turn(now);
        let link = self.http.transport_mut();
        self.io.outbound.process_events(link, &mut self.ring, now);
        if self.io.outbound.poll_at().is_some_and(|at| at <= now) {
            let link = self.http.transport_mut();
            self.io.outbound.poll(link, &mut self.ring, now);
        }
        let mut ready = std::mem::take(&mut self.io.ready);
        self.io.outbound.take_ready(&mut ready);
        for exchange in ready.drain(..) {
            self.deliver(exchange, now);
        }
        self.io.ready = ready;
        self.outbound_ws_turn(now);
        let mut events = std::mem::take(&mut self.io.stream_events);
        self.http.take_stream_events(&mut events);
        for event in events.drain(..) {
            match event {
                StreamEvent::Writable { conn, request } => {
                    if let Some(&id) = self.io.streams.get(&(conn, request)) {
                        self.pump_stream(id, now);
                    }
                }
                StreamEvent::Gone { conn, request } => {
                    if let Some(&id) = self.io.streams.get(&(conn, request)) {
                        self.end_stream(id, false, now);
                    }
                }
                StreamEvent::Ws { conn, update } => self.on_ws_event(conn, update, now),
            }
        }
        self.io.stream_events = events;
    }

    /// Carries out what `version`'s isolate asked for in its last entry.
    pub(super) fn process_work(&mut self, version: u64, now: Instant) {
        let work = std::mem::take(&mut self.io.work);
        let mut settled: Vec<(u32, Settle)> = Vec::new();
        for item in work {
            match item {
                Work::Fetch { op, request, key, fetch } => {
                    let url = fetch.url.to_string();
                    if let Some(tenant) = self.cache.tenant(version) {
                        let counters = self.counters.entry(tenant.name.clone()).or_default();
                        counters.subrequests += 1;
                        if let crate::outbound::RequestBody::Bytes(bytes) = &fetch.body {
                            counters.subrequest_bytes_out += bytes.len() as u64;
                        }
                    }
                    let link = self.http.transport_mut();
                    match self.io.outbound.start(link, &mut self.ring, *fetch, now) {
                        Ok(exchange) => {
                            self.io.subrequests.insert(
                                exchange,
                                Subrequest {
                                    version,
                                    key,
                                    request,
                                    head_op: Some(op),
                                    read_op: None,
                                    upload: None,
                                    passthrough: None,
                                    url,
                                    length: None,
                                },
                            );
                            self.io.by_key.insert((version, key), exchange);
                            self.io.ready.push(exchange);
                        }
                        Err(error) => settled.push((op, reject(format!("fetch failed: {error}")))),
                    }
                }
                Work::BodyRead { op, key } => match self.io.by_key.get(&(version, key)).copied() {
                    Some(exchange) => {
                        if let Some(sub) = self.io.subrequests.get_mut(&exchange) {
                            sub.read_op = Some(op);
                        }
                        self.io.ready.push(exchange);
                    }
                    // Already at its end (or cancelled): nothing more to read.
                    None => settled.push((op, resolve_with(|scope| Ok(v8::null(scope).into())))),
                },
                Work::BodyCancel { key } | Work::Abort { key } => {
                    if let Some(exchange) = self.io.by_key.get(&(version, key)).copied() {
                        let link = self.http.transport_mut();
                        self.io.outbound.cancel(link, &mut self.ring, exchange);
                        if let Some(sub) = self.remove_subrequest(exchange) {
                            for op in [sub.head_op, sub.read_op, sub.upload.map(|u| u.0)].into_iter().flatten() {
                                settled.push((op, reject("fetch: the subrequest was aborted".into())));
                            }
                        }
                    }
                }
                Work::UploadWrite { op, key, bytes } => match self.io.by_key.get(&(version, key)).copied() {
                    Some(exchange) => {
                        if let Some(sub) = self.io.subrequests.get_mut(&exchange) {
                            sub.upload = Some((op, bytes));
                        }
                        self.io.ready.push(exchange);
                    }
                    None => settled.push((op, reject("fetch: the subrequest is over".into()))),
                },
                Work::Kv { op, binding, kv } => self.submit_kv(version, op, binding, *kv, &mut settled, now),
                Work::KvRefused { verb } => self.kv_refused(version, verb),
                Work::Service { op, request, binding, call } => {
                    self.call_service(version, op, request, binding, *call, &mut settled, now)
                }
                Work::Cache { op, cache } => self.submit_cache(version, op, *cache, &mut settled),
                Work::WsSend { socket, message } => self.ws_send(version, socket, message, now),
                Work::WsClose { socket, code, reason } => self.ws_close(version, socket, code, &reason, now),
                Work::WsConnect { op, request, socket, connect } => {
                    self.ws_connect(version, op, request, socket, *connect, &mut settled, now)
                }
                Work::UploadFinish { key } => {
                    if let Some(exchange) = self.io.by_key.get(&(version, key)).copied() {
                        let link = self.http.transport_mut();
                        self.io.outbound.finish_body(link, &mut self.ring, exchange, now);
                    }
                }
            }
        }
        self.settle(version, settled);
        // What the new work made ready is delivered in this turn.
        let mut ready = std::mem::take(&mut self.io.ready);
        self.io.outbound.take_ready(&mut ready);
        for exchange in ready.drain(..) {
            self.deliver(exchange, now);
        }
        self.io.ready = ready;
    }

    fn remove_subrequest(&mut self, exchange: ExchangeId) -> Option<Subrequest> {
        let sub = self.io.subrequests.remove(&exchange)?;
        self.io.by_key.remove(&(sub.version, sub.key));
        Some(sub)
    }

    /// Settles ops of `version`'s isolate and has its microtasks run this turn.
    pub(super) fn settle(&mut self, version: u64, settled: Vec<(u32, Settle)>) {
        if settled.is_empty() {
            return;
        }
        let budget = self.entry_budget(version);
        if let Some(slot) = self.cache.slot(version) {
            slot.worker.settle(settled, budget);
            let cpu = slot.worker.take_last_entry_cpu();
            let ids = self.work_ids(version);
            self.charge(version, &ids, cpu);
            self.touched.insert(version);
        }
    }

    /// Gives exchange `exchange`'s consumer what it is waiting for, if the exchange has it.
    fn deliver(&mut self, exchange: ExchangeId, now: Instant) {
        let Some(sub) = self.io.subrequests.get_mut(&exchange) else {
            return self.ws_connect_progress(exchange, now);
        };
        let version = sub.version;
        // Upload first: it may be what the origin waits for.
        if let Some((op, bytes)) = sub.upload.take() {
            let link = self.http.transport_mut();
            let taken = self.io.outbound.write_body(link, &mut self.ring, exchange, &bytes, now);
            let Some(sub) = self.io.subrequests.get_mut(&exchange) else { return };
            if taken >= bytes.len() {
                self.settle(version, vec![(op, resolve_with(|scope| Ok(v8::undefined(scope).into())))]);
            } else {
                sub.upload = Some((op, bytes[taken..].to_vec()));
            }
        }
        let Some(sub) = self.io.subrequests.get_mut(&exchange) else { return };
        if let Some(request) = sub.passthrough {
            self.pump_stream(request, now);
            return;
        }
        if let Some(op) = sub.head_op {
            let link = self.http.transport_mut();
            match self.io.outbound.next_progress(link, &mut self.ring, exchange, now) {
                Some(Progress::Head(meta)) => {
                    let Some(sub) = self.io.subrequests.get_mut(&exchange) else { return };
                    sub.head_op = None;
                    sub.length = meta.length;
                    let (key, url) = (sub.key, sub.url.clone());
                    let settle = resolve_with(move |scope| {
                        crate::api::fetch::outbound::response_from_origin(scope, &meta, key, &url, false)
                            .map(Into::into)
                    });
                    self.settle(version, vec![(op, settle)]);
                    // A body-less response ends at once; its end is taken when read (or dropped).
                }
                Some(Progress::Failed(error)) => {
                    self.remove_subrequest(exchange);
                    self.settle(version, vec![(op, reject(format!("fetch failed: {error}")))]);
                }
                Some(Progress::End) | Some(Progress::Chunk(_)) => {
                    self.remove_subrequest(exchange);
                    self.settle(version, vec![(op, reject("fetch failed: the origin sent no response head".into()))]);
                }
                Some(Progress::Upgraded(conn)) => {
                    let link = self.http.transport_mut();
                    self.io.outbound.ws_abort(link, &mut self.ring, conn);
                    self.remove_subrequest(exchange);
                    self.settle(version, vec![(op, reject(UNEXPECTED_UPGRADE.into()))]);
                }
                None => {}
            }
            return;
        }
        if let Some(op) = sub.read_op {
            let link = self.http.transport_mut();
            let progress = self.io.outbound.next_progress(link, &mut self.ring, exchange, now);
            let settle = match progress {
                None => return,
                Some(Progress::Chunk(bytes)) => {
                    if let Some(tenant) = self.cache.tenant(version) {
                        self.counters.entry(tenant.name.clone()).or_default().subrequest_bytes_in += bytes.len() as u64;
                    }
                    resolve_with(move |scope| crate::bridge::args::new_u8_array(scope, bytes).map(Into::into))
                }
                Some(Progress::End) => {
                    self.remove_subrequest(exchange);
                    resolve_with(|scope| Ok(v8::null(scope).into()))
                }
                Some(Progress::Failed(error)) => {
                    self.remove_subrequest(exchange);
                    reject(format!("the subrequest's body failed: {error}"))
                }
                Some(Progress::Head(_)) => reject("the origin sent a second response head".into()),
                Some(Progress::Upgraded(conn)) => {
                    let link = self.http.transport_mut();
                    self.io.outbound.ws_abort(link, &mut self.ring, conn);
                    self.remove_subrequest(exchange);
                    reject(UNEXPECTED_UPGRADE.into())
                }
            };
            if let Some(sub) = self.io.subrequests.get_mut(&exchange) {
                sub.read_op = None;
            }
            self.settle(version, vec![(op, settle)]);
        }
    }

    /// Request `id` of `version`'s isolate ended: its subrequests end with it (except one whose
    /// body is some response being passed through).
    pub(super) fn request_ended(&mut self, version: u64, id: u64) {
        self.websockets_request_ended(version, id);
        let ended: Vec<ExchangeId> = self
            .io
            .subrequests
            .iter()
            .filter(|(_, s)| s.version == version && s.request == id && s.passthrough.is_none())
            .map(|(e, _)| *e)
            .collect();
        for exchange in ended {
            let link = self.http.transport_mut();
            self.io.outbound.cancel(link, &mut self.ring, exchange);
            self.remove_subrequest(exchange);
        }
    }

    /// `version`'s isolate is gone: its subrequests go too (a pass-through keeps streaming).
    pub(super) fn isolate_gone(&mut self, version: u64) {
        self.kv_isolate_gone(version);
        self.service_isolate_gone(version);
        self.caches_isolate_gone(version);
        self.websockets_isolate_gone(version, Instant::now());
        let gone: Vec<ExchangeId> = self
            .io
            .subrequests
            .iter()
            .filter(|(_, s)| s.version == version && s.passthrough.is_none())
            .map(|(e, _)| *e)
            .collect();
        for exchange in gone {
            let link = self.http.transport_mut();
            self.io.outbound.cancel(link, &mut self.ring, exchange);
            self.remove_subrequest(exchange);
        }
    }

    /// Sends the head of request `id`'s response and starts streaming its body.
    pub(super) fn start_stream(
        &mut self,
        id: u64,
        stream: WireStream,
        status: u16,
        reason: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) {
        let Some(pending) = self.pending.get(&id) else { return };
        let version = pending.tenant.version;
        let ReplyTo::Client { conn, request } = pending.to else { return };
        let (streaming, length) = match stream {
            WireStream::Fetch { key } => match self.io.by_key.get(&(version, key)).copied() {
                Some(exchange) => {
                    let length = self.io.subrequests.get(&exchange).and_then(|s| s.length);
                    if let Some(sub) = self.io.subrequests.get_mut(&exchange) {
                        sub.passthrough = Some(id);
                    }
                    (Streaming::Fetch { exchange }, length)
                }
                None => {
                    // The subrequest's body was already read or cancelled: an empty body.
                    let mut response = netstack::http1::Response::new(status);
                    response.reason = reason;
                    response.headers = headers;
                    self.http.respond(&mut self.ring, conn, request, response, now, &mut self.incoming);
                    self.complete(id, 0, now);
                    return;
                }
            },
            WireStream::Js { reader, length } => (Streaming::Js { reader, reading: false }, length),
        };
        let head = ResponseHead { status, reason, headers, content_length: length };
        if !self.http.respond_head(&mut self.ring, conn, request, head, now, &mut self.incoming) {
            // The client is gone already.
            self.drop_stream_source(version, streaming);
            self.complete(id, 0, now);
            return;
        }
        if let Some(pending) = self.pending.get_mut(&id) {
            pending.stream = Some(streaming);
        }
        self.io.streams.insert((conn, request), id);
        self.pump_stream(id, now);
    }

    /// Moves request `id`'s response body on as far as the client's room allows.
    pub(super) fn pump_stream(&mut self, id: u64, now: Instant) {
        let Some(pending) = self.pending.get(&id) else { return };
        let version = pending.tenant.version;
        let Some(streaming) = pending.stream else { return };
        match streaming {
            Streaming::Fetch { exchange } => {
                // Bounded: at most the room the connection gives, a piece at a time.
                while self.sink_room(id) > 0 {
                    let link = self.http.transport_mut();
                    match self.io.outbound.next_progress(link, &mut self.ring, exchange, now) {
                        Some(Progress::Chunk(bytes)) => {
                            if let Some(p) = self.pending.get_mut(&id) {
                                p.bytes_out += bytes.len() as u64;
                            }
                            if !self.sink_chunk(id, bytes, now) {
                                self.end_stream(id, false, now);
                                return;
                            }
                        }
                        Some(Progress::End) => {
                            self.end_stream(id, true, now);
                            return;
                        }
                        Some(Progress::Failed(error)) => {
                            tracing::warn!(target: "worker", "a passed-through response body failed: {error}");
                            self.end_stream(id, false, now);
                            return;
                        }
                        Some(Progress::Upgraded(conn)) => {
                            let link = self.http.transport_mut();
                            self.io.outbound.ws_abort(link, &mut self.ring, conn);
                            self.end_stream(id, false, now);
                            return;
                        }
                        Some(Progress::Head(_)) | None => return,
                    }
                }
            }
            Streaming::Js { reader, reading } => {
                if reading || self.sink_room(id) == 0 {
                    return;
                }
                if let Some(p) = self.pending.get_mut(&id) {
                    p.stream = Some(Streaming::Js { reader, reading: true });
                }
                let budget = self.entry_budget(version);
                if let Some(slot) = self.cache.slot(version) {
                    slot.worker.read_body_chunk(id, reader, budget);
                    let cpu = slot.worker.take_last_entry_cpu();
                    self.charge(version, &[id], cpu);
                    self.touched.insert(version);
                } else {
                    self.end_stream(id, false, now);
                }
            }
        }
    }

    /// A chunk of a script's response body stream arrived.
    pub(super) fn on_body_chunk(
        &mut self,
        version: u64,
        reader: u32,
        chunk: Result<Option<Vec<u8>>, String>,
        now: Instant,
    ) {
        let found = self.pending.iter().find_map(|(id, p)| match p.stream {
            Some(Streaming::Js { reader: r, .. }) if r == reader && p.tenant.version == version => Some(*id),
            _ => None,
        });
        let Some(id) = found else { return };
        let Some(pending) = self.pending.get_mut(&id) else { return };
        pending.stream = Some(Streaming::Js { reader, reading: false });
        match chunk {
            Ok(Some(bytes)) => {
                pending.bytes_out += bytes.len() as u64;
                if !self.sink_chunk(id, bytes, now) {
                    self.end_stream(id, false, now);
                    return;
                }
                self.pump_stream(id, now);
            }
            Ok(None) => self.end_stream(id, true, now),
            Err(message) => {
                if let Some(p) = self.pending.get(&id) {
                    tracing::error!(target: "worker", "[{}] the response body stream failed: {message}", p.tenant.name);
                }
                self.end_stream(id, false, now);
            }
        }
    }

    /// Ends request `id`'s streamed body: complete, or cut short (the client sees a truncated
    /// response and the connection closes).
    pub(super) fn end_stream(&mut self, id: u64, complete: bool, now: Instant) {
        let Some(pending) = self.pending.get_mut(&id) else { return };
        let Some(streaming) = pending.stream.take() else { return };
        let (version, bytes) = (pending.tenant.version, pending.bytes_out);
        match pending.to {
            ReplyTo::Client { conn, request } => {
                self.io.streams.remove(&(conn, request));
                self.http.respond_end(&mut self.ring, conn, request, complete, now, &mut self.incoming);
            }
            ReplyTo::Service(_) => self.service_end(id, complete),
        }
        self.drop_stream_source(version, streaming);
        self.complete(id, bytes, now);
    }

    /// How many body bytes request `id`'s response may take now: the client's room, or (for a
    /// service call, whose body is collected) a piece at a time.
    fn sink_room(&mut self, id: u64) -> usize {
        match self.pending.get(&id).map(|p| &p.to) {
            Some(ReplyTo::Client { conn, .. }) => {
                let conn = *conn;
                self.http.stream_room(conn)
            }
            Some(ReplyTo::Service(_)) => 64 << 10,
            None => 0,
        }
    }

    /// Passes a piece of request `id`'s response body on; false if it cannot be (the client is
    /// gone, or a service call's body is over its limit).
    fn sink_chunk(&mut self, id: u64, bytes: Vec<u8>, now: Instant) -> bool {
        let Some(pending) = self.pending.get_mut(&id) else { return false };
        match &mut pending.to {
            ReplyTo::Client { conn, request } => {
                let (conn, request) = (*conn, *request);
                self.http.respond_chunk(&mut self.ring, conn, request, &bytes, now, &mut self.incoming)
            }
            ReplyTo::Service(caller) => caller.collect(bytes),
        }
    }

    fn drop_stream_source(&mut self, version: u64, streaming: Streaming) {
        match streaming {
            Streaming::Fetch { exchange } => {
                let link = self.http.transport_mut();
                self.io.outbound.cancel(link, &mut self.ring, exchange);
                self.remove_subrequest(exchange);
            }
            Streaming::Js { reader, .. } => {
                if let Some(slot) = self.cache.slot(version) {
                    slot.worker.drop_body_reader(reader);
                }
            }
        }
    }
}
