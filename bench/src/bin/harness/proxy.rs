//! The proxy scenario (issue 9's "Measure"): `fetch()` from a Worker to a local origin on one
//! core. Every system runs the same proxy (`servers::proxy_module`, or its Bun/Deno port with
//! the runtime's own `fetch()`): each request goes to the origin with its path, method and
//! headers, and the origin's response is returned untouched. Systems: isobar (`serve`, one
//! core, `[egress] allow` naming the origin's address, which `serve` refuses otherwise), bun,
//! deno, workerd (its global outbound a network service allowed to reach loopback), and,
//! as the reference, the client straight to an origin on the server CPU ("direct"), so that what
//! the proxy adds can be read off.
//!
//! The origin is the native responder (bench/native/responder.c: epoll, a fixed reply), one
//! process pinned to the client's CPU, so that every proxy has the server CPU to itself and
//! the origin never competes with it; its CPU per request is read apart (and with the client's
//! own CPU share says whether that CPU was the limit). All systems are up at once and take
//! turns round by round.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::Context;
use crate::load::{self, LoadSpec};
use crate::measure::{self, Series, Spread, on_client};
use crate::servers::{IsobarTenants, Runtime, Server};

/// What the origin answers (and the proxies pass on).
pub const ORIGIN_BODY: &str = "hello from the origin\n";

#[derive(Debug, Serialize)]
pub struct ProxyResults {
    /// The origin: program, and where it ran.
    pub origin: String,
    pub origin_error: Option<String>,
    pub systems: Vec<ProxySystem>,
}

#[derive(Debug, Serialize)]
pub struct ProxySystem {
    pub system: String,
    /// The reference row: the client straight to an origin, no proxy.
    pub direct: bool,
    pub error: Option<String>,
    pub cells: Vec<ProxyCell>,
}

impl ProxySystem {
    pub fn cell(&self, connections: usize) -> Option<&ProxyCell> {
        self.cells.iter().find(|c| c.connections == connections)
    }
}

/// One connection count over rounds.
#[derive(Debug, Serialize)]
pub struct ProxyCell {
    pub connections: usize,
    /// The proxy's own figures (its processes on the server CPU).
    pub series: Series,
    /// The origin's CPU per request (on the client's CPU), by round; empty for "direct".
    pub origin_cpu_us_per_request: Vec<f64>,
    pub origin_cpu: Option<Spread>,
    /// The origin's CPU over the window's wall time, by round.
    pub origin_cpu_share: Vec<f64>,
}

struct Row {
    system: ProxySystem,
    server: Option<Server>,
}

pub fn run(ctx: &mut Context) -> ProxyResults {
    let plan = ctx.plan.clone();
    let responder = match ctx.peers.responder.clone() {
        Ok(peer) => Ok(peer.program),
        Err(_) => crate::peers::compile_responder(&ctx.workspace.join("bench/.cache"), &ctx.workspace)
            .map(|peer| peer.program),
    };
    let err = |e: anyhow::Error| format!("{e:#}");
    // The origin, on the client's CPU.
    let origin = responder.clone().and_then(|program| {
        let mut origin = ctx.launcher.responder_on("proxy-origin", &program, ORIGIN_BODY, &ctx.client).map_err(err)?;
        on_client(&ctx.client, || {
            origin.wait_listening(Duration::from_secs(20))?;
            origin.warm_up("/", Some(ORIGIN_BODY))
        })
        .map_err(err)?;
        Ok(origin)
    });
    let mut results = ProxyResults {
        origin: format!(
            "bench/native/responder.c (epoll, fixed reply of {} bytes), on CPU {}",
            ORIGIN_BODY.len(),
            ctx.client_cpu
        ),
        origin_error: origin.as_ref().err().cloned(),
        systems: vec![],
    };
    let mut rows: Vec<Row> = Vec::new();
    let add = |rows: &mut Vec<Row>, system: String, direct: bool, started: Result<Server, String>| {
        let (server, error) = match started {
            Ok(server) => (Some(server), None),
            Err(error) => (None, Some(error)),
        };
        rows.push(Row { system: ProxySystem { system, direct, error, cells: vec![] }, server });
    };
    let direct = responder.clone().and_then(|program| {
        let placement = ctx.launcher.placement.clone();
        ctx.launcher.responder_on("proxy-direct", &program, ORIGIN_BODY, &placement).map_err(err)
    });
    add(&mut rows, format!("direct to an origin on CPU {} (no proxy)", ctx.server_cpu), true, direct);
    match &origin {
        Ok(origin_server) => {
            let addr = origin_server.endpoints[0];
            let mut spec = IsobarTenants::new("proxy-isobar", &ctx.isobar, 1);
            spec.script = Box::new(move |_| crate::servers::proxy_module(addr));
            spec.config_toml = format!("[egress]\nallow = [\"{}/32\"]\n", addr.ip());
            let isobar = ctx.launcher.isobar_tenants(&spec).map_err(err);
            add(&mut rows, "isobar (fetch() on the core's ring)".into(), false, isobar);
            if plan.mode == crate::Mode::Full {
                for (runtime, peer) in [(Runtime::Bun, &ctx.peers.bun), (Runtime::Deno, &ctx.peers.deno)] {
                    match peer.clone() {
                        Ok(peer) => {
                            let started = ctx
                                .launcher
                                .runtime_script(&format!("proxy-{}", runtime.name()), runtime, &peer.program, |a| {
                                    runtime.proxy_script(a, addr)
                                })
                                .map_err(err);
                            add(&mut rows, format!("{} ({})", runtime.name(), peer.version), false, started);
                        }
                        Err(reason) => add(&mut rows, runtime.name().into(), false, Err(reason)),
                    }
                }
                match ctx.peers.workerd.clone() {
                    Ok(peer) => {
                        let started = ctx.launcher.workerd_proxy("proxy-workerd", &peer.program, addr).map_err(err);
                        add(&mut rows, format!("workerd ({})", peer.version), false, started);
                    }
                    Err(reason) => add(&mut rows, "workerd".into(), false, Err(reason)),
                }
            }
        }
        Err(reason) => add(&mut rows, "isobar".into(), false, Err(format!("no origin: {reason}"))),
    }

    for r in rows.iter_mut() {
        let Some(server) = &mut r.server else { continue };
        let ready = on_client(&ctx.client, || {
            server.wait_listening(Duration::from_secs(60))?;
            server.warm_up("/", Some(ORIGIN_BODY))
        });
        if let Err(error) = ready {
            r.system.error = Some(format!("{error:#}"));
            r.server = None;
        }
    }
    let origin_pids = origin.as_ref().map(Server::pids).unwrap_or_default();

    for &connections in &plan.proxy_connections {
        eprintln!("harness: proxy: {connections} connections");
        for r in rows.iter_mut().filter(|r| r.server.is_some()) {
            r.system.cells.push(ProxyCell {
                connections,
                series: Series::default(),
                origin_cpu_us_per_request: vec![],
                origin_cpu: None,
                origin_cpu_share: vec![],
            });
        }
        for round in 0..plan.rounds {
            let count = rows.len();
            for k in 0..count {
                let r = &mut rows[(k + round) % count];
                let Some(server) = &mut r.server else { continue };
                let (endpoints, requests) = server.rotation(0..1, "/");
                let spec = LoadSpec {
                    endpoints,
                    requests,
                    concurrency: connections,
                    warmup: plan.warmup * 2,
                    duration: plan.proxy_window,
                    requests_max: plan.requests_max,
                };
                let beside: &[u32] = if r.system.direct { &[] } else { &origin_pids };
                let result =
                    measure::measure_beside(&server.pids(), beside, &ctx.client, |probe| load::run(&spec, probe));
                if let Some(cell) = r.system.cells.iter_mut().find(|c| c.connections == connections) {
                    match result {
                        Ok((measurement, origin_cpu)) => {
                            if !r.system.direct {
                                cell.origin_cpu_us_per_request.push(origin_cpu);
                                cell.origin_cpu_share.push(origin_cpu * measurement.requests_per_second / 1e6);
                            }
                            cell.series.record(round, Ok(measurement));
                        }
                        Err(error) => cell.series.record(round, Err(error)),
                    }
                }
                if let Err(error) = server.check_alive() {
                    r.system.error = Some(format!("{error:#}"));
                    r.server = None;
                }
            }
        }
    }
    for mut r in rows {
        for cell in &mut r.system.cells {
            cell.origin_cpu = Spread::of(&cell.origin_cpu_us_per_request);
        }
        drop(r.server);
        results.systems.push(r.system);
    }
    drop(origin);
    results
}
