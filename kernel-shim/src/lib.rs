//! kernel-shim is the only crate of isobar that talks to Linux. It owns every system call and
//! its `unsafe` edge: a per-core io_uring driver whose operations own their buffers until the
//! kernel is done with them ([`ring`]), CPU affinity and thread CPU time ([`cpu`]), listening
//! and connecting TCP sockets and the UDP socket of a DNS query ([`net`]), cross-core wake-ups
//! ([`EventFd`]), the process signal mask ([`signal`]), the kernel's CSPRNG ([`random`]),
//! bounded reads of configuration files and private cache files ([`file`]), the running
//! program's build ID ([`executable`]), the system-call filter isobar puts on itself
//! after start-up ([`seccomp`]) and giving up root ([`user`]). It hands the other crates safe,
//! typed interfaces and reports operating errors as values whose messages name the cause and
//! the fix.
//!
//! It must not know about HTTP, tenants or V8, must not spawn threads or keep global state,
//! and must not block a core's thread anywhere except in [`ring::Ring::wait`].

pub mod cpu;
pub mod eventfd;
pub mod executable;
pub mod file;
pub mod limits;
pub mod link;
pub mod memory;
pub mod net;
pub mod pid1;
pub mod random;
pub mod ring;
pub mod seccomp;
pub mod signal;
pub mod user;

pub use eventfd::EventFd;
