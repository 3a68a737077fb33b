//! End-to-end tests of the isobar binary: real processes, real sockets, loopback only.

mod skeleton;
mod tenants;
