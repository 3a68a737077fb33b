//! The admin API's request handling: access checks, routing, the JSON of `/tenants`, and the
//! parsing and checking of uploads. The runtime owns the listener (its own thread, ring and HTTP
//! codec) and hands each request to [`Admin::handle`] with a [`ControlPlane`] that reaches the
//! cores; nothing here does I/O or touches V8, so it is tested against a test double of
//! [`ControlPlane`].
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
//! - `POST /tenants/NAME/scheduled?cron=EXPR`: run the tenant's `scheduled()` handler once now
//!   (as wrangler's `/__scheduled` does), with `controller.cron` = EXPR (default: the tenant's
//!   first cron, or `* * * * *`). 202: it was started; its outcome is logged and counted.
//!
//! Access: loopback peers only, unless a token is configured, in which case every request must
//! carry `Authorization: Bearer TOKEN` (and the listener may be on any address). The token is
//! compared in constant time: both sides are hashed with SHA-256 (`sha2`) and the digests compared
//! with `subtle`, so neither the token's bytes nor its length show in the time an answer takes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::limits::{Limits, LimitsPatch, TenantLimits};
use crate::routes::Route;
use crate::stats::{CoreStats, LimitKind, TenantCounters};
use crate::tenant::{ScriptFormat, TENANT_NAME_RULE, TenantSettings, is_tenant_name};

/// What the admin API needs from the process: the tenants being served, the cores' counters, and
/// a way to deploy and remove tenants. The runtime implements it over its cores.
pub trait ControlPlane {
    /// Every tenant being served, in any order.
    fn tenants(&self) -> Vec<DeployedTenant>;
    /// The tenant `name`, if it is being served.
    fn tenant(&self, name: &str) -> Option<DeployedTenant>;
    /// Every core's counters.
    fn stats(&self) -> Vec<CoreStats>;
    /// Builds a tenant from `settings`, checks it, and serves it on every core (replacing the
    /// tenant of the same name); returns once every core serves it.
    fn deploy(&self, settings: TenantSettings) -> Result<Deployed, ChangeError>;
    /// Stops serving the tenant `name`; `false` if there was none.
    fn remove(&self, name: &str) -> Result<bool, ChangeError>;
    /// Runs tenant `name`'s `scheduled()` handler once now, as cron `cron` would (on one core,
    /// in the background); `false` if there is no such tenant.
    fn fire_scheduled(&self, name: &str, cron: &str) -> Result<bool, ChangeError>;
}

/// One tenant version as it is served.
#[derive(Clone, PartialEq, Eq)]
pub struct DeployedTenant {
    pub name: String,
    pub version: u64,
    /// As loaded: `Module` or `ServiceWorker` (`Auto` is resolved at deploy time).
    pub format: ScriptFormat,
    pub routes: Vec<Route>,
    pub vars: BTreeMap<String, String>,
    /// Kept for a PUT that does not change them; never shown (`Debug` shows the names only).
    pub secrets: BTreeMap<String, String>,
    pub limits: TenantLimits,
    pub crons: Vec<String>,
    /// KV bindings; the admin API keeps them on a PUT (they come from the configuration).
    pub kv: Vec<crate::tenant::KvBinding>,
    /// Service bindings, kept on a PUT like the KV bindings.
    pub services: BTreeMap<String, String>,
}

impl fmt::Debug for DeployedTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeployedTenant")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("format", &self.format)
            .field("routes", &self.routes.iter().map(Route::to_string).collect::<Vec<_>>())
            .field("vars", &self.vars)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .field("crons", &self.crons)
            .finish()
    }
}

/// A deploy that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub version: u64,
    /// Whether a tenant of that name was replaced (else it is new).
    pub replaced: bool,
}

/// Why the control plane did not make a change; each message is shown to the admin client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The tenant cannot be built: its script does not compile or fails its check (400).
    #[error("{0}")]
    Invalid(String),
    /// Another tenant has one of its routes (409).
    #[error("{0}")]
    RouteTaken(String),
    /// The cores did not take the change (500).
    #[error("{0}")]
    Failed(String),
}

/// The parts of an admin request the handling reads.
#[derive(Clone, Copy, Debug)]
pub struct AdminRequest<'a> {
    pub method: &'a str,
    /// The request target, e.g. `/tenants/shop?x`.
    pub target: &'a str,
    pub authorization: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub peer: SocketAddr,
}

/// An admin response, for the runtime's HTTP codec to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Vec<u8>,
}

impl AdminResponse {
    fn text(status: u16, body: impl Into<String>) -> AdminResponse {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        AdminResponse { status, headers: vec![("content-type", "text/plain; charset=utf-8")], body: body.into_bytes() }
    }

    fn json(status: u16, value: &Value) -> AdminResponse {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        AdminResponse { status, headers: vec![("content-type", "application/json")], body }
    }

    fn with_header(mut self, name: &'static str, value: &'static str) -> AdminResponse {
        self.headers.push((name, value));
        self
    }
}

/// The admin API's settings and its request handling.
pub struct Admin {
    /// SHA-256 of the whole `Authorization` value expected (`Bearer TOKEN`), if a token is set.
    token_digest: Option<[u8; 32]>,
    /// Limits of a new tenant that does not set its own.
    defaults: TenantLimits,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.token_digest.map(|_| "<redacted>");
        f.debug_struct("Admin").field("token", &token).field("defaults", &self.defaults).finish()
    }
}

/// The totals of one tenant over every core: counters, isolates, heap bytes, requests in flight.
#[derive(Default)]
struct Totals {
    counters: TenantCounters,
    isolates: u64,
    heap_bytes: u64,
    in_flight: u64,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Admin {
    /// With `token`, every request needs `Authorization: Bearer TOKEN`; without, only loopback
    /// peers are served.
    pub fn new(token: Option<&str>, defaults: TenantLimits) -> Admin {
        Admin { token_digest: token.map(|token| sha256(format!("Bearer {token}").as_bytes())), defaults }
    }

    /// Answers one request.
    pub fn handle(&self, control: &impl ControlPlane, request: &AdminRequest<'_>) -> AdminResponse {
        match &self.token_digest {
            Some(expected) => {
                let given = sha256(request.authorization.unwrap_or_default());
                if !bool::from(given.ct_eq(expected)) {
                    return AdminResponse::text(401, "the admin API needs `Authorization: Bearer TOKEN`")
                        .with_header("www-authenticate", "Bearer");
                }
            }
            // `::ffff:127.0.0.1` is loopback too.
            None if !request.peer.ip().to_canonical().is_loopback() => {
                return AdminResponse::text(
                    403,
                    "the admin API only serves loopback clients unless a token is configured",
                );
            }
            None => {}
        }
        let path = request.target.split('?').next().unwrap_or("");
        let method = request.method;
        match (method, path) {
            ("GET" | "HEAD", "/metrics") => AdminResponse {
                status: 200,
                headers: vec![("content-type", crate::metrics::CONTENT_TYPE)],
                body: crate::metrics::render(control.stats()).into_bytes(),
            },
            ("GET" | "HEAD", "/tenants") => Admin::list(control),
            (_, "/metrics" | "/tenants") => {
                AdminResponse::text(405, "method not allowed").with_header("allow", "GET, HEAD")
            }
            ("POST", path) if path.starts_with("/tenants/") && path.ends_with("/scheduled") => {
                let name = &path["/tenants/".len()..path.len() - "/scheduled".len()];
                Admin::scheduled(control, name, request.target)
            }
            (_, path) => match (method, path.strip_prefix("/tenants/")) {
                (_, None) => AdminResponse::text(404, "not found; try /metrics, /tenants or /tenants/NAME"),
                ("GET" | "HEAD", Some(name)) => Admin::show(control, name),
                ("PUT", Some(name)) => self.put(control, name, request),
                ("DELETE", Some(name)) => match control.remove(name) {
                    Ok(true) => AdminResponse::json(200, &json!({ "name": name, "deleted": true })),
                    Ok(false) => AdminResponse::text(404, format!("no tenant named {name:?}")),
                    Err(error) => AdminResponse::text(500, error.to_string()),
                },
                (_, Some(_)) => {
                    AdminResponse::text(405, "method not allowed").with_header("allow", "GET, HEAD, PUT, DELETE")
                }
            },
        }
    }

    fn totals(control: &impl ControlPlane) -> BTreeMap<String, Totals> {
        let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
        for core in control.stats() {
            for tenant in core.tenants {
                let entry = totals.entry(tenant.name.to_string()).or_default();
                entry.counters.add(&tenant.counters);
                entry.isolates += u64::from(tenant.isolates);
                entry.heap_bytes += tenant.heap_bytes;
                entry.in_flight += u64::from(tenant.in_flight);
            }
        }
        totals
    }

    /// A tenant's JSON: its settings (secret names, never their values) and its counters.
    fn describe(tenant: &DeployedTenant, totals: Option<&Totals>) -> Value {
        let format = match tenant.format {
            ScriptFormat::ServiceWorker => "service-worker",
            _ => "module",
        };
        let none = Totals::default();
        let totals = totals.unwrap_or(&none);
        let counters = &totals.counters;
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let requests: BTreeMap<&str, u64> = classes.into_iter().zip(counters.requests).collect();
        let limits_exceeded: BTreeMap<&str, u64> =
            LimitKind::ALL.iter().map(|k| k.label()).zip(counters.limits_exceeded).collect();
        let limits = Limits::from(tenant.limits);
        json!({
            "name": tenant.name,
            "version": tenant.version,
            "routes": tenant.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "format": format,
            "limits": {
                "cpu_ms": limits.cpu_ms,
                "heap_mb": limits.heap_mb,
                "wall_ms": limits.wall_ms,
                "subrequests": limits.subrequests,
                "concurrency": limits.concurrency,
            },
            "vars": tenant.vars,
            "secrets": tenant.secrets.keys().collect::<Vec<_>>(),
            "crons": tenant.crons,
            "stats": {
                "cpu_seconds": counters.cpu.as_secs_f64(),
                "wall_seconds": counters.wall.as_secs_f64(),
                "requests": counters.requests.iter().sum::<u64>(),
                "requests_by_class": requests,
                "bytes_in": counters.bytes_in,
                "bytes_out": counters.bytes_out,
                "isolates": totals.isolates,
                "heap_bytes": totals.heap_bytes,
                "in_flight": totals.in_flight,
                "limits_exceeded": limits_exceeded,
            },
        })
    }

    fn list(control: &impl ControlPlane) -> AdminResponse {
        let mut tenants = control.tenants();
        tenants.sort_by(|a, b| a.name.cmp(&b.name));
        let totals = Admin::totals(control);
        let list: Vec<Value> = tenants.iter().map(|t| Admin::describe(t, totals.get(&t.name))).collect();
        AdminResponse::json(200, &json!({ "tenants": list }))
    }

    fn show(control: &impl ControlPlane, name: &str) -> AdminResponse {
        match control.tenant(name) {
            Some(tenant) => AdminResponse::json(200, &Admin::describe(&tenant, Admin::totals(control).get(name))),
            None => AdminResponse::text(404, format!("no tenant named {name:?}")),
        }
    }

    fn scheduled(control: &impl ControlPlane, name: &str, target: &str) -> AdminResponse {
        let Some(tenant) = control.tenant(name) else {
            return AdminResponse::text(404, format!("no tenant named {name:?}"));
        };
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let given = query.split('&').find_map(|pair| pair.strip_prefix("cron="));
        let cron = match given {
            Some(encoded) => match percent_decode(encoded) {
                Some(cron) => cron,
                None => return AdminResponse::text(400, "the cron parameter is not valid percent-encoded UTF-8"),
            },
            None => tenant.crons.first().cloned().unwrap_or_else(|| "* * * * *".to_string()),
        };
        if let Err(error) = crate::cron::CronSchedule::parse(&cron) {
            return AdminResponse::text(400, error.to_string());
        }
        match control.fire_scheduled(name, &cron) {
            Ok(true) => AdminResponse::json(202, &json!({ "name": name, "cron": cron, "started": true })),
            Ok(false) => AdminResponse::text(404, format!("no tenant named {name:?}")),
            Err(error) => AdminResponse::text(500, error.to_string()),
        }
    }

    fn put(&self, control: &impl ControlPlane, name: &str, request: &AdminRequest<'_>) -> AdminResponse {
        if !is_tenant_name(name) {
            return AdminResponse::text(400, format!("invalid tenant name {name:?}: a name is {TENANT_NAME_RULE}"));
        }
        let existing = control.tenant(name);
        let settings = match self.settings(name, request, existing.as_ref()) {
            Ok(settings) => settings,
            Err(message) => return AdminResponse::text(400, message),
        };
        match control.deploy(settings) {
            Ok(Deployed { version, replaced }) => {
                AdminResponse::json(if replaced { 200 } else { 201 }, &json!({ "name": name, "version": version }))
            }
            Err(error @ ChangeError::Invalid(_)) => AdminResponse::text(400, error.to_string()),
            Err(error @ ChangeError::RouteTaken(_)) => AdminResponse::text(409, error.to_string()),
            Err(error @ ChangeError::Failed(_)) => AdminResponse::text(500, error.to_string()),
        }
    }

    /// The settings of a PUT: from its JSON body (or its bare script), over the existing
    /// tenant's (or the defaults). The error is the 400 response's message.
    fn settings(
        &self,
        name: &str,
        request: &AdminRequest<'_>,
        existing: Option<&DeployedTenant>,
    ) -> Result<TenantSettings, String> {
        let is_json = request.content_type.is_some_and(|t| t.starts_with(b"application/json"));
        let upload: Upload = if is_json {
            serde_json::from_slice(request.body).map_err(|e| format!("invalid JSON body: {e}"))?
        } else {
            let script = String::from_utf8(request.body.to_vec()).map_err(|_| "the script is not UTF-8".to_owned())?;
            Upload { script, ..Upload::default() }
        };
        let routes = match (upload.routes, existing) {
            (Some(routes), _) => routes
                .iter()
                .map(|r| Route::parse(r).map_err(|e| format!("route {r:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
            (None, Some(tenant)) => tenant.routes.clone(),
            (None, None) => {
                return Err(format!(
                    "tenant {name:?} does not exist yet: send JSON with its routes, e.g. \
                     {{\"script\": \"...\", \"routes\": [\"{name}.example.com\"]}}"
                ));
            }
        };
        let format = match upload.format.as_deref() {
            None => existing.map(|t| t.format).unwrap_or_default(),
            Some(text) => ScriptFormat::parse(text)
                .ok_or_else(|| format!("format {text:?}: use one of {}", ScriptFormat::NAMES))?,
        };
        let base_limits = existing.map(|t| t.limits).unwrap_or(self.defaults);
        let limits = match upload.limits {
            Some(patch) => Limits::from(base_limits).patched(patch).map_err(|e| e.to_string())?.into(),
            None => base_limits,
        };
        let vars = upload.vars.or_else(|| existing.map(|t| t.vars.clone())).unwrap_or_default();
        let secrets = upload.secrets.or_else(|| existing.map(|t| t.secrets.clone())).unwrap_or_default();
        if let Some(both) = vars.keys().find(|k| secrets.contains_key(*k)) {
            return Err(format!("{both:?} is both a var and a secret"));
        }
        let crons = match upload.crons {
            Some(crons) => crate::cron::tenant_schedules(&crons).map_err(|e| format!("crons: {e}"))?,
            None => existing.map(|t| t.crons.clone()).unwrap_or_default(),
        };
        Ok(TenantSettings {
            name: name.to_string(),
            path: PathBuf::from(format!("admin/{name}.js")),
            source: upload.script,
            format,
            routes,
            vars,
            secrets,
            limits,
            kv: existing.map(|t| t.kv.clone()).unwrap_or_default(),
            services: existing.map(|t| t.services.clone()).unwrap_or_default(),
            read_disk: false,
            crons,
        })
    }
}

/// The JSON body of a PUT. Not `Debug`: it holds secret values.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    script: String,
    format: Option<String>,
    routes: Option<Vec<String>>,
    crons: Option<Vec<String>>,
    vars: Option<BTreeMap<String, String>>,
    secrets: Option<BTreeMap<String, String>>,
    limits: Option<LimitsPatch<i64>>,
}

#[cfg(test)]
mod tests;

/// `%XX` escapes and `+` (a space, as in forms) decoded; `None` for a bad escape or non-UTF-8.
/// (The cores' `/__scheduled?cron=` uses it too.)
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
