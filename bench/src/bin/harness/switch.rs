//! Scenario 1, the tenant switch on one core: N tenants, each a different script, served
//! round-robin (request k goes to tenant k mod N) on one pinned CPU, against all requests to
//! one tenant of the same server; a trivial handler, and a variant where each tenant writes a
//! 64 KiB working set of its own per request, so cache and TLB refill show. The systems:
//! isobar (one scheduler, tenants routed by Host), one native process per tenant, one native
//! thread per tenant in one process, and one node / bun / deno process per tenant (up to the
//! plan's limit). For each N all systems are up at once and take turns round by round.
//!
//! It reports server CPU per request, the added cost per switch (round-robin minus one tenant,
//! paired by round), requests/s, p99, context switches per request and memory.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::load::LoadSpec;
use crate::measure::{self, Series, Spread, on_client};
use crate::procfs::{self, Memory};
use crate::servers::{IsobarTenants, Runtime, Server};
use crate::{Context, Mode};

/// What a system is, for the plots: the three designs compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Design {
    Isolates,
    Process,
    Thread,
}

#[derive(Debug, Serialize)]
pub struct SwitchResults {
    pub concurrency: usize,
    pub groups: Vec<Group>,
}

/// Every system at one tenant count.
#[derive(Debug, Serialize)]
pub struct Group {
    pub tenants: usize,
    pub systems: Vec<SystemRows>,
}

#[derive(Debug, Serialize)]
pub struct SystemRows {
    pub system: String,
    pub design: Design,
    /// Why it could not be measured (not installed, did not start, died).
    pub error: Option<String>,
    /// After one request to each tenant (trivial handler).
    pub memory_warm: Option<Memory>,
    /// After the rounds (working sets touched).
    pub memory_after: Option<Memory>,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Serialize)]
pub struct Variant {
    /// Each request writes the tenant's 64 KiB working set.
    pub working_set: bool,
    /// Round-robin over all tenants (false: every request to tenant 0).
    pub round_robin: bool,
    pub series: Series,
}

impl SystemRows {
    pub fn variant(&self, working_set: bool, round_robin: bool) -> Option<&Variant> {
        self.variants.iter().find(|v| v.working_set == working_set && v.round_robin == round_robin)
    }

    /// Server CPU per request, round-robin minus one tenant, round by round: what one switch
    /// between tenants adds.
    pub fn added_per_switch(&self, working_set: bool) -> Option<Spread> {
        let rr = self.variant(working_set, true)?;
        let one = self.variant(working_set, false)?;
        let diffs: Vec<f64> = rr
            .series
            .rounds
            .iter()
            .filter_map(|m| {
                one.series.round(m.round).map(|o| m.server_cpu_us_per_request - o.server_cpu_us_per_request)
            })
            .collect();
        Spread::of(&diffs)
    }
}

enum Kind {
    Isobar(std::path::PathBuf),
    Processes,
    Threads,
    Runtime(Runtime, std::path::PathBuf),
}

pub fn run(ctx: &mut Context) -> SwitchResults {
    let mut groups = Vec::new();
    let counts: Vec<usize> =
        ctx.plan.switch_counts.iter().chain(ctx.plan.switch_isobar_counts.iter()).copied().collect();
    for n in counts {
        let isobar_only = !ctx.plan.switch_counts.contains(&n);
        eprintln!("harness: switch: {n} tenants");
        groups.push(run_group(ctx, n, isobar_only));
    }
    SwitchResults { concurrency: ctx.plan.switch_concurrency, groups }
}

fn run_group(ctx: &mut Context, n: usize, isobar_only: bool) -> Group {
    let mut rows: Vec<SystemRows> = Vec::new();
    let mut servers: Vec<Option<Server>> = Vec::new();
    let mut candidates: Vec<(String, Design, Result<Kind, String>)> = Vec::new();
    for (label, bin) in ctx.isobars() {
        candidates.push((label, Design::Isolates, Ok(Kind::Isobar(bin))));
    }
    if !isobar_only && ctx.plan.mode == Mode::Full {
        if n <= ctx.plan.native_tenants_max {
            let responder = ctx.peers.responder.clone().map(|p| p.program);
            candidates.push((
                "process per tenant (C)".into(),
                Design::Process,
                responder.clone().map(|_| Kind::Processes),
            ));
            candidates.push(("thread per tenant (C)".into(), Design::Thread, responder.map(|_| Kind::Threads)));
        }
        if n <= ctx.plan.runtime_tenants_max {
            for (runtime, peer) in
                [(Runtime::Node, &ctx.peers.node), (Runtime::Bun, &ctx.peers.bun), (Runtime::Deno, &ctx.peers.deno)]
            {
                let kind = peer.clone().map(|p| Kind::Runtime(runtime, p.program));
                candidates.push((format!("{} per tenant", runtime.name()), Design::Process, kind));
            }
        }
    }
    for (system, design, kind) in candidates {
        let mut row = SystemRows {
            system: system.clone(),
            design,
            error: None,
            memory_warm: None,
            memory_after: None,
            variants: vec![],
        };
        let started = kind.and_then(|kind| start(ctx, &system, &kind, n).map_err(|e| format!("{e:#}")));
        match started {
            Ok(server) => servers.push(Some(server)),
            Err(error) => {
                row.error = Some(error);
                servers.push(None);
            }
        }
        rows.push(row);
    }
    // Everything starts at once; then each is waited for and warmed up.
    for (row, slot) in rows.iter_mut().zip(servers.iter_mut()) {
        let Some(server) = slot else { continue };
        let ready = on_client(&ctx.client, || {
            server.wait_listening(Duration::from_secs(300))?;
            server.warm_up("/", None)
        });
        match ready {
            Ok(()) => row.memory_warm = Some(server.memory()),
            Err(error) => {
                row.error = Some(format!("{error:#}"));
                *slot = None;
            }
        }
    }
    let variants: Vec<(bool, bool)> = if n == 1 {
        vec![(false, true), (true, true)]
    } else {
        vec![(false, true), (false, false), (true, true), (true, false)]
    };
    for row in rows.iter_mut() {
        if row.error.is_none() {
            row.variants = variants
                .iter()
                .map(|&(working_set, round_robin)| Variant { working_set, round_robin, series: Series::default() })
                .collect();
        }
    }
    for round in 0..ctx.plan.rounds {
        // Each round starts with a different system, so none is always measured first.
        let count = rows.len();
        for k in 0..count {
            let i = (k + round) % count;
            let (row, slot) = (&mut rows[i], &mut servers[i]);
            let Some(server) = slot else { continue };
            for variant in row.variants.iter_mut() {
                let tenants = if variant.round_robin { 0..n } else { 0..1 };
                let path = if variant.working_set { "/ws" } else { "/" };
                let (endpoints, requests) = server.rotation(tenants, path);
                let spec = LoadSpec {
                    endpoints,
                    requests,
                    concurrency: ctx.plan.switch_concurrency,
                    warmup: ctx.plan.warmup,
                    duration: ctx.plan.window,
                    requests_max: ctx.plan.requests_max,
                };
                variant.series.record(round, measure::measure(&server.pids(), &spec, &ctx.client));
            }
            if let Err(error) = server.check_alive() {
                row.error = Some(format!("{error:#}"));
                *slot = None;
            }
        }
    }
    for (row, slot) in rows.iter_mut().zip(servers.iter()) {
        if let Some(server) = slot {
            row.memory_after = Some(server.memory());
        }
    }
    drop(servers);
    Group { tenants: n, systems: rows }
}

/// Rough resident size of one runtime process, and of one live isolate with its 64 KiB working
/// set, to skip a group the machine cannot hold.
const RUNTIME_PROCESS_BYTES: u64 = 60 << 20;
const ISOLATE_BYTES: u64 = 1600 << 10;

fn start(ctx: &mut Context, name: &str, kind: &Kind, n: usize) -> Result<Server> {
    let launcher = &mut ctx.launcher;
    match kind {
        Kind::Isobar(bin) => {
            // 10,000 isolates take most of a 24 GB machine for the minutes they run.
            procfs::ensure_memory(ISOLATE_BYTES * n as u64, 0.85, &format!("{n} isolates"))?;
            launcher.isobar_tenants(&IsobarTenants::new(name, bin, n))
        }
        Kind::Processes => {
            let responder = ctx.peers.responder.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?.program.clone();
            launcher.responder_processes(name, &responder, n)
        }
        Kind::Threads => {
            let responder = ctx.peers.responder.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?.program.clone();
            launcher.responder_threads(name, &responder, n)
        }
        Kind::Runtime(runtime, program) => {
            procfs::ensure_memory(RUNTIME_PROCESS_BYTES * n as u64, 0.5, &format!("{n} processes"))?;
            launcher.runtime_processes(name, *runtime, program, n, false)
        }
    }
}
