//! Starts one scheduler thread per core, and the control plane the main thread and the admin
//! API use to deploy, report and drain.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use kernel_shim::EventFd;
use kernel_shim::ring::RingConfig;
use kernel_shim::seccomp::{Role, Sandbox};
use netstack::http1;
use netstack::{Forwarder, LinkKind, NetLimits, ServerTls, SmolConfig, Steering, TlsServerConfig};

use isobar_tenancy::cron::CronTable;

use crate::cache::IsolateBudget;
use crate::scheduler::{Command, Core, CoreConfig, CoreError, CoreNet};
use crate::stats::CoreStats;
use crate::tenant::{DeployError, Deployment, Tenant};
use crate::watchdog::Watchdog;

/// The network the cores serve on, as the main thread opened it.
pub enum ServerNet {
    /// One listener per core, all bound to the same address with SO_REUSEPORT; and as many
    /// HTTPS listeners (on the port of `ServerConfig::tls`), or none.
    Kernel { listeners: Vec<OwnedFd>, tls_listeners: Vec<OwnedFd> },
    /// One TAP queue or AF_PACKET socket per core, with the stack's settings (the steering is
    /// filled in per core).
    Smol { fds: Vec<OwnedFd>, kind: LinkKind, config: Box<SmolConfig> },
}

impl std::fmt::Debug for ServerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerNet::Kernel { listeners, tls_listeners } => {
                write!(f, "ServerNet::Kernel({} + {} listeners)", listeners.len(), tls_listeners.len())
            }
            ServerNet::Smol { fds, kind, .. } => write!(f, "ServerNet::Smol({kind:?}, {} fds)", fds.len()),
        }
    }
}

/// Milliseconds since the Unix epoch (cron schedules are in UTC wall-clock time).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Frames one core may hold for another before they are dropped (counted).
const FORWARD_INBOX_FRAMES: usize = 1024;

/// What the cores serve from the start.
#[derive(Debug)]
pub enum StartDeployment {
    /// Tenants the control thread built (and checked).
    Built(Deployment),
    /// One tenant that core 0 builds as it starts (before the other cores start): its script
    /// compiled, imports read from disk (no filter is on yet), its top level run under the
    /// core's start-up CPU budget, in the isolate that then serves it. `isobar run`: one isolate
    /// before the first response instead of the control thread's check and then the core's own.
    /// A script that fails to load fails the start, with the error.
    FirstCore(isobar_tenancy::TenantSettings),
}

/// What the main thread asks for.
#[derive(Debug)]
pub struct ServerConfig {
    pub deployment: StartDeployment,
    pub net: ServerNet,
    /// The CPUs to pin the cores to, one per listener.
    pub cpus: Vec<usize>,
    pub budget: IsolateBudget,
    pub http: http1::Limits,
    pub net_limits: NetLimits,
    pub ring: RingConfig,
    /// The system-call filter: each core confines itself (role `Core`) once the main thread
    /// has sealed the process, between its start-up and its loop; the watchdog too. `None`:
    /// no filter (`--seccomp off`).
    pub sandbox: Option<Arc<Sandbox>>,
    /// The per-client and total connection caps every core applies when it accepts.
    pub admission: Option<Arc<netstack::ConnAdmission>>,
    /// TLS termination on the HTTPS port: its listeners are in `net` (kernel sockets) or its
    /// port in the stack's `extra_listen_ports` (userspace stack).
    pub tls: Option<ServerTls>,
    /// Subrequests (each core gets a copy).
    pub outbound: crate::outbound::OutboundConfig,
    /// `/__scheduled?cron=...` fires the scheduled handler (`isobar run --test-scheduled`).
    pub test_scheduled: bool,
    /// The host's KV store, shared by the cores (each makes its own client of it).
    pub kv: Option<crate::scheduler::KvStore>,
    /// The host's Cache API store, shared by the cores (each makes its own client of it).
    pub caches: Option<Arc<isobar_state::cache::CacheStore>>,
}

/// A core's life as the main thread sees it.
#[derive(Debug)]
pub enum CoreEvent {
    Ready {
        index: usize,
    },
    /// Core 0 built the deployment it was started to build ([`StartDeployment::FirstCore`]).
    Built {
        index: usize,
        deployment: Arc<Deployment>,
    },
    /// Start-up failed; the message names the cause.
    Failed {
        index: usize,
        error: CoreError,
    },
    /// The loop ended: `Ok` after a drain, `Err` if its ring failed.
    Exited {
        index: usize,
        result: Result<(), String>,
    },
}

#[derive(Debug)]
struct CoreHandle {
    mailbox: Sender<Command>,
    wake: Arc<EventFd>,
}

/// How long the control plane waits for every core to acknowledge a deployment or report.
const CORE_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The control plane: the current deployment and a way to reach every core. Shared by the main
/// thread (signals, reload) and the admin thread.
#[derive(Debug)]
pub struct Control {
    cores: Vec<CoreHandle>,
    deployment: Mutex<Arc<Deployment>>,
    /// Held by each change from reading the current deployment until every core has the next
    /// one, so changes (a SIGHUP reload, admin PUTs and DELETEs) apply one at a time in one
    /// order: without it two changes interleave their messages to the cores, and cores end up
    /// on different deployments, or a change built from a stale deployment undoes another.
    changing: Mutex<()>,
    watchdog: Watchdog,
    /// Whether the cores serve HTTPS (set at start: the listeners cannot be added later).
    serves_tls: bool,
    /// Whether a KV store was opened at start (the cores' ring wiring to its thread is made
    /// then: a deployment with a KV binding needs it).
    serves_kv: bool,
    /// Every tenant's Cron Triggers: one table per process, so each firing runs once, on one
    /// core (the next in turn). Kept in step with the deployment by [`Control::deploy`].
    crons: Mutex<CronTable>,
    next_cron_core: std::sync::atomic::AtomicUsize,
}

/// Why a deployment did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Deploy(#[from] DeployError),
    #[error("core {0} did not acknowledge the deployment within {CORE_REPLY_TIMEOUT:?}")]
    NoAck(usize),
    #[error("HTTPS is not served: isobar started without [server.tls]; restart it to open the HTTPS listener")]
    NoTls,
    #[error(
        "tenant {0} has a KV binding, but isobar started with no KV store (no tenant had one then); restart it to \
         open the store"
    )]
    NoKvStore(String),
    #[error("core {0} did not acknowledge the new certificates within {CORE_REPLY_TIMEOUT:?}")]
    NoTlsAck(usize),
}

impl Control {
    /// The deployment the cores serve.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.deployment.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves `deployment` from now on; returns once every core has swapped it in, so a request
    /// made after this returns is served by the new versions.
    pub fn deploy(&self, deployment: Deployment) -> Result<(), ControlError> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        self.deploy_locked(deployment)
    }

    /// Builds the next deployment from the current one and serves it, with no other change in
    /// between: `next` sees the deployment the cores serve, and nothing is deployed until this
    /// returns. `next` returning `Ok(None)` changes nothing. Whichever change takes the lock
    /// last is the one served, and its acknowledgement is the last one given.
    pub fn change<T, E: From<ControlError>>(
        &self,
        next: impl FnOnce(&Arc<Deployment>) -> Result<(Option<Deployment>, T), E>,
    ) -> Result<T, E> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let (deployment, value) = next(&self.deployment())?;
        if let Some(deployment) = deployment {
            self.deploy_locked(deployment)?;
        }
        Ok(value)
    }

    fn deploy_locked(&self, deployment: Deployment) -> Result<(), ControlError> {
        if !self.serves_kv
            && let Some(tenant) = deployment.tenants.values().find(|tenant| !tenant.spec.kv.is_empty())
        {
            return Err(ControlError::NoKvStore(tenant.name.to_string()));
        }
        let deployment = Arc::new(deployment);
        if let Some(smallest) = deployment.smallest_cpu_limit() {
            self.watchdog.set_smallest_limit(smallest);
        }
        *self.deployment.lock().unwrap_or_else(|e| e.into_inner()) = deployment.clone();
        let (ack_tx, ack_rx) = bounded::<usize>(self.cores.len());
        for core in &self.cores {
            let _ = core.mailbox.send_timeout(
                Command::Deploy { deployment: deployment.clone(), ack: ack_tx.clone() },
                CORE_REPLY_TIMEOUT,
            );
            let _ = core.wake.notify();
        }
        self.sync_crons(&deployment);
        let deadline = Instant::now() + CORE_REPLY_TIMEOUT;
        let mut acked = vec![false; self.cores.len()];
        for _ in 0..self.cores.len() {
            match ack_rx.recv_deadline(deadline) {
                Ok(index) => acked[index] = true,
                Err(_) => return Err(ControlError::NoAck(acked.iter().position(|a| !a).unwrap_or(0))),
            }
        }
        Ok(())
    }

    /// At start-up: `deployment` is what the cores serve (no core has acknowledged anything yet).
    fn adopt(&self, deployment: &Arc<Deployment>) {
        if let Some(smallest) = deployment.smallest_cpu_limit() {
            self.watchdog.set_smallest_limit(smallest);
        }
        *self.deployment.lock().unwrap_or_else(|e| e.into_inner()) = deployment.clone();
        self.sync_crons(deployment);
    }

    /// The cron table follows `deployment`: a tenant's unchanged schedules keep their next
    /// firing, new ones start from now, removed tenants' go.
    fn sync_crons(&self, deployment: &Deployment) {
        let now = unix_now_ms();
        let mut table = self.crons.lock().unwrap_or_else(|e| e.into_inner());
        for name in table.tenants() {
            if !deployment.tenants.contains_key(name.as_str()) {
                table.remove_tenant(&name);
            }
        }
        for tenant in deployment.tenants.values() {
            let crons: Vec<&str> = tenant.crons.iter().map(String::as_str).collect();
            if let Err(error) = table.set_tenant(&tenant.name, &crons, now) {
                // Expressions were checked when the tenant was configured; only the table's
                // overall bound can refuse here.
                tracing::error!("[{}] its cron triggers are not scheduled: {error}", tenant.name);
            }
        }
    }

    /// Fires the Cron Triggers due at `now_unix_ms` (each on one core); returns when the next
    /// one is due, if any. The main thread calls this from its loop.
    pub fn poll_crons(&self, now_unix_ms: u64) -> Option<u64> {
        let (due, next) = {
            let mut table = self.crons.lock().unwrap_or_else(|e| e.into_inner());
            let due = table.poll(now_unix_ms);
            (due, table.poll_at())
        };
        for firing in due {
            tracing::debug!(tenant = %firing.tenant, cron = %firing.cron, "cron trigger");
            self.send_scheduled(firing.tenant, firing.cron, firing.scheduled_time_ms);
        }
        next
    }

    /// Runs tenant `name`'s scheduled handler once now with `cron`; false if there is no such
    /// tenant.
    pub fn fire_scheduled(&self, name: &str, cron: &str) -> bool {
        if !self.deployment().tenants.contains_key(name) {
            return false;
        }
        self.send_scheduled(name.to_string(), cron.to_string(), unix_now_ms());
        true
    }

    fn send_scheduled(&self, tenant: String, cron: String, scheduled_time_ms: u64) {
        if self.cores.is_empty() {
            return;
        }
        let turn = self.next_cron_core.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let core = &self.cores[turn % self.cores.len()];
        let command = Command::Scheduled { tenant: tenant.clone(), cron, scheduled_time_ms };
        if core.mailbox.send_timeout(command, Duration::from_millis(100)).is_err() {
            tracing::warn!(
                "[{tenant}] a cron firing was dropped: core {} is not taking commands",
                turn % self.cores.len()
            );
            return;
        }
        let _ = core.wake.notify();
    }

    /// Serves HTTPS with `config` (new certificates, from a reload) and `handshake_timeout` from
    /// now on; returns once every core has it, so a connection made after this returns gets
    /// the new certificates. Connections open keep theirs.
    pub fn set_tls(&self, config: Arc<TlsServerConfig>, handshake_timeout: Duration) -> Result<(), ControlError> {
        if !self.serves_tls {
            return Err(ControlError::NoTls);
        }
        let (ack_tx, ack_rx) = bounded::<usize>(self.cores.len());
        for core in &self.cores {
            let command = Command::Tls { config: config.clone(), handshake_timeout, ack: ack_tx.clone() };
            let _ = core.mailbox.send_timeout(command, CORE_REPLY_TIMEOUT);
            let _ = core.wake.notify();
        }
        let deadline = Instant::now() + CORE_REPLY_TIMEOUT;
        let mut acked = vec![false; self.cores.len()];
        for _ in 0..self.cores.len() {
            match ack_rx.recv_deadline(deadline) {
                Ok(index) => acked[index] = true,
                Err(_) => return Err(ControlError::NoTlsAck(acked.iter().position(|a| !a).unwrap_or(0))),
            }
        }
        Ok(())
    }

    /// Whether the cores serve HTTPS.
    pub fn serves_tls(&self) -> bool {
        self.serves_tls
    }

    /// Adds or replaces one tenant (serialised with other changes by the change lock).
    pub fn put_tenant(&self, tenant: Tenant) -> Result<bool, ControlError> {
        self.change(|current| {
            let replaced = current.tenants.contains_key(&tenant.name);
            Ok::<_, ControlError>((Some(current.with(Arc::new(tenant))?), replaced))
        })
    }

    /// Removes a tenant; false if there was none by that name.
    pub fn remove_tenant(&self, name: &str) -> Result<bool, ControlError> {
        self.change(|current| {
            if !current.tenants.contains_key(name) {
                return Ok::<_, ControlError>((None, false));
            }
            Ok((Some(current.without(name)), true))
        })
    }

    /// Every core's counters (cores that do not answer within the timeout are left out).
    pub fn stats(&self) -> Vec<CoreStats> {
        let (tx, rx) = bounded::<CoreStats>(self.cores.len());
        for core in &self.cores {
            let _ = core.mailbox.send_timeout(Command::Stats { reply: tx.clone() }, CORE_REPLY_TIMEOUT);
            let _ = core.wake.notify();
        }
        let deadline = Instant::now() + CORE_REPLY_TIMEOUT;
        let mut stats: Vec<CoreStats> = (0..self.cores.len()).map_while(|_| rx.recv_deadline(deadline).ok()).collect();
        stats.sort_by_key(|s| s.core);
        stats
    }

    /// Asks every core to drain: stop accepting, answer what is in flight, then stop.
    pub fn drain(&self) {
        for core in &self.cores {
            // A full mailbox means commands are queued; the drain waits its turn.
            let _ = core.mailbox.send_timeout(Command::Drain, Duration::from_secs(1));
            let _ = core.wake.notify();
        }
    }

    pub fn cores(&self) -> usize {
        self.cores.len()
    }
}

/// The running cores.
#[derive(Debug)]
pub struct Server {
    control: Arc<Control>,
    threads: Vec<Option<JoinHandle<()>>>,
    events: Receiver<CoreEvent>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Core(CoreError),
    #[error("cannot create a core's wake-up eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot spawn a thread: {0}")]
    Spawn(std::io::Error),
    #[error("V8 failed to start: {0}")]
    Engine(String),
    #[error("a core thread stopped during start-up")]
    Vanished,
    #[error("the userspace network stack: {0}")]
    Steering(String),
}

impl Server {
    /// Spawns the cores and waits until every one is ready (or one fails).
    pub fn start(config: ServerConfig) -> Result<Server, StartError> {
        let cores = config.cpus.len();
        crate::engine::init().map_err(StartError::Engine)?;
        let watchdog = Watchdog::start_confined(config.sandbox.clone()).map_err(StartError::Spawn)?;
        let (mut deployment, mut first) = match config.deployment {
            StartDeployment::Built(deployment) => (Arc::new(deployment), None),
            StartDeployment::FirstCore(settings) => (Arc::new(Deployment::default()), Some(settings)),
        };
        let (events_tx, events) = bounded::<CoreEvent>(config.cpus.len() * 4 + 4);
        let mut handles = Vec::new();
        let mut mailboxes = Vec::new();
        for _ in 0..config.cpus.len() {
            let (tx, rx) = bounded::<Command>(64);
            let wake = Arc::new(EventFd::new().map_err(StartError::EventFd)?);
            handles.push(CoreHandle { mailbox: tx, wake: wake.clone() });
            mailboxes.push((rx, wake));
        }
        let control = Arc::new(Control {
            cores: handles,
            deployment: Mutex::new(deployment.clone()),
            changing: Mutex::new(()),
            watchdog,
            serves_tls: config.tls.is_some(),
            serves_kv: config.kv.is_some(),
            crons: Mutex::new(CronTable::new()),
            next_cron_core: std::sync::atomic::AtomicUsize::new(0),
        });
        control.adopt(&deployment);
        let mut threads = Vec::new();
        let nets: Vec<CoreNet> = match config.net {
            ServerNet::Kernel { listeners, tls_listeners } => {
                assert_eq!(listeners.len(), cores, "one listener per core");
                assert!(
                    tls_listeners.is_empty() || tls_listeners.len() == cores,
                    "one HTTPS listener per core, or none"
                );
                let mut tls_listeners = tls_listeners.into_iter();
                listeners
                    .into_iter()
                    .map(|listener| CoreNet::Kernel { listener, tls_listener: tls_listeners.next() })
                    .collect()
            }
            ServerNet::Smol { fds, kind, config: smol } => {
                assert_eq!(fds.len(), cores, "one link fd per core");
                // Frames for another core's port range go over its inbox, and its eventfd
                // wakes it.
                let wakes: Vec<Arc<EventFd>> = control.cores.iter().map(|c| c.wake.clone()).collect();
                let wake: netstack::steer::Wake = Arc::new(move |core: usize| {
                    if let Some(wake) = wakes.get(core) {
                        let _ = wake.notify();
                    }
                });
                let forwarders = Forwarder::mesh(cores, FORWARD_INBOX_FRAMES, wake);
                let mut nets = Vec::with_capacity(cores);
                for (index, (fd, forwarder)) in fds.into_iter().zip(forwarders).enumerate() {
                    let mut core_config = smol.clone();
                    core_config.steering =
                        Steering::even(index, cores).map_err(|e| StartError::Steering(e.to_string()))?;
                    nets.push(CoreNet::Smol { fd, kind, config: core_config, forwarder });
                }
                nets
            }
        };
        for (index, ((net, cpu), (mailbox, wake))) in nets.into_iter().zip(config.cpus).zip(mailboxes).enumerate() {
            let builds_first = first.is_some();
            let core_config = CoreConfig {
                index,
                cpu,
                net,
                deployment: deployment.clone(),
                first: first.take(),
                budget: config.budget,
                http: config.http,
                net_limits: config.net_limits,
                ring: config.ring,
                admission: config.admission.clone(),
                tls: config.tls.clone(),
                outbound: config.outbound.clone(),
                test_scheduled: config.test_scheduled,
                kv: config.kv.clone(),
                caches: config.caches.clone(),
            };
            let events_tx = events_tx.clone();
            let control_for_core = control.clone();
            let sandbox = config.sandbox.clone();
            let thread = std::thread::Builder::new()
                .name(format!("isobar-core-{index}"))
                .spawn(move || {
                    let core = match Core::new(core_config, mailbox, wake, &control_for_core.watchdog) {
                        Ok(core) => core,
                        Err(error) => {
                            let _ = events_tx.send(CoreEvent::Failed { index, error });
                            return;
                        }
                    };
                    drop(control_for_core);
                    if builds_first {
                        let _ = events_tx.send(CoreEvent::Built { index, deployment: core.deployment().clone() });
                    }
                    let _ = events_tx.send(CoreEvent::Ready { index });
                    // Start-up (ring, listener, isolate pool) is over: from here the core makes
                    // only the calls of its role.
                    if let Some(sandbox) = sandbox
                        && let Err(error) = sandbox.wait_and_confine(Role::Core)
                    {
                        let result = Err(format!("cannot confine the core: {error}"));
                        let _ = events_tx.send(CoreEvent::Exited { index, result });
                        return;
                    }
                    let result = core.run().map_err(|e| e.to_string());
                    let _ = events_tx.send(CoreEvent::Exited { index, result });
                })
                .map_err(StartError::Spawn)?;
            threads.push(Some(thread));
            if builds_first {
                // The other cores start with the deployment core 0 built. This thread still
                // holds a sender, so a core 0 that ends without a word is seen by its thread.
                let event = loop {
                    match events.recv_timeout(Duration::from_millis(20)) {
                        Ok(event) => break Ok(event),
                        Err(RecvTimeoutError::Timeout) if threads[0].as_ref().is_some_and(JoinHandle::is_finished) => {
                            // What it sent just before it ended, if anything.
                            break events.try_recv().map_err(|_| crossbeam_channel::RecvError);
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break Err(crossbeam_channel::RecvError),
                    }
                };
                match event {
                    Ok(CoreEvent::Built { deployment: built, .. }) => {
                        deployment = built;
                        control.adopt(&deployment);
                    }
                    failed => {
                        let mut server = Server { control, threads, events };
                        return Err(server.failed_start(failed, config.sandbox.as_deref()));
                    }
                }
            }
        }
        drop(events_tx);
        let mut server = Server { control, threads, events };
        let mut ready = 0;
        while ready < server.threads.len() {
            match server.events.recv() {
                Ok(CoreEvent::Ready { .. }) => ready += 1,
                failed => return Err(server.failed_start(failed, config.sandbox.as_deref())),
            }
        }
        Ok(server)
    }

    /// Stops a start-up that `event` (a core's failure, exit or silence) ended.
    fn failed_start(
        &mut self,
        event: Result<CoreEvent, crossbeam_channel::RecvError>,
        sandbox: Option<&Sandbox>,
    ) -> StartError {
        // Cores that are ready wait for the seal, which will not come now.
        if let Some(sandbox) = sandbox {
            sandbox.abandon();
        }
        self.control.drain();
        match event {
            Ok(CoreEvent::Failed { error, .. }) => {
                self.join(Duration::from_secs(5));
                StartError::Core(error)
            }
            _ => StartError::Vanished,
        }
    }

    /// The control plane, to share with the admin API.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub fn cores(&self) -> usize {
        self.threads.len()
    }

    /// Events from the cores after start-up (an unexpected exit, for instance).
    pub fn events(&self) -> &Receiver<CoreEvent> {
        &self.events
    }

    pub fn drain(&self) {
        self.control.drain();
    }

    /// Waits for the cores to stop, at most `timeout`. Returns how many were still running.
    pub fn join(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.threads.iter().filter(|t| t.as_ref().is_some_and(|t| !t.is_finished())).count();
            if running == 0 {
                for thread in &mut self.threads {
                    if let Some(thread) = thread.take() {
                        let _ = thread.join();
                    }
                }
                return 0;
            }
            if Instant::now() >= deadline {
                return running;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
