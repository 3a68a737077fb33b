//! TLS termination in the per-core HTTP server: one [`TlsSession`] per connection accepted on
//! the HTTPS port, between the transport and the HTTP codec. Ciphertext from the transport goes
//! into the session and the decrypted bytes into the codec; the codec's output goes into the
//! session and the records it makes go to the transport. This module owns the bytes waiting
//! between the two, the handshake deadline and close_notify. It must not touch a socket, read a
//! clock (time is passed in), or know what a request means: the server calls it, and the codec
//! above it is the same as on a plain connection.
//!
//! Bounds and back-pressure. rustls holds at most 16 KiB of decrypted bytes not yet read and
//! refuses ciphertext beyond that ([`TlsSession::receive`] then takes less than offered); this
//! layer reads them out only to hand them to the codec, and asks for more ciphertext only once
//! the codec took every byte, so what waits here (`plaintext_in`) is at most what rustls held.
//! Ciphertext the session did not take stays in the server's stash, which pauses reading, as on
//! a plain connection. Outgoing, the codec's output is taken only once the previous output went
//! into the session (which holds at most [`TlsLimits::pending_bytes_max`]), and records are sent
//! in buffers of at most [`SEND_BYTES_MAX`]; a client that does not read leaves the output in
//! the codec, whose backlog bound stops it reading requests: the same bound as without TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use super::{ServerStats, Upper};
use crate::tls::{TlsError, TlsLimits, TlsSession};

/// How long a client may take from its connection to the end of its handshake by default.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The most ciphertext handed to the transport in one buffer: big enough to keep a large
/// response moving (a record is at most 16 KiB), small enough that one slow client never makes
/// the server hold much more than its codec's backlog.
const SEND_BYTES_MAX: usize = 256 * 1024;

/// A plaintext buffer larger than this is freed once empty rather than kept for the next
/// response, so an idle connection does not pin the memory of its largest response.
const SPARE_BYTES_MAX: usize = 64 * 1024;

/// How the server terminates TLS: on which port, with which certificates, within which time.
#[derive(Clone)]
pub struct ServerTls {
    /// Connections accepted on this port speak TLS; the others plain HTTP.
    pub port: u16,
    /// Certificates picked by SNI, ALPN `http/1.1`, TLS 1.2 and 1.3 ([`crate::tls::server_config`]).
    /// Replacing it (a reload) applies to new connections; those open keep the one they began with.
    pub config: Arc<ServerConfig>,
    /// A client that has not finished its handshake this long after it connected is closed.
    pub handshake_timeout: Duration,
    pub limits: TlsLimits,
}

impl ServerTls {
    /// TLS on `port` with `config`, the default handshake timeout and limits.
    pub fn new(port: u16, config: Arc<ServerConfig>) -> ServerTls {
        ServerTls { port, config, handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT, limits: TlsLimits::default() }
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("port", &self.port)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The TLS side of one connection.
#[derive(Debug)]
pub(super) struct TlsConn {
    session: TlsSession,
    /// Decrypted bytes the codec has not taken yet (it was back-pressured).
    plaintext_in: Vec<u8>,
    /// The codec's output not yet taken by the session: `plaintext_out[plaintext_out_at..]`.
    plaintext_out: Vec<u8>,
    plaintext_out_at: usize,
    handshake_deadline: Instant,
    /// The handshake completed (and was counted).
    established: bool,
    /// The peer's close_notify was passed to the codec as its end of stream.
    eof_delivered: bool,
    close_notify_sent: bool,
    /// The session failed (counted); only its alert is left to send.
    failed: bool,
}

impl TlsConn {
    /// The TLS side of a connection accepted at `now`.
    pub(super) fn new(settings: &ServerTls, now: Instant) -> Result<TlsConn, TlsError> {
        let session = TlsSession::server(settings.config.clone(), settings.limits)?;
        Ok(TlsConn {
            session,
            plaintext_in: Vec::new(),
            plaintext_out: Vec::new(),
            plaintext_out_at: 0,
            handshake_deadline: now.checked_add(settings.handshake_timeout).unwrap_or(now),
            established: false,
            eof_delivered: false,
            close_notify_sent: false,
            failed: false,
        })
    }

    /// Takes ciphertext from the peer and gives what it decrypts to `codec`. Returns how many
    /// bytes were taken: all of them unless the codec stopped taking plaintext (back-pressure;
    /// offer the rest again later). After a failure, input is discarded (reported taken).
    pub(super) fn receive(
        &mut self,
        codec: &mut impl Upper,
        ciphertext: &[u8],
        now: Instant,
        stats: &mut ServerStats,
    ) -> usize {
        if self.failed {
            return ciphertext.len();
        }
        let mut taken = 0;
        // Each pass takes ciphertext, reads plaintext, or leaves; plaintext comes only from
        // ciphertext taken, so twice the input bounds the passes.
        for _ in 0..=2 * ciphertext.len() + 1 {
            self.deliver(codec, now);
            if !self.plaintext_in.is_empty() || taken == ciphertext.len() {
                break;
            }
            match self.session.receive(&ciphertext[taken..]) {
                Ok(n) => {
                    taken += n;
                    if !self.established && !self.session.is_handshaking() {
                        self.established = true;
                        stats.tls_handshakes += 1;
                    }
                    let read = self.session.read_plaintext(&mut self.plaintext_in);
                    if n == 0 && read == 0 {
                        break;
                    }
                }
                Err(error) => {
                    self.fail(&error, stats);
                    return ciphertext.len();
                }
            }
        }
        self.deliver(codec, now);
        taken
    }

    /// Hands the decrypted bytes waiting to `codec`, and the peer's close_notify after them.
    pub(super) fn deliver(&mut self, codec: &mut impl Upper, now: Instant) {
        if !self.plaintext_in.is_empty() {
            let taken = codec.receive(&self.plaintext_in, now);
            self.plaintext_in.drain(..taken);
        }
        if self.plaintext_in.is_empty() && self.session.peer_has_closed() && !self.eof_delivered {
            self.eof_delivered = true;
            codec.peer_closed(now);
        }
    }

    /// The transport reported the peer's end of stream. Without a close_notify first, what the
    /// peer sent may be truncated; HTTP/1.1's own framing says whether a message is complete,
    /// so the codec just sees the end of stream.
    pub(super) fn peer_closed(&mut self, codec: &mut impl Upper, now: Instant) {
        let _ = self.session.peer_closed();
        self.eof_delivered = true;
        codec.peer_closed(now);
    }

    /// Moves the codec's output through the session and appends the records to send to `out`
    /// (with any handshake records or alert the session has queued), up to about
    /// [`SEND_BYTES_MAX`]; the rest waits in the codec.
    pub(super) fn take_output(&mut self, codec: &mut impl Upper, out: &mut Vec<u8>) {
        if self.failed {
            self.session.take_ciphertext(out);
            return;
        }
        // Each pass moves up to `pending_bytes_max` through the session or leaves.
        for _ in 0..=SEND_BYTES_MAX / 1024 {
            if self.plaintext_out_at == self.plaintext_out.len() {
                self.plaintext_out.clear();
                self.plaintext_out_at = 0;
                codec.take_output(&mut self.plaintext_out);
            }
            let pending = &self.plaintext_out[self.plaintext_out_at..];
            // The session fails only after an error in `receive`, which `failed` caught.
            let written = if pending.is_empty() { 0 } else { self.session.write_plaintext(pending).unwrap_or(0) };
            self.plaintext_out_at += written;
            self.session.take_ciphertext(out);
            if written == 0 || out.len() >= SEND_BYTES_MAX {
                break;
            }
        }
        if self.plaintext_out_at == self.plaintext_out.len() && self.plaintext_out.capacity() > SPARE_BYTES_MAX {
            self.plaintext_out = Vec::new();
            self.plaintext_out_at = 0;
        }
    }

    /// Whether output waits here or in the session (the connection is not flushed yet).
    pub(super) fn has_output(&self) -> bool {
        self.plaintext_out_at < self.plaintext_out.len() || self.session.wants_write()
    }

    /// Bytes waiting here: decrypted input for the codec, and codec output for the session.
    pub(super) fn held_bytes(&self) -> usize {
        self.plaintext_in.len() + self.plaintext_out.len() - self.plaintext_out_at
    }

    /// Queues close_notify (once) and appends it to `out`: the last bytes we send.
    pub(super) fn close(&mut self, out: &mut Vec<u8>) {
        if self.close_notify_sent || self.failed {
            return;
        }
        self.close_notify_sent = true;
        self.session.close();
        self.session.take_ciphertext(out);
    }

    /// When the handshake times out, while it is in progress.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.established && !self.failed).then_some(self.handshake_deadline)
    }

    /// The handshake is still in progress at `now`, past its deadline.
    pub(super) fn handshake_expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// The session failed: send what [`Self::take_output`] gives (the alert), then close.
    pub(super) fn failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self, error: &TlsError, stats: &mut ServerStats) {
        tracing::debug!(%error, "tls: closing the connection");
        self.failed = true;
        self.plaintext_in = Vec::new();
        self.plaintext_out = Vec::new();
        self.plaintext_out_at = 0;
        stats.tls_errors += 1;
    }
}
