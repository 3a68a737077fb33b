//! The core's side of Workers KV, on either backend.
//!
//! An isolate's KV op is queued as `Work::Kv`; after the entry the core resolves the binding to
//! the tenant's namespace, starts the operation (never blocking: a full queue or too many in
//! flight is an error the script gets at once) and remembers which isolate and op wait for it
//! under a token. Replies settle the ops; their continuations run in the same turn, as for fetch.
//!
//! - **Embedded** (`KvStore::Embedded`): the host's storage thread answers on the core's own
//!   channel and writes the core's KV eventfd, whose read on the ring (key tag [`TAG_KV`]) makes
//!   the ring wait return; the core then drains every reply.
//! - **Valkey/Redis** (`KvStore::Redis`): each core runs its own sans-IO engine
//!   (`isobar_state::kv::redis::RedisKv`) over connections it opens through its own transport
//!   (kernel sockets or the userspace stack), on its own ring, like a subrequest: no thread, no
//!   lock. The transport's events for those connections are routed here ([`CoreKv::owns`]);
//!   the engine's deadlines join the core's wait ([`CoreKv::poll_at`]), so a store that is down
//!   or stopped ends each operation in an error by its deadline (2 s), never in a hung core.
//!
//! What it must not do: wait for the store, or settle an op of an isolate that is gone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use isobar_state::kv::embedded::{EmbeddedKv, KvClient};
use isobar_state::kv::redis::{Action, RedisConfig, RedisKv};
use isobar_state::kv::{KvError, KvOp, KvReply, Namespace, NamespaceRegistry};
use kernel_shim::EventFd;
use kernel_shim::ring::{Completion, CompletionData, Op, Ring, tagged_key};
use netstack::{ConnEvent, ConnId, Link, Transport};

use super::Core;
use crate::bridge::async_ops::Settle;

/// Completion-key tag of the KV eventfd's reads.
pub(super) const TAG_KV: u8 = 0x05;

/// The host's KV store, as boot hands it to the server (and the server to every core).
#[derive(Clone)]
pub enum KvStore {
    /// The embedded store's storage thread; each core takes a client of it.
    Embedded(Arc<EmbeddedKv>),
    /// A Valkey or Redis server or cluster; each core runs its own engine with this
    /// configuration. The registry hands out namespaces (and their counters) to every core.
    Redis { config: RedisConfig, registry: Arc<NamespaceRegistry> },
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvStore::Embedded(_) => f.write_str("KvStore::Embedded"),
            KvStore::Redis { config, .. } => f.debug_struct("KvStore::Redis").field("nodes", &config.nodes).finish(),
        }
    }
}

impl KvStore {
    fn namespace(&self, tenant: &str, name: &str) -> Result<Namespace, KvError> {
        match self {
            KvStore::Embedded(store) => store.namespace(tenant, name),
            KvStore::Redis { registry, .. } => registry.namespace(tenant, name),
        }
    }
}

/// What waits on one submitted operation.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    version: u64,
    op: u32,
    /// Key, value and metadata bytes of a put (counted once it is stored).
    bytes_written: u64,
}

/// How this core reaches the store.
enum Backend {
    Embedded { client: KvClient, wake: Arc<EventFd> },
    Redis(Box<CoreRedis>),
}

/// One core's KV client and the operations in flight on it.
pub(super) struct CoreKv {
    store: KvStore,
    backend: Backend,
    next_token: u64,
    waiting: HashMap<u64, Waiting>,
    /// Namespaces already resolved, by (tenant version, binding index).
    namespaces: HashMap<(u64, u32), Namespace>,
}

impl std::fmt::Debug for CoreKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreKv").field("waiting", &self.waiting.len()).finish_non_exhaustive()
    }
}

impl CoreKv {
    /// This core's client of `store`. The embedded store's eventfd is made now, before the
    /// process is sealed (a core may not make descriptors later); the Redis engine's sockets
    /// are made like a subrequest's, which a sealed core may do.
    pub(super) fn new(store: KvStore) -> std::io::Result<CoreKv> {
        let backend = match &store {
            KvStore::Embedded(embedded) => {
                let wake = Arc::new(EventFd::new()?);
                let writer = wake.clone();
                // A failed write means the counter is saturated, which wakes the core just the same.
                let client = embedded.client(Arc::new(move || {
                    let _ = writer.notify();
                }));
                Backend::Embedded { client, wake }
            }
            KvStore::Redis { config, .. } => Backend::Redis(Box::new(CoreRedis::new(config.clone()))),
        };
        Ok(CoreKv { store, backend, next_token: 0, waiting: HashMap::new(), namespaces: HashMap::new() })
    }

    /// Whether `conn` is one of the Redis engine's connections (its events come here, not to
    /// the subrequests).
    pub(super) fn owns(&self, conn: ConnId) -> bool {
        matches!(&self.backend, Backend::Redis(redis) if redis.node_of.contains_key(&conn))
    }

    /// Keeps a transport event of one of the engine's connections, for [`Core::kv_turn`].
    pub(super) fn note_event(&mut self, event: ConnEvent<'_>) {
        if let Backend::Redis(redis) = &mut self.backend {
            redis.note_event(event);
        }
    }
}

/// Routes a transport event of an outbound connection: to the KV engine that opened it, or to
/// the subrequests.
pub(super) fn route_event(outbound: &mut crate::outbound::Outbound, kv: &mut Option<CoreKv>, event: ConnEvent<'_>) {
    let conn = match &event {
        ConnEvent::Connected { conn }
        | ConnEvent::ConnectFailed { conn, .. }
        | ConnEvent::Received { conn, .. }
        | ConnEvent::SendDone { conn }
        | ConnEvent::PeerClosed { conn }
        | ConnEvent::Failed { conn, .. }
        | ConnEvent::Closed { conn }
        | ConnEvent::Accepted { conn, .. } => Some(*conn),
        ConnEvent::ListenerClosed => None,
    };
    match kv {
        Some(kv) if conn.is_some_and(|conn| kv.owns(conn)) => kv.note_event(event),
        _ => outbound.note_event(event),
    }
}

impl CoreKv {
    /// When the Redis engine next has a deadline to act on.
    pub(super) fn poll_at(&self) -> Option<Instant> {
        match &self.backend {
            Backend::Redis(redis) => redis.engine.poll_at(),
            Backend::Embedded { .. } => None,
        }
    }
}

/// A transport event, owned (a `Received`'s bytes outlive the callback).
#[derive(Debug)]
enum NetEvent {
    Connected,
    Received(Vec<u8>),
    SendDone,
    /// The peer closed its side: close ours.
    PeerClosed,
    /// Connect failed or the connection broke (the transport is tearing it down).
    Lost,
    Closed,
}

/// One core's Redis engine and its connections, one per node.
struct CoreRedis {
    engine: RedisKv,
    conn_of: HashMap<String, ConnId>,
    /// Every connection the engine opened, until the transport reports it closed (events of a
    /// connection the engine has given up on still come here, and are dropped).
    node_of: HashMap<ConnId, Option<String>>,
    /// Bytes the engine wrote that the transport's send queue has not taken yet.
    unsent: HashMap<ConnId, Vec<u8>>,
    events: Vec<(ConnId, NetEvent)>,
}

impl CoreRedis {
    fn new(config: RedisConfig) -> CoreRedis {
        CoreRedis {
            engine: RedisKv::new(config, Arc::new(isobar_state::clock::SystemClock)),
            conn_of: HashMap::new(),
            node_of: HashMap::new(),
            unsent: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn note_event(&mut self, event: ConnEvent<'_>) {
        let (conn, event) = match event {
            ConnEvent::Connected { conn } => (conn, NetEvent::Connected),
            ConnEvent::Received { conn, bytes } => (conn, NetEvent::Received(bytes.to_vec())),
            ConnEvent::SendDone { conn } => (conn, NetEvent::SendDone),
            ConnEvent::PeerClosed { conn } => (conn, NetEvent::PeerClosed),
            ConnEvent::ConnectFailed { conn, .. } | ConnEvent::Failed { conn, .. } => (conn, NetEvent::Lost),
            ConnEvent::Closed { conn } => (conn, NetEvent::Closed),
            ConnEvent::Accepted { .. } | ConnEvent::ListenerClosed => return,
        };
        self.events.push((conn, event));
    }

    /// Applies the kept transport events, runs the engine's timers, and carries out what the
    /// engine asks for (connect, send, close).
    fn turn(&mut self, link: &mut Link, ring: &mut Ring, now: Instant) {
        for (conn, event) in std::mem::take(&mut self.events) {
            let node = self.node_of.get(&conn).cloned().flatten();
            match event {
                NetEvent::Connected => {}
                NetEvent::Received(bytes) => {
                    if let Some(node) = &node {
                        self.engine.received(node, &bytes, now);
                    }
                }
                NetEvent::SendDone => self.flush(link, ring, conn),
                NetEvent::PeerClosed | NetEvent::Lost => {
                    if let Some(node) = node {
                        self.forget(conn, &node);
                        self.engine.connection_lost(&node, now);
                    }
                    if matches!(event, NetEvent::PeerClosed) {
                        link.abort(ring, conn);
                    }
                }
                NetEvent::Closed => {
                    if let Some(node) = node {
                        self.forget(conn, &node);
                        self.engine.connection_lost(&node, now);
                    }
                    self.node_of.remove(&conn);
                    self.unsent.remove(&conn);
                }
            }
        }
        if self.engine.poll_at().is_some_and(|at| at <= now) {
            self.engine.poll(now);
        }
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Connect { node } => self.connect(link, ring, node, now),
                Action::Send { node, bytes } => {
                    let Some(&conn) = self.conn_of.get(&node) else { continue };
                    self.unsent.entry(conn).or_default().extend_from_slice(&bytes);
                    self.flush(link, ring, conn);
                }
                Action::Close { node } => {
                    if let Some(conn) = self.conn_of.get(&node).copied() {
                        self.forget(conn, &node);
                        link.abort(ring, conn);
                    }
                }
            }
        }
    }

    /// The connection no longer serves `node` (its later events are dropped).
    fn forget(&mut self, conn: ConnId, node: &str) {
        if self.conn_of.get(node) == Some(&conn) {
            self.conn_of.remove(node);
        }
        if let Some(entry) = self.node_of.get_mut(&conn) {
            *entry = None;
        }
        self.unsent.remove(&conn);
    }

    fn connect(&mut self, link: &mut Link, ring: &mut Ring, node: String, now: Instant) {
        // Nodes are addresses: the configuration's (checked when it was read) and those the
        // cluster names in CLUSTER SLOTS and MOVED/ASK replies.
        let Ok(addr) = node.parse::<SocketAddr>() else {
            tracing::warn!(node, "KV: the Redis node is not an address");
            self.engine.connection_lost(&node, now);
            return;
        };
        match link.connect(ring, addr) {
            Ok(conn) => {
                self.conn_of.insert(node.clone(), conn);
                self.node_of.insert(conn, Some(node));
            }
            Err(error) => {
                tracing::warn!(node, "KV: cannot connect to the Redis node: {error}");
                self.engine.connection_lost(&node, now);
            }
        }
    }

    /// Hands `conn`'s unsent bytes to the transport when its send queue is empty (an empty
    /// queue takes one buffer of any size; the rest waits for `SendDone`).
    fn flush(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId) {
        if link.queued_bytes(conn) > 0 {
            return;
        }
        let Some(bytes) = self.unsent.remove(&conn).filter(|bytes| !bytes.is_empty()) else { return };
        if link.send_owned(ring, conn, bytes).is_err() {
            // The connection is closing: its Lost/Closed event tells the engine.
        }
    }
}

impl Core {
    /// Queues a read of the embedded store's eventfd on the ring (at start-up and after each
    /// wake).
    pub(super) fn arm_kv(&mut self, mut buf: Vec<u8>) {
        let Some(CoreKv { backend: Backend::Embedded { wake, .. }, .. }) = &self.kv else { return };
        buf.clear();
        buf.reserve(EventFd::READ_BYTES);
        let fd = wake.fd();
        self.ring.submit(Op::Read { fd, buf }, tagged_key(TAG_KV, 0));
    }

    /// Hands `version`'s KV operation on binding `binding` to the store; an error the store
    /// gives at once (a limit, a full queue) settles `op` now, through `settled`.
    pub(super) fn submit_kv(
        &mut self,
        version: u64,
        op: u32,
        binding: u32,
        kv_op: KvOp,
        settled: &mut Vec<(u32, Settle)>,
        now: Instant,
    ) {
        let tenant = self.cache.tenant(version);
        if let Some(tenant) = &tenant {
            let counters = self.counters.entry(tenant.name.clone()).or_default();
            counters.count_kv(kv_op.verb());
        }
        let Some(kv) = &mut self.kv else {
            self.count_kv_error(version);
            settled.push((
                op,
                crate::api::kv::settle_reply(Err(KvError::Unavailable("no KV store is configured".into()))),
            ));
            return;
        };
        let namespace = match kv.namespaces.get(&(version, binding)) {
            Some(namespace) => Ok(namespace.clone()),
            None => {
                let found = tenant.as_ref().and_then(|t| t.spec.kv.get(binding as usize).map(|b| (t, b)));
                match found {
                    Some((tenant, binding_spec)) => kv.store.namespace(&tenant.name, &binding_spec.namespace),
                    None => Err(KvError::Unavailable("this KV binding does not exist".into())),
                }
            }
        };
        let namespace = match namespace {
            Ok(namespace) => {
                kv.namespaces.entry((version, binding)).or_insert_with(|| namespace.clone());
                namespace
            }
            Err(error) => {
                self.count_kv_error(version);
                settled.push((op, crate::api::kv::settle_reply(Err(error))));
                return;
            }
        };
        let Some(kv) = &mut self.kv else { return };
        let bytes_written = match &kv_op {
            KvOp::Put { key, value, metadata, .. } => {
                (key.len() + value.len() + metadata.as_ref().map_or(0, String::len)) as u64
            }
            _ => 0,
        };
        kv.next_token += 1;
        let token = kv.next_token;
        let submitted = match &mut kv.backend {
            Backend::Embedded { client, .. } => client.submit(token, &namespace, kv_op),
            Backend::Redis(redis) => redis.engine.submit(token, &namespace, kv_op, now),
        };
        match submitted {
            Ok(()) => {
                kv.waiting.insert(token, Waiting { version, op, bytes_written });
            }
            Err(error) => {
                self.count_kv_error(version);
                settled.push((op, crate::api::kv::settle_reply(Err(error))));
            }
        }
    }

    /// An op refused a KV operation before it was queued (a Workers limit the op checks
    /// itself, before copying the bytes): count the operation and its error.
    pub(super) fn kv_refused(&mut self, version: u64, verb: &'static str) {
        if let Some(tenant) = self.cache.tenant(version) {
            let counters = self.counters.entry(tenant.name.clone()).or_default();
            counters.count_kv(verb);
            counters.kv_errors += 1;
        }
    }

    fn count_kv_error(&mut self, version: u64) {
        if let Some(tenant) = self.cache.tenant(version) {
            self.counters.entry(tenant.name.clone()).or_default().kv_errors += 1;
        }
    }

    /// The embedded store's thread has replies for this core: settle every op they answer,
    /// then wait for the next wake.
    pub(super) fn on_kv_wake(&mut self, completion: Completion) {
        let buf = match completion.data {
            CompletionData::Buffer(buf) => buf,
            _ => Vec::new(),
        };
        self.settle_kv_replies();
        self.arm_kv(buf);
    }

    /// The Redis engine's turn: the transport events of its connections, its deadlines, what
    /// it asks of the transport, and the operations it finished.
    pub(super) fn kv_turn(&mut self, now: Instant) {
        let Some(CoreKv { backend: Backend::Redis(redis), .. }) = &mut self.kv else { return };
        if redis.events.is_empty() && redis.engine.poll_at().is_none_or(|at| at > now) && !redis.engine.has_actions() {
            return;
        }
        redis.turn(self.http.transport_mut(), &mut self.ring, now);
        self.settle_kv_replies();
    }

    /// Settles every op the store has answered (and counts what the answers carried).
    fn settle_kv_replies(&mut self) {
        let mut by_version: HashMap<u64, Vec<(u32, Settle)>> = HashMap::new();
        while let Some(kv) = &mut self.kv {
            let reply = match &mut kv.backend {
                Backend::Embedded { client, .. } => client.try_recv(),
                Backend::Redis(redis) => redis.engine.next_completion(),
            };
            let Some((token, result)) = reply else { break };
            // An op of an isolate that is gone (condemned) is dropped unanswered.
            let Some(waiting) = kv.waiting.remove(&token) else { continue };
            if let Some(tenant) = self.cache.tenant(waiting.version) {
                let counters = self.counters.entry(tenant.name.clone()).or_default();
                match &result {
                    Ok(KvReply::Value(Some(value))) => {
                        counters.kv_bytes_read +=
                            (value.value.len() + value.metadata.as_ref().map_or(0, String::len)) as u64;
                    }
                    Ok(KvReply::Done) => counters.kv_bytes_written += waiting.bytes_written,
                    Ok(_) => {}
                    Err(_) => counters.kv_errors += 1,
                }
            }
            by_version.entry(waiting.version).or_default().push((waiting.op, crate::api::kv::settle_reply(result)));
        }
        for (version, settled) in by_version {
            self.settle(version, settled);
        }
    }

    /// `version`'s isolate is gone: forget what its ops wait for (their replies are dropped),
    /// and the namespaces it resolved.
    pub(super) fn kv_isolate_gone(&mut self, version: u64) {
        if let Some(kv) = &mut self.kv {
            kv.waiting.retain(|_, w| w.version != version);
            kv.namespaces.retain(|(v, _), _| *v != version);
        }
    }
}
