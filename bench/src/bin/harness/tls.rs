//! The tls scenario (issue 9's "Measure"): HTTPS hello world with isobar terminating TLS itself
//! (`isobar run --tls-cert/--tls-key`: rustls driven by the core) beside bun's (`Bun.serve` with
//! `tls`), deno's (`Deno.serve` with `cert`/`key`) and workerd's (an `https` socket) TLS servers,
//! all presenting the same certificate: an ECDSA P-256 leaf for `localhost`, signed by a CA the
//! harness makes for the run (rcgen). Two shapes of load (tls_load.rs): one connection per
//! request (a full handshake each, no resumption: new connections per second) and keep-alive
//! requests. isobar's plain-HTTP listener in the same process is the reference row, so what TLS
//! adds can be read off. Every server on the server CPU, all up at once, taking turns round by
//! round; the client is this process's own rustls client on the client CPU, whose CPU share is
//! reported beside every figure (near 1: the client, not the server, set the pace).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::ServerName;
use serde::Serialize;

use crate::Context;
use crate::load::Client;
use crate::measure::{self, Series, on_client};
use crate::servers::{HELLO_BODY, Runtime, Server};
use crate::tls_load::{self, Reuse, TlsLoadSpec};

/// The name in the certificate, sent as SNI.
const SERVER_NAME: &str = "localhost";

#[derive(Debug, Serialize)]
pub struct TlsResults {
    pub certificate: String,
    pub client: String,
    pub systems: Vec<TlsSystem>,
}

#[derive(Debug, Serialize)]
pub struct TlsSystem {
    pub system: String,
    /// False for the plain-HTTP reference row.
    pub tls: bool,
    /// Version, cipher suite and key exchange the verifying check negotiated.
    pub negotiated: Option<String>,
    pub error: Option<String>,
    pub cells: Vec<TlsCell>,
}

impl TlsSystem {
    pub fn cell(&self, reuse: Reuse, connections: usize) -> Option<&TlsCell> {
        self.cells.iter().find(|c| c.reuse == reuse && c.connections == connections)
    }
}

#[derive(Debug, Serialize)]
pub struct TlsCell {
    pub reuse: Reuse,
    pub connections: usize,
    pub series: Series,
}

/// A row: which server, which of its endpoints, with TLS or not.
struct Row {
    system: TlsSystem,
    server: usize,
    endpoint: usize,
}

/// The run's certificate files and the CA that signed them.
struct Certificate {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    cert_pem: String,
    key_pem: String,
    ca_der: Vec<u8>,
}

/// A CA and an ECDSA P-256 leaf for `localhost` it signs, written as PEM files into `dir`.
fn make_certificate(dir: &std::path::Path) -> Result<Certificate> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "isobar bench CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = params.self_signed(&ca_key).context("CA certificate")?;
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("leaf key")?;
    let leaf = CertificateParams::new(vec![SERVER_NAME.to_string()])
        .context("leaf parameters")?
        .signed_by(&key, &issuer)
        .context("leaf certificate")?;
    let (cert_pem, key_pem) = (leaf.pem(), key.serialize_pem());
    let (cert, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &cert_pem).context("write cert.pem")?;
    std::fs::write(&key_path, &key_pem).context("write key.pem")?;
    Ok(Certificate { cert, key: key_path, cert_pem, key_pem, ca_der: ca.der().to_vec() })
}

pub fn run(ctx: &mut Context) -> TlsResults {
    let mut results = TlsResults {
        certificate: format!(
            "ECDSA P-256 leaf for `{SERVER_NAME}` (leaf only in the chain), signed by a P-256 CA made for the run (rcgen)"
        ),
        client: format!(
            "rustls {} (ring), one thread on CPU {}: TLS 1.3/1.2 and X25519 first as rustls offers them, ALPN http/1.1, \
             no session resumption, no certificate or handshake-signature check in the load (one verified request \
             per server before it)",
            "0.23", ctx.client_cpu
        ),
        systems: vec![],
    };
    let certificate = match make_certificate(&ctx.work.join("tls-certificate")) {
        Ok(c) => c,
        Err(error) => {
            results.systems.push(TlsSystem {
                system: "every system".into(),
                tls: true,
                negotiated: None,
                error: Some(format!("no certificate: {error:#}")),
                cells: vec![],
            });
            return results;
        }
    };
    let (verifying, load) = match tls_load::client_configs(&certificate.ca_der) {
        Ok(configs) => configs,
        Err(error) => {
            results.systems.push(TlsSystem {
                system: "every system".into(),
                tls: true,
                negotiated: None,
                error: Some(format!("no TLS client: {error:#}")),
                cells: vec![],
            });
            return results;
        }
    };
    let err = |e: anyhow::Error| format!("{e:#}");
    let mut servers: Vec<Option<Server>> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let add =
        |rows: &mut Vec<Row>, servers: &mut Vec<Option<Server>>, system: String, started: Result<Server, String>| {
            let error = started.as_ref().err().cloned();
            rows.push(Row {
                system: TlsSystem { system, tls: true, negotiated: None, error, cells: vec![] },
                server: servers.len(),
                endpoint: 0,
            });
            servers.push(started.ok());
        };

    // isobar: HTTPS on its TLS listener (endpoint 1), plain HTTP on --listen (endpoint 0).
    let hello = ctx.workspace.join("examples/hello.js");
    let isobar = ctx.launcher.ports.take(1).map_err(err).and_then(|tls_port| {
        let tls_addr = SocketAddr::new(ctx.launcher.ip, tls_port);
        let extra = [
            "--tls-cert",
            &certificate.cert.display().to_string(),
            "--tls-key",
            &certificate.key.display().to_string(),
            "--tls-listen",
            &tls_addr.to_string(),
        ]
        .map(str::to_string);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut server = ctx.launcher.isobar_run("tls-isobar", &ctx.isobar, &hello, &extra, None).map_err(err)?;
        server.endpoints.push(tls_addr);
        Ok(server)
    });
    let isobar_ok = isobar.is_ok();
    add(&mut rows, &mut servers, "isobar (rustls on the core)".into(), isobar);
    if let Some(row) = rows.last_mut() {
        row.endpoint = 1;
    }
    if isobar_ok {
        rows.push(Row {
            system: TlsSystem {
                system: "isobar, plain HTTP (same process, no TLS)".into(),
                tls: false,
                negotiated: None,
                error: None,
                cells: vec![],
            },
            server: 0,
            endpoint: 0,
        });
    }
    if ctx.plan.mode == crate::Mode::Full {
        for (runtime, peer) in [(Runtime::Bun, &ctx.peers.bun), (Runtime::Deno, &ctx.peers.deno)] {
            match peer.clone() {
                Ok(peer) => {
                    let started = ctx
                        .launcher
                        .runtime_script(&format!("tls-{}", runtime.name()), runtime, &peer.program, |a| {
                            runtime.tls_hello_script(a, &certificate.cert_pem, &certificate.key_pem)
                        })
                        .map_err(err);
                    add(&mut rows, &mut servers, format!("{} ({})", runtime.name(), peer.version), started);
                }
                Err(reason) => add(&mut rows, &mut servers, runtime.name().into(), Err(reason)),
            }
        }
        match ctx.peers.workerd.clone() {
            Ok(peer) => {
                let started = ctx
                    .launcher
                    .workerd_tls("tls-workerd", &peer.program, &certificate.cert, &certificate.key)
                    .map_err(err);
                add(&mut rows, &mut servers, format!("workerd ({})", peer.version), started);
            }
            Err(reason) => add(&mut rows, &mut servers, "workerd".into(), Err(reason)),
        }
    }

    // Every server listening, and answering one fully verified request.
    let server_name = ServerName::try_from(SERVER_NAME.to_string()).expect("a valid DNS name");
    for row in rows.iter_mut() {
        let Some(server) = servers[row.server].as_mut() else { continue };
        let endpoint = server.endpoints[row.endpoint];
        let tls = row.system.tls;
        let (verifying, name) = (verifying.clone(), server_name.clone());
        let ready = on_client(&ctx.client, || {
            server.wait_listening(Duration::from_secs(60))?;
            if !tls {
                let mut client = Client::connect(endpoint, Duration::from_secs(5))?;
                let (status, body) = client.get(SERVER_NAME, "/")?;
                return check_hello(status, &body).map(|()| None);
            }
            let (status, body, negotiated) = tls_load::check(endpoint, verifying, name, SERVER_NAME, "/")?;
            check_hello(status, &body)?;
            Ok(Some(negotiated))
        });
        match ready {
            Ok(negotiated) => row.system.negotiated = negotiated,
            Err(error) => row.system.error = Some(format!("{error:#}")),
        }
    }

    let cases: Vec<(Reuse, usize)> = ctx
        .plan
        .tls_handshake_connections
        .iter()
        .map(|c| (Reuse::PerRequest, *c))
        .chain(ctx.plan.tls_keepalive_connections.iter().map(|c| (Reuse::KeepAlive, *c)))
        .collect();
    for (reuse, connections) in cases {
        eprintln!("harness: tls: {reuse:?} at {connections} connections");
        for row in rows.iter_mut().filter(|r| r.system.error.is_none()) {
            row.system.cells.push(TlsCell { reuse, connections, series: Series::default() });
        }
        for round in 0..ctx.plan.rounds {
            let count = rows.len();
            for k in 0..count {
                let row = &mut rows[(k + round) % count];
                if row.system.error.is_some() {
                    continue;
                }
                let Some(server) = servers[row.server].as_mut() else { continue };
                let spec = TlsLoadSpec {
                    endpoint: server.endpoints[row.endpoint],
                    tls: row.system.tls.then(|| load.clone()),
                    server_name: server_name.clone(),
                    host: SERVER_NAME.into(),
                    path: "/".into(),
                    reuse,
                    concurrency: connections,
                    warmup: ctx.plan.warmup * 2,
                    duration: ctx.plan.tls_window,
                    requests_max: ctx.plan.requests_max,
                };
                let result =
                    measure::measure_beside(&server.pids(), &[], &ctx.client, |probe| tls_load::run(&spec, probe))
                        .map(|(measurement, _)| measurement);
                if let Some(cell) =
                    row.system.cells.iter_mut().find(|c| c.reuse == reuse && c.connections == connections)
                {
                    cell.series.record(round, result);
                }
                if let Err(error) = server.check_alive() {
                    row.system.error = Some(format!("{error:#}"));
                }
            }
        }
    }
    drop(servers);
    results.systems = rows.into_iter().map(|r| r.system).collect();
    results
}

fn check_hello(status: u16, body: &[u8]) -> Result<()> {
    if status != 200 || body != HELLO_BODY.as_bytes() {
        bail!("answered {status} {:?}, expected 200 {HELLO_BODY:?}", String::from_utf8_lossy(body));
    }
    Ok(())
}
