//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// isobar runs Cloudflare-Workers-compatible JavaScript in V8 isolates, one pinned scheduler
/// thread per core, with io_uring for all I/O.
#[derive(Debug, Parser)]
#[command(name = "isobar", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log filter, e.g. `info`, `warn`, `isobar=debug` (RUST_LOG syntax).
    #[arg(long, global = true, default_value = "info", env = "ISOBAR_LOG")]
    pub log: String,
}

/// The commands' arguments are boxed: they differ in size by hundreds of bytes, and the enum
/// lives only as long as start-up.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve one Worker script on every core.
    Run(Box<RunArgs>),
    /// Serve the tenants of a configuration file (routing by Host, limits, admin API).
    Serve(Box<ServeArgs>),
    /// Write V8's startup snapshot (isobar's API, compiled and warmed up) to a file that
    /// `run`/`serve --snapshot` load instead of building it: for images (the guest's) whose
    /// first start must be fast too.
    Snapshot(SnapshotArgs),
}

#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Where to write the snapshot.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (TOML): [server], [isolates], [defaults.limits], [[tenant]].
    #[arg(long)]
    pub config: std::path::PathBuf,

    /// Overrides `server.listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,

    /// Overrides `server.admin`: the admin listener (metrics, tenants API).
    #[arg(long)]
    pub admin: Option<SocketAddr>,

    /// Overrides `server.cores`.
    #[arg(long)]
    pub cores: Option<usize>,

    /// Extra V8 flags, for diagnosis (e.g. "--trace-gc"). Not for production use.
    #[arg(long, allow_hyphen_values = true)]
    pub v8_flags: Option<String>,

    #[command(flatten)]
    pub snapshot: SnapshotSource,

    #[command(flatten)]
    pub network: NetArgs,

    #[command(flatten)]
    pub hardening: HardeningArgs,
}

/// Where V8's startup snapshot comes from (both `run` and `serve`): a file, the cache, or built.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SnapshotSource {
    /// A snapshot written by `isobar snapshot` with this same binary (the cache is then not
    /// used). If it cannot be used (another build, other flags, damaged, writable by another
    /// user), isobar says why and builds the snapshot itself.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,

    /// Where isobar keeps the snapshot it builds, keyed by this binary's build ID and its V8
    /// flags, to load it at the next start instead of building it again: a directory only this
    /// user may write to (made, mode 0700, if missing), or `off`. Default: $CACHE_DIRECTORY
    /// (systemd's CacheDirectory=), else /var/cache/isobar as root, else
    /// $XDG_CACHE_HOME/isobar or ~/.cache/isobar.
    #[arg(long, value_name = "DIR|off", env = "ISOBAR_SNAPSHOT_CACHE")]
    pub snapshot_cache: Option<PathBuf>,
}

/// What a forbidden system call does once start-up is over (`--seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Seccomp {
    /// Stop the process with a line naming the call (exit code 159).
    #[default]
    Kill,
    /// Let the call run and have the kernel log it (audit), to find what a change needs.
    Log,
    /// No system-call filter.
    Off,
}

/// Defences at the edge and inside the process (both `run` and `serve`).
#[derive(Debug, clap::Args)]
pub struct HardeningArgs {
    /// The system-call filter put on every thread after start-up (docs/threat-model.md).
    #[arg(long, value_enum, default_value_t = Seccomp::Kill, env = "ISOBAR_SECCOMP")]
    pub seccomp: Seccomp,

    /// Become this user (and its group, with no supplementary groups and no capabilities)
    /// once listeners and links are open; isobar must start as root (docs/dedicated-host.md).
    #[arg(long)]
    pub user: Option<String>,

    /// Connections one client address (an IPv6 client: its /64) may hold open at once, over
    /// all cores; more are closed at once (kernel sockets) or reset (userspace stack).
    #[arg(long, default_value_t = netstack::ConnCaps::default().per_client_max)]
    pub conns_per_client: u32,

    /// Connections the whole process holds open at once; more are closed or reset at once.
    #[arg(long, default_value_t = netstack::ConnCaps::default().total_max)]
    pub conns_max: u32,

    /// CPU time a tenant's script may use while it loads (top level and imports), apart from
    /// its per-request limit; past it the tenant gets 503 and a backoff. Workers allow 400 ms;
    /// under emulation (QEMU without KVM) allow more.
    #[arg(long, default_value_t = STARTUP_CPU_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub startup_cpu_ms: u64,
}

/// Workers' start-up CPU limit, in milliseconds.
pub const STARTUP_CPU_MS_DEFAULT: u64 = 400;

impl Default for HardeningArgs {
    /// What the command line gives when no flag is set (the guest's `serve` uses it).
    fn default() -> HardeningArgs {
        let caps = netstack::ConnCaps::default();
        HardeningArgs {
            seccomp: Seccomp::Kill,
            user: None,
            conns_per_client: caps.per_client_max,
            conns_max: caps.total_max,
            startup_cpu_ms: STARTUP_CPU_MS_DEFAULT,
        }
    }
}

/// Where the HTTP server's connections come from (both `run` and `serve`).
#[derive(Debug, Default, clap::Args)]
pub struct NetArgs {
    /// Network: `kernel` (kernel sockets through io_uring), `tap:NAME` (isobar's userspace
    /// TCP/IP stack on a TAP device, one queue per core) or `packet:IFNAME` (the userspace stack
    /// on an existing interface through AF_PACKET).
    #[arg(long)]
    pub net: Option<String>,

    /// With `tap:` or `packet:`: the stack's address, e.g. 10.0.0.2/24.
    #[arg(long)]
    pub ip: Option<String>,

    /// With `tap:` or `packet:`: the default gateway.
    #[arg(long)]
    pub gateway: Option<String>,

    /// Nameservers for subrequests, e.g. `10.0.2.3`, `1.1.1.1,9.9.9.9` or `127.0.0.1:5353`
    /// (default: the nameservers of /etc/resolv.conf).
    #[arg(long)]
    pub dns: Option<String>,

    /// A PEM file of CAs trusted for `https:` subrequests besides the system's (repeatable).
    #[arg(long = "ca")]
    pub ca_files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The Worker script: an ES module (`export default { fetch }`) or a service worker
    /// (`addEventListener('fetch', ...)`).
    pub file: PathBuf,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Number of cores to use (default: every CPU this process may run on).
    #[arg(long)]
    pub cores: Option<usize>,

    /// How to treat the script.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// Seconds to wait for in-flight requests after SIGTERM or Ctrl-C before exiting anyway.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,

    /// Name of the worker in logs (default: the script's file stem).
    #[arg(long)]
    pub name: Option<String>,

    /// CPU time one request may use, in milliseconds (a runaway script gets 503).
    #[arg(long, default_value_t = 50)]
    pub cpu_ms: u64,

    /// Heap of the worker's isolate, in MiB (4 to 4096; to 2304 in a build with pointer compression).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(4..=i64::from(isobar_tenancy::limits::HEAP_MB_MAX)))]
    pub heap_mb: u32,

    /// An admin listener (metrics, tenants API), loopback only.
    #[arg(long)]
    pub admin: Option<SocketAddr>,

    /// Extra V8 flags, for diagnosis (e.g. "--trace-gc"). Not for production use.
    #[arg(long, allow_hyphen_values = true)]
    pub v8_flags: Option<String>,

    /// A Cron Trigger (`"*/5 * * * *"`, Workers' syntax, UTC) firing the Worker's
    /// `scheduled()` handler (repeatable).
    #[arg(long = "cron", value_name = "EXPR")]
    pub crons: Vec<String>,

    /// Serve `/__scheduled?cron=EXPR`, which runs the Worker's `scheduled()` handler once and
    /// answers when it is done (as `wrangler dev --test-scheduled`).
    #[arg(long)]
    pub test_scheduled: bool,
    /// A KV namespace on `env`: `--kv CACHE` (namespace "CACHE") or `--kv CACHE=cache-v1`.
    /// Repeatable.
    #[arg(long = "kv", value_name = "NAME[=NAMESPACE]")]
    pub kv: Vec<String>,

    /// Where the KV namespaces are kept (an embedded database in this directory, created if
    /// missing); it persists across runs.
    #[arg(long, value_name = "DIR", default_value = ".isobar/kv")]
    pub kv_path: PathBuf,

    /// Where the Cache API (`caches`) keeps responses that do not fit in memory. Its contents
    /// last as long as the process; several processes may share the directory. Default:
    /// `.isobar/cache`, or one under the system's temporary directory if that cannot be made.
    #[arg(long, value_name = "DIR")]
    pub cache_path: Option<PathBuf>,

    #[command(flatten)]
    pub snapshot: SnapshotSource,

    #[command(flatten)]
    pub network: NetArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub hardening: HardeningArgs,
}

/// HTTPS beside HTTP for `isobar run` (`serve` takes `[server.tls]` in its configuration).
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first). Repeat it, each with its
    /// --tls-key, to serve several names: SNI picks the certificate whose names match.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_keys")]
    pub tls_certs: Vec<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of the --tls-cert before it.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_certs")]
    pub tls_keys: Vec<PathBuf>,

    /// Where HTTPS listens (port 0 picks a free port); HTTP stays on --listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443", requires = "tls_certs")]
    pub tls_listen: SocketAddr,

    /// How long a client may take to finish its TLS handshake before it is closed.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub tls_handshake_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Module if the script uses import/export, else service worker.
    Auto,
    Module,
    ServiceWorker,
}
