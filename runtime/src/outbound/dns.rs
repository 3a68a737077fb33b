//! DNS for subrequests, on the core's ring: netstack's sans-IO stub resolver (its queries, answers,
//! cache and timeouts) driven over one connected UDP socket per nameserver, opened when the core
//! starts (before the process seals itself, so no socket is made at run time).
//!
//! One socket per nameserver per core means a fixed source port per core: the query id (random,
//! 16 bits) and the check that an answer matches its question are what stop a forged answer. The
//! resolver only serves names; IP literals and `localhost` never reach it.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use kernel_shim::ring::{Completion, CompletionData, Op, Ring, tagged_key};
use netstack::{DnsError, LookupId, LookupStart, ResolvConf, Resolver, ResolverLimits};

/// Completion-key tag of the DNS sockets' operations.
pub const TAG_DNS: u8 = 0x03;

/// The largest DNS answer read (the resolver advertises a 1232-byte payload).
const DATAGRAM_BYTES_MAX: usize = 4096;

struct Socket {
    fd: OwnedFd,
    server: SocketAddr,
    /// A RECV is in flight on it.
    receiving: bool,
    /// A SEND is in flight; queries wait their turn (bounded by the resolver's lookups).
    sending: bool,
    queue: std::collections::VecDeque<Vec<u8>>,
}

/// The resolver and its sockets.
pub struct Dns {
    resolver: Resolver,
    sockets: Vec<Socket>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").field("sockets", &self.sockets.len()).finish()
    }
}

/// Queries queued per socket while one is being sent.
const QUEUED_MAX: usize = 256;

impl Dns {
    /// A resolver for `conf`, with a connected UDP socket per nameserver (made now). A
    /// nameserver whose socket cannot be made is left out, with a warning.
    pub fn new(conf: ResolvConf) -> Dns {
        let mut sockets = Vec::new();
        for server in &conf.nameservers {
            match kernel_shim::net::udp_socket(*server) {
                Ok(fd) => sockets.push(Socket {
                    fd,
                    server: *server,
                    receiving: false,
                    sending: false,
                    queue: Default::default(),
                }),
                Err(error) => tracing::warn!("DNS: cannot open a socket to nameserver {server}: {error}"),
            }
        }
        let random_id = Box::new(|| {
            let mut bytes = [0u8; 2];
            // A failed read leaves zeros; the answer check still needs the question to match.
            let _ = kernel_shim::random::fill(&mut bytes);
            u16::from_ne_bytes(bytes)
        });
        Dns { resolver: Resolver::new(conf, ResolverLimits::default(), random_id), sockets }
    }

    /// Starts resolving `host` (not an IP literal: callers parse those first).
    pub fn lookup(&mut self, ring: &mut Ring, host: &str, now: Instant) -> LookupStart {
        let start = self.resolver.lookup(host, now);
        self.flush(ring);
        start
    }

    /// Forgets a lookup nobody waits for any more.
    pub fn cancel(&mut self, id: LookupId) {
        self.resolver.cancel(id);
    }

    /// Results that arrived.
    pub fn poll_result(&mut self) -> Option<(LookupId, Result<Vec<IpAddr>, DnsError>)> {
        self.resolver.poll_result()
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.resolver.poll_at()
    }

    /// Retries and timeouts due at `now`.
    pub fn poll(&mut self, ring: &mut Ring, now: Instant) {
        self.resolver.poll(now);
        self.flush(ring);
    }

    /// Sends what the resolver wants sent and keeps a receive armed on every socket in use.
    fn flush(&mut self, ring: &mut Ring) {
        while let Some(transmit) = self.resolver.poll_transmit() {
            let Some(index) = self.sockets.iter().position(|s| s.server == transmit.server) else { continue };
            let socket = &mut self.sockets[index];
            if socket.queue.len() < QUEUED_MAX {
                socket.queue.push_back(transmit.bytes);
            }
        }
        for (index, socket) in self.sockets.iter_mut().enumerate() {
            if !socket.sending
                && let Some(bytes) = socket.queue.pop_front()
            {
                socket.sending = true;
                let fd = socket.fd.as_raw_fd();
                ring.submit(Op::Send { fd, buf: bytes, offset: 0 }, tagged_key(TAG_DNS, (index as u64) << 1));
            }
            if !socket.receiving && self.resolver.lookups_in_flight() > 0 {
                socket.receiving = true;
                let fd = socket.fd.as_raw_fd();
                let buf = Vec::with_capacity(DATAGRAM_BYTES_MAX);
                ring.submit(Op::Recv { fd, buf }, tagged_key(TAG_DNS, ((index as u64) << 1) | 1));
            }
        }
    }

    /// A completion tagged [`TAG_DNS`].
    pub fn on_completion(&mut self, ring: &mut Ring, completion: Completion, now: Instant) {
        let low = completion.key & ((1 << 56) - 1);
        let index = (low >> 1) as usize;
        let is_recv = low & 1 == 1;
        let Some(socket) = self.sockets.get_mut(index) else { return };
        if is_recv {
            socket.receiving = false;
            if let (Ok(_), CompletionData::Buffer(buf)) = (completion.result, &completion.data) {
                let server = socket.server;
                self.resolver.receive(server, buf, now);
            }
        } else {
            socket.sending = false;
        }
        self.flush(ring);
    }
}
