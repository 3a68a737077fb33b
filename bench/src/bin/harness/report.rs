//! The run's results: the JSON file (everything, every round), the Markdown sections that
//! replace the marked parts of BENCHMARKS.md (`<!-- harness:begin NAME -->` to
//! `<!-- harness:end NAME -->`; the rest of the file is left as it is), the "Report against"
//! targets stated as met or not with their ratio, and the summary printed at the end. It
//! formats; it measures nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::coldstart::ColdStartResults;
use crate::cron::CronResults;
use crate::kv::{KvResults, Op};
use crate::measure::{Series, Spread};
use crate::memory::MemoryResults;
use crate::metering::MeteringResults;
use crate::proxy::ProxyResults;
use crate::switch::SwitchResults;
use crate::throughput::ThroughputResults;
use crate::tls::TlsResults;
use crate::tls_load::Reuse;
use crate::{Context, Mode, Plan, Scenario};

#[derive(Debug, Serialize)]
pub struct Results {
    pub mode: Mode,
    pub started: String,
    pub seconds: f64,
    pub command: String,
    pub machine: Machine,
    pub isobar: Build,
    pub baseline: Option<PathBuf>,
    pub peers: serde_json::Value,
    pub plan: Plan,
    pub scenarios: Vec<Scenario>,
    pub switch: Option<SwitchResults>,
    pub coldstart: Option<ColdStartResults>,
    pub memory: Option<MemoryResults>,
    pub throughput: Option<ThroughputResults>,
    pub metering: Option<MeteringResults>,
    pub kv: Option<KvResults>,
    pub cron: Option<CronResults>,
    pub proxy: Option<ProxyResults>,
    pub tls: Option<TlsResults>,
    pub targets: Vec<Target>,
    pub plots: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub server_cpu: usize,
    pub client_cpu: usize,
    pub kernel: String,
    pub memory_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Build {
    pub binary: PathBuf,
    pub commit: String,
}

/// One "Report against" line of the issue.
#[derive(Debug, Serialize)]
pub struct Target {
    pub claim: String,
    pub measured: String,
    /// Measured over target, oriented so that <= 1.0 meets it (>= 1.0 for the switch ratio).
    pub ratio: Option<f64>,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

impl Results {
    pub fn new(ctx: &Context, scenarios: &[Scenario]) -> Results {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        Results {
            mode: ctx.plan.mode,
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            seconds: 0.0,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: Machine {
                cpus: ctx.cpus,
                server_cpu: ctx.server_cpu,
                client_cpu: ctx.client_cpu,
                kernel,
                memory_bytes,
            },
            isobar: Build { binary: ctx.isobar.clone(), commit: commit(&ctx.workspace) },
            baseline: ctx.baseline.clone(),
            peers: ctx.peers.describe(),
            plan: ctx.plan.clone(),
            scenarios: scenarios.to_vec(),
            switch: None,
            coldstart: None,
            memory: None,
            throughput: None,
            metering: None,
            kv: None,
            cron: None,
            proxy: None,
            tls: None,
            targets: vec![],
            plots: vec![],
        }
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.seconds = elapsed.as_secs_f64();
        self.targets = targets(self);
    }
}

fn commit(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // The harness's own outputs do not make the measured build different.
    let dirty = git(&["status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md", ":!bench/plots"])
        .is_some_and(|s| !s.is_empty());
    if dirty { format!("{head} (with uncommitted changes)") } else { head }
}

/// Writes the results as `<mode>-<time>.json` and `latest-<mode>.json` in `out`.
pub fn write_json(results: &Results, out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let text = serde_json::to_string_pretty(results).context("serialize the results")?;
    let stamp = results.started.replace(':', "");
    let mode = if results.mode == Mode::Quick { "quick" } else { "full" };
    let path = out.join(format!("{mode}-{stamp}.json"));
    std::fs::write(&path, &text).with_context(|| path.display().to_string())?;
    std::fs::write(out.join(format!("latest-{mode}.json")), &text).context("write latest results")?;
    Ok(path)
}

// ---- formatting ----

fn us(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else if v.abs() >= 100.0 {
        format!("{v:.0} us")
    } else {
        format!("{v:.1} us")
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn mb(bytes: f64) -> String {
    let v = bytes / 1e6;
    if v.abs() >= 100.0 {
        format!("{v:.0} MB")
    } else if v.abs() >= 10.0 {
        format!("{v:.1} MB")
    } else {
        format!("{v:.3} MB")
    }
}

fn count(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// "median (min-max)" with a unit formatter.
fn spread(s: Option<Spread>, unit: fn(f64) -> String) -> String {
    match s {
        Some(s) if s.count > 1 => format!("{} ({}–{})", unit(s.median), unit(s.min), unit(s.max)),
        Some(s) => unit(s.median),
        None => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.abs() > f64::EPSILON => format!("{:.2}x", a / b),
        _ => "–".into(),
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn first_error(errors: &[String]) -> Option<String> {
    errors.first().map(|e| {
        let more = if errors.len() > 1 { format!(" (and {} more)", errors.len() - 1) } else { String::new() };
        format!("{}{more}", cell(e))
    })
}

/// The common line under every section: when, what build, how.
fn provenance(results: &Results) -> String {
    // The cron scenario watches the clock once; it has no rounds.
    let rounds = if results.scenarios.iter().all(|s| *s == Scenario::Cron) {
        String::new()
    } else {
        format!(", {} rounds", results.plan.rounds)
    };
    format!(
        "Measured {} by `{}` ({} mode{rounds}, {:.0} s in all) at isobar commit `{}` ({} build), on {} CPUs \
         (server on CPU {}, client on CPU {}), Linux {}.",
        results.started.get(..10).unwrap_or(&results.started),
        command_line(results),
        if results.mode == Mode::Quick { "quick" } else { "full" },
        results.seconds,
        results.isobar.commit,
        if results.isobar.binary.components().any(|c| c.as_os_str() == "debug") { "debug" } else { "release" },
        results.machine.cpus,
        results.machine.server_cpu,
        results.machine.client_cpu,
        results.machine.kernel,
    )
}

fn command_line(results: &Results) -> String {
    let args: Vec<&str> = results.command.split_whitespace().skip(1).collect();
    format!("cargo run --release -p isobar-bench --bin harness -- {}", args.join(" "))
}

// ---- sections ----

/// An added cost per switch below this is within the noise of a shared machine: no ratio to it.
const NOISE_US: f64 = 1.0;

/// Every section this run can write, by marker name.
pub fn sections(results: &Results) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if Scenario::TARGETS.iter().all(|s| results.scenarios.contains(s)) {
        out.push(("targets", targets_section(results)));
    }
    if let Some(r) = &results.switch {
        out.push(("switch", switch_section(results, r)));
    }
    if let Some(r) = &results.coldstart {
        out.push(("coldstart", coldstart_section(results, r)));
    }
    if let Some(r) = &results.memory {
        out.push(("memory", memory_section(results, r)));
    }
    if let Some(r) = &results.throughput {
        out.push(("throughput", throughput_section(results, r)));
    }
    if let Some(r) = &results.metering {
        out.push(("metering", metering_section(results, r)));
    }
    if let Some(r) = &results.kv {
        out.push(("kv", kv_section(results, r)));
    }
    if let Some(r) = &results.cron {
        out.push(("cron", cron_section(results, r)));
    }
    if let Some(r) = &results.proxy {
        out.push(("proxy", proxy_section(results, r)));
    }
    if let Some(r) = &results.tls {
        out.push(("tls", tls_section(results, r)));
    }
    out
}

fn targets_section(results: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", provenance(results));
    let _ = writeln!(s, "| target (issue 11, \"Report against\") | measured | ratio | met |\n|---|---|---:|---|");
    for t in &results.targets {
        let met = match t.met {
            Some(true) => "**met**",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let ratio = t.ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into());
        let _ = writeln!(s, "| {} | {} | {ratio} | {met} |", cell(&t.claim), cell(&t.measured));
    }
    let _ = writeln!(s, "\nPeers: {}.", peers_line(&results.peers));
    if !results.plots.is_empty() {
        let names: Vec<String> = results
            .plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| format!("[{0}](bench/plots/{0})", n.to_string_lossy())))
            .collect();
        let _ = writeln!(s, "Plots: {}.", names.join(", "));
    }
    s
}

fn peers_line(peers: &serde_json::Value) -> String {
    let Some(map) = peers.as_object() else { return "none".into() };
    map.iter()
        .map(|(name, v)| match (v["version"].as_str(), v["missing"].as_str()) {
            (Some(version), _) => format!("{name} `{version}`"),
            (None, Some(missing)) => format!("{name}: {missing}"),
            _ => name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn switch_section(results: &Results, r: &SwitchResults) -> String {
    let mut s = String::new();
    let plan = &results.plan;
    let _ = writeln!(
        s,
        "N tenants, each a different script, served round-robin (request k to tenant k mod N) on one pinned CPU, \
         against all requests to tenant 0 of the same server; {} requests in flight, {:.2} s windows after {:.2} s \
         of warm-up, {} rounds with every system up at once and taking turns. Server CPU is every thread of every \
         process of the server (the process CPU clocks) per request; \"added per switch\" is round-robin minus one \
         tenant, paired round by round, and \"vs isobar\" its ratio to isobar's (shown when isobar's is above \
         {NOISE_US} us). With fewer tenants than requests in flight a process serves several requests per wake-up \
         (see the context switches). Medians, with the range over rounds.\n",
        r.concurrency,
        plan.window.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.rounds
    );
    for working_set in [false, true] {
        let title = if working_set {
            "Each request first writes the tenant's own 64 KiB working set (`Uint8Array.fill` in JS, `memset` in C):"
        } else {
            "Trivial handler:"
        };
        let _ = writeln!(s, "{title}\n");
        let _ = writeln!(
            s,
            "| tenants | system | CPU / request, round-robin | one tenant | added per switch | vs isobar | req/s, round-robin | p99 | context switches / request | {} |",
            if working_set { "RSS after" } else { "RSS warm" }
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for group in &r.groups {
            let isobar_added = group
                .systems
                .iter()
                .find(|sys| sys.system == "isobar")
                .and_then(|sys| sys.added_per_switch(working_set))
                .map(|a| a.median);
            for sys in &group.systems {
                let n = count(group.tenants as f64);
                if let Some(error) = &sys.error {
                    let _ = writeln!(s, "| {n} | {} | {} | | | | | | | |", sys.system, cell(error));
                    continue;
                }
                let rr = sys.variant(working_set, true);
                let one = if group.tenants == 1 { rr } else { sys.variant(working_set, false) };
                let get = |v: Option<&crate::switch::Variant>, f: &str| v.and_then(|v| v.series.spread(f));
                let added = if group.tenants == 1 { None } else { sys.added_per_switch(working_set) };
                let vs = match isobar_added {
                    _ if sys.system == "isobar" => String::new(),
                    Some(base) if base > NOISE_US => ratio(added.map(|a| a.median), Some(base)),
                    _ => "–".into(),
                };
                let memory = if working_set { sys.memory_after } else { sys.memory_warm };
                let errors = rr.map(|v| v.series.errors.clone()).unwrap_or_default();
                let note = first_error(&errors).map(|e| format!(" (failed rounds: {e})")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "| {n} | {}{note} | {} | {} | {} | {vs} | {} | {} | {} | {} |",
                    sys.system,
                    spread(get(rr, "server_cpu_us_per_request"), us),
                    spread(get(one, "server_cpu_us_per_request"), us),
                    if group.tenants == 1 { "–".into() } else { spread(added, us) },
                    get(rr, "requests_per_second").map(|v| count(v.median)).unwrap_or_else(|| "–".into()),
                    get(rr, "p99_us").map(|v| us(v.median)).unwrap_or_else(|| "–".into()),
                    get(rr, "context_switches_per_request")
                        .map(|v| format!("{:.2}", v.median))
                        .unwrap_or_else(|| "–".into()),
                    memory.map(|m| mb(m.rss_bytes as f64)).unwrap_or_else(|| "–".into()),
                );
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "RSS of a process-per-tenant row is the sum over its processes (shared pages counted in each); \
         memory per tenant without double counting is in the memory section. Plot: [switch.svg](bench/plots/switch.svg)."
    );
    s
}

fn coldstart_section(results: &Results, r: &ColdStartResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Process launch to first 200 (hello world), each system launched on CPU 0 in turn, {} rounds, polled every \
         0.2 ms from CPU 1 on a fresh port; one unmeasured launch each first. Medians, with the range. The CPU time \
         (the process's CPU clock) is what the other work on a shared host cannot inflate.\n",
        results.plan.coldstart_rounds
    );
    let isobar = r.launches.iter().find(|l| l.system == "isobar run").and_then(|l| l.spread).map(|s| s.median);
    let _ =
        writeln!(s, "| system | launch -> first 200 | vs isobar run | its CPU time by then |\n|---|---:|---:|---:|");
    for row in &r.launches {
        match (&row.spread, first_error(&row.errors)) {
            (Some(sp), _) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    row.system,
                    spread(Some(*sp), ms),
                    ratio(Some(sp.median), isobar),
                    spread(row.cpu_spread, ms)
                );
            }
            (None, error) => {
                let _ = writeln!(s, "| {} | {} | | |", row.system, error.unwrap_or_default());
            }
        }
    }
    let _ = writeln!(
        s,
        "\nA new tenant inside a running isobar (one core; tenants deployed but never requested; their first request on \
         an open connection, new tenants 20 ms apart; the admin API rows deploy a new tenant with `PUT /tenants/NAME` \
         and then request it):\n"
    );
    let _ = writeln!(s, "| case | time | server CPU time | samples |\n|---|---:|---:|---:|");
    for row in &r.new_tenants {
        let errors = first_error(&row.errors).map(|e| format!(" (errors: {e})")).unwrap_or_default();
        let _ = writeln!(
            s,
            "| {}{errors} | {} | {} | {} |",
            row.system,
            spread(row.spread, ms),
            spread(row.cpu_spread, ms),
            row.samples_ms.len()
        );
    }
    let _ = writeln!(s, "\nPlot: [coldstart.svg](bench/plots/coldstart.svg).");
    s
}

fn memory_section(_results: &Results, r: &MemoryResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "isobar: one `serve` per N on one core, RSS with the pool of ready isolates full and no tenant live, then after \
         one request to each tenant (each a different script). workerd: one worker per tenant (each its own script and \
         socket) in one process, all loaded at start; per tenant is the growth from the smallest N. MB = 10^6 bytes.\n"
    );
    let _ = writeln!(
        s,
        "| system | tenants | RSS before | RSS after one request each | per live tenant (in process) | per tenant (growth from smallest N) |\n|---|---:|---:|---:|---:|---:|"
    );
    for row in r.isobar.iter().chain(&r.workerd).chain(&r.threads) {
        if let Some(error) = &row.error {
            let _ = writeln!(s, "| {} | {} | {} | | | |", row.system, count(row.tenants as f64), cell(error));
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            row.system,
            count(row.tenants as f64),
            row.rss_before_bytes.map(|b| mb(b as f64)).unwrap_or_else(|| "–".into()),
            mb(row.rss_after_bytes as f64),
            row.per_tenant_in_process_bytes.map(mb).unwrap_or_else(|| "–".into()),
            row.per_tenant_slope_bytes.map(mb).unwrap_or_else(|| "–".into()),
        );
    }
    if !r.processes.is_empty() {
        let _ = writeln!(
            s,
            "\nOne process per tenant, several running at once (so a binary's text is shared, as it would be): USS is \
             the memory only that process holds (smaps_rollup Private_Clean + Private_Dirty), what one more tenant \
             costs; RSS counts shared pages too.\n"
        );
        let _ = writeln!(s, "| system | processes | USS per process | RSS per process |\n|---|---:|---:|---:|");
        for row in &r.processes {
            if let Some(error) = &row.error {
                let _ = writeln!(s, "| {} | {} | {} | |", row.system, row.processes, cell(error));
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                row.system,
                row.processes,
                spread(row.uss_bytes, mb),
                spread(row.rss_bytes, mb)
            );
        }
    }
    let _ = writeln!(s, "\nPlot: [memory.svg](bench/plots/memory.svg).");
    s
}

fn throughput_section(results: &Results, r: &ThroughputResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Hello world (`examples/hello.js` on isobar and workerd, the same response from the others), every server on \
         CPU 0 and up at once, the harness's client on CPU 1, {:.1} s windows, {} rounds taking turns; {}. Medians \
         with the range; ratios to isobar on kernel sockets at the same connection count.\n",
        results.plan.throughput_window.as_secs_f64(),
        results.plan.rounds,
        r.network
    );
    let _ = writeln!(
        s,
        "| system | connections | req/s | vs isobar | p50 | p99 | server CPU / request | CPU vs isobar | client CPU share |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let connections: Vec<usize> = results.plan.throughput_connections.clone();
    for c in connections {
        let isobar = r.systems.first().and_then(|sys| sys.series(c));
        let base_rps = isobar.and_then(|x| x.median("requests_per_second"));
        let base_cpu = isobar.and_then(|x| x.median("server_cpu_us_per_request"));
        for sys in &r.systems {
            if let Some(error) = &sys.error {
                if c == results.plan.throughput_connections[0] {
                    let _ = writeln!(s, "| {} | | {} | | | | | | |", sys.system, cell(error));
                }
                continue;
            }
            let Some(series) = sys.series(c) else { continue };
            row_for(&mut s, &sys.system, c, series, base_rps, base_cpu);
        }
    }
    let _ = writeln!(
        s,
        "\nWith the userspace stack, the client's kernel TCP receive runs inside isobar's write to the TAP and counts as \
         isobar's CPU. A client CPU share near 1 means the load generator, not the server, set the pace: compare \
         those rows by server CPU per request. Plots: [throughput.svg](bench/plots/throughput.svg), \
         [latency.svg](bench/plots/latency.svg), [cpu.svg](bench/plots/cpu.svg)."
    );
    s
}

fn row_for(s: &mut String, system: &str, c: usize, series: &Series, base_rps: Option<f64>, base_cpu: Option<f64>) {
    let note = first_error(&series.errors).map(|e| format!(" (failed rounds: {e})")).unwrap_or_default();
    let _ = writeln!(
        s,
        "| {system}{note} | {} | {} | {} | {} | {} | {} | {} | {} |",
        count(c as f64),
        spread(series.spread("requests_per_second"), count),
        ratio(series.median("requests_per_second"), base_rps),
        series.median("p50_us").map(us).unwrap_or_else(|| "–".into()),
        spread(series.spread("p99_us"), us),
        spread(series.spread("server_cpu_us_per_request"), us),
        ratio(series.median("server_cpu_us_per_request"), base_cpu),
        series.median("client_cpu_share").map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into()),
    );
}

fn metering_section(results: &Results, r: &MeteringResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "isobar's per-tenant CPU counter (admin API `GET /tenants/NAME`, the same figure as \
         `isobar_tenant_cpu_seconds`) against the core thread's CPU clock (`isobar-core-0`'s schedstat), each workload \
         served alone with one request in flight for {:.1} s windows, {} rounds taking turns.\n",
        results.plan.metering_window.as_secs_f64(),
        results.plan.rounds
    );
    if let Some(error) = &r.error {
        let _ = writeln!(s, "Error: {}\n", cell(error));
    }
    let _ = writeln!(
        s,
        "| workload | core thread CPU / request | metered / request | not metered / request | metered share |\n|---|---:|---:|---:|---:|"
    );
    for w in &r.workloads {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            w.name,
            spread(w.thread_us_per_request, us),
            spread(w.metered_us_per_request, us),
            spread(w.unmetered_us_per_request, us),
            spread(w.metered_share, |v| format!("{v:.3}")),
        );
    }
    for (name, accuracy) in &r.incremental_accuracy {
        let _ = writeln!(
            s,
            "\n{name}: of the CPU the spinning adds over hello world, the meter bills **{}** (1.000 = all of it).",
            spread(*accuracy, |v| format!("{v:.3}"))
        );
    }
    if let Some(o) = &r.overhead {
        let _ = writeln!(
            s,
            "\nMetering's own cost: isobar has **no switch to turn metering off** (CPU limits depend on it), so a \
             with/without comparison is missing. Per entry into an isolate it reads the monotonic clock twice \
             ({:.0} ns each here; the thread CPU clock, {:.0} ns a read, only for entries the watchdog saw) and \
             takes the core's watchdog slot lock twice ({:.0} ns per uncontended lock/unlock): about {:.2} us per \
             request{}.",
            o.clock_read_ns,
            o.thread_clock_read_ns,
            o.lock_unlock_ns,
            o.per_entry_ns / 1000.0,
            o.share_of_hello
                .map(|f| format!(", {:.1}% of hello world's core CPU per request above", f * 100.0))
                .unwrap_or_default()
        );
    }
    s
}

fn kv_section(results: &Results, r: &KvResults) -> String {
    let mut s = String::new();
    let plan = &results.plan;
    let _ = writeln!(
        s,
        "One Worker (the same ES module on every system) does one KV operation per request: `get` or `put` of a \
         {}-byte value over {} keys written through it first, in a scattered order; \"no KV\" is the same route \
         without the operation. Every server and its store on CPU 0, all up at once, the harness's client on CPU \
         1, {:.2} s windows after {:.2} s of warm-up, {} rounds taking turns. Server CPU is every process of the \
         system (front end and store) per request; \"store\" is the store's own processes (redis-server, or the \
         service behind workerd's binding); the embedded store is a thread of isobar's. Medians with the range; \
         ratios to isobar's embedded store at the same operation and connections. Redis-protocol server: {}. \
         {}\n",
        r.value_bytes,
        count(r.keys as f64),
        plan.kv_window.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.rounds,
        r.redis,
        provenance(results),
    );
    let _ = writeln!(
        s,
        "| system | op | connections | ops/s | vs embedded | p50 | p99 | server CPU / op | of which store | CPU vs embedded | client CPU share |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &connections in &plan.kv_connections {
        for op in Op::ALL {
            let base = r.systems.first().and_then(|sys| sys.cell(op, connections));
            let base_rps = base.and_then(|c| c.series.median("requests_per_second"));
            let base_cpu = base.and_then(|c| c.series.median("server_cpu_us_per_request"));
            for sys in &r.systems {
                let Some(cell) = sys.cell(op, connections) else { continue };
                let series = &cell.series;
                let note = first_error(&series.errors).map(|e| format!(" (failed rounds: {e})")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "| {}{note} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    sys.system,
                    op.name(),
                    count(connections as f64),
                    spread(series.spread("requests_per_second"), count),
                    ratio(series.median("requests_per_second"), base_rps),
                    series.median("p50_us").map(us).unwrap_or_else(|| "–".into()),
                    spread(series.spread("p99_us"), us),
                    spread(series.spread("server_cpu_us_per_request"), us),
                    cell.store_cpu.map(|c| us(c.median)).unwrap_or_else(|| "in process".into()),
                    ratio(series.median("server_cpu_us_per_request"), base_cpu),
                    series.median("client_cpu_share").map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into()),
                );
            }
        }
    }
    let unavailable: Vec<String> = r
        .systems
        .iter()
        .filter(|sys| sys.cells.is_empty())
        .map(|sys| format!("{}: {}", sys.system, cell(sys.error.as_deref().unwrap_or("not measured"))))
        .collect();
    if !unavailable.is_empty() {
        let _ = writeln!(s, "\nNot measured in this run:\n");
        for line in unavailable {
            let _ = writeln!(s, "- {line}");
        }
    }
    let _ = writeln!(s, "\nWhat each store promises when the Worker's `await` returns:\n");
    for sys in &r.systems {
        let _ = writeln!(s, "- {}: {}.", sys.system, sys.store);
    }
    s
}

fn cron_section(results: &Results, r: &CronResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "`isobar serve` with {} cores (not pinned to one CPU) and one tenant with `crons = [\"* * * * *\"]`, watched \
         over {} minute boundaries with nothing else running in it; `scheduled()` reports `Date.now()` (frozen at the \
         start of the event) and `controller.scheduledTime` by `fetch()` to a listener of the harness on loopback. \
         Jitter = handler start - scheduled minute, in whole milliseconds as `Date.now()` counts them (0: under \
         1 ms); arrival = the listener's receipt - scheduled minute, to the microsecond (it bounds the jitter from \
         above). {}\n",
        r.cores,
        r.minutes,
        provenance(results),
    );
    if let Some(error) = &r.error {
        let _ = writeln!(s, "Error: {}\n", cell(error));
    }
    let _ = writeln!(
        s,
        "| minute boundaries | fired exactly once | missing | fired twice or more | jitter, median (min–max) | arrival, median (min–max) |\n\
         |---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} |",
        r.minutes,
        r.fired_once,
        r.missing.len(),
        r.duplicated.len(),
        spread(r.jitter_ms, ms),
        spread(r.arrival_ms, ms),
    );
    if let Some((first, last)) = r.window_ms {
        let jitters: Vec<String> = r
            .firings
            .iter()
            .filter(|f| f.scheduled_ms >= first && f.scheduled_ms <= last)
            .map(|f| format!("{}", f.handler_ms as i64 - f.scheduled_ms as i64))
            .collect();
        let _ = writeln!(
            s,
            "\nJitter of each firing in order (ms): {}.{}",
            if jitters.is_empty() { "none".to_string() } else { jitters.join(", ") },
            if r.outside_window > 0 {
                format!(" Firings outside the watched minutes (while isobar started): {}.", r.outside_window)
            } else {
                String::new()
            }
        );
    }
    s
}

fn proxy_section(results: &Results, r: &ProxyResults) -> String {
    let mut s = String::new();
    let plan = &results.plan;
    let _ = writeln!(
        s,
        "One Worker proxies every request to a local origin with `fetch()` (same path, method and headers; the \
         origin's response returned untouched), the same handler on every system (Bun and Deno with their own \
         `fetch()`). Origin: {}, up for the whole run and shared by every proxy; proxies on CPU {}, one process \
         each (isobar: `serve`, one core), all up at once, the harness's client on CPU {}, {:.2} s windows after \
         {:.2} s of warm-up, {} rounds taking turns. \"direct\" is the client to a second origin process on the \
         server CPU, no proxy: the reference a proxy's figures add to. Server CPU is the proxy's processes \
         per request (the origin's, on the client CPU, is its own column); CPU 1 share = the client's and the \
         origin's CPU over the window (near 1: that CPU, not the proxy, was the limit). Medians with the range; \
         ratios to isobar at the same connections. {}\n",
        r.origin,
        results.machine.server_cpu,
        results.machine.client_cpu,
        plan.proxy_window.as_secs_f64(),
        plan.warmup.as_secs_f64() * 2.0,
        plan.rounds,
        provenance(results),
    );
    if let Some(error) = &r.origin_error {
        let _ = writeln!(s, "Origin error: {}\n", cell(error));
    }
    let _ = writeln!(
        s,
        "| system | connections | req/s | vs isobar | p50 | p50 over direct | p99 | server CPU / request | CPU vs isobar | origin CPU / request | CPU 1 share (client + origin) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let isobar = r.systems.iter().find(|sys| !sys.direct && sys.system.starts_with("isobar"));
    let direct = r.systems.iter().find(|sys| sys.direct);
    for &connections in &plan.proxy_connections {
        let base = isobar.and_then(|sys| sys.cell(connections));
        let base_rps = base.and_then(|c| c.series.median("requests_per_second"));
        let base_cpu = base.and_then(|c| c.series.median("server_cpu_us_per_request"));
        let direct_p50 = direct.and_then(|sys| sys.cell(connections)).and_then(|c| c.series.median("p50_us"));
        for sys in &r.systems {
            let Some(c) = sys.cell(connections) else { continue };
            let series = &c.series;
            let note = first_error(&series.errors).map(|e| format!(" (failed rounds: {e})")).unwrap_or_default();
            let p50 = series.median("p50_us");
            let over = match (p50, direct_p50) {
                (Some(p), Some(d)) if !sys.direct => format!("+{}", us(p - d)),
                _ => "–".into(),
            };
            let shares: Vec<f64> = series
                .rounds
                .iter()
                .zip(c.origin_cpu_share.iter().copied().chain(std::iter::repeat(0.0)))
                .map(|(m, origin)| m.client_cpu_share + origin)
                .collect();
            let _ = writeln!(
                s,
                "| {}{note} | {} | {} | {} | {} | {over} | {} | {} | {} | {} | {} |",
                sys.system,
                count(connections as f64),
                spread(series.spread("requests_per_second"), count),
                ratio(series.median("requests_per_second"), base_rps),
                p50.map(us).unwrap_or_else(|| "–".into()),
                spread(series.spread("p99_us"), us),
                spread(series.spread("server_cpu_us_per_request"), us),
                ratio(series.median("server_cpu_us_per_request"), base_cpu),
                c.origin_cpu.map(|o| us(o.median)).unwrap_or_else(|| "–".into()),
                Spread::of(&shares).map(|v| format!("{:.2}", v.median)).unwrap_or_else(|| "–".into()),
            );
        }
    }
    let unavailable: Vec<String> = r
        .systems
        .iter()
        .filter(|sys| sys.cells.is_empty())
        .map(|sys| format!("{}: {}", sys.system, cell(sys.error.as_deref().unwrap_or("not measured"))))
        .collect();
    if !unavailable.is_empty() {
        let _ = writeln!(s, "\nNot measured in this run:\n");
        for line in unavailable {
            let _ = writeln!(s, "- {line}");
        }
    }
    s
}

fn tls_section(results: &Results, r: &TlsResults) -> String {
    let mut s = String::new();
    let plan = &results.plan;
    let _ = writeln!(
        s,
        "HTTPS hello world (`examples/hello.js` on isobar and workerd, the same response from the others), every \
         server presenting the same certificate: {}. \"new connection per request\": each request opens a TCP \
         connection, makes a full TLS handshake, sends one request with `connection: close`, reads the response \
         and resets the connection, with N of these in flight (req/s = new connections per second); \
         \"keep-alive\": N connections made during the warm-up, then request after request. Client: {}. \
         Servers on CPU {}, all up at once, {:.2} s windows after {:.2} s of warm-up, {} rounds taking turns. \
         Server CPU is every thread of the server's processes per request (per handshake, in the first rows). \
         Medians with the range; ratios to isobar over TLS at the same load. A client CPU share near 1 means the \
         client, not the server, set the pace (a handshake costs the client about as much as a server): compare \
         those rows by server CPU per request. {}\n",
        r.certificate,
        r.client,
        results.machine.server_cpu,
        plan.tls_window.as_secs_f64(),
        plan.warmup.as_secs_f64() * 2.0,
        plan.rounds,
        provenance(results),
    );
    let _ = writeln!(
        s,
        "| system | load | connections | req/s | vs isobar | p50 | p99 | server CPU / request | CPU vs isobar | client CPU share |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let isobar = r.systems.iter().find(|sys| sys.tls && sys.system.starts_with("isobar"));
    let cases: Vec<(Reuse, usize)> = plan
        .tls_handshake_connections
        .iter()
        .map(|c| (Reuse::PerRequest, *c))
        .chain(plan.tls_keepalive_connections.iter().map(|c| (Reuse::KeepAlive, *c)))
        .collect();
    for (reuse, connections) in cases {
        let base = isobar.and_then(|sys| sys.cell(reuse, connections));
        let base_rps = base.and_then(|c| c.series.median("requests_per_second"));
        let base_cpu = base.and_then(|c| c.series.median("server_cpu_us_per_request"));
        let load = match reuse {
            Reuse::PerRequest => "new connection per request",
            Reuse::KeepAlive => "keep-alive",
        };
        for sys in &r.systems {
            let Some(c) = sys.cell(reuse, connections) else { continue };
            let series = &c.series;
            let note = first_error(&series.errors).map(|e| format!(" (failed rounds: {e})")).unwrap_or_default();
            let _ = writeln!(
                s,
                "| {}{note} | {load} | {} | {} | {} | {} | {} | {} | {} | {} |",
                sys.system,
                count(connections as f64),
                spread(series.spread("requests_per_second"), count),
                ratio(series.median("requests_per_second"), base_rps),
                series.median("p50_us").map(us).unwrap_or_else(|| "–".into()),
                spread(series.spread("p99_us"), us),
                spread(series.spread("server_cpu_us_per_request"), us),
                ratio(series.median("server_cpu_us_per_request"), base_cpu),
                series.median("client_cpu_share").map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into()),
            );
        }
    }
    let _ = writeln!(s, "\nNegotiated (one verified request per server before the load):\n");
    for sys in &r.systems {
        match (&sys.negotiated, &sys.error, sys.tls) {
            (_, Some(error), _) => {
                let _ = writeln!(s, "- {}: not measured: {}", sys.system, cell(error));
            }
            (Some(n), None, _) => {
                let _ = writeln!(s, "- {}: {n}.", sys.system);
            }
            (None, None, false) => {
                let _ = writeln!(s, "- {}: plain HTTP/1.1.", sys.system);
            }
            (None, None, true) => {}
        }
    }
    s
}

// ---- targets ----

fn targets(results: &Results) -> Vec<Target> {
    let mut list = Vec::new();
    // 1. Tenant switch >= 10x cheaper than an OS process switch at N = 1,000.
    let switch = results.switch.as_ref().and_then(|r| r.groups.iter().find(|g| g.tenants == 1000));
    let added = |name: &str| {
        switch
            .and_then(|g| g.systems.iter().find(|s| s.system == name))
            .and_then(|s| s.added_per_switch(false))
            .map(|a| a.median)
    };
    let (isobar, process) = (added("isobar"), added("process per tenant (C)"));
    list.push(match (isobar, process) {
        (Some(i), Some(p)) => {
            let factor = if i > 0.0 { p / i } else { f64::INFINITY };
            Target {
                claim: "tenant switch on one core >= 10x cheaper than an OS process switch at N = 1,000".into(),
                measured: format!("added CPU per switch: isobar {}, one process per tenant {}", us(i), us(p)),
                ratio: factor.is_finite().then_some(factor),
                met: Some(factor >= 10.0),
            }
        }
        _ => not_measured("tenant switch on one core >= 10x cheaper than an OS process switch at N = 1,000"),
    });
    // 2. New tenant first response <= 1 ms.
    let new_tenant = results
        .coldstart
        .as_ref()
        .and_then(|c| c.new_tenants.iter().find(|r| r.system == "new tenant, pool warm"))
        .and_then(|r| r.spread);
    list.push(match new_tenant {
        Some(sp) => Target {
            claim: "new tenant first response <= 1 ms".into(),
            measured: format!(
                "{} median (pool warm), range {}–{}{}",
                ms(sp.median),
                ms(sp.min),
                ms(sp.max),
                results
                    .coldstart
                    .as_ref()
                    .and_then(|c| c.new_tenants.iter().find(|r| r.system == "new tenant, pool warm"))
                    .and_then(|r| r.cpu_spread)
                    .map(|c| format!("; server CPU {} median", ms(c.median)))
                    .unwrap_or_default()
            ),
            ratio: Some(sp.median / 1.0),
            met: Some(sp.median <= 1.0),
        },
        None => not_measured("new tenant first response <= 1 ms"),
    });
    // 3. Process launch -> first 200 <= 5 ms.
    let launch = |name: &str| {
        results.coldstart.as_ref().and_then(|c| c.launches.iter().find(|r| r.system == name)).and_then(|r| r.spread)
    };
    list.push(match launch("isobar run") {
        Some(sp) => Target {
            claim: "process launch -> first 200 <= 5 ms".into(),
            measured: format!(
                "`isobar run` {} median ({} of CPU){}",
                ms(sp.median),
                results
                    .coldstart
                    .as_ref()
                    .and_then(|c| c.launches.iter().find(|r| r.system == "isobar run"))
                    .and_then(|r| r.cpu_spread)
                    .map(|c| ms(c.median))
                    .unwrap_or_else(|| "–".into()),
                launch("isobar serve --snapshot")
                    .map(|s| format!("; `serve --snapshot` {}", ms(s.median)))
                    .unwrap_or_default()
            ),
            ratio: Some(sp.median / 5.0),
            met: Some(sp.median <= 5.0),
        },
        None => not_measured("process launch -> first 200 <= 5 ms"),
    });
    // 4. <= 0.75 MB RSS per live tenant (at the largest N measured).
    let per_tenant = results
        .memory
        .as_ref()
        .and_then(|m| m.isobar.iter().filter(|r| r.error.is_none()).max_by_key(|r| r.tenants))
        .and_then(|r| r.per_tenant_in_process_bytes.map(|b| (r.tenants, b)));
    list.push(match per_tenant {
        Some((n, bytes)) => Target {
            claim: "<= 0.75 MB RSS per live tenant".into(),
            measured: format!("{} per live tenant at N = {}", mb(bytes), count(n as f64)),
            ratio: Some(bytes / 0.75e6),
            met: Some(bytes <= 0.75e6),
        },
        None => not_measured("<= 0.75 MB RSS per live tenant"),
    });
    // 5. Hello server CPU per request <= the best peer's (64 connections).
    let hello = results.throughput.as_ref().and_then(|t| {
        let isobar = t.systems.first()?.series(64)?.median("server_cpu_us_per_request")?;
        let best = t
            .systems
            .iter()
            .filter(|s| s.peer && s.error.is_none())
            .filter_map(|s| Some((s.system.clone(), s.series(64)?.median("server_cpu_us_per_request")?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        Some((isobar, best))
    });
    list.push(match hello {
        Some((isobar, (peer, best))) => Target {
            claim: "hello world server CPU per request <= the best peer's (64 connections)".into(),
            measured: format!("isobar {}, best peer {peer} {}", us(isobar), us(best)),
            ratio: Some(isobar / best),
            met: Some(isobar <= best),
        },
        None => not_measured("hello world server CPU per request <= the best peer's (64 connections)"),
    });
    list
}

fn not_measured(claim: &str) -> Target {
    Target { claim: claim.into(), measured: "not measured in this run".into(), ratio: None, met: None }
}

// ---- BENCHMARKS.md ----

/// Replaces each named section between its markers; a section whose markers are missing is
/// an error (the file's layout is the reader's, not the harness's).
pub fn update_benchmarks_md(path: &Path, sections: &[(&'static str, String)]) -> Result<()> {
    let mut text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    for (name, body) in sections {
        text = replace_section(&text, name, body)?;
    }
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

fn replace_section(text: &str, name: &str, body: &str) -> Result<String> {
    let begin = format!("<!-- harness:begin {name} -->");
    let end = format!("<!-- harness:end {name} -->");
    let Some(start) = text.find(&begin) else { bail!("BENCHMARKS.md has no {begin} marker") };
    let Some(stop) = text[start..].find(&end).map(|i| start + i) else { bail!("BENCHMARKS.md has no {end} marker") };
    Ok(format!("{}{begin}\n{}\n{}", &text[..start], body.trim_end(), &text[stop..]))
}

/// The summary printed at the end of a run: every section, then the targets.
pub fn summary_text(results: &Results, sections: &[(&'static str, String)]) -> String {
    let mut s = String::new();
    for (name, body) in sections {
        if *name != "targets" {
            let _ = writeln!(s, "\n== {name} ==\n{body}");
        }
    }
    let _ = writeln!(s, "\n== targets ==");
    for t in &results.targets {
        let verdict = match t.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let ratio = t.ratio.map(|r| format!(" (ratio {r:.2})")).unwrap_or_default();
        let _ = writeln!(s, "  {verdict}: {} — {}{ratio}", t.claim, t.measured);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_between_markers() {
        let text = "a\n<!-- harness:begin x -->\nold\n<!-- harness:end x -->\nb\n";
        let new = replace_section(text, "x", "new\n").unwrap();
        assert_eq!(new, "a\n<!-- harness:begin x -->\nnew\n<!-- harness:end x -->\nb\n");
        assert!(replace_section(text, "y", "z").is_err());
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(count(1234567.4), "1,234,567");
        assert_eq!(count(999.0), "999");
        assert_eq!(us(12.34), "12.3 us");
        assert_eq!(us(1500.0), "1.50 ms");
        assert_eq!(mb(1_515_000.0), "1.515 MB");
    }
}
