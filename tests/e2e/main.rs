//! End-to-end tests of the isobar binary: real processes, real sockets, loopback only.

mod cache;
mod certs;
mod cron;
mod fetch;
mod forms;
mod hardening;
mod hostile;
mod kv;
mod kv_redis;
mod modules;
mod netstack;
mod qemu;
mod services;
mod skeleton;
mod snapshot;
mod tenants;
mod tls;
mod websocket;
