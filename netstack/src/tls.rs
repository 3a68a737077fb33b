//! TLS, sans-IO: thin wrappers over rustls for `https://` fetches (client) and TLS termination
//! (server), plus the configurations they need.
//!
//! A [`TlsSession`] takes ciphertext in and gives plaintext out, and the reverse, with no socket
//! and no clock (rustls reads the system time only to check certificate validity, through its
//! crypto provider), so it sits between the core's ring (or smoltcp) and the HTTP codecs.
//! Every buffer is bounded: rustls keeps at most [`TlsLimits::pending_bytes_max`] of outgoing
//! data and at most 16 KiB of decrypted data the caller has not read, and `receive` stops
//! consuming rather than grow either. Errors are values ([`TlsError`]); a garbage ClientHello or
//! a broken record fails that session and nothing else.
//!
//! Configurations: [`client_config`] trusts the system's CA bundle plus extra CAs (PEM), and
//! [`LazyClientConfig`] builds it on first use;
//! [`server_config`] serves several certificates, picked by the SNI name of each ClientHello
//! (exact names, then `*.` wildcards, then the first certificate for clients that send no
//! name), with ALPN `http/1.1`. The `load_*` functions read the PEM files (through
//! `kernel-shim`, bounded) and build a new configuration to swap in: that is a SIGHUP reload;
//! sessions in progress keep the configuration they started with. What it must not do: touch a
//! socket, or accept a certificate rustls's verifier did not.
//!
//! Why rustls with ring: a memory-safe TLS 1.2/1.3 stack whose connection types are already
//! sans-IO (`read_tls`/`process_new_packets`/`write_tls`); ring builds with a C compiler only,
//! where aws-lc-rs would need cmake.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConnection, Connection, RootCertStore, ServerConnection};
// The configurations callers hold (built here, passed back to the sessions).
pub use rustls::{ClientConfig, ServerConfig};

/// rustls's server configuration as [`server_config`] builds it: what a reload hands to the
/// cores (named here so that they need not depend on rustls).
pub type TlsServerConfig = ServerConfig;

/// Debian's (and most distributions') bundle of the system's trusted CAs.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The one application protocol both sides speak (RFC 7301).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A PEM file larger than this is refused: a CA bundle is a few hundred KiB.
pub const PEM_FILE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why a TLS configuration could not be built. The operator's files are at fault; the message
/// names which.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum TlsConfigError {
    /// could not read {path}: {error}
    Read { path: PathBuf, error: std::io::Error },
    /// {source_name} is not valid PEM: {error}
    Pem { source_name: String, error: rustls::pki_types::pem::Error },
    /// {source_name} holds no certificate
    NoCertificate { source_name: String },
    /// {source_name} holds no private key (PKCS#8, PKCS#1 or SEC1)
    NoPrivateKey { source_name: String },
    /// {source_name}: the certificate names no DNS name (subjectAltName) to be selected by
    NoNames { source_name: String },
    /// {source_name}: {error}
    Rustls { source_name: String, error: rustls::Error },
    /// no trusted CA certificate: the CA bundle and the extra CA files gave none
    NoRoots,
    /// no certificate and key were given
    NoCertificates,
}

impl TlsConfigError {
    /// The file (or other source) the error is about, as named in the [`CertKeyPem`] or the
    /// path read; `None` for errors about the whole configuration.
    pub fn source_name(&self) -> Option<String> {
        match self {
            TlsConfigError::Read { path, .. } => Some(path.display().to_string()),
            TlsConfigError::Pem { source_name, .. }
            | TlsConfigError::NoCertificate { source_name }
            | TlsConfigError::NoPrivateKey { source_name }
            | TlsConfigError::NoNames { source_name }
            | TlsConfigError::Rustls { source_name, .. } => Some(source_name.clone()),
            TlsConfigError::NoRoots | TlsConfigError::NoCertificates => None,
        }
    }
}

/// Why a session failed. The session is over: take its ciphertext (an alert may be queued for
/// the peer), then close the connection.
#[derive(Debug, Clone, PartialEq, thiserror::Error, displaydoc::Display)]
pub enum TlsError {
    /// TLS handshake failed: {0}
    Handshake(rustls::Error),
    /// TLS record layer failed: {0}
    Protocol(rustls::Error),
    /// the peer closed the connection without close_notify: what it sent may be truncated
    Truncated,
    /// not a valid TLS server name: {0}
    InvalidServerName(String),
}

/// Bounds on one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsLimits {
    /// Outgoing bytes rustls may hold (plaintext not yet encrypted plus records not yet taken):
    /// `write_plaintext` takes no more than fits.
    pub pending_bytes_max: usize,
}

impl Default for TlsLimits {
    fn default() -> Self {
        Self { pending_bytes_max: 64 * 1024 }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------- configurations

/// Where the client's trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The system bundle ([`SYSTEM_CA_BUNDLE`] by default); `None` trusts only `extra_cas`.
    pub ca_bundle: Option<PathBuf>,
    /// CAs named in the configuration (an internal CA, a test CA).
    pub extra_cas: Vec<PathBuf>,
}

impl Default for ClientTlsFiles {
    fn default() -> Self {
        Self { ca_bundle: Some(PathBuf::from(SYSTEM_CA_BUNDLE)), extra_cas: Vec::new() }
    }
}

/// A certificate chain (leaf first) and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyFiles {
    pub cert_chain: PathBuf,
    pub key: PathBuf,
}

/// A certificate chain and key as PEM bytes, with names for messages (the file paths, say).
#[derive(Debug, Clone, Copy)]
pub struct CertKeyPem<'a> {
    /// Names the certificate chain (and the pair, in errors about both).
    pub source_name: &'a str,
    /// Names the key.
    pub key_source_name: &'a str,
    pub cert_chain: &'a [u8],
    pub key: &'a [u8],
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    kernel_shim::file::read_bounded(path, PEM_FILE_BYTES_MAX)
        .map_err(|error| TlsConfigError::Read { path: path.to_owned(), error })
}

/// Reads the CA files and builds the client configuration (control thread: it reads files).
pub fn load_client_config(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let sources = read_ca_files(files)?;
    client_config(&borrowed(&sources))
}

fn read_ca_files(files: &ClientTlsFiles) -> Result<Vec<(String, Vec<u8>)>, TlsConfigError> {
    let mut sources = Vec::new();
    for path in files.ca_bundle.iter().chain(&files.extra_cas) {
        sources.push((path.display().to_string(), read_pem(path)?));
    }
    Ok(sources)
}

fn borrowed(sources: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    sources.iter().map(|(name, pem)| (name.as_str(), pem.as_slice())).collect()
}

/// The client configuration for `https:` subrequests, built on first use: parsing the system's
/// CA bundle (~150 certificates) was a millisecond of every start-up, for a process that may
/// never fetch over TLS. The files are read when it is made (the cores read no files) and the
/// extra CAs an operator gave are checked then, so a wrong `--ca-file` still stops the start;
/// the bundle is parsed by the first core that needs it, once for the process. If that fails,
/// each `https:` subrequest fails with the reason.
pub struct LazyClientConfig {
    sources: Vec<(String, Vec<u8>)>,
    built: std::sync::OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl LazyClientConfig {
    /// Reads `files` and checks the extra CAs among them (control thread: it reads files).
    pub fn read(files: &ClientTlsFiles) -> Result<LazyClientConfig, TlsConfigError> {
        let sources = read_ca_files(files)?;
        let extra = &sources[usize::from(files.ca_bundle.is_some())..];
        if !extra.is_empty() {
            client_config(&borrowed(extra))?;
        }
        Ok(LazyClientConfig { sources, built: std::sync::OnceLock::new() })
    }

    /// A configuration already built.
    pub fn built(config: Arc<ClientConfig>) -> LazyClientConfig {
        LazyClientConfig { sources: Vec::new(), built: std::sync::OnceLock::from(Ok(config)) }
    }

    /// The configuration, built now if this is its first use.
    pub fn get(&self) -> Result<Arc<ClientConfig>, &str> {
        let built = self.built.get_or_init(|| client_config(&borrowed(&self.sources)).map_err(|e| e.to_string()));
        built.as_ref().map(Arc::clone).map_err(String::as_str)
    }
}

impl std::fmt::Debug for LazyClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyClientConfig").field("built", &self.built.get().is_some()).finish_non_exhaustive()
    }
}

/// A client configuration trusting every CA certificate in the PEM `sources` (name, bytes):
/// TLS 1.2 and 1.3, ALPN `http/1.1`, server certificates verified by rustls's WebPKI verifier
/// (chain, validity, name). Certificates in a bundle that rustls cannot use are skipped, as
/// system bundles hold a few; a source that is not PEM at all is an error.
pub fn client_config(sources: &[(&str, &[u8])]) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for (source_name, pem) in sources {
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem) {
            certs.push(cert.map_err(|error| TlsConfigError::Pem { source_name: source_name.to_string(), error })?);
        }
        if certs.is_empty() {
            return Err(TlsConfigError::NoCertificate { source_name: source_name.to_string() });
        }
        let (added, skipped) = roots.add_parsable_certificates(certs);
        if skipped > 0 {
            tracing::debug!(source = source_name, added, skipped, "tls: skipped unusable CA certificates");
        }
    }
    if roots.is_empty() {
        return Err(TlsConfigError::NoRoots);
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsConfigError::Rustls { source_name: "client configuration".into(), error })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Reads the certificate and key files and builds the server configuration (control thread: it
/// reads files). Call it again on SIGHUP and hand the new configuration to new sessions.
pub fn load_server_config(files: &[CertKeyFiles]) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut loaded = Vec::new();
    for pair in files {
        let names = (pair.cert_chain.display().to_string(), pair.key.display().to_string());
        loaded.push((names, read_pem(&pair.cert_chain)?, read_pem(&pair.key)?));
    }
    let pems: Vec<CertKeyPem<'_>> = loaded
        .iter()
        .map(|((source_name, key_source_name), cert_chain, key)| CertKeyPem {
            source_name,
            key_source_name,
            cert_chain,
            key,
        })
        .collect();
    server_config(&pems)
}

/// A server configuration serving `pairs`, each selected by the DNS names in its certificate
/// (see the module documentation); the first pair also answers clients that send no SNI.
/// TLS 1.2 and 1.3, no client certificates, ALPN `http/1.1` (a client offering only other
/// protocols is refused, RFC 7301 §3.2).
pub fn server_config(pairs: &[CertKeyPem<'_>]) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = provider();
    let mut resolver = SniResolver::default();
    for pair in pairs {
        let source_name = pair.source_name.to_string();
        let certified = certified_key(pair, &provider)?;
        let names = dns_names(&certified, &source_name)?;
        resolver.add(names, Arc::new(certified));
    }
    if resolver.default.is_none() {
        return Err(TlsConfigError::NoCertificates);
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsConfigError::Rustls { source_name: "server configuration".into(), error })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

fn certified_key(pair: &CertKeyPem<'_>, provider: &CryptoProvider) -> Result<CertifiedKey, TlsConfigError> {
    let source_name = || pair.source_name.to_string();
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pair.cert_chain) {
        chain.push(cert.map_err(|error| TlsConfigError::Pem { source_name: source_name(), error })?);
    }
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate { source_name: source_name() });
    }
    let key_source_name = || pair.key_source_name.to_string();
    let key = PrivateKeyDer::from_pem_slice(pair.key).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey { source_name: key_source_name() },
        error => TlsConfigError::Pem { source_name: key_source_name(), error },
    })?;
    // Checks that the key is usable and matches the leaf certificate.
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| TlsConfigError::Rustls { source_name: source_name(), error })
}

/// The DNS names of the leaf certificate's subjectAltName, lowercased: only for selecting a
/// certificate; the client verifies it.
fn dns_names(certified: &CertifiedKey, source_name: &str) -> Result<Vec<String>, TlsConfigError> {
    let leaf = certified
        .end_entity_cert()
        .map_err(|error| TlsConfigError::Rustls { source_name: source_name.to_owned(), error })?;
    let parsed = webpki::EndEntityCert::try_from(leaf).map_err(|error| TlsConfigError::Rustls {
        source_name: source_name.to_owned(),
        error: rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(error)))),
    })?;
    let names: Vec<String> = parsed.valid_dns_names().map(str::to_ascii_lowercase).collect();
    if names.is_empty() {
        return Err(TlsConfigError::NoNames { source_name: source_name.to_owned() });
    }
    Ok(names)
}

/// Picks the certificate for a ClientHello by its SNI name.
#[derive(Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// The first certificate, for clients that send no name (an IP-address URL).
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// The first certificate to claim a name keeps it: the operator's order decides.
    fn add(&mut self, names: Vec<String>, certified: Arc<CertifiedKey>) {
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => self.wildcard.entry(parent.to_owned()).or_insert_with(|| certified.clone()),
                None => self.exact.entry(name).or_insert_with(|| certified.clone()),
            };
        }
        self.default.get_or_insert(certified);
    }

    fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(found) = self.exact.get(&name) {
            return Some(found.clone());
        }
        // A wildcard covers exactly one label (RFC 6125 §6.4.3).
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    /// An SNI name no certificate covers gets none: the handshake fails, rather than show a
    /// certificate for other names.
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(client_hello.server_name())
    }
}

// ---------------------------------------------------------------- sessions

/// One TLS connection, client or server side. The caller's loop:
/// 1. ciphertext arrives: `n = session.receive(&bytes)?`; keep `bytes[n..]` and offer it
///    again after reading the plaintext (back-pressure);
/// 2. [`Self::read_plaintext`] into the HTTP codec;
/// 3. the codec's output goes in through [`Self::write_plaintext`] (it takes what fits);
/// 4. [`Self::take_ciphertext`] and send it (handshake records, alerts and data alike);
/// 5. at the peer's EOF, [`Self::peer_closed`]; to end, [`Self::close`] then take and send.
#[derive(Debug)]
pub struct TlsSession {
    conn: Connection,
    failed: Option<TlsError>,
    /// The peer's close_notify arrived.
    peer_closed_cleanly: bool,
}

impl TlsSession {
    /// A client session to `server_name` (a DNS name, or an IP address, which is then checked
    /// against the certificate's IP addresses and sent as no SNI).
    pub fn client(config: Arc<ClientConfig>, server_name: &str, limits: TlsLimits) -> Result<Self, TlsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::InvalidServerName(server_name.to_owned()))?;
        let conn = ClientConnection::new(config, name).map_err(TlsError::Handshake)?;
        Ok(Self::new(Connection::Client(conn), limits))
    }

    /// A server session for an accepted connection.
    pub fn server(config: Arc<ServerConfig>, limits: TlsLimits) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config).map_err(TlsError::Handshake)?;
        Ok(Self::new(Connection::Server(conn), limits))
    }

    fn new(mut conn: Connection, limits: TlsLimits) -> Self {
        conn.set_buffer_limit(Some(limits.pending_bytes_max.max(1024)));
        Self { conn, failed: None, peer_closed_cleanly: false }
    }

    /// Feeds ciphertext from the peer and returns how many bytes were consumed. Fewer than
    /// offered when the decrypted data waiting to be read is at its bound: read it, then offer
    /// the rest again. After an error, input is discarded.
    pub fn receive(&mut self, ciphertext: &[u8]) -> Result<usize, TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let mut rest = ciphertext;
        // Each pass consumes bytes or leaves.
        for _ in 0..=ciphertext.len() {
            if rest.is_empty() {
                break;
            }
            match self.conn.read_tls(&mut rest) {
                // After the peer's close_notify nothing more is read: the rest is discarded.
                Ok(0) => {
                    rest = &[];
                    break;
                }
                Ok(_) => {}
                // rustls's way to say a buffer is full. With plaintext waiting, that is
                // back-pressure; without, nothing would ever drain it, so it is an error.
                Err(_) => match self.process() {
                    Err(error) => return Err(error),
                    Ok(plaintext_waiting) if plaintext_waiting > 0 => break,
                    Ok(_) => return Err(self.fail(rustls::Error::General("TLS input buffer full".into()))),
                },
            }
            self.process()?;
        }
        Ok(ciphertext.len() - rest.len())
    }

    /// The peer closed the connection (EOF). Without a close_notify first, [`TlsError::Truncated`]:
    /// whether that matters depends on the framing above (a complete HTTP message does not
    /// care; a close-delimited body does).
    pub fn peer_closed(&mut self) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.peer_closed_cleanly {
            return Ok(());
        }
        let _ = self.conn.read_tls(&mut &[][..]);
        let error = TlsError::Truncated;
        self.failed = Some(error.clone());
        Err(error)
    }

    /// Moves the decrypted bytes waiting into `out` and returns how many.
    pub fn read_plaintext(&mut self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let mut chunk = [0u8; 4096];
        // rustls holds at most 16 KiB of plaintext; each pass takes some or ends.
        for _ in 0..64 {
            match self.conn.reader().read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
        out.len() - start
    }

    /// Offers plaintext to send and returns how many bytes were taken: what fits under
    /// `pending_bytes_max` (during the handshake it waits in rustls, then goes out encrypted).
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        // rustls's writer only accepts and buffers; it never fails for lack of a socket.
        Ok(self.conn.writer().write(data).unwrap_or(0))
    }

    /// Moves the ciphertext waiting to be sent into `out` (appended).
    pub fn take_ciphertext(&mut self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail; each pass moves at least one queued record.
        for _ in 0..1024 {
            if !self.conn.wants_write() {
                break;
            }
            if self.conn.write_tls(out).unwrap_or(0) == 0 {
                break;
            }
        }
    }

    /// Whether ciphertext waits to be taken.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether the caller should read from the socket: the session has not failed or been
    /// closed by the peer, and decrypted data is not piling up unread.
    pub fn wants_read(&self) -> bool {
        self.failed.is_none() && self.conn.wants_read()
    }

    /// Queues a close_notify; take the ciphertext and send it, then close the connection.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent close_notify: everything it sent arrived.
    pub fn peer_has_closed(&self) -> bool {
        self.peer_closed_cleanly
    }

    /// The protocol agreed by ALPN, once the handshake has got that far.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The SNI name the client asked for (server side).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(server) => server.server_name(),
            Connection::Client(_) => None,
        }
    }

    pub fn error(&self) -> Option<&TlsError> {
        self.failed.as_ref()
    }

    /// Lets rustls process what it has read; returns the plaintext bytes waiting.
    fn process(&mut self) -> Result<usize, TlsError> {
        match self.conn.process_new_packets() {
            Ok(io) => {
                self.peer_closed_cleanly |= io.peer_has_closed();
                Ok(io.plaintext_bytes_to_read())
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    fn fail(&mut self, error: rustls::Error) -> TlsError {
        let error = if self.conn.is_handshaking() { TlsError::Handshake(error) } else { TlsError::Protocol(error) };
        tracing::debug!(%error, "tls: session failed");
        self.failed = Some(error.clone());
        error
    }
}

#[cfg(test)]
mod tests;
