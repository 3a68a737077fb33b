//! The admin API's listener: its own thread with its own io_uring ring and HTTP server (the same
//! netstack code the cores use), so nothing it does, including compiling an uploaded script,
//! ever runs on a core. What the API answers (routes, access, JSON, uploads) is decided by
//! `isobar_tenancy::admin`; this module feeds it requests and implements its
//! [`ControlPlane`] over [`Control`]: compiling a tenant, checking its script, and deploying it
//! to every core.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isobar_tenancy::admin::{Admin, AdminRequest, ChangeError, ControlPlane, Deployed, DeployedTenant};
use isobar_tenancy::stats::CoreStats;
use isobar_tenancy::{TenantLimits, TenantSettings};
use kernel_shim::ring::{Ring, RingConfig, RingError, key_tag};
use kernel_shim::seccomp::{Role, Sandbox};
use netstack::http1::{self, Response};
use netstack::{HttpServer, IncomingRequest, KernelNet, NetLimits, TAG_NET};

use crate::server::{Control, ControlError};
use crate::tenant::{DeployError, Tenant};
use crate::worker::Worker;

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
    let admin = Admin::new(config.token.as_deref(), config.defaults);
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
        while let Some(IncomingRequest { conn, peer, request, .. }) = requests.pop() {
            let answer = admin.handle(
                &*control,
                &AdminRequest {
                    method: request.method(),
                    target: request.target(),
                    authorization: request.header("authorization"),
                    content_type: request.header("content-type"),
                    body: request.body(),
                    peer,
                },
            );
            let response = answer
                .headers
                .into_iter()
                .fold(Response::new(answer.status), |response, (name, value)| response.with_header(name, value))
                .with_body(answer.body);
            http.respond(&mut ring, conn, request.id(), response, Instant::now(), &mut requests);
        }
    }
}

/// A tenant as the admin API shows it: `env` split back into vars and secrets.
fn deployed(tenant: &Tenant) -> DeployedTenant {
    let (mut vars, mut secrets) = (BTreeMap::new(), BTreeMap::new());
    for (name, value) in tenant.spec.env.iter() {
        let side = if tenant.secret_names.contains(name) { &mut secrets } else { &mut vars };
        side.insert(name.clone(), value.clone());
    }
    DeployedTenant {
        name: tenant.name.to_string(),
        version: tenant.version,
        format: tenant.spec.format,
        routes: tenant.routes.clone(),
        vars,
        secrets,
        limits: tenant.limits,
        crons: tenant.crons.clone(),
        kv: tenant.spec.kv.to_vec(),
        services: tenant.spec.services.iter().cloned().collect(),
    }
}

impl ControlPlane for Control {
    fn tenants(&self) -> Vec<DeployedTenant> {
        self.deployment().tenants.values().map(|tenant| deployed(tenant)).collect()
    }

    fn tenant(&self, name: &str) -> Option<DeployedTenant> {
        self.deployment().tenants.get(name).map(|tenant| deployed(tenant))
    }

    fn stats(&self) -> Vec<CoreStats> {
        Control::stats(self)
    }

    /// Compiles the script and its imports, runs its top level once within [`VALIDATE_CPU`],
    /// and deploys it to every core.
    fn deploy(&self, settings: TenantSettings) -> Result<Deployed, ChangeError> {
        let tenant = Tenant::build(settings).map_err(|error| ChangeError::Invalid(error.to_string()))?;
        Worker::validate(&tenant.spec, tenant.limits.heap_bytes, VALIDATE_CPU)
            .map_err(|error| ChangeError::Invalid(error.to_string()))?;
        let (name, version) = (tenant.name.clone(), tenant.version);
        match self.put_tenant(tenant) {
            Ok(replaced) => {
                tracing::info!(tenant = &*name, version, "deployed through the admin API");
                Ok(Deployed { version, replaced })
            }
            Err(ControlError::Deploy(error @ DeployError::DuplicateRoute { .. })) => {
                Err(ChangeError::RouteTaken(error.to_string()))
            }
            Err(error) => Err(ChangeError::Failed(error.to_string())),
        }
    }

    fn remove(&self, name: &str) -> Result<bool, ChangeError> {
        self.remove_tenant(name).map_err(|error| ChangeError::Failed(error.to_string()))
    }

    fn fire_scheduled(&self, name: &str, cron: &str) -> Result<bool, ChangeError> {
        Ok(Control::fire_scheduled(self, name, cron))
    }
}
