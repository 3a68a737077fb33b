//! netstack owns a core's networking above the kernel: the link-neutral connection interface
//! ([`Transport`], [`ConnEvent`]) that the HTTP server is written against, its implementation
//! over kernel sockets through io_uring ([`KernelNet`]), and the sans-IO HTTP/1.1 codec
//! ([`http1`]); smoltcp on a raw link is the second transport to come.
//!
//! It must not make system calls itself (they go through `kernel-shim`), must not block, spawn
//! threads or read clocks, and must never let a peer make it hold unbounded memory: every queue
//! has a limit ([`NetLimits`], [`http1::Limits`]).

pub mod http1;
pub mod kernel;
pub mod server;
pub mod transport;

pub use kernel::{KernelNet, TAG_NET};
pub use server::{HttpServer, IncomingRequest, ServerStats};
pub use transport::{ConnEvent, ConnId, ConnectError, NetLimits, SendError, Transport};
