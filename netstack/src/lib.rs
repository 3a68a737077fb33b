//! netstack owns a core's networking above the kernel: the link-neutral connection interface
//! ([`Transport`], [`ConnEvent`]) that the HTTP server is written against, its implementation
//! over kernel sockets through io_uring ([`KernelNet`]), and the sans-IO HTTP/1.1 codec
//! ([`http1`]); the per-client and total connection caps every transport applies when it accepts
//! ([`admission`]); and smoltcp on a raw link ([`smol::SmolNet`]), with the link edge it needs:
//! virtio-net headers and offloads ([`frame`]) and flow steering across cores ([`steer`]).
//!
//! It must not make system calls itself (they go through `kernel-shim`), must not block, spawn
//! threads or read clocks, and must never let a peer make it hold unbounded memory: every queue
//! has a limit ([`NetLimits`], [`http1::Limits`]).

#![deny(unsafe_code)]

pub mod admission;
pub mod frame;
pub mod http1;
pub mod kernel;
pub mod link;
pub mod server;
pub mod smol;
pub mod steer;
pub mod transport;

pub use admission::{Admitted, ConnAdmission, ConnCaps, Refusal, RefusedConns};
pub use kernel::{KernelNet, TAG_NET};
pub use link::Link;
pub use server::{HttpServer, IncomingRequest, ServerStats};
pub use smol::{LinkKind, SmolConfig, SmolConfigError, SmolNet, SmolStack, SmolStats};
pub use steer::{Forwarder, Owner, Steering};
pub use transport::{ConnEvent, ConnId, ConnectError, NetLimits, SendError, Transport};
