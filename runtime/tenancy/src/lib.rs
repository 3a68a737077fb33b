//! The V8-free model of isobar's tenants and their control plane: what a tenant is made from
//! (name, script format, routes, bindings, limits and the values each limit may take), the
//! configuration file that lists them, the router that picks a tenant for a request, the
//! counters cores keep and the metrics page made from them, the tenants' cron schedules and the
//! sans-IO table of their firings ([`cron`]), and the admin API's request handling behind the
//! [`admin::ControlPlane`] trait the runtime implements.
//!
//! It must not link V8, do I/O (the runtime owns the admin listener; boot reads the
//! configuration file) or know about cores and isolates: everything here is plain data and
//! checks, so it builds and tests in seconds. Every input here is untrusted (an operator's file,
//! an admin client's upload, a client's Host header) and gets a typed error, never a panic.

#![deny(unsafe_code)]

pub mod admin;
pub mod config;
pub mod cron;
pub mod egress;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod stats;
pub mod tenant;

pub use limits::{Limits, TenantLimits};
pub use tenant::{KvBinding, ScriptFormat, TenantSettings};
