//! One core's scheduler: the thread that owns a core's io_uring ring, its share of the network
//! and its tenants' isolates, and runs them all in one loop.
//!
//! Each turn: wait on the ring until a completion or the next deadline (HTTP timeouts, JS
//! timers, wall-clock limits); route completions by key tag (network, mailbox); route each
//! complete request to its tenant by Host and path and hand it to that tenant's isolate; run
//! microtasks and due timers of the isolates that ran; write finished responses; enforce limits.
//! Nothing in the loop blocks except the ring wait, and nothing is shared with other cores except
//! the mailbox (commands from the control plane) and the watchdog's view of which isolate runs.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use kernel_shim::EventFd;
use kernel_shim::ring::{Completion, CompletionData, Op, Ring, RingConfig, key_tag, tagged_key};
use netstack::http1::{self, RequestId};
use netstack::transport::ConnId;
use netstack::{
    Forwarder, HttpServer, IncomingRequest, KernelNet, Link, LinkKind, NetLimits, ServerTls, SmolConfig, SmolNet,
    TAG_NET, TlsServerConfig,
};
// Keyed by request ids and tenant names only (Cargo.toml says why Fx).
use rustc_hash::FxHashMap as HashMap;

use crate::cache::{IsolateBudget, IsolateCache};
use crate::isolate::Condemned;
use crate::state::{Outcome, WireResponse};
use crate::stats::{CoreStats, LimitKind, TenantCounters, TenantStats};
use crate::tenant::{Deployment, Tenant};
use crate::watchdog::{CoreWatch, Watchdog};
use crate::worker::{LoadError, RequestParts};

mod caches;
mod io;
mod kv;
mod service;
mod websocket;

pub use kv::KvStore;

/// Completion-key tag of the mailbox's eventfd reads.
const TAG_MAILBOX: u8 = 0x02;

/// What the control plane can ask of a core.
#[derive(Debug)]
pub enum Command {
    /// Stop accepting, finish in-flight requests, then exit the loop.
    Drain,
    /// Serve this deployment from now on; acknowledge with the core's index once swapped in.
    Deploy { deployment: Arc<Deployment>, ack: Sender<usize> },
    /// Report counters and gauges.
    Stats { reply: Sender<CoreStats> },
    /// New certificates (and handshake timeout) for HTTPS connections accepted from now on;
    /// acknowledge with the core's index. A core serving no HTTPS ignores it (and acknowledges).
    Tls { config: Arc<TlsServerConfig>, handshake_timeout: Duration, ack: Sender<usize> },
    /// Run tenant `tenant`'s scheduled handler for a Cron Trigger firing (the control plane
    /// sends each firing to one core, so it runs once per process).
    Scheduled { tenant: String, cron: String, scheduled_time_ms: u64 },
}

/// The network a core serves on.
pub enum CoreNet {
    /// Kernel sockets: this core's SO_REUSEPORT listener, and its HTTPS one if TLS is served.
    Kernel { listener: OwnedFd, tls_listener: Option<OwnedFd> },
    /// isobar's userspace stack on this core's TAP queue or AF_PACKET socket.
    Smol { fd: OwnedFd, kind: LinkKind, config: Box<SmolConfig>, forwarder: Forwarder },
}

impl std::fmt::Debug for CoreNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreNet::Kernel { .. } => f.write_str("CoreNet::Kernel"),
            CoreNet::Smol { kind, .. } => write!(f, "CoreNet::Smol({kind:?})"),
        }
    }
}

/// Everything a core needs, built on the main thread and moved to the core's thread.
#[derive(Debug)]
pub struct CoreConfig {
    /// The core's index among isobar's cores (0..n), shown in `x-isobar-core`.
    pub index: usize,
    /// The CPU the thread is pinned to.
    pub cpu: usize,
    pub net: CoreNet,
    pub deployment: Arc<Deployment>,
    /// A tenant this core builds and loads as it starts, in place of `deployment` (see
    /// [`crate::server::StartDeployment::FirstCore`]).
    pub first: Option<isobar_tenancy::TenantSettings>,
    pub budget: IsolateBudget,
    pub http: http1::Limits,
    pub net_limits: NetLimits,
    pub ring: RingConfig,
    /// The per-client and total connection caps, shared by every core.
    pub admission: Option<Arc<netstack::ConnAdmission>>,
    /// TLS on the HTTPS port (whose listener is in `net`), if served.
    pub tls: Option<ServerTls>,
    /// Subrequests: DNS, TLS, egress policy, limits.
    pub outbound: crate::outbound::OutboundConfig,
    /// `/__scheduled?cron=...` runs the scheduled handler (`isobar run --test-scheduled`).
    pub test_scheduled: bool,
    /// The host's KV store (opened once by boot), if tenants have KV bindings.
    pub kv: Option<KvStore>,
    /// The host's Cache API store (opened once by boot); without one, `caches` calls fail.
    pub caches: Option<Arc<isobar_state::cache::CacheStore>>,
}

/// Why a core could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("core {index}: cannot pin the thread to CPU {cpu}: {error}")]
    Pin { index: usize, cpu: usize, error: std::io::Error },
    #[error("core {index}: {error}")]
    Ring { index: usize, error: kernel_shim::ring::RingError },
    #[error("core {index}: cannot read the thread's CPU clock: {error}")]
    Clock { index: usize, error: std::io::Error },
    #[error("core {index}: the userspace network stack: {error}")]
    Smol { index: usize, error: netstack::SmolConfigError },
    #[error("core {index}: cannot make the KV store's eventfd: {error}")]
    Kv { index: usize, error: std::io::Error },
    #[error("core {index}: cannot make the cache store's eventfd: {error}")]
    Caches { index: usize, error: std::io::Error },
    /// The tenant the core was to build as it started: its script failed to load.
    #[error("{0}")]
    Tenant(LoadError),
    #[error("{0}")]
    Deploy(crate::tenant::DeployError),
}

/// Who gets a pending request's response.
#[derive(Debug)]
enum ReplyTo {
    /// A client, on a connection.
    Client { conn: ConnId, request: RequestId },
    /// Another tenant's isolate on this core, through a service binding (see `service`).
    Service(service::Caller),
}

/// A request handed to an isolate and not yet answered.
#[derive(Debug)]
struct Pending {
    to: ReplyTo,
    /// How many service-binding calls deep this request is (0: a client's).
    depth: u8,
    tenant: Arc<Tenant>,
    started: Instant,
    wall_deadline: Instant,
    /// CPU time of the entries made on this request's behalf so far.
    cpu: Duration,
    /// The response's body is being streamed (its head is sent).
    stream: Option<io::Streaming>,
    /// The response status and the body bytes sent so far (for the counters).
    status: u16,
    bytes_out: u64,
    /// The request asked for a WebSocket: its `Sec-WebSocket-Key`.
    upgrade: Option<Box<[u8]>>,
}

/// A request answered whose work goes on after its response (`ctx.waitUntil()`): bounded by
/// the tenant's CPU limit (the request's own CPU, before and after the response, together) and
/// by [`WAIT_UNTIL_WALL`] of wall time after the response.
#[derive(Debug)]
struct Background {
    tenant: Arc<Tenant>,
    wall_deadline: Instant,
    cpu: Duration,
}

/// How long `waitUntil()` work may go on after the response (Workers allow 30 s).
pub const WAIT_UNTIL_WALL: Duration = Duration::from_secs(30);

/// Formats the `date` header once per second.
#[derive(Debug)]
struct DateHeader {
    second: u64,
    value: Vec<u8>,
}

impl DateHeader {
    fn new() -> DateHeader {
        DateHeader { second: u64::MAX, value: Vec::new() }
    }

    fn get(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if second != self.second {
            self.second = second;
            self.value = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.value
    }
}

/// How many requests one turn of the loop hands to isolates before it looks at the ring again,
/// so one busy connection cannot starve the others.
const TURN_BATCH_MAX: usize = 64;

/// How often, at most, evicted isolates' memory is handed back to the kernel.
const RELEASE_MEMORY_EVERY: Duration = Duration::from_secs(1);

/// How long after its start a core that has served no request yet waits before its first idle
/// work. A pooled isolate takes ~2-3 ms that a request arriving meanwhile waits out, and a start's
/// first request is likely close: on a cold start of `serve` it waited behind the pool's first
/// isolates (~10 against ~16 ms launch -> first 200 in BENCHMARKS.md). After the first request
/// the pool refills as soon as the core is idle, as before: a timer per turn to hold it back
/// longer cost more than it saved.
const IDLE_WORK_AFTER_START: Duration = Duration::from_millis(100);

pub struct Core {
    index: usize,
    ring: Ring,
    http: HttpServer<Link>,
    deployment: Arc<Deployment>,
    cache: IsolateCache,
    mailbox: Receiver<Command>,
    wake: Arc<EventFd>,
    /// Kept alive for the watchdog, which holds only a weak reference.
    _watch: Arc<CoreWatch>,
    pending: HashMap<u64, Pending>,
    /// The pending requests of each isolate, by tenant version.
    pending_of: HashMap<u64, BTreeSet<u64>>,
    /// Requests answered whose `waitUntil()` work goes on, and their ids by tenant version.
    background: HashMap<u64, Background>,
    background_of: HashMap<u64, BTreeSet<u64>>,
    /// Wall-clock deadlines of pending and background requests.
    wall_deadlines: BTreeSet<(Instant, u64)>,
    /// Next JS timer of each isolate that has one, by (deadline, tenant version).
    timers: BTreeSet<(Instant, u64)>,
    timer_of: HashMap<u64, Instant>,
    counters: HashMap<Arc<str>, TenantCounters>,
    in_flight: HashMap<Arc<str>, u32>,
    unrouted: u64,
    next_request_id: u64,
    draining: bool,
    core_header: Vec<u8>,
    date: DateHeader,
    incoming: Vec<IncomingRequest>,
    outcomes: Vec<Outcome>,
    completions: Vec<Completion>,
    /// Isolates that ran JS this turn, by version.
    touched: BTreeSet<u64>,
    last_release: Instant,
    /// When idle work may begin: [`IDLE_WORK_AFTER_START`] after the start, or at the first
    /// request if that comes sooner.
    idle_work_from: Instant,
    /// Cron firings running, by id: the `/__scheduled` request waiting for it, if any.
    scheduled_runs: HashMap<u64, Option<(ConnId, RequestId)>>,
    /// `isobar run --test-scheduled`: `/__scheduled?cron=...` fires the scheduled handler.
    test_scheduled: bool,
    /// Subrequests and streamed bodies (see `io`).
    io: io::CoreIo,
    /// KV operations on the host's store (see `kv`).
    kv: Option<kv::CoreKv>,
    /// Cache API calls on the host's cache store (see `caches`).
    caches: Option<caches::CoreCaches>,
    /// WebSockets bound to connections (see `websocket`).
    sockets: websocket::CoreSockets,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("index", &self.index).field("pending", &self.pending.len()).finish()
    }
}

impl Core {
    /// Sets up a core on the calling thread (which it pins): ring, transport, isolate cache.
    pub fn new(
        config: CoreConfig,
        mailbox: Receiver<Command>,
        wake: Arc<EventFd>,
        watchdog: &Watchdog,
    ) -> Result<Core, CoreError> {
        let index = config.index;
        let first = config.first;
        kernel_shim::cpu::pin_current_thread(config.cpu).map_err(|error| CoreError::Pin {
            index,
            cpu: config.cpu,
            error,
        })?;
        let watch = Arc::new(CoreWatch::for_current_thread().map_err(|error| CoreError::Clock { index, error })?);
        watchdog.watch(&watch);
        let mut ring = Ring::new(config.ring).map_err(|error| CoreError::Ring { index, error })?;
        let link = match config.net {
            CoreNet::Kernel { listener, tls_listener } => {
                let mut net = KernelNet::new(config.net_limits);
                net.listen(&mut ring, listener);
                if let Some(tls_listener) = tls_listener {
                    net.listen(&mut ring, tls_listener);
                }
                Link::Kernel(net)
            }
            CoreNet::Smol { fd, kind, config: smol, forwarder } => {
                let mut net =
                    SmolNet::new(fd, kind, *smol, forwarder).map_err(|error| CoreError::Smol { index, error })?;
                net.start(&mut ring, Instant::now());
                Link::Smol(Box::new(net))
            }
        };
        let mut link = link;
        if let Some(admission) = config.admission {
            link.set_admission(admission);
        }
        let kv = match config.kv {
            Some(store) => Some(kv::CoreKv::new(store).map_err(|error| CoreError::Kv { index, error })?),
            None => None,
        };
        let caches = match config.caches {
            Some(store) => Some(caches::CoreCaches::new(store).map_err(|error| CoreError::Caches { index, error })?),
            None => None,
        };
        let mut http = HttpServer::new(link, config.http);
        http.set_tls(config.tls);
        let cache = IsolateCache::new(config.budget, Some(watch.clone()), &format!("core-{index}"));
        let mut core = Core {
            index,
            ring,
            http,
            deployment: config.deployment,
            cache,
            mailbox,
            wake,
            _watch: watch,
            pending: HashMap::default(),
            pending_of: HashMap::default(),
            background: HashMap::default(),
            background_of: HashMap::default(),
            wall_deadlines: BTreeSet::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::default(),
            counters: HashMap::default(),
            in_flight: HashMap::default(),
            unrouted: 0,
            next_request_id: 1,
            draining: false,
            core_header: index.to_string().into_bytes(),
            date: DateHeader::new(),
            incoming: Vec::new(),
            outcomes: Vec::new(),
            completions: Vec::new(),
            touched: BTreeSet::new(),
            last_release: Instant::now(),
            idle_work_from: Instant::now(),
            scheduled_runs: HashMap::default(),
            test_scheduled: config.test_scheduled,
            io: io::CoreIo::new(crate::outbound::Outbound::new(config.outbound)),
            kv,
            caches,
            sockets: websocket::CoreSockets::default(),
        };
        core.arm_mailbox(Vec::with_capacity(EventFd::READ_BYTES));
        core.arm_kv(Vec::with_capacity(EventFd::READ_BYTES));
        core.arm_caches(Vec::with_capacity(EventFd::READ_BYTES));
        if let Some(settings) = first {
            let tenant = core.cache.build_and_load(settings).map_err(CoreError::Tenant)?;
            core.deployment = Arc::new(Deployment::new([tenant]).map_err(CoreError::Deploy)?);
        }
        Ok(core)
    }

    /// The deployment the core serves (the one it built, after a start with a first tenant).
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    fn arm_mailbox(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        buf.reserve(EventFd::READ_BYTES);
        let fd = self.wake.fd();
        self.ring.submit(Op::Read { fd, buf }, tagged_key(TAG_MAILBOX, 0));
    }

    /// Runs the loop until a drain completes.
    pub fn run(mut self) -> Result<(), kernel_shim::ring::RingError> {
        let mut idle_work_left = self.has_idle_work();
        self.idle_work_from = Instant::now() + IDLE_WORK_AFTER_START;
        loop {
            let now = Instant::now();
            let timeout = if !self.incoming.is_empty()
                || !self.touched.is_empty()
                || idle_work_left && now >= self.idle_work_from
            {
                // Work left over from a full batch, isolates with settled operations whose
                // continuations have not run, or idle-time work: look without sleeping.
                Some(Duration::ZERO)
            } else {
                // Idle work held back after the start: a timer for when it may begin.
                let idle_work = idle_work_left.then_some(self.idle_work_from);
                self.next_deadline().into_iter().chain(idle_work).min().map(|at| at.saturating_duration_since(now))
            };
            self.ring.wait(timeout, &mut self.completions)?;
            let now = Instant::now();
            let mut completions = std::mem::take(&mut self.completions);
            for completion in completions.drain(..) {
                match key_tag(completion.key) {
                    TAG_NET => {
                        let (outbound, kv) = (&mut self.io.outbound, &mut self.kv);
                        self.http.on_completion_routed(&mut self.ring, completion, now, &mut self.incoming, &mut |e| {
                            kv::route_event(outbound, kv, e)
                        });
                    }
                    TAG_MAILBOX => self.on_mailbox(completion, now),
                    kv::TAG_KV => self.on_kv_wake(completion),
                    caches::TAG_CACHES => self.on_caches_wake(completion),
                    crate::outbound::dns::TAG_DNS => {
                        self.io.outbound.on_dns_completion(self.http.transport_mut(), &mut self.ring, completion, now)
                    }
                    tag => tracing::error!(core = self.index, tag, "completion with an unknown key tag"),
                }
            }
            self.completions = completions;
            {
                let (outbound, kv) = (&mut self.io.outbound, &mut self.kv);
                self.http
                    .poll_routed(&mut self.ring, now, &mut self.incoming, &mut |e| kv::route_event(outbound, kv, e));
            }
            self.io_turn(now);
            self.serve(now);
            // A transport that holds what the handlers wrote (the userspace stack sends on its
            // poll) sends it in this turn, not after another trip through the ring.
            if self.http.poll_at().is_some_and(|at| at <= now) {
                self.http.poll(&mut self.ring, now, &mut self.incoming);
            }
            self.io_turn(now);
            if self.draining && self.http.is_drained() && self.background.is_empty() {
                tracing::debug!(core = self.index, "drained");
                return Ok(());
            }
            // Idle: no request waits and none is in flight (and the start's first request came,
            // or IDLE_WORK_AFTER_START passed). Do one piece of idle work, then look at the ring
            // again before the next, so a request that arrives meanwhile waits for at most one
            // piece (making one isolate, ~2 ms).
            let idle = self.incoming.is_empty() && self.pending.is_empty() && self.background.is_empty();
            if !idle {
                self.idle_work_from = self.idle_work_from.min(now);
            } else if now >= self.idle_work_from {
                self.idle_work(now);
            }
            idle_work_left = idle && self.has_idle_work();
        }
    }

    fn has_idle_work(&self) -> bool {
        !self.draining && self.cache.pool_is_short()
    }

    /// Work done only when nothing else is waiting: one pooled isolate, and handing evicted
    /// isolates' memory back to the kernel (at most once a second).
    fn idle_work(&mut self, now: Instant) {
        if self.draining || !self.cache.pool_is_short() && self.cache.evicted_since_release == 0 {
            return;
        }
        // Responses written this turn leave before the (slow) idle work starts.
        if let Err(error) = self.ring.flush() {
            tracing::error!(core = self.index, "cannot submit to the ring: {error}");
        }
        self.cache.refill_pool();
        if self.cache.evicted_since_release > 0 && now.duration_since(self.last_release) >= RELEASE_MEMORY_EVERY {
            kernel_shim::memory::release_free_memory();
            self.cache.evicted_since_release = 0;
            self.last_release = now;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.http.poll_at(),
            self.timers.first().map(|(at, _)| *at),
            self.wall_deadlines.first().map(|(at, _)| *at),
            self.io.outbound.poll_at(),
            self.kv.as_ref().and_then(kv::CoreKv::poll_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_mailbox(&mut self, completion: Completion, now: Instant) {
        let buf = match completion.data {
            CompletionData::Buffer(buf) => buf,
            _ => Vec::new(),
        };
        while let Ok(command) = self.mailbox.try_recv() {
            match command {
                Command::Drain => {
                    if !self.draining {
                        tracing::debug!(core = self.index, in_flight = self.pending.len(), "draining");
                        self.draining = true;
                        self.http.drain(&mut self.ring, now, &mut self.incoming);
                        self.websockets_drain(now);
                    }
                }
                Command::Deploy { deployment, ack } => {
                    self.deployment = deployment;
                    let current = self.deployment.clone();
                    self.cache.retire(|tenant| {
                        current.tenants.get(&tenant.name).is_some_and(|t| t.version == tenant.version)
                    });
                    self.counters.retain(|name, _| current.tenants.contains_key(name));
                    let _ = ack.send(self.index);
                }
                Command::Stats { reply } => {
                    let _ = reply.send(self.stats());
                }
                Command::Scheduled { tenant, cron, scheduled_time_ms } => {
                    match self.deployment.tenants.get(tenant.as_str()).cloned() {
                        Some(tenant) => self.run_scheduled(tenant, &cron, scheduled_time_ms, None, now),
                        None => {
                            tracing::warn!(core = self.index, "a cron firing for {tenant:?}, which is not deployed")
                        }
                    }
                }
                Command::Tls { config, handshake_timeout, ack } => {
                    if let Some(current) = self.http.tls() {
                        let tls = ServerTls { config, handshake_timeout, ..current.clone() };
                        self.http.set_tls(Some(tls));
                    }
                    let _ = ack.send(self.index);
                }
            }
        }
        self.arm_mailbox(buf);
    }

    /// Hands requests to isolates, runs JS, writes what finished, enforces limits.
    fn serve(&mut self, now: Instant) {
        for _round in 0..4 {
            let batch = self.incoming.len().min(TURN_BATCH_MAX);
            let requests: Vec<IncomingRequest> = self.incoming.drain(..batch).collect();
            for incoming in requests {
                self.dispatch(incoming, now);
            }
            self.fire_due_timers(now);
            self.run_touched(now);
            self.expire_wall_deadlines(now);
            // Responding can release pipelined requests, and settling operations can resume
            // isolates; take them in this turn, within bounds.
            if self.incoming.is_empty() && self.touched.is_empty() {
                break;
            }
        }
    }

    fn dispatch(&mut self, incoming: IncomingRequest, now: Instant) {
        let started = Instant::now();
        let IncomingRequest { conn, request, tls, .. } = incoming;
        let host = request.header("host").map(String::from_utf8_lossy);
        let scheme = if tls { "https" } else { "http" };
        let Some(url) = request_url(scheme, host.as_deref(), request.target()) else {
            let response = plain_response(400, "bad request: the URL cannot be parsed\n");
            self.http.respond(&mut self.ring, conn, request.id(), response, now, &mut self.incoming);
            return;
        };
        let path = path_of(request.target());
        let Some(tenant) = self.deployment.route(host.as_deref().unwrap_or(""), path).cloned() else {
            self.unrouted += 1;
            let text = format!("no worker is routed for host {:?} and path {path:?}\n", host.as_deref().unwrap_or(""));
            self.http.respond(&mut self.ring, conn, request.id(), plain_response(404, &text), now, &mut self.incoming);
            return;
        };
        if self.test_scheduled && path.split('?').next() == Some("/__scheduled") {
            let cron = scheduled_cron_param(request.target());
            let now_ms = crate::server::unix_now_ms();
            self.run_scheduled(tenant, &cron, now_ms, Some((conn, request.id())), now);
            return;
        }
        let counters = self.counters.entry(tenant.name.clone()).or_default();
        counters.bytes_in += request.body().len() as u64;
        let in_flight = self.in_flight.entry(tenant.name.clone()).or_default();
        if *in_flight >= tenant.limits.concurrency {
            counters.count_limit(LimitKind::Concurrency);
            counters.count_status(503);
            let text =
                format!("too many requests in flight for this worker (limit {} per core)\n", tenant.limits.concurrency);
            let response = plain_response(503, &text).with_header("retry-after", "1");
            self.http.respond(&mut self.ring, conn, request.id(), response, now, &mut self.incoming);
            return;
        }
        let created_before = self.cache.created;
        let loaded = self.cache.get_or_load(&tenant).map(|_| ());
        // Start-up CPU is the tenant's, whether the script loaded or not.
        let load_cpu = self.cache.last_load_cpu;
        self.counters.entry(tenant.name.clone()).or_default().cpu += load_cpu;
        let slot = match loaded.map(|()| self.cache.slot(tenant.version)) {
            Ok(Some(slot)) => slot,
            Ok(None) => return,
            Err(error) => {
                let (status, text) = match &error {
                    LoadError::Limit { .. } | LoadError::Backoff { .. } => {
                        (503, "the worker failed to start within its limits\n")
                    }
                    _ => (500, "the worker failed to load\n"),
                };
                if !matches!(error, LoadError::Backoff { .. }) {
                    tracing::error!(target: "worker", "[{}] cannot start the worker: {error}", tenant.name);
                }
                let counters = self.counters.entry(tenant.name.clone()).or_default();
                counters.count_status(status);
                if matches!(error, LoadError::Limit { .. }) {
                    counters.count_limit(LimitKind::Cpu);
                }
                let response = plain_response(status, text).with_header("retry-after", "1");
                self.http.respond(&mut self.ring, conn, request.id(), response, now, &mut self.incoming);
                return;
            }
        };
        let upgrade = websocket::upgrade_key(&request);
        // The names lowercased in one buffer, not a String each.
        let mut lowered: String = request.headers().map(|(name, _)| name).collect();
        lowered.make_ascii_lowercase();
        let mut at = 0;
        let headers: Vec<(&str, &[u8])> = request
            .headers()
            .map(|(name, value)| {
                at += name.len();
                (&lowered[at - name.len()..at], value)
            })
            .collect();
        let id = self.next_request_id;
        self.next_request_id += 1;
        slot.in_flight += 1;
        *self.in_flight.entry(tenant.name.clone()).or_default() += 1;
        let parts = RequestParts { method: request.method(), url: &url, headers: &headers, body: request.body() };
        slot.worker.dispatch(id, &parts, now, tenant.limits.cpu, tenant.limits.subrequests);
        let cpu = slot.worker.take_last_entry_cpu();
        let version = tenant.version;
        let counters = self.counters.entry(tenant.name.clone()).or_default();
        counters.cpu += cpu;
        if self.cache.created > created_before {
            counters.isolates_created += 1;
        }
        let wall_deadline = now + tenant.limits.wall;
        self.wall_deadlines.insert((wall_deadline, id));
        self.pending.insert(
            id,
            Pending {
                to: ReplyTo::Client { conn, request: request.id() },
                depth: 0,
                tenant,
                started,
                wall_deadline,
                cpu,
                stream: None,
                status: 0,
                bytes_out: 0,
                upgrade,
            },
        );
        self.pending_of.entry(version).or_default().insert(id);
        self.touched.insert(version);
    }

    fn fire_due_timers(&mut self, now: Instant) {
        while let Some(&(at, version)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, version));
            self.timer_of.remove(&version);
            let budget = self.entry_budget(version);
            let Some(slot) = self.cache.slot(version) else { continue };
            let fired = slot.worker.fire_timers(now, budget);
            let cpu = slot.worker.take_last_entry_cpu();
            self.charge(version, &fired, cpu);
            self.touched.insert(version);
        }
    }

    /// Runs microtasks of every isolate that ran this turn, collects what finished, and applies
    /// what their runs revealed: condemned isolates, exceeded CPU budgets, hung requests.
    fn run_touched(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for version in touched {
            let budget = self.entry_budget(version);
            let Some(slot) = self.cache.slot(version) else { continue };
            // A script stopped during dispatch or a timer runs nothing more.
            if slot.worker.condemned().is_none() {
                slot.worker.run_microtasks(budget);
            }
            let cpu = slot.worker.take_last_entry_cpu();
            slot.worker.take_outcomes(&mut self.outcomes);
            slot.worker.take_outbox(&mut self.io.work);
            let mut ended = Vec::new();
            slot.worker.take_scheduled_ended(&mut ended);
            let tenant_name = slot.tenant.name.clone();
            for (id, failed) in ended {
                self.scheduled_done(&tenant_name, id, failed, now);
            }
            let Some(slot) = self.cache.slot(version) else { continue };
            let condemned = slot.worker.condemned();
            let ids = self.work_ids(version);
            self.charge(version, &ids, cpu);
            if let Some(condemned) = condemned {
                // Its requests get 503 first; what the terminated script left behind (a
                // "terminated" failure, a half-made response, queued I/O) is dropped.
                self.outcomes.clear();
                self.io.work.clear();
                self.condemn(version, condemned, now);
                continue;
            }
            let outcomes = std::mem::take(&mut self.outcomes);
            for outcome in outcomes {
                self.finish(version, outcome, now);
            }
            self.process_work(version, now);
            // Per-request CPU budgets, summed over entries (before and after the response).
            let over = self
                .pending_ids(version)
                .iter()
                .any(|id| self.pending.get(id).is_some_and(|p| p.cpu > p.tenant.limits.cpu));
            if over {
                self.condemn(version, Condemned::CpuLimit, now);
                continue;
            }
            self.cut_background_over_cpu(version);
            let Some(slot) = self.cache.slot(version) else { continue };
            let next_timer = slot.worker.next_timer();
            let has_work = slot.worker.has_pending_work();
            self.collect_finished(version);
            self.schedule_timer(version, next_timer);
            // An isolate touched again (operations settled just now) has continuations to run.
            if !has_work && !self.touched.contains(&version) {
                self.fail_hung(version, now);
            }
            self.retire_if_done(version);
        }
    }

    /// The ids of `version`'s pending requests.
    fn pending_ids(&self, version: u64) -> Vec<u64> {
        self.pending_of.get(&version).map(|ids| ids.iter().copied().collect()).unwrap_or_default()
    }

    /// The ids of `version`'s requests with work going on: pending ones and background ones.
    fn work_ids(&self, version: u64) -> Vec<u64> {
        let mut ids = self.pending_ids(version);
        ids.extend(self.background_of.get(&version).into_iter().flatten().copied());
        ids
    }

    /// CPU an entry into `version`'s isolate may use: the most any of its requests (pending or
    /// in the background) has left. With none, the full limit (nothing should run then: timers
    /// and waitUntil work belong to requests).
    fn entry_budget(&self, version: u64) -> Duration {
        let mut budget = None::<Duration>;
        for id in self.work_ids(version) {
            let left = match (self.pending.get(&id), self.background.get(&id)) {
                (Some(p), _) => p.tenant.limits.cpu.saturating_sub(p.cpu),
                (None, Some(b)) => b.tenant.limits.cpu.saturating_sub(b.cpu),
                (None, None) => continue,
            };
            budget = Some(budget.map_or(left, |b| b.max(left)));
        }
        budget.or_else(|| self.cache.tenant(version).map(|t| t.limits.cpu)).unwrap_or(Duration::ZERO)
    }

    /// Charges `cpu` to the tenant, and splits it among `ids` (the requests the entry worked for).
    fn charge(&mut self, version: u64, ids: &[u64], cpu: Duration) {
        if let Some(tenant) = self.cache.tenant(version) {
            self.counters.entry(tenant.name.clone()).or_default().cpu += cpu;
        }
        if ids.is_empty() {
            return;
        }
        let share = cpu / ids.len() as u32;
        for id in ids {
            if let Some(p) = self.pending.get_mut(id) {
                p.cpu += share;
            } else if let Some(b) = self.background.get_mut(id) {
                b.cpu += share;
            }
        }
    }

    /// Ends background work of `version` that used up its request's CPU limit.
    fn cut_background_over_cpu(&mut self, version: u64) {
        let over: Vec<u64> = self
            .background_of
            .get(&version)
            .into_iter()
            .flatten()
            .filter(|id| self.background.get(id).is_some_and(|b| b.cpu > b.tenant.limits.cpu))
            .copied()
            .collect();
        for id in over {
            if let Some(b) = self.background.get(&id) {
                tracing::warn!(target: "worker", "[{}] work after the response exceeded the CPU limit; cancelled", b.tenant.name);
                self.counters.entry(b.tenant.name.clone()).or_default().count_limit(LimitKind::Cpu);
            }
            if let Some(slot) = self.cache.slot(version) {
                slot.worker.end_request(id);
            }
        }
    }

    /// Drops the bookkeeping of `version`'s background requests whose work ended.
    fn collect_finished(&mut self, version: u64) {
        let mut finished = Vec::new();
        if let Some(slot) = self.cache.slot(version) {
            slot.worker.take_finished(&mut finished);
        }
        for id in finished {
            self.end_background(version, id);
        }
    }

    /// Runs one Cron Trigger firing of `tenant` on this core: its scheduled handler as background
    /// work of its own (the tenant's CPU limit, its wall limit), answered to `waiter` (a
    /// `/__scheduled` request) when it ends.
    fn run_scheduled(
        &mut self,
        tenant: Arc<Tenant>,
        cron: &str,
        scheduled_time_ms: u64,
        waiter: Option<(ConnId, RequestId)>,
        now: Instant,
    ) {
        let counters = self.counters.entry(tenant.name.clone()).or_default();
        counters.scheduled += 1;
        let loaded = self.cache.get_or_load(&tenant).map(|_| ());
        let load_cpu = self.cache.last_load_cpu;
        self.counters.entry(tenant.name.clone()).or_default().cpu += load_cpu;
        if let Err(error) = &loaded
            && !matches!(error, LoadError::Backoff { .. })
        {
            tracing::error!(target: "worker", "[{}] scheduled ({cron}): cannot start the worker: {error}", tenant.name);
        }
        let Some(slot) = loaded.ok().and_then(|()| self.cache.slot(tenant.version)) else {
            self.counters.entry(tenant.name.clone()).or_default().scheduled_failed += 1;
            if let Some((conn, request)) = waiter {
                let response = plain_response(500, "the worker failed to start\n");
                self.http.respond(&mut self.ring, conn, request, response, now, &mut self.incoming);
            }
            return;
        };
        let id = self.next_request_id;
        self.next_request_id += 1;
        slot.in_flight += 1;
        slot.worker.dispatch_scheduled(id, cron, scheduled_time_ms, now, tenant.limits.cpu, tenant.limits.subrequests);
        let cpu = slot.worker.take_last_entry_cpu();
        let version = tenant.version;
        self.counters.entry(tenant.name.clone()).or_default().cpu += cpu;
        let wall_deadline = now + tenant.limits.wall;
        self.wall_deadlines.insert((wall_deadline, id));
        self.background.insert(id, Background { tenant, wall_deadline, cpu });
        self.background_of.entry(version).or_default().insert(id);
        self.scheduled_runs.insert(id, waiter);
        self.touched.insert(version);
    }

    /// Firing `id` of `tenant` ended: counted, and answered to its `/__scheduled` request.
    fn scheduled_done(&mut self, tenant: &Arc<str>, id: u64, failed: bool, now: Instant) {
        let Some(waiter) = self.scheduled_runs.remove(&id) else { return };
        if failed {
            self.counters.entry(tenant.clone()).or_default().scheduled_failed += 1;
        }
        if let Some((conn, request)) = waiter {
            let response = if failed {
                plain_response(500, "the scheduled handler failed (see the log)\n")
            } else {
                plain_response(200, "Ran scheduled event\n")
            };
            self.http.respond(&mut self.ring, conn, request, response, now, &mut self.incoming);
        }
    }

    fn end_background(&mut self, version: u64, id: u64) {
        let Some(background) = self.background.remove(&id) else { return };
        // A firing still unreported here was cut (a limit, its isolate condemned): it failed.
        if self.scheduled_runs.contains_key(&id) {
            self.scheduled_done(&background.tenant.name, id, true, Instant::now());
        }
        self.request_ended(version, id);
        self.wall_deadlines.remove(&(background.wall_deadline, id));
        if let Some(ids) = self.background_of.get_mut(&version) {
            ids.remove(&id);
            if ids.is_empty() {
                self.background_of.remove(&version);
            }
        }
        if let Some(slot) = self.cache.slot(version) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
    }

    fn schedule_timer(&mut self, version: u64, next: Option<Instant>) {
        if let Some(old) = self.timer_of.remove(&version) {
            self.timers.remove(&(old, version));
        }
        if let Some(at) = next {
            self.timers.insert((at, version));
            self.timer_of.insert(version, at);
        }
    }

    /// The isolate hit a limit: its in-flight requests get 503 and it is discarded; the
    /// tenant's next request gets a fresh one.
    fn condemn(&mut self, version: u64, why: Condemned, now: Instant) {
        let (status_text, log, limit) = match why {
            Condemned::CpuLimit => (
                "the worker exceeded its CPU time limit\n",
                "exceeded its CPU time limit; isolate discarded",
                Some(LimitKind::Cpu),
            ),
            Condemned::HeapLimit => (
                "the worker exceeded its memory limit\n",
                "exceeded its memory limit; isolate discarded",
                Some(LimitKind::Heap),
            ),
            Condemned::Panic => (
                "the worker was stopped by an internal error\n",
                "was stopped by an internal error in isobar (logged above); isolate discarded",
                None,
            ),
        };
        // Its requests are failed first, while the isolate is still known.
        for id in self.pending_ids(version) {
            self.fail_request(id, 503, status_text, limit, now);
        }
        let background: Vec<u64> = self.background_of.get(&version).into_iter().flatten().copied().collect();
        for id in background {
            // Work after a response that the watchdog stopped at its budget used its CPU limit:
            // counted and logged as when the check after an entry cuts it.
            if why == Condemned::CpuLimit
                && let Some(b) = self.background.get(&id)
                && b.cpu >= b.tenant.limits.cpu
            {
                tracing::warn!(target: "worker", "[{}] work after the response exceeded the CPU limit; cancelled", b.tenant.name);
                self.counters.entry(b.tenant.name.clone()).or_default().count_limit(LimitKind::Cpu);
            }
            self.end_background(version, id);
        }
        if let Some(slot) = self.cache.remove(version) {
            tracing::warn!(target: "worker", "[{}] {log}", slot.tenant.name);
        }
        self.schedule_timer(version, None);
        self.isolate_gone(version);
    }

    /// Requests whose isolate has nothing left that could ever resume them (no timer; isobar
    /// has no other source of events yet).
    fn fail_hung(&mut self, version: u64, now: Instant) {
        for id in self.pending_ids(version) {
            // A response already streaming is driven from the core (a subrequest's body, or
            // chunk reads the core starts); its wall limit still holds.
            if self.pending.get(&id).is_some_and(|p| p.stream.is_some()) {
                continue;
            }
            // A WebSocket it opened can still bring events.
            if self.holds_socket(id) {
                continue;
            }
            if let Some(p) = self.pending.get(&id) {
                tracing::error!(
                    target: "worker",
                    "[{}] Error: the handler's promise will never resolve: it is waiting on nothing (the script will never generate a response)",
                    p.tenant.name
                );
            }
            self.fail_request(id, 500, "worker threw an exception\n", None, now);
        }
    }

    fn expire_wall_deadlines(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.wall_deadlines.first() {
            if at > now {
                break;
            }
            self.wall_deadlines.remove(&(at, id));
            if self.holds_socket(id)
                && !self.draining
                && let Some(b) = self.background.get_mut(&id)
            {
                // An open WebSocket keeps its request going: the limit starts again.
                b.wall_deadline = now + WAIT_UNTIL_WALL;
                self.wall_deadlines.insert((b.wall_deadline, id));
                continue;
            }
            if let Some(b) = self.background.get(&id) {
                let version = b.tenant.version;
                tracing::warn!(
                    target: "worker",
                    "[{}] waitUntil() work went on for more than {} s after the response; cancelled",
                    b.tenant.name,
                    WAIT_UNTIL_WALL.as_secs()
                );
                self.counters.entry(b.tenant.name.clone()).or_default().count_limit(LimitKind::Wall);
                if let Some(slot) = self.cache.slot(version) {
                    slot.worker.end_request(id);
                }
                self.collect_finished(version);
                self.end_background(version, id);
                self.retire_if_done(version);
                continue;
            }
            if let Some(p) = self.pending.get(&id) {
                tracing::warn!(target: "worker", "[{}] a request exceeded its wall-clock limit", p.tenant.name);
                self.fail_request(
                    id,
                    503,
                    "the worker exceeded its wall-clock time limit\n",
                    Some(LimitKind::Wall),
                    now,
                );
            }
        }
    }

    fn fail_request(&mut self, id: u64, status: u16, text: &str, limit: Option<LimitKind>, now: Instant) {
        let Some(p) = self.pending.get(&id) else { return };
        if let Some(limit) = limit {
            self.counters.entry(p.tenant.name.clone()).or_default().count_limit(limit);
        }
        let response = WireResponse {
            status,
            reason: String::new(),
            headers: vec![("content-type".into(), b"text/plain".to_vec())],
            body: text.as_bytes().to_vec(),
            stream: None,
            web_socket: None,
        };
        self.respond(id, response, now);
    }

    fn finish(&mut self, version: u64, outcome: Outcome, now: Instant) {
        let (id, response) = match outcome {
            Outcome::Response { id, response } => (id, response),
            Outcome::BodyChunk { reader, chunk } => {
                self.on_body_chunk(version, reader, chunk, now);
                return;
            }
            Outcome::Failed { id, message } => {
                if let Some(p) = self.pending.get(&id) {
                    tracing::error!(target: "worker", "[{}] {message}", p.tenant.name);
                }
                let response = WireResponse {
                    status: 500,
                    reason: String::new(),
                    headers: vec![("content-type".into(), b"text/plain".to_vec())],
                    body: b"worker threw an exception\n".to_vec(),
                    stream: None,
                    web_socket: None,
                };
                (id, response)
            }
        };
        self.respond(id, response, now);
    }

    /// Writes the response of pending request `id`: whole, or its head now and its body as the
    /// stream produces it (`io`). A failure while the body streams cuts the stream.
    fn respond(&mut self, id: u64, response: WireResponse, now: Instant) {
        let Some(pending) = self.pending.get_mut(&id) else { return };
        if pending.stream.is_some() {
            self.end_stream(id, false, now);
            return;
        }
        pending.status = response.status;
        if let Some(web_socket) = response.web_socket {
            let version = pending.tenant.version;
            let socket = web_socket.id;
            match self.accept_websocket(id, web_socket, response.headers, now) {
                Ok(()) => self.complete(id, 0, now),
                Err(reason) => {
                    if let Some(p) = self.pending.get(&id) {
                        tracing::error!(target: "worker", "[{}] {reason}", p.tenant.name);
                    }
                    self.websocket_refused(version, id, socket, reason, now);
                    if let Some(origin) = web_socket.splice {
                        self.ws_close(version, origin, 1011, "the response could not be sent", now);
                    }
                    self.fail_request(id, 500, "worker threw an exception\n", None, now);
                }
            }
            return;
        }
        let (conn, request) = match &pending.to {
            ReplyTo::Client { conn, request } => (*conn, *request),
            ReplyTo::Service(_) => {
                self.service_respond(id, response, now);
                return;
            }
        };
        let mut headers = response.headers;
        // Framing is the codec's: a script's (or an origin's) framing headers do not pass.
        headers.retain(|(name, _)| !is_hop_by_hop(name));
        // An origin's Date passes through (a proxied response keeps it); otherwise ours.
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("date")) {
            headers.push(("date".into(), self.date.get().to_vec()));
        }
        headers.push(("x-isobar-core".into(), self.core_header.clone()));
        let reason = (!response.reason.is_empty()).then_some(response.reason);
        match response.stream {
            None => {
                let bytes = response.body.len() as u64;
                let mut http_response = http1::Response::new(response.status);
                http_response.reason = reason;
                http_response.headers = headers;
                http_response.body = response.body;
                self.http.respond(&mut self.ring, conn, request, http_response, now, &mut self.incoming);
                self.complete(id, bytes, now);
            }
            Some(stream) => self.start_stream(id, stream, response.status, reason, headers, now),
        }
    }

    /// Settles the bookkeeping of request `id` once its response is entirely written.
    fn complete(&mut self, id: u64, bytes_out: u64, now: Instant) {
        let Some(pending) = self.pending.remove(&id) else { return };
        self.wall_deadlines.remove(&(pending.wall_deadline, id));
        if let Some(ids) = self.pending_of.get_mut(&pending.tenant.version) {
            ids.remove(&id);
            if ids.is_empty() {
                self.pending_of.remove(&pending.tenant.version);
            }
        }
        let name = pending.tenant.name.clone();
        let version = pending.tenant.version;
        if let Some(n) = self.in_flight.get_mut(&name) {
            *n = n.saturating_sub(1);
        }
        // The request's work may go on after its response (waitUntil): then it stays in flight
        // on the isolate (so the isolate is not evicted) until that work ends.
        let mut background = false;
        if let Some(slot) = self.cache.slot(version) {
            slot.worker.responded(id, now);
            let mut finished = Vec::new();
            slot.worker.take_finished(&mut finished);
            if finished.contains(&id) || slot.worker.condemned().is_some() {
                slot.in_flight = slot.in_flight.saturating_sub(1);
            } else {
                background = true;
            }
            for other in finished.into_iter().filter(|other| *other != id) {
                self.end_background(version, other);
            }
        }
        if !background {
            self.request_ended(version, id);
        }
        if background {
            let wall_deadline = now + WAIT_UNTIL_WALL;
            self.wall_deadlines.insert((wall_deadline, id));
            let tenant = pending.tenant.clone();
            self.background.insert(id, Background { tenant, wall_deadline, cpu: pending.cpu });
            self.background_of.entry(version).or_default().insert(id);
        }
        self.cache.after_request(version);
        let counters = self.counters.entry(name).or_default();
        counters.count_status(pending.status);
        counters.bytes_out += bytes_out;
        // Measured now, not at the turn's start: a response made in the same turn still took time.
        counters.wall += Instant::now().saturating_duration_since(pending.started);
        self.retire_if_done(version);
    }

    /// Drops an isolate of a version no longer deployed once its last request is done.
    fn retire_if_done(&mut self, version: u64) {
        let Some(tenant) = self.cache.tenant(version) else { return };
        let current = self.deployment.tenants.get(&tenant.name).is_some_and(|t| t.version == version);
        if !current && self.cache.slot(version).is_some_and(|s| s.in_flight == 0) {
            self.cache.remove(version);
            self.schedule_timer(version, None);
        }
    }

    fn stats(&mut self) -> CoreStats {
        let mut tenants: HashMap<Arc<str>, TenantStats> = HashMap::default();
        for (name, counters) in &self.counters {
            let entry =
                tenants.entry(name.clone()).or_insert_with(|| TenantStats { name: name.clone(), ..Default::default() });
            entry.counters = counters.clone();
            entry.in_flight = self.in_flight.get(name).copied().unwrap_or(0);
        }
        for (_, slot) in self.cache.slots() {
            let (used, _, buffers) = slot.worker.memory_bytes();
            let name = slot.tenant.name.clone();
            let entry = tenants.entry(name.clone()).or_insert_with(|| TenantStats { name, ..Default::default() });
            entry.isolates += 1;
            entry.heap_bytes += (used + buffers) as u64;
        }
        let mut tenants: Vec<TenantStats> = tenants.into_values().collect();
        tenants.sort_by(|a, b| a.name.cmp(&b.name));
        CoreStats {
            core: self.index,
            tenants,
            isolates: self.cache.len() + self.cache.pool_len(),
            pool: self.cache.pool_len(),
            isolates_created: self.cache.created,
            isolates_evicted: self.cache.evicted,
            isolate_groups: crate::cage::groups_alive(),
            unrouted: self.unrouted,
            open_conns: self.http.open_conns(),
            conns_refused: {
                let refused = self.http.transport().refused();
                crate::stats::RefusedConns {
                    table_full: refused.table_full,
                    per_client: refused.per_client,
                    total: refused.total,
                }
            },
            tls: {
                let http = self.http.stats();
                crate::stats::TlsCounters {
                    handshakes: http.tls_handshakes,
                    errors: http.tls_errors,
                    handshake_timeouts: http.tls_handshake_timeouts,
                }
            },
        }
    }
}

/// Header fields that describe one hop, never forwarded from a script's or an origin's response.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

/// The path of a request target (origin form `/p?q`, absolute form `http://h/p?q`, or `*`).
fn path_of(target: &str) -> &str {
    if target.starts_with('/') {
        return target;
    }
    if let Some(rest) = target.split_once("://").map(|(_, rest)| rest) {
        return rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    }
    "/"
}

/// `SCHEME://host/target` for an origin-form target (`https` on the HTTPS listener), the
/// target itself for an absolute-form one, parsed and serialized as WHATWG URLs are (by ada,
/// as `new URL()` is: the url crate's parse with its IDNA pass was ~3% of a hello-world
/// request's CPU).
///
/// Most requests (`Host: 127.0.0.1:8080`, `GET /path?q=1`) are already in the form the parser
/// would give back; [`plain_url`] sees that and skips the parser (~4% of a hello-world
/// request's CPU). A differential test holds it to ada's output.
fn request_url(scheme: &str, host: Option<&str>, target: &str) -> Option<String> {
    if let Some(url) = plain_url(scheme, host.unwrap_or("localhost"), target) {
        return Some(url);
    }
    let text = if target.starts_with('/') {
        format!("{scheme}://{}{}", host.unwrap_or("localhost"), target)
    } else if target == "*" {
        format!("{scheme}://{}/", host.unwrap_or("localhost"))
    } else {
        target.to_string()
    };
    crate::api::url::parse(&text, None).map(|url| url.href().to_string())
}

/// `SCHEME://host` followed by the origin-form `target` when that text is already what the WHATWG
/// parser returns for it, else `None` (the parser decides). It is when:
/// - the host is lowercase DNS labels (`a-z`, `0-9`, `-`; none empty, none an `xn--` label the
///   parser would check as Punycode) or a dotted quad in canonical form (a last label that looks
///   like a number makes the parser read the host as IPv4, and rewrite `127.1` or `0x7f.0.0.1`);
/// - the port, if any, has no leading zero, is at most 65535 and is not the scheme's default
///   (the parser drops a default port);
/// - the target's path and query are made of characters no percent-encode set holds, without
///   `%` (`%2e` segments count as dots) or `\` (a slash in special URLs), and no path segment
///   is `.` or `..` (the parser removes them).
fn plain_url(scheme: &str, host: &str, target: &str) -> Option<String> {
    if !target.starts_with('/') {
        return None;
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if !plain_host(name) {
        return None;
    }
    if let Some(port) = port {
        let default = if scheme == "https" { "443" } else { "80" };
        let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.starts_with('0') || port == default || port.parse::<u32>().ok()? > 65_535 {
            return None;
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/".contains(&b);
    if !path.bytes().all(plain) || path.split('/').any(|segment| segment == "." || segment == "..") {
        return None;
    }
    if query.is_some_and(|query| !query.bytes().all(|b| plain(b) || b == b'?')) {
        return None;
    }
    Some([scheme, "://", host, target].concat())
}

/// Whether `name` is a host the WHATWG parser returns unchanged (see [`plain_url`]).
fn plain_host(name: &str) -> bool {
    let labels = || name.split('.');
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with("xn--")
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.is_empty() || !labels().all(label_ok) {
        return false;
    }
    let last = labels().next_back().unwrap_or("");
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last.strip_prefix("0x").is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !numeric {
        return true;
    }
    // The parser reads it as IPv4: unchanged only in canonical dotted-quad form.
    let canonical = |part: &str| {
        (1..=3).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
            && part.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    labels().count() == 4 && labels().all(canonical)
}

/// The `cron` query parameter of a `/__scheduled` request (percent-decoded, `+` a space), or
/// `* * * * *` (as wrangler's default).
fn scheduled_cron_param(target: &str) -> String {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let Some(value) = query.split('&').find_map(|pair| pair.strip_prefix("cron=")) else {
        return "* * * * *".to_string();
    };
    isobar_tenancy::admin::percent_decode(value).unwrap_or_else(|| value.replace('+', " "))
}

fn plain_response(status: u16, body: &str) -> http1::Response {
    http1::Response::new(status).with_header("content-type", "text/plain").with_body(body.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::RngExt;
    use proptest::test_runner::{RngAlgorithm, TestRng};

    use super::{path_of, plain_url, request_url};

    /// What the WHATWG parser (ada) makes of `SCHEME://host` + `target`.
    fn parsed(scheme: &str, host: &str, target: &str) -> Option<String> {
        crate::api::url::parse(&format!("{scheme}://{host}{target}"), None).map(|url| url.href().to_string())
    }

    /// The shortcut never gives a URL the parser would not: over hosts and targets picked to
    /// sit on either side of each of its rules, and over many made of random characters.
    #[test]
    fn plain_urls_are_what_the_parser_returns() {
        let hosts = [
            "localhost",
            "example.com",
            "a-b.c0",
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.0.0.255:1",
            "h:65535",
            "h:65536",
            "h:080",
            "h:80",
            "h:443",
            "h:",
            "h:0",
            ":80",
            "",
            "Example.com",
            "a..b",
            "a.b.",
            ".a",
            "xn--nxasmq6b.com",
            "xn--zz",
            "127.1",
            "0x7f.0.0.1",
            "1.2.3.4.5",
            "256.0.0.1",
            "01.2.3.4",
            "1.2.3.08",
            "a.0x",
            "a.0xfg",
            "a.1",
            "1.a",
            "a_b",
            "a b",
            "[::1]",
            "[::1]:8080",
            "h:8080:1",
            "ex%41mple.com",
        ];
        let targets = [
            "/",
            "/a/b?c=d&e",
            "/?",
            "/??",
            "/a?b?c/d",
            "//a",
            "/a//b",
            "/./a",
            "/a/.",
            "/a/..",
            "/a/../b",
            "/.a/b..",
            "/a.b/..c",
            "/%2e/a",
            "/%41",
            "/a b",
            "/a\\b",
            "/a'b",
            "/a?b'c",
            "/a#b",
            "/a?b#c",
            "/a\tb",
            "/é",
            "/a`b",
            "/{}",
            "/a|b",
            "/a^b",
            "/[a]",
            "/~user/!$&()*+,;=:@-._",
            "/a?x=/.././",
            "/a\"b",
            "/<a>",
        ];
        for scheme in ["http", "https"] {
            for host in hosts {
                for target in targets {
                    if let Some(url) = plain_url(scheme, host, target) {
                        assert_eq!(Some(url), parsed(scheme, host, target), "{scheme}://{host}{target}");
                    }
                }
            }
        }
        // Random hosts and targets over an alphabet of the characters the rules turn on.
        let host_chars = b"ab0189x.-:Z_%";
        let target_chars = b"ab09/.?%#\\'` -_~!$&()*+,;=:@{}[]|^\"<>\t";
        let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut next = move |n: usize| rng.random_range(0..n);
        let mut taken = 0;
        for _ in 0..50_000 {
            let host: String = (0..1 + next(12)).map(|_| host_chars[next(host_chars.len())] as char).collect();
            let mut target = String::from("/");
            target.extend((0..next(12)).map(|_| target_chars[next(target_chars.len())] as char));
            let scheme = if next(2) == 0 { "http" } else { "https" };
            if let Some(url) = plain_url(scheme, &host, &target) {
                taken += 1;
                assert_eq!(Some(url), parsed(scheme, &host, &target), "{scheme}://{host}{target}");
            }
        }
        assert!(taken > 1_000, "the random inputs reach the shortcut ({taken} of 50,000)");
        // And the common case takes it.
        assert_eq!(plain_url("http", "127.0.0.1:8080", "/").as_deref(), Some("http://127.0.0.1:8080/"));
        assert_eq!(
            plain_url("https", "api.example.com", "/v1/x?q=1").as_deref(),
            Some("https://api.example.com/v1/x?q=1")
        );
    }

    #[test]
    fn request_urls() {
        assert_eq!(request_url("http", Some("example.com"), "/a?b").as_deref(), Some("http://example.com/a?b"));
        assert_eq!(request_url("https", Some("example.com"), "/a").as_deref(), Some("https://example.com/a"));
        assert_eq!(request_url("http", None, "/").as_deref(), Some("http://localhost/"));
        assert_eq!(request_url("http", Some("h:8080"), "*").as_deref(), Some("http://h:8080/"));
        assert_eq!(request_url("https", Some("h:8443"), "*").as_deref(), Some("https://h:8443/"));
        assert_eq!(request_url("http", Some("x"), "https://other/p").as_deref(), Some("https://other/p"));
        assert_eq!(request_url("http", Some("bad host"), "/"), None);
    }

    #[test]
    fn paths_of_targets() {
        assert_eq!(path_of("/a/b?c"), "/a/b?c");
        assert_eq!(path_of("http://h/x?y"), "/x?y");
        assert_eq!(path_of("http://h"), "/");
        assert_eq!(path_of("*"), "/");
    }
}
