//! Shared by the transport test suites (each `tests/*.rs` is its own crate; this module is
//! included by `mod support;`).

use std::net::SocketAddr;

use kernel_shim::ring::Errno;
use netstack::{ConnEvent, ConnId};

/// An owned copy of a [`ConnEvent`], so the test can act on it after the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Accepted(ConnId, SocketAddr),
    Connected(ConnId),
    ConnectFailed(ConnId, Errno),
    Received(ConnId, Vec<u8>),
    SendDone(ConnId),
    PeerClosed(ConnId),
    Failed(ConnId, Errno),
    Closed(ConnId),
    ListenerClosed,
}

impl From<ConnEvent<'_>> for Event {
    fn from(event: ConnEvent<'_>) -> Event {
        match event {
            ConnEvent::Accepted { conn, peer, .. } => Event::Accepted(conn, peer),
            ConnEvent::Connected { conn } => Event::Connected(conn),
            ConnEvent::ConnectFailed { conn, error } => Event::ConnectFailed(conn, error),
            ConnEvent::Received { conn, bytes } => Event::Received(conn, bytes.to_vec()),
            ConnEvent::SendDone { conn } => Event::SendDone(conn),
            ConnEvent::PeerClosed { conn } => Event::PeerClosed(conn),
            ConnEvent::Failed { conn, error } => Event::Failed(conn, error),
            ConnEvent::Closed { conn } => Event::Closed(conn),
            ConnEvent::ListenerClosed => Event::ListenerClosed,
        }
    }
}
