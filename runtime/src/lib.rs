//! The V8 side of isobar: isolates, the Workers API, and the per-core scheduler that runs them
//! beside the core's io_uring ring and HTTP server.
//!
//! This crate owns everything that touches V8; what does not (routes, limits, tenant settings,
//! the configuration model, counters, metrics and the admin API's handling) is in
//! `isobar_tenancy`, re-exported here. It must not talk to Linux directly (that is
//! kernel-shim's job) and must never let a tenant's error become a panic: a panic on a core
//! thread would take down every tenant on it.

pub mod admin;
pub mod api;
pub mod bridge;
pub mod cache;
pub mod cage;
pub mod engine;
pub mod isolate;
pub mod outbound;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod tenant;
pub mod watchdog;
pub mod worker;

// What needs no V8 lives in `isobar_tenancy`; these keep `runtime::routes` and `crate::stats`
// (and the rest) meaning what they did.
pub use isobar_tenancy::{TenantLimits, TenantSettings, metrics, routes, stats};
pub use scheduler::KvStore;
pub use server::{Control, ControlError, CoreEvent, Server, ServerConfig, StartDeployment, StartError};
pub use state::{Outcome, WireResponse};
pub use tenant::{Deployment, Tenant};
pub use worker::{LoadError, ModuleSource, RequestParts, ScriptFormat, Worker, WorkerSpec};

#[cfg(test)]
mod op_fuzz;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
