//! The configuration file of `isobar serve --config isobar.toml`: the server's listeners (HTTP,
//! and HTTPS with its certificates), the isolate budgets per core, default limits, and the
//! tenants with their scripts and routes.
//!
//! Parsing turns the file into plain data ([`Config`]) and checks everything that can be checked
//! without touching the file system or the machine: types, ranges, names, routes and their
//! uniqueness across tenants, and that an admin listener off loopback has a token. It does not
//! read the file, the scripts or the certificates (boot does, and reports a script it cannot
//! read at the tenant's [`TenantConfig::script_at`] with [`ConfigError::script`], a PEM file at
//! its key with [`ConfigError::certificate_file`] and [`ConfigError::certificate`]) and does
//! not check `cores` against the CPUs this process may use.
//!
//! Every error names the file, the 1-based line and column, and the key, e.g.
//!
//! ```text
//! isobar.toml:20:21: tenant.limits.cpu_ms must be between 1 and 60000 (got 0)
//! ```
//!
//! The file's shape is declared once, as serde structs (the `*Table` types, one per TOML table,
//! all `deny_unknown_fields`), which `toml` fills from its span-carrying document tree
//! ([`DeTable`]), with `Spanned` values wherever a later check must point at one. toml's errors
//! carry a span and serde's message but not the key; the key is found by looking the span up in
//! the same tree (`locate`), which also tells `[defaults.limits]` from `[tenant.limits]` and
//! gives a wrong value's TOML type without ever quoting the value. A new section is one more
//! struct and one more field: its unknown keys and wrong types are then named the same way
//! (an array other than `tenant` and `tenant.routes` is called "an array" unless added to
//! `ARRAYS`). What serde cannot say (ranges, addresses, names, routes, rules across keys) is
//! checked after it, at the spans it kept.
//!
//! Secret values (`tenant.secrets`, `server.admin_token`) never appear in an error or in `Debug`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::limits::{Limits, LimitsPatch};
use crate::routes::{Route, RouteError};
use crate::tenant::{
    BINDING_NAME_RULE, KvBinding, NAMESPACE_NAME_RULE, ScriptFormat, TENANT_NAME_RULE, TenantSettings, is_binding_name,
    is_namespace_name, is_tenant_name,
};

/// The span of an optional value, or the file's start.
fn span_of<T>(value: &Option<Spanned<T>>) -> Range<usize> {
    value.as_ref().map_or(0..0, Spanned::span)
}

/// Where something is in the configuration file: 1-based line and column (columns count
/// characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The whole configuration, with every default applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file this was parsed from, as given; errors found later name it.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub isolates: IsolatesConfig,
    /// `[defaults.limits]` with defaults applied; each tenant's `limits` already include them.
    pub default_limits: Limits,
    /// In file order; names and routes are unique.
    pub tenants: Vec<TenantConfig>,
    pub egress: EgressConfig,
    /// `[kv]`: where tenants' KV namespaces are kept.
    pub kv: KvStoreConfig,
    /// `[cache]`: the Cache API store every tenant's `caches` uses.
    pub cache: CacheStoreConfig,
}

/// `[cache]`: the host's Cache API store (`caches.default`, `caches.open(name)`), a memory tier
/// and a disk tier with a byte budget each. Its contents never outlive the process (the store
/// empties its directory when it opens), so the directory only needs room, not care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStoreConfig {
    /// The disk tier's directory (`path`, resolved against the configuration file's directory;
    /// default `cache` beside it).
    pub directory: PathBuf,
    /// Whether `path` was written: the default may be replaced by a private directory when it
    /// cannot be used (a read-only configuration directory), a written one may not.
    pub path_given: bool,
    /// `memory_mb`: responses kept in memory (0: every entry goes to disk).
    pub memory_mb: u64,
    /// `disk_mb`: responses kept on disk once memory is full (0: memory only).
    pub disk_mb: u64,
}

impl CacheStoreConfig {
    pub const MEMORY_MB_DEFAULT: u64 = 256;
    pub const DISK_MB_DEFAULT: u64 = 4096;

    /// The defaults, with the directory `directory`.
    pub fn in_directory(directory: PathBuf) -> CacheStoreConfig {
        CacheStoreConfig {
            directory,
            path_given: false,
            memory_mb: Self::MEMORY_MB_DEFAULT,
            disk_mb: Self::DISK_MB_DEFAULT,
        }
    }
}

/// `[kv]`: the store behind every tenant's `[[tenant.kv]]` namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvStoreConfig {
    /// `backend = "embedded"` (the default): one database on this host, in `directory`
    /// (`path`, resolved against the configuration file's directory; default `kv` beside it).
    Embedded { directory: PathBuf },
    /// `backend = "redis"`: a Valkey or Redis server (`cluster = false`) or cluster, shared by
    /// every isobar host that names it.
    Redis { nodes: Vec<SocketAddr>, cluster: bool },
}

impl Default for KvStoreConfig {
    fn default() -> Self {
        KvStoreConfig::Embedded { directory: PathBuf::from("kv") }
    }
}

/// `[egress]`: where tenants' subrequests may go, beyond public addresses (always allowed unless
/// denied), and the CAs trusted for `https:` besides the system's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressConfig {
    /// Local or private networks tenants may reach (e.g. an internal API).
    pub allow: Vec<crate::egress::IpNet>,
    /// Networks tenants may not reach even though they are public.
    pub deny: Vec<crate::egress::IpNet>,
    /// PEM files of extra CAs, resolved against the configuration file's directory.
    pub ca_files: Vec<PathBuf>,
}

/// `[server]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `None`: every CPU this process may run on.
    pub cores: Option<usize>,
    /// The admin listener (metrics, tenants API), if any.
    pub admin: Option<SocketAddr>,
    /// Always `Some` when `admin` is not a loopback address.
    pub admin_token: Option<String>,
    pub body_limit_bytes: usize,
    pub drain_timeout_s: u64,
    /// `[server.tls]`: HTTPS beside HTTP, if configured.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cores: None,
            admin: None,
            admin_token: None,
            body_limit_bytes: 1024 * 1024,
            drain_timeout_s: 30,
            tls: None,
        }
    }
}

/// `[server.tls]`: the HTTPS listener and the certificates it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The HTTPS listener (a port other than `server.listen`'s and `server.admin`'s).
    pub listen: SocketAddr,
    /// In file order, at least one. Each is picked by the SNI name a client asks for among the
    /// DNS names of its certificate (a certificate whose names cover a route's host is how
    /// that route gets it); the first also answers clients that send no name.
    pub certificates: Vec<CertificateConfig>,
    /// A client that has not finished its handshake this long after connecting is closed.
    pub handshake_timeout_ms: u64,
}

impl TlsConfig {
    /// The default HTTPS listener, beside `server.listen`'s default of 127.0.0.1:8080.
    pub const LISTEN_DEFAULT: SocketAddr =
        SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 8443));
    pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
}

/// One of `server.tls.certificates`: a certificate chain and its key, PEM files (not read here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateConfig {
    /// The chain, leaf first, resolved against the configuration file's directory.
    pub cert: PathBuf,
    /// Where the `cert` value is, for errors about the file.
    pub cert_at: Position,
    /// The private key (PKCS#8, PKCS#1 or SEC1), resolved like `cert`.
    pub key: PathBuf,
    pub key_at: Position,
}

/// Which file of a [`CertificateConfig`] an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateFile {
    Cert,
    Key,
}

/// Shows that a token is set, never the token.
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("cores", &self.cores)
            .field("admin", &self.admin)
            .field("admin_token", &self.admin_token.as_ref().map(|_| Redacted))
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("drain_timeout_s", &self.drain_timeout_s)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `[isolates]`: budgets per core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsolatesConfig {
    /// Isolates alive per core before the least recently used is evicted.
    pub per_core_max: u32,
    /// The sum of the isolates' heap limits per core before the least recently used is evicted.
    pub per_core_heap_mb: u32,
    /// Isolates made ahead of need per core; at most `per_core_max`.
    pub pool: u32,
}

impl Default for IsolatesConfig {
    fn default() -> Self {
        IsolatesConfig { per_core_max: 1000, per_core_heap_mb: 2048, pool: 4 }
    }
}

/// One `[[tenant]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantConfig {
    pub name: String,
    /// Where the `name` value is.
    pub name_at: Position,
    /// Resolved against the configuration file's directory (not checked to exist).
    pub script: PathBuf,
    /// Where the `script` value is, for errors about the script.
    pub script_at: Position,
    pub format: ScriptFormat,
    /// Parsed and normalized; none of them is another tenant's.
    pub routes: Vec<Route>,
    pub vars: BTreeMap<String, String>,
    /// Never printed: `Debug` shows the names only.
    pub secrets: BTreeMap<String, String>,
    /// `[defaults.limits]` with this tenant's `limits` on top.
    pub limits: Limits,
    /// Cron Triggers (`crons = ["*/5 * * * *"]`), each a valid expression, without duplicates.
    pub crons: Vec<String>,
    /// `[[tenant.kv]]`, in file order.
    pub kv: Vec<KvBinding>,
    /// `services = { NAME = "tenant" }`: service bindings (the named tenants exist).
    pub services: BTreeMap<String, String>,
}

impl TenantConfig {
    /// The settings to build this tenant from, given its script's `source` (which the caller
    /// reads from [`TenantConfig::script`]); its imports may be read from disk.
    pub fn settings(&self, source: String) -> TenantSettings {
        TenantSettings {
            name: self.name.clone(),
            path: self.script.clone(),
            source,
            format: self.format,
            routes: self.routes.clone(),
            vars: self.vars.clone(),
            secrets: self.secrets.clone(),
            limits: self.limits.into(),
            crons: self.crons.clone(),
            kv: self.kv.clone(),
            services: self.services.clone(),
            read_disk: true,
        }
    }
}

impl fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConfig")
            .field("name", &self.name)
            .field("name_at", &self.name_at)
            .field("script", &self.script)
            .field("script_at", &self.script_at)
            .field("format", &self.format)
            .field("routes", &self.routes.iter().map(Route::to_string).collect::<Vec<_>>())
            .field("vars", &self.vars)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .field("kv", &self.kv)
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {}: {}", path.display(), io_message(error))]
    Read { path: PathBuf, error: io::Error },
    /// Something at a place in the file is wrong.
    #[error("{}:{at}: {problem}", file.display())]
    Invalid { file: PathBuf, at: Position, problem: Box<Problem> },
}

impl ConfigError {
    /// The error for a tenant whose script cannot be read, pointing at its `script` value:
    /// `isobar.toml:10:10: tenant shop: cannot read script workers/shop.js: No such file or directory`.
    pub fn script(config: &Config, tenant: &TenantConfig, error: &io::Error) -> ConfigError {
        ConfigError::Invalid {
            file: config.path.clone(),
            at: tenant.script_at,
            problem: Box::new(Problem::Script {
                tenant: tenant.name.clone(),
                script: tenant.script.clone(),
                error: io_message(error),
            }),
        }
    }

    /// The error for a certificate or key file that cannot be read, pointing at its value:
    /// `isobar.toml:7:18: server.tls.certificates.key: cannot read certs/shop.key: No such file or directory`.
    pub fn certificate_file(
        config: &Config,
        certificate: &CertificateConfig,
        file: CertificateFile,
        error: &io::Error,
    ) -> ConfigError {
        let (key, path, at) = match file {
            CertificateFile::Cert => ("server.tls.certificates.cert", &certificate.cert, certificate.cert_at),
            CertificateFile::Key => ("server.tls.certificates.key", &certificate.key, certificate.key_at),
        };
        let message = format!("cannot read {}: {}", path.display(), io_message(error));
        ConfigError::Invalid { file: config.path.clone(), at, problem: Box::new(Problem::Certificate { key, message }) }
    }

    /// The error for a certificate or key whose contents cannot be used (not PEM, no key, a
    /// key that does not match the certificate, no DNS name), pointing at the file's value;
    /// `message` says what is wrong and names the file.
    pub fn certificate(
        config: &Config,
        certificate: &CertificateConfig,
        file: CertificateFile,
        message: String,
    ) -> ConfigError {
        let (key, at) = match file {
            CertificateFile::Cert => ("server.tls.certificates.cert", certificate.cert_at),
            CertificateFile::Key => ("server.tls.certificates.key", certificate.key_at),
        };
        ConfigError::Invalid { file: config.path.clone(), at, problem: Box::new(Problem::Certificate { key, message }) }
    }

    /// What is wrong, without the file and position.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { problem, .. } => Some(problem),
        }
    }
}

/// What is wrong at a place in the file. Messages name the key as a dotted path
/// (`tenant.limits.cpu_ms`) and never include a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("invalid TOML: {0}")]
    Syntax(String),
    #[error("unknown key `{key}` {}; expected one of {}", table_phrase(table), expected.join(", "))]
    UnknownKey { key: String, table: String, expected: Vec<String> },
    #[error("{key} must be {expected} (got {got})")]
    WrongType { key: String, expected: String, got: &'static str },
    /// toml's own words about a value it could not read (a number beyond any integer type).
    #[error("{key} cannot be read: {message}")]
    Value { key: String, message: String },
    /// A value of the right type that says something isobar cannot use.
    #[error("{key} {message}")]
    Invalid { key: String, message: String },
    #[error("{key} must be between {min} and {max} (got {got})")]
    OutOfRange { key: String, min: u64, max: u64, got: String },
    #[error("{key} is required{hint}")]
    Missing { key: &'static str, hint: &'static str },
    #[error("{key} must be an IP address and a port, such as 127.0.0.1:8080 (got {got:?})")]
    Address { key: String, got: String },
    #[error("server.admin_token is required when server.admin ({admin}) is not a loopback address")]
    AdminTokenRequired { admin: SocketAddr },
    #[error("server.admin_token must not be empty")]
    AdminTokenEmpty,
    #[error("server.admin ({admin}) must use another port than server.listen ({listen})")]
    AdminIsListen { admin: SocketAddr, listen: SocketAddr },
    #[error("server.tls.listen ({tls}) must use another port than {other_key} ({other})")]
    TlsListenTaken { tls: SocketAddr, other_key: &'static str, other: SocketAddr },
    #[error("server.tls.certificates must list at least one {{ cert = \"cert.pem\", key = \"key.pem\" }}")]
    NoCertificates,
    #[error("{key} must not be empty")]
    EmptyPath { key: &'static str },
    #[error("{key}: {message}")]
    Certificate { key: &'static str, message: String },
    #[error("isolates.pool ({pool}) must not be more than isolates.per_core_max ({per_core_max})")]
    PoolOverMax { pool: u32, per_core_max: u32 },
    #[error(
        "{key} is {heap_mb} MiB but isolates.per_core_heap_mb is {per_core_heap_mb} MiB, \
         so no core could hold a single isolate"
    )]
    HeapOverBudget { key: &'static str, heap_mb: u32, per_core_heap_mb: u32 },
    #[error("no tenants: add a [[tenant]] table with a name, a script and routes")]
    NoTenants,
    #[error("tenant.name {name:?} must be {}", TENANT_NAME_RULE)]
    TenantName { name: String },
    #[error("duplicate tenant name {name:?} (first defined at line {first_line})")]
    DuplicateTenant { name: String, first_line: usize },
    #[error("tenant.script must not be empty")]
    ScriptEmpty,
    #[error("tenant.format must be one of {} (got {got:?})", ScriptFormat::NAMES)]
    Format { got: String },
    #[error("tenant.routes must list at least one route, such as \"example.com\"")]
    NoRoutes,
    #[error("route {route:?}: {error}")]
    Route { route: String, error: RouteError },
    #[error(
        "route {route:?} of tenant {tenant:?} is the same as route {first_route:?} of tenant \
         {first_tenant:?} (line {first_line}); a host and path prefix can go to one tenant only"
    )]
    DuplicateRoute { route: String, tenant: String, first_route: String, first_tenant: String, first_line: usize },
    #[error("{table} has a key that is an empty string; give the binding a name")]
    EmptyBindingName { table: &'static str },
    #[error("tenant.secrets.{name} is also in tenant.vars; a name on env can hold only one value")]
    VarAndSecret { name: String },
    #[error("{key} {name:?} is also {other}; a name on env can hold only one value")]
    BindingTaken { key: String, name: String, other: &'static str },
    #[error("tenant {tenant}: cannot read script {}: {error}", script.display())]
    Script { tenant: String, script: PathBuf, error: String },
}

fn table_phrase(table: &str) -> String {
    if table.is_empty() { "at the top level".to_owned() } else { format!("in {table}") }
}

/// An I/O error's message without Rust's ` (os error N)` suffix: the operator wants the words.
fn io_message(error: &io::Error) -> String {
    let message = error.to_string();
    match message.rfind(" (os error ") {
        Some(end) => message[..end].to_owned(),
        None => message,
    }
}

/// Parses a configuration; `path` names the file in errors, and `script` paths are resolved
/// against its directory.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
    let empty = Spanned::new(0..0, DeValue::Table(DeTable::default()));
    let mut document = Document { path, text, line_starts, root: empty };
    let root = DeTable::parse(text).map_err(|error| {
        document.fail_at(error.span().map_or(0, |span| span.start), Problem::Syntax(error.message().to_owned()))
    })?;
    // serde consumes its tree; the document keeps one to name what an error points at.
    document.root = Spanned::new(root.span(), DeValue::Table(root.get_ref().clone()));
    let file = FileTable::deserialize(toml::de::Deserializer::from(root)).map_err(|e| document.serde_error(&e))?;
    document.check(file)
}

// The file as serde reads it: one struct per table. Every key is optional, so that a missing one
// gets isobar's message (with a hint) rather than serde's; `Spanned` keeps the place of every
// value a later check may point at. A new section is one more struct and one more field.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    server: Option<ServerTable>,
    isolates: Option<IsolatesTable>,
    defaults: Option<DefaultsTable>,
    tenant: Option<Spanned<Vec<Spanned<TenantTable>>>>,
    egress: Option<EgressTable>,
    kv: Option<KvTable>,
    cache: Option<CacheTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheTable {
    path: Option<Spanned<String>>,
    memory_mb: Option<Spanned<i128>>,
    disk_mb: Option<Spanned<i128>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KvTable {
    backend: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    nodes: Option<Spanned<Vec<Spanned<String>>>>,
    cluster: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KvBindingTable {
    binding: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressTable {
    allow: Option<Vec<Spanned<String>>>,
    deny: Option<Vec<Spanned<String>>>,
    ca_files: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerTable {
    listen: Option<Spanned<String>>,
    cores: Option<Spanned<i128>>,
    admin: Option<Spanned<String>>,
    admin_token: Option<Spanned<String>>,
    body_limit_bytes: Option<Spanned<i128>>,
    drain_timeout_s: Option<Spanned<i128>>,
    tls: Option<Spanned<TlsTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsTable {
    listen: Option<Spanned<String>>,
    certificates: Option<Spanned<Vec<Spanned<CertificateTable>>>>,
    handshake_timeout_ms: Option<Spanned<i128>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateTable {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IsolatesTable {
    per_core_max: Option<Spanned<i128>>,
    per_core_heap_mb: Option<Spanned<i128>>,
    pool: Option<Spanned<i128>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsTable {
    limits: Option<LimitsTable>,
}

/// `[defaults.limits]` and `tenant.limits`: the keys and ranges the admin API uses too.
type LimitsTable = LimitsPatch<Spanned<i128>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantTable {
    name: Option<Spanned<String>>,
    script: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    routes: Option<Spanned<Vec<Spanned<String>>>>,
    vars: Option<Bindings>,
    secrets: Option<Bindings>,
    limits: Option<LimitsTable>,
    crons: Option<Vec<Spanned<String>>>,
    kv: Option<Vec<Spanned<KvBindingTable>>>,
    services: Option<Bindings>,
}

/// `tenant.vars` and `tenant.secrets`: names (with their places) to strings.
type Bindings = BTreeMap<Spanned<String>, String>;

/// What each array must hold, for messages: serde only says "a sequence", and an element of the
/// wrong type is the array's mistake. Arrays not listed are called "an array".
const ARRAYS: &[(&str, &str)] = &[
    ("tenant", "an array of tables, written [[tenant]]"),
    ("tenant.routes", "an array of strings"),
    ("tenant.crons", "an array of cron expressions such as \"*/5 * * * *\""),
    ("server.tls.certificates", "an array of tables, such as [{ cert = \"cert.pem\", key = \"key.pem\" }]"),
    ("egress.allow", "an array of networks such as \"10.0.0.0/8\""),
    ("egress.deny", "an array of networks such as \"203.0.113.0/24\""),
    ("egress.ca_files", "an array of file paths"),
    ("tenant.kv", "an array of tables, written [[tenant.kv]]"),
    ("kv.nodes", "an array of addresses such as \"127.0.0.1:6379\""),
];
/// Networks per `egress.allow` / `egress.deny`, and extra CA files: a bound on what one typo
/// could make every subrequest check.
const EGRESS_ENTRIES_MAX: usize = 1000;

/// Enough for any machine this runs on; a bound so that a typo cannot start a million threads.
const CORES_MAX: u64 = 4096;
const BODY_LIMIT_BYTES_MAX: u64 = 1 << 30;
const DRAIN_TIMEOUT_S_MAX: u64 = 3600;
/// A handshake takes a few round trips; below this a slow mobile client fails, above it a
/// client that never finishes holds a connection for no reason.
const HANDSHAKE_TIMEOUT_MS_MIN: u64 = 100;
const HANDSHAKE_TIMEOUT_MS_MAX: u64 = 60_000;

/// Whether two listeners would take the same port: the same port (not 0, which the kernel
/// picks) on the same address or with either on every address.
pub fn same_listener(a: SocketAddr, b: SocketAddr) -> bool {
    let same_ip = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
    same_ip && a.port() == b.port() && a.port() != 0
}

/// The way from the top of the document to a place in it: its keys, and `None` for each step
/// into an element of an array.
type Steps<'t> = Vec<Option<&'t str>>;

/// The deepest key or value of `value` at `offset`: the steps to it and the value there (`None`
/// when the offset is on a key). A table's span is only its header, so its keys are always
/// searched; TOML's parser bounds the depth.
fn locate<'t, 'i>(value: &'t Spanned<DeValue<'i>>, offset: usize) -> Option<(Steps<'t>, Option<&'t DeValue<'i>>)> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => table.iter().find_map(|(key, value)| {
            let (mut steps, found) =
                if key.span().contains(&offset) { (Vec::new(), None) } else { locate(value, offset)? };
            steps.insert(0, Some(key.get_ref().as_ref()));
            Some((steps, found))
        }),
        DeValue::Array(array) => array.iter().find_map(|element| {
            let (mut steps, found) = locate(element, offset)?;
            steps.insert(0, None);
            Some((steps, found))
        }),
        _ => None,
    };
    inner.or_else(|| value.span().contains(&offset).then(|| (Vec::new(), Some(value.get_ref()))))
}

/// The dotted key, array indices left out: `tenant.limits.cpu_ms`.
fn dotted(steps: &[Option<&str>]) -> String {
    steps.iter().flatten().copied().collect::<Vec<_>>().join(".")
}

/// How messages name the table holding the key at the end of `steps`: `[tenant.limits]`, or
/// `[[tenant]]` when it is an element of an array of tables; `""` at the top level.
fn table_of(steps: &[Option<&str>]) -> String {
    let parent = &steps[..steps.len().saturating_sub(1)];
    match parent.last() {
        None => String::new(),
        Some(None) => format!("[[{}]]", dotted(parent)),
        Some(Some(_)) => format!("[{}]", dotted(parent)),
    }
}

/// "a string", "an integer", ...: the type of a value for messages (never the value itself,
/// which may be a secret).
fn type_phrase(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The file's text and document tree, to turn a span into a position and a key.
struct Document<'a> {
    path: &'a Path,
    text: &'a str,
    /// The byte offset of the start of each line.
    line_starts: Vec<usize>,
    root: Spanned<DeValue<'a>>,
}

/// A route already taken, for naming both tenants when another one claims it.
struct RouteOwner {
    text: String,
    tenant: String,
    line: usize,
}

impl Document<'_> {
    fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        // Offsets from the parser are on character boundaries; count bytes if one is not.
        let column = self.text.get(start..offset).map_or(offset - start, |before| before.chars().count());
        Position { line: line + 1, column: column + 1 }
    }

    fn fail_at(&self, offset: usize, problem: Problem) -> ConfigError {
        ConfigError::Invalid { file: self.path.to_path_buf(), at: self.position(offset), problem: Box::new(problem) }
    }

    fn fail(&self, span: &Range<usize>, problem: Problem) -> ConfigError {
        self.fail_at(span.start, problem)
    }

    /// `Err` with `problem` at `span` unless `ok`.
    fn ensure(&self, ok: bool, span: &Range<usize>, problem: impl FnOnce() -> Problem) -> Result<(), ConfigError> {
        if ok { Ok(()) } else { Err(self.fail(span, problem())) }
    }

    /// The dotted key of the value at `span`.
    fn key_at(&self, span: &Range<usize>) -> String {
        locate(&self.root, span.start).map_or_else(String::new, |(steps, _)| dotted(&steps))
    }

    /// A serde error in isobar's words. serde's two usual messages end with what it expected;
    /// what comes before may quote the value (maybe a secret), so only that end is used, and the
    /// key, its table and the value's type come from the document.
    fn serde_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let (steps, value) = locate(&self.root, span.start).unwrap_or_default();
        let key = dotted(&steps);
        let message = error.message();
        let expected = message.rsplit_once(", expected ").map_or("", |(_, expected)| expected);
        let problem = if message.starts_with("unknown field ") {
            let table = table_of(&steps);
            let name = steps.last().copied().flatten().unwrap_or_default().to_owned();
            // "`a`", "`a` or `b`" or "one of `a`, `b`, `c`": the names are between backticks.
            Problem::UnknownKey {
                key: name,
                table,
                expected: expected.split('`').skip(1).step_by(2).map(Into::into).collect(),
            }
        } else if message.starts_with("invalid type: ") {
            let array = expected == "a sequence" || steps.last() == Some(&None);
            let expected = match ARRAYS.iter().find(|(name, _)| array && *name == key) {
                Some((_, phrase)) => phrase,
                None if array => "an array",
                None if expected == "a map" || expected.starts_with("struct ") => "a table",
                None if expected == "i128" => "an integer",
                None => expected,
            };
            Problem::WrongType { key, expected: expected.to_owned(), got: value.map_or("a key", type_phrase) }
        } else if let Some(DeValue::Integer(_)) = value {
            // Past `i128` serde says "invalid value: u128, expected i128", past `u128` toml says this.
            Problem::Value { key, message: "integer number overflowed".to_owned() }
        } else {
            Problem::Value { key, message: message.to_owned() }
        };
        self.fail(&span, problem)
    }

    /// `value` if it is in `min..=max`; else an error naming its key and quoting the file when
    /// the number does not fit an `i64`.
    fn integer<T: TryFrom<u64>>(&self, value: &Spanned<i128>, min: u64, max: u64) -> Result<T, ConfigError> {
        let number = *value.get_ref();
        let checked = u64::try_from(number).ok().filter(|n| (min..=max).contains(n)).and_then(|n| T::try_from(n).ok());
        checked.ok_or_else(|| {
            let span = value.span();
            let got = i64::try_from(number)
                .map_or_else(|_| self.text.get(span.clone()).unwrap_or("?").to_owned(), |n| n.to_string());
            self.fail(&span, Problem::OutOfRange { key: self.key_at(&span), min, max, got })
        })
    }

    fn address(&self, text: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        let got = text.get_ref();
        got.parse()
            .map_err(|_| self.fail(&text.span(), Problem::Address { key: self.key_at(&text.span()), got: got.clone() }))
    }

    /// Everything serde cannot say: ranges, addresses, names, routes, and rules across keys.
    fn check(&self, file: FileTable) -> Result<Config, ConfigError> {
        let server = file.server.map_or_else(|| Ok(ServerConfig::default()), |table| self.server(table))?;
        let isolates =
            file.isolates.as_ref().map_or_else(|| Ok(IsolatesConfig::default()), |table| self.isolates(table))?;
        let defaults = file.defaults.and_then(|defaults| defaults.limits);
        let (default_limits, default_heap) = self.limits(defaults, Limits::default())?;
        // With both at their defaults the heap fits, so one of the two was written.
        let per_core_heap = file.isolates.and_then(|table| table.per_core_heap_mb).map(|value| value.span());
        let span = default_heap.or(per_core_heap).unwrap_or(0..0);
        self.ensure(default_limits.heap_mb <= isolates.per_core_heap_mb, &span, || Problem::HeapOverBudget {
            key: "defaults.limits.heap_mb",
            heap_mb: default_limits.heap_mb,
            per_core_heap_mb: isolates.per_core_heap_mb,
        })?;

        let tables = file.tenant.ok_or_else(|| self.fail_at(0, Problem::NoTenants))?;
        self.ensure(!tables.get_ref().is_empty(), &tables.span(), || Problem::NoTenants)?;
        let mut route_owners: HashMap<Route, RouteOwner> = HashMap::new();
        // Each name and the line of its value, so a duplicate is found without a scan per tenant.
        let mut name_lines: HashMap<String, usize> = HashMap::new();
        let mut tenants = Vec::with_capacity(tables.get_ref().len());
        for table in tables.into_inner() {
            tenants.push(self.tenant(table, default_limits, &isolates, &mut name_lines, &mut route_owners)?);
        }
        let egress = file.egress.map_or_else(|| Ok(EgressConfig::default()), |table| self.egress(table))?;
        let kv = self.kv_store(file.kv)?;
        let cache = self.cache_store(file.cache)?;
        Ok(Config { path: self.path.to_path_buf(), server, isolates, default_limits, tenants, egress, kv, cache })
    }

    fn cache_store(&self, table: Option<CacheTable>) -> Result<CacheStoreConfig, ConfigError> {
        let base = self.path.parent().unwrap_or(Path::new(""));
        let mut config = CacheStoreConfig::in_directory(base.join("cache"));
        let Some(table) = table else { return Ok(config) };
        if let Some(path) = &table.path {
            self.ensure(!path.get_ref().is_empty(), &path.span(), || Problem::Invalid {
                key: "cache.path".into(),
                message: "must not be empty".into(),
            })?;
            config.directory = base.join(path.get_ref());
            config.path_given = true;
        }
        // Budgets up to 1 TiB of memory and 64 TiB of disk: a bound a typo cannot pass.
        if let Some(memory_mb) = &table.memory_mb {
            config.memory_mb = self.integer(memory_mb, 0, 1 << 20)?;
        }
        if let Some(disk_mb) = &table.disk_mb {
            config.disk_mb = self.integer(disk_mb, 0, 1 << 26)?;
        }
        Ok(config)
    }

    fn kv_store(&self, table: Option<KvTable>) -> Result<KvStoreConfig, ConfigError> {
        let base = self.path.parent().unwrap_or(Path::new(""));
        let Some(table) = table else {
            return Ok(KvStoreConfig::Embedded { directory: base.join("kv") });
        };
        let backend = table.backend.as_ref().map_or("embedded", |b| b.get_ref().as_str());
        let invalid = |span: &Range<usize>, message: String| {
            self.fail(span, Problem::Invalid { key: self.key_at(span), message })
        };
        match backend {
            "embedded" => {
                if let Some(nodes) = &table.nodes {
                    return Err(invalid(&nodes.span(), "is for backend = \"redis\" only".into()));
                }
                let directory = match &table.path {
                    Some(path) if path.get_ref().is_empty() => {
                        return Err(invalid(&path.span(), "must not be empty".into()));
                    }
                    Some(path) => base.join(path.get_ref()),
                    None => base.join("kv"),
                };
                Ok(KvStoreConfig::Embedded { directory })
            }
            "redis" => {
                if let Some(path) = &table.path {
                    return Err(invalid(&path.span(), "is for backend = \"embedded\" only".into()));
                }
                let span = table.backend.as_ref().map_or(0..0, Spanned::span);
                let nodes = table.nodes.ok_or_else(|| {
                    invalid(&span, "\"redis\" needs kv.nodes = [\"HOST:PORT\", ...], the servers to use".into())
                })?;
                self.ensure(!nodes.get_ref().is_empty() && nodes.get_ref().len() <= 64, &nodes.span(), || {
                    Problem::Invalid { key: "kv.nodes".into(), message: "must list 1 to 64 addresses".into() }
                })?;
                let mut addresses = Vec::with_capacity(nodes.get_ref().len());
                for node in nodes.get_ref() {
                    addresses.push(self.address(node)?);
                }
                Ok(KvStoreConfig::Redis { nodes: addresses, cluster: table.cluster.unwrap_or(false) })
            }
            other => {
                Err(invalid(&span_of(&table.backend), format!("must be \"embedded\" or \"redis\" (got {other:?})")))
            }
        }
    }

    fn egress(&self, table: EgressTable) -> Result<EgressConfig, ConfigError> {
        let networks = |list: Option<Vec<Spanned<String>>>| -> Result<Vec<crate::egress::IpNet>, ConfigError> {
            let list = list.unwrap_or_default();
            let mut out = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let key = self.key_at(&text.span());
                self.ensure(i < EGRESS_ENTRIES_MAX, &text.span(), || Problem::Invalid {
                    key: key.clone(),
                    message: format!("has more than {EGRESS_ENTRIES_MAX} entries"),
                })?;
                let net = crate::egress::IpNet::parse(text.get_ref()).ok_or_else(|| {
                    self.fail(
                        &text.span(),
                        Problem::Invalid {
                            key: key.clone(),
                            message: format!(
                                "must hold networks such as \"10.0.0.0/8\" or addresses such as \"10.1.2.3\" (got {:?})",
                                text.get_ref()
                            ),
                        },
                    )
                })?;
                out.push(net);
            }
            Ok(out)
        };
        let allow = networks(table.allow)?;
        let deny = networks(table.deny)?;
        let base = self.path.parent().unwrap_or(Path::new(""));
        let mut ca_files = Vec::new();
        for (i, file) in table.ca_files.unwrap_or_default().iter().enumerate() {
            let key = self.key_at(&file.span());
            self.ensure(i < EGRESS_ENTRIES_MAX && !file.get_ref().is_empty(), &file.span(), || Problem::Invalid {
                key,
                message: "must be a list of non-empty file paths".to_string(),
            })?;
            ca_files.push(base.join(file.get_ref()));
        }
        Ok(EgressConfig { allow, deny, ca_files })
    }

    fn server(&self, table: ServerTable) -> Result<ServerConfig, ConfigError> {
        let mut server = ServerConfig::default();
        if let Some(listen) = &table.listen {
            server.listen = self.address(listen)?;
        }
        server.cores = table.cores.as_ref().map(|cores| self.integer(cores, 1, CORES_MAX)).transpose()?;
        if let Some(bytes) = &table.body_limit_bytes {
            server.body_limit_bytes = self.integer(bytes, 0, BODY_LIMIT_BYTES_MAX)?;
        }
        if let Some(seconds) = &table.drain_timeout_s {
            server.drain_timeout_s = self.integer(seconds, 0, DRAIN_TIMEOUT_S_MAX)?;
        }
        if let Some(token) = table.admin_token {
            self.ensure(!token.get_ref().is_empty(), &token.span(), || Problem::AdminTokenEmpty)?;
            server.admin_token = Some(token.into_inner());
        }
        if let Some(text) = &table.admin {
            let (admin, listen, span) = (self.address(text)?, server.listen, text.span());
            // `::ffff:127.0.0.1` is loopback too.
            let token_needed = !admin.ip().to_canonical().is_loopback() && server.admin_token.is_none();
            self.ensure(!token_needed, &span, || Problem::AdminTokenRequired { admin })?;
            self.ensure(!same_listener(admin, listen), &span, || Problem::AdminIsListen { admin, listen })?;
            server.admin = Some(admin);
        }
        if let Some(table) = table.tls {
            server.tls = Some(self.tls(table, &server)?);
        }
        Ok(server)
    }

    /// `[server.tls]`, given the rest of `[server]` (its listeners must not share a port).
    fn tls(&self, table: Spanned<TlsTable>, server: &ServerConfig) -> Result<TlsConfig, ConfigError> {
        let (span, table) = (table.span(), table.into_inner());
        let (listen, listen_span) = match &table.listen {
            Some(text) => (self.address(text)?, text.span()),
            None => (TlsConfig::LISTEN_DEFAULT, span.clone()),
        };
        for (other_key, other) in [("server.listen", Some(server.listen)), ("server.admin", server.admin)] {
            let Some(other) = other else { continue };
            self.ensure(!same_listener(listen, other), &listen_span, || Problem::TlsListenTaken {
                tls: listen,
                other_key,
                other,
            })?;
        }
        let handshake_timeout_ms =
            table.handshake_timeout_ms.as_ref().map_or(Ok(TlsConfig::HANDSHAKE_TIMEOUT_MS_DEFAULT), |value| {
                self.integer(value, HANDSHAKE_TIMEOUT_MS_MIN, HANDSHAKE_TIMEOUT_MS_MAX)
            })?;
        let hint = ": list the certificates to serve, such as [{ cert = \"cert.pem\", key = \"key.pem\" }]";
        let tables = table
            .certificates
            .ok_or_else(|| self.fail(&span, Problem::Missing { key: "server.tls.certificates", hint }))?;
        self.ensure(!tables.get_ref().is_empty(), &tables.span(), || Problem::NoCertificates)?;
        let directory = self.path.parent().unwrap_or(Path::new(""));
        let mut certificates = Vec::with_capacity(tables.get_ref().len());
        for entry in tables.into_inner() {
            let (span, entry) = (entry.span(), entry.into_inner());
            let path =
                |value: Option<Spanned<String>>, key: &'static str| -> Result<(PathBuf, Position), ConfigError> {
                    let hint = ": the path of a PEM file, relative to this file";
                    let value = value.ok_or_else(|| self.fail(&span, Problem::Missing { key, hint }))?;
                    self.ensure(!value.get_ref().is_empty(), &value.span(), || Problem::EmptyPath { key })?;
                    Ok((directory.join(value.get_ref()), self.position(value.span().start)))
                };
            let (cert, cert_at) = path(entry.cert, "server.tls.certificates.cert")?;
            let (key, key_at) = path(entry.key, "server.tls.certificates.key")?;
            certificates.push(CertificateConfig { cert, cert_at, key, key_at });
        }
        Ok(TlsConfig { listen, certificates, handshake_timeout_ms })
    }

    fn isolates(&self, table: &IsolatesTable) -> Result<IsolatesConfig, ConfigError> {
        let default = IsolatesConfig::default();
        let integer = |value: &Option<Spanned<i128>>, min, max, default| {
            value.as_ref().map_or(Ok(default), |value| self.integer(value, min, max))
        };
        let per_core_max = integer(&table.per_core_max, 1, 100_000, default.per_core_max)?;
        let per_core_heap_mb = integer(&table.per_core_heap_mb, 4, 1 << 20, default.per_core_heap_mb)?;
        let pool = integer(&table.pool, 0, 64, default.pool)?;
        // The defaults fit, so one of the two was written.
        let span = table.pool.as_ref().or(table.per_core_max.as_ref()).map_or(0..0, Spanned::span);
        self.ensure(pool <= per_core_max, &span, || Problem::PoolOverMax { pool, per_core_max })?;
        Ok(IsolatesConfig { per_core_max, per_core_heap_mb, pool })
    }

    /// `base` with the table's values on top, and where `heap_mb` was written if it was.
    fn limits(&self, table: Option<LimitsTable>, base: Limits) -> Result<(Limits, Option<Range<usize>>), ConfigError> {
        let mut limits = base;
        let mut heap_span = None;
        for (key, value) in table.into_iter().flat_map(LimitsPatch::into_entries) {
            *key.field(&mut limits) = self.integer(&value, key.min.into(), key.max.into())?;
            heap_span = if key.name == "heap_mb" { Some(value.span()) } else { heap_span };
        }
        Ok((limits, heap_span))
    }

    fn tenant(
        &self,
        table: Spanned<TenantTable>,
        default_limits: Limits,
        isolates: &IsolatesConfig,
        name_lines: &mut HashMap<String, usize>,
        route_owners: &mut HashMap<Route, RouteOwner>,
    ) -> Result<TenantConfig, ConfigError> {
        let (span, table) = (table.span(), table.into_inner());
        let missing = |key, hint| self.fail(&span, Problem::Missing { key, hint });

        let name = table.name.ok_or_else(|| missing("tenant.name", ""))?;
        let (name_span, name) = (name.span(), name.into_inner());
        self.ensure(is_tenant_name(&name), &name_span, || Problem::TenantName { name: name.clone() })?;
        let name_at = self.position(name_span.start);
        if let Some(&first_line) = name_lines.get(&name) {
            return Err(self.fail(&name_span, Problem::DuplicateTenant { name, first_line }));
        }
        name_lines.insert(name.clone(), name_at.line);

        let script_hint = ": the path of the Worker script, relative to this file";
        let script = table.script.ok_or_else(|| missing("tenant.script", script_hint))?;
        self.ensure(!script.get_ref().is_empty(), &script.span(), || Problem::ScriptEmpty)?;

        let format = match &table.format {
            None => ScriptFormat::Auto,
            Some(text) => ScriptFormat::parse(text.get_ref())
                .ok_or_else(|| self.fail(&text.span(), Problem::Format { got: text.get_ref().clone() }))?,
        };

        let routes_hint = ": list at least one route, such as \"example.com\" or \"*.example.com/api\"";
        let texts = table.routes.ok_or_else(|| missing("tenant.routes", routes_hint))?;
        self.ensure(!texts.get_ref().is_empty(), &texts.span(), || Problem::NoRoutes)?;
        let mut routes = Vec::with_capacity(texts.get_ref().len());
        for text in texts.into_inner() {
            let (span, text) = (text.span(), text.into_inner());
            let route =
                Route::parse(&text).map_err(|error| self.fail(&span, Problem::Route { route: text.clone(), error }))?;
            if let Some(first) = route_owners.get(&route) {
                let (first_route, first_tenant, first_line) = (first.text.clone(), first.tenant.clone(), first.line);
                let problem =
                    Problem::DuplicateRoute { route: text, tenant: name, first_route, first_tenant, first_line };
                return Err(self.fail(&span, problem));
            }
            let owner = RouteOwner { text, tenant: name.clone(), line: self.position(span.start).line };
            route_owners.insert(route.clone(), owner);
            routes.push(route);
        }

        let vars = self.bindings(table.vars, "tenant.vars", &BTreeMap::new())?;
        let secrets = self.bindings(table.secrets, "tenant.secrets", &vars)?;
        let kv = self.kv_bindings(table.kv, &vars, &secrets)?;
        let services = self.services(table.services, &vars, &secrets, &kv)?;

        let (limits, heap_span) = self.limits(table.limits, default_limits)?;
        if let Some(span) = heap_span {
            let (heap_mb, per_core_heap_mb) = (limits.heap_mb, isolates.per_core_heap_mb);
            let problem = || Problem::HeapOverBudget { key: "tenant.limits.heap_mb", heap_mb, per_core_heap_mb };
            self.ensure(heap_mb <= per_core_heap_mb, &span, problem)?;
        }

        let given = table.crons.unwrap_or_default();
        let texts: Vec<&str> = given.iter().map(|text| text.get_ref().as_str()).collect();
        let crons = match crate::cron::tenant_schedules(&texts) {
            Ok(crons) => crons,
            Err(error) => {
                let message = match &error.reason {
                    crate::cron::ScheduleListProblem::TooMany => {
                        format!("has more than {} entries", crate::cron::SCHEDULES_PER_TENANT_MAX)
                    }
                    crate::cron::ScheduleListProblem::Invalid(error) => format!("has an invalid entry: {error}"),
                };
                let span = given[error.index].span();
                return Err(self.fail(&span, Problem::Invalid { key: "tenant.crons".to_string(), message }));
            }
        };

        let directory = self.path.parent().unwrap_or(Path::new(""));
        Ok(TenantConfig {
            name,
            name_at,
            script: directory.join(script.get_ref()),
            script_at: self.position(script.span().start),
            format,
            routes,
            vars,
            secrets,
            limits,
            crons,
            kv,
            services,
        })
    }

    /// `[[tenant.kv]]`: binding names are identifiers not taken by vars, secrets or another
    /// binding; the namespace defaults to the binding's name.
    fn kv_bindings(
        &self,
        tables: Option<Vec<Spanned<KvBindingTable>>>,
        vars: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<KvBinding>, ConfigError> {
        let mut bindings: Vec<KvBinding> = Vec::new();
        for table in tables.unwrap_or_default() {
            let (span, table) = (table.span(), table.into_inner());
            let hint = ": the name of the KVNamespace on env, such as \"CACHE\"";
            let binding =
                table.binding.ok_or_else(|| self.fail(&span, Problem::Missing { key: "tenant.kv.binding", hint }))?;
            let (binding_span, binding) = (binding.span(), binding.into_inner());
            self.ensure(is_binding_name(&binding), &binding_span, || Problem::Invalid {
                key: "tenant.kv.binding".into(),
                message: format!("{binding:?} must be {BINDING_NAME_RULE}"),
            })?;
            let other = if vars.contains_key(&binding) {
                Some("in tenant.vars")
            } else if secrets.contains_key(&binding) {
                Some("in tenant.secrets")
            } else if bindings.iter().any(|b| b.binding == binding) {
                Some("another [[tenant.kv]] binding")
            } else {
                None
            };
            if let Some(other) = other {
                let problem = Problem::BindingTaken { key: "tenant.kv.binding".into(), name: binding, other };
                return Err(self.fail(&binding_span, problem));
            }
            let namespace = match table.namespace {
                Some(namespace) => {
                    let (namespace_span, namespace) = (namespace.span(), namespace.into_inner());
                    self.ensure(is_namespace_name(&namespace), &namespace_span, || Problem::Invalid {
                        key: "tenant.kv.namespace".into(),
                        message: format!("{namespace:?} must be {NAMESPACE_NAME_RULE}"),
                    })?;
                    namespace
                }
                None => binding.clone(),
            };
            bindings.push(KvBinding { binding, namespace });
        }
        Ok(bindings)
    }

    /// `vars` or `secrets`, none of whose names is in `taken`. Messages name the key but never
    /// show a value.
    /// `services = { NAME = "tenant" }`: binding names are identifiers not taken by vars, secrets
    /// or KV bindings; targets are tenant names (that they exist is checked once every tenant is
    /// read).
    fn services(
        &self,
        table: Option<Bindings>,
        vars: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
        kv: &[KvBinding],
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut entries: Vec<_> = table.unwrap_or_default().into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        let mut services = BTreeMap::new();
        for (name, target) in entries {
            let (span, name) = (name.span(), name.into_inner());
            self.ensure(is_binding_name(&name), &span, || Problem::Invalid {
                key: "tenant.services".into(),
                message: format!("has the binding {name:?}, which must be {BINDING_NAME_RULE}"),
            })?;
            let other = if vars.contains_key(&name) {
                Some("in tenant.vars")
            } else if secrets.contains_key(&name) {
                Some("in tenant.secrets")
            } else if kv.iter().any(|b| b.binding == name) {
                Some("a [[tenant.kv]] binding")
            } else {
                None
            };
            if let Some(other) = other {
                return Err(self.fail(&span, Problem::BindingTaken { key: "tenant.services".into(), name, other }));
            }
            self.ensure(is_tenant_name(&target), &span, || Problem::Invalid {
                key: format!("tenant.services.{name}"),
                message: format!("names {target:?}, which is not a tenant name ({TENANT_NAME_RULE})"),
            })?;
            services.insert(name, target);
        }
        Ok(services)
    }

    fn bindings(
        &self,
        table: Option<Bindings>,
        path: &'static str,
        taken: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        // In file order, so that the first mistake in the file is the one reported.
        let mut entries: Vec<_> = table.unwrap_or_default().into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        let mut bindings = BTreeMap::new();
        for (name, value) in entries {
            let (span, name) = (name.span(), name.into_inner());
            self.ensure(!name.is_empty(), &span, || Problem::EmptyBindingName { table: path })?;
            self.ensure(!taken.contains_key(&name), &span, || Problem::VarAndSecret { name: name.clone() })?;
            bindings.insert(name, value);
        }
        Ok(bindings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{HEAP_MB_MAX, LIMIT_KEYS};
    use proptest::prelude::RngExt;
    use proptest::test_runner::{RngAlgorithm, TestRng};

    const FILE: &str = "isobar.toml";

    fn parse_ok(text: &str) -> Config {
        parse(text, Path::new(FILE)).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The whole message, `FILE:LINE:COLUMN: message`.
    fn parse_err(text: &str) -> String {
        match parse(text, Path::new(FILE)) {
            Ok(config) => panic!("parsed, but should not have: {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// A minimal valid tenant to put after the section under test.
    const TENANT: &str = "[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = [\"*\"]\n";

    fn with_tenant(text: &str) -> String {
        format!("{text}\n{TENANT}")
    }

    #[test]
    fn crons_are_checked_where_they_are_written() {
        let config = parse_ok(&format!("{TENANT}crons = [\"*/5 * * * *\", \"0 12 * * MON-FRI\", \"*/5 * * * *\"]\n"));
        assert_eq!(config.tenants[0].crons, ["*/5 * * * *", "0 12 * * MON-FRI"]);
        assert_eq!(config.tenants[0].settings(String::new()).crons.len(), 2);
        assert_eq!(
            parse_err(&format!("{TENANT}crons = [\"* * * * *\", \"61 * * * *\"]\n")),
            format!(
                "{FILE}:5:23: tenant.crons has an invalid entry: {}",
                crate::cron::CronSchedule::parse("61 * * * *").unwrap_err()
            )
        );
        assert!(parse_err(&format!("{TENANT}crons = [\"@daily\"]\n")).contains("nicknames"));
    }

    const FULL: &str = r#"# isobar.toml
[server]
listen = "0.0.0.0:80"
cores = 2
admin = "127.0.0.1:9000"
admin_token = "s3cret-token"
body_limit_bytes = 2_097_152
drain_timeout_s = 10

[isolates]
per_core_max = 500
per_core_heap_mb = 4096
pool = 8

[defaults.limits]
cpu_ms = 100
heap_mb = 256

[[tenant]]
name = "shop"
script = "workers/shop.js"
format = "module"
routes = ["shop.example.com", "*.shop.example.com", "example.com/shop"]
vars = { GREETING = "hello" }
secrets = { API_KEY = "hunter2-do-not-print" }
limits = { cpu_ms = 20 }

[[tenant]]
name = "blog"
script = "/srv/blog.js"
routes = ["Example.com"]
[tenant.limits]
heap_mb = 512
subrequests = 0
"#;

    #[test]
    fn full_example_round_trips_with_defaults_and_merged_limits() {
        let config = parse(FULL, Path::new("/etc/isobar/isobar.toml")).unwrap();
        assert_eq!(config.path, Path::new("/etc/isobar/isobar.toml"));
        assert_eq!(
            config.server,
            ServerConfig {
                listen: "0.0.0.0:80".parse().unwrap(),
                cores: Some(2),
                admin: Some("127.0.0.1:9000".parse().unwrap()),
                admin_token: Some("s3cret-token".into()),
                body_limit_bytes: 2 * 1024 * 1024,
                drain_timeout_s: 10,
                tls: None,
            }
        );
        assert_eq!(config.isolates, IsolatesConfig { per_core_max: 500, per_core_heap_mb: 4096, pool: 8 });
        let defaults = Limits { cpu_ms: 100, heap_mb: 256, wall_ms: 30_000, subrequests: 50, concurrency: 1000 };
        assert_eq!(config.default_limits, defaults);
        assert_eq!(config.tenants.len(), 2);

        let shop = &config.tenants[0];
        assert_eq!(shop.name, "shop");
        assert_eq!(shop.name_at, Position { line: 20, column: 8 });
        assert_eq!(shop.script, Path::new("/etc/isobar/workers/shop.js"));
        assert_eq!(shop.script_at, Position { line: 21, column: 10 });
        assert_eq!(shop.format, ScriptFormat::Module);
        let routes: Vec<String> = shop.routes.iter().map(Route::to_string).collect();
        assert_eq!(routes, ["shop.example.com", "*.shop.example.com", "example.com/shop"]);
        assert_eq!(shop.routes[2], Route::parse("example.com/shop").unwrap());
        assert_eq!(shop.vars, BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]));
        assert_eq!(shop.secrets, BTreeMap::from([("API_KEY".to_owned(), "hunter2-do-not-print".to_owned())]));
        assert_eq!(shop.limits, Limits { cpu_ms: 20, ..defaults });

        let blog = &config.tenants[1];
        assert_eq!(blog.name, "blog");
        assert_eq!(blog.script, Path::new("/srv/blog.js"), "an absolute script path stays as it is");
        assert_eq!(blog.format, ScriptFormat::Auto);
        assert_eq!(blog.routes, [Route::parse("example.com").unwrap()]);
        assert!(blog.vars.is_empty() && blog.secrets.is_empty());
        assert_eq!(blog.limits, Limits { heap_mb: 512, subrequests: 0, ..defaults });
    }

    #[test]
    fn minimal_config_gets_every_default() {
        let config = parse_ok(TENANT);
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.server.cores, None);
        assert_eq!(config.server.body_limit_bytes, 1 << 20);
        assert_eq!(config.server.drain_timeout_s, 30);
        assert_eq!(config.isolates, IsolatesConfig { per_core_max: 1000, per_core_heap_mb: 2048, pool: 4 });
        let limits = Limits { cpu_ms: 50, heap_mb: 128, wall_ms: 30_000, subrequests: 50, concurrency: 1000 };
        assert_eq!(config.default_limits, limits);
        let tenant = &config.tenants[0];
        assert_eq!(tenant.limits, limits);
        assert_eq!(tenant.format, ScriptFormat::Auto);
        assert_eq!(tenant.script, Path::new("t.js"), "relative to a config file in the current directory");
        assert_eq!(tenant.name_at, Position { line: 2, column: 8 });
    }

    #[test]
    fn script_is_resolved_against_the_config_directory() {
        let config = parse(TENANT, Path::new("conf/isobar.toml")).unwrap();
        assert_eq!(config.tenants[0].script, Path::new("conf/t.js"));
        let config = parse(&TENANT.replace("t.js", "../w/t.js"), Path::new("/a/b/c.toml")).unwrap();
        assert_eq!(config.tenants[0].script, Path::new("/a/b/../w/t.js"));
    }

    #[test]
    fn formats_and_inline_tenant_tables_parse() {
        let text = r#"tenant = [
  { name = "a", script = "a.js", routes = ["a.test"], format = "service-worker" },
  { name = "b", script = "b.js", routes = ["b.test"], format = "auto" },
]"#;
        let config = parse_ok(text);
        assert_eq!(config.tenants[0].format, ScriptFormat::ServiceWorker);
        assert_eq!(config.tenants[1].format, ScriptFormat::Auto);
        assert_eq!(config.tenants[1].name_at, Position { line: 3, column: 12 });
    }

    #[test]
    fn secrets_and_admin_token_never_appear_in_debug_output() {
        let config = parse(FULL, Path::new(FILE)).unwrap();
        let shown = format!("{config:?} {:#?}", config.tenants[0]);
        assert!(!shown.contains("hunter2-do-not-print"), "{shown}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("API_KEY"), "secret names are shown: {shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("GREETING") && shown.contains("hello"), "vars are shown: {shown}");
    }

    #[test]
    fn secrets_never_appear_in_error_messages() {
        let text = with_tenant("").replace("routes", "secrets = { K = \"top-secret\", L = 5 }\nroutes");
        let message = parse_err(&text);
        assert_eq!(message, "isobar.toml:5:35: tenant.secrets.L must be a string (got an integer)");
        assert!(!message.contains("top-secret"));
    }

    // ---- one test per class of error, with the exact position ----

    #[test]
    fn toml_syntax_errors_have_positions() {
        assert_eq!(
            parse_err("[server]\nlisten = \n"),
            "isobar.toml:2:10: invalid TOML: string values must be quoted, expected literal string"
        );
        assert_eq!(parse_err("[server]\ncores = 1\ncores = 2\n"), "isobar.toml:3:1: invalid TOML: duplicate key");
        let message = parse_err("[[tenant]\n");
        assert!(message.starts_with("isobar.toml:1:"), "{message}");
        assert!(message.contains("invalid TOML"), "{message}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let message = parse_err(&with_tenant("# ünïcödé\n[server]\n  \"ü\" = 1"));
        assert_eq!(
            message,
            "isobar.toml:3:3: unknown key `ü` in [server]; expected one of listen, cores, admin, admin_token, \
             body_limit_bytes, drain_timeout_s, tls"
        );
    }

    #[test]
    fn unknown_keys_name_the_table_and_the_expected_keys() {
        let text = "[[tenant]]\nname = \"shop\"\nscript = \"s.js\"\nroutes = [\"*\"]\n[tenant.limits]\ncpu = 3\n";
        assert_eq!(
            parse_err(text),
            "isobar.toml:6:1: unknown key `cpu` in [tenant.limits]; expected one of cpu_ms, heap_mb, wall_ms, \
             subrequests, concurrency"
        );
        assert_eq!(
            parse_err(&with_tenant("[defaults.limits]\ncpu_ms = 1\nheap = 3")),
            "isobar.toml:3:1: unknown key `heap` in [defaults.limits]; expected one of cpu_ms, heap_mb, wall_ms, \
             subrequests, concurrency"
        );
        assert_eq!(
            parse_err(&with_tenant("[server]\nlisten = \"127.0.0.1:1\"\nport = 3")),
            "isobar.toml:3:1: unknown key `port` in [server]; expected one of listen, cores, admin, admin_token, \
             body_limit_bytes, drain_timeout_s, tls"
        );
        assert_eq!(
            parse_err(&with_tenant("[isolates]\npoool = 3")),
            "isobar.toml:2:1: unknown key `poool` in [isolates]; expected one of per_core_max, per_core_heap_mb, pool"
        );
        assert_eq!(
            parse_err(&with_tenant("[defaults]\ncpu_ms = 3")),
            "isobar.toml:2:1: unknown key `cpu_ms` in [defaults]; expected one of limits"
        );
        assert_eq!(
            parse_err(&with_tenant("[servers]\nlisten = 3")),
            "isobar.toml:1:2: unknown key `servers` at the top level; expected one of server, isolates, defaults, \
             tenant, egress, kv, cache"
        );
        assert_eq!(
            parse_err(&format!("{TENANT}scripts = \"x\"\nzz = 1\n")),
            "isobar.toml:5:1: unknown key `scripts` in [[tenant]]; expected one of name, script, format, routes, \
             vars, secrets, limits, crons, kv, services"
        );
        assert_eq!(
            parse_err(&format!("{TENANT}limits = {{ cpu_ms = 5, wal_ms = 1 }}\n")),
            "isobar.toml:5:24: unknown key `wal_ms` in [tenant.limits]; expected one of cpu_ms, heap_mb, wall_ms, \
             subrequests, concurrency"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        assert_eq!(
            parse_err(&with_tenant("[server]\ncores = \"2\"")),
            "isobar.toml:2:9: server.cores must be an integer (got a string)"
        );
        assert_eq!(
            parse_err(&with_tenant("[server]\nlisten = 8080")),
            "isobar.toml:2:10: server.listen must be a string (got an integer)"
        );
        assert_eq!(
            parse_err(&with_tenant("[isolates]\npool = 1.5")),
            "isobar.toml:2:8: isolates.pool must be an integer (got a float)"
        );
        assert_eq!(parse_err(&with_tenant("server = 5")), "isobar.toml:1:10: server must be a table (got an integer)");
        assert_eq!(
            parse_err(&format!("{TENANT}limits = 5\n")),
            "isobar.toml:5:10: tenant.limits must be a table (got an integer)"
        );
        assert_eq!(
            parse_err(&format!("{TENANT}vars = {{ A = true }}\n")),
            "isobar.toml:5:14: tenant.vars.A must be a string (got a boolean)"
        );
        assert_eq!(
            parse_err("[tenant]\nname = \"t\"\n"),
            "isobar.toml:1:1: tenant must be an array of tables, written [[tenant]] (got a table)"
        );
        assert_eq!(
            parse_err("[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = \"*\"\n"),
            "isobar.toml:4:10: tenant.routes must be an array of strings (got a string)"
        );
        assert_eq!(
            parse_err("[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = [\"*\", 3]\n"),
            "isobar.toml:4:16: tenant.routes must be an array of strings (got an integer)"
        );
        assert_eq!(
            parse_err("[[tenant]]\nname = 7\n"),
            "isobar.toml:2:8: tenant.name must be a string (got an integer)"
        );
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let tenant_with = |limits: &str| format!("{TENANT}limits = {{ {limits} }}\n");
        assert_eq!(
            parse_err(&tenant_with("cpu_ms = 0")),
            "isobar.toml:5:21: tenant.limits.cpu_ms must be between 1 and 60000 (got 0)"
        );
        assert_eq!(
            parse_err(&tenant_with("heap_mb = 8192")),
            format!("isobar.toml:5:22: tenant.limits.heap_mb must be between 4 and {HEAP_MB_MAX} (got 8192)")
        );
        assert_eq!(
            parse_err(&tenant_with("wall_ms = -1")),
            "isobar.toml:5:22: tenant.limits.wall_ms must be between 1 and 600000 (got -1)"
        );
        assert_eq!(
            parse_err(&tenant_with("subrequests = 10001")),
            "isobar.toml:5:26: tenant.limits.subrequests must be between 0 and 10000 (got 10001)"
        );
        assert_eq!(
            parse_err(&with_tenant("[defaults.limits]\nconcurrency = 0")),
            "isobar.toml:2:15: defaults.limits.concurrency must be between 1 and 100000 (got 0)"
        );
        assert_eq!(
            parse_err(&with_tenant("[isolates]\npool = 65")),
            "isobar.toml:2:8: isolates.pool must be between 0 and 64 (got 65)"
        );
        assert_eq!(
            parse_err(&with_tenant("[server]\ncores = 0")),
            "isobar.toml:2:9: server.cores must be between 1 and 4096 (got 0)"
        );
        assert_eq!(
            parse_err(&with_tenant("[server]\nbody_limit_bytes = 99_999_999_999_999_999_999")),
            "isobar.toml:2:20: server.body_limit_bytes must be between 0 and 1073741824 \
             (got 99_999_999_999_999_999_999)"
        );
        // Hexadecimal is TOML too.
        assert_eq!(parse_ok(&with_tenant("[isolates]\npool = 0x10")).isolates.pool, 16);
    }

    /// Past `i128` (serde's limit) and past `u128` (toml's), a number still gets its key.
    #[test]
    fn numbers_beyond_every_integer_type_name_the_key() {
        for huge in ["170_141_183_460_469_231_731_687_303_715_884_105_728", "-170141183460469231731687303715884105729"]
            .into_iter()
            .chain([format!("1{}", "0".repeat(40)).as_str()])
        {
            assert_eq!(
                parse_err(&with_tenant(&format!("[server]\ncores = {huge}"))),
                "isobar.toml:2:9: server.cores cannot be read: integer number overflowed"
            );
        }
        assert_eq!(
            parse_err(&with_tenant("[server]\ncores = 1e400")),
            "isobar.toml:2:9: server.cores cannot be read: floating-point number overflowed"
        );
    }

    #[test]
    fn addresses_must_be_ip_and_port() {
        assert_eq!(
            parse_err(&with_tenant("[server]\nlisten = \"localhost:8080\"")),
            "isobar.toml:2:10: server.listen must be an IP address and a port, such as 127.0.0.1:8080 \
             (got \"localhost:8080\")"
        );
        assert_eq!(
            parse_err(&with_tenant("[server]\nadmin = \"127.0.0.1\"")),
            "isobar.toml:2:9: server.admin must be an IP address and a port, such as 127.0.0.1:8080 \
             (got \"127.0.0.1\")"
        );
        let ipv6 = parse_ok(&with_tenant("[server]\nlisten = \"[::]:8443\"\nadmin = \"[::1]:9000\""));
        assert_eq!(ipv6.server.listen, "[::]:8443".parse().unwrap());
    }

    #[test]
    fn admin_off_loopback_needs_a_token() {
        let text = with_tenant("[server]\nlisten = \"0.0.0.0:80\"\n\n\n\n\nadmin = \"0.0.0.0:9000\"");
        assert_eq!(
            parse_err(&text),
            "isobar.toml:7:9: server.admin_token is required when server.admin (0.0.0.0:9000) is not a loopback \
             address"
        );
        assert!(
            parse_err(&with_tenant("[server]\nadmin = \"[::ffff:10.0.0.1]:9\"")).contains("admin_token is required")
        );
        // Loopback, in any spelling, needs none.
        for admin in ["127.0.0.1:9000", "127.8.9.10:9000", "[::1]:9000", "[::ffff:127.0.0.1]:9000"] {
            let config = parse_ok(&with_tenant(&format!("[server]\nadmin = \"{admin}\"")));
            assert_eq!(config.server.admin, Some(admin.parse().unwrap()));
            assert_eq!(config.server.admin_token, None);
        }
        let config = parse_ok(&with_tenant("[server]\nadmin = \"0.0.0.0:9000\"\nadmin_token = \"t\""));
        assert_eq!(config.server.admin_token.as_deref(), Some("t"));
        assert_eq!(
            parse_err(&with_tenant("[server]\nadmin = \"0.0.0.0:9000\"\nadmin_token = \"\"")),
            "isobar.toml:3:15: server.admin_token must not be empty"
        );
    }

    #[test]
    fn admin_must_not_take_the_listen_port() {
        assert_eq!(
            parse_err(&with_tenant("[server]\nadmin = \"127.0.0.1:8080\"")),
            "isobar.toml:2:9: server.admin (127.0.0.1:8080) must use another port than server.listen \
             (127.0.0.1:8080)"
        );
        let all = "[server]\nlisten = \"0.0.0.0:80\"\nadmin = \"127.0.0.1:80\"";
        assert!(parse_err(&with_tenant(all)).contains("must use another port"));
        parse_ok(&with_tenant("[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\""));
        parse_ok(&with_tenant("[server]\nlisten = \"127.0.0.2:80\"\nadmin = \"127.0.0.1:80\""));
    }

    #[test]
    fn budgets_must_fit_together() {
        assert_eq!(
            parse_err(&with_tenant("[isolates]\nper_core_max = 2")),
            "isobar.toml:2:16: isolates.pool (4) must not be more than isolates.per_core_max (2)"
        );
        assert_eq!(
            parse_err(&with_tenant("[isolates]\nper_core_max = 2\npool = 3")),
            "isobar.toml:3:8: isolates.pool (3) must not be more than isolates.per_core_max (2)"
        );
        assert_eq!(
            parse_err(&with_tenant("[isolates]\nper_core_heap_mb = 100")),
            "isobar.toml:2:20: defaults.limits.heap_mb is 128 MiB but isolates.per_core_heap_mb is 100 MiB, so no \
             core could hold a single isolate"
        );
        assert_eq!(
            parse_err(&format!("[isolates]\nper_core_heap_mb = 1000\n{TENANT}limits = {{ heap_mb = 1024 }}")),
            "isobar.toml:7:22: tenant.limits.heap_mb is 1024 MiB but isolates.per_core_heap_mb is 1000 MiB, so no \
             core could hold a single isolate"
        );
    }

    #[test]
    fn there_must_be_tenants() {
        assert_eq!(
            parse_err("[server]\n"),
            "isobar.toml:1:1: no tenants: add a [[tenant]] table with a name, a script and routes"
        );
        assert_eq!(parse_err("\ntenant = []\n").split(": ").next(), Some("isobar.toml:2:10"));
    }

    #[test]
    fn missing_tenant_keys_point_at_the_tenant() {
        assert_eq!(
            parse_err("[server]\n\n[[tenant]]\nscript = \"a.js\"\n"),
            "isobar.toml:3:1: tenant.name is required"
        );
        assert_eq!(
            parse_err("[[tenant]]\nname = \"a\"\nroutes = [\"*\"]\n"),
            "isobar.toml:1:1: tenant.script is required: the path of the Worker script, relative to this file"
        );
        assert_eq!(
            parse_err("[[tenant]]\nname = \"a\"\nscript = \"a.js\"\n"),
            "isobar.toml:1:1: tenant.routes is required: list at least one route, such as \"example.com\" or \
             \"*.example.com/api\""
        );
        assert_eq!(
            parse_err("[[tenant]]\nname = \"a\"\nscript = \"a.js\"\nroutes = []\n"),
            "isobar.toml:4:10: tenant.routes must list at least one route, such as \"example.com\""
        );
        assert_eq!(
            parse_err("[[tenant]]\nname = \"a\"\nscript = \"\"\nroutes = [\"*\"]\n"),
            "isobar.toml:3:10: tenant.script must not be empty"
        );
    }

    #[test]
    fn tenant_names_are_checked() {
        for name in ["Shop", "-shop", "_a", "", "a b", "ä", &"a".repeat(64)] {
            let message = parse_err(&TENANT.replace("\"t\"", &format!("{name:?}")));
            assert_eq!(
                message,
                format!(
                    "isobar.toml:2:8: tenant.name {name:?} must be 1 to 63 characters of a-z, 0-9, `_` and `-`, \
                     starting with a letter or a digit"
                )
            );
        }
        for name in ["a", "0", "shop-2_b", &"a".repeat(63)] {
            parse_ok(&TENANT.replace("\"t\"", &format!("{name:?}")));
        }
    }

    #[test]
    fn duplicate_tenant_names() {
        let text = format!("\n\n{TENANT}\n{}", TENANT.replace("\"*\"", "\"other.test\""));
        assert_eq!(parse_err(&text), "isobar.toml:9:8: duplicate tenant name \"t\" (first defined at line 4)");
    }

    #[test]
    fn bad_format() {
        assert_eq!(
            parse_err(&format!("{TENANT}format = \"esm\"\n")),
            "isobar.toml:5:10: tenant.format must be one of auto, module, service-worker (got \"esm\")"
        );
    }

    #[test]
    fn bad_routes_quote_the_route_and_the_reason() {
        let text = "[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = [\"ok.com\", \"a.*.com\"]\n";
        assert_eq!(parse_err(text), "isobar.toml:4:21: route \"a.*.com\": a wildcard must be the leftmost label");
        let text = "[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = [\"*.\"]\n";
        assert!(parse_err(text).starts_with("isobar.toml:4:11: route \"*.\": a wildcard needs a domain"));
        let text = "[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = [\"\"]\n";
        assert!(parse_err(text).starts_with("isobar.toml:4:11: route \"\": a route cannot be empty"));
    }

    #[test]
    fn duplicate_routes_name_both_tenants() {
        let text = r#"[[tenant]]
name = "shop"
script = "shop.js"
routes = ["example.com/shop", "*.example.com"]

[[tenant]]
name = "blog"
script = "blog.js"
routes = ["blog.test", "Example.COM/shop/"]
"#;
        assert_eq!(
            parse_err(text),
            "isobar.toml:9:24: route \"Example.COM/shop/\" of tenant \"blog\" is the same as route \
             \"example.com/shop\" of tenant \"shop\" (line 4); a host and path prefix can go to one tenant only"
        );
        let text = "[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = [\"a.com\", \"a.com/\"]\n";
        assert!(parse_err(text).starts_with(
            "isobar.toml:4:20: route \"a.com/\" of tenant \"t\" is the same as route \"a.com\" of tenant \"t\" (line 4)"
        ));
    }

    #[test]
    fn cache_table_sets_the_store_with_defaults_beside_the_file() {
        let config = parse(&with_tenant(""), Path::new("/etc/isobar/isobar.toml")).unwrap();
        assert_eq!(config.cache, CacheStoreConfig::in_directory(PathBuf::from("/etc/isobar/cache")));
        assert!(!config.cache.path_given);
        let text = with_tenant("[cache]\npath = \"/var/cache/isobar\"\nmemory_mb = 0\ndisk_mb = 100\n");
        let config = parse(&text, Path::new("/etc/isobar/isobar.toml")).unwrap();
        assert_eq!(
            config.cache,
            CacheStoreConfig {
                directory: PathBuf::from("/var/cache/isobar"),
                path_given: true,
                memory_mb: 0,
                disk_mb: 100
            }
        );
        let relative = parse(&with_tenant("[cache]\npath = \"c\"\n"), Path::new("/srv/isobar.toml")).unwrap();
        assert_eq!(relative.cache.directory, PathBuf::from("/srv/c"));
        assert_eq!(relative.cache.memory_mb, CacheStoreConfig::MEMORY_MB_DEFAULT);

        assert_eq!(parse_err(&with_tenant("[cache]\npath = \"\"\n")), "isobar.toml:2:8: cache.path must not be empty");
        assert_eq!(
            parse_err(&with_tenant("[cache]\nmemory_mb = -1\n")),
            "isobar.toml:2:13: cache.memory_mb must be between 0 and 1048576 (got -1)"
        );
        assert_eq!(
            parse_err(&with_tenant("[cache]\ndisk_mb = 99999999999\n")),
            "isobar.toml:2:11: cache.disk_mb must be between 0 and 67108864 (got 99999999999)"
        );
        assert_eq!(
            parse_err(&with_tenant("[cache]\nmemory_mb = \"big\"\n")),
            "isobar.toml:2:13: cache.memory_mb must be an integer (got a string)"
        );
        assert_eq!(
            parse_err(&with_tenant("[cache]\nmemroy_mb = 1\n")),
            "isobar.toml:2:1: unknown key `memroy_mb` in [cache]; expected one of path, memory_mb, disk_mb"
        );
    }

    #[test]
    fn service_bindings_are_checked() {
        let config = parse_ok(&format!("{TENANT}services = {{ AUTH = \"auth\", Self_ = \"t\" }}\n"));
        let expected = BTreeMap::from([("AUTH".to_string(), "auth".to_string()), ("Self_".into(), "t".into())]);
        assert_eq!(config.tenants[0].services, expected);
        assert_eq!(config.tenants[0].settings(String::new()).services, expected);
        assert_eq!(
            parse_err(&format!("{TENANT}vars = {{ AUTH = \"1\" }}\nservices = {{ AUTH = \"auth\" }}\n")),
            "isobar.toml:6:14: tenant.services \"AUTH\" is also in tenant.vars; a name on env can hold only one value"
        );
        assert!(parse_err(&format!("{TENANT}services = {{ \"a-b\" = \"auth\" }}\n")).contains("JavaScript identifier"));
        assert!(parse_err(&format!("{TENANT}services = {{ A = \"Not A Tenant\" }}\n")).contains("not a tenant name"));
    }

    #[test]
    fn kv_bindings_and_the_store() {
        let config = parse_ok(&format!(
            "{TENANT}vars = {{ A = \"1\" }}\n[[tenant.kv]]\nbinding = \"CACHE\"\nnamespace = \"cache-v1\"\n\
             [[tenant.kv]]\nbinding = \"SESSIONS\"\n"
        ));
        assert_eq!(
            config.tenants[0].kv,
            vec![
                KvBinding { binding: "CACHE".into(), namespace: "cache-v1".into() },
                KvBinding { binding: "SESSIONS".into(), namespace: "SESSIONS".into() },
            ]
        );
        assert_eq!(config.tenants[0].settings(String::new()).kv.len(), 2);
        assert_eq!(config.kv, KvStoreConfig::Embedded { directory: PathBuf::from("kv") });
        let config = parse_ok(&format!("[kv]\npath = \"/var/lib/isobar\"\n{TENANT}"));
        assert_eq!(config.kv, KvStoreConfig::Embedded { directory: PathBuf::from("/var/lib/isobar") });
        let config =
            parse_ok(&format!("[kv]\nbackend = \"redis\"\nnodes = [\"127.0.0.1:6379\"]\ncluster = true\n{TENANT}"));
        assert_eq!(
            config.kv,
            KvStoreConfig::Redis { nodes: vec![SocketAddr::from(([127, 0, 0, 1], 6379))], cluster: true }
        );

        assert_eq!(
            parse_err(&format!("{TENANT}vars = {{ A = \"1\" }}\n[[tenant.kv]]\nbinding = \"A\"\n")),
            "isobar.toml:7:11: tenant.kv.binding \"A\" is also in tenant.vars; a name on env can hold only one value"
        );
        assert_eq!(
            parse_err(&format!("{TENANT}[[tenant.kv]]\nbinding = \"B\"\n[[tenant.kv]]\nbinding = \"B\"\n")),
            "isobar.toml:8:11: tenant.kv.binding \"B\" is also another [[tenant.kv]] binding; a name on env can hold \
             only one value"
        );
        assert!(
            parse_err(&format!("{TENANT}[[tenant.kv]]\nbinding = \"no-dash\"\n"))
                .starts_with("isobar.toml:6:11: tenant.kv.binding \"no-dash\" must be a JavaScript identifier")
        );
        assert!(
            parse_err(&format!("{TENANT}[[tenant.kv]]\nbinding = \"K\"\nnamespace = \"a b\"\n"))
                .starts_with("isobar.toml:7:13: tenant.kv.namespace \"a b\" must be")
        );
        assert_eq!(
            parse_err(&format!("{TENANT}[[tenant.kv]]\nnamespace = \"x\"\n")),
            "isobar.toml:5:1: tenant.kv.binding is required: the name of the KVNamespace on env, such as \"CACHE\""
        );
        assert!(parse_err(&format!("{TENANT}[[tenant.kv]]\nbindng = \"K\"\n")).contains("unknown key `bindng`"));
        assert_eq!(
            parse_err(&format!("[kv]\nbackend = \"etcd\"\n{TENANT}")),
            "isobar.toml:2:11: kv.backend must be \"embedded\" or \"redis\" (got \"etcd\")"
        );
        assert!(parse_err(&format!("[kv]\nbackend = \"redis\"\n{TENANT}")).contains("needs kv.nodes"));
        assert!(
            parse_err(&format!("[kv]\nbackend = \"redis\"\nnodes = [\"localhost\"]\n{TENANT}"))
                .starts_with("isobar.toml:3:10: kv.nodes must be an IP address and a port")
        );
    }

    #[test]
    fn bindings_are_checked() {
        assert_eq!(
            parse_err(&format!("{TENANT}vars = {{ \"\" = \"x\" }}\n")),
            "isobar.toml:5:10: tenant.vars has a key that is an empty string; give the binding a name"
        );
        assert_eq!(
            parse_err(&format!("{TENANT}vars = {{ A = \"1\", B = \"2\" }}\nsecrets = {{ C = \"3\", B = \"4\" }}\n")),
            "isobar.toml:6:22: tenant.secrets.B is also in tenant.vars; a name on env can hold only one value"
        );
        assert_eq!(
            parse_err(&format!("{TENANT}secrets = [\"A\"]\n")),
            "isobar.toml:5:11: tenant.secrets must be a table (got an array)"
        );
    }

    #[test]
    fn script_errors_point_at_the_script_value() {
        let config = parse_ok(&format!("\n{TENANT}"));
        let error = io::Error::from_raw_os_error(2);
        assert_eq!(
            ConfigError::script(&config, &config.tenants[0], &error).to_string(),
            "isobar.toml:4:10: tenant t: cannot read script t.js: No such file or directory"
        );
    }

    /// Mangles the full example many ways (deleting, duplicating and inserting characters): every
    /// result must be a `Config` or a positioned error, never a panic.
    #[test]
    fn parse_never_panics_on_mangled_input() {
        let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut next = move |below: usize| rng.random_range(0..below);
        const INSERTS: &[&str] =
            &["\"", "=", "[", "]", "{", "}", ",", "\n", "#", "*", ".", "0", "-1", "é", "[[tenant]]"];
        let original: Vec<char> = FULL.chars().collect();
        let (mut parsed, mut failed) = (0, 0);
        for _ in 0..3000 {
            let mut chars = original.clone();
            for _ in 0..1 + next(3) {
                let at = next(chars.len());
                match next(3) {
                    0 => {
                        chars.remove(at);
                    }
                    1 => chars.insert(at, chars[next(chars.len())]),
                    _ => chars.splice(at..at, INSERTS[next(INSERTS.len())].chars()).for_each(drop),
                }
            }
            let text: String = chars.into_iter().collect();
            match parse(&text, Path::new(FILE)) {
                Ok(_) => parsed += 1,
                Err(error) => {
                    let message = error.to_string();
                    assert!(message.starts_with("isobar.toml:"), "{message}");
                    assert!(!message.contains("hunter2") && !message.contains("s3cret"), "{message}");
                    failed += 1;
                }
            }
        }
        assert!(parsed > 100 && failed > 1000, "parsed {parsed}, failed {failed}");
    }

    /// The file's limit keys are the shared ones (`crate::limits`, which the admin API uses too):
    /// each sets its own field and is checked against its own range.
    #[test]
    fn limit_keys_and_limits_agree() {
        for key in &LIMIT_KEYS {
            let text = |value: i64| format!("{TENANT}limits = {{ {} = {value} }}\n", key.name);
            let config = parse_ok(&text(key.min.into()));
            assert_eq!(key.get(&config.tenants[0].limits), key.min, "{}", key.name);
            let mut others = config.tenants[0].limits;
            key.set(&mut others, key.get(&Limits::default()).into()).unwrap();
            assert_eq!(others, Limits::default(), "{} sets only its own field", key.name);
            let over = i64::from(key.max) + 1;
            assert!(
                parse_err(&text(over)).ends_with(&format!(
                    "tenant.limits.{} must be between {} and {} (got {over})",
                    key.name, key.min, key.max
                )),
                "{}",
                key.name
            );
        }
    }

    /// Keys and their tables are named from the document, not from a list, so sections added
    /// later (`[server.tls]`, `[[tenant.kv]]`, `crons`, `[cache]`) are named right as they are.
    #[test]
    fn keys_and_tables_are_named_from_the_document() {
        let cases = [
            ("[server.tls]\ncert = 1\n", "cert", "server.tls.cert", "[server.tls]"),
            ("[[tenant]]\nname = \"t\"\n[[tenant.kv]]\nbinding = 1\n", "binding", "tenant.kv.binding", "[[tenant.kv]]"),
            ("[[tenant]]\nkv = [{ binding = 1 }]\n", "binding", "tenant.kv.binding", "[[tenant.kv]]"),
            ("[[tenant]]\n[tenant.limits]\ncpu = 1\n", "cpu", "tenant.limits.cpu", "[tenant.limits]"),
            ("[cache]\nsize.mb = 1\n", "mb", "cache.size.mb", "[cache.size]"),
            ("egress = 1\n", "egress", "egress", ""),
        ];
        for (text, needle, key, table) in cases {
            let root = DeTable::parse(text).unwrap();
            let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
            let (steps, value) = locate(&root, text.rfind(needle).unwrap()).unwrap();
            assert_eq!((dotted(&steps), table_of(&steps), value.is_none()), (key.to_owned(), table.to_owned(), true));
        }
        let text = "[[tenant]]\ncrons = [\"* * * * *\", 5]\n";
        let root = DeTable::parse(text).unwrap();
        let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
        let (steps, value) = locate(&root, text.find('5').unwrap()).unwrap();
        assert_eq!((dotted(&steps), value.map(type_phrase)), ("tenant.crons".to_owned(), Some("an integer")));
        assert_eq!(
            parse_err(&with_tenant("[egressx]\nallow = []")),
            "isobar.toml:1:2: unknown key `egressx` at the top level; expected one of server, isolates, defaults, tenant, egress, kv, cache"
        );
    }

    const TLS: &str = r#"[server]
listen = "0.0.0.0:80"

[server.tls]
listen = "0.0.0.0:443"
handshake_timeout_ms = 5000
certificates = [
  { cert = "certs/shop.pem", key = "certs/shop.key" },
  { cert = "/etc/certs/blog.pem", key = "/etc/certs/blog.key" },
]
"#;

    #[test]
    fn tls_lists_certificates_with_their_places() {
        let config = parse(&with_tenant(TLS), Path::new("/etc/isobar/isobar.toml")).unwrap();
        let tls = config.server.tls.unwrap();
        assert_eq!(tls.listen, "0.0.0.0:443".parse().unwrap());
        assert_eq!(tls.handshake_timeout_ms, 5000);
        assert_eq!(
            tls.certificates,
            [
                CertificateConfig {
                    cert: PathBuf::from("/etc/isobar/certs/shop.pem"),
                    cert_at: Position { line: 8, column: 12 },
                    key: PathBuf::from("/etc/isobar/certs/shop.key"),
                    key_at: Position { line: 8, column: 36 },
                },
                CertificateConfig {
                    cert: PathBuf::from("/etc/certs/blog.pem"),
                    cert_at: Position { line: 9, column: 12 },
                    key: PathBuf::from("/etc/certs/blog.key"),
                    key_at: Position { line: 9, column: 41 },
                },
            ]
        );
        // The array-of-tables form, with the defaults.
        let text = "[[server.tls.certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n";
        let tls = parse_ok(&with_tenant(text)).server.tls.unwrap();
        assert_eq!(tls.listen, TlsConfig::LISTEN_DEFAULT);
        assert_eq!(tls.handshake_timeout_ms, 10_000);
        assert_eq!(tls.certificates[0].key, Path::new("a.key"));
        assert_eq!(parse_ok(TENANT).server.tls, None);
    }

    #[test]
    fn tls_mistakes_name_the_key() {
        let cases = [
            (
                "[server.tls]\nlisten = \"0.0.0.0:443\"",
                "isobar.toml:1:1: server.tls.certificates is required: list the certificates to serve, such as [{ cert = \"cert.pem\", key = \"key.pem\" }]",
            ),
            (
                "[server.tls]\ncertificates = []",
                "isobar.toml:2:16: server.tls.certificates must list at least one { cert = \"cert.pem\", key = \"key.pem\" }",
            ),
            (
                "[server.tls]\ncertificates = \"a.pem\"",
                "isobar.toml:2:16: server.tls.certificates must be an array of tables, such as [{ cert = \"cert.pem\", key = \"key.pem\" }] (got a string)",
            ),
            (
                "[server.tls]\ncertificates = [{ cert = \"a.pem\" }]",
                "isobar.toml:2:17: server.tls.certificates.key is required: the path of a PEM file, relative to this file",
            ),
            (
                "[server.tls]\ncertificates = [{ cert = \"\", key = \"k\" }]",
                "isobar.toml:2:26: server.tls.certificates.cert must not be empty",
            ),
            (
                "[server.tls]\ncertificates = [{ cert = \"c\", key = \"k\", chain = 1 }]",
                "isobar.toml:2:42: unknown key `chain` in [[server.tls.certificates]]; expected one of cert, key",
            ),
            (
                "[server.tls]\ncert = \"c\"",
                "isobar.toml:2:1: unknown key `cert` in [server.tls]; expected one of listen, certificates, handshake_timeout_ms",
            ),
            (
                "[server.tls]\ncertificates = [{ cert = \"c\", key = \"k\" }]\nhandshake_timeout_ms = 0",
                "isobar.toml:3:24: server.tls.handshake_timeout_ms must be between 100 and 60000 (got 0)",
            ),
            (
                "[server.tls]\nlisten = \"443\"\ncertificates = [{ cert = \"c\", key = \"k\" }]",
                "isobar.toml:2:10: server.tls.listen must be an IP address and a port, such as 127.0.0.1:8080 (got \"443\")",
            ),
            (
                "[server]\nlisten = \"0.0.0.0:443\"\n[server.tls]\nlisten = \"127.0.0.1:443\"\ncertificates = [{ cert = \"c\", key = \"k\" }]",
                "isobar.toml:4:10: server.tls.listen (127.0.0.1:443) must use another port than server.listen (0.0.0.0:443)",
            ),
            (
                "[server]\nadmin = \"127.0.0.1:8443\"\n[server.tls]\ncertificates = [{ cert = \"c\", key = \"k\" }]",
                "isobar.toml:3:1: server.tls.listen (127.0.0.1:8443) must use another port than server.admin (127.0.0.1:8443)",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse_err(&with_tenant(text)), message, "{text}");
        }
        parse_ok(&with_tenant(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [{ cert = \"c\", key = \"k\" }]",
        ));
    }

    #[test]
    fn certificate_errors_point_at_the_file_value() {
        let config = parse_ok(&with_tenant(TLS));
        let second = &config.server.tls.as_ref().unwrap().certificates[1];
        let error = io::Error::from_raw_os_error(2);
        assert_eq!(
            ConfigError::certificate_file(&config, second, CertificateFile::Key, &error).to_string(),
            "isobar.toml:9:41: server.tls.certificates.key: cannot read /etc/certs/blog.key: No such file or directory"
        );
        assert_eq!(
            ConfigError::certificate(
                &config,
                second,
                CertificateFile::Cert,
                "/etc/certs/blog.pem holds no certificate".into()
            )
            .to_string(),
            "isobar.toml:9:12: server.tls.certificates.cert: /etc/certs/blog.pem holds no certificate"
        );
        assert!(same_listener("0.0.0.0:443".parse().unwrap(), "10.0.0.1:443".parse().unwrap()));
        assert!(!same_listener("10.0.0.2:443".parse().unwrap(), "10.0.0.1:443".parse().unwrap()));
        assert!(!same_listener("[::]:0".parse().unwrap(), "[::]:0".parse().unwrap()));
    }

    #[test]
    fn egress_networks_and_ca_files_are_checked() {
        let config = parse(
            &with_tenant("[egress]\nallow = [\"10.1.0.0/16\", \"192.168.5.5\"]\ndeny = [\"203.0.113.0/24\"]\nca_files = [\"ca.pem\"]"),
            Path::new("/etc/isobar/isobar.toml"),
        )
        .unwrap();
        assert_eq!(config.egress.allow.len(), 2);
        assert_eq!(config.egress.deny[0].prefix, 24);
        assert_eq!(config.egress.ca_files, vec![PathBuf::from("/etc/isobar/ca.pem")]);
        assert_eq!(
            parse_err(&with_tenant("[egress]\nallow = [\"10.0.0.0/40\"]")),
            "isobar.toml:2:10: egress.allow must hold networks such as \"10.0.0.0/8\" or addresses such as \"10.1.2.3\" (got \"10.0.0.0/40\")"
        );
        assert_eq!(
            parse_err(&with_tenant("[egress]\nopen = true")),
            "isobar.toml:2:1: unknown key `open` in [egress]; expected one of allow, deny, ca_files"
        );
        assert!(parse_err(&with_tenant("[egress]\nallow = [5]")).starts_with("isobar.toml:2:"));
    }

    #[test]
    fn positions_of_names_and_scripts_are_kept() {
        let config = parse(FULL, Path::new(FILE)).unwrap();
        let blog = &config.tenants[1];
        assert_eq!(
            (blog.name_at, blog.script_at),
            (Position { line: 29, column: 8 }, Position { line: 30, column: 10 })
        );
        assert_eq!(Position { line: 3, column: 7 }.to_string(), "3:7");
    }
}
