//! The shared KV backend: Workers KV on a Valkey or Redis server or cluster that many isobar
//! hosts use together. Sans-IO: [`RedisKv`] turns operations into RESP commands for named nodes
//! and replies back into results; the caller (a core's io_uring loop, or a test's blocking
//! driver) connects, moves bytes and passes the time in. A store that is down or slow ends in a
//! [`KvError`] by the operation's deadline, never in a wait without end.
//!
//! How a namespace is stored (`T` = tenant, `N` = namespace, `k` = key bytes):
//! - `isobar:{T/N}:v:k`, a hash `{v: value, m: metadata, e: expiration seconds or 0}`, with
//!   `PEXPIREAT` when it expires, so the server frees expired values by itself;
//! - `isobar:{T/N}:i`, a sorted set of every key with score 0: `ZRANGEBYLEX` walks it in byte
//!   order (members of equal score compare with memcmp), which is `list`'s order, from a prefix
//!   or from just after a cursor's key;
//! - `isobar:{T/N}:m`, a hash key -> "expiration\nflag metadata", so `list` returns metadata and
//!   expirations without touching values;
//! - `isobar:{T/N}:e`, a sorted set of expiring keys scored by expiration, so index entries of
//!   expired keys are removed in time order: each `put` removes up to 16 of them.
//!
//! Every key of a namespace carries the same `{T/N}` hash tag, so the whole namespace lives in
//! one cluster slot. That is what makes `put` and `delete` atomic in a cluster: each is one Lua
//! script (`EVAL`) over the value hash and the three index keys, and a script may only touch keys
//! of one slot. The cost is that one namespace is served by one primary; namespaces, not keys,
//! spread over the cluster. Tenant and namespace names cannot contain braces (checked when the
//! namespace is made), so the tag cannot be broken.
//!
//! Expiration is judged by the caller's clock (passed to the scripts and checked on `get`), like
//! the embedded store, and enforced by the server's `PEXPIREAT` for memory; hosts sharing a store
//! are expected to keep their clocks in step (NTP), as they must for `PEXPIREAT` anyway.
//!
//! Cluster routing: the slot map comes from `CLUSTER SLOTS` (fetched from a seed node, and again
//! after each `MOVED`); a command goes to the slot's primary. `MOVED` updates the map and
//! retries there; `ASK` sends `ASKING` plus the command to the named node once, leaving the map
//! alone; at most [`RedisConfig::redirections_max`] of these per operation, then
//! [`KvError::TooManyRedirections`]. `TRYAGAIN` (a multi-key script during a slot migration)
//! retries every 25 ms until the operation's deadline. `CLUSTERDOWN` and lost connections are
//! [`KvError::Unavailable`]; a deadline passed is [`KvError::Timeout`] and closes the connection
//! (RESP cannot match later replies once one is abandoned).
//!
//! It must not do I/O, block, or read a monotonic clock: `now` is an argument everywhere.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netstack::resp::cluster::{Redirect, SlotMap, key_slot};
use netstack::resp::{Reply, RequestId, RespConn, RespError, RespLimits};

use super::{
    Expiration, KvError, KvOp, KvReply, KvValue, ListKey, ListResult, Namespace, decode_cursor, encode_cursor,
    prefix_successor,
};
use crate::clock::Clock;

/// Expired index entries a `put` removes, at most, from its namespace.
const PURGE_PER_PUT: u32 = 16;
/// How long a command waits after `TRYAGAIN` before it is sent again.
const TRYAGAIN_DELAY: Duration = Duration::from_millis(25);

const PUT_SCRIPT: &str = r#"
redis.call('DEL', KEYS[1])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'm', ARGV[4], 'e', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'e', ARGV[5])
end
local exp = tonumber(ARGV[5])
if exp > 0 then
  redis.call('PEXPIREAT', KEYS[1], exp * 1000)
  redis.call('ZADD', KEYS[4], exp, ARGV[1])
else
  redis.call('ZREM', KEYS[4], ARGV[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5] .. '\n' .. ARGV[3] .. ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[6], 'LIMIT', 0, tonumber(ARGV[7]))
for _, k in ipairs(due) do
  redis.call('ZREM', KEYS[4], k)
  redis.call('ZREM', KEYS[2], k)
  redis.call('HDEL', KEYS[3], k)
end
return 1
"#;

const DELETE_SCRIPT: &str = r#"
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"#;

/// Returns {complete (1/0), last key examined, key, row, key, row, ...}.
const LIST_SCRIPT: &str = r#"
local limit = tonumber(ARGV[3])
local scan_max = tonumber(ARGV[4])
local now_ms = tonumber(ARGV[5])
local start = ARGV[1]
local out = {0, ''}
local found = 0
local scanned = 0
while true do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], start, ARGV[2], 'LIMIT', 0, 128)
  if #batch == 0 then
    out[1] = 1
    return out
  end
  for _, k in ipairs(batch) do
    if found == limit or scanned == scan_max then
      return out
    end
    scanned = scanned + 1
    out[2] = k
    local row = redis.call('HGET', KEYS[2], k)
    if row then
      local nl = string.find(row, '\n', 1, true)
      local e = nl and tonumber(string.sub(row, 1, nl - 1)) or 0
      if e == 0 or e * 1000 > now_ms then
        out[#out + 1] = k
        out[#out + 1] = row
        found = found + 1
      end
    end
  end
  start = '(' .. out[2]
end
"#;

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Seed nodes, `host:port`. A standalone server is one seed.
    pub nodes: Vec<String>,
    /// Route by cluster slots (`CLUSTER SLOTS`, `MOVED`, `ASK`); false for a standalone server.
    pub cluster: bool,
    /// How long one operation may take, redirections and retries included.
    pub op_timeout: Duration,
    /// `MOVED` and `ASK` answers one operation may follow.
    pub redirections_max: u32,
    /// Operations waiting for their reply, across all nodes.
    pub in_flight_max: usize,
    /// Most entries one `list` examines (see the embedded store's setting of the same name).
    pub list_scan_max: u32,
    pub limits: RespLimits,
}

impl RedisConfig {
    pub fn standalone(node: impl Into<String>) -> Self {
        Self {
            nodes: vec![node.into()],
            cluster: false,
            op_timeout: Duration::from_secs(2),
            redirections_max: 16,
            in_flight_max: 4096,
            list_scan_max: 4000,
            limits: RespLimits::default(),
        }
    }

    pub fn cluster(seeds: Vec<String>) -> Self {
        Self { nodes: seeds, cluster: true, ..Self::standalone(String::new()) }
    }
}

/// What the driver must do next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to `node` (`host:port`); if it fails, call [`RedisKv::connection_lost`].
    Connect { node: String },
    /// Write these bytes to `node`'s connection.
    Send { node: String, bytes: Vec<u8> },
    /// Close `node`'s connection (every request on it has been failed or retried).
    Close { node: String },
}

/// Counters of one [`RedisKv`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RedisStats {
    pub moved: u64,
    pub ask: u64,
    pub tryagain: u64,
    pub slot_map_refreshes: u64,
    pub timeouts: u64,
    pub connections_lost: u64,
}

#[derive(Debug)]
struct PendingOp {
    token: u64,
    namespace: Namespace,
    op: KvOp,
    deadline: Instant,
    redirections: u32,
    /// Set while waiting out a `TRYAGAIN`.
    retry_at: Option<Instant>,
    /// A one-time `ASK` target for the next send.
    ask: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Sent {
    Op(u64),
    Asking,
    ClusterSlots,
}

/// The Redis KV engine of one core (or one test): its connections, slot map and operations.
pub struct RedisKv {
    config: RedisConfig,
    clock: Arc<dyn Clock>,
    conns: HashMap<String, RespConn>,
    sent: HashMap<(String, RequestId), Sent>,
    slots: SlotMap,
    refreshing: bool,
    seed_turn: usize,
    ops: HashMap<u64, PendingOp>,
    next_op: u64,
    actions: VecDeque<Action>,
    completions: VecDeque<(u64, Result<KvReply, KvError>)>,
    stats: RedisStats,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv").field("ops", &self.ops.len()).field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl RedisKv {
    pub fn new(config: RedisConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            conns: HashMap::new(),
            sent: HashMap::new(),
            slots: SlotMap::default(),
            refreshing: false,
            seed_turn: 0,
            ops: HashMap::new(),
            next_op: 0,
            actions: VecDeque::new(),
            completions: VecDeque::new(),
            stats: RedisStats::default(),
        }
    }

    /// Checks `op` and starts it; its result comes out of [`RedisKv::next_completion`] with
    /// `token`. An error here means nothing was sent (and it is counted).
    pub fn submit(&mut self, token: u64, namespace: &Namespace, op: KvOp, now: Instant) -> Result<(), KvError> {
        let verb = op.verb();
        let refused = |error: KvError| {
            namespace.counters().record(verb, 0, &Err(error.clone()));
            Err(error)
        };
        if self.ops.len() >= self.config.in_flight_max {
            return refused(KvError::TooManyInFlight);
        }
        if self.config.nodes.is_empty() {
            return refused(KvError::Unavailable("no Redis node configured".into()));
        }
        let op = match op.prepare(self.clock.now_unix_ms()) {
            Ok(op) => op,
            Err(error) => return refused(error),
        };
        let id = self.next_op;
        self.next_op += 1;
        let deadline = now + self.config.op_timeout;
        self.ops.insert(
            id,
            PendingOp { token, namespace: namespace.clone(), op, deadline, redirections: 0, retry_at: None, ask: None },
        );
        if self.config.cluster && self.slots.is_empty() {
            self.refresh_slots(now);
        }
        self.dispatch(id, now);
        Ok(())
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        let node = self.conns.iter().find(|(_, conn)| conn.wants_write()).map(|(node, _)| node.clone())?;
        let bytes = self.conns.get_mut(&node)?.take_output();
        Some(Action::Send { node, bytes })
    }

    /// Whether [`RedisKv::poll_action`] has something for the driver.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty() || self.conns.values().any(RespConn::wants_write)
    }

    /// Bytes read from `node`'s connection.
    pub fn received(&mut self, node: &str, bytes: &[u8], now: Instant) {
        let Some(conn) = self.conns.get_mut(node) else { return };
        conn.receive(bytes);
        self.collect(node, now);
    }

    /// `node`'s connection failed to open, closed, or errored.
    pub fn connection_lost(&mut self, node: &str, now: Instant) {
        if let Some(conn) = self.conns.get_mut(node) {
            conn.closed();
            self.stats.connections_lost += 1;
            self.collect(node, now);
        }
    }

    /// Ends operations past their deadline, fails connections whose requests are late, and
    /// resends operations whose `TRYAGAIN` wait is over.
    pub fn poll(&mut self, now: Instant) {
        let late: Vec<u64> = self.ops.iter().filter(|(_, op)| op.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            self.stats.timeouts += 1;
            self.complete(id, Err(KvError::Timeout));
        }
        let nodes: Vec<String> = self.conns.keys().cloned().collect();
        for node in nodes {
            if let Some(conn) = self.conns.get_mut(&node) {
                conn.poll(now);
            }
            self.collect(&node, now);
        }
        let ready: Vec<u64> =
            self.ops.iter().filter(|(_, op)| op.retry_at.is_some_and(|at| at <= now)).map(|(id, _)| *id).collect();
        for id in ready {
            if let Some(op) = self.ops.get_mut(&id) {
                op.retry_at = None;
            }
            self.dispatch(id, now);
        }
    }

    /// When [`RedisKv::poll`] must next run, if anything is waiting.
    pub fn poll_at(&self) -> Option<Instant> {
        let deadlines = self.ops.values().flat_map(|op| [Some(op.deadline), op.retry_at]).flatten();
        deadlines.chain(self.conns.values().filter_map(RespConn::poll_at)).min()
    }

    /// The next finished operation.
    pub fn next_completion(&mut self) -> Option<(u64, Result<KvReply, KvError>)> {
        self.completions.pop_front()
    }

    /// Operations started and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    pub fn stats(&self) -> RedisStats {
        self.stats
    }

    /// Asks a seed node for the slot map, unless a request is already out.
    fn refresh_slots(&mut self, now: Instant) {
        if self.refreshing {
            return;
        }
        let Some(seed) = self.config.nodes.get(self.seed_turn % self.config.nodes.len().max(1)).cloned() else {
            return;
        };
        self.seed_turn += 1;
        let deadline = now + self.config.op_timeout;
        if let Ok(request) = self.conn(&seed).send(&["CLUSTER", "SLOTS"], deadline) {
            self.sent.insert((seed, request), Sent::ClusterSlots);
            self.refreshing = true;
            self.stats.slot_map_refreshes += 1;
        }
    }

    fn conn(&mut self, node: &str) -> &mut RespConn {
        if !self.conns.contains_key(node) {
            self.actions.push_back(Action::Connect { node: node.to_owned() });
        }
        let limits = self.config.limits;
        self.conns.entry(node.to_owned()).or_insert_with(|| RespConn::new(limits))
    }

    /// Sends operation `id` to the node that should serve it.
    fn dispatch(&mut self, id: u64, now: Instant) {
        let Some(op) = self.ops.get_mut(&id) else { return };
        let ask = op.ask.take();
        let deadline = op.deadline;
        let (args, key_for_slot) = command(&op.namespace, &op.op, self.clock.now_unix_ms(), self.config.list_scan_max);
        let node = match ask.clone() {
            Some(node) => node,
            None if self.config.cluster => match self.slots.node(key_slot(&key_for_slot)) {
                Some(node) => node.to_owned(),
                // No map yet: any seed will do; a MOVED will correct it.
                None => self.config.nodes.first().cloned().unwrap_or_default(),
            },
            None => self.config.nodes.first().cloned().unwrap_or_default(),
        };
        let conn = self.conn(&node);
        let sent = if ask.is_some() {
            conn.send(&["ASKING"], deadline).map(|asking| (Some(asking), ()))
        } else {
            Ok((None, ()))
        };
        let sent = sent.and_then(|(asking, ())| conn.send(&args, deadline).map(|request| (asking, request)));
        match sent {
            Ok((asking, request)) => {
                if let Some(asking) = asking {
                    self.sent.insert((node.clone(), asking), Sent::Asking);
                }
                self.sent.insert((node, request), Sent::Op(id));
            }
            Err(error) => {
                let error = connection_error(&node, &error);
                self.complete(id, Err(error));
                // A connection that refused a send has failed; let the driver close it.
                self.collect(&node, now);
            }
        }
    }

    /// Takes every finished request of `node`'s connection and acts on it.
    fn collect(&mut self, node: &str, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(node) else { return };
            let Some((request, reply)) = conn.next_reply() else { break };
            let Some(sent) = self.sent.remove(&(node.to_owned(), request)) else { continue };
            match sent {
                Sent::Asking => {}
                Sent::ClusterSlots => {
                    self.refreshing = false;
                    if let Ok(reply) = reply
                        && let Some(map) = SlotMap::from_cluster_slots(&reply)
                        && !map.is_empty()
                    {
                        self.slots = map;
                    }
                }
                Sent::Op(id) => self.answer(id, node, reply, now),
            }
        }
        let failed = self.conns.get(node).and_then(|conn| conn.failed().cloned());
        if let Some(error) = failed {
            self.conns.remove(node);
            self.sent.retain(|(n, _), _| n != node);
            if error != RespError::Closed {
                self.actions.push_back(Action::Close { node: node.to_owned() });
            } else {
                // The driver saw the close; nothing to tell it. A cluster may have failed over.
                if self.config.cluster {
                    self.refresh_slots(now);
                }
            }
        }
    }

    fn answer(&mut self, id: u64, node: &str, reply: Result<Reply, RespError>, now: Instant) {
        let Some(op) = self.ops.get_mut(&id) else { return };
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                let error = connection_error(node, &error);
                return self.complete(id, Err(error));
            }
        };
        if let Some(message) = reply.as_error() {
            if self.config.cluster {
                let redirect = Redirect::parse(message);
                let tryagain = message.starts_with("TRYAGAIN");
                if redirect.is_some() || tryagain {
                    // TRYAGAIN is bounded by the deadline alone: a migration may take a while,
                    // and each wait is short. Redirections could loop between confused nodes.
                    if redirect.is_some() {
                        op.redirections += 1;
                    }
                    if op.redirections > self.config.redirections_max {
                        return self.complete(id, Err(KvError::TooManyRedirections));
                    }
                    match redirect {
                        Some(Redirect::Moved { slot, node }) => {
                            self.stats.moved += 1;
                            self.slots.set(slot, &node);
                            self.refresh_slots(now);
                            self.dispatch(id, now);
                        }
                        Some(Redirect::Ask { node, .. }) => {
                            self.stats.ask += 1;
                            op.ask = Some(node);
                            self.dispatch(id, now);
                        }
                        None => {
                            self.stats.tryagain += 1;
                            op.retry_at = Some(now + TRYAGAIN_DELAY);
                        }
                    }
                    return;
                }
            }
            let error = if message.starts_with("CLUSTERDOWN") || message.starts_with("LOADING") {
                KvError::Unavailable(message.to_owned())
            } else {
                KvError::Protocol(message.to_owned())
            };
            return self.complete(id, Err(error));
        }
        let result = parse_reply(&op.op, reply, self.clock.now_unix_ms());
        self.complete(id, result);
    }

    fn complete(&mut self, id: u64, result: Result<KvReply, KvError>) {
        let Some(op) = self.ops.remove(&id) else { return };
        op.namespace.counters().record(op.op.verb(), op.op.bytes_written(), &result);
        self.completions.push_back((op.token, result));
    }
}

fn connection_error(node: &str, error: &RespError) -> KvError {
    match error {
        RespError::Timeout => KvError::Timeout,
        RespError::TooManyInFlight => KvError::TooManyInFlight,
        other => KvError::Unavailable(format!("{node}: {other}")),
    }
}

/// The Redis key of one part of a namespace: `isobar:{T/N}:part` followed by `suffix`.
fn redis_key(namespace: &Namespace, part: &str, suffix: &[u8]) -> Vec<u8> {
    let mut key = format!("isobar:{{{}/{}}}:{part}", namespace.tenant(), namespace.name()).into_bytes();
    key.extend_from_slice(suffix);
    key
}

/// The command for `op`, and a key whose slot it must go to.
fn command(namespace: &Namespace, op: &KvOp, now_ms: u64, list_scan_max: u32) -> (Vec<Vec<u8>>, Vec<u8>) {
    let index = redis_key(namespace, "i", b"");
    let rows = redis_key(namespace, "m", b"");
    let expiring = redis_key(namespace, "e", b"");
    let args: Vec<Vec<u8>> = match op {
        KvOp::Get { key, .. } => {
            vec![
                b"HMGET".to_vec(),
                redis_key(namespace, "v:", key.as_bytes()),
                b"v".to_vec(),
                b"m".to_vec(),
                b"e".to_vec(),
            ]
        }
        KvOp::Put { key, value, expiration, metadata } => {
            let expires = match expiration {
                Expiration::At(at) => *at,
                Expiration::Never | Expiration::Ttl(_) => 0,
            };
            vec![
                b"EVAL".to_vec(),
                PUT_SCRIPT.as_bytes().to_vec(),
                b"4".to_vec(),
                redis_key(namespace, "v:", key.as_bytes()),
                index.clone(),
                rows,
                expiring,
                key.as_bytes().to_vec(),
                value.clone(),
                if metadata.is_some() { b"1".to_vec() } else { b"0".to_vec() },
                metadata.clone().unwrap_or_default().into_bytes(),
                expires.to_string().into_bytes(),
                (now_ms / 1000).to_string().into_bytes(),
                PURGE_PER_PUT.to_string().into_bytes(),
            ]
        }
        KvOp::Delete { key } => vec![
            b"EVAL".to_vec(),
            DELETE_SCRIPT.as_bytes().to_vec(),
            b"4".to_vec(),
            redis_key(namespace, "v:", key.as_bytes()),
            index.clone(),
            rows,
            expiring,
            key.as_bytes().to_vec(),
        ],
        KvOp::List { prefix, limit, cursor } => {
            let after = cursor.as_deref().and_then(|c| decode_cursor(c).ok());
            let start = match after {
                Some(after) if after.as_slice() >= prefix.as_bytes() => [b"(".as_slice(), &after].concat(),
                _ if prefix.is_empty() => b"-".to_vec(),
                _ => [b"[".as_slice(), prefix.as_bytes()].concat(),
            };
            let end = match prefix_successor(prefix.as_bytes()) {
                Some(successor) => [b"(".as_slice(), &successor].concat(),
                None => b"+".to_vec(),
            };
            vec![
                b"EVAL".to_vec(),
                LIST_SCRIPT.as_bytes().to_vec(),
                b"2".to_vec(),
                index.clone(),
                rows,
                start,
                end,
                limit.to_string().into_bytes(),
                list_scan_max.max(super::LIST_LIMIT_MAX).to_string().into_bytes(),
                now_ms.to_string().into_bytes(),
            ]
        }
    };
    (args, index)
}

fn protocol(what: &str) -> KvError {
    KvError::Protocol(what.to_owned())
}

fn parse_reply(op: &KvOp, reply: Reply, now_ms: u64) -> Result<KvReply, KvError> {
    match op {
        KvOp::Get { .. } => {
            let Reply::Array(fields) = reply else { return Err(protocol("HMGET did not return an array")) };
            let mut fields = fields.into_iter();
            let (value, metadata, expires) = (fields.next(), fields.next(), fields.next());
            let value = match value {
                Some(Reply::Bulk(value)) => value,
                Some(Reply::Nil) | None => return Ok(KvReply::Value(None)),
                Some(_) => return Err(protocol("value is not a string")),
            };
            let expires = match expires {
                Some(Reply::Bulk(e)) => parse_decimal(&e)?,
                _ => 0,
            };
            if expires != 0 && expires.saturating_mul(1000) <= now_ms {
                return Ok(KvReply::Value(None));
            }
            let metadata = match metadata {
                Some(Reply::Bulk(m)) => Some(String::from_utf8(m).map_err(|_| protocol("metadata is not UTF-8"))?),
                _ => None,
            };
            Ok(KvReply::Value(Some(KvValue { value, metadata })))
        }
        KvOp::Put { .. } | KvOp::Delete { .. } => match reply {
            Reply::Integer(1) => Ok(KvReply::Done),
            other => Err(protocol(&format!("script returned {other:?}"))),
        },
        KvOp::List { .. } => {
            let Reply::Array(items) = reply else { return Err(protocol("list did not return an array")) };
            let mut items = items.into_iter();
            let complete = matches!(items.next(), Some(Reply::Integer(1)));
            let last = match items.next() {
                Some(Reply::Bulk(last)) => last,
                _ => return Err(protocol("list without its last key")),
            };
            let mut keys = Vec::new();
            while let (Some(Reply::Bulk(name)), Some(Reply::Bulk(row))) = (items.next(), items.next()) {
                let name = String::from_utf8(name).map_err(|_| protocol("key is not UTF-8"))?;
                let (expires, metadata) = parse_row(&row)?;
                keys.push(ListKey { name, expiration: (expires != 0).then_some(expires), metadata });
            }
            let cursor = (!complete && !last.is_empty()).then(|| encode_cursor(&last));
            Ok(KvReply::List(ListResult { keys, list_complete: cursor.is_none(), cursor }))
        }
    }
}

/// A list row: "expiration\n" then '1' + metadata or '0'.
fn parse_row(row: &[u8]) -> Result<(u64, Option<String>), KvError> {
    let newline = row.iter().position(|b| *b == b'\n').ok_or_else(|| protocol("bad list row"))?;
    let expires = parse_decimal(row.get(..newline).unwrap_or_default())?;
    let metadata = match row.get(newline + 1) {
        Some(b'1') => Some(
            String::from_utf8(row.get(newline + 2..).unwrap_or_default().to_vec())
                .map_err(|_| protocol("metadata is not UTF-8"))?,
        ),
        _ => None,
    };
    Ok((expires, metadata))
}

fn parse_decimal(digits: &[u8]) -> Result<u64, KvError> {
    std::str::from_utf8(digits).ok().and_then(|s| s.parse().ok()).ok_or_else(|| protocol("bad number"))
}
