//! The `isobar` binary: parses the command line or the configuration file, sets up logging and
//! the process, starts one scheduler per core (and the admin API), and turns signals into a
//! graceful drain or a configuration reload. Everything else lives in the library crates; this
//! file only wires them together.

mod cli;
mod config;
mod guest;
mod snapshot;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use crossbeam_channel::{Receiver, Sender, after, bounded, never, select, unbounded};
use kernel_shim::seccomp::{Role, Sandbox};
use kernel_shim::signal::{self, Signal};
use runtime::routes::Route;
use runtime::{Deployment, Tenant, TenantLimits, TenantSettings};

use cli::{Cli, Command, Format, HardeningArgs, RunArgs, Seccomp, ServeArgs, SnapshotArgs, TlsArgs};
use isobar_tenancy::config::{KvStoreConfig, same_listener};
use netstack::TlsServerConfig;
use netstack::tls::CertKeyFiles;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The signals the main thread handles; every thread inherits them blocked.
const HANDLED_SIGNALS: &[Signal] = &[Signal::Interrupt, Signal::Terminate, Signal::Hangup];

/// Set (to anything) in the environment, a core makes a forbidden system call right after
/// confining itself: the end-to-end test of the filter uses it. It only ever stops the process.
const TEST_VIOLATION_ENV: &str = "ISOBAR_TEST_SECCOMP_VIOLATION";

fn main() -> ExitCode {
    let mut timeline = snapshot::Timeline::new();
    // Scripts see UTC, as on Workers. Set before any thread exists and before V8 starts: with
    // TZ unset, the first `Date.prototype.toString()` or `Intl.DateTimeFormat` without a
    // `timeZone` makes ICU look for the host's zone with readlink("/etc/localtime") on a core
    // thread, which the system-call filter forbids, so one tenant's `String(new Date())`
    // stopped the whole process. With TZ set, ICU takes the zone from it and touches no file.
    // SAFETY: no other thread exists yet (nothing has been spawned, and no library isobar
    // links starts threads before main), so nothing can read the environment concurrently.
    unsafe { std::env::set_var("TZ", "UTC") };
    // Before any thread exists, so every thread inherits both: no execve can gain privileges
    // (isobar never runs another program), and a forbidden system call, once the filter is on,
    // is reported by name and stops the process.
    let hardened =
        kernel_shim::seccomp::forbid_new_privileges().and_then(|()| kernel_shim::seccomp::install_violation_handler());
    // As the init process of a guest, isobar does the PID-1 duties first and never returns.
    if kernel_shim::pid1::is_init() {
        if let Err(error) = &hardened {
            eprintln!("isobar: warning: {error}");
        }
        let _ = signal::block_process_signals(HANDLED_SIGNALS);
        let _log_guard = init_logging("info", false);
        guest::main();
    }
    // Block before any thread exists (the logger's included), so only the main thread's
    // sigwait ever sees these signals.
    if let Err(error) = signal::block_process_signals(HANDLED_SIGNALS) {
        eprintln!("isobar: error: cannot block signals: {error}");
        return ExitCode::FAILURE;
    }
    if let Err(error) = hardened {
        eprintln!("isobar: error: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let _log_guard = init_logging(&cli.log, std::io::IsTerminal::is_terminal(&std::io::stderr()));
    timeline.mark("command line and log");
    let result = match cli.command {
        Command::Run(args) => run(*args, timeline),
        Command::Serve(args) => serve(*args, timeline),
        Command::Snapshot(args) => snapshot(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("isobar: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a bounded, lossy queue and a writer thread, so a core thread never
/// blocks on a slow terminal or pipe (a flood of console.log drops lines instead). The queue's
/// slots are allocated and touched whole at start-up: 8,192 lines (~0.3 MB) cost ~0.1 ms of it,
/// where 65,536 cost ~1 ms.
fn init_logging(filter: &str, ansi: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let confine = Arc::new(Mutex::new(None));
    let sink = LogSink { stderr: std::io::stderr(), confine: confine.clone() };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(8 * 1024)
        .thread_name("isobar-log")
        .finish(sink);
    let _ = LOG_THREAD.set(LogThread { poke: Mutex::new(writer.clone()), confine });
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("isobar: warning: bad --log filter {filter:?} ({error}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(true).with_ansi(ansi).init();
    guard
}

/// A request to the log thread to confine itself, and where it answers.
type LogConfinement = (Arc<Sandbox>, Sender<Result<(), String>>);

/// The log writer thread, as the main thread reaches it: `tracing_appender` owns the thread, so
/// the main thread leaves a request in `confine` and pokes the queue with an empty line; the
/// thread's [`LogSink`] confines it on its next write.
struct LogThread {
    poke: Mutex<tracing_appender::non_blocking::NonBlocking>,
    confine: Arc<Mutex<Option<LogConfinement>>>,
}

static LOG_THREAD: OnceLock<LogThread> = OnceLock::new();

/// stderr, as the log thread writes it; it confines its thread when asked (see [`LogThread`]).
struct LogSink {
    stderr: std::io::Stderr,
    confine: Arc<Mutex<Option<LogConfinement>>>,
}

impl LogSink {
    fn confine_if_asked(&mut self) {
        let asked = self.confine.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((sandbox, done)) = asked {
            let _ = done.send(sandbox.confine(Role::Log).map_err(|e| e.to_string()));
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.confine_if_asked();
        self.stderr.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.confine_if_asked();
        self.stderr.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.confine_if_asked();
        self.stderr.flush()
    }
}

/// Has the log thread confine itself to its role, and waits (bounded) until it has.
fn confine_log_thread(sandbox: &Arc<Sandbox>) -> anyhow::Result<()> {
    let Some(log) = LOG_THREAD.get() else { return Ok(()) };
    let (done_tx, done) = bounded(1);
    *log.confine.lock().unwrap_or_else(|e| e.into_inner()) = Some((sandbox.clone(), done_tx));
    // The queue is lossy: poke until the thread answers (an empty line writes nothing).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = log.poke.lock().unwrap_or_else(|e| e.into_inner()).write(&[]);
        match done.recv_timeout(Duration::from_millis(100)) {
            Ok(result) => return result.map_err(|e| anyhow::anyhow!("the log thread: {e}")),
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => bail!("the log thread did not confine itself within 5 s"),
        }
    }
}

/// Where and how to serve, whichever command asked.
struct Serving {
    listen: SocketAddr,
    cores: Option<usize>,
    admin: Option<SocketAddr>,
    admin_token: Option<String>,
    defaults: TenantLimits,
    budget: runtime::cache::IsolateBudget,
    body_limit: usize,
    drain_timeout: Duration,
    /// What SIGHUP re-reads, if anything.
    reload: Option<Reload>,
    net: Net,
    /// HTTPS beside HTTP, if asked for.
    tls: Option<TlsServing>,
    /// The system-call filter, the user to become, the connection caps.
    hardening: HardeningArgs,
    /// `run --test-scheduled`: `/__scheduled` fires the scheduled handler.
    test_scheduled: bool,
    /// Where subrequests may go, and how names and certificates are resolved.
    egress: Egress,
    /// The KV store, when some tenant has a KV binding.
    kv: Option<KvStoreConfig>,
    /// The Cache API store's directory and budgets.
    caches: isobar_tenancy::config::CacheStoreConfig,
}

/// Subrequest settings from the command line and the configuration.
#[derive(Debug, Clone, Default)]
struct Egress {
    /// `isobar run` (a developer's local Worker) may reach local destinations.
    local_allowed: bool,
    allow: Vec<isobar_tenancy::egress::IpNet>,
    deny: Vec<isobar_tenancy::egress::IpNet>,
    ca_files: Vec<std::path::PathBuf>,
    /// `--dns` / `isobar.dns=`: nameservers instead of /etc/resolv.conf's.
    dns: Option<String>,
}

/// HTTPS as it is to be served: where, with which certificates, within which handshake time.
struct TlsServing {
    listen: SocketAddr,
    config: Arc<TlsServerConfig>,
    handshake_timeout: Duration,
}

/// What SIGHUP re-reads.
enum Reload {
    /// `serve`: the configuration file (tenants, and the certificates of `[server.tls]`); the
    /// HTTPS listener it started with, if any (a reload cannot move or add it).
    Config { path: PathBuf, tls_listen: Option<SocketAddr> },
    /// `run` with HTTPS: the certificate and key files.
    Certificates { files: Vec<CertKeyFiles>, handshake_timeout: Duration },
}

/// Which network the cores serve on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Net {
    /// Kernel sockets through io_uring.
    Kernel,
    /// isobar's userspace TCP/IP stack on a TAP device (one queue per core).
    Tap { name: String, ip: String, gateway: Option<String> },
    /// isobar's userspace TCP/IP stack on an interface through AF_PACKET.
    Packet { interface: String, ip: String, gateway: Option<String> },
}

impl Net {
    fn parse(args: &cli::NetArgs) -> anyhow::Result<Net> {
        let (net, ip, gateway) = (args.net.as_deref(), args.ip.as_deref(), args.gateway.as_deref());
        let net = net.unwrap_or("kernel");
        let need_ip = || {
            ip.map(str::to_string)
                .with_context(|| format!("--net {net} needs --ip ADDR/PREFIX (the userspace stack's address)"))
        };
        let gateway = gateway.map(str::to_string);
        match net.split_once(':') {
            None if net == "kernel" => Ok(Net::Kernel),
            Some(("tap", name)) if !name.is_empty() => Ok(Net::Tap { name: name.to_string(), ip: need_ip()?, gateway }),
            Some(("packet", interface)) if !interface.is_empty() => {
                Ok(Net::Packet { interface: interface.to_string(), ip: need_ip()?, gateway })
            }
            _ => bail!("--net {net}: use kernel, tap:NAME or packet:IFNAME"),
        }
    }
}

fn run(args: RunArgs, mut timeline: snapshot::Timeline) -> anyhow::Result<ExitCode> {
    let path = args.file.as_path();
    let source =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the worker script {}", path.display()))?;
    let name = args.name.clone().unwrap_or_else(|| worker_name(path));
    if let Some(flags) = &args.v8_flags {
        runtime::engine::set_extra_flags(flags);
    }
    let limits = TenantLimits {
        cpu: Duration::from_millis(args.cpu_ms.max(1)),
        heap_bytes: (args.heap_mb as usize) << 20,
        ..TenantLimits::default()
    };
    let settings = TenantSettings {
        name: name.clone(),
        path: path.to_path_buf(),
        source,
        format: script_format(args.format),
        routes: vec![Route::parse("*").expect("`*` is a route")],
        vars: BTreeMap::new(),
        secrets: BTreeMap::new(),
        limits,
        kv: kv_bindings(&args.kv)?,
        services: BTreeMap::new(),
        read_disk: true,
        crons: checked_crons(&args.crons)?,
    };
    let kv_store = (!settings.kv.is_empty()).then(|| KvStoreConfig::Embedded { directory: args.kv_path.clone() });
    timeline.mark("arguments and script");
    let origin = snapshot::prepare(&args.snapshot)?;
    timeline.mark(snapshot_phase(&origin));
    // Core 0 compiles the script and runs its top level in the isolate that then serves it: one
    // isolate before the first response, not a check here and then the core's own. With
    // `--user`, the script's imports are read here instead, as root, before root is given up
    // (docs/dedicated-host.md), at the cost of that second isolate.
    let deployment = if args.hardening.user.is_some() {
        let tenant = Tenant::build_checked(settings, Duration::from_secs(10))?;
        timeline.mark("compile and top level checked");
        runtime::StartDeployment::Built(Deployment::new([Arc::new(tenant)])?)
    } else {
        runtime::StartDeployment::FirstCore(settings)
    };
    let serving = Serving {
        listen: args.listen,
        cores: args.cores,
        admin: args.admin,
        admin_token: None,
        defaults: limits,
        budget: runtime::cache::IsolateBudget { pool: 0, pool_heap_bytes: limits.heap_bytes, ..Default::default() },
        body_limit: args.body_limit,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        reload: None,
        net: Net::parse(&args.network)?,
        tls: None,
        hardening: args.hardening,
        test_scheduled: args.test_scheduled,
        egress: Egress {
            local_allowed: true,
            ca_files: args.network.ca_files.clone(),
            dns: args.network.dns.clone(),
            ..Egress::default()
        },
        kv: kv_store,
        caches: match &args.cache_path {
            Some(path) => isobar_tenancy::config::CacheStoreConfig {
                path_given: true,
                ..isobar_tenancy::config::CacheStoreConfig::in_directory(path.clone())
            },
            None => isobar_tenancy::config::CacheStoreConfig::in_directory(PathBuf::from(".isobar/cache")),
        },
    };
    let mut serving = with_tls_args(serving, &args.tls)?;
    serving.budget.startup_cpu = Duration::from_millis(serving.hardening.startup_cpu_ms);
    start(serving, deployment, &format!("worker {name} from {}", path.display()), timeline)
}

/// The start-up phase name for V8 and its snapshot, by where the snapshot came from.
fn snapshot_phase(origin: &snapshot::Origin) -> &'static str {
    match origin {
        snapshot::Origin::File(_) => "V8 + snapshot from its file",
        snapshot::Origin::Cache(_) => "V8 + snapshot from the cache",
        snapshot::Origin::Built => "V8 + snapshot built",
    }
}

/// `run --cron`: each a valid expression (the error says which and why), duplicates dropped.
fn checked_crons(crons: &[String]) -> anyhow::Result<Vec<String>> {
    isobar_tenancy::cron::tenant_schedules(crons)
        .map_err(|error| anyhow::anyhow!("--cron {:?}: {}", crons[error.index], error.reason))
}

/// `run`'s `--tls-cert`/`--tls-key`/`--tls-listen`: the certificates read and checked now, and
/// read again on SIGHUP.
fn with_tls_args(mut serving: Serving, args: &TlsArgs) -> anyhow::Result<Serving> {
    if args.tls_certs.is_empty() {
        return Ok(serving);
    }
    if args.tls_certs.len() != args.tls_keys.len() {
        bail!(
            "give one --tls-key for each --tls-cert (got {} certificate(s) and {} key(s))",
            args.tls_certs.len(),
            args.tls_keys.len()
        );
    }
    let files: Vec<CertKeyFiles> = args
        .tls_certs
        .iter()
        .zip(&args.tls_keys)
        .map(|(cert, key)| CertKeyFiles { cert_chain: cert.clone(), key: key.clone() })
        .collect();
    let config = netstack::tls::load_server_config(&files).context("--tls-cert/--tls-key")?;
    let handshake_timeout = Duration::from_millis(args.tls_handshake_timeout_ms);
    serving.tls = Some(TlsServing { listen: args.tls_listen, config, handshake_timeout });
    serving.reload = Some(Reload::Certificates { files, handshake_timeout });
    Ok(serving)
}

fn snapshot(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let file = runtime::engine::snapshot_file().map_err(|e| anyhow::anyhow!("V8 failed to start: {e}"))?;
    std::fs::write(&args.out, &file).with_context(|| format!("writing {}", args.out.display()))?;
    println!("snapshot written to {} ({} bytes)", args.out.display(), file.len());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn serve(args: ServeArgs, mut timeline: snapshot::Timeline) -> anyhow::Result<ExitCode> {
    if let Some(flags) = &args.v8_flags {
        runtime::engine::set_extra_flags(flags);
    }
    let config = config::load(&args.config)?;
    timeline.mark("configuration");
    let started = Instant::now();
    let origin = snapshot::prepare(&args.snapshot)?;
    tracing::info!("V8 and isobar's snapshot ready in {:?} ({origin})", started.elapsed());
    timeline.mark(snapshot_phase(&origin));
    let started = Instant::now();
    // One tenant: core 0 compiles it and runs its top level in the isolate that then serves it,
    // as `isobar run` does (one isolate before the first response, not a check here and then
    // the core's own). More: each script is checked here first, so that a tenant that fails to
    // load is named before any core starts, and no core makes an isolate per tenant at start.
    // With `--user`, imports are read here, as root (see `run`).
    let (deployment, first) = match config.tenants.as_slice() {
        [tenant] if args.hardening.user.is_none() => {
            check_service_targets(&config)?;
            let source = std::fs::read_to_string(&tenant.script)
                .map_err(|e| config::ConfigError::script(&config, tenant, &e))?;
            let label = format!("{}: tenant {}", config.path.display(), tenant.name);
            (runtime::StartDeployment::FirstCore(tenant.settings(source)), Some(label))
        }
        _ => {
            let (deployment, checked) = build_deployment(&config, None)?;
            timeline.mark("compile, first tenant of each script checked");
            check_top_levels(&deployment, None, &checked)?;
            timeline.mark("other top levels checked");
            tracing::info!(
                tenants = deployment.tenants.len(),
                "tenants compiled and checked in {:?}",
                started.elapsed()
            );
            (runtime::StartDeployment::Built(deployment), None)
        }
    };
    let defaults = TenantLimits::from(config.default_limits);
    let serving = Serving {
        listen: args.listen.unwrap_or(config.server.listen),
        cores: args.cores.or(config.server.cores),
        admin: args.admin.or(config.server.admin),
        admin_token: config.server.admin_token.clone(),
        defaults,
        budget: runtime::cache::IsolateBudget {
            startup_cpu: Duration::from_millis(args.hardening.startup_cpu_ms),
            ..config::isolate_budget(&config)
        },
        body_limit: config.server.body_limit_bytes,
        drain_timeout: Duration::from_secs(config.server.drain_timeout_s),
        reload: Some(Reload::Config {
            path: args.config.clone(),
            tls_listen: config.server.tls.as_ref().map(|tls| tls.listen),
        }),
        net: Net::parse(&args.network)?,
        tls: match (&config.server.tls, config::tls_server_config(&config)?) {
            (Some(tls), Some(server_config)) => Some(TlsServing {
                listen: tls.listen,
                config: server_config,
                handshake_timeout: Duration::from_millis(tls.handshake_timeout_ms),
            }),
            _ => None,
        },
        hardening: args.hardening,
        test_scheduled: false,
        egress: Egress {
            local_allowed: false,
            allow: config.egress.allow.clone(),
            deny: config.egress.deny.clone(),
            ca_files: config.egress.ca_files.iter().cloned().chain(args.network.ca_files.iter().cloned()).collect(),
            dns: args.network.dns.clone(),
        },
        // A store is opened only when some tenant has a KV binding (a deploy that adds the first
        // one is refused: see `Control`).
        kv: config.tenants.iter().any(|t| !t.kv.is_empty()).then(|| config.kv.clone()),
        caches: config.cache.clone(),
    };
    if let Some(admin) = serving.admin
        && !admin.ip().is_loopback()
        && serving.admin_token.is_none()
    {
        bail!("--admin {admin} is not a loopback address: set server.admin_token in {}", args.config.display());
    }
    let what = format!("{} tenant(s) from {}", config.tenants.len(), args.config.display());
    start(serving, deployment, &what, timeline).map_err(|error| {
        // Core 0's tenant failed to load: say which one of the configuration it was.
        let tenant_failed = matches!(
            error.downcast_ref::<runtime::StartError>(),
            Some(runtime::StartError::Core(runtime::scheduler::CoreError::Tenant(_)))
        );
        match first {
            Some(label) if tenant_failed => error.context(label),
            _ => error,
        }
    })
}

/// `isobar run --kv NAME[=NAMESPACE]`: the bindings, checked as the configuration file's are.
fn kv_bindings(flags: &[String]) -> anyhow::Result<Vec<isobar_tenancy::KvBinding>> {
    let mut bindings: Vec<isobar_tenancy::KvBinding> = Vec::new();
    for flag in flags {
        let (binding, namespace) = flag.split_once('=').unwrap_or((flag, flag));
        if !isobar_tenancy::tenant::is_binding_name(binding) {
            bail!("--kv {flag}: the binding {binding:?} must be {}", isobar_tenancy::tenant::BINDING_NAME_RULE);
        }
        if !isobar_tenancy::tenant::is_namespace_name(namespace) {
            bail!("--kv {flag}: the namespace {namespace:?} must be {}", isobar_tenancy::tenant::NAMESPACE_NAME_RULE);
        }
        if bindings.iter().any(|b| b.binding == binding) {
            bail!("--kv {flag}: {binding} is given twice");
        }
        bindings.push(isobar_tenancy::KvBinding { binding: binding.to_string(), namespace: namespace.to_string() });
    }
    Ok(bindings)
}

/// Opens the KV store: the embedded one in its directory (before the seal: its thread never
/// opens a file later), whose thread confines itself to the storage role once the process is
/// sealed; or the Valkey/Redis settings each core's engine connects with (nothing is opened
/// here: the cores connect on their rings, and a server that is down fails operations, not the
/// start).
fn open_kv(store: &KvStoreConfig, sandbox: Option<Arc<Sandbox>>) -> anyhow::Result<runtime::KvStore> {
    let directory = match store {
        KvStoreConfig::Embedded { directory } => directory,
        KvStoreConfig::Redis { nodes, cluster } => {
            let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
            tracing::info!("KV store: Redis {} {}", if *cluster { "cluster" } else { "server" }, nodes.join(", "));
            let config = if *cluster {
                isobar_state::kv::redis::RedisConfig::cluster(nodes)
            } else {
                isobar_state::kv::redis::RedisConfig { nodes, ..isobar_state::kv::redis::RedisConfig::standalone("") }
            };
            return Ok(runtime::KvStore::Redis { config, registry: isobar_state::kv::NamespaceRegistry::new() });
        }
    };
    std::fs::create_dir_all(directory)
        .with_context(|| format!("cannot create the KV directory {}", directory.display()))?;
    let file = directory.join("kv.redb");
    let confine = Box::new(move || {
        if let Some(sandbox) = sandbox {
            match sandbox.wait_and_confine(Role::Storage) {
                Ok(()) | Err(kernel_shim::seccomp::SeccompError::Abandoned) => {}
                Err(error) => tracing::error!("the KV store's thread could not confine itself: {error}"),
            }
        }
    });
    let store = isobar_state::kv::embedded::EmbeddedKv::open_with(
        isobar_state::kv::embedded::EmbeddedConfig::new(&file),
        Arc::new(isobar_state::clock::SystemClock),
        isobar_state::kv::NamespaceRegistry::new(),
        confine,
    )
    .with_context(|| format!("cannot open the KV store {} (is another isobar process using it?)", file.display()))?;
    tracing::info!("KV store: {}", file.display());
    Ok(runtime::KvStore::Embedded(Arc::new(store)))
}

/// Opens the host's Cache API store (before the seal: the directory is made and the store's
/// lock file opened now), whose thread confines itself to the cache role once the process is
/// sealed.
///
/// It is opened always, whatever the tenants: `caches` is a global of every Worker, with no
/// binding that says which tenants use it, and a deploy through the admin API may bring the
/// first script that does. An idle store costs one thread asleep in a channel wait (it wakes
/// every 10 s to sweep expired entries), a lock file, and memory only for what it holds. A
/// directory the operator did not name that cannot be used (a read-only configuration
/// directory, say) gives way to one under the system's temporary directory, with a warning, so
/// a server starts without a `[cache]` table wherever it started before (that directory is left
/// behind, empty, at exit); a named one that cannot be used is a start-up error.
fn open_caches(
    setting: &isobar_tenancy::config::CacheStoreConfig,
    sandbox: Option<Arc<Sandbox>>,
) -> anyhow::Result<Arc<isobar_state::cache::CacheStore>> {
    let open = |directory: &std::path::Path| {
        let mut config = isobar_state::cache::CacheConfig::new(directory);
        config.memory_bytes_max = setting.memory_mb << 20;
        config.disk_bytes_max = setting.disk_mb << 20;
        let sandbox = sandbox.clone();
        let confine = Box::new(move || {
            if let Some(sandbox) = sandbox {
                match sandbox.wait_and_confine(Role::Cache) {
                    Ok(()) | Err(kernel_shim::seccomp::SeccompError::Abandoned) => {}
                    Err(error) => tracing::error!("the cache store's thread could not confine itself: {error}"),
                }
            }
        });
        isobar_state::cache::CacheStore::open_with(config, Arc::new(isobar_state::clock::SystemClock), confine)
    };
    let mut directory = setting.directory.clone();
    let store = match open(&directory) {
        Ok(store) => store,
        Err(error) if setting.path_given => {
            bail!(
                "cannot open the cache directory {}: {error}; choose a writable directory",
                setting.directory.display()
            )
        }
        Err(error) => {
            // One per process: a shared name could belong to another user.
            directory = std::env::temp_dir().join(format!("isobar-cache-{}", std::process::id()));
            tracing::warn!(
                "cannot use the cache directory {} ({error}); using {} (set [cache] path, or --cache-path, to choose)",
                setting.directory.display(),
                directory.display()
            );
            open(&directory).with_context(|| format!("cannot open the cache directory {}", directory.display()))?
        }
    };
    tracing::info!(
        "cache store: {} ({} MiB in memory, {} MiB on disk)",
        directory.display(),
        setting.memory_mb,
        setting.disk_mb
    );
    Ok(Arc::new(store))
}

/// Compiles every tenant of `config`. Tenants identical to one in `current` keep that version,
/// so a reload does not throw away their isolates.
///
/// At start-up (no `current`), the first tenant of each script (and memory limit) is compiled
/// and its top level run in one fresh isolate (`Tenant::build_checked`) rather than in the
/// compiler isolate and then again in a checking one: an isolate fewer (~4 ms of CPU) per
/// distinct script. Their names come back beside the deployment, so that [`check_top_levels`]
/// counts them as checked; every other tenant, and every tenant of a reload, is compiled in the
/// compiler isolate and checked there.
fn build_deployment(
    config: &config::Config,
    current: Option<&Deployment>,
) -> anyhow::Result<(Deployment, Vec<Arc<str>>)> {
    check_service_targets(config)?;
    let mut tenants = Vec::with_capacity(config.tenants.len());
    let mut checked: Vec<Arc<str>> = Vec::new();
    let mut scripts_checked: Vec<(&Path, usize)> = Vec::new();
    for tenant in &config.tenants {
        let source =
            std::fs::read_to_string(&tenant.script).map_err(|e| config::ConfigError::script(config, tenant, &e))?;
        let settings = tenant.settings(source);
        let script = (tenant.script.as_path(), settings.limits.heap_bytes);
        let check_now = current.is_none() && !scripts_checked.contains(&script);
        let built = if check_now { Tenant::build_checked(settings, CHECK_CPU) } else { Tenant::build(settings) }
            .with_context(|| format!("{}: tenant {}", config.path.display(), tenant.name))?;
        if check_now {
            scripts_checked.push(script);
            checked.push(built.name.clone());
        }
        let kept = current.and_then(|d| d.tenants.get(tenant.name.as_str())).filter(|old| old.same_as(&built)).cloned();
        tenants.push(kept.unwrap_or_else(|| Arc::new(built)));
    }
    Ok((Deployment::new(tenants)?, checked))
}

/// Every service binding names a tenant of the configuration.
fn check_service_targets(config: &config::Config) -> anyhow::Result<()> {
    for tenant in &config.tenants {
        for (binding, target) in &tenant.services {
            if !config.tenants.iter().any(|t| &t.name == target) {
                bail!(
                    "{}:{}: tenant {}: services.{binding} names tenant {target:?}, which is not in the configuration",
                    config.path.display(),
                    tenant.name_at.line,
                    tenant.name
                );
            }
        }
    }
    Ok(())
}

/// Whether `tenant` is the same version `current` serves (kept across a reload by
/// [`build_deployment`], its isolates with it).
fn kept_from(current: Option<&Deployment>, tenant: &Tenant) -> bool {
    current.and_then(|c| c.tenants.get(&tenant.name)).is_some_and(|old| old.version == tenant.version)
}

/// CPU time a configured tenant's top level may use while it is checked (as an admin `PUT`).
const CHECK_CPU: Duration = Duration::from_secs(2);

/// Runs the top level of every tenant in `next` that is new or changed against `current` (and
/// not `already` checked while it was built) once, off the cores, as an admin `PUT` does: a script that throws, sets up no handler or spins at
/// load is refused with its tenant's name before it can reach a core. Tenants whose top level
/// sees the same thing (an ES module's top level sees no `env`) are checked once.
fn check_top_levels(next: &Deployment, current: Option<&Deployment>, already: &[Arc<str>]) -> anyhow::Result<()> {
    let mut checked: Vec<(&runtime::WorkerSpec, usize)> = Vec::new();
    let mut tenants: Vec<&Arc<Tenant>> = next.tenants.values().collect();
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    for tenant in &tenants {
        if already.contains(&tenant.name) {
            checked.push((&tenant.spec, tenant.limits.heap_bytes));
        }
    }
    for tenant in tenants {
        if kept_from(current, tenant) || already.contains(&tenant.name) {
            continue;
        }
        let (spec, heap_bytes) = (&tenant.spec, tenant.limits.heap_bytes);
        // The memory limit is part of what a top level sees (its heap, its Wasm memories' caps).
        let same_top_level = |(seen, seen_heap): &(&runtime::WorkerSpec, usize)| {
            *seen_heap == heap_bytes
                && seen.format == spec.format
                && seen.source == spec.source
                && seen.modules == spec.modules
                && (spec.format == runtime::ScriptFormat::Module || (seen.env == spec.env && seen.kv == spec.kv))
        };
        if checked.iter().any(same_top_level) {
            continue;
        }
        runtime::Worker::validate(spec, heap_bytes, CHECK_CPU).with_context(|| format!("tenant {}", tenant.name))?;
        checked.push((spec, heap_bytes));
    }
    Ok(())
}

/// Memory mappings one isolate takes, with a margin (runtime knows its V8's).
const MAPS_PER_ISOLATE: u64 = runtime::isolate::MAPS_PER_ISOLATE;
/// Mappings kept for everything else (the binary, stacks, allocator, rings, sockets).
const MAPS_RESERVED: u64 = 16_384;

/// Makes sure the process may map memory for every isolate its budget allows: V8 aborts the
/// whole process when an isolate cannot reserve its memory, so isobar raises `vm.max_map_count`
/// if it can, and otherwise lowers the per-core isolate budget to what fits.
fn fit_isolate_budget(budget: &mut runtime::cache::IsolateBudget, cores: usize) {
    let per_core = (budget.count_max + budget.pool) as u64;
    let needed = MAPS_RESERVED + MAPS_PER_ISOLATE * (per_core * cores as u64 + 2);
    let available = match kernel_shim::limits::max_map_count() {
        Ok(current) if current >= needed => return,
        Ok(current) => match kernel_shim::limits::raise_max_map_count(needed) {
            Ok(raised) => {
                tracing::info!("raised vm.max_map_count from {current} to {raised} for {per_core} isolates per core");
                return;
            }
            Err(error) => {
                tracing::warn!("cannot raise vm.max_map_count from {current} to {needed} ({error})");
                current
            }
        },
        Err(error) => {
            tracing::warn!("cannot read vm.max_map_count ({error}); assuming 65530");
            65_530
        }
    };
    let fits = (available.saturating_sub(MAPS_RESERVED) / MAPS_PER_ISOLATE / cores as u64) as usize;
    let count_max = fits.saturating_sub(budget.pool).max(1);
    if count_max < budget.count_max {
        tracing::warn!(
            "isolates per core lowered from {} to {count_max}: vm.max_map_count={available} allows that many \
             (about {MAPS_PER_ISOLATE} mappings per isolate); raise it with `sysctl vm.max_map_count={needed}`",
            budget.count_max
        );
        budget.count_max = count_max;
    }
}

/// What the cores' subrequests need, read now (before the process seals itself): nameservers,
/// trusted CAs, the egress policy with isobar's own listeners and the host's addresses in it.
fn outbound_config(
    egress: &Egress,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
) -> anyhow::Result<runtime::outbound::OutboundConfig> {
    let dns = match &egress.dns {
        Some(list) => {
            // `IP` (port 53) or `IP:PORT` / `[IPv6]:PORT`.
            let mut servers = Vec::new();
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let server = match item.parse::<SocketAddr>() {
                    Ok(addr) => addr,
                    Err(_) => SocketAddr::new(
                        item.parse().with_context(|| format!("--dns: {item:?} is not an IP address or IP:PORT"))?,
                        53,
                    ),
                };
                servers.push(server);
            }
            servers.truncate(netstack::dns::NAMESERVERS_MAX);
            netstack::ResolvConf { nameservers: servers, ..netstack::ResolvConf::default() }
        }
        None => match netstack::ResolvConf::load(std::path::Path::new("/etc/resolv.conf")) {
            Ok((conf, _ignored)) => conf,
            Err(error) => {
                tracing::warn!("cannot read /etc/resolv.conf ({error}); subrequests ask 127.0.0.1 for names");
                netstack::ResolvConf::default()
            }
        },
    };
    let system = std::path::Path::new(netstack::tls::SYSTEM_CA_BUNDLE);
    let files = netstack::tls::ClientTlsFiles {
        ca_bundle: system.exists().then(|| system.to_path_buf()),
        extra_cas: egress.ca_files.clone(),
    };
    let tls = if files.ca_bundle.is_none() && files.extra_cas.is_empty() {
        tracing::warn!("no CA bundle at {}: https: subrequests are not available", system.display());
        None
    } else {
        let lazy = netstack::tls::LazyClientConfig::read(&files).context("the CAs trusted for https: subrequests")?;
        Some(Arc::new(lazy))
    };
    let mut policy = if egress.local_allowed {
        runtime::outbound::EgressPolicy::local_allowed()
    } else {
        runtime::outbound::EgressPolicy::strict()
    };
    policy.allow = egress.allow.clone();
    policy.deny = egress.deny.clone();
    policy.own_listeners = std::iter::once(listen).chain(admin).collect();
    policy.host_addrs = kernel_shim::net::host_addresses().unwrap_or_else(|error| {
        tracing::warn!("cannot list the host's addresses ({error})");
        Vec::new()
    });
    Ok(runtime::outbound::OutboundConfig {
        dns,
        tls,
        policy: Arc::new(policy),
        limits: runtime::outbound::OutboundLimits::default(),
    })
}

/// The system-call filter `--seccomp` asks for, compiled (None: off).
fn build_sandbox(mode: Seccomp) -> anyhow::Result<Option<Arc<Sandbox>>> {
    let mode = match mode {
        Seccomp::Off => return Ok(None),
        Seccomp::Kill => kernel_shim::seccomp::Mode::Kill,
        Seccomp::Log => kernel_shim::seccomp::Mode::Log,
    };
    let host = if kernel_shim::pid1::is_init() {
        kernel_shim::seccomp::Host::GuestInit
    } else {
        kernel_shim::seccomp::Host::Process
    };
    let mut sandbox = Sandbox::new(mode, host)?;
    if std::env::var_os(TEST_VIOLATION_ENV).is_some() {
        tracing::warn!("{TEST_VIOLATION_ENV} is set: a core will make a forbidden system call");
        sandbox = sandbox.with_violation_after(Role::Core);
    }
    Ok(Some(Arc::new(sandbox)))
}

/// Releases the threads waiting for the seal if start-up stops before it.
struct SealOrAbandon(Option<Arc<Sandbox>>);

impl Drop for SealOrAbandon {
    fn drop(&mut self) {
        if let Some(sandbox) = &self.0 {
            sandbox.abandon();
        }
    }
}

/// Binds the listeners, starts the cores (and the admin API), drops root if asked, seals the
/// process with the system-call filter, prints where it listens, and serves until a signal
/// drains it.
fn start(
    mut serving: Serving,
    deployment: runtime::StartDeployment,
    what: &str,
    mut timeline: snapshot::Timeline,
) -> anyhow::Result<ExitCode> {
    match kernel_shim::limits::raise_open_files_limit() {
        Ok(files) => tracing::debug!(files, "open files limit"),
        Err(error) => tracing::warn!("cannot raise the open files limit: {error}"),
    }
    let usable = kernel_shim::cpu::usable_cpus().context("cannot read the CPUs this process may run on")?;
    let cores = serving.cores.unwrap_or(usable.len());
    if cores == 0 || cores > usable.len() {
        bail!(
            "--cores {cores}: this process may run on {} CPU(s) ({:?}); choose 1..={}",
            usable.len(),
            usable,
            usable.len()
        );
    }
    let cpus: Vec<usize> = usable[..cores].to_vec();
    let account = serving.hardening.user.as_deref().map(kernel_shim::user::lookup).transpose()?;
    let sandbox = build_sandbox(serving.hardening.seccomp)?;
    let _seal_or_abandon = SealOrAbandon(sandbox.clone());
    fit_isolate_budget(&mut serving.budget, cores);
    if let Some(tls) = &serving.tls {
        for (what, other) in [("--listen", Some(serving.listen)), ("--admin", serving.admin)] {
            if let Some(other) = other
                && same_listener(tls.listen, other)
            {
                bail!("the HTTPS listener {} and {what} {other} must use different ports", tls.listen);
            }
        }
    }
    let tls_listen = serving.tls.as_ref().map(|tls| tls.listen);
    let (net, addr, tls_addr) = open_network(&serving.net, serving.listen, tls_listen, cores)?;
    let admin_listener = match serving.admin {
        Some(admin) => {
            let fd = kernel_shim::net::reuseport_listener(admin, 64)
                .with_context(|| format!("cannot listen on {admin} (admin)"))?;
            let addr = kernel_shim::net::local_addr(std::os::fd::AsFd::as_fd(&fd)).context("admin address")?;
            Some((fd, addr))
        }
        None => None,
    };
    timeline.mark("listeners");
    // Everything that needs root is open: listeners, links, the map-count sysctl.
    if let Some(account) = &account {
        kernel_shim::user::become_user(account)?;
        tracing::info!(uid = account.uid, gid = account.gid, "now running as user {}", account.name);
    }

    let http = netstack::http1::Limits { body_bytes_max: serving.body_limit, ..Default::default() };
    let caps = netstack::ConnCaps {
        per_client_max: serving.hardening.conns_per_client,
        total_max: serving.hardening.conns_max,
    };
    let outbound = outbound_config(&serving.egress, addr, admin_listener.as_ref().map(|(_, a)| *a))?;
    timeline.mark("subrequest settings");
    let kv = serving.kv.as_ref().map(|store| open_kv(store, sandbox.clone())).transpose()?;
    let caches = open_caches(&serving.caches, sandbox.clone())?;
    timeline.mark("KV and cache stores");
    let config = runtime::ServerConfig {
        deployment,
        net,
        cpus: cpus.clone(),
        budget: serving.budget,
        http,
        net_limits: Default::default(),
        ring: ring_config(&serving.net),
        sandbox: sandbox.clone(),
        admission: Some(netstack::ConnAdmission::new(caps)),
        tls: serving.tls.as_ref().zip(tls_addr).map(|(tls, tls_addr)| netstack::ServerTls {
            handshake_timeout: tls.handshake_timeout,
            ..netstack::ServerTls::new(tls_addr.port(), tls.config.clone())
        }),
        outbound,
        test_scheduled: serving.test_scheduled,
        kv,
        caches: Some(caches),
    };
    let started = Instant::now();
    let mut server = runtime::Server::start(config)?;
    tracing::info!("{cores} core(s) ready in {:?}", started.elapsed());
    timeline.mark("cores");
    let admin_addr = match admin_listener {
        Some((fd, admin_addr)) => {
            let admin = runtime::admin::AdminConfig {
                listener: fd,
                token: serving.admin_token.clone(),
                defaults: serving.defaults,
                sandbox: sandbox.clone(),
            };
            runtime::admin::spawn(admin, server.control().clone()).context("cannot start the admin thread")?;
            Some(admin_addr)
        }
        None => None,
    };
    let signals = spawn_signal_thread(sandbox.clone())?;
    if let Some(sandbox) = &sandbox {
        seal(sandbox)?;
    }
    timeline.mark("admin, signals, seal");
    tracing::info!("start-up took {} from main", timeline.summary());
    let cpu_list: Vec<String> = cpus.iter().map(usize::to_string).collect();
    // Before the HTTP line, which tells a waiting reader that start-up is over.
    if let Some(tls_addr) = tls_addr {
        println!("isobar listening on https://{tls_addr} (TLS 1.2 and 1.3, HTTP/1.1)");
    }
    println!("isobar listening on http://{addr} ({what}, {cores} core(s) on CPU {})", cpu_list.join(","));
    if let Some(admin_addr) = admin_addr {
        println!("isobar admin on http://{admin_addr}");
    }
    let _ = std::io::stdout().flush();
    wait_and_drain(&mut server, &signals, serving.drain_timeout, serving.reload.as_ref())
}

/// Start-up is over: every thread that needed a ring or a socket has it. The process-wide
/// filter goes on every thread at once; each thread then narrows itself to its role (the cores
/// and the admin thread are waiting for this; the watchdog and the signal thread look now and
/// then; the log thread is asked), the main thread last.
fn seal(sandbox: &Arc<Sandbox>) -> anyhow::Result<()> {
    sandbox.seal_process()?;
    confine_log_thread(sandbox)?;
    sandbox.confine(Role::Main)?;
    let mode = match sandbox.mode() {
        kernel_shim::seccomp::Mode::Kill => "a forbidden system call stops the process",
        _ => "forbidden system calls are logged by the kernel",
    };
    tracing::info!("system-call filter on ({mode}); io_uring restricted to isobar's operations");
    Ok(())
}

/// The thread that waits for SIGINT, SIGTERM and SIGHUP (blocked in every thread) and passes
/// them on. Until it has confined itself it waits in short slices, to look at the sandbox.
fn spawn_signal_thread(sandbox: Option<Arc<Sandbox>>) -> anyhow::Result<Receiver<Signal>> {
    let (signals_tx, signals) = unbounded::<Signal>();
    std::thread::Builder::new()
        .name("isobar-signals".into())
        .spawn(move || {
            let mut pending = sandbox;
            loop {
                let waited = match &pending {
                    Some(sandbox) => match sandbox.try_confine(Role::Signals) {
                        Ok(false) => signal::wait_signal_timeout(HANDLED_SIGNALS, Duration::from_millis(20)),
                        Ok(true) | Err(kernel_shim::seccomp::SeccompError::Abandoned) => {
                            pending = None;
                            continue;
                        }
                        Err(error) => {
                            tracing::error!("the signal thread could not confine itself: {error}");
                            pending = None;
                            continue;
                        }
                    },
                    None => signal::wait_signal(HANDLED_SIGNALS).map(Some),
                };
                match waited {
                    Ok(Some(sig)) => {
                        if signals_tx.send(sig).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(signals)
}

/// Opens what the cores serve on: a listener per core (kernel sockets; and an HTTPS one per core
/// with `tls_listen`), or a TAP queue or an AF_PACKET socket per core for the userspace stack
/// (which accepts on the HTTPS port too). Returns it, the address it serves HTTP on, and the
/// one it serves HTTPS on.
fn open_network(
    net: &Net,
    listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
    cores: usize,
) -> anyhow::Result<(runtime::server::ServerNet, SocketAddr, Option<SocketAddr>)> {
    use kernel_shim::link;
    use netstack::smol::IpCidr;
    let smol_config = |mac: [u8; 6],
                       ip: &str,
                       gateway: &Option<String>,
                       mtu: u32|
     -> anyhow::Result<(netstack::SmolConfig, SocketAddr, Option<SocketAddr>)> {
        let cidr: IpCidr =
            ip.parse().map_err(|_| anyhow::anyhow!("--ip {ip}: use ADDRESS/PREFIX, e.g. 10.0.0.2/24"))?;
        let mut config = netstack::SmolConfig::new(mac, vec![cidr], listen.port());
        // The stack serves every port on its own address: the HTTPS listener is its port.
        let tls_addr = match tls_listen {
            None => None,
            Some(tls) if tls.port() == 0 || tls.port() == listen.port() => {
                bail!("the HTTPS listener {tls}: the userspace stack needs a port of its own, not 0 and not --listen's")
            }
            Some(tls) => {
                config.extra_listen_ports = vec![tls.port()];
                Some(SocketAddr::new(cidr.address().into(), tls.port()))
            }
        };
        if let Some(gateway) = gateway {
            config.gateways = vec![gateway.parse().with_context(|| format!("--gateway {gateway}"))?];
        }
        config.mtu = mtu as usize;
        config.vnet_hdr = true;
        config.check().map_err(|e| anyhow::anyhow!("the userspace stack: {e}"))?;
        let addr = SocketAddr::new(cidr.address().into(), listen.port());
        Ok((config, addr, tls_addr))
    };
    match net {
        Net::Kernel => {
            let (listeners, addr) = bind_per_core(listen, cores)?;
            let (tls_listeners, tls_addr) = match tls_listen {
                Some(tls) => {
                    let (listeners, addr) = bind_per_core(tls, cores)?;
                    (listeners, Some(addr))
                }
                None => (Vec::new(), None),
            };
            Ok((runtime::server::ServerNet::Kernel { listeners, tls_listeners }, addr, tls_addr))
        }
        Net::Tap { name, ip, gateway } => {
            // One queue per core, with virtio-net headers so the kernel can skip checksums.
            let fds = link::open_tap(name, cores, true)?;
            let mtu = link::interface(name).map(|i| i.mtu).unwrap_or(1500);
            let (config, addr, tls_addr) = smol_config(stack_mac(ip), ip, gateway, mtu)?;
            Ok((
                runtime::server::ServerNet::Smol { fds, kind: netstack::LinkKind::Tap, config: Box::new(config) },
                addr,
                tls_addr,
            ))
        }
        Net::Packet { interface, ip, gateway } => {
            link::set_up(interface)?;
            // Frames no longer than the MTU: no GRO super-frames, no partial checksums to finish.
            if let Err(error) = link::set_offloads(interface, false) {
                tracing::warn!("cannot turn offloads off on {interface} ({error}); relying on virtio-net headers");
            }
            let info = link::interface(interface)?;
            let group = (std::process::id() & 0xffff) as u16;
            let fds = (0..cores).map(|_| link::open_packet(interface, group, true)).collect::<Result<Vec<_>, _>>()?;
            let (config, addr, tls_addr) = smol_config(info.mac, ip, gateway, info.mtu)?;
            Ok((
                runtime::server::ServerNet::Smol { fds, kind: netstack::LinkKind::Packet, config: Box::new(config) },
                addr,
                tls_addr,
            ))
        }
    }
}

/// Ring sizing per network: an AF_PACKET socket may hand over GSO super-frames (a veth peer with
/// TSO on), so its provided buffers hold 64 KiB frames; kernel sockets and TAP reads (which
/// bring their own buffers) keep the default.
fn ring_config(net: &Net) -> kernel_shim::ring::RingConfig {
    match net {
        Net::Packet { .. } => {
            kernel_shim::ring::RingConfig { recv_buffers: 64, recv_buffer_bytes: 64 * 1024 + 64, ..Default::default() }
        }
        _ => kernel_shim::ring::RingConfig::default(),
    }
}

/// The userspace stack's MAC on a TAP: locally administered, unicast, derived from its address
/// (the TAP device's own MAC belongs to the kernel side of the link).
fn stack_mac(ip: &str) -> [u8; 6] {
    let digest = ip.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let b = digest.to_be_bytes();
    [0x02, 0x69, b[0], b[1], b[2], b[3]]
}

/// One listener per core on `listen`; the first resolves port 0 and the others share its
/// address through SO_REUSEPORT, so the kernel spreads new connections over them.
fn bind_per_core(listen: SocketAddr, cores: usize) -> anyhow::Result<(Vec<OwnedFd>, SocketAddr)> {
    let first =
        kernel_shim::net::reuseport_listener(listen, 1024).with_context(|| format!("cannot listen on {listen}"))?;
    let addr =
        kernel_shim::net::local_addr(std::os::fd::AsFd::as_fd(&first)).context("cannot read the listening address")?;
    let mut listeners = vec![first];
    for _ in 1..cores {
        listeners.push(
            kernel_shim::net::reuseport_listener(addr, 1024).with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    Ok((listeners, addr))
}

/// Re-reads what SIGHUP reloads; on any error everything stays as it was.
fn reload(server: &runtime::Server, reload: &Reload) {
    match reload {
        Reload::Config { path, tls_listen } => reload_config(server, path, *tls_listen),
        Reload::Certificates { files, handshake_timeout } => {
            let result = netstack::tls::load_server_config(files)
                .map_err(anyhow::Error::from)
                .and_then(|config| Ok(server.control().set_tls(config, *handshake_timeout)?));
            match result {
                Ok(()) => tracing::info!("reloaded the TLS certificates ({} file pair(s))", files.len()),
                Err(error) => {
                    tracing::error!("reload of the TLS certificates failed; still serving the previous ones: {error:#}")
                }
            }
        }
    }
}

/// Re-reads the configuration and deploys what changed, then hands the cores the certificates
/// of `[server.tls]`. A file that cannot be read or used (the configuration, a script, a
/// certificate or key) changes nothing: the error is logged and the old tenants and
/// certificates stay.
fn reload_config(server: &runtime::Server, path: &Path, tls_listen: Option<SocketAddr>) {
    let control = server.control();
    let result = config::load(path).map_err(anyhow::Error::from).and_then(|config| {
        // Read first, so that a broken certificate stops the reload before anything changed.
        let tls_config = config::tls_server_config(&config)?;
        // Built, checked and deployed under the control plane's change lock, so an admin PUT
        // racing this reload is applied wholly before or wholly after it, never in between.
        let (kept, total) = control.change(|current| {
            let (next, _) = build_deployment(&config, Some(current.as_ref()))?;
            check_top_levels(&next, Some(current.as_ref()), &[])?;
            let kept = next.tenants.values().filter(|t| kept_from(Some(current.as_ref()), t)).count();
            let total = next.tenants.len();
            Ok::<_, anyhow::Error>((Some(next), (kept, total)))
        })?;
        let tls = match (&config.server.tls, tls_config) {
            (Some(tls), Some(tls_config)) if control.serves_tls() => {
                control.set_tls(tls_config, Duration::from_millis(tls.handshake_timeout_ms))?;
                if Some(tls.listen) != tls_listen {
                    tracing::warn!(
                        "server.tls.listen changed to {}: the HTTPS listener stays where it is until a restart",
                        tls.listen
                    );
                }
                "; certificates reloaded"
            }
            (Some(_), _) => {
                tracing::warn!("[server.tls] was added: restart isobar to open the HTTPS listener");
                ""
            }
            (None, _) if control.serves_tls() => {
                tracing::warn!("[server.tls] was removed: HTTPS goes on with the certificates it has until a restart");
                ""
            }
            (None, _) => "",
        };
        Ok((kept, total, tls))
    });
    match result {
        Ok((kept, total, tls)) => {
            tracing::info!("reloaded {}: {total} tenant(s), {} new or changed{tls}", path.display(), total - kept)
        }
        Err(error) => {
            tracing::error!("reload of {} failed; still serving the previous configuration: {error:#}", path.display())
        }
    }
}

/// Serves until SIGINT or SIGTERM, then drains; a second signal exits at once. SIGHUP reloads
/// the configuration file, if there is one.
fn wait_and_drain(
    server: &mut runtime::Server,
    signals: &Receiver<Signal>,
    drain_timeout: Duration,
    reloads: Option<&Reload>,
) -> anyhow::Result<ExitCode> {
    let mut draining_since: Option<Instant> = None;
    let mut exited = 0;
    let mut failed = false;
    // Cron Triggers fire from here: one table for the process, each firing sent to one core.
    let mut next_cron = server.control().poll_crons(runtime::server::unix_now_ms());
    loop {
        let timeout = match draining_since {
            Some(since) => after(drain_timeout.saturating_sub(since.elapsed())),
            None => never(),
        };
        // Woken at least once a second: a deploy (SIGHUP, the admin API) may have added a
        // schedule due sooner, and the wall clock may jump.
        let cron_due = match draining_since {
            None => after(Duration::from_millis(
                next_cron.map_or(1000, |at| at.saturating_sub(runtime::server::unix_now_ms()).min(1000)),
            )),
            Some(_) => never(),
        };
        select! {
            recv(cron_due) -> _ => {
                // At most a second after the start, the snapshot leaves its file's mapping.
                if runtime::engine::detach_snapshot() {
                    tracing::debug!("the startup snapshot is copied out of its file");
                }
                next_cron = server.control().poll_crons(runtime::server::unix_now_ms());
            },
            recv(signals) -> sig => match sig {
                Ok(Signal::Hangup) => match reloads {
                    Some(what) if draining_since.is_none() => reload(server, what),
                    Some(_) => tracing::info!("SIGHUP during drain: ignored"),
                    None => tracing::info!("SIGHUP: `isobar run` has no configuration or certificates to reload"),
                },
                Ok(sig) => {
                    if draining_since.is_some() {
                        tracing::warn!(?sig, "second signal during drain: exiting now");
                        return Ok(ExitCode::from(130));
                    }
                    tracing::info!(?sig, "draining: no new connections; in-flight requests finish (at most {}s)", drain_timeout.as_secs());
                    server.drain();
                    draining_since = Some(Instant::now());
                }
                Err(_) => bail!("the signal thread stopped"),
            },
            recv(server.events()) -> event => match event {
                Ok(runtime::CoreEvent::Exited { index, result }) => {
                    exited += 1;
                    if let Err(error) = result {
                        tracing::error!(core = index, "core stopped: {error}");
                        failed = true;
                        if draining_since.is_none() {
                            server.drain();
                            draining_since = Some(Instant::now());
                        }
                    }
                    if exited == server.cores() {
                        server.join(Duration::from_secs(1));
                        tracing::info!("drained; exiting");
                        return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
                    }
                }
                Ok(other) => tracing::debug!(?other, "core event"),
                Err(_) => bail!("every core thread is gone"),
            },
            recv(timeout) -> _ => {
                tracing::warn!("drain timeout of {}s reached with requests still in flight; exiting", drain_timeout.as_secs());
                return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
            },
        }
    }
}

fn script_format(format: Format) -> runtime::ScriptFormat {
    match format {
        Format::Auto => runtime::ScriptFormat::Auto,
        Format::Module => runtime::ScriptFormat::Module,
        Format::ServiceWorker => runtime::ScriptFormat::ServiceWorker,
    }
}

/// The file stem of the script: `examples/hello.js` -> `hello`.
fn worker_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "worker".into())
}
