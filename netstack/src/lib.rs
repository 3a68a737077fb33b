//! netstack owns a core's networking above the kernel: the link-neutral connection interface
//! ([`Transport`], [`ConnEvent`]) that the HTTP server is written against, its implementation
//! over kernel sockets through io_uring ([`KernelNet`]), and the sans-IO HTTP/1.1 codecs
//! ([`http1`]: the server side, and the client side for `fetch()`), with the per-core
//! [`HttpServer`] on top (terminating TLS on its HTTPS port); smoltcp on a raw link
//! ([`smol::SmolNet`]), with the link edge it needs: virtio-net headers and offloads
//! ([`frame`]) and flow steering across cores ([`steer`]); and the sans-IO layers outbound
//! requests and TLS termination stand on: the keep-alive pool per origin ([`pool`]), the stub
//! resolver ([`dns`]), TLS sessions and configurations over rustls ([`tls`]) and WebSocket
//! framing over tungstenite ([`websocket`]); and the sans-IO RESP2 client codec for the
//! Valkey/Redis KV backend ([`resp`]); and the per-client and total connection caps every
//! transport applies when it accepts ([`admission`]).
//!
//! It must not make system calls itself (they go through `kernel-shim`), must not block, spawn
//! threads or read clocks, and must never let a peer make it hold unbounded memory: every queue
//! has a limit ([`NetLimits`], [`http1::Limits`], [`http1::ClientLimits`],
//! [`pool::PoolLimits`], [`dns::ResolverLimits`], [`tls::TlsLimits`],
//! [`websocket::WsLimits`]). Two caveats, both inside well-kept crates: rustls reads the clock to
//! check certificate validity, and a WebSocket client's frame masks come from `rand`'s
//! thread-local generator, seeded from the OS (docs/why-sans-io-clients.md).

#![deny(unsafe_code)]

pub mod admission;
pub mod dns;
pub mod frame;
pub mod http1;
pub mod kernel;
pub mod link;
pub mod pool;
pub mod resp;
pub mod server;
pub mod smol;
pub mod steer;
pub mod tls;
pub mod transport;
pub mod websocket;

pub use admission::{Admitted, ConnAdmission, ConnCaps, Refusal, RefusedConns};
pub use dns::{DnsError, LookupId, LookupStart, ResolvConf, Resolver, ResolverLimits};
pub use kernel::{KernelNet, TAG_NET};
pub use link::Link;
pub use pool::{KeepAlivePool, Origin, PoolLimits, Scheme};
pub use server::{HttpServer, IncomingRequest, STREAM_ROOM_BYTES, ServerStats, ServerTls, StreamEvent};
pub use smol::{LinkKind, SmolConfig, SmolConfigError, SmolNet, SmolStack, SmolStats};
pub use steer::{Forwarder, Owner, Steering};
pub use tls::{TlsConfigError, TlsError, TlsLimits, TlsServerConfig, TlsSession};
pub use transport::{ConnEvent, ConnId, ConnectError, NetLimits, SendError, Transport};
pub use websocket::{WsConnection, WsEndpoint, WsError, WsLimits, WsMessage, WsRole, WsState, WsUpdate};
