//! The transport a core serves on, whichever it is: kernel sockets or the userspace stack. The
//! scheduler holds one `Link` per core and the HTTP server runs on it unchanged.

use std::net::SocketAddr;
use std::time::Instant;

use kernel_shim::ring::{Completion, Ring};

use crate::kernel::KernelNet;
use crate::smol::SmolNet;
use crate::transport::{ConnEvent, ConnId, ConnectError, SendError, Transport};

/// One core's transport.
pub enum Link {
    /// Kernel sockets through io_uring (the default; runs anywhere).
    Kernel(KernelNet),
    /// isobar's smoltcp stack on a TAP queue or an AF_PACKET socket.
    Smol(Box<SmolNet>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Kernel(_) => f.write_str("Link::Kernel"),
            Link::Smol(_) => f.write_str("Link::Smol"),
        }
    }
}

/// Calls the same method on whichever transport the link is.
macro_rules! each {
    ($self:expr, $net:ident => $call:expr) => {
        match $self {
            Link::Kernel($net) => $call,
            Link::Smol($net) => $call,
        }
    };
}

impl Link {
    /// Puts accepted connections under the shared edge caps.
    pub fn set_admission(&mut self, admission: std::sync::Arc<crate::admission::ConnAdmission>) {
        match self {
            Link::Kernel(net) => net.set_admission(admission),
            Link::Smol(net) => net.set_admission(admission),
        }
    }

    /// Connections refused at accept, by reason.
    pub fn refused(&self) -> crate::admission::RefusedConns {
        match self {
            Link::Kernel(net) => net.refused(),
            Link::Smol(net) => net.stack().refused(),
        }
    }
}

impl Transport for Link {
    fn on_completion(
        &mut self,
        ring: &mut Ring,
        completion: Completion,
        now: Instant,
        events: &mut impl FnMut(ConnEvent<'_>),
    ) {
        each!(self, net => net.on_completion(ring, completion, now, events))
    }

    fn poll(&mut self, ring: &mut Ring, now: Instant, events: &mut impl FnMut(ConnEvent<'_>)) {
        each!(self, net => net.poll(ring, now, events))
    }

    fn poll_at(&self) -> Option<Instant> {
        each!(self, net => net.poll_at())
    }

    fn send(&mut self, ring: &mut Ring, conn: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        each!(self, net => net.send(ring, conn, bytes))
    }

    fn send_owned(&mut self, ring: &mut Ring, conn: ConnId, bytes: Vec<u8>) -> Result<(), SendError> {
        each!(self, net => net.send_owned(ring, conn, bytes))
    }

    fn queued_bytes(&self, conn: ConnId) -> usize {
        each!(self, net => net.queued_bytes(conn))
    }

    fn close(&mut self, ring: &mut Ring, conn: ConnId) {
        each!(self, net => net.close(ring, conn))
    }

    fn abort(&mut self, ring: &mut Ring, conn: ConnId) {
        each!(self, net => net.abort(ring, conn))
    }

    fn pause_recv(&mut self, ring: &mut Ring, conn: ConnId) {
        each!(self, net => net.pause_recv(ring, conn))
    }

    fn resume_recv(&mut self, ring: &mut Ring, conn: ConnId) {
        each!(self, net => net.resume_recv(ring, conn))
    }

    fn connect(&mut self, ring: &mut Ring, addr: SocketAddr) -> Result<ConnId, ConnectError> {
        each!(self, net => net.connect(ring, addr))
    }

    fn stop_accepting(&mut self, ring: &mut Ring) {
        each!(self, net => net.stop_accepting(ring))
    }

    fn open_conns(&self) -> usize {
        each!(self, net => net.open_conns())
    }
}
