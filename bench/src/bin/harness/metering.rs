//! Scenario 5, metering: isobar's per-tenant CPU counters (`GET /tenants/NAME` on the admin
//! API, the same numbers as `isobar_tenant_cpu_seconds`) against the core thread's CPU clock
//! (its schedstat, read from /proc) for known workloads: a hello-world tenant and a tenant
//! spinning a fixed number of loop iterations per request. Each workload is served alone for a
//! window; the counters and the clock are read at the window's edges.
//!
//! What the meter leaves out is the work outside the isolate (HTTP, the ring, routing): a cost
//! per request that should not depend on the workload. So the accuracy figure is the
//! incremental one: (metered spin - metered hello) / (thread spin - thread hello), per round;
//! 1.0 means every extra microsecond the script ran was billed to it.
//!
//! The overhead of metering itself cannot be measured with and without here: isobar has no
//! switch that turns it off (limits depend on it). What this measures instead is the price of
//! what metering does per entry into an isolate — two reads of the monotonic clock (vDSO; the
//! thread CPU clock, a system call, is read only for entries the watchdog saw, which are at
//! least a polling period long) and two uncontended lock/unlock pairs of the core's watchdog
//! slot — timed on the client CPU, next to hello world's CPU per request. The thread CPU clock's
//! price is measured too, as what an entry would pay if it read that clock instead.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::Context;
use crate::load::{self, Client, LoadSpec, Phase};
use crate::measure::{Spread, on_client};
use crate::procfs;
use crate::servers::{IsobarTenants, worker_module};

#[derive(Debug, Serialize)]
pub struct MeteringResults {
    pub workloads: Vec<Workload>,
    /// (metered spin - metered hello) / (thread spin - thread hello), per spin workload.
    pub incremental_accuracy: Vec<(String, Option<Spread>)>,
    pub overhead: Option<Overhead>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Workload {
    pub name: String,
    pub rounds: Vec<Reading>,
    pub thread_us_per_request: Option<Spread>,
    pub metered_us_per_request: Option<Spread>,
    /// thread - metered, per request: what the meter leaves out.
    pub unmetered_us_per_request: Option<Spread>,
    /// metered / thread.
    pub metered_share: Option<Spread>,
}

/// One window of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Reading {
    pub round: usize,
    pub requests: u64,
    pub metered_requests: u64,
    pub thread_cpu_us: f64,
    pub metered_cpu_us: f64,
}

#[derive(Debug, Serialize)]
pub struct Overhead {
    /// One clock_gettime(CLOCK_MONOTONIC) (`Instant::now()`).
    pub clock_read_ns: f64,
    /// One clock_gettime(CLOCK_THREAD_CPUTIME_ID), for comparison.
    pub thread_clock_read_ns: f64,
    /// One uncontended Mutex lock + unlock.
    pub lock_unlock_ns: f64,
    /// Two of each: what metering and the watchdog add to one entry into an isolate.
    pub per_entry_ns: f64,
    /// per_entry over hello world's server CPU per request (this scenario's median).
    pub share_of_hello: Option<f64>,
}

const SPIN_SCRIPT: &str = "export default {\n  async fetch(request) {\n    const url = request.url;\n    \
    const n = Number(url.slice(url.indexOf(\"?n=\") + 3)) || 0;\n    let x = 0;\n    \
    for (let i = 0; i < n; i++) x = (x * 31 + i) | 0;\n    return new Response(String(x));\n  },\n};\n";

pub fn run(ctx: &mut Context) -> MeteringResults {
    let mut results = MeteringResults { workloads: vec![], incremental_accuracy: vec![], overhead: None, error: None };
    if let Err(error) = measure_workloads(ctx, &mut results) {
        results.error = Some(format!("{error:#}"));
    }
    let hello_cpu = results.workloads.first().and_then(|w| w.thread_us_per_request).map(|s| s.median);
    results.overhead = Some(overhead(hello_cpu));
    results
}

fn measure_workloads(ctx: &mut Context, results: &mut MeteringResults) -> Result<()> {
    let mut spec = IsobarTenants::new("metering", &ctx.isobar, 2);
    spec.script = Box::new(|i| if i == 0 { worker_module(0, "tenant 0\n") } else { SPIN_SCRIPT.to_string() });
    spec.admin = true;
    spec.cpu_ms = 10_000;
    let mut server = ctx.launcher.isobar_tenants(&spec)?;
    let admin = server.admin.context("the admin listener")?;
    let pid = *server.pids().first().context("the isobar process")?;
    on_client(&ctx.client, || server.wait_listening(Duration::from_secs(60)))?;
    let mut workloads: Vec<(String, &str, String)> = vec![("hello".into(), "t0", "/".into())];
    for n in &ctx.plan.metering_spins {
        workloads.push((format!("spin {n} iterations"), "t1", format!("/?n={n}")));
    }
    let mut readings: Vec<Vec<Reading>> = vec![Vec::new(); workloads.len()];
    for round in 0..ctx.plan.rounds {
        for k in 0..workloads.len() {
            let i = (k + round) % workloads.len();
            let (_, tenant, path) = &workloads[i];
            let tenant_index = if *tenant == "t0" { 0 } else { 1 };
            let (endpoints, mut requests) = server.rotation(tenant_index..tenant_index + 1, "/");
            requests[0] = load::Request::get(requests[0].endpoint, &format!("{tenant}.bench"), path);
            let load_spec = LoadSpec {
                endpoints,
                requests,
                concurrency: 1,
                warmup: ctx.plan.warmup,
                duration: ctx.plan.metering_window,
                requests_max: ctx.plan.requests_max,
            };
            let reading = on_client(&ctx.client, || window(pid, admin, tenant, &load_spec))?;
            readings[i].push(Reading { round, ..reading });
        }
        server.check_alive()?;
    }
    for ((name, _, _), rounds) in workloads.iter().zip(readings) {
        let per = |f: &dyn Fn(&Reading) -> f64| Spread::of(&rounds.iter().map(f).collect::<Vec<_>>());
        results.workloads.push(Workload {
            name: name.clone(),
            thread_us_per_request: per(&|r| r.thread_cpu_us / r.requests.max(1) as f64),
            metered_us_per_request: per(&|r| r.metered_cpu_us / r.metered_requests.max(1) as f64),
            unmetered_us_per_request: per(&|r| {
                r.thread_cpu_us / r.requests.max(1) as f64 - r.metered_cpu_us / r.metered_requests.max(1) as f64
            }),
            metered_share: per(&|r| {
                (r.metered_cpu_us / r.metered_requests.max(1) as f64) / (r.thread_cpu_us / r.requests.max(1) as f64)
            }),
            rounds,
        });
    }
    let per_request =
        |r: &Reading| (r.thread_cpu_us / r.requests.max(1) as f64, r.metered_cpu_us / r.metered_requests.max(1) as f64);
    if let Some((hello, spins)) = results.workloads.split_first() {
        for spin in spins {
            let ratios: Vec<f64> = spin
                .rounds
                .iter()
                .filter_map(|s| {
                    let h = hello.rounds.iter().find(|h| h.round == s.round)?;
                    let ((ts, ms), (th, mh)) = (per_request(s), per_request(h));
                    Some((ms - mh) / (ts - th))
                })
                .collect();
            results.incremental_accuracy.push((spin.name.clone(), Spread::of(&ratios)));
        }
    }
    Ok(())
}

/// One window: the core thread's CPU clock and the tenant's counters at its edges.
fn window(pid: u32, admin: SocketAddr, tenant: &str, spec: &LoadSpec) -> Result<Reading> {
    let mut admin_client = Client::connect(admin, Duration::from_secs(5))?;
    let mut edges = Vec::<Result<(Duration, f64, u64)>>::new();
    let result = load::run(spec, &mut |_phase: Phase| {
        let thread = procfs::thread_cpu(pid, "isobar-core-0");
        let stats = tenant_stats(&mut admin_client, tenant);
        let reading = match (thread, stats) {
            (Some(thread), Ok((cpu, requests))) => Ok((thread, cpu, requests)),
            (None, _) => Err(anyhow::anyhow!("no thread isobar-core-0 in process {pid}")),
            (_, Err(error)) => Err(error),
        };
        edges.push(reading);
    })?;
    if edges.len() != 2 {
        bail!("the window had {} edges", edges.len());
    }
    let end = edges.pop().context("end")??;
    let start = edges.pop().context("start")??;
    Ok(Reading {
        round: 0,
        requests: result.requests,
        metered_requests: end.2.saturating_sub(start.2),
        thread_cpu_us: end.0.saturating_sub(start.0).as_secs_f64() * 1e6,
        metered_cpu_us: (end.1 - start.1) * 1e6,
    })
}

/// The tenant's metered CPU seconds and request count.
fn tenant_stats(client: &mut Client, tenant: &str) -> Result<(f64, u64)> {
    let (status, body) = client.get("admin", &format!("/tenants/{tenant}"))?;
    if status != 200 {
        bail!("GET /tenants/{tenant} answered {status}");
    }
    let value: serde_json::Value = serde_json::from_slice(&body).context("the admin API's JSON")?;
    let cpu = value["stats"]["cpu_seconds"].as_f64().context("stats.cpu_seconds")?;
    let requests = value["stats"]["requests"].as_u64().context("stats.requests")?;
    Ok((cpu, requests))
}

/// The price of metering's per-entry work, timed on this thread by its own CPU clock (so time
/// the thread spends preempted on a shared machine does not count).
fn overhead(hello_cpu_us: Option<f64>) -> Overhead {
    const CALLS: u32 = 1_000_000;
    let started = load::thread_cpu();
    for _ in 0..CALLS {
        std::hint::black_box(nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok());
    }
    let thread_clock_ns = load::thread_cpu().saturating_sub(started).as_nanos() as f64 / f64::from(CALLS);
    let started = load::thread_cpu();
    for _ in 0..CALLS {
        std::hint::black_box(std::time::Instant::now());
    }
    let clock_ns = load::thread_cpu().saturating_sub(started).as_nanos() as f64 / f64::from(CALLS);
    let lock = Mutex::new(0u64);
    let started = load::thread_cpu();
    for _ in 0..CALLS {
        if let Ok(mut guard) = std::hint::black_box(&lock).lock() {
            *guard += 1;
        }
    }
    let lock_ns = load::thread_cpu().saturating_sub(started).as_nanos() as f64 / f64::from(CALLS);
    let per_entry_ns = 2.0 * clock_ns + 2.0 * lock_ns;
    Overhead {
        clock_read_ns: clock_ns,
        thread_clock_read_ns: thread_clock_ns,
        lock_unlock_ns: lock_ns,
        per_entry_ns,
        share_of_hello: hello_cpu_us.map(|us| per_entry_ns / (us * 1000.0)),
    }
}
