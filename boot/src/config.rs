//! The configuration file of `isobar serve --config isobar.toml`: the server's listeners, the
//! isolate budgets per core, default limits, and the tenants with their scripts and routes.
//!
//! Parsing turns the file into plain data ([`Config`]) and checks everything that can be checked
//! without touching the file system or the machine: types, ranges, names, routes and their
//! uniqueness across tenants, and that an admin listener off loopback has a token. It does not
//! read the scripts (the caller does, and reports a failure at the tenant's
//! [`TenantConfig::script_at`] with [`ConfigError::script`]) and does not check `cores` against
//! the CPUs this process may use.
//!
//! Every error names the file, the 1-based line and column, and the key, e.g.
//!
//! ```text
//! isobar.toml:20:21: tenant.limits.cpu_ms must be between 1 and 60000 (got 0)
//! ```
//!
//! To get a position and a key name for every kind of error, this walks toml's span-carrying
//! document tree ([`DeTable`]) instead of deriving `serde::Deserialize` with
//! `deny_unknown_fields`: toml's serde errors carry a span but not the key, so a wrong type could
//! not be named, and `[defaults.limits]` and `[tenant.limits]` (the same fields) could not be told
//! apart. Unknown keys are rejected all the same, everywhere.
//!
//! Secret values (`tenant.secrets`, `server.admin_token`) never appear in an error or in `Debug`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use runtime::routes::{Route, RouteError};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

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
        }
    }
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

/// The limits of one tenant (`[defaults.limits]`, overridden by `tenant.limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPU time per request.
    pub cpu_ms: u32,
    /// Heap per isolate; at most `isolates.per_core_heap_mb`.
    pub heap_mb: u32,
    /// Wall-clock time per request.
    pub wall_ms: u32,
    /// Outbound fetches per request.
    pub subrequests: u32,
    /// In-flight requests per tenant per core.
    pub concurrency: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { cpu_ms: 50, heap_mb: 128, wall_ms: 30_000, subrequests: 50, concurrency: 1000 }
    }
}

/// How to load a tenant's script.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// A module if the script uses `import`/`export`, else a service worker.
    #[default]
    Auto,
    /// `export default { fetch(request, env, ctx) }`
    Module,
    /// `addEventListener('fetch', event => event.respondWith(...))`
    ServiceWorker,
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
    pub format: Format,
    /// Parsed and normalized; none of them is another tenant's.
    pub routes: Vec<Route>,
    pub vars: BTreeMap<String, String>,
    /// Never printed: `Debug` shows the names only.
    pub secrets: BTreeMap<String, String>,
    /// `[defaults.limits]` with this tenant's `limits` on top.
    pub limits: Limits,
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

    /// What is wrong, without the file and position.
    #[cfg_attr(not(test), allow(dead_code))]
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
    UnknownKey { key: String, table: &'static str, expected: &'static [&'static str] },
    #[error("{key} must be {expected} (got {got})")]
    WrongType { key: String, expected: &'static str, got: &'static str },
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
    #[error("isolates.pool ({pool}) must not be more than isolates.per_core_max ({per_core_max})")]
    PoolOverMax { pool: u32, per_core_max: u32 },
    #[error(
        "{key} is {heap_mb} MiB but isolates.per_core_heap_mb is {per_core_heap_mb} MiB, \
         so no core could hold a single isolate"
    )]
    HeapOverBudget { key: &'static str, heap_mb: u32, per_core_heap_mb: u32 },
    #[error("no tenants: add a [[tenant]] table with a name, a script and routes")]
    NoTenants,
    #[error(
        "tenant.name {name:?} must be 1 to 63 characters of a-z, 0-9, `_` and `-`, \
         starting with a letter or a digit"
    )]
    TenantName { name: String },
    #[error("duplicate tenant name {name:?} (first defined at line {first_line})")]
    DuplicateTenant { name: String, first_line: usize },
    #[error("tenant.script must not be empty")]
    ScriptEmpty,
    #[error("tenant.format must be one of auto, module, service-worker (got {got:?})")]
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

/// Reads and parses the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
    parse(&text, path)
}

/// Parses a configuration; `path` names the file in errors, and `script` paths are resolved
/// against its directory.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let source = Source::new(text, path);
    let root = DeTable::parse(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        source.error_at(offset, Problem::Syntax(error.message().to_owned()))
    })?;
    let root = Section { table: "", path: "", span: root.span(), entries: root.get_ref() };
    root.check_keys(&source, &["server", "isolates", "defaults", "tenant"])?;

    let server = match root.table(&source, "server", "[server]", "server")? {
        Some(section) => parse_server(&source, &section)?,
        None => ServerConfig::default(),
    };
    let (isolates, isolates_spans) = match root.table(&source, "isolates", "[isolates]", "isolates")? {
        Some(section) => parse_isolates(&source, &section)?,
        None => (IsolatesConfig::default(), IsolatesSpans::default()),
    };
    let (default_limits, default_heap_span) = match root.table(&source, "defaults", "[defaults]", "defaults")? {
        Some(defaults) => {
            defaults.check_keys(&source, &["limits"])?;
            match defaults.table(&source, "limits", "[defaults.limits]", "defaults.limits")? {
                Some(limits) => parse_limits(&source, &limits, Limits::default())?,
                None => (Limits::default(), None),
            }
        }
        None => (Limits::default(), None),
    };
    if default_limits.heap_mb > isolates.per_core_heap_mb {
        // With both at their defaults this cannot happen, so one of the two spans is set.
        let span = default_heap_span.or(isolates_spans.per_core_heap_mb).unwrap_or(0..0);
        return Err(source.error(
            &span,
            Problem::HeapOverBudget {
                key: "defaults.limits.heap_mb",
                heap_mb: default_limits.heap_mb,
                per_core_heap_mb: isolates.per_core_heap_mb,
            },
        ));
    }

    let tenants = parse_tenants(&source, &root, default_limits, &isolates)?;
    Ok(Config { path: path.to_path_buf(), server, isolates, default_limits, tenants })
}

/// The text of the file, for turning byte offsets into positions.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    /// The byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        Source { path, text, line_starts }
    }

    fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        // Offsets from the parser are on character boundaries; count bytes if one is not.
        let column = self.text.get(start..offset).map_or(offset - start, |before| before.chars().count());
        Position { line: line + 1, column: column + 1 }
    }

    fn error_at(&self, offset: usize, problem: Problem) -> ConfigError {
        ConfigError::Invalid { file: self.path.to_path_buf(), at: self.position(offset), problem: Box::new(problem) }
    }

    fn error(&self, span: &Range<usize>, problem: Problem) -> ConfigError {
        self.error_at(span.start, problem)
    }
}

type Value<'i> = Spanned<DeValue<'i>>;

/// One TOML table and how messages name it.
struct Section<'t, 'i> {
    /// How messages about unknown keys name the table, e.g. `[tenant.limits]`; `""` for the top.
    table: &'static str,
    /// The dotted path of its keys in messages, e.g. `tenant.limits`; `""` for the top.
    path: &'static str,
    /// The table's header (or inline table), where a missing key is reported.
    span: Range<usize>,
    entries: &'t DeTable<'i>,
}

impl<'t, 'i> Section<'t, 'i> {
    fn key_name(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// Rejects the first key (in file order) that is not in `expected`.
    fn check_keys(&self, source: &Source<'_>, expected: &'static [&'static str]) -> Result<(), ConfigError> {
        let unknown = self
            .entries
            .keys()
            .filter(|key| !expected.contains(&key.get_ref().as_ref()))
            .min_by_key(|key| key.span().start);
        match unknown {
            None => Ok(()),
            Some(key) => Err(source.error(
                &key.span(),
                Problem::UnknownKey { key: key.get_ref().to_string(), table: self.table, expected },
            )),
        }
    }

    fn value(&self, key: &str) -> Option<&'t Value<'i>> {
        self.entries.get(key)
    }

    fn wrong_type(&self, source: &Source<'_>, key: &str, value: &Value<'_>, expected: &'static str) -> ConfigError {
        source.error(&value.span(), Problem::WrongType { key: self.key_name(key), expected, got: type_phrase(value) })
    }

    fn string(&self, source: &Source<'_>, key: &str) -> Result<Option<(&'t str, Range<usize>)>, ConfigError> {
        let Some(value) = self.value(key) else { return Ok(None) };
        match value.get_ref() {
            DeValue::String(text) => Ok(Some((text.as_ref(), value.span()))),
            _ => Err(self.wrong_type(source, key, value, "a string")),
        }
    }

    fn integer(
        &self,
        source: &Source<'_>,
        key: &str,
        range: (u64, u64),
    ) -> Result<Option<(u64, Range<usize>)>, ConfigError> {
        let Some(value) = self.value(key) else { return Ok(None) };
        let DeValue::Integer(integer) = value.get_ref() else {
            return Err(self.wrong_type(source, key, value, "an integer"));
        };
        let (min, max) = range;
        let out_of_range =
            |got: String| source.error(&value.span(), Problem::OutOfRange { key: self.key_name(key), min, max, got });
        // Too large for i64 is out of range too; the message then quotes the file's text.
        let number = i64::from_str_radix(integer.as_str(), integer.radix())
            .map_err(|_| out_of_range(source.text.get(value.span()).unwrap_or("?").to_owned()))?;
        match u64::try_from(number) {
            Ok(number) if (min..=max).contains(&number) => Ok(Some((number, value.span()))),
            _ => Err(out_of_range(number.to_string())),
        }
    }

    /// Like `integer`, for keys whose maximum fits in a `u32`.
    fn integer_u32(
        &self,
        source: &Source<'_>,
        key: &str,
        range: (u32, u32),
    ) -> Result<Option<(u32, Range<usize>)>, ConfigError> {
        let found = self.integer(source, key, (u64::from(range.0), u64::from(range.1)))?;
        // The range check above makes the conversion exact.
        Ok(found.map(|(number, span)| (u32::try_from(number).unwrap_or(range.1), span)))
    }

    fn address(
        &self,
        source: &Source<'_>,
        key: &'static str,
    ) -> Result<Option<(SocketAddr, Range<usize>)>, ConfigError> {
        let Some((text, span)) = self.string(source, key)? else { return Ok(None) };
        match text.parse() {
            Ok(address) => Ok(Some((address, span))),
            Err(_) => Err(source.error(&span, Problem::Address { key: self.key_name(key), got: text.to_owned() })),
        }
    }

    fn table(
        &self,
        source: &Source<'_>,
        key: &str,
        table: &'static str,
        path: &'static str,
    ) -> Result<Option<Section<'t, 'i>>, ConfigError> {
        let Some(value) = self.value(key) else { return Ok(None) };
        match value.get_ref() {
            DeValue::Table(entries) => Ok(Some(Section { table, path, span: value.span(), entries })),
            _ => Err(self.wrong_type(source, key, value, "a table")),
        }
    }
}

/// "a string", "an integer", ...: the type of a value for messages (never the value itself,
/// which may be a secret).
fn type_phrase(value: &Value<'_>) -> &'static str {
    match value.get_ref() {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

const SERVER_KEYS: &[&str] = &["listen", "cores", "admin", "admin_token", "body_limit_bytes", "drain_timeout_s"];
/// Enough for any machine this runs on; a bound so that a typo cannot start a million threads.
const CORES_MAX: u64 = 4096;
const BODY_LIMIT_BYTES_MAX: u64 = 1 << 30;
const DRAIN_TIMEOUT_S_MAX: u64 = 3600;

fn parse_server(source: &Source<'_>, section: &Section<'_, '_>) -> Result<ServerConfig, ConfigError> {
    section.check_keys(source, SERVER_KEYS)?;
    let mut server = ServerConfig::default();
    if let Some((listen, _)) = section.address(source, "listen")? {
        server.listen = listen;
    }
    if let Some((cores, _)) = section.integer(source, "cores", (1, CORES_MAX))? {
        server.cores = usize::try_from(cores).ok();
    }
    if let Some((bytes, _)) = section.integer(source, "body_limit_bytes", (0, BODY_LIMIT_BYTES_MAX))? {
        server.body_limit_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    if let Some((seconds, _)) = section.integer(source, "drain_timeout_s", (0, DRAIN_TIMEOUT_S_MAX))? {
        server.drain_timeout_s = seconds;
    }
    if let Some((token, span)) = section.string(source, "admin_token")? {
        if token.is_empty() {
            return Err(source.error(&span, Problem::AdminTokenEmpty));
        }
        server.admin_token = Some(token.to_owned());
    }
    if let Some((admin, span)) = section.address(source, "admin")? {
        // `::ffff:127.0.0.1` is loopback too.
        if !admin.ip().to_canonical().is_loopback() && server.admin_token.is_none() {
            return Err(source.error(&span, Problem::AdminTokenRequired { admin }));
        }
        let listen = server.listen;
        let same_ip = admin.ip() == listen.ip() || admin.ip().is_unspecified() || listen.ip().is_unspecified();
        if admin.port() == listen.port() && admin.port() != 0 && same_ip {
            return Err(source.error(&span, Problem::AdminIsListen { admin, listen }));
        }
        server.admin = Some(admin);
    }
    Ok(server)
}

/// Where the `[isolates]` values that other checks depend on were written, if they were.
#[derive(Default)]
struct IsolatesSpans {
    per_core_heap_mb: Option<Range<usize>>,
}

const ISOLATES_KEYS: &[&str] = &["per_core_max", "per_core_heap_mb", "pool"];

fn parse_isolates(
    source: &Source<'_>,
    section: &Section<'_, '_>,
) -> Result<(IsolatesConfig, IsolatesSpans), ConfigError> {
    section.check_keys(source, ISOLATES_KEYS)?;
    let mut isolates = IsolatesConfig::default();
    let mut spans = IsolatesSpans::default();
    let mut max_span = None;
    if let Some((max, span)) = section.integer_u32(source, "per_core_max", (1, 100_000))? {
        isolates.per_core_max = max;
        max_span = Some(span);
    }
    if let Some((heap_mb, span)) = section.integer_u32(source, "per_core_heap_mb", (4, 1 << 20))? {
        isolates.per_core_heap_mb = heap_mb;
        spans.per_core_heap_mb = Some(span);
    }
    let mut pool_span = None;
    if let Some((pool, span)) = section.integer_u32(source, "pool", (0, 64))? {
        isolates.pool = pool;
        pool_span = Some(span);
    }
    if isolates.pool > isolates.per_core_max {
        let span = pool_span.or(max_span).unwrap_or(section.span.clone());
        return Err(
            source.error(&span, Problem::PoolOverMax { pool: isolates.pool, per_core_max: isolates.per_core_max })
        );
    }
    Ok((isolates, spans))
}

/// One key of `[defaults.limits]` and `tenant.limits`: its range and its field.
struct LimitKey {
    name: &'static str,
    min: u32,
    max: u32,
    field: fn(&mut Limits) -> &mut u32,
}

const LIMITS: [LimitKey; 5] = [
    LimitKey { name: "cpu_ms", min: 1, max: 60_000, field: |limits| &mut limits.cpu_ms },
    LimitKey { name: "heap_mb", min: 4, max: 4096, field: |limits| &mut limits.heap_mb },
    LimitKey { name: "wall_ms", min: 1, max: 600_000, field: |limits| &mut limits.wall_ms },
    LimitKey { name: "subrequests", min: 0, max: 10_000, field: |limits| &mut limits.subrequests },
    LimitKey { name: "concurrency", min: 1, max: 100_000, field: |limits| &mut limits.concurrency },
];

/// The names in `LIMITS`, in the same order (a test checks), for unknown-key messages.
const LIMIT_KEYS: &[&str] = &["cpu_ms", "heap_mb", "wall_ms", "subrequests", "concurrency"];

/// `base` with the section's values on top, and where `heap_mb` was written if it was.
fn parse_limits(
    source: &Source<'_>,
    section: &Section<'_, '_>,
    base: Limits,
) -> Result<(Limits, Option<Range<usize>>), ConfigError> {
    section.check_keys(source, LIMIT_KEYS)?;
    let mut limits = base;
    let mut heap_span = None;
    for key in &LIMITS {
        if let Some((number, span)) = section.integer_u32(source, key.name, (key.min, key.max))? {
            *(key.field)(&mut limits) = number;
            if key.name == "heap_mb" {
                heap_span = Some(span);
            }
        }
    }
    Ok((limits, heap_span))
}

const TENANT_KEYS: &[&str] = &["name", "script", "format", "routes", "vars", "secrets", "limits"];

/// A route already taken, for naming both tenants when another one claims it.
struct RouteOwner<'a> {
    text: &'a str,
    tenant: &'a str,
    line: usize,
}

fn parse_tenants(
    source: &Source<'_>,
    root: &Section<'_, '_>,
    default_limits: Limits,
    isolates: &IsolatesConfig,
) -> Result<Vec<TenantConfig>, ConfigError> {
    let Some(value) = root.value("tenant") else {
        return Err(source.error_at(0, Problem::NoTenants));
    };
    let DeValue::Array(array) = value.get_ref() else {
        return Err(root.wrong_type(source, "tenant", value, "an array of tables, written [[tenant]]"));
    };
    if array.is_empty() {
        return Err(source.error(&value.span(), Problem::NoTenants));
    }
    let directory = source.path.parent().unwrap_or(Path::new(""));
    let mut tenants: Vec<TenantConfig> = Vec::with_capacity(array.len());
    let mut route_owners: HashMap<Route, RouteOwner<'_>> = HashMap::new();
    // Each name and the line of its value, so a duplicate is found without a scan per tenant.
    let mut name_lines: HashMap<&str, usize> = HashMap::with_capacity(array.len());
    for element in array.iter() {
        let DeValue::Table(entries) = element.get_ref() else {
            return Err(root.wrong_type(source, "tenant", element, "an array of tables, written [[tenant]]"));
        };
        let section = Section { table: "[[tenant]]", path: "tenant", span: element.span(), entries };
        section.check_keys(source, TENANT_KEYS)?;

        let missing = |key, hint| source.error(&section.span, Problem::Missing { key, hint });
        let (name, name_span) = section.string(source, "name")?.ok_or_else(|| missing("tenant.name", ""))?;
        if !is_tenant_name(name) {
            return Err(source.error(&name_span, Problem::TenantName { name: name.to_owned() }));
        }
        let name_at = source.position(name_span.start);
        if let Some(&first_line) = name_lines.get(name) {
            return Err(source.error(&name_span, Problem::DuplicateTenant { name: name.to_owned(), first_line }));
        }
        name_lines.insert(name, name_at.line);

        let (script, script_span) = section
            .string(source, "script")?
            .ok_or_else(|| missing("tenant.script", ": the path of the Worker script, relative to this file"))?;
        if script.is_empty() {
            return Err(source.error(&script_span, Problem::ScriptEmpty));
        }

        let format = match section.string(source, "format")? {
            None | Some(("auto", _)) => Format::Auto,
            Some(("module", _)) => Format::Module,
            Some(("service-worker", _)) => Format::ServiceWorker,
            Some((got, span)) => return Err(source.error(&span, Problem::Format { got: got.to_owned() })),
        };

        let routes_hint = ": list at least one route, such as \"example.com\" or \"*.example.com/api\"";
        let routes_value = section.value("routes").ok_or_else(|| missing("tenant.routes", routes_hint))?;
        let DeValue::Array(route_values) = routes_value.get_ref() else {
            return Err(section.wrong_type(source, "routes", routes_value, "an array of strings"));
        };
        if route_values.is_empty() {
            return Err(source.error(&routes_value.span(), Problem::NoRoutes));
        }
        let mut routes = Vec::with_capacity(route_values.len());
        for route_value in route_values.iter() {
            let DeValue::String(text) = route_value.get_ref() else {
                return Err(section.wrong_type(source, "routes", route_value, "an array of strings"));
            };
            let span = route_value.span();
            let route = Route::parse(text)
                .map_err(|error| source.error(&span, Problem::Route { route: text.to_string(), error }))?;
            if let Some(first) = route_owners.get(&route) {
                let problem = Problem::DuplicateRoute {
                    route: text.to_string(),
                    tenant: name.to_owned(),
                    first_route: first.text.to_owned(),
                    first_tenant: first.tenant.to_owned(),
                    first_line: first.line,
                };
                return Err(source.error(&span, problem));
            }
            let line = source.position(span.start).line;
            route_owners.insert(route.clone(), RouteOwner { text, tenant: name, line });
            routes.push(route);
        }

        let vars = parse_bindings(source, &section, "vars", &BTreeMap::new())?;
        let secrets = parse_bindings(source, &section, "secrets", &vars)?;

        let limits = match section.table(source, "limits", "[tenant.limits]", "tenant.limits")? {
            None => default_limits,
            Some(limits_section) => {
                let (limits, heap_span) = parse_limits(source, &limits_section, default_limits)?;
                if let Some(span) = heap_span.filter(|_| limits.heap_mb > isolates.per_core_heap_mb) {
                    let problem = Problem::HeapOverBudget {
                        key: "tenant.limits.heap_mb",
                        heap_mb: limits.heap_mb,
                        per_core_heap_mb: isolates.per_core_heap_mb,
                    };
                    return Err(source.error(&span, problem));
                }
                limits
            }
        };

        tenants.push(TenantConfig {
            name: name.to_owned(),
            name_at,
            script: directory.join(script),
            script_at: source.position(script_span.start),
            format,
            routes,
            vars,
            secrets,
            limits,
        });
    }
    Ok(tenants)
}

/// `[a-z0-9][a-z0-9_-]{0,62}`: safe in logs, metrics labels, URLs and file names.
fn is_tenant_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `vars` or `secrets`: a table of strings, none of whose names is in `taken`. Messages name the
/// key but never show a value.
fn parse_bindings(
    source: &Source<'_>,
    tenant: &Section<'_, '_>,
    key: &'static str,
    taken: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let path = if key == "vars" { "tenant.vars" } else { "tenant.secrets" };
    let Some(section) = tenant.table(source, key, path, path)? else { return Ok(BTreeMap::new()) };
    // In file order, so that the first mistake in the file is the one reported.
    let mut entries: Vec<_> = section.entries.iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    let mut bindings = BTreeMap::new();
    for (name, value) in entries {
        let name_text: &str = name.get_ref().as_ref();
        if name_text.is_empty() {
            return Err(source.error(&name.span(), Problem::EmptyBindingName { table: path }));
        }
        if taken.contains_key(name_text) {
            return Err(source.error(&name.span(), Problem::VarAndSecret { name: name_text.to_owned() }));
        }
        let DeValue::String(text) = value.get_ref() else {
            return Err(section.wrong_type(source, name_text, value, "a string"));
        };
        bindings.insert(name_text.to_owned(), text.to_string());
    }
    Ok(bindings)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(shop.format, Format::Module);
        let routes: Vec<String> = shop.routes.iter().map(Route::to_string).collect();
        assert_eq!(routes, ["shop.example.com", "*.shop.example.com", "example.com/shop"]);
        assert_eq!(shop.routes[2], Route::parse("example.com/shop").unwrap());
        assert_eq!(shop.vars, BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]));
        assert_eq!(shop.secrets, BTreeMap::from([("API_KEY".to_owned(), "hunter2-do-not-print".to_owned())]));
        assert_eq!(shop.limits, Limits { cpu_ms: 20, ..defaults });

        let blog = &config.tenants[1];
        assert_eq!(blog.name, "blog");
        assert_eq!(blog.script, Path::new("/srv/blog.js"), "an absolute script path stays as it is");
        assert_eq!(blog.format, Format::Auto);
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
        assert_eq!(tenant.format, Format::Auto);
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
        assert_eq!(config.tenants[0].format, Format::ServiceWorker);
        assert_eq!(config.tenants[1].format, Format::Auto);
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
    fn unreadable_file() {
        let error = load(Path::new("/nonexistent/isobar.toml")).unwrap_err();
        assert_eq!(error.to_string(), "cannot read /nonexistent/isobar.toml: No such file or directory");
        assert!(error.problem().is_none());
    }

    #[test]
    fn load_reads_and_parses_a_file() {
        let directory = std::env::temp_dir().join(format!("isobar-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("isobar.toml");
        std::fs::write(&path, TENANT).unwrap();
        let config = load(&path);
        std::fs::remove_dir_all(&directory).unwrap();
        let config = config.unwrap();
        assert_eq!(config.tenants[0].script, directory.join("t.js"));
    }

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
             body_limit_bytes, drain_timeout_s"
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
             body_limit_bytes, drain_timeout_s"
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
             tenant"
        );
        assert_eq!(
            parse_err(&format!("{TENANT}scripts = \"x\"\nzz = 1\n")),
            "isobar.toml:5:1: unknown key `scripts` in [[tenant]]; expected one of name, script, format, routes, \
             vars, secrets, limits"
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
            "isobar.toml:5:22: tenant.limits.heap_mb must be between 4 and 4096 (got 8192)"
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
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
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

    #[test]
    fn limit_keys_and_limits_agree() {
        let names: Vec<&str> = LIMITS.iter().map(|key| key.name).collect();
        assert_eq!(names, LIMIT_KEYS);
        let mut limits = Limits::default();
        for (value, key) in (1..).zip(&LIMITS) {
            *(key.field)(&mut limits) = value;
        }
        assert_eq!(limits, Limits { cpu_ms: 1, heap_mb: 2, wall_ms: 3, subrequests: 4, concurrency: 5 });
        for key in &LIMITS {
            let default = *(key.field)(&mut Limits::default());
            assert!((key.min..=key.max).contains(&default), "the default of {} is in its range", key.name);
        }
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
