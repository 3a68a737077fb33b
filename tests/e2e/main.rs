//! End-to-end tests of the isobar binary: real processes, real sockets, loopback only.

mod fetch;
mod hardening;
mod kv;
mod netstack;
mod qemu;
mod skeleton;
mod tenants;
