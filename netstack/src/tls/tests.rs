//! Real handshakes between our client and server sessions, in memory and over loopback TCP,
//! with a CA and certificates made for each test by rcgen.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use proptest::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::*;

/// A test CA and the PEM of certificates it issued.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate chain and key as PEM text.
struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self { ca_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }

    fn client(&self) -> Arc<ClientConfig> {
        client_config(&[("test CA", self.ca_pem.as_bytes())]).unwrap()
    }
}

fn serving(leaves: &[&Leaf]) -> Arc<ServerConfig> {
    let pems: Vec<CertKeyPem<'_>> = leaves
        .iter()
        .map(|leaf| CertKeyPem {
            source_name: "test leaf",
            key_source_name: "test key",
            cert_chain: leaf.cert.as_bytes(),
            key: leaf.key.as_bytes(),
        })
        .collect();
    server_config(&pems).unwrap()
}

/// Moves ciphertext both ways until neither side has anything to say; returns the first error
/// of each side.
fn pump(client: &mut TlsSession, server: &mut TlsSession) -> (Option<TlsError>, Option<TlsError>) {
    let (mut client_error, mut server_error) = (None, None);
    for _ in 0..32 {
        let mut to_server = Vec::new();
        client.take_ciphertext(&mut to_server);
        let mut to_client = Vec::new();
        server.take_ciphertext(&mut to_client);
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
        if !to_server.is_empty()
            && let Err(error) = server.receive(&to_server)
        {
            server_error.get_or_insert(error);
        }
        if !to_client.is_empty()
            && let Err(error) = client.receive(&to_client)
        {
            client_error.get_or_insert(error);
        }
    }
    (client_error, server_error)
}

fn connect(client_config: Arc<ClientConfig>, name: &str, server_config: Arc<ServerConfig>) -> (TlsSession, TlsSession) {
    let client = TlsSession::client(client_config, name, TlsLimits::default()).unwrap();
    let server = TlsSession::server(server_config, TlsLimits::default()).unwrap();
    (client, server)
}

fn send_all(from: &mut TlsSession, data: &[u8]) {
    assert_eq!(from.write_plaintext(data).unwrap(), data.len());
}

#[test]
fn handshake_then_data_both_ways() {
    let pki = Pki::new("isobar test CA");
    let a = pki.leaf(&["a.test"]);
    let (mut client, mut server) = connect(pki.client(), "a.test", serving(&[&a]));
    // Written before the handshake: it waits, then goes out encrypted.
    send_all(&mut client, b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n");
    assert_eq!(pump(&mut client, &mut server), (None, None));
    assert!(!client.is_handshaking() && !server.is_handshaking());
    assert_eq!(client.alpn_protocol(), Some(ALPN_HTTP1));
    assert_eq!(server.alpn_protocol(), Some(ALPN_HTTP1));
    assert_eq!(server.server_name(), Some("a.test"));
    let mut got = Vec::new();
    server.read_plaintext(&mut got);
    assert_eq!(got, b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n");
    send_all(&mut server, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
    pump(&mut client, &mut server);
    let mut got = Vec::new();
    client.read_plaintext(&mut got);
    assert_eq!(got, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
    // A clean close: close_notify, then EOF is no truncation.
    client.close();
    pump(&mut client, &mut server);
    assert!(server.peer_has_closed());
    assert_eq!(server.peer_closed(), Ok(()));
}

#[test]
fn two_sni_names_get_two_certificates() {
    let pki = Pki::new("isobar test CA");
    let a = pki.leaf(&["a.test"]);
    let b = pki.leaf(&["b.test"]);
    let config = serving(&[&a, &b]);
    // Each client verifies the name against the certificate it got: b.test succeeds only if the
    // server picked b's certificate over the default (a's).
    for name in ["a.test", "b.test", "B.TEST"] {
        let (mut client, mut server) = connect(pki.client(), name, config.clone());
        assert_eq!(pump(&mut client, &mut server), (None, None), "{name}");
        assert!(!client.is_handshaking(), "{name}");
        assert_eq!(server.server_name().map(str::to_ascii_lowercase), Some(name.to_ascii_lowercase()));
    }
}

#[test]
fn wildcards_cover_one_label() {
    let pki = Pki::new("isobar test CA");
    let wild = pki.leaf(&["*.w.test"]);
    let config = serving(&[&wild]);
    let (mut client, mut server) = connect(pki.client(), "x.w.test", config.clone());
    assert_eq!(pump(&mut client, &mut server), (None, None));
    for name in ["w.test", "a.b.w.test"] {
        let (mut client, mut server) = connect(pki.client(), name, config.clone());
        let (client_error, server_error) = pump(&mut client, &mut server);
        assert!(matches!(server_error, Some(TlsError::Handshake(_))), "{name}: {server_error:?}");
        assert!(client_error.is_some(), "{name}");
    }
}

#[test]
fn a_name_no_certificate_covers_is_refused() {
    let pki = Pki::new("isobar test CA");
    let a = pki.leaf(&["a.test"]);
    let (mut client, mut server) = connect(pki.client(), "c.test", serving(&[&a]));
    let (client_error, server_error) = pump(&mut client, &mut server);
    // The server finds no certificate and aborts; the client hears an alert.
    assert!(matches!(server_error, Some(TlsError::Handshake(_))), "{server_error:?}");
    assert!(matches!(client_error, Some(TlsError::Handshake(rustls::Error::AlertReceived(_)))), "{client_error:?}");
    assert!(client.write_plaintext(b"x").is_err());
}

#[test]
fn the_client_refuses_a_certificate_for_another_name_or_from_another_ca() {
    let pki = Pki::new("isobar test CA");
    let a = pki.leaf(&["a.test"]);
    // No SNI (an IP address): the server shows its default certificate, which does not name it.
    let (mut client, mut server) = connect(pki.client(), "127.0.0.1", serving(&[&a]));
    let (client_error, _) = pump(&mut client, &mut server);
    assert!(
        matches!(
            client_error,
            Some(TlsError::Handshake(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            )))
        ),
        "{client_error:?}"
    );
    // Another CA's client does not trust it.
    let other = Pki::new("someone else's CA");
    let (mut client, mut server) = connect(other.client(), "a.test", serving(&[&a]));
    let (client_error, _) = pump(&mut client, &mut server);
    assert_eq!(
        client_error,
        Some(TlsError::Handshake(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)))
    );
}

#[test]
fn a_client_without_http1_in_alpn_is_refused() {
    let pki = Pki::new("isobar test CA");
    let a = pki.leaf(&["a.test"]);
    let mut h2_only = (*pki.client()).clone();
    h2_only.alpn_protocols = vec![b"h2".to_vec()];
    let (mut client, mut server) = connect(Arc::new(h2_only), "a.test", serving(&[&a]));
    let (_, server_error) = pump(&mut client, &mut server);
    assert_eq!(server_error, Some(TlsError::Handshake(rustls::Error::NoApplicationProtocol)));
}

#[test]
fn a_garbage_client_hello_fails_that_session_only() {
    let pki = Pki::new("isobar test CA");
    let config = serving(&[&pki.leaf(&["a.test"])]);
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
        b"\x16\x03\x01\xff\xff",
        &[0x17; 64],
    ] {
        let mut session = TlsSession::server(config.clone(), TlsLimits::default()).unwrap();
        let mut result = session.receive(garbage);
        if result.is_ok() {
            // A plausible record header waits for its body; the EOF settles it.
            result = session.peer_closed().map(|()| 0);
        }
        assert!(result.is_err(), "{garbage:?}");
        assert!(session.error().is_some());
        // Later input is refused with the same error; an alert may be queued for the peer.
        assert_eq!(session.receive(b"more").err().as_ref(), session.error());
        session.take_ciphertext(&mut Vec::new());
    }
    // The configuration still serves good clients.
    let (mut client, mut server) = connect(pki.client(), "a.test", config);
    assert_eq!(pump(&mut client, &mut server), (None, None));
}

#[test]
fn truncated_records_are_reported() {
    let pki = Pki::new("isobar test CA");
    let (mut client, mut server) = connect(pki.client(), "a.test", serving(&[&pki.leaf(&["a.test"])]));
    pump(&mut client, &mut server);
    send_all(&mut client, &[b'x'; 1000]);
    let mut record = Vec::new();
    client.take_ciphertext(&mut record);
    // Half a record: consumed (buffered), nothing to read yet.
    assert_eq!(server.receive(&record[..record.len() / 2]), Ok(record.len() / 2));
    assert_eq!(server.read_plaintext(&mut Vec::new()), 0);
    assert_eq!(server.peer_closed(), Err(TlsError::Truncated));
    assert_eq!(server.error(), Some(&TlsError::Truncated));
    // A whole record then EOF without close_notify: the data arrives, the EOF is still reported.
    let (mut client, mut server) = connect(pki.client(), "a.test", serving(&[&pki.leaf(&["a.test"])]));
    pump(&mut client, &mut server);
    send_all(&mut client, b"complete");
    pump(&mut client, &mut server);
    let mut got = Vec::new();
    server.read_plaintext(&mut got);
    assert_eq!(got, b"complete");
    assert_eq!(server.peer_closed(), Err(TlsError::Truncated));
    // A record tampered with in flight fails authentication.
    let (mut client, mut server) = connect(pki.client(), "a.test", serving(&[&pki.leaf(&["a.test"])]));
    pump(&mut client, &mut server);
    send_all(&mut client, b"secret");
    let mut record = Vec::new();
    client.take_ciphertext(&mut record);
    let last = record.len() - 1;
    record[last] ^= 1;
    assert_eq!(server.receive(&record), Err(TlsError::Protocol(rustls::Error::DecryptError)));
}

#[test]
fn buffers_are_bounded_and_apply_back_pressure() {
    let pki = Pki::new("isobar test CA");
    let (mut client, mut server) = connect(pki.client(), "a.test", serving(&[&pki.leaf(&["a.test"])]));
    pump(&mut client, &mut server);
    // The sender takes no more than its bound.
    let big = vec![7u8; 1 << 20];
    let taken = client.write_plaintext(&big).unwrap();
    assert!(taken <= TlsLimits::default().pending_bytes_max, "{taken}");
    assert!(taken > 0);
    assert_eq!(client.write_plaintext(&big[taken..]).unwrap(), 0, "full until the ciphertext is taken");
    let mut wire = Vec::new();
    client.take_ciphertext(&mut wire);
    // The receiver stops consuming while its plaintext is unread, and resumes once it is read.
    let consumed = server.receive(&wire).unwrap();
    assert!(consumed < wire.len(), "{consumed} of {}", wire.len());
    assert_eq!(server.receive(&wire[consumed..]), Ok(0));
    let mut got = Vec::new();
    let mut rest = &wire[consumed..];
    server.read_plaintext(&mut got);
    for _ in 0..1000 {
        if rest.is_empty() {
            break;
        }
        let n = server.receive(rest).unwrap();
        rest = &rest[n..];
        let read = server.read_plaintext(&mut got);
        assert!(n > 0 || read > 0, "no progress");
    }
    server.read_plaintext(&mut got);
    assert_eq!(got.len(), taken);
    assert!(got.iter().all(|&b| b == 7));
}

#[test]
fn configuration_errors_name_the_cause() {
    let pki = Pki::new("isobar test CA");
    let a = pki.leaf(&["a.test"]);
    let b = pki.leaf(&["b.test"]);
    let pem = |cert: &str, key: &str| {
        server_config(&[CertKeyPem {
            source_name: "x.pem",
            key_source_name: "x.key",
            cert_chain: cert.as_bytes(),
            key: key.as_bytes(),
        }])
    };
    assert!(matches!(pem("", &a.key), Err(TlsConfigError::NoCertificate { .. })));
    let no_key = pem(&a.cert, "").unwrap_err();
    assert!(matches!(no_key, TlsConfigError::NoPrivateKey { .. }));
    assert_eq!(no_key.source_name().as_deref(), Some("x.key"), "a key error names the key");
    assert!(matches!(pem(&a.cert, &a.cert), Err(TlsConfigError::NoPrivateKey { .. })));
    let mismatch = pem(&a.cert, &b.key).unwrap_err();
    assert!(matches!(mismatch, TlsConfigError::Rustls { error: rustls::Error::InconsistentKeys(_), .. }), "{mismatch}");
    assert!(mismatch.to_string().starts_with("x.pem: "), "{mismatch}");
    let broken = a.cert.replace("MII", "M!I");
    assert!(matches!(pem(&broken, &a.key), Err(TlsConfigError::Pem { .. })));
    let ip_only = pki.leaf(&["192.0.2.1"]);
    assert!(matches!(pem(&ip_only.cert, &ip_only.key), Err(TlsConfigError::NoNames { .. })));
    assert!(matches!(server_config(&[]), Err(TlsConfigError::NoCertificates)));
    assert!(matches!(client_config(&[]), Err(TlsConfigError::NoRoots)));
    assert!(matches!(client_config(&[("empty", b"")]), Err(TlsConfigError::NoCertificate { .. })));
    let error =
        load_client_config(&ClientTlsFiles { ca_bundle: Some("/nonexistent/ca.pem".into()), extra_cas: vec![] })
            .unwrap_err();
    assert!(error.to_string().starts_with("could not read /nonexistent/ca.pem:"), "{error}");
}

#[test]
fn the_system_bundle_loads_when_present() {
    // Debian's ca-certificates; a machine without it has nothing to load and says so.
    match load_client_config(&ClientTlsFiles::default()) {
        Ok(config) => assert_eq!(config.alpn_protocols, [ALPN_HTTP1.to_vec()]),
        Err(TlsConfigError::Read { path, .. }) => assert_eq!(path, Path::new(SYSTEM_CA_BUNDLE)),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn reload_from_files_serves_the_new_certificate() {
    let pki = Pki::new("isobar test CA");
    let dir = std::env::temp_dir().join(format!("netstack-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [CertKeyFiles { cert_chain: dir.join("site.crt"), key: dir.join("site.key") }];
    let write = |leaf: &Leaf| {
        std::fs::write(&files[0].cert_chain, &leaf.cert).unwrap();
        std::fs::write(&files[0].key, &leaf.key).unwrap();
    };
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let client = load_client_config(&ClientTlsFiles { ca_bundle: None, extra_cas: vec![dir.join("ca.pem")] }).unwrap();
    write(&pki.leaf(&["old.test"]));
    let before = load_server_config(&files).unwrap();
    write(&pki.leaf(&["new.test"]));
    let after = load_server_config(&files).unwrap();
    let handshake = |config: &Arc<ServerConfig>, name: &str| {
        let (mut c, mut s) = connect(client.clone(), name, config.clone());
        pump(&mut c, &mut s) == (None, None)
    };
    assert!(handshake(&before, "old.test") && !handshake(&before, "new.test"));
    assert!(handshake(&after, "new.test") && !handshake(&after, "old.test"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Our sessions over a real loopback TCP connection: the server in a thread, blocking sockets,
/// the same loop a core runs (ciphertext in, plaintext out, and back).
#[test]
fn over_loopback_tcp() {
    let pki = Pki::new("isobar test CA");
    let config = serving(&[&pki.leaf(&["localhost"])]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut session = TlsSession::server(config, TlsLimits::default()).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..100 {
            let mut out = Vec::new();
            session.take_ciphertext(&mut out);
            stream.write_all(&out).unwrap();
            if request.ends_with(b"\r\n\r\n") {
                break;
            }
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "client closed early");
            assert_eq!(session.receive(&buf[..n]), Ok(n));
            session.read_plaintext(&mut request);
        }
        session.write_plaintext(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello").unwrap();
        session.close();
        let mut out = Vec::new();
        session.take_ciphertext(&mut out);
        stream.write_all(&out).unwrap();
        request
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut session = TlsSession::client(pki.client(), "localhost", TlsLimits::default()).unwrap();
    session.write_plaintext(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        let mut out = Vec::new();
        session.take_ciphertext(&mut out);
        stream.write_all(&out).unwrap();
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(session.receive(&buf[..n]), Ok(n));
        session.read_plaintext(&mut response);
    }
    assert_eq!(session.peer_closed(), Ok(()), "the server sent close_notify");
    assert_eq!(response, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
    assert_eq!(server_thread.join().unwrap(), b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes to either side, before or after a handshake, never panic, and once a
    /// session has failed it stays failed.
    #[test]
    fn arbitrary_ciphertext_never_panics(
        noise in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6),
        after_handshake in any::<bool>(),
        to_client in any::<bool>(),
    ) {
        let pki = shared_pki();
        let (mut client, mut server) = connect(pki.client.clone(), "a.test", pki.server.clone());
        if after_handshake {
            pump(&mut client, &mut server);
        }
        let target = if to_client { &mut client } else { &mut server };
        let mut failed = false;
        for piece in &noise {
            match target.receive(piece) {
                Ok(n) => prop_assert!(n <= piece.len()),
                Err(_) => failed = true,
            }
            target.read_plaintext(&mut Vec::new());
            target.take_ciphertext(&mut Vec::new());
            if failed {
                prop_assert!(target.receive(b"\x17\x03\x03\x00\x01x").is_err());
            }
        }
        let _ = target.peer_closed();
    }
}

/// One CA, server and client configuration for all proptest cases (key generation is slow).
struct SharedPki {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

fn shared_pki() -> &'static SharedPki {
    static PKI: std::sync::OnceLock<SharedPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let pki = Pki::new("isobar test CA");
        let a = pki.leaf(&["a.test"]);
        SharedPki { client: pki.client(), server: serving(&[&a]) }
    })
}

#[test]
fn the_lazy_client_configuration_reads_now_and_parses_the_bundle_on_first_use() {
    let pki = Pki::new("isobar lazy CA");
    let dir = std::env::temp_dir().join(format!("netstack-tls-lazy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (bundle, extra, garbage) = (dir.join("bundle.pem"), dir.join("extra.pem"), dir.join("garbage.pem"));
    std::fs::write(&bundle, &pki.ca_pem).unwrap();
    std::fs::write(&extra, &pki.ca_pem).unwrap();
    std::fs::write(&garbage, b"not a certificate\n").unwrap();
    let files = |ca_bundle: &Path, extra_cas: &[&Path]| ClientTlsFiles {
        ca_bundle: Some(ca_bundle.to_path_buf()),
        extra_cas: extra_cas.iter().map(|p| p.to_path_buf()).collect(),
    };

    // A good bundle and extra CA: built once, on the first get, and the same thereafter; a
    // handshake with it verifies a certificate the CA issued.
    let lazy = LazyClientConfig::read(&files(&bundle, &[&extra])).unwrap();
    assert!(format!("{lazy:?}").contains("built: false"), "{lazy:?}");
    let config = lazy.get().unwrap();
    assert!(Arc::ptr_eq(&config, &lazy.get().unwrap()), "built once");
    let (mut c, mut s) = connect(config, "lazy.test", serving(&[&pki.leaf(&["lazy.test"])]));
    assert_eq!(pump(&mut c, &mut s), (None, None));

    // The operator's files are checked when read: missing or not PEM, the start fails.
    let missing = LazyClientConfig::read(&files(&bundle, &[&dir.join("missing.pem")])).unwrap_err();
    assert!(missing.to_string().contains("missing.pem"), "{missing}");
    let bad_extra = LazyClientConfig::read(&files(&bundle, &[&garbage])).unwrap_err();
    assert!(matches!(bad_extra, TlsConfigError::NoCertificate { .. }), "{bad_extra}");

    // A bundle that does not parse fails its first use, with the reason, every time.
    let bad_bundle = LazyClientConfig::read(&files(&garbage, &[])).unwrap();
    let reason = bad_bundle.get().unwrap_err().to_string();
    assert!(reason.contains("garbage.pem"), "{reason}");
    assert_eq!(bad_bundle.get().unwrap_err(), reason);

    // Already built: handed out as is.
    let built = load_client_config(&files(&bundle, &[])).unwrap();
    assert!(Arc::ptr_eq(&LazyClientConfig::built(built.clone()).get().unwrap(), &built));
    std::fs::remove_dir_all(&dir).unwrap();
}
