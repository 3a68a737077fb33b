//! The Cache API store behind `caches.default` and `caches.open(name)`: responses keyed by
//! tenant, cache name and request URL (GET only), kept in a memory tier and a disk tier (files
//! under one directory), each with a byte budget and least-recently-used eviction (memory
//! overflows to disk, disk overflows out), shared by every core of a host.
//!
//! Semantics follow Cloudflare's Cache API (see [`policy`] for what `put` stores and for how
//! long): `put` refuses non-GET requests, 206 responses and `Vary: *` with a `TypeError`;
//! `match` and `delete` answer `undefined`/`false` for a non-GET request unless `ignoreMethod`
//! is set (then any method is looked up as GET); `match` adds `cf-cache-status: HIT` to the
//! stored headers; `delete` says whether a fresh entry was removed. A response larger than the
//! entry limit is refused with an `Error` (Cloudflare's cache answers such a put with 413): the
//! script learns that its body was too big instead of finding a miss later. Not implemented yet:
//! conditional (`If-None-Match`) and `Range` requests on `match`, which Cloudflare answers with
//! 304 and 206. The cache starts empty (a cache may lose anything at any time): a store never
//! reads files it did not write.
//!
//! Like the embedded KV store, one storage thread (`isobar-cache`) owns the index and does all
//! file I/O; cores submit over a bounded channel and receive replies on their own channel with
//! a wake callback. It must not block a core: a full queue is an error at once.
//!
//! Several processes may share a directory (two `isobar run` in one project, or a new server
//! started before the old one has drained): each store names its files with a tag of its own
//! (`<tag>-<n>.entry`) and holds an exclusive lock on `<tag>.lock` while it lives. At open, the
//! files of tags whose lock nobody holds (a process that crashed) are removed. The budgets are
//! per store, not per directory.

pub mod policy;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::clock::Clock;
use policy::{Decision, SkipReason};

/// Longest request URL used as a key.
pub const URL_BYTES_MAX: usize = 16 * 1024;
/// Longest cache name (`caches.open(name)`).
pub const CACHE_NAME_BYTES_MAX: usize = 1024;

/// Why a Cache API call failed. [`CacheError::js_class`] says what the script sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum CacheError {
    /// Cannot cache response to non-GET request.
    NonGetPut,
    /// Cannot cache response to a range request (206 Partial Content).
    PartialContent,
    /// Cannot cache response with 'Vary: *' header.
    VaryStar,
    /// Invalid URL. Cache API keys must be fully-qualified, valid URLs.
    InvalidUrl,
    /// Cache name too long (at most 1024 bytes).
    NameTooLong,
    /// Cache put failed: the response is {bytes} bytes; the cache stores at most {max} bytes per entry
    TooLarge { bytes: u64, max: u64 },
    /// Cache operation failed: too many operations queued; try again
    QueueFull,
    /// Cache operation failed: too many operations in flight on this core; try again
    TooManyInFlight,
    /// Cache operation failed: the cache is shut down
    Closed,
    /// Cache operation failed: {0}
    Io(String),
}

impl CacheError {
    pub fn js_class(&self) -> &'static str {
        match self {
            Self::NonGetPut | Self::PartialContent | Self::VaryStar | Self::InvalidUrl | Self::NameTooLong => {
                "TypeError"
            }
            _ => "Error",
        }
    }
}

/// Which cache of a tenant, and which request in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub tenant: String,
    /// `None` for `caches.default`, `Some(name)` for `caches.open(name)` (so `caches.open("default")`
    /// is a cache of its own, as in workerd where the default cache has no name).
    pub cache_name: Option<String>,
    /// The request URL, as the Request object holds it.
    pub url: String,
}

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CachedResponse {
    fn size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        (self.body.len() + headers + 16) as u64
    }
}

/// One Cache API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOp {
    Match { key: CacheKey, method: String, ignore_method: bool },
    Put { key: CacheKey, method: String, response: CachedResponse },
    Delete { key: CacheKey, method: String, ignore_method: bool },
}

/// The answer to one [`CacheOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheReply {
    /// `match`: the response (with `cf-cache-status: HIT`), or `None` (undefined).
    Match(Option<CachedResponse>),
    /// `put` resolved; `Some(reason)` if the response was not stored (not an error in JS).
    Put(Option<SkipReason>),
    /// `delete`: whether a fresh entry was removed.
    Deleted(bool),
}

/// Settings of the cache store.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Directory for the disk tier (created if missing; may be shared with other processes).
    pub dir: PathBuf,
    pub memory_bytes_max: u64,
    pub disk_bytes_max: u64,
    /// Largest single response (body and headers) `put` accepts; a larger one is an error.
    pub entry_bytes_max: u64,
    /// Entries in the index, both tiers together (each costs its URL and about 100 bytes of RAM).
    pub entries_max: usize,
    pub queue_max: usize,
    pub in_flight_per_client_max: usize,
    /// How often expired entries are swept out.
    pub sweep_interval: Duration,
}

impl CacheConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            memory_bytes_max: 256 * 1024 * 1024,
            disk_bytes_max: 4 * 1024 * 1024 * 1024,
            entry_bytes_max: 512 * 1024 * 1024,
            entries_max: 1_000_000,
            queue_max: 4096,
            in_flight_per_client_max: 1024,
            sweep_interval: Duration::from_secs(10),
        }
    }
}

/// Per-tenant counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TenantCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub puts_stored: u64,
    pub puts_skipped: u64,
    pub deletes: u64,
}

/// Store-wide gauges and counters.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub memory_bytes: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub entries: AtomicU64,
    /// Entries moved from memory to disk to keep the memory budget.
    pub demoted: AtomicU64,
    /// Entries dropped to keep the disk budget or the entry limit.
    pub evicted: AtomicU64,
    pub expired: AtomicU64,
    pub queue_full: AtomicU64,
    pub io_errors: AtomicU64,
    tenants: Mutex<HashMap<String, TenantCacheStats>>,
}

impl CacheStats {
    /// (tenant, counters), sorted by tenant.
    pub fn tenants(&self) -> Vec<(String, TenantCacheStats)> {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<_> = tenants.iter().map(|(t, s)| (t.clone(), *s)).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    fn tenant(&self, tenant: &str, update: impl FnOnce(&mut TenantCacheStats)) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        update(tenants.entry(tenant.to_owned()).or_default());
    }
}

type Completion = (u64, Result<CacheReply, CacheError>);

struct ClientLink {
    replies: Sender<Completion>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

/// A queued operation, boxed: the request queue allocates and touches all its slots when the
/// store opens (on every start-up), so a slot holds a pointer, not a whole `CacheOp`.
enum Message {
    Op(Box<Queued>),
    Stop,
}

struct Queued {
    token: u64,
    op: CacheOp,
    now_ms: u64,
    client: Arc<ClientLink>,
}

/// The host's cache: owns the storage thread. Dropping it stops the thread.
pub struct CacheStore {
    requests: Sender<Message>,
    thread: Option<JoinHandle<()>>,
    clock: Arc<dyn Clock>,
    stats: Arc<CacheStats>,
    config: CacheConfig,
    /// This store's `<tag>.lock`, locked exclusively for as long as the store lives.
    _lock: std::fs::File,
}

impl std::fmt::Debug for CacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheStore").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl CacheStore {
    /// Creates the directory, takes a tag and its lock, removes the files of stores that are
    /// gone, and starts the thread.
    pub fn open(config: CacheConfig, clock: Arc<dyn Clock>) -> Result<Self, CacheError> {
        Self::open_with(config, clock, Box::new(|| {}))
    }

    /// [`CacheStore::open`], with `before_serving` run first on the storage thread: the binary
    /// passes a closure that waits for the process's system-call filter and confines the thread
    /// to its role (it opens and removes entry files in the directory, and nothing else).
    pub fn open_with(
        config: CacheConfig,
        clock: Arc<dyn Clock>,
        before_serving: Box<dyn FnOnce() + Send>,
    ) -> Result<Self, CacheError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| io_error(&config.dir, e))?;
        let (tag, lock) = take_tag(&config.dir)?;
        remove_stale_files(&config.dir, &tag);
        let (requests, inbox) = crossbeam_channel::bounded(config.queue_max.max(1));
        let stats = Arc::new(CacheStats::default());
        let thread_stats = stats.clone();
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("isobar-cache".into())
            .spawn(move || {
                before_serving();
                Tiers::new(thread_config, tag, thread_stats).run(inbox)
            })
            .map_err(|e| CacheError::Io(format!("cannot start the cache thread: {e}")))?;
        Ok(Self { requests, thread: Some(thread), clock, stats, config, _lock: lock })
    }

    /// A core's handle; `wake` is called from the cache thread after replies were queued.
    pub fn client(&self, wake: Arc<dyn Fn() + Send + Sync>) -> CacheClient {
        let in_flight_max = self.config.in_flight_per_client_max.max(1);
        // Unbounded, and still never longer than `in_flight_max`: a reply answers an accepted
        // call, and `submit` accepts no more than that many at once. Its memory grows with use.
        let (replies, inbox) = crossbeam_channel::unbounded();
        CacheClient {
            requests: self.requests.clone(),
            replies: inbox,
            link: Arc::new(ClientLink { replies, wake }),
            clock: self.clock.clone(),
            stats: self.stats.clone(),
            in_flight: 0,
            in_flight_max,
            entry_bytes_max: self.config.entry_bytes_max,
        }
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }
}

impl Drop for CacheStore {
    fn drop(&mut self) {
        let _ = self.requests.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One core's handle on the cache.
pub struct CacheClient {
    requests: Sender<Message>,
    replies: Receiver<Completion>,
    link: Arc<ClientLink>,
    clock: Arc<dyn Clock>,
    stats: Arc<CacheStats>,
    in_flight: usize,
    in_flight_max: usize,
    entry_bytes_max: u64,
}

impl std::fmt::Debug for CacheClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheClient").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

impl CacheClient {
    /// Checks `op` and queues it; errors here are the script's (`TypeError`s) or a full queue.
    /// A call answered without the store (non-GET `match`/`delete`, a response `put` does not
    /// store) is still queued, so every accepted call has exactly one reply on
    /// [`CacheClient::try_recv`].
    pub fn submit(&mut self, token: u64, op: CacheOp) -> Result<(), CacheError> {
        let key = match &op {
            CacheOp::Match { key, .. } | CacheOp::Put { key, .. } | CacheOp::Delete { key, .. } => key,
        };
        if key.url.len() > URL_BYTES_MAX || !(key.url.starts_with("http://") || key.url.starts_with("https://")) {
            return Err(CacheError::InvalidUrl);
        }
        if key.cache_name.as_ref().is_some_and(|n| n.len() > CACHE_NAME_BYTES_MAX) {
            return Err(CacheError::NameTooLong);
        }
        if let CacheOp::Put { method, response, .. } = &op {
            if !method.eq_ignore_ascii_case("GET") {
                return Err(CacheError::NonGetPut);
            }
            // Checked here so the script gets its TypeError at once; the thread decides again
            // at store time with the same inputs.
            policy::decide(response.status, &response.headers, 0)?;
            if response.size() > self.entry_bytes_max {
                return Err(CacheError::TooLarge { bytes: response.size(), max: self.entry_bytes_max });
            }
        }
        if self.in_flight >= self.in_flight_max {
            return Err(CacheError::TooManyInFlight);
        }
        let message =
            Message::Op(Box::new(Queued { token, op, now_ms: self.clock.now_unix_ms(), client: self.link.clone() }));
        match self.requests.try_send(message) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                Err(CacheError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(CacheError::Closed),
        }
    }

    /// The next finished call, if any. Call until `None` after each wake.
    pub fn try_recv(&mut self) -> Option<(u64, Result<CacheReply, CacheError>)> {
        let completion = self.replies.try_recv().ok()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(completion)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

fn io_error(path: &Path, error: std::io::Error) -> CacheError {
    CacheError::Io(format!("{}: {error}", path.display()))
}

/// A tag no other live store has (this process's id and the time, in hex), and its lock file,
/// created under a dot-name, locked, then renamed: a store looking for dead tags never sees a
/// `<tag>.lock` that is not locked yet.
fn take_tag(dir: &Path) -> Result<(String, std::fs::File), CacheError> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let tag = format!("{:08x}{:016x}", std::process::id(), nanos as u64);
    let creating = dir.join(format!(".{tag}.lock"));
    let lock =
        std::fs::OpenOptions::new().write(true).create_new(true).open(&creating).map_err(|e| io_error(&creating, e))?;
    lock.try_lock().map_err(|e| CacheError::Io(format!("{}: cannot lock: {e}", creating.display())))?;
    let path = dir.join(format!("{tag}.lock"));
    std::fs::rename(&creating, &path).map_err(|e| io_error(&path, e))?;
    Ok((tag, lock))
}

/// The tag of a store's file name: `<tag>.lock` or `<tag>-<n>.entry` (dot-names are locks being
/// made, and are left alone).
fn tag_of(name: &str) -> Option<&str> {
    if name.starts_with('.') {
        return None;
    }
    if let Some(tag) = name.strip_suffix(".lock") {
        return Some(tag);
    }
    name.strip_suffix(".entry").and_then(|rest| rest.split_once('-')).map(|(tag, _)| tag)
}

/// Removes the files of every tag but `own` whose lock nobody holds, or that has no lock file:
/// what a store that died left behind. Best effort: a file that cannot be removed now is tried
/// again by the next store that opens the directory.
fn remove_stale_files(dir: &Path, own: &str) {
    let Ok(listing) = std::fs::read_dir(dir) else { return };
    let names: Vec<String> = listing.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    let mut live: HashMap<&str, bool> = HashMap::new();
    for name in &names {
        let Some(tag) = name.strip_suffix(".lock").filter(|tag| !tag.starts_with('.') && *tag != own) else {
            continue;
        };
        let held = std::fs::File::open(dir.join(name))
            .is_ok_and(|file| matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)));
        live.insert(tag, held);
    }
    for name in &names {
        let Some(tag) = tag_of(name).filter(|tag| *tag != own) else { continue };
        if !live.get(tag).copied().unwrap_or(false) {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}

enum Location {
    Memory(CachedResponse),
    /// The file `<dir>/<tag>-<id>.entry`.
    Disk(u64),
}

struct Entry {
    size: u64,
    expires_at_ms: u64,
    /// Position in its tier's LRU order.
    tick: u64,
    location: Location,
}

/// The cache thread's state: the index and both tiers.
struct Tiers {
    config: CacheConfig,
    /// This store's tag, in its file names.
    tag: String,
    stats: Arc<CacheStats>,
    entries: HashMap<CacheKey, Entry>,
    memory_lru: BTreeMap<u64, CacheKey>,
    disk_lru: BTreeMap<u64, CacheKey>,
    memory_bytes: u64,
    disk_bytes: u64,
    next_tick: u64,
    next_file: u64,
}

impl Tiers {
    fn new(config: CacheConfig, tag: String, stats: Arc<CacheStats>) -> Self {
        Self {
            config,
            tag,
            stats,
            entries: HashMap::new(),
            memory_lru: BTreeMap::new(),
            disk_lru: BTreeMap::new(),
            memory_bytes: 0,
            disk_bytes: 0,
            next_tick: 0,
            next_file: 0,
        }
    }

    fn run(mut self, inbox: Receiver<Message>) {
        let mut last_sweep = Instant::now();
        let mut now_ms_seen = 0;
        loop {
            match inbox.recv_timeout(self.config.sweep_interval) {
                Ok(Message::Op(queued)) => {
                    let Queued { token, op, now_ms, client } = *queued;
                    now_ms_seen = now_ms;
                    let result = self.apply(op, now_ms);
                    let _ = client.replies.try_send((token, result));
                    (client.wake)();
                }
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_sweep.elapsed() >= self.config.sweep_interval {
                self.sweep(now_ms_seen);
                last_sweep = Instant::now();
            }
            self.publish();
        }
        // Leave no files behind (the lock is held until the store's handle on it is closed).
        let keys: Vec<CacheKey> = self.entries.keys().cloned().collect();
        for key in keys {
            self.remove(&key);
        }
        let _ = std::fs::remove_file(self.config.dir.join(format!("{}.lock", self.tag)));
    }

    fn apply(&mut self, op: CacheOp, now_ms: u64) -> Result<CacheReply, CacheError> {
        match op {
            CacheOp::Match { key, method, ignore_method } => {
                if !ignore_method && !method.eq_ignore_ascii_case("GET") {
                    return Ok(CacheReply::Match(None));
                }
                let found = self.get(&key, now_ms);
                self.stats.tenant(&key.tenant, |s| if found.is_some() { s.hits += 1 } else { s.misses += 1 });
                Ok(CacheReply::Match(found.map(|mut response| {
                    response.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("cf-cache-status"));
                    response.headers.push(("cf-cache-status".into(), "HIT".into()));
                    response
                })))
            }
            CacheOp::Put { key, mut response, .. } => {
                let decision = policy::decide(response.status, &response.headers, now_ms)?;
                let skipped = match decision {
                    Decision::Skip(reason) => Some(reason),
                    Decision::Store { expires_at_ms, strip_headers } => {
                        response.headers.retain(|(n, _)| !strip_headers.iter().any(|s| n.eq_ignore_ascii_case(s)));
                        self.insert(key.clone(), response, expires_at_ms)
                    }
                };
                self.stats
                    .tenant(&key.tenant, |s| if skipped.is_some() { s.puts_skipped += 1 } else { s.puts_stored += 1 });
                Ok(CacheReply::Put(skipped))
            }
            CacheOp::Delete { key, method, ignore_method } => {
                if !ignore_method && !method.eq_ignore_ascii_case("GET") {
                    return Ok(CacheReply::Deleted(false));
                }
                let fresh = self.entries.get(&key).is_some_and(|e| e.expires_at_ms > now_ms);
                let existed = self.remove(&key);
                self.stats.tenant(&key.tenant, |s| s.deletes += 1);
                Ok(CacheReply::Deleted(existed && fresh))
            }
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// A fresh entry's response, promoted to memory and marked most recently used.
    fn get(&mut self, key: &CacheKey, now_ms: u64) -> Option<CachedResponse> {
        let entry = self.entries.get(key)?;
        if entry.expires_at_ms <= now_ms {
            self.remove(key);
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let expires_at_ms = entry.expires_at_ms;
        let response = match &entry.location {
            Location::Memory(response) => response.clone(),
            Location::Disk(file) => match read_entry(&self.file(*file)) {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(%error, "cache: dropping an unreadable entry");
                    self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
                    self.remove(key);
                    return None;
                }
            },
        };
        // Re-inserting moves it to the front of the memory tier (which may push others to disk).
        self.remove(key);
        self.insert(key.clone(), response.clone(), expires_at_ms);
        Some(response)
    }

    /// Stores a response in memory (or straight on disk if it is larger than the memory
    /// budget), then evicts to keep both budgets. `Some(reason)` if it could not be stored.
    fn insert(&mut self, key: CacheKey, response: CachedResponse, expires_at_ms: u64) -> Option<SkipReason> {
        self.remove(&key);
        let size = response.size();
        if size > self.config.entry_bytes_max
            || (size > self.config.memory_bytes_max && size > self.config.disk_bytes_max)
        {
            return Some(SkipReason::TooLarge);
        }
        let tick = self.tick();
        if size > self.config.memory_bytes_max {
            let location = match self.write_to_disk(&response) {
                Ok(file) => file,
                Err(_) => return Some(SkipReason::TooLarge),
            };
            self.disk_bytes += size;
            self.disk_lru.insert(tick, key.clone());
            self.entries.insert(key, Entry { size, expires_at_ms, tick, location });
        } else {
            self.memory_bytes += size;
            self.memory_lru.insert(tick, key.clone());
            self.entries.insert(key, Entry { size, expires_at_ms, tick, location: Location::Memory(response) });
        }
        self.enforce_budgets();
        None
    }

    fn enforce_budgets(&mut self) {
        // Memory over budget: the least recently used entries move to disk.
        while self.memory_bytes > self.config.memory_bytes_max {
            let Some((_, key)) = self.memory_lru.pop_first() else { break };
            let Some(mut entry) = self.entries.remove(&key) else { continue };
            self.memory_bytes -= entry.size;
            let Location::Memory(response) = std::mem::replace(&mut entry.location, Location::Disk(0)) else {
                continue;
            };
            if entry.size > self.config.disk_bytes_max {
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.write_to_disk(&response) {
                Ok(location) => {
                    entry.location = location;
                    entry.tick = self.tick();
                    self.disk_bytes += entry.size;
                    self.disk_lru.insert(entry.tick, key.clone());
                    self.entries.insert(key, entry);
                    self.stats.demoted.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Disk over budget, or too many entries: the least recently used disk entries go, then
        // memory ones if the entry limit still demands it.
        while self.disk_bytes > self.config.disk_bytes_max || self.entries.len() > self.config.entries_max {
            let oldest = self.disk_lru.first_key_value().or_else(|| self.memory_lru.first_key_value());
            let Some((_, key)) = oldest.map(|(t, k)| (*t, k.clone())) else { break };
            self.remove(&key);
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes an entry from the index, its tier and (for disk) its file.
    fn remove(&mut self, key: &CacheKey) -> bool {
        let Some(entry) = self.entries.remove(key) else { return false };
        match entry.location {
            Location::Memory(_) => {
                self.memory_lru.remove(&entry.tick);
                self.memory_bytes -= entry.size;
            }
            Location::Disk(file) => {
                self.disk_lru.remove(&entry.tick);
                self.disk_bytes -= entry.size;
                let _ = std::fs::remove_file(self.file(file));
            }
        }
        true
    }

    fn sweep(&mut self, now_ms: u64) {
        let expired: Vec<CacheKey> =
            self.entries.iter().filter(|(_, e)| e.expires_at_ms <= now_ms).map(|(k, _)| k.clone()).collect();
        for key in expired {
            self.remove(&key);
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn publish(&self) {
        self.stats.memory_bytes.store(self.memory_bytes, Ordering::Relaxed);
        self.stats.disk_bytes.store(self.disk_bytes, Ordering::Relaxed);
        self.stats.entries.store(self.entries.len() as u64, Ordering::Relaxed);
    }

    fn file(&self, id: u64) -> PathBuf {
        self.config.dir.join(format!("{}-{id}.entry", self.tag))
    }

    fn write_to_disk(&mut self, response: &CachedResponse) -> Result<Location, CacheError> {
        self.next_file += 1;
        let id = self.next_file;
        let path = self.file(id);
        let result = (|| {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&encode_entry(response))?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(Location::Disk(id)),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, path = %path.display(), "cache: cannot write an entry to disk");
                Err(io_error(&path, error))
            }
        }
    }
}

/// An entry file: status (u16), header count (u32), each header as two length-prefixed
/// strings (u32 lengths), then the body. Only this thread writes and reads these files.
fn encode_entry(response: &CachedResponse) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(response.size() as usize);
    bytes.extend_from_slice(&response.status.to_be_bytes());
    bytes.extend_from_slice(&(response.headers.len() as u32).to_be_bytes());
    for (name, value) in &response.headers {
        for text in [name, value] {
            bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
    }
    bytes.extend_from_slice(&response.body);
    bytes
}

fn read_entry(path: &Path) -> Result<CachedResponse, CacheError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io_error(path, e))?;
    let damaged = || CacheError::Io(format!("{}: damaged entry", path.display()));
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], CacheError> {
        let slice = bytes.get(at..at.checked_add(n).ok_or_else(damaged)?).ok_or_else(damaged)?;
        at += n;
        Ok(slice)
    };
    let status = u16::from_be_bytes(take(2)?.try_into().map_err(|_| damaged())?);
    let count = u32::from_be_bytes(take(4)?.try_into().map_err(|_| damaged())?);
    let mut headers = Vec::new();
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for text in &mut pair {
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| damaged())?) as usize;
            *text = String::from_utf8(take(len)?.to_vec()).map_err(|_| damaged())?;
        }
        let [name, value] = pair;
        headers.push((name, value));
    }
    let body = bytes.get(at..).unwrap_or_default().to_vec();
    Ok(CachedResponse { status, headers, body })
}
