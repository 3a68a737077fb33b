//! Scenario 4, throughput and latency of hello world at 1, 64 and 1,024 connections: isobar on
//! kernel sockets and on its userspace stack (smoltcp on a TAP), workerd, deno, bun, node, and
//! the "limit" — the native responder on the same socket path, the cheapest server there is,
//! so every figure also reads as a distance from what the kernel allows. All servers are up at
//! once and take turns round by round; as root, everything (servers and client) runs in a
//! network namespace the harness creates, which the userspace stack needs for its TAP.
//!
//! With the userspace stack, the client's own kernel TCP receive work runs inside isobar's
//! write to the TAP and is counted as isobar's CPU; over loopback, the same work runs in the
//! server's send as well (softirq in the sender's context). Neither is isobar's code.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::load::LoadSpec;
use crate::measure::{self, Series, on_client};
use crate::netns::{Namespace, TAPS};
use crate::servers::{HELLO_BODY, Launcher, Placement, Ports, Runtime, Server};
use crate::{Context, Mode};

#[derive(Debug, Serialize)]
pub struct ThroughputResults {
    /// Where the servers ran: "network namespace" or "host loopback".
    pub network: String,
    pub systems: Vec<SystemRows>,
}

#[derive(Debug, Serialize)]
pub struct SystemRows {
    pub system: String,
    /// A peer (compared against for "best peer"), not isobar or the limit.
    pub peer: bool,
    pub limit: bool,
    pub error: Option<String>,
    pub by_connections: Vec<(usize, Series)>,
}

impl SystemRows {
    pub fn series(&self, connections: usize) -> Option<&Series> {
        self.by_connections.iter().find(|(c, _)| *c == connections).map(|(_, s)| s)
    }
}

pub fn run(ctx: &mut Context) -> ThroughputResults {
    let namespace = Namespace::create(if ctx.baseline.is_some() { 2 } else { 1 });
    let (network, ns_error) = match &namespace {
        Ok(_) => ("network namespace (servers and client inside)".to_string(), None),
        Err(error) => ("host loopback".to_string(), Some(format!("{error:#}"))),
    };
    let netns = namespace.as_ref().ok().map(|n| n.file.clone());
    let mut launcher = Launcher {
        work: ctx.work.join("throughput"),
        ports: Ports::new(),
        placement: Placement { cpus: vec![ctx.server_cpu], netns: netns.clone() },
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let client = Placement { cpus: vec![ctx.client_cpu], netns };
    let hello = ctx.workspace.join("examples/hello.js");

    let mut rows: Vec<SystemRows> = Vec::new();
    let mut servers: Vec<Option<Server>> = Vec::new();
    let mut add =
        |rows: &mut Vec<SystemRows>, name: String, peer: bool, limit: bool, started: Result<Server, String>| {
            let mut row = SystemRows { system: name, peer, limit, error: None, by_connections: vec![] };
            match started {
                Ok(server) => servers.push(Some(server)),
                Err(error) => {
                    row.error = Some(error);
                    servers.push(None);
                }
            }
            rows.push(row);
        };
    let err = |e: anyhow::Error| format!("{e:#}");
    // Every connection comes from the one client address: isobar's per-client cap (256 by
    // default, against a stranger opening thousands) is raised above the largest count here.
    let caps = ["--conns-per-client", "4096"];
    for (i, (label, bin)) in ctx.isobars().into_iter().enumerate() {
        let kernel = launcher.isobar_run(&format!("{label}-kernel"), &bin, &hello, &caps, None).map_err(err);
        add(&mut rows, format!("{label}, kernel sockets (io_uring)"), false, false, kernel);
        let userspace = match &ns_error {
            Some(reason) => Err(format!("userspace stack not measured: {reason}")),
            None => {
                let tap = &TAPS[i];
                let net = format!("tap:{}", tap.name);
                launcher
                    .isobar_run(
                        &format!("{label}-userspace"),
                        &bin,
                        &hello,
                        &["--net", &net, "--ip", tap.stack_cidr, caps[0], caps[1]],
                        Some(tap.stack_ip),
                    )
                    .map_err(err)
            }
        };
        add(&mut rows, format!("{label}, userspace stack (smoltcp on TAP)"), false, false, userspace);
    }
    if ctx.plan.mode == Mode::Full {
        match ctx.peers.workerd.clone() {
            Ok(peer) => {
                let started = launcher.workerd("workerd-hello", &peer.program, 1, true).map_err(err);
                add(&mut rows, format!("workerd ({})", peer.version), true, false, started);
            }
            Err(reason) => add(&mut rows, "workerd".into(), true, false, Err(reason)),
        }
        for (runtime, peer) in
            [(Runtime::Deno, &ctx.peers.deno), (Runtime::Bun, &ctx.peers.bun), (Runtime::Node, &ctx.peers.node)]
        {
            match peer.clone() {
                Ok(peer) => {
                    let started = launcher
                        .runtime_processes(&format!("{}-hello", runtime.name()), runtime, &peer.program, 1, true)
                        .map_err(err);
                    add(&mut rows, format!("{} ({})", runtime.name(), peer.version), true, false, started);
                }
                Err(reason) => add(&mut rows, runtime.name().into(), true, false, Err(reason)),
            }
        }
        match ctx.peers.responder.clone() {
            Ok(peer) => {
                let started = launcher.responder_hello("limit", &peer.program).map_err(err);
                add(&mut rows, "limit: C epoll responder, fixed reply".into(), false, true, started);
            }
            Err(reason) => add(&mut rows, "limit: C epoll responder".into(), false, true, Err(reason)),
        }
    }
    for (row, slot) in rows.iter_mut().zip(servers.iter_mut()) {
        let Some(server) = slot else { continue };
        let ready = on_client(&client, || {
            server.wait_listening(Duration::from_secs(60))?;
            server.warm_up("/", Some(HELLO_BODY))
        });
        if let Err(error) = ready {
            row.error = Some(format!("{error:#}"));
            *slot = None;
        }
    }
    for &connections in &ctx.plan.throughput_connections {
        eprintln!("harness: throughput: {connections} connections");
        for row in rows.iter_mut().filter(|r| r.error.is_none()) {
            row.by_connections.push((connections, Series::default()));
        }
        for round in 0..ctx.plan.rounds {
            let count = rows.len();
            for k in 0..count {
                let i = (k + round) % count;
                let (row, slot) = (&mut rows[i], &mut servers[i]);
                let Some(server) = slot else { continue };
                let (endpoints, requests) = server.rotation(0..1, "/");
                let spec = LoadSpec {
                    endpoints,
                    requests,
                    concurrency: connections,
                    warmup: ctx.plan.warmup * 2,
                    duration: ctx.plan.throughput_window,
                    requests_max: ctx.plan.requests_max,
                };
                let result = measure::measure(&server.pids(), &spec, &client);
                if let Some((_, series)) = row.by_connections.iter_mut().find(|(c, _)| *c == connections) {
                    series.record(round, result);
                }
                if let Err(error) = server.check_alive() {
                    row.error = Some(format!("{error:#}"));
                    *slot = None;
                }
            }
        }
    }
    drop(servers);
    drop(namespace);
    ThroughputResults { network, systems: rows }
}
