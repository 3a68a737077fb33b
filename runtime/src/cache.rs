//! A core's isolates: one per tenant version it has served, created on first use (from a small
//! pool of isolates made ahead of need), evicted least-recently-used beyond the core's budget.
//!
//! Eviction only ever takes an isolate with no request in flight. An evicted tenant is
//! re-created transparently on its next request. Budgets are per core: a count of isolates and a
//! sum of their memory (V8 heap in use plus ArrayBuffers), sampled when an isolate is created and
//! every [`SAMPLE_EVERY_REQUESTS`] requests it serves.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use crate::isolate::Isolate;
use crate::tenant::Tenant;
use crate::watchdog::CoreWatch;
use crate::worker::{LoadError, Worker};

/// How often (in requests served) an isolate's memory is sampled for the byte budget.
pub const SAMPLE_EVERY_REQUESTS: u64 = 64;

/// A core's isolate budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsolateBudget {
    /// Live tenant isolates on the core.
    pub count_max: usize,
    /// Their memory, summed.
    pub memory_bytes_max: usize,
    /// Isolates made ahead of need.
    pub pool: usize,
    /// Heap limit of pooled isolates: tenants with another heap limit get a fresh isolate.
    pub pool_heap_bytes: usize,
    /// CPU a tenant's script may use while it loads (its top level, imports, Wasm compilation),
    /// apart from the per-request limit: Workers' 400 ms, more under emulation.
    pub startup_cpu: std::time::Duration,
}

impl Default for IsolateBudget {
    fn default() -> IsolateBudget {
        IsolateBudget {
            count_max: 1000,
            memory_bytes_max: 2048 << 20,
            pool: 4,
            pool_heap_bytes: 128 << 20,
            startup_cpu: crate::worker::STARTUP_CPU_DEFAULT,
        }
    }
}

/// One tenant version's isolate on this core.
#[derive(Debug)]
pub struct Slot {
    pub tenant: Arc<Tenant>,
    pub worker: Worker,
    /// Requests dispatched to it and not yet finished.
    pub in_flight: u32,
    /// Served since created (for sampling).
    pub served: u64,
    pub memory_bytes: usize,
    last_used: u64,
}

#[derive(Debug)]
pub struct IsolateCache {
    /// By tenant version (versions are unique in the process).
    slots: HashMap<u64, Slot>,
    pool: Vec<Isolate>,
    budget: IsolateBudget,
    watch: Option<Arc<CoreWatch>>,
    tick: u64,
    memory_bytes: usize,
    pub created: u64,
    pub evicted: u64,
    /// Evictions since the allocator last returned memory to the kernel.
    pub evicted_since_release: u64,
    /// CPU time of the last load (start-up) attempt made by `get_or_load`, to bill the tenant.
    pub last_load_cpu: Duration,
    /// Tenant versions whose script failed to load, refused until their backoff expires.
    backoff: HashMap<u64, Backoff>,
    name: String,
}

/// A version whose start-up failed: refused fast until `until`, each failure doubling the wait.
#[derive(Debug)]
struct Backoff {
    until: std::time::Instant,
    wait: Duration,
    reason: String,
}

/// The first wait after a failed start-up, and the longest.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Versions remembered as failing, at most (the oldest are forgotten first).
const BACKOFF_ENTRIES_MAX: usize = 10_000;

impl IsolateCache {
    pub fn new(budget: IsolateBudget, watch: Option<Arc<CoreWatch>>, name: &str) -> IsolateCache {
        IsolateCache {
            slots: HashMap::default(),
            pool: Vec::new(),
            budget,
            watch,
            tick: 0,
            memory_bytes: 0,
            created: 0,
            evicted: 0,
            evicted_since_release: 0,
            last_load_cpu: Duration::ZERO,
            backoff: HashMap::default(),
            name: name.to_string(),
        }
    }

    /// The isolate serving `tenant`'s version, created (and the budget enforced) if needed.
    pub fn get_or_load(&mut self, tenant: &Arc<Tenant>) -> Result<&mut Slot, LoadError> {
        self.tick += 1;
        let tick = self.tick;
        self.last_load_cpu = Duration::ZERO;
        if !self.slots.contains_key(&tenant.version) {
            if let Some(backoff) = self.backoff.get(&tenant.version)
                && std::time::Instant::now() < backoff.until
            {
                return Err(LoadError::Backoff {
                    file: tenant.spec.path.display().to_string(),
                    reason: backoff.reason.clone(),
                });
            }
            let started = std::time::Instant::now();
            let pooled = self.pool.len();
            let mut isolate = self.take_isolate(tenant.limits.heap_bytes)?;
            let made = started.elapsed();
            // The top level runs under the watchdog with the start-up budget, billed to the tenant.
            if let Some(watch) = &self.watch {
                isolate.set_watch(watch.clone());
            }
            let cpu_before = kernel_shim::cpu::thread_cpu_time();
            let loaded = Worker::load(isolate, &tenant.spec, self.budget.startup_cpu);
            self.last_load_cpu = kernel_shim::cpu::thread_cpu_time().saturating_sub(cpu_before);
            let worker = match loaded {
                Ok(worker) => {
                    self.backoff.remove(&tenant.version);
                    worker
                }
                Err(error) => {
                    self.note_failure(tenant.version, &error);
                    return Err(error);
                }
            };
            tracing::debug!(
                tenant = &*tenant.name,
                from_pool = self.pool.len() < pooled,
                isolate_us = made.as_micros() as u64,
                load_us = (started.elapsed() - made).as_micros() as u64,
                "isolate created"
            );
            self.insert(tenant.clone(), worker);
        }
        let slot = self.slots.get_mut(&tenant.version).expect("inserted above");
        slot.last_used = tick;
        Ok(slot)
    }

    /// Builds a tenant from `settings` in the isolate that will serve it: its script is compiled
    /// (imports read from disk, if `settings` says so) and its top level run there, under the
    /// start-up budget and the watchdog, and the isolate is kept for the tenant. One isolate where
    /// [`Tenant::build_checked`] and then [`IsolateCache::get_or_load`] make two; for a core's
    /// start-up, before it confines itself (it may read the disk).
    pub fn build_and_load(&mut self, settings: isobar_tenancy::TenantSettings) -> Result<Arc<Tenant>, LoadError> {
        let heap_bytes = settings.limits.heap_bytes;
        let mut loaded = None;
        let tenant = Tenant::build_with(settings, |spec| {
            let mut isolate = self.take_isolate(heap_bytes)?;
            if let Some(watch) = &self.watch {
                isolate.set_watch(watch.clone());
            }
            let worker = Worker::load(isolate, spec, self.budget.startup_cpu)?;
            let bundle = (worker.format(), worker.modules().clone());
            loaded = Some(worker);
            Ok(bundle)
        })?;
        let tenant = Arc::new(tenant);
        self.tick += 1;
        self.insert(tenant.clone(), loaded.expect("the bundle closure ran and loaded the worker"));
        Ok(tenant)
    }

    /// Keeps `worker` as `tenant`'s isolate, counts it, and evicts others over the budget.
    fn insert(&mut self, tenant: Arc<Tenant>, mut worker: Worker) {
        let (used, _, buffers) = worker.memory_bytes();
        let version = tenant.version;
        let slot = Slot { tenant, worker, in_flight: 0, served: 0, memory_bytes: used + buffers, last_used: self.tick };
        self.memory_bytes += slot.memory_bytes;
        self.created += 1;
        self.slots.insert(version, slot);
        self.evict_over_budget(version);
    }

    fn note_failure(&mut self, version: u64, error: &LoadError) {
        let wait = self.backoff.get(&version).map_or(BACKOFF_FIRST, |b| (b.wait * 2).min(BACKOFF_MAX));
        if self.backoff.len() >= BACKOFF_ENTRIES_MAX
            && let Some(oldest) = self.backoff.iter().min_by_key(|(_, b)| b.until).map(|(v, _)| *v)
        {
            self.backoff.remove(&oldest);
        }
        let until = std::time::Instant::now() + wait;
        self.backoff.insert(version, Backoff { until, wait, reason: error.to_string() });
    }

    fn take_isolate(&mut self, heap_bytes: usize) -> Result<Isolate, LoadError> {
        if heap_bytes == self.budget.pool_heap_bytes
            && let Some(isolate) = self.pool.pop()
        {
            return Ok(isolate);
        }
        Isolate::new(&self.name, heap_bytes).map_err(|message| LoadError::Bootstrap { file: "isolate".into(), message })
    }

    /// The tenant version an isolate serves.
    pub fn tenant(&self, version: u64) -> Option<Arc<Tenant>> {
        self.slots.get(&version).map(|s| s.tenant.clone())
    }

    pub fn slot(&mut self, version: u64) -> Option<&mut Slot> {
        self.slots.get_mut(&version)
    }

    /// Removes an isolate (condemned, or a retired version that finished its requests).
    pub fn remove(&mut self, version: u64) -> Option<Slot> {
        let slot = self.slots.remove(&version)?;
        self.memory_bytes = self.memory_bytes.saturating_sub(slot.memory_bytes);
        Some(slot)
    }

    /// Re-samples one isolate's memory after it served a request (every Nth request).
    pub fn after_request(&mut self, version: u64) {
        let Some(slot) = self.slots.get_mut(&version) else { return };
        slot.served += 1;
        if slot.served.is_multiple_of(SAMPLE_EVERY_REQUESTS) {
            let (used, _, buffers) = slot.worker.memory_bytes();
            self.memory_bytes = self.memory_bytes.saturating_sub(slot.memory_bytes) + used + buffers;
            slot.memory_bytes = used + buffers;
        }
    }

    /// Evicts least-recently-used idle isolates (never `keep`) until the core is within budget.
    fn evict_over_budget(&mut self, keep: u64) {
        while self.slots.len() > self.budget.count_max || self.memory_bytes > self.budget.memory_bytes_max {
            let victim = self
                .slots
                .iter()
                .filter(|(version, slot)| **version != keep && slot.in_flight == 0)
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(version, _)| *version);
            let Some(victim) = victim else { break };
            self.remove(victim);
            self.evicted += 1;
            self.evicted_since_release += 1;
        }
    }

    /// Drops idle isolates of versions that are no longer deployed; returns how many remain
    /// (retired but still finishing requests).
    pub fn retire(&mut self, is_current: impl Fn(&Tenant) -> bool) -> usize {
        let stale: Vec<u64> =
            self.slots.iter().filter(|(_, s)| !is_current(&s.tenant)).map(|(version, _)| *version).collect();
        let mut remaining = 0;
        for version in stale {
            if self.slots.get(&version).is_some_and(|s| s.in_flight == 0) {
                self.remove(version);
            } else {
                remaining += 1;
            }
        }
        remaining
    }

    /// Makes one isolate for the pool if it is short; true if it did (call when idle).
    pub fn refill_pool(&mut self) -> bool {
        if self.pool.len() >= self.budget.pool {
            return false;
        }
        match Isolate::new(&self.name, self.budget.pool_heap_bytes) {
            Ok(isolate) => {
                self.pool.push(isolate);
                true
            }
            Err(error) => {
                tracing::error!("cannot create a pooled isolate: {error}");
                false
            }
        }
    }

    pub fn pool_is_short(&self) -> bool {
        self.pool.len() < self.budget.pool
    }

    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slots(&mut self) -> impl Iterator<Item = (&u64, &mut Slot)> {
        self.slots.iter_mut()
    }
}
