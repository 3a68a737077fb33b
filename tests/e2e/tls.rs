//! HTTPS served by isobar itself: `isobar run --tls-cert/--tls-key` and `[server.tls]` under
//! `serve`, with certificates made per test (rcgen), a real TLS client (rustls over a std
//! TcpStream), SNI choosing between certificates, and certificates replaced on SIGHUP.
//! Loopback only; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isobar_e2e::{Isobar, TempDir};
use rustls::pki_types::ServerName;

use crate::certs::Ca;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// One HTTPS request (`connection: close`) to `addr` naming `server_name`: the raw response, or
/// the TLS or I/O error.
fn https_get(addr: SocketAddr, config: Arc<ClientConfig>, server_name: &str, path: &str) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    let request = format!("GET {path} HTTP/1.1\r\nhost: {server_name}\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

fn https_of(isobar: &Isobar) -> SocketAddr {
    isobar.tls.expect("isobar printed its https:// listener")
}

#[test]
fn run_serves_https_beside_http_and_sni_picks_the_certificate() {
    let ca = Ca::new("isobar e2e CA");
    let dir = TempDir::new("tls-run");
    let (cert_a, key_a) = ca.leaf(&["localhost"]);
    let (cert_b, key_b) = ca.leaf(&["shop.test"]);
    let files = [
        dir.write("a.pem", &cert_a),
        dir.write("a.key", &key_a),
        dir.write("b.pem", &cert_b),
        dir.write("b.key", &key_b),
    ];
    let f: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let isobar = Isobar::start(&[
        "run",
        "examples/echo.js",
        "--tls-cert",
        f[0],
        "--tls-key",
        f[1],
        "--tls-cert",
        f[2],
        "--tls-key",
        f[3],
        "--tls-listen",
        "127.0.0.1:0",
    ]);
    let https = https_of(&isobar);
    for name in ["localhost", "shop.test"] {
        let response = https_get(https, ca.client(), name, "/over-tls").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
        // The Worker sees the scheme the client used.
        assert!(response.contains(&format!("\"url\":\"https://{name}/over-tls\"")), "{name}: {response}");
    }
    // A name no certificate has: the handshake fails for that client only.
    let error = https_get(https, ca.client(), "other.test", "/").unwrap_err();
    assert!(error.to_lowercase().contains("certificate") || error.contains("alert"), "{error}");

    // Plain HTTP on the HTTPS port is not TLS: that connection closes, nothing else is hurt.
    let mut plain = TcpStream::connect(https).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "plain HTTP was answered on the HTTPS port");

    // Plain HTTP keeps its own port, with http:// URLs. (Under the whole suite's load on two
    // vCPUs a fresh connection was once closed unanswered here; a second one is tried before
    // failing, and the process must still be up for it.)
    let mut client = isobar_e2e::Client::connect(isobar.addr);
    client.send("GET", "/plain", &[], b"");
    let response = match client.try_read_response(false) {
        Ok(response) => response,
        Err(error) => {
            eprintln!("the first /plain request failed ({error}); stderr so far:\n{}", isobar.stderr());
            isobar.get("/plain")
        }
    };
    assert_eq!(response.status, 200);
    assert!(response.text().contains("\"url\":\"http://"), "{}", response.text());
    assert!(https_get(https, ca.client(), "localhost", "/again").unwrap().starts_with("HTTP/1.1 200"));
}

#[test]
fn serve_reloads_certificates_on_sighup() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let dir = TempDir::new("tls-serve");
    let (cert, key) = old_ca.leaf(&["localhost"]);
    let cert_path = dir.write("site.pem", &cert);
    let key_path = dir.write("site.key", &key);
    let echo = isobar_e2e::workspace().join("examples/echo.js");
    let config = dir.write(
        "isobar.toml",
        &format!(
            "[server.tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\n\
             [[tenant]]\nname = \"echo\"\nscript = \"{}\"\nroutes = [\"localhost\"]\n",
            cert_path.display(),
            key_path.display(),
            echo.display()
        ),
    );
    let mut isobar = Isobar::serve(&config, &["--cores", "1"]);
    let https = https_of(&isobar);
    let response = https_get(https, old_ca.client(), "localhost", "/before").unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(https_get(https, new_ca.client(), "localhost", "/").is_err(), "the new CA is not trusted yet");

    // New certificate files, then SIGHUP: new connections get the new certificate.
    let (cert, key) = new_ca.leaf(&["localhost"]);
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    isobar.hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Err(String::new());
    while Instant::now() < deadline {
        last = https_get(https, new_ca.client(), "localhost", "/after");
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let response = last.expect("the new certificate is served after SIGHUP");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(https_get(https, old_ca.client(), "localhost", "/").is_err(), "the old certificate is gone");
    assert!(isobar.is_running());
}
