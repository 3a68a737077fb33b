//! Scenario 3, memory per tenant: RSS per added live tenant for isobar (one `serve` per N: RSS
//! with the pool full and no tenant live, then after one request to each tenant) and workerd
//! (one worker per tenant in one process, N up to the plan's limit, every worker loaded at
//! start: the growth per tenant between N's); RSS per added thread for one native thread per
//! tenant; and, per process of the process-per-tenant designs, USS (the private memory one more
//! process costs) with several processes of the same binary running, so that their text counts
//! as shared, as it is.
//!
//! Memory figures are single readings per configuration (RSS moves by a few percent between
//! runs, not by the host's load), taken one system at a time.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::measure::{Spread, on_client};
use crate::procfs;
use crate::servers::{IsobarTenants, Runtime, Server};
use crate::{Context, Mode};

#[derive(Debug, Default, Serialize)]
pub struct MemoryResults {
    pub isobar: Vec<ScaleRow>,
    pub workerd: Vec<ScaleRow>,
    pub threads: Vec<ScaleRow>,
    pub processes: Vec<ProcessRow>,
}

/// One server with N tenants.
#[derive(Debug, Serialize)]
pub struct ScaleRow {
    pub system: String,
    pub tenants: usize,
    /// Before any tenant had a request (isobar: its pool of ready isolates full).
    pub rss_before_bytes: Option<u64>,
    /// After one request to each tenant.
    pub rss_after_bytes: u64,
    /// (after - before) / N: what each live tenant added, inside one process (isobar).
    pub per_tenant_in_process_bytes: Option<f64>,
    /// Growth from the smallest N measured to this one, per tenant.
    pub per_tenant_slope_bytes: Option<f64>,
    pub error: Option<String>,
}

/// One process per tenant: memory per process with several running.
#[derive(Debug, Serialize)]
pub struct ProcessRow {
    pub system: String,
    pub processes: usize,
    pub rss_bytes: Option<Spread>,
    pub uss_bytes: Option<Spread>,
    pub error: Option<String>,
}

pub fn run(ctx: &mut Context) -> MemoryResults {
    let mut results = MemoryResults::default();
    for n in ctx.plan.memory_isobar_counts.clone() {
        eprintln!("harness: memory: isobar, {n} tenants");
        let row = scale_row(ctx, "isobar", n, |ctx| {
            procfs::ensure_memory((1600 << 10) * n as u64, 0.85, &format!("{n} isolates"))?;
            ctx.launcher.isobar_tenants(&IsobarTenants::new(&format!("memory-isobar-{n}"), &ctx.isobar.clone(), n))
        });
        results.isobar.push(row);
    }
    if ctx.plan.mode == Mode::Full {
        for n in ctx.plan.memory_workerd_counts.clone() {
            eprintln!("harness: memory: workerd, {n} tenants");
            let row = match ctx.peers.workerd.clone() {
                Ok(peer) => scale_row(ctx, &format!("workerd ({})", peer.version), n, |ctx| {
                    ctx.launcher.workerd(&format!("memory-workerd-{n}"), &peer.program, n, false)
                }),
                Err(reason) => failed("workerd", n, reason),
            };
            results.workerd.push(row);
        }
        for n in ctx.plan.memory_thread_counts.clone() {
            let row = match ctx.peers.responder.clone() {
                Ok(peer) => scale_row(ctx, "thread per tenant (C)", n, |ctx| {
                    ctx.launcher.responder_threads(&format!("memory-threads-{n}"), &peer.program, n)
                }),
                Err(reason) => failed("thread per tenant (C)", n, reason),
            };
            results.threads.push(row);
        }
        let count = ctx.plan.memory_processes;
        results.processes.push(match ctx.peers.responder.clone() {
            Ok(peer) => process_row(ctx, "process per tenant (C)", count, |ctx| {
                ctx.launcher.responder_processes("memory-processes", &peer.program, count)
            }),
            Err(reason) => ProcessRow::failed("process per tenant (C)", count, reason),
        });
        let runtimes = [
            (Runtime::Node, ctx.peers.node.clone()),
            (Runtime::Bun, ctx.peers.bun.clone()),
            (Runtime::Deno, ctx.peers.deno.clone()),
        ];
        for (runtime, peer) in runtimes {
            let name = format!("{} per tenant", runtime.name());
            let row = match peer {
                Ok(peer) => process_row(ctx, &format!("{name} ({})", peer.version), count, |ctx| {
                    ctx.launcher.runtime_processes(
                        &format!("memory-{}", runtime.name()),
                        runtime,
                        &peer.program,
                        count,
                        false,
                    )
                }),
                Err(reason) => ProcessRow::failed(&name, count, reason),
            };
            results.processes.push(row);
        }
    }
    for rows in [&mut results.isobar, &mut results.workerd, &mut results.threads] {
        slopes(rows);
    }
    results
}

fn failed(system: &str, tenants: usize, reason: String) -> ScaleRow {
    ScaleRow {
        system: system.to_string(),
        tenants,
        rss_before_bytes: None,
        rss_after_bytes: 0,
        per_tenant_in_process_bytes: None,
        per_tenant_slope_bytes: None,
        error: Some(reason),
    }
}

impl ProcessRow {
    fn failed(system: &str, processes: usize, reason: String) -> ProcessRow {
        ProcessRow { system: system.to_string(), processes, rss_bytes: None, uss_bytes: None, error: Some(reason) }
    }
}

fn scale_row(
    ctx: &mut Context,
    system: &str,
    n: usize,
    start: impl FnOnce(&mut Context) -> Result<Server>,
) -> ScaleRow {
    let measured = (|| -> Result<(u64, u64)> {
        let mut server = start(ctx)?;
        on_client(&ctx.client, || server.wait_listening(Duration::from_secs(600)))?;
        // Let isobar's core fill its pool of ready isolates, so "before" includes it.
        std::thread::sleep(Duration::from_millis(1500));
        let before = server.memory().rss_bytes;
        on_client(&ctx.client, || server.warm_up("/", None))?;
        std::thread::sleep(Duration::from_millis(500));
        server.check_alive()?;
        Ok((before, server.memory().rss_bytes))
    })();
    match measured {
        Ok((before, after)) => {
            let in_process = system == "isobar";
            ScaleRow {
                system: system.to_string(),
                tenants: n,
                rss_before_bytes: in_process.then_some(before),
                rss_after_bytes: after,
                per_tenant_in_process_bytes: in_process.then(|| (after as f64 - before as f64) / n as f64),
                per_tenant_slope_bytes: None,
                error: None,
            }
        }
        Err(error) => failed(system, n, format!("{error:#}")),
    }
}

fn slopes(rows: &mut [ScaleRow]) {
    let Some(base) = rows.iter().find(|r| r.error.is_none()).map(|r| (r.tenants, r.rss_after_bytes)) else { return };
    for row in rows.iter_mut() {
        if row.error.is_none() && row.tenants > base.0 {
            row.per_tenant_slope_bytes =
                Some((row.rss_after_bytes as f64 - base.1 as f64) / (row.tenants - base.0) as f64);
        }
    }
}

fn process_row(
    ctx: &mut Context,
    system: &str,
    count: usize,
    start: impl FnOnce(&mut Context) -> Result<Server>,
) -> ProcessRow {
    let measured = (|| -> Result<(Vec<f64>, Vec<f64>)> {
        let mut server = start(ctx)?;
        on_client(&ctx.client, || {
            server.wait_listening(Duration::from_secs(120))?;
            server.warm_up("/", None)
        })?;
        std::thread::sleep(Duration::from_millis(300));
        let memory: Vec<procfs::Memory> = server.pids().into_iter().map(procfs::memory).collect();
        Ok((memory.iter().map(|m| m.rss_bytes as f64).collect(), memory.iter().map(|m| m.uss_bytes as f64).collect()))
    })();
    match measured {
        Ok((rss, uss)) => ProcessRow {
            system: system.to_string(),
            processes: count,
            rss_bytes: Spread::of(&rss),
            uss_bytes: Spread::of(&uss),
            error: None,
        },
        Err(error) => ProcessRow::failed(system, count, format!("{error:#}")),
    }
}
