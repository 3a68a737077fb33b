//! Tenants and deployments: what the cores serve, shared read-only between them.
//!
//! A [`Tenant`] is one version of one tenant's worker: its script bundle, `env`, limits and
//! routes. A [`Deployment`] is the whole set of tenants with the router built from their routes.
//! Both are immutable and shared through `Arc`: to deploy, the control plane builds a new
//! Deployment and sends it to every core, which swaps it in between two requests. Requests that
//! are in flight keep the version they started on; the next request uses the new one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use isobar_tenancy::{TenantLimits, TenantSettings};

use crate::routes::{Route, RouteError, Router};
use crate::worker::{LoadError, ModuleSource, ScriptFormat, WorkerSpec};

/// One version of one tenant's worker.
#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    /// Unique in the process; a new script or new settings make a new version.
    pub version: u64,
    /// The script and its modules (in memory: cores never read the disk), and `env`.
    pub spec: WorkerSpec,
    pub limits: TenantLimits,
    pub routes: Vec<Route>,
    /// Names of the `env` bindings that are secrets (never shown by the admin API).
    pub secret_names: Vec<String>,
    /// Cron Triggers (valid expressions), fired by the control plane.
    pub crons: Vec<String>,
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

impl Tenant {
    /// Builds a tenant version: compiles the script and its imports (a syntax error or a missing
    /// import is reported here, with file:line:column) and keeps their sources as the bundle.
    pub fn build(settings: TenantSettings) -> Result<Tenant, LoadError> {
        Tenant::build_with(settings, crate::worker::bundle)
    }

    /// [`Tenant::build`], with the script's top level run once in a fresh isolate of the
    /// tenant's heap limit, as `Worker::validate` runs it, within `cpu_max`: the same isolate
    /// compiles and checks it (`Worker::bundle_and_validate`), one isolate fewer than building
    /// and then validating. For a start-up with one tenant.
    pub fn build_checked(settings: TenantSettings, cpu_max: Duration) -> Result<Tenant, LoadError> {
        let heap_bytes = settings.limits.heap_bytes;
        Tenant::build_with(settings, |spec| crate::worker::Worker::bundle_and_validate(spec, heap_bytes, cpu_max))
    }

    /// Builds a tenant version with `bundle` giving its format and module sources (for
    /// [`crate::cache::IsolateCache::build_and_load`], which loads the isolate that serves it).
    pub(crate) fn build_with(
        settings: TenantSettings,
        bundle: impl FnOnce(&WorkerSpec) -> Result<(ScriptFormat, BTreeMap<PathBuf, ModuleSource>), LoadError>,
    ) -> Result<Tenant, LoadError> {
        let mut env: Vec<(String, String)> = settings.vars.into_iter().collect();
        let secret_names: Vec<String> = settings.secrets.keys().cloned().collect();
        env.extend(settings.secrets);
        let mut spec = WorkerSpec {
            name: settings.name.clone(),
            path: settings.path,
            source: settings.source,
            format: settings.format,
            modules: Arc::default(),
            read_disk: settings.read_disk,
            env: Arc::new(env),
            kv: Arc::new(settings.kv),
            services: Arc::new(settings.services.into_iter().collect()),
        };
        let (format, modules) = bundle(&spec)?;
        spec.format = format;
        spec.modules = Arc::new(modules);
        spec.read_disk = false;
        Ok(Tenant {
            name: settings.name.into(),
            version: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
            spec,
            limits: settings.limits,
            routes: settings.routes,
            secret_names,
            crons: settings.crons,
        })
    }

    /// Whether `other` is the same script with the same settings (a reload keeps its version).
    pub fn same_as(&self, other: &Tenant) -> bool {
        self.spec.source == other.spec.source
            && self.spec.modules == other.spec.modules
            && self.spec.format == other.spec.format
            && self.spec.env == other.spec.env
            && self.spec.kv == other.spec.kv
            && self.spec.services == other.spec.services
            && self.limits == other.limits
            && self.routes == other.routes
            && self.crons == other.crons
    }
}

/// Every tenant and the router over their routes.
#[derive(Debug, Default)]
pub struct Deployment {
    pub tenants: HashMap<Arc<str>, Arc<Tenant>>,
    pub router: Router<Arc<str>>,
}

impl Deployment {
    /// A deployment of `tenants`; fails if two tenants claim the same route.
    pub fn new(tenants: impl IntoIterator<Item = Arc<Tenant>>) -> Result<Deployment, DeployError> {
        let mut deployment = Deployment::default();
        let mut owner: HashMap<Route, Arc<str>> = HashMap::new();
        for tenant in tenants {
            for route in &tenant.routes {
                if let Some(first) = owner.get(route) {
                    return Err(DeployError::DuplicateRoute {
                        route: route.to_string(),
                        first: first.to_string(),
                        second: tenant.name.to_string(),
                    });
                }
                owner.insert(route.clone(), tenant.name.clone());
                deployment
                    .router
                    .add(route.clone(), tenant.name.clone())
                    .map_err(|error| DeployError::Route { route: route.to_string(), error })?;
            }
            deployment.tenants.insert(tenant.name.clone(), tenant);
        }
        Ok(deployment)
    }

    /// The tenant for a request to `host` and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Tenant>> {
        self.router.route(host, path).and_then(|name| self.tenants.get(name))
    }

    /// This deployment with `tenant` added or replaced.
    pub fn with(&self, tenant: Arc<Tenant>) -> Result<Deployment, DeployError> {
        let name = tenant.name.clone();
        let others = self.tenants.values().filter(|t| t.name != name).cloned();
        Deployment::new(others.chain(std::iter::once(tenant)))
    }

    /// This deployment without the tenant `name`.
    pub fn without(&self, name: &str) -> Deployment {
        let others = self.tenants.values().filter(|t| &*t.name != name).cloned();
        Deployment::new(others).expect("a subset of a valid deployment is valid")
    }

    /// The smallest CPU limit of any tenant (the watchdog polls at a tenth of it).
    pub fn smallest_cpu_limit(&self) -> Option<Duration> {
        self.tenants.values().map(|t| t.limits.cpu).min()
    }
}

/// Why a deployment was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("route {route:?} belongs to tenant {first:?}; tenant {second:?} cannot claim it too")]
    DuplicateRoute { route: String, first: String, second: String },
    #[error("route {route:?}: {error}")]
    Route { route: String, error: RouteError },
}
