//! The embedded KV backend: one redb database file per host, owned by one storage thread that
//! this module spawns. Cores never touch the file: each holds a [`KvClient`] and talks to the
//! thread over a bounded channel, and the thread answers on the core's own reply channel and
//! calls the core's wake callback (which writes the core's eventfd).
//!
//! What it guarantees: a `put` is acknowledged only after the transaction that holds it has
//! been committed with an fsync (redb's `Durability::Immediate`), so an acknowledged put
//! survives `kill -9` and power loss. Writes are group-committed: the thread drains whatever is
//! queued (up to [`EmbeddedConfig::batch_ops_max`] operations and
//! [`EmbeddedConfig::batch_bytes_max`] bytes), applies it in one write transaction, commits
//! once (one fsync for the whole batch), and only then answers every operation of the batch.
//! Operations are applied in the order they were queued, so a core reads its own writes.
//! Expired keys are never returned, and are purged in the background in batches of at most
//! [`EmbeddedConfig::purge_batch_max`] keys when the thread is idle or every purge interval.
//!
//! What it must not do: block a core. [`KvClient::submit`] never waits: a full queue is
//! [`KvError::QueueFull`] at once, and replies are taken with [`KvClient::try_recv`].
//!
//! Why redb rather than SQLite: redb is pure Rust (no C library linked into the PID-1 binary,
//! no FFI), its tables are ordered byte-key B-trees whose range scans are exactly KV's
//! lexicographic `list`, and its model (one writer, MVCC readers, copy-on-write pages with a
//! checksummed commit slot) is the shape of one storage thread doing group commit. SQLite would
//! do the same job with more machinery (SQL text, a C build, WAL checkpointing to tune).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Expiration, KvError, KvOp, KvReply, KvValue, ListKey, ListResult, Namespace, NamespaceRegistry, decode_cursor,
    encode_cursor,
};
use crate::clock::Clock;

/// Key (namespace prefix + user key) -> entry: expiration (u64 BE seconds, 0 = never), a
/// metadata flag byte, then the metadata. Kept apart from the value so `list` never reads values.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Key -> value bytes.
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");
/// Expiration (u64 BE seconds) + key -> nothing: the purge walks it in time order.
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The database file (created if missing).
    pub path: PathBuf,
    /// Operations waiting for the storage thread, across all cores. Beyond it, submit fails.
    pub queue_max: usize,
    /// Operations one core may have submitted and not yet received.
    pub in_flight_per_client_max: usize,
    /// Most operations in one batch (one transaction, one fsync).
    pub batch_ops_max: usize,
    /// Most value bytes in one batch.
    pub batch_bytes_max: usize,
    /// How often the thread purges expired keys while busy (it also purges whenever idle this long).
    pub purge_interval: Duration,
    /// Most expired keys removed per purge transaction.
    pub purge_batch_max: usize,
    /// Most entries one `list` examines (expired ones included) before it returns a short page
    /// with a cursor, so a namespace full of expired keys cannot make one list walk them all.
    pub list_scan_max: usize,
    /// redb's page cache.
    pub cache_bytes: usize,
}

impl EmbeddedConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            queue_max: 4096,
            in_flight_per_client_max: 1024,
            batch_ops_max: 256,
            batch_bytes_max: 64 * 1024 * 1024,
            purge_interval: Duration::from_secs(1),
            purge_batch_max: 512,
            list_scan_max: 4000,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Store-wide counters (per-namespace ones live on each [`Namespace`]).
#[derive(Debug, Default)]
pub struct EmbeddedStats {
    /// Write transactions committed (each one fsync).
    pub commits: AtomicU64,
    /// Operations applied.
    pub operations: AtomicU64,
    /// Submits refused because the queue was full.
    pub queue_full: AtomicU64,
    /// Expired keys purged.
    pub purged: AtomicU64,
}

type Completion = (u64, Result<KvReply, KvError>);

struct ClientLink {
    replies: Sender<Completion>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

struct Request {
    token: u64,
    namespace: Namespace,
    op: KvOp,
    client: Arc<ClientLink>,
}

/// Requests are boxed: the request queue allocates and touches all its slots when the store
/// opens, so a slot holds a pointer, not a whole `Request`.
enum Message {
    Op(Box<Request>),
    Stop,
}

/// The embedded store: owns the storage thread. Dropping it stops the thread after the
/// operations already queued (their replies are still delivered).
pub struct EmbeddedKv {
    requests: Sender<Message>,
    thread: Option<JoinHandle<()>>,
    clock: Arc<dyn Clock>,
    registry: Arc<NamespaceRegistry>,
    stats: Arc<EmbeddedStats>,
    in_flight_per_client_max: usize,
}

impl std::fmt::Debug for EmbeddedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKv").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl EmbeddedKv {
    /// Opens (or creates) the database and starts the storage thread `isobar-kv`. Errors here are
    /// start-up errors: the file cannot be created, is locked by another process, or is damaged.
    pub fn open(
        config: EmbeddedConfig,
        clock: Arc<dyn Clock>,
        registry: Arc<NamespaceRegistry>,
    ) -> Result<Self, KvError> {
        Self::open_with(config, clock, registry, Box::new(|| {}))
    }

    /// [`EmbeddedKv::open`], with `before_serving` run first on the storage thread: the binary
    /// passes a closure that waits for the process's system-call filter and confines the thread
    /// to its role (the file is open by then; the thread never opens another).
    pub fn open_with(
        config: EmbeddedConfig,
        clock: Arc<dyn Clock>,
        registry: Arc<NamespaceRegistry>,
        before_serving: Box<dyn FnOnce() + Send>,
    ) -> Result<Self, KvError> {
        let db = open_database(&config.path, config.cache_bytes)?;
        let (requests, inbox) = crossbeam_channel::bounded(config.queue_max.max(1));
        let stats = Arc::new(EmbeddedStats::default());
        let thread_stats = stats.clone();
        let thread_clock = clock.clone();
        let in_flight_per_client_max = config.in_flight_per_client_max.max(1);
        let thread = std::thread::Builder::new()
            .name("isobar-kv".into())
            .spawn(move || {
                before_serving();
                StorageThread { db, config, clock: thread_clock, stats: thread_stats }.run(inbox)
            })
            .map_err(|e| KvError::Storage(format!("cannot start the storage thread: {e}")))?;
        Ok(Self { requests, thread: Some(thread), clock, registry, stats, in_flight_per_client_max })
    }

    /// A core's handle. `wake` is called (from the storage thread) after replies for this client
    /// were queued; the core passes a closure that writes its eventfd.
    pub fn client(&self, wake: Arc<dyn Fn() + Send + Sync>) -> KvClient {
        // Unbounded, and still never longer than `in_flight_per_client_max`: a reply answers an
        // accepted operation, and the client accepts no more than that many at once.
        let (replies, inbox) = crossbeam_channel::unbounded();
        KvClient {
            requests: self.requests.clone(),
            replies: inbox,
            link: Arc::new(ClientLink { replies, wake }),
            clock: self.clock.clone(),
            stats: self.stats.clone(),
            in_flight: 0,
            in_flight_max: self.in_flight_per_client_max,
        }
    }

    /// The namespace `name` of `tenant` (deploy time).
    pub fn namespace(&self, tenant: &str, name: &str) -> Result<Namespace, KvError> {
        self.registry.namespace(tenant, name)
    }

    pub fn registry(&self) -> &Arc<NamespaceRegistry> {
        &self.registry
    }

    pub fn stats(&self) -> &EmbeddedStats {
        &self.stats
    }
}

impl Drop for EmbeddedKv {
    fn drop(&mut self) {
        // Blocking here is fine: this runs on the thread that owns the store (start-up or
        // shutdown), never on a core.
        let _ = self.requests.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One core's connection to the embedded store. Not shared: each core makes its own.
pub struct KvClient {
    requests: Sender<Message>,
    replies: Receiver<Completion>,
    link: Arc<ClientLink>,
    clock: Arc<dyn Clock>,
    stats: Arc<EmbeddedStats>,
    in_flight: usize,
    in_flight_max: usize,
}

impl std::fmt::Debug for KvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvClient").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

impl KvClient {
    /// Checks `op` and queues it; its reply comes back through [`KvClient::try_recv`] with
    /// `token`. Never blocks. An error here means nothing was queued (and it is counted).
    pub fn submit(&mut self, token: u64, namespace: &Namespace, op: KvOp) -> Result<(), KvError> {
        let verb = op.verb();
        let refused = |error: KvError| {
            namespace.counters().record(verb, 0, &Err(error.clone()));
            Err(error)
        };
        if self.in_flight >= self.in_flight_max {
            return refused(KvError::TooManyInFlight);
        }
        let op = match op.prepare(self.clock.now_unix_ms()) {
            Ok(op) => op,
            Err(error) => return refused(error),
        };
        let request = Request { token, namespace: namespace.clone(), op, client: self.link.clone() };
        match self.requests.try_send(Message::Op(Box::new(request))) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                refused(KvError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => refused(KvError::Closed),
        }
    }

    /// The next finished operation, if any. Call until `None` after each wake.
    pub fn try_recv(&mut self) -> Option<(u64, Result<KvReply, KvError>)> {
        let completion = self.replies.try_recv().ok()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(completion)
    }

    /// Operations submitted and not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, KvError> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| KvError::Storage(format!("cannot open {}: {e}", path.display())))?;
    // Create the tables once so readers never meet a missing table.
    let txn = db.begin_write().map_err(storage)?;
    {
        txn.open_table(ENTRIES).map_err(storage)?;
        txn.open_table(VALUES).map_err(storage)?;
        txn.open_table(EXPIRY).map_err(storage)?;
    }
    txn.commit().map_err(storage)?;
    Ok(db)
}

fn storage(error: impl std::fmt::Display) -> KvError {
    KvError::Storage(error.to_string())
}

struct StorageThread {
    db: Database,
    config: EmbeddedConfig,
    clock: Arc<dyn Clock>,
    stats: Arc<EmbeddedStats>,
}

impl StorageThread {
    fn run(self, inbox: Receiver<Message>) {
        let mut last_purge = Instant::now();
        loop {
            let first = match inbox.recv_timeout(self.config.purge_interval) {
                Ok(Message::Op(request)) => *request,
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    self.purge_expired();
                    last_purge = Instant::now();
                    continue;
                }
            };
            let mut batch_bytes = first.op.bytes_written() as usize;
            let mut batch = vec![first];
            let mut stop = false;
            while batch.len() < self.config.batch_ops_max && batch_bytes < self.config.batch_bytes_max {
                match inbox.try_recv() {
                    Ok(Message::Op(request)) => {
                        batch_bytes += request.op.bytes_written() as usize;
                        batch.push(*request);
                    }
                    Ok(Message::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.apply(batch);
            if stop {
                return;
            }
            if last_purge.elapsed() >= self.config.purge_interval {
                self.purge_expired();
                last_purge = Instant::now();
            }
        }
    }

    /// Applies a batch in queue order and answers it. With any write in it, the whole batch runs
    /// in one write transaction and nobody is answered before the commit (so no read reports a
    /// write that a crash could still lose); a batch of reads uses a read transaction.
    fn apply(&self, batch: Vec<Request>) {
        let now_ms = self.clock.now_unix_ms();
        let has_write = batch.iter().any(|r| matches!(r.op, KvOp::Put { .. } | KvOp::Delete { .. }));
        let results: Vec<Result<KvReply, KvError>> = if has_write {
            match self.apply_writing(&batch, now_ms) {
                Ok(results) => results,
                Err(error) => batch.iter().map(|_| Err(error.clone())).collect(),
            }
        } else {
            match self.db.begin_read().map_err(storage) {
                Ok(txn) => batch.iter().map(|r| self.read(&txn, r, now_ms)).collect(),
                Err(error) => batch.iter().map(|_| Err(error.clone())).collect(),
            }
        };
        self.stats.operations.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut to_wake: Vec<Arc<ClientLink>> = Vec::new();
        for (request, result) in batch.into_iter().zip(results) {
            request.namespace.counters().record(request.op.verb(), request.op.bytes_written(), &result);
            // The reply channel holds as many replies as the client may have in flight, so it
            // cannot be full; if it is gone, the core has shut down and nobody is waiting.
            let _ = request.client.replies.try_send((request.token, result));
            if !to_wake.iter().any(|c| Arc::ptr_eq(c, &request.client)) {
                to_wake.push(request.client);
            }
        }
        for client in to_wake {
            (client.wake)();
        }
    }

    fn apply_writing(&self, batch: &[Request], now_ms: u64) -> Result<Vec<Result<KvReply, KvError>>, KvError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let mut results = Vec::with_capacity(batch.len());
        {
            let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
            let mut values = txn.open_table(VALUES).map_err(storage)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
            for request in batch {
                let prefix = request.namespace.embedded_prefix();
                let result = match &request.op {
                    KvOp::Put { key, value, expiration, metadata } => {
                        let full_key = [prefix.as_slice(), key.as_bytes()].concat();
                        remove_key(&mut entries, &mut values, &mut expiry, &full_key)?;
                        let expires_secs = match expiration {
                            Expiration::At(at) => *at,
                            // `prepare` turned TTLs into absolute times.
                            Expiration::Never | Expiration::Ttl(_) => 0,
                        };
                        let entry = encode_entry(expires_secs, metadata.as_deref());
                        entries.insert(full_key.as_slice(), entry.as_slice()).map_err(storage)?;
                        values.insert(full_key.as_slice(), value.as_slice()).map_err(storage)?;
                        if expires_secs != 0 {
                            expiry.insert(expiry_key(expires_secs, &full_key).as_slice(), ()).map_err(storage)?;
                        }
                        Ok(KvReply::Done)
                    }
                    KvOp::Delete { key } => {
                        let full_key = [prefix.as_slice(), key.as_bytes()].concat();
                        remove_key(&mut entries, &mut values, &mut expiry, &full_key)?;
                        Ok(KvReply::Done)
                    }
                    KvOp::Get { key, .. } => get(&entries, &values, &prefix, key, now_ms),
                    KvOp::List { prefix: key_prefix, limit, cursor } => list(
                        &entries,
                        &prefix,
                        key_prefix,
                        *limit,
                        cursor.as_deref(),
                        now_ms,
                        self.config.list_scan_max.max(super::LIST_LIMIT_MAX as usize),
                    ),
                };
                results.push(result);
            }
        }
        txn.commit().map_err(storage)?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(results)
    }

    fn read(&self, txn: &redb::ReadTransaction, request: &Request, now_ms: u64) -> Result<KvReply, KvError> {
        let entries = txn.open_table(ENTRIES).map_err(storage)?;
        let prefix = request.namespace.embedded_prefix();
        match &request.op {
            KvOp::Get { key, .. } => {
                let values = txn.open_table(VALUES).map_err(storage)?;
                get(&entries, &values, &prefix, key, now_ms)
            }
            KvOp::List { prefix: key_prefix, limit, cursor } => list(
                &entries,
                &prefix,
                key_prefix,
                *limit,
                cursor.as_deref(),
                now_ms,
                self.config.list_scan_max.max(super::LIST_LIMIT_MAX as usize),
            ),
            KvOp::Put { .. } | KvOp::Delete { .. } => Err(KvError::Storage("write in a read batch".into())),
        }
    }

    /// Removes up to `purge_batch_max` expired keys in one transaction.
    fn purge_expired(&self) {
        let now_secs = self.clock.now_unix_ms() / 1000;
        let result = (|| -> Result<usize, KvError> {
            let txn = self.db.begin_write().map_err(storage)?;
            let mut purged = 0;
            {
                let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
                let mut values = txn.open_table(VALUES).map_err(storage)?;
                let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
                // Everything that expired at or before now: expiration seconds <= now_secs.
                let end = (now_secs.saturating_add(1)).to_be_bytes();
                let due: Vec<Vec<u8>> = expiry
                    .range(..end.as_slice())
                    .map_err(storage)?
                    .take(self.config.purge_batch_max)
                    .filter_map(|item| item.ok().map(|(k, _)| k.value().to_vec()))
                    .collect();
                for record in &due {
                    expiry.remove(record.as_slice()).map_err(storage)?;
                    let Some(full_key) = record.get(8..) else { continue };
                    entries.remove(full_key).map_err(storage)?;
                    values.remove(full_key).map_err(storage)?;
                    purged += 1;
                }
            }
            if purged > 0 {
                txn.commit().map_err(storage)?;
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
            } else {
                txn.abort().map_err(storage)?;
            }
            Ok(purged)
        })();
        match result {
            Ok(purged) => {
                self.stats.purged.fetch_add(purged as u64, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "kv: purging expired keys failed"),
        }
    }
}

fn encode_entry(expires_secs: u64, metadata: Option<&str>) -> Vec<u8> {
    let mut entry = Vec::with_capacity(9 + metadata.map_or(0, str::len));
    entry.extend_from_slice(&expires_secs.to_be_bytes());
    match metadata {
        Some(metadata) => {
            entry.push(1);
            entry.extend_from_slice(metadata.as_bytes());
        }
        None => entry.push(0),
    }
    entry
}

/// (expiration seconds, 0 = never; metadata).
fn decode_entry(entry: &[u8]) -> Result<(u64, Option<String>), KvError> {
    let damaged = || KvError::Storage("damaged entry".into());
    let expires: [u8; 8] = entry.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(damaged)?;
    let metadata = match entry.get(8) {
        Some(1) => Some(String::from_utf8(entry.get(9..).unwrap_or_default().to_vec()).map_err(|_| damaged())?),
        Some(0) => None,
        _ => return Err(damaged()),
    };
    Ok((u64::from_be_bytes(expires), metadata))
}

fn expiry_key(expires_secs: u64, full_key: &[u8]) -> Vec<u8> {
    [&expires_secs.to_be_bytes()[..], full_key].concat()
}

fn is_expired(expires_secs: u64, now_ms: u64) -> bool {
    expires_secs != 0 && expires_secs.saturating_mul(1000) <= now_ms
}

fn remove_key(
    entries: &mut redb::Table<&[u8], &[u8]>,
    values: &mut redb::Table<&[u8], &[u8]>,
    expiry: &mut redb::Table<&[u8], ()>,
    full_key: &[u8],
) -> Result<(), KvError> {
    let old = entries.remove(full_key).map_err(storage)?.map(|guard| guard.value().to_vec());
    if let Some(old) = old {
        let (expires_secs, _) = decode_entry(&old)?;
        if expires_secs != 0 {
            expiry.remove(expiry_key(expires_secs, full_key).as_slice()).map_err(storage)?;
        }
    }
    values.remove(full_key).map_err(storage)?;
    Ok(())
}

fn get(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    values: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    key: &str,
    now_ms: u64,
) -> Result<KvReply, KvError> {
    let full_key = [prefix, key.as_bytes()].concat();
    let Some(entry) = entries.get(full_key.as_slice()).map_err(storage)? else {
        return Ok(KvReply::Value(None));
    };
    let (expires_secs, metadata) = decode_entry(entry.value())?;
    if is_expired(expires_secs, now_ms) {
        return Ok(KvReply::Value(None));
    }
    let Some(value) = values.get(full_key.as_slice()).map_err(storage)? else {
        return Err(KvError::Storage("entry without a value".into()));
    };
    Ok(KvReply::Value(Some(KvValue { value: value.value().to_vec(), metadata })))
}

fn list(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    namespace_prefix: &[u8],
    key_prefix: &str,
    limit: u32,
    cursor: Option<&str>,
    now_ms: u64,
    scan_max: usize,
) -> Result<KvReply, KvError> {
    let wanted = [namespace_prefix, key_prefix.as_bytes()].concat();
    let after = cursor.map(decode_cursor).transpose()?.map(|key| [namespace_prefix, key.as_slice()].concat());
    // Start at the prefix, or just after the cursor's key when that lies further on.
    let start = match &after {
        Some(after) if after.as_slice() >= wanted.as_slice() => std::ops::Bound::Excluded(after.as_slice()),
        _ => std::ops::Bound::Included(wanted.as_slice()),
    };
    let range = entries.range((start, std::ops::Bound::Unbounded)).map_err(storage)?;
    let mut keys = Vec::new();
    let mut last_scanned: Option<Vec<u8>> = None;
    let limit = limit as usize;
    for (scanned, item) in range.enumerate() {
        let (full_key, entry) = item.map_err(storage)?;
        let full_key = full_key.value();
        if !full_key.starts_with(&wanted) {
            return Ok(KvReply::List(ListResult { keys, list_complete: true, cursor: None }));
        }
        let user_key = full_key.get(namespace_prefix.len()..).unwrap_or_default();
        if keys.len() == limit || scanned == scan_max {
            // There is at least one more key (this one): the page ends at the last key examined.
            let cursor = last_scanned.as_deref().map(encode_cursor);
            return Ok(KvReply::List(ListResult { keys, list_complete: false, cursor }));
        }
        last_scanned = Some(user_key.to_vec());
        let (expires_secs, metadata) = decode_entry(entry.value())?;
        if is_expired(expires_secs, now_ms) {
            continue;
        }
        let name = String::from_utf8(user_key.to_vec()).map_err(|_| KvError::Storage("key is not UTF-8".into()))?;
        keys.push(ListKey { name, expiration: (expires_secs != 0).then_some(expires_secs), metadata });
    }
    Ok(KvReply::List(ListResult { keys, list_complete: true, cursor: None }))
}
