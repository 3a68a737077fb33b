//! What cores count, per tenant and per core, and hand to the admin API on request.
//!
//! Counters live on each core, unshared; the admin thread asks every core for a [`CoreStats`]
//! through its mailbox when `/metrics` or `/tenants` is read. Nothing is locked on the request
//! path.

use std::sync::Arc;
use std::time::Duration;

/// Which limit stopped a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Cpu,
    Heap,
    Wall,
    Concurrency,
}

impl LimitKind {
    pub const ALL: [LimitKind; 4] = [LimitKind::Cpu, LimitKind::Heap, LimitKind::Wall, LimitKind::Concurrency];

    pub fn label(self) -> &'static str {
        match self {
            LimitKind::Cpu => "cpu",
            LimitKind::Heap => "heap",
            LimitKind::Wall => "wall",
            LimitKind::Concurrency => "concurrency",
        }
    }
}

/// Monotonic counters of one tenant on one core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantCounters {
    /// CPU time spent in the tenant's isolates, timed around every entry (runtime's watchdog
    /// module says how: the monotonic clock, and the thread CPU clock for entries the watchdog
    /// saw): what the tenant is billed.
    pub cpu: Duration,
    /// Wall time from dispatch to response, summed over requests.
    pub wall: Duration,
    /// Requests by response status class: index 0 = 1xx ... 4 = 5xx.
    pub requests: [u64; 5],
    /// Request and response body bytes.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Requests stopped by each limit, in `LimitKind::ALL` order.
    pub limits_exceeded: [u64; 4],
    pub isolates_created: u64,
    /// Subrequests started (fetch), and their request and response body bytes.
    pub subrequests: u64,
    pub subrequest_bytes_out: u64,
    pub subrequest_bytes_in: u64,
    /// Cron Trigger firings run (`scheduled()`), and those that failed (threw, rejected, or hit
    /// a limit).
    pub scheduled: u64,
    pub scheduled_failed: u64,
    /// WebSocket messages received from peers and sent by scripts (bytes count in `bytes_in`
    /// and `bytes_out`).
    pub ws_messages_in: u64,
    pub ws_messages_out: u64,
    /// KV operations by verb, in [`KV_VERBS`] order (refused ones included).
    pub kv_operations: [u64; 4],
    /// KV operations that ended in an error (a limit, the store down).
    pub kv_errors: u64,
    /// Value and metadata bytes KV `get`s returned, and key, value and metadata bytes `put`s stored.
    pub kv_bytes_read: u64,
    pub kv_bytes_written: u64,
    /// Cache API operations (`caches.default`, `caches.open`) by verb, in [`CACHE_VERBS`]
    /// order: every call that reached the core, refused ones included.
    pub cache_operations: [u64; 3],
    /// `match`es that found a fresh entry, and lookups that did not (a non-GET `match` without
    /// `ignoreMethod` is not a lookup, and is neither).
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Cache operations that ended in an error (a response over the entry limit, a full queue).
    pub cache_errors: u64,
}

/// The KV verbs, as the `verb` label of the KV counters shows them.
pub const KV_VERBS: [&str; 4] = ["get", "put", "delete", "list"];

/// The Cache API verbs, as the `verb` label of the cache counters shows them.
pub const CACHE_VERBS: [&str; 3] = ["match", "put", "delete"];

impl TenantCounters {
    pub fn count_status(&mut self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[class] += 1;
    }

    /// Counts a KV operation of `verb` (one of [`KV_VERBS`]).
    pub fn count_kv(&mut self, verb: &str) {
        if let Some(index) = KV_VERBS.iter().position(|v| *v == verb) {
            self.kv_operations[index] += 1;
        }
    }

    /// Counts a Cache API operation of `verb` (one of [`CACHE_VERBS`]).
    pub fn count_cache(&mut self, verb: &str) {
        if let Some(index) = CACHE_VERBS.iter().position(|v| *v == verb) {
            self.cache_operations[index] += 1;
        }
    }

    pub fn count_limit(&mut self, limit: LimitKind) {
        let index = LimitKind::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        self.limits_exceeded[index] += 1;
    }

    pub fn add(&mut self, other: &TenantCounters) {
        self.cpu += other.cpu;
        self.wall += other.wall;
        for (a, b) in self.requests.iter_mut().zip(other.requests) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (a, b) in self.limits_exceeded.iter_mut().zip(other.limits_exceeded) {
            *a += b;
        }
        self.isolates_created += other.isolates_created;
        self.subrequests += other.subrequests;
        self.subrequest_bytes_out += other.subrequest_bytes_out;
        self.subrequest_bytes_in += other.subrequest_bytes_in;
        self.scheduled += other.scheduled;
        self.scheduled_failed += other.scheduled_failed;
        self.ws_messages_in += other.ws_messages_in;
        self.ws_messages_out += other.ws_messages_out;
        for (a, b) in self.kv_operations.iter_mut().zip(other.kv_operations) {
            *a += b;
        }
        self.kv_errors += other.kv_errors;
        self.kv_bytes_read += other.kv_bytes_read;
        self.kv_bytes_written += other.kv_bytes_written;
        for (a, b) in self.cache_operations.iter_mut().zip(other.cache_operations) {
            *a += b;
        }
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.cache_errors += other.cache_errors;
    }
}

/// One tenant as one core sees it.
#[derive(Clone, Debug, Default)]
pub struct TenantStats {
    pub name: Arc<str>,
    pub counters: TenantCounters,
    /// Isolates of this tenant alive on the core (old versions still finishing included).
    pub isolates: u32,
    /// V8 heap in use plus ArrayBuffer memory of those isolates.
    pub heap_bytes: u64,
    pub in_flight: u32,
}

/// One core's report.
#[derive(Clone, Debug, Default)]
pub struct CoreStats {
    pub core: usize,
    pub tenants: Vec<TenantStats>,
    /// Isolates alive (tenants' and pooled).
    pub isolates: usize,
    pub pool: usize,
    pub isolates_created: u64,
    pub isolates_evicted: u64,
    /// Isolate groups alive, each a pointer-compression cage of its own (runtime's `cage`;
    /// always 0 in a build without pointer compression).
    pub isolate_groups: usize,
    pub unrouted: u64,
    pub open_conns: usize,
    /// Connections closed (or reset) at accept: a full table, a client at its cap, the
    /// process at its cap.
    pub conns_refused: RefusedConns,
    /// TLS on the HTTPS listener.
    pub tls: TlsCounters,
}

/// What a core's HTTPS listener saw (netstack's server counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsCounters {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Connections closed because their session failed (a bad ClientHello, no certificate for
    /// the name, no common protocol, a broken record).
    pub errors: u64,
    /// Connections closed because their handshake did not finish in time.
    pub handshake_timeouts: u64,
}

/// Connections a core's transport closed at accept, by reason (netstack's admission counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusedConns {
    /// The transport's own table was full.
    pub table_full: u64,
    /// The client was at its per-client cap.
    pub per_client: u64,
    /// The process was at its total cap.
    pub total: u64,
}
