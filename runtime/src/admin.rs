//! The admin API: metrics, tenants, hot deploys. It runs on its own thread with its own io_uring
//! ring and HTTP server (the same netstack code the cores use), so nothing it does, including
//! compiling an uploaded script, ever runs on a core.
//!
//! - `GET /metrics`: every core's counters, Prometheus/OpenMetrics text.
//! - `GET /tenants`, `GET /tenants/NAME`: tenants, their settings and their counters, as JSON
//!   (secret values never appear).
//! - `PUT /tenants/NAME`: deploy. `Content-Type: application/json` with
//!   `{"script", "format", "routes", "vars", "secrets", "limits"}` (only `script` is required for
//!   an existing tenant; a new one also needs `routes`), or any other content type with the
//!   script alone (settings kept). 201 for a new tenant, 200 for a new version; the response
//!   comes once every core serves the new version.
//! - `DELETE /tenants/NAME`.
//!
//! Access: loopback peers only, unless a token is configured, in which case every request must
//! carry `Authorization: Bearer TOKEN` (and the listener may be on any address).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel_shim::ring::{Ring, RingConfig, RingError, key_tag};
use kernel_shim::seccomp::{Role, Sandbox};
use netstack::http1::{self, Response};
use netstack::{HttpServer, IncomingRequest, KernelNet, NetLimits, TAG_NET};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::routes::Route;
use crate::server::{Control, ControlError};
use crate::stats::{LimitKind, TenantCounters};
use crate::tenant::{DeployError, Tenant, TenantLimits, TenantSettings};
use crate::worker::{ScriptFormat, Worker};

/// How the admin API is set up.
#[derive(Debug)]
pub struct AdminConfig {
    pub listener: OwnedFd,
    /// When set, every request needs `Authorization: Bearer TOKEN`; otherwise only loopback peers
    /// are served.
    pub token: Option<String>,
    /// Limits of a new tenant that does not set its own.
    pub defaults: TenantLimits,
    /// The system-call filter: the admin thread confines itself (role `Admin`) once the main
    /// thread has sealed the process. `None`: no filter.
    pub sandbox: Option<Arc<Sandbox>>,
}

/// Largest script upload.
const UPLOAD_BYTES_MAX: usize = 8 << 20;
/// CPU time an uploaded script may use while it is checked (its top level runs once).
const VALIDATE_CPU: Duration = Duration::from_secs(2);

/// Starts the admin thread and returns once its ring exists (so the process can be sealed:
/// no ring can be made after that); it runs until the process exits.
pub fn spawn(config: AdminConfig, control: Arc<Control>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (ready_tx, ready) = crossbeam_channel::bounded::<Result<(), RingError>>(1);
    let thread = std::thread::Builder::new().name("isobar-admin".into()).spawn(move || {
        let ring = match Ring::new(RingConfig { entries: 64, recv_buffers: 32, recv_buffer_bytes: 16 * 1024 }) {
            Ok(ring) => {
                let _ = ready_tx.send(Ok(()));
                ring
            }
            Err(error) => {
                let _ = ready_tx.send(Err(error));
                return;
            }
        };
        if let Some(sandbox) = &config.sandbox
            && let Err(error) = sandbox.wait_and_confine(Role::Admin)
        {
            tracing::error!("admin API stopped: cannot confine its thread: {error}");
            return;
        }
        if let Err(error) = serve(ring, config, control) {
            tracing::error!("admin API stopped: {error}");
        }
    })?;
    match ready.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => Err(std::io::Error::other(format!("the admin ring: {error}"))),
        Err(_) => Err(std::io::Error::other("the admin thread stopped during start-up")),
    }
}

fn serve(mut ring: Ring, config: AdminConfig, control: Arc<Control>) -> Result<(), RingError> {
    let mut net = KernelNet::new(NetLimits { conns_max: 64, ..NetLimits::default() });
    net.listen(&mut ring, config.listener);
    let limits = http1::Limits { body_bytes_max: UPLOAD_BYTES_MAX, ..http1::Limits::default() };
    let mut http = HttpServer::new(net, limits);
    let admin = Admin { control, token: config.token, defaults: config.defaults };
    let mut completions = Vec::new();
    let mut requests = Vec::new();
    loop {
        let timeout = http.poll_at().map(|at| at.saturating_duration_since(Instant::now()));
        ring.wait(timeout, &mut completions)?;
        let now = Instant::now();
        for completion in completions.drain(..) {
            if key_tag(completion.key) == TAG_NET {
                http.on_completion(&mut ring, completion, now, &mut requests);
            }
        }
        http.poll(&mut ring, now, &mut requests);
        while let Some(IncomingRequest { conn, peer, request }) = requests.pop() {
            let response = admin.handle(&request, peer);
            http.respond(&mut ring, conn, request.id(), response, Instant::now(), &mut requests);
        }
    }
}

struct Admin {
    control: Arc<Control>,
    token: Option<String>,
    defaults: TenantLimits,
}

fn text(status: u16, body: impl Into<String>) -> Response {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Response::new(status).with_header("content-type", "text/plain; charset=utf-8").with_body(body.into_bytes())
}

fn json_response(status: u16, value: &Value) -> Response {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Response::new(status).with_header("content-type", "application/json").with_body(body)
}

/// Compares in time independent of where the strings differ, so a client cannot find the token
/// byte by byte from response times. `subtle` (the dalek cryptography crates' constant-time
/// primitives) keeps the optimiser from turning the comparison back into an early exit, which a
/// hand-written fold does not guarantee. Only the length can show, and that is no secret.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    given.ct_eq(expected).into()
}

impl Admin {
    fn handle(&self, request: &http1::Request, peer: SocketAddr) -> Response {
        match &self.token {
            Some(token) => {
                let expected = format!("Bearer {token}");
                let given = request.header("authorization").unwrap_or_default();
                if !same_secret(given, expected.as_bytes()) {
                    return text(401, "the admin API needs `Authorization: Bearer TOKEN`")
                        .with_header("www-authenticate", "Bearer");
                }
            }
            None if !peer.ip().is_loopback() => {
                return text(403, "the admin API only serves loopback clients unless a token is configured");
            }
            None => {}
        }
        let path = request.target().split('?').next().unwrap_or("");
        let method = request.method();
        match (method, path) {
            ("GET" | "HEAD", "/metrics") => Response::new(200)
                .with_header("content-type", crate::metrics::CONTENT_TYPE)
                .with_body(crate::metrics::render(self.control.stats()).into_bytes()),
            ("GET" | "HEAD", "/tenants") => self.list(),
            (_, "/metrics" | "/tenants") => text(405, "method not allowed").with_header("allow", "GET, HEAD"),
            (_, p) if p.starts_with("/tenants/") => {
                let name = &p["/tenants/".len()..];
                match method {
                    "GET" | "HEAD" => self.show(name),
                    "PUT" => self.put(name, request),
                    "DELETE" => match self.control.remove_tenant(name) {
                        Ok(true) => json_response(200, &json!({ "name": name, "deleted": true })),
                        Ok(false) => text(404, format!("no tenant named {name:?}")),
                        Err(error) => text(500, error.to_string()),
                    },
                    _ => text(405, "method not allowed").with_header("allow", "GET, HEAD, PUT, DELETE"),
                }
            }
            _ => text(404, "not found; try /metrics, /tenants or /tenants/NAME"),
        }
    }

    fn totals(&self) -> BTreeMap<String, (TenantCounters, u64, u64, u64)> {
        let mut totals: BTreeMap<String, (TenantCounters, u64, u64, u64)> = BTreeMap::new();
        for core in self.control.stats() {
            for t in core.tenants {
                let entry = totals.entry(t.name.to_string()).or_default();
                entry.0.add(&t.counters);
                entry.1 += u64::from(t.isolates);
                entry.2 += t.heap_bytes;
                entry.3 += u64::from(t.in_flight);
            }
        }
        totals
    }

    fn describe(tenant: &Tenant, totals: Option<&(TenantCounters, u64, u64, u64)>) -> Value {
        let vars: BTreeMap<&str, &str> = tenant
            .spec
            .env
            .iter()
            .filter(|(k, _)| !tenant.secret_names.contains(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let format = match tenant.spec.format {
            ScriptFormat::ServiceWorker => "service-worker",
            _ => "module",
        };
        let default = (TenantCounters::default(), 0, 0, 0);
        let (counters, isolates, heap_bytes, in_flight) = totals.unwrap_or(&default);
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let requests: BTreeMap<&str, u64> = classes.into_iter().zip(counters.requests).collect();
        let limits_exceeded: BTreeMap<&str, u64> =
            LimitKind::ALL.iter().map(|k| k.label()).zip(counters.limits_exceeded).collect();
        json!({
            "name": &*tenant.name,
            "version": tenant.version,
            "routes": tenant.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "format": format,
            "limits": {
                "cpu_ms": tenant.limits.cpu.as_millis() as u64,
                "heap_mb": (tenant.limits.heap_bytes >> 20) as u64,
                "wall_ms": tenant.limits.wall.as_millis() as u64,
                "subrequests": tenant.limits.subrequests,
                "concurrency": tenant.limits.concurrency,
            },
            "vars": vars,
            "secrets": tenant.secret_names,
            "stats": {
                "cpu_seconds": counters.cpu.as_secs_f64(),
                "wall_seconds": counters.wall.as_secs_f64(),
                "requests": counters.requests.iter().sum::<u64>(),
                "requests_by_class": requests,
                "bytes_in": counters.bytes_in,
                "bytes_out": counters.bytes_out,
                "isolates": isolates,
                "heap_bytes": heap_bytes,
                "in_flight": in_flight,
                "limits_exceeded": limits_exceeded,
            },
        })
    }

    fn list(&self) -> Response {
        let deployment = self.control.deployment();
        let totals = self.totals();
        let mut tenants: Vec<&Arc<Tenant>> = deployment.tenants.values().collect();
        tenants.sort_by(|a, b| a.name.cmp(&b.name));
        let list: Vec<Value> = tenants.iter().map(|t| Admin::describe(t, totals.get(&*t.name))).collect();
        json_response(200, &json!({ "tenants": list }))
    }

    fn show(&self, name: &str) -> Response {
        let deployment = self.control.deployment();
        match deployment.tenants.get(name) {
            Some(tenant) => json_response(200, &Admin::describe(tenant, self.totals().get(name))),
            None => text(404, format!("no tenant named {name:?}")),
        }
    }

    fn put(&self, name: &str, request: &http1::Request) -> Response {
        if !valid_name(name) {
            return text(400, format!("invalid tenant name {name:?}: use [a-z0-9][a-z0-9_-]{{0,62}}"));
        }
        let is_json = request.header("content-type").is_some_and(|t| t.starts_with(b"application/json"));
        let deployment = self.control.deployment();
        let existing = deployment.tenants.get(name).cloned();
        let settings = match self.settings(name, request.body(), is_json, existing.as_deref()) {
            Ok(settings) => settings,
            Err(response) => return response,
        };
        let tenant = match Tenant::build(settings) {
            Ok(tenant) => tenant,
            Err(error) => return text(400, error.to_string()),
        };
        if let Err(error) = Worker::validate(&tenant.spec, VALIDATE_CPU) {
            return text(400, error.to_string());
        }
        let version = tenant.version;
        match self.control.put_tenant(tenant) {
            Ok(replaced) => {
                tracing::info!(tenant = name, version, "deployed through the admin API");
                json_response(if replaced { 200 } else { 201 }, &json!({ "name": name, "version": version }))
            }
            Err(ControlError::Deploy(error @ DeployError::DuplicateRoute { .. })) => text(409, error.to_string()),
            Err(error) => text(500, error.to_string()),
        }
    }

    /// The settings of a PUT: from its JSON body, over the existing tenant's (or the defaults).
    #[allow(clippy::result_large_err)]
    fn settings(
        &self,
        name: &str,
        body: &[u8],
        is_json: bool,
        existing: Option<&Tenant>,
    ) -> Result<TenantSettings, Response> {
        let upload: Upload = if is_json {
            serde_json::from_slice(body).map_err(|e| text(400, format!("invalid JSON body: {e}")))?
        } else {
            let script = String::from_utf8(body.to_vec()).map_err(|_| text(400, "the script is not UTF-8"))?;
            Upload { script, ..Upload::default() }
        };
        let base_limits = existing.map(|t| t.limits).unwrap_or(self.defaults);
        let routes = match (upload.routes, existing) {
            (Some(routes), _) => routes
                .iter()
                .map(|r| Route::parse(r).map_err(|e| text(400, format!("route {r:?}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?,
            (None, Some(t)) => t.routes.clone(),
            (None, None) => {
                return Err(text(
                    400,
                    format!(
                        "tenant {name:?} does not exist yet: send JSON with its routes, e.g. {{\"script\": \"...\", \"routes\": [\"{name}.example.com\"]}}"
                    ),
                ));
            }
        };
        let (old_vars, old_secrets) = match existing {
            Some(t) => {
                let mut vars = BTreeMap::new();
                let mut secrets = BTreeMap::new();
                for (k, v) in t.spec.env.iter() {
                    if t.secret_names.contains(k) {
                        secrets.insert(k.clone(), v.clone());
                    } else {
                        vars.insert(k.clone(), v.clone());
                    }
                }
                (vars, secrets)
            }
            None => Default::default(),
        };
        let format = match upload.format.as_deref() {
            None => existing.map(|t| t.spec.format).unwrap_or(ScriptFormat::Auto),
            Some("auto") => ScriptFormat::Auto,
            Some("module") => ScriptFormat::Module,
            Some("service-worker") => ScriptFormat::ServiceWorker,
            Some(other) => return Err(text(400, format!("format {other:?}: use auto, module or service-worker"))),
        };
        let limits = match upload.limits {
            Some(l) => l.apply(base_limits).map_err(|e| text(400, e))?,
            None => base_limits,
        };
        let vars = upload.vars.unwrap_or(old_vars);
        let secrets = upload.secrets.unwrap_or(old_secrets);
        if let Some(both) = vars.keys().find(|k| secrets.contains_key(*k)) {
            return Err(text(400, format!("{both:?} is both a var and a secret")));
        }
        Ok(TenantSettings {
            name: name.to_string(),
            path: PathBuf::from(format!("admin/{name}.js")),
            source: upload.script,
            format,
            routes,
            vars,
            secrets,
            limits,
            read_disk: false,
        })
    }
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    script: String,
    format: Option<String>,
    routes: Option<Vec<String>>,
    vars: Option<BTreeMap<String, String>>,
    secrets: Option<BTreeMap<String, String>>,
    limits: Option<UploadLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadLimits {
    cpu_ms: Option<u64>,
    heap_mb: Option<u64>,
    wall_ms: Option<u64>,
    subrequests: Option<u32>,
    concurrency: Option<u32>,
}

impl UploadLimits {
    fn apply(self, mut limits: TenantLimits) -> Result<TenantLimits, String> {
        fn check(name: &str, value: u64, min: u64, max: u64) -> Result<u64, String> {
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(format!("limits.{name} must be between {min} and {max} (got {value})"))
            }
        }
        if let Some(v) = self.cpu_ms {
            limits.cpu = Duration::from_millis(check("cpu_ms", v, 1, 60_000)?);
        }
        if let Some(v) = self.heap_mb {
            limits.heap_bytes = (check("heap_mb", v, 4, 4096)? as usize) << 20;
        }
        if let Some(v) = self.wall_ms {
            limits.wall = Duration::from_millis(check("wall_ms", v, 1, 600_000)?);
        }
        if let Some(v) = self.subrequests {
            limits.subrequests = check("subrequests", v.into(), 0, 10_000)? as u32;
        }
        if let Some(v) = self.concurrency {
            limits.concurrency = check("concurrency", v.into(), 1, 100_000)? as u32;
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::{same_secret, valid_name};

    #[test]
    fn tenant_names() {
        assert!(valid_name("shop"));
        assert!(valid_name("a-b_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("Shop"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(64)));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"Bearer x", b"Bearer x"));
        assert!(!same_secret(b"Bearer x", b"Bearer y"));
        assert!(!same_secret(b"Bearer", b"Bearer x"));
    }
}
