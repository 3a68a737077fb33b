//! A core's subrequests: HTTP/1.1 (and HTTP over TLS) from the core's own transport and ring, with
//! no thread pool and no async runtime.
//!
//! An *exchange* is one request and its response. It resolves its host ([`dns`], on the ring),
//! checks the address against the egress policy ([`policy`]), takes a kept-alive connection to
//! the origin from the per-core pool or connects a new one through the same [`Transport`] the
//! server uses (kernel sockets or the userspace stack), speaks TLS through netstack's sans-IO
//! sessions when the URL is `https:`, and runs netstack's sans-IO HTTP/1.1 client codec. The
//! response comes out as [`Progress`] — the head, then body pieces, then the end or an error —
//! *pulled* by the consumer ([`Outbound::next_progress`]): a piece is taken from the codec only
//! when the last one was consumed, and a connection whose codec is full stops being read, so a
//! slow consumer (an isolate, or a client the body is passed through to) never makes the core
//! buffer without bound.
//!
//! The engine knows nothing of isolates: the scheduler maps exchanges to the promises and streams
//! waiting on them.

pub mod dns;
pub mod outbox;
pub mod policy;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel_shim::ring::{Completion, Errno, Ring};
use netstack::http1::{BodyFraming, ClientConn, ClientEvent, ClientLimits, ClientState, OutgoingRequest};
use netstack::pool::{IdleId, Put};
use netstack::tls::LazyClientConfig;
use netstack::{ConnEvent, ConnId, KeepAlivePool, Link, LookupId, LookupStart, Origin, PoolLimits, ResolvConf};
use netstack::{Scheme, TlsLimits, TlsSession, Transport, WsEndpoint, WsError, WsLimits, WsMessage, WsRole, WsUpdate};

pub use policy::{EgressPolicy, IpNet, Refused};

/// Why a subrequest failed; the message is what the script's `fetch()` rejects with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("unsupported URL scheme {0:?}: fetch() supports http: and https:")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("DNS lookup of {host:?} failed: {error}")]
    Dns { host: String, error: netstack::DnsError },
    #[error("the destination {addr} is not allowed for this worker ({reason})")]
    Refused { addr: SocketAddr, reason: &'static str },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("https: is not available (no TLS client configuration)")]
    NoTls,
    #[error("the request could not be sent: {0}")]
    Request(String),
    #[error("the origin's response was not valid HTTP/1.1: {0}")]
    Response(String),
    #[error("the connection to the origin was lost")]
    ConnectionLost,
    #[error("too many subrequests in progress on this core")]
    Busy,
    #[error("the subrequest was cancelled")]
    Cancelled,
}

/// Bounds of a core's outbound side.
#[derive(Debug, Clone, Copy)]
pub struct OutboundLimits {
    /// Exchanges in progress on the core at once.
    pub exchanges_max: usize,
    /// From connect to connected (or to the TLS handshake done).
    pub connect_timeout: Duration,
    pub client: ClientLimits,
    pub pool: PoolLimits,
    pub tls: TlsLimits,
    /// Request body bytes buffered before the connection is ready or while it is busy.
    pub upload_buffer_bytes_max: usize,
}

impl Default for OutboundLimits {
    fn default() -> OutboundLimits {
        OutboundLimits {
            exchanges_max: 10_000,
            connect_timeout: Duration::from_secs(10),
            client: ClientLimits::default(),
            pool: PoolLimits::default(),
            tls: TlsLimits::default(),
            upload_buffer_bytes_max: 64 << 10,
        }
    }
}

/// What one core's outbound side is made from.
#[derive(Clone)]
pub struct OutboundConfig {
    pub dns: ResolvConf,
    /// Built on the first `https:` subrequest (see [`LazyClientConfig`]).
    pub tls: Option<Arc<LazyClientConfig>>,
    pub policy: Arc<EgressPolicy>,
    pub limits: OutboundLimits,
}

impl std::fmt::Debug for OutboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConfig").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl Default for OutboundConfig {
    fn default() -> OutboundConfig {
        OutboundConfig {
            dns: ResolvConf::default(),
            tls: None,
            policy: Arc::new(EgressPolicy::strict()),
            limits: OutboundLimits::default(),
        }
    }
}

/// A subrequest as the API hands it over.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub url: url::Url,
    pub method: String,
    /// Lower-case names, values as bytes; `host`, `content-length`, `transfer-encoding` are the
    /// codec's.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: RequestBody,
}

/// The request body: none, all of it now, or streamed with [`Outbound::write_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Bytes(Vec<u8>),
    Streamed { length: Option<u64> },
}

/// The response head as the API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's length when the origin said it (content-length).
    pub length: Option<u64>,
}

/// What an exchange produced, in order: one `Head`, `Chunk`s, then `End` or `Failed` (`Failed`
/// may also come first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Head(ResponseMeta),
    Chunk(Vec<u8>),
    End,
    Failed(FetchError),
    /// The origin switched to WebSocket (after a `101` head): the connection is now a
    /// client-side WebSocket, driven with [`Outbound::ws_send`] and [`Outbound::ws_close`],
    /// whose messages come out of [`Outbound::take_ws_updates`].
    Upgraded(ConnId),
}

/// Names one exchange on a core.
pub type ExchangeId = u64;

enum Stage {
    /// Waiting for DNS.
    Resolving(LookupId),
    /// Waiting for the connection (and TLS) to be ready.
    Connecting { conn: ConnId, addr: SocketAddr, deadline: Instant },
    /// Request sent (or being sent) on `conn`.
    Active { conn: ConnId },
    /// Over: progress left to read, nothing on the wire.
    Done,
}

struct Exchange {
    origin: Origin,
    host: String,
    port: u16,
    request: OutgoingRequest,
    /// Request body bytes not yet taken by the codec.
    upload: Vec<u8>,
    /// The whole body was given (or there is none).
    upload_finished: bool,
    stage: Stage,
    /// Progress not yet pulled by the consumer: at most the head and one piece, plus the end.
    progress: VecDeque<Progress>,
    /// The head arrived (so `Failed` later means a broken body).
    saw_head: bool,
}

struct OutConn {
    exchange: Option<ExchangeId>,
    origin: Origin,
    client: ClientConn,
    tls: Option<TlsSession>,
    connected: bool,
    /// The request head was handed to the codec.
    request_sent: bool,
    /// Plaintext received and not yet taken by the codec (it was full).
    stash: Vec<u8>,
    /// Ciphertext received and not yet taken by the TLS session.
    cipher_stash: Vec<u8>,
    /// Plaintext from the codec that the TLS session could not take yet.
    plain_out: Vec<u8>,
    recv_paused: bool,
    /// In the keep-alive pool under this id.
    idle: Option<IdleId>,
    /// The connection switched to WebSocket: its client end.
    ws: Option<Box<WsEndpoint>>,
}

/// A core's outbound side. See the module documentation.
pub struct Outbound {
    config: OutboundConfig,
    dns: dns::Dns,
    exchanges: HashMap<ExchangeId, Exchange>,
    next_id: ExchangeId,
    conns: HashMap<ConnId, OutConn>,
    pool: KeepAlivePool<ConnId>,
    /// Exchanges whose consumer has something new to pull or room to push.
    ready: Vec<ExchangeId>,
    /// Events of outbound connections gathered while the transport was busy calling back.
    events: Vec<OwnedEvent>,
    /// What happened on WebSocket connections since the last [`Self::take_ws_updates`].
    ws_updates: Vec<(ConnId, WsUpdate)>,
    /// Counters for metrics.
    pub stats: OutboundStats,
}

/// Counters of one core's outbound side.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutboundStats {
    pub exchanges: u64,
    pub conns_opened: u64,
    pub conns_reused: u64,
    pub failures: u64,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("exchanges", &self.exchanges.len()).field("conns", &self.conns.len()).finish()
    }
}

/// A transport event copied out of the transport's callback.
#[derive(Debug)]
enum OwnedEvent {
    Connected(ConnId),
    ConnectFailed(ConnId, Errno),
    Received(ConnId, Vec<u8>),
    SendDone(ConnId),
    PeerClosed(ConnId),
    Failed(ConnId),
    Closed(ConnId),
}

impl Outbound {
    pub fn new(config: OutboundConfig) -> Outbound {
        let dns = dns::Dns::new(config.dns.clone());
        let pool = KeepAlivePool::new(config.limits.pool);
        Outbound {
            config,
            dns,
            exchanges: HashMap::new(),
            next_id: 1,
            conns: HashMap::new(),
            pool,
            ready: Vec::new(),
            events: Vec::new(),
            ws_updates: Vec::new(),
            stats: OutboundStats::default(),
        }
    }

    /// Exchanges in progress.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// Idle connections kept for reuse.
    pub fn idle_conns(&self) -> usize {
        self.pool.len()
    }

    /// Keeps an event of an outbound connection (called from inside the transport's callback,
    /// where the transport cannot be used); [`Self::process_events`] applies it.
    pub fn note_event(&mut self, event: ConnEvent<'_>) {
        let owned = match event {
            ConnEvent::Connected { conn } => OwnedEvent::Connected(conn),
            ConnEvent::ConnectFailed { conn, error } => OwnedEvent::ConnectFailed(conn, error),
            ConnEvent::Received { conn, bytes } => OwnedEvent::Received(conn, bytes.to_vec()),
            ConnEvent::SendDone { conn } => OwnedEvent::SendDone(conn),
            ConnEvent::PeerClosed { conn } => OwnedEvent::PeerClosed(conn),
            ConnEvent::Failed { conn, .. } => OwnedEvent::Failed(conn),
            ConnEvent::Closed { conn } => OwnedEvent::Closed(conn),
            ConnEvent::Accepted { .. } | ConnEvent::ListenerClosed => return,
        };
        self.events.push(owned);
    }

    /// Applies the events [`Self::note_event`] kept.
    pub fn process_events(&mut self, link: &mut Link, ring: &mut Ring, now: Instant) {
        let events = std::mem::take(&mut self.events);
        for event in events {
            match event {
                OwnedEvent::Connected(conn) => self.on_connected(link, ring, conn, now),
                OwnedEvent::ConnectFailed(conn, error) => {
                    let reason = format!("{error:?}");
                    self.fail_conn(link, ring, conn, |addr| FetchError::Connect { addr, reason: reason.clone() });
                }
                OwnedEvent::Received(conn, bytes) => self.on_received(link, ring, conn, &bytes, now),
                OwnedEvent::SendDone(conn) => self.pump(link, ring, conn, now),
                OwnedEvent::PeerClosed(conn) => self.on_peer_closed(link, ring, conn, now),
                OwnedEvent::Failed(conn) => self.fail_conn(link, ring, conn, |_| FetchError::ConnectionLost),
                OwnedEvent::Closed(conn) => {
                    self.fail_conn(link, ring, conn, |_| FetchError::ConnectionLost);
                    if let Some(c) = self.conns.remove(&conn)
                        && let Some(idle) = c.idle
                    {
                        self.pool.remove(idle);
                    }
                }
            }
        }
    }

    /// A completion of the DNS sockets.
    pub fn on_dns_completion(&mut self, link: &mut Link, ring: &mut Ring, completion: Completion, now: Instant) {
        self.dns.on_completion(ring, completion, now);
        self.collect_dns(link, ring, now);
    }

    /// Starts an exchange. Errors that can be known at once (a bad URL, too many exchanges) are
    /// returned; later ones arrive as [`Progress::Failed`].
    pub fn start(
        &mut self,
        link: &mut Link,
        ring: &mut Ring,
        request: FetchRequest,
        now: Instant,
    ) -> Result<ExchangeId, FetchError> {
        if self.exchanges.len() >= self.config.limits.exchanges_max {
            return Err(FetchError::Busy);
        }
        let scheme = match request.url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(FetchError::Scheme(other.to_string())),
        };
        if scheme == Scheme::Https && self.config.tls.is_none() {
            return Err(FetchError::NoTls);
        }
        let host = match request.url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(FetchError::NoHost),
        };
        let port = request.url.port_or_known_default().unwrap_or(80);
        let authority = match (request.url.host_str(), request.url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(FetchError::NoHost),
        };
        let mut target = request.url.path().to_string();
        if let Some(query) = request.url.query() {
            target.push('?');
            target.push_str(query);
        }
        let (framing, upload, finished) = match request.body {
            RequestBody::None => (BodyFraming::None, Vec::new(), true),
            RequestBody::Bytes(bytes) => (BodyFraming::Length(bytes.len() as u64), bytes, true),
            RequestBody::Streamed { length: Some(n) } => (BodyFraming::Length(n), Vec::new(), false),
            RequestBody::Streamed { length: None } => (BodyFraming::Chunked, Vec::new(), false),
        };
        let mut outgoing = OutgoingRequest::new(request.method, target, authority).with_body(framing);
        outgoing.headers = request.headers;
        let origin = Origin::new(scheme, &host, port);
        let id = self.next_id;
        self.next_id += 1;
        self.stats.exchanges += 1;
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        let (stage, ready) = match literal {
            Some(ip) => (Stage::Done, Some(Ok(vec![ip]))),
            None => match self.dns.lookup(ring, &host, now) {
                LookupStart::Pending(lookup) => (Stage::Resolving(lookup), None),
                LookupStart::Ready(result) => (Stage::Done, Some(result)),
            },
        };
        let exchange = Exchange {
            origin,
            host: host.clone(),
            port,
            request: outgoing,
            upload,
            upload_finished: finished,
            stage,
            progress: VecDeque::new(),
            saw_head: false,
        };
        self.exchanges.insert(id, exchange);
        if let Some(result) = ready {
            self.resolved(link, ring, id, result.map_err(|error| FetchError::Dns { host, error }), now);
        }
        Ok(id)
    }

    /// The address is known (or DNS failed): check it and get a connection.
    fn resolved(
        &mut self,
        link: &mut Link,
        ring: &mut Ring,
        id: ExchangeId,
        result: Result<Vec<IpAddr>, FetchError>,
        now: Instant,
    ) {
        let Some(exchange) = self.exchanges.get(&id) else { return };
        let ips = match result {
            Ok(ips) => ips,
            Err(error) => return self.fail(id, error),
        };
        let Some(ip) = ips.first().copied() else {
            let host = exchange.host.clone();
            return self.fail(id, FetchError::Dns { host, error: netstack::DnsError::NoAddresses });
        };
        let addr = SocketAddr::new(ip, exchange.port);
        if let Err(refused) = self.config.policy.check(addr) {
            let reason = match refused {
                Refused::OwnListener => "it is one of isobar's own listeners",
                Refused::Denied => "denied by the egress configuration",
                Refused::Local => "a local or private address",
                Refused::HostAddress => "an address of this host",
            };
            return self.fail(id, FetchError::Refused { addr, reason });
        }
        let origin = exchange.origin.clone();
        // A kept-alive connection to the same origin first.
        while let Some(conn) = self.pool.take(&origin, now) {
            let usable =
                self.conns.get(&conn).is_some_and(|c| c.client.state() == ClientState::Idle && c.stash.is_empty());
            if let Some(c) = self.conns.get_mut(&conn) {
                c.idle = None;
            }
            if !usable {
                self.close_conn(link, ring, conn);
                continue;
            }
            self.stats.conns_reused += 1;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.exchange = Some(id);
                c.request_sent = false;
            }
            if let Some(e) = self.exchanges.get_mut(&id) {
                e.stage = Stage::Active { conn };
            }
            self.pump(link, ring, conn, now);
            return;
        }
        let conn = match link.connect(ring, addr) {
            Ok(conn) => conn,
            Err(error) => return self.fail(id, FetchError::Connect { addr, reason: error.to_string() }),
        };
        self.stats.conns_opened += 1;
        let client = ClientConn::new(self.config.limits.client, now);
        self.conns.insert(
            conn,
            OutConn {
                exchange: Some(id),
                origin,
                client,
                tls: None,
                connected: false,
                request_sent: false,
                stash: Vec::new(),
                cipher_stash: Vec::new(),
                plain_out: Vec::new(),
                recv_paused: false,
                idle: None,
                ws: None,
            },
        );
        if let Some(e) = self.exchanges.get_mut(&id) {
            e.stage = Stage::Connecting { conn, addr, deadline: now + self.config.limits.connect_timeout };
        }
    }

    fn collect_dns(&mut self, link: &mut Link, ring: &mut Ring, now: Instant) {
        while let Some((lookup, result)) = self.dns.poll_result() {
            let waiting: Vec<ExchangeId> = self
                .exchanges
                .iter()
                .filter(|(_, e)| matches!(e.stage, Stage::Resolving(l) if l == lookup))
                .map(|(id, _)| *id)
                .collect();
            for id in waiting {
                let host = self.exchanges.get(&id).map(|e| e.host.clone()).unwrap_or_default();
                let result = result.clone().map_err(|error| FetchError::Dns { host, error });
                self.resolved(link, ring, id, result, now);
            }
        }
    }

    fn on_connected(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.connected = true;
        if c.origin.scheme() == Scheme::Https {
            let Some(lazy) = self.config.tls.clone() else { return };
            let host = c.origin.host().trim_start_matches('[').trim_end_matches(']').to_string();
            let session = match lazy.get() {
                Ok(config) => TlsSession::client(config, &host, self.config.limits.tls).map_err(|e| e.to_string()),
                Err(reason) => Err(format!("the CAs trusted for https: subrequests: {reason}")),
            };
            match session {
                Ok(session) => c.tls = Some(session),
                Err(reason) => {
                    return self.fail_conn(link, ring, conn, |_| FetchError::Tls {
                        host: host.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        self.pump(link, ring, conn, now);
    }

    /// Moves everything that can move on `conn`: the request head and body into the codec, the
    /// codec's output (through TLS) onto the wire, stashed input into the codec, and the codec's
    /// events into the exchange's progress.
    fn pump(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.connected {
            return;
        }
        if c.ws.is_some() {
            return self.pump_ws(link, ring, conn, now);
        }
        let handshaking = c.tls.as_ref().is_some_and(TlsSession::is_handshaking);
        if let Some(id) = c.exchange
            && let Some(e) = self.exchanges.get_mut(&id)
            && !handshaking
        {
            if !c.request_sent {
                if let Err(error) = c.client.send_request(&e.request, now) {
                    let reason = error.to_string();
                    return self.fail_conn(link, ring, conn, |_| FetchError::Request(reason.clone()));
                }
                c.request_sent = true;
                if matches!(e.stage, Stage::Connecting { .. }) {
                    e.stage = Stage::Active { conn };
                }
            }
            if !e.upload.is_empty() {
                match c.client.write_body(&e.upload, now) {
                    Ok(taken) => {
                        e.upload.drain(..taken);
                        if taken > 0 {
                            self.ready.push(id);
                        }
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        return self.fail_conn(link, ring, conn, |_| FetchError::Request(reason.clone()));
                    }
                }
            }
            if e.upload.is_empty() && e.upload_finished && !c.client.request_complete() {
                let framed = !matches!(e.request.body, BodyFraming::None);
                if framed && let Err(error) = c.client.finish_body(now) {
                    let reason = error.to_string();
                    return self.fail_conn(link, ring, conn, |_| FetchError::Request(reason.clone()));
                }
            }
        }
        // Output: plaintext from the codec, through TLS if any, onto the wire; one buffer in the
        // transport's queue at a time keeps it bounded.
        if link.queued_bytes(conn) == 0 {
            let mut out = Vec::new();
            match &mut c.tls {
                Some(tls) => {
                    // The codec's output waits in `plain_out` until TLS has room for it.
                    if !tls.is_handshaking() {
                        c.client.take_output(&mut c.plain_out);
                        if !c.plain_out.is_empty() {
                            let taken = tls.write_plaintext(&c.plain_out).unwrap_or(0);
                            c.plain_out.drain(..taken);
                        }
                    }
                    tls.take_ciphertext(&mut out);
                }
                None => c.client.take_output(&mut out),
            }
            if !out.is_empty()
                && let Err(error) = link.send_owned(ring, conn, out)
            {
                let reason = error.to_string();
                return self.fail_conn(link, ring, conn, |_| FetchError::Request(reason.clone()));
            }
        }
        // Input the codec could not take before.
        if !c.stash.is_empty() && c.client.wants_read() {
            let taken = c.client.receive(&c.stash, now);
            c.stash.drain(..taken);
        }
        self.collect_events(link, ring, conn, now);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let should_pause = !c.stash.is_empty() || !c.cipher_stash.is_empty();
        if should_pause && !c.recv_paused {
            c.recv_paused = true;
            link.pause_recv(ring, conn);
        } else if !should_pause && c.recv_paused {
            c.recv_paused = false;
            link.resume_recv(ring, conn);
        }
    }

    fn on_received(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, bytes: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.idle.is_some() {
            // An idle connection the origin writes to: its state is unknown, let it go.
            return self.close_conn(link, ring, conn);
        }
        match &mut c.tls {
            Some(tls) => {
                c.cipher_stash.extend_from_slice(bytes);
                match tls.receive(&c.cipher_stash) {
                    Ok(taken) => {
                        c.cipher_stash.drain(..taken);
                    }
                    Err(error) => {
                        let host = c.origin.host().to_string();
                        let reason = error.to_string();
                        return self.fail_conn(link, ring, conn, |_| FetchError::Tls {
                            host: host.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                let mut plain = Vec::new();
                tls.read_plaintext(&mut plain);
                c.stash.extend_from_slice(&plain);
            }
            None => c.stash.extend_from_slice(bytes),
        }
        self.pump(link, ring, conn, now);
    }

    fn on_peer_closed(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if let Some(ws) = &mut c.ws {
            if let Some(tls) = &mut c.tls {
                let _ = tls.peer_closed();
                let mut plain = Vec::new();
                tls.read_plaintext(&mut plain);
                c.stash.extend_from_slice(&plain);
            }
            if c.stash.is_empty() {
                ws.peer_closed();
            }
            return self.pump_ws(link, ring, conn, now);
        }
        if c.idle.is_some() || c.exchange.is_none() {
            return self.close_conn(link, ring, conn);
        }
        if let Some(tls) = &mut c.tls {
            let _ = tls.peer_closed();
            let mut plain = Vec::new();
            tls.read_plaintext(&mut plain);
            c.stash.extend_from_slice(&plain);
        }
        // Feed what is stashed first (the end of a close-delimited body), then the close.
        if !c.stash.is_empty() {
            let taken = c.client.receive(&c.stash, now);
            c.stash.drain(..taken);
        }
        if c.stash.is_empty() {
            c.client.peer_closed(now);
        }
        self.collect_events(link, ring, conn, now);
    }

    /// Moves the codec's events into the exchange's progress, while the consumer has room: the
    /// head, and one body piece at a time.
    fn collect_events(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(id) = c.exchange else { return };
        let Some(e) = self.exchanges.get_mut(&id) else { return };
        let mut ended = None;
        let mut upgraded = false;
        while e.progress.iter().filter(|p| matches!(p, Progress::Chunk(_))).count() < 1 {
            let Some(event) = c.client.poll_event() else { break };
            match event {
                ClientEvent::Head(head) => {
                    let headers = head.headers().map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec())).collect();
                    e.progress.push_back(Progress::Head(ResponseMeta {
                        status: head.status(),
                        reason: head.reason().to_string(),
                        headers,
                        length: head.body_length(),
                    }));
                    e.saw_head = true;
                }
                ClientEvent::Body(bytes) => e.progress.push_back(Progress::Chunk(bytes)),
                ClientEvent::End { reusable } => {
                    e.progress.push_back(Progress::End);
                    ended = Some(reusable);
                    break;
                }
                ClientEvent::Upgraded => {
                    // The codec allows a 101 only to a request that asked to upgrade; the
                    // caller checks the handshake's fields and then owns the WebSocket.
                    e.progress.push_back(Progress::Upgraded(conn));
                    e.stage = Stage::Done;
                    c.exchange = None;
                    c.ws = Some(Box::new(WsEndpoint::new(WsRole::Client, WsLimits::default())));
                    upgraded = true;
                    break;
                }
                ClientEvent::Failed(error) => {
                    e.progress.push_back(Progress::Failed(FetchError::Response(error.to_string())));
                    ended = Some(false);
                    break;
                }
            }
        }
        if !e.progress.is_empty() {
            self.ready.push(id);
        }
        if upgraded {
            return self.pump_ws(link, ring, conn, now);
        }
        if let Some(reusable) = ended {
            e.stage = Stage::Done;
            c.exchange = None;
            let keep = reusable && c.client.state() == ClientState::Idle && c.stash.is_empty();
            if keep {
                let origin = c.origin.clone();
                match self.pool.put(origin, conn, now) {
                    Put::Kept { id: idle, evicted } => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.idle = Some(idle);
                        }
                        if let Some(evicted) = evicted {
                            self.close_conn(link, ring, evicted);
                        }
                    }
                    Put::Refused(conn) => self.close_conn(link, ring, conn),
                }
            } else {
                self.close_conn(link, ring, conn);
            }
        }
    }

    /// The next piece of exchange `id`'s progress, if one is ready. Pulling makes room, so more
    /// is read from the origin.
    pub fn next_progress(
        &mut self,
        link: &mut Link,
        ring: &mut Ring,
        id: ExchangeId,
        now: Instant,
    ) -> Option<Progress> {
        let e = self.exchanges.get_mut(&id)?;
        let next = e.progress.pop_front();
        let finished = matches!(next, Some(Progress::End | Progress::Failed(_) | Progress::Upgraded(_)));
        if finished {
            self.exchanges.remove(&id);
            return next;
        }
        if let Stage::Active { conn } = e.stage {
            self.pump(link, ring, conn, now);
        }
        next
    }

    /// Hands over request body bytes of a streamed upload; returns how many were taken (the rest
    /// waits: call again when [`Self::take_ready`] names the exchange).
    pub fn write_body(&mut self, link: &mut Link, ring: &mut Ring, id: ExchangeId, data: &[u8], now: Instant) -> usize {
        let Some(e) = self.exchanges.get_mut(&id) else { return 0 };
        if e.upload_finished {
            return 0;
        }
        let room = self.config.limits.upload_buffer_bytes_max.saturating_sub(e.upload.len());
        let taken = room.min(data.len());
        e.upload.extend_from_slice(&data[..taken]);
        if let Stage::Active { conn } = e.stage {
            self.pump(link, ring, conn, now);
        }
        taken
    }

    /// The streamed upload is complete.
    pub fn finish_body(&mut self, link: &mut Link, ring: &mut Ring, id: ExchangeId, now: Instant) {
        let Some(e) = self.exchanges.get_mut(&id) else { return };
        e.upload_finished = true;
        if let Stage::Active { conn } = e.stage {
            self.pump(link, ring, conn, now);
        }
    }

    /// Bytes of a streamed upload still waiting in isobar.
    pub fn upload_pending(&self, id: ExchangeId) -> usize {
        self.exchanges.get(&id).map_or(0, |e| e.upload.len())
    }

    /// Gives up on exchange `id` (the consumer went away, the request was aborted): its
    /// connection, if it had one, is closed (it cannot be reused mid-exchange).
    pub fn cancel(&mut self, link: &mut Link, ring: &mut Ring, id: ExchangeId) {
        let Some(e) = self.exchanges.remove(&id) else { return };
        match e.stage {
            Stage::Resolving(lookup) => self.dns.cancel(lookup),
            Stage::Connecting { conn, .. } | Stage::Active { conn } => self.close_conn(link, ring, conn),
            Stage::Done => {}
        }
    }

    /// Exchanges with something new for their consumer since the last call.
    pub fn take_ready(&mut self, out: &mut Vec<ExchangeId>) {
        self.ready.sort_unstable();
        self.ready.dedup();
        out.append(&mut self.ready);
    }

    fn fail(&mut self, id: ExchangeId, error: FetchError) {
        if let Some(e) = self.exchanges.get_mut(&id) {
            self.stats.failures += 1;
            e.stage = Stage::Done;
            e.progress.push_back(Progress::Failed(error));
            self.ready.push(id);
        }
    }

    /// The connection broke: its exchange fails (with `error(addr)`) and it is closed.
    fn fail_conn(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, error: impl Fn(SocketAddr) -> FetchError) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if let Some(id) = c.exchange.take() {
            let addr = match self.exchanges.get(&id).map(|e| &e.stage) {
                Some(Stage::Connecting { addr, .. }) => *addr,
                _ => SocketAddr::from(([0, 0, 0, 0], 0)),
            };
            self.fail(id, error(addr));
        }
        self.close_conn(link, ring, conn);
    }

    fn close_conn(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            if let Some(idle) = c.idle {
                self.pool.remove(idle);
            }
            if let Some(ws) = &mut c.ws {
                let mut updates = Vec::new();
                ws.gone(&mut updates);
                self.ws_updates.extend(updates.into_iter().map(|update| (conn, update)));
            }
            link.abort(ring, conn);
        }
    }

    /// Moves everything that can move on a WebSocket connection: stashed input into the
    /// protocol, its messages out, its output (through TLS) onto the wire, and the end.
    fn pump_ws(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(ws) = c.ws.as_deref_mut() else { return };
        let mut updates = Vec::new();
        // Each pass takes input or leaves; the stash is bounded by the pause below.
        for _ in 0..64 {
            ws.poll(now, &mut updates);
            if c.stash.is_empty() || !ws.wants_read() {
                break;
            }
            let taken = ws.receive(&c.stash);
            c.stash.drain(..taken);
            if taken == 0 {
                break;
            }
        }
        let late = ws.late(now);
        if link.queued_bytes(conn) == 0 && !late {
            let mut out = Vec::new();
            match &mut c.tls {
                Some(tls) => {
                    ws.take_output(&mut c.plain_out);
                    if !c.plain_out.is_empty() {
                        let taken = tls.write_plaintext(&c.plain_out).unwrap_or(0);
                        c.plain_out.drain(..taken);
                    }
                    tls.take_ciphertext(&mut out);
                }
                None => ws.take_output(&mut out),
            }
            if !out.is_empty() && link.send_owned(ring, conn, out).is_err() {
                ws.gone(&mut updates);
            }
        }
        let over = ws.is_over() && link.queued_bytes(conn) == 0 && c.plain_out.is_empty();
        let should_pause = !c.stash.is_empty() || !c.cipher_stash.is_empty();
        if should_pause != c.recv_paused {
            c.recv_paused = should_pause;
            if should_pause {
                link.pause_recv(ring, conn);
            } else {
                link.resume_recv(ring, conn);
            }
        }
        self.ws_updates.extend(updates.into_iter().map(|update| (conn, update)));
        if late || over {
            self.close_conn(link, ring, conn);
        }
    }

    /// Sends a message on WebSocket connection `conn` (see [`WsEndpoint::send`]).
    pub fn ws_send(
        &mut self,
        link: &mut Link,
        ring: &mut Ring,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), WsError> {
        let ws = self.conns.get_mut(&conn).and_then(|c| c.ws.as_deref_mut()).ok_or(WsError::Closed)?;
        ws.send(message)?;
        self.pump_ws(link, ring, conn, now);
        Ok(())
    }

    /// Starts the close handshake of WebSocket connection `conn`.
    pub fn ws_close(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId, code: u16, reason: &str, now: Instant) {
        let Some(ws) = self.conns.get_mut(&conn).and_then(|c| c.ws.as_deref_mut()) else { return };
        ws.close(code, reason, now);
        self.pump_ws(link, ring, conn, now);
    }

    /// Drops WebSocket connection `conn` at once (its isolate went away).
    pub fn ws_abort(&mut self, link: &mut Link, ring: &mut Ring, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ws = None;
        }
        self.close_conn(link, ring, conn);
    }

    /// Moves what happened on WebSocket connections since the last call into `out`.
    pub fn take_ws_updates(&mut self, out: &mut Vec<(ConnId, WsUpdate)>) {
        out.append(&mut self.ws_updates);
    }

    /// When [`Self::poll`] next has work.
    pub fn poll_at(&self) -> Option<Instant> {
        let connect = self
            .exchanges
            .values()
            .filter_map(|e| match e.stage {
                Stage::Connecting { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min();
        let codecs = self.conns.values().filter(|c| c.exchange.is_some()).filter_map(|c| c.client.poll_at()).min();
        let sockets = self.conns.values().filter_map(|c| c.ws.as_ref()?.deadline()).min();
        [connect, codecs, sockets, self.dns.poll_at(), self.pool.poll_at()].into_iter().flatten().min()
    }

    /// Timeouts due at `now`: DNS retries, connects, the codecs' head and body timeouts, idle
    /// connections.
    pub fn poll(&mut self, link: &mut Link, ring: &mut Ring, now: Instant) {
        self.dns.poll(ring, now);
        self.collect_dns(link, ring, now);
        let late: Vec<(ConnId, SocketAddr)> = self
            .exchanges
            .values()
            .filter_map(|e| match e.stage {
                Stage::Connecting { conn, addr, deadline } if deadline <= now => Some((conn, addr)),
                _ => None,
            })
            .collect();
        for (conn, addr) in late {
            self.fail_conn(link, ring, conn, |_| FetchError::ConnectTimeout(addr));
        }
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.exchange.is_some() && c.client.poll_at().is_some_and(|at| at <= now))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in due {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.client.poll(now);
            }
            self.collect_events(link, ring, conn, now);
        }
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ws.as_ref().is_some_and(|ws| ws.late(now)))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in late {
            self.pump_ws(link, ring, conn, now);
        }
        let mut expired = Vec::new();
        self.pool.expire(now, &mut expired);
        for conn in expired {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.idle = None;
            }
            self.close_conn(link, ring, conn);
        }
    }

    /// Closes every connection (the core is draining).
    pub fn shutdown(&mut self, link: &mut Link, ring: &mut Ring) {
        let ids: Vec<ExchangeId> = self.exchanges.keys().copied().collect();
        for id in ids {
            self.cancel(link, ring, id);
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close_conn(link, ring, conn);
        }
    }
}
