//! The benchmark harness: what a tenant costs on isobar — a tenant switch, a cold start, memory,
//! throughput, metering, Workers KV, Cron Triggers' timing, a fetch() proxy, HTTPS termination —
//! measured side by side with one OS
//! process or one OS thread per tenant and with the runtimes people would pick instead
//! (workerd, deno, bun, node), and written up as BENCHMARKS.md sections, SVG plots and a JSON
//! results file.
//!
//!   cargo run --release -p isobar-bench --bin harness -- quick|full [--only SCENARIO,...]
//!
//! `quick` takes seconds and measures isobar alone (CI runs it); `full` installs the peers
//! from npm into bench/.cache and takes well under an hour on a 2-vCPU machine. Every scenario
//! runs its systems in the same run, all up at once and taking turns round by round, with the
//! servers pinned to CPU 0 and the load generator (this process's own, src/bin/harness/load.rs)
//! to CPU 1, and reports medians, the range over rounds and ratios to isobar. Server CPU time
//! comes from /proc, so a run the client limits still compares fairly.
//!
//! Network rule: every server listens on 127.0.0.1, or inside a network namespace the harness
//! creates (as root, for isobar's userspace stack on a TAP) and deletes. Every load is bounded
//! in time and count. The harness kills only the processes it started.

mod coldstart;
mod cron;
mod kv;
mod kv_service;
mod load;
mod measure;
mod memory;
mod metering;
mod netns;
mod peers;
mod plots;
mod procfs;
mod proxy;
mod report;
mod servers;
mod switch;
mod throughput;
mod tls;
mod tls_load;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};

use crate::peers::Peers;
use crate::servers::{Launcher, Placement, Ports};

#[derive(Debug, Parser)]
#[command(name = "harness", about = "isobar's benchmark harness (see BENCHMARKS.md)")]
struct Args {
    /// quick: seconds, isobar only (CI); full: every scenario against every peer.
    mode: Mode,
    /// Only these scenarios (comma-separated): switch, coldstart, memory, throughput, metering,
    /// kv, cron, proxy, tls. cron, proxy and tls run only when named here (cron watches the
    /// clock for minutes; proxy and tls are issue 9's, measured apart from issue 11's set).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// The isobar binary (default: build it with cargo, same profile as this harness).
    #[arg(long)]
    isobar: Option<PathBuf>,
    /// Another isobar build measured beside this one in the switch, throughput and coldstart scenarios
    /// (an A/B of a change under the same load).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Where results (JSON) and the work directory go (default: bench/results).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not rewrite BENCHMARKS.md and bench/plots (full mode does by default); plots go to
    /// the output directory instead.
    #[arg(long)]
    no_docs: bool,
    /// Rounds per scenario (default: 2 quick, 5 full).
    #[arg(long)]
    rounds: Option<usize>,
    /// Caps every tenant count (switch, memory) at this: for a smaller machine or a shorter run.
    #[arg(long)]
    max_tenants: Option<usize>,
    /// Minute boundaries the cron scenario watches (default: 1 quick, 10 full).
    #[arg(long)]
    cron_minutes: Option<usize>,
    /// Keep the work directory (scripts, configurations, server logs) after the run.
    #[arg(long)]
    keep_work: bool,
    /// Measure only isobar (this build and `--baseline`), no peers, with the mode's counts and
    /// windows: an A/B of two isobar builds in full mode without the peers' time.
    #[arg(long)]
    isobar_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Quick,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Switch,
    Coldstart,
    Memory,
    Throughput,
    Metering,
    Kv,
    Cron,
    Proxy,
    Tls,
}

impl Scenario {
    /// What a run without `--only` measures: everything but cron, which takes ten minutes of
    /// wall time mostly waiting.
    const DEFAULT: [Scenario; 6] = [
        Scenario::Switch,
        Scenario::Coldstart,
        Scenario::Memory,
        Scenario::Throughput,
        Scenario::Metering,
        Scenario::Kv,
    ];
    /// The scenarios behind issue 11's "Report against" targets.
    const TARGETS: [Scenario; 5] =
        [Scenario::Switch, Scenario::Coldstart, Scenario::Memory, Scenario::Throughput, Scenario::Metering];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Switch => "switch",
            Scenario::Coldstart => "coldstart",
            Scenario::Memory => "memory",
            Scenario::Throughput => "throughput",
            Scenario::Metering => "metering",
            Scenario::Kv => "kv",
            Scenario::Cron => "cron",
            Scenario::Proxy => "proxy",
            Scenario::Tls => "tls",
        }
    }
}

/// How much of everything a mode measures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub mode: Mode,
    pub rounds: usize,
    /// Warm-up before each measured window, and the window.
    pub warmup: Duration,
    pub window: Duration,
    /// Responses per window at most.
    pub requests_max: u64,
    /// Tenant counts of the switch scenario (every system), and isobar's alone beyond them.
    pub switch_counts: Vec<usize>,
    pub switch_isobar_counts: Vec<usize>,
    /// Requests in flight in the switch scenario.
    pub switch_concurrency: usize,
    /// Tenants at most for one node/bun/deno process per tenant.
    pub runtime_tenants_max: usize,
    /// Tenants at most for one native process or thread per tenant.
    pub native_tenants_max: usize,
    pub coldstart_rounds: usize,
    /// New tenants asked for per round inside a running isobar.
    pub new_tenants_per_round: usize,
    pub memory_isobar_counts: Vec<usize>,
    pub memory_workerd_counts: Vec<usize>,
    pub memory_thread_counts: Vec<usize>,
    /// Processes started per runtime to read USS with the binary's text shared.
    pub memory_processes: usize,
    pub throughput_connections: Vec<usize>,
    pub throughput_window: Duration,
    pub metering_window: Duration,
    /// Busy-loop iterations of the metering scenario's spinning tenants.
    pub metering_spins: Vec<u64>,
    /// Keys the kv scenario writes first and then reads and overwrites.
    pub kv_keys: usize,
    pub kv_connections: Vec<usize>,
    pub kv_window: Duration,
    /// Minute boundaries the cron scenario watches.
    pub cron_minutes: usize,
    /// Client connections to each proxy (and to the direct origin).
    pub proxy_connections: Vec<usize>,
    pub proxy_window: Duration,
    /// Connections in flight, one request and one full handshake each.
    pub tls_handshake_connections: Vec<usize>,
    /// Keep-alive connections (handshaken during the warm-up).
    pub tls_keepalive_connections: Vec<usize>,
    pub tls_window: Duration,
}

impl Plan {
    fn new(mode: Mode, rounds: Option<usize>) -> Plan {
        match mode {
            Mode::Quick => Plan {
                mode,
                rounds: rounds.unwrap_or(2),
                warmup: Duration::from_millis(50),
                window: Duration::from_millis(150),
                requests_max: 200_000,
                switch_counts: vec![1, 2, 10],
                switch_isobar_counts: vec![],
                switch_concurrency: 8,
                runtime_tenants_max: 0,
                native_tenants_max: 0,
                coldstart_rounds: rounds.unwrap_or(2),
                new_tenants_per_round: 2,
                memory_isobar_counts: vec![1, 10, 100],
                memory_workerd_counts: vec![],
                memory_thread_counts: vec![],
                memory_processes: 0,
                throughput_connections: vec![1, 64],
                throughput_window: Duration::from_millis(200),
                metering_window: Duration::from_millis(200),
                metering_spins: vec![100_000],
                kv_keys: 100,
                kv_connections: vec![1, 4],
                kv_window: Duration::from_millis(150),
                cron_minutes: 1,
                proxy_connections: vec![1, 8],
                proxy_window: Duration::from_millis(200),
                tls_handshake_connections: vec![4],
                tls_keepalive_connections: vec![1],
                tls_window: Duration::from_millis(200),
            },
            Mode::Full => Plan {
                mode,
                rounds: rounds.unwrap_or(5),
                warmup: Duration::from_millis(250),
                window: Duration::from_secs(1),
                requests_max: 5_000_000,
                switch_counts: vec![1, 2, 10, 100, 1000],
                switch_isobar_counts: vec![10_000],
                switch_concurrency: 8,
                runtime_tenants_max: 100,
                native_tenants_max: 1000,
                coldstart_rounds: rounds.map(|r| r * 2).unwrap_or(10),
                new_tenants_per_round: 10,
                memory_isobar_counts: vec![1, 10, 100, 1000, 10_000],
                memory_workerd_counts: vec![1, 10, 100, 500],
                memory_thread_counts: vec![1, 10, 100, 1000],
                memory_processes: 10,
                throughput_connections: vec![1, 64, 1024],
                throughput_window: Duration::from_secs(2),
                metering_window: Duration::from_secs(1),
                metering_spins: vec![100_000, 1_000_000],
                kv_keys: 1000,
                kv_connections: vec![1, 16],
                kv_window: Duration::from_secs(2),
                cron_minutes: 10,
                proxy_connections: vec![1, 64],
                proxy_window: Duration::from_secs(2),
                tls_handshake_connections: vec![1, 16],
                tls_keepalive_connections: vec![1, 64],
                tls_window: Duration::from_secs(2),
            },
        }
    }
}

impl Plan {
    fn cap_tenants(&mut self, max: usize) {
        for list in [
            &mut self.switch_counts,
            &mut self.switch_isobar_counts,
            &mut self.memory_isobar_counts,
            &mut self.memory_workerd_counts,
            &mut self.memory_thread_counts,
        ] {
            list.retain(|n| *n <= max);
        }
        self.memory_processes = self.memory_processes.min(max);
    }
}

/// What every scenario gets: the plan, the binaries, the peers, how to start servers and where
/// the client runs.
pub struct Context {
    pub plan: Plan,
    pub workspace: PathBuf,
    pub isobar: PathBuf,
    pub baseline: Option<PathBuf>,
    pub peers: Peers,
    pub launcher: Launcher,
    pub client: Placement,
    pub server_cpu: usize,
    pub client_cpu: usize,
    /// CPUs this process could use before it pinned itself to the client's.
    pub cpus: usize,
    pub usable_cpus: Vec<usize>,
    pub work: PathBuf,
}

impl Context {
    /// The isobar builds to measure: this one, and the baseline if given.
    pub fn isobars(&self) -> Vec<(String, PathBuf)> {
        let mut list = vec![("isobar".to_string(), self.isobar.clone())];
        if let Some(baseline) = &self.baseline {
            list.push(("isobar baseline".to_string(), baseline.clone()));
        }
        list
    }
}

fn main() {
    // workerd's KV binding needs a service behind it; the harness's own binary is that service,
    // a process of its own (kv_service.rs). That is not a mode of the harness, so it bypasses
    // the parser.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).is_some_and(|a| a == "kv-service") {
        if let Err(error) = kv_service::main(&argv[2..]) {
            eprintln!("harness kv-service: error: {error:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    match run(args) {
        Ok(()) => {}
        Err(error) => {
            eprintln!("harness: error: {error:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let workspace = workspace();
    let mut plan = Plan::new(args.mode, args.rounds);
    if let Some(max) = args.max_tenants {
        plan.cap_tenants(max);
    }
    if args.isobar_only {
        plan.native_tenants_max = 0;
        plan.runtime_tenants_max = 0;
    }
    if let Some(minutes) = args.cron_minutes {
        plan.cron_minutes = minutes.max(1);
    }
    let scenarios: Vec<Scenario> = if args.only.is_empty() { Scenario::DEFAULT.to_vec() } else { args.only.clone() };
    let out = args.out.clone().unwrap_or_else(|| workspace.join("bench/results"));
    let work = out.join(format!("work-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| work.display().to_string())?;

    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).context("sched_getaffinity")?;
    let usable: Vec<usize> = (0..nix::sched::CpuSet::count()).filter(|c| cpus.is_set(*c).unwrap_or(false)).collect();
    let (server_cpu, client_cpu) = match usable.as_slice() {
        [] => bail!("no usable CPU"),
        [only] => {
            eprintln!("harness: warning: one usable CPU: server and client share CPU {only}");
            (*only, *only)
        }
        [first, second, ..] => (*first, *second),
    };
    let client = Placement::on(client_cpu);
    client.enter().context("pin the harness to the client CPU")?;
    raise_open_files();

    let isobar = match &args.isobar {
        Some(path) => path.canonicalize().with_context(|| format!("--isobar {}", path.display()))?,
        None => build_isobar(&workspace)?,
    };
    let baseline = match &args.baseline {
        Some(path) => Some(path.canonicalize().with_context(|| format!("--baseline {}", path.display()))?),
        None => None,
    };
    let cache = workspace.join("bench/.cache");
    let peers = match args.mode {
        _ if args.isobar_only => Peers::none(),
        // Cron measures isobar alone: no npm install for it.
        _ if scenarios.iter().all(|s| *s == Scenario::Cron) => Peers::none(),
        Mode::Quick => Peers::none(),
        Mode::Full => Peers::prepare(&cache, &workspace),
    };
    let launcher = Launcher {
        work: work.clone(),
        ports: Ports::new(),
        placement: Placement::on(server_cpu),
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let mut ctx = Context {
        plan,
        workspace: workspace.clone(),
        isobar,
        baseline,
        peers,
        launcher,
        client,
        server_cpu,
        client_cpu,
        cpus: usable.len(),
        usable_cpus: usable.clone(),
        work,
    };

    let mut results = report::Results::new(&ctx, &scenarios);
    for scenario in &scenarios {
        let began = Instant::now();
        eprintln!("harness: {} ...", scenario.name());
        match scenario {
            Scenario::Switch => results.switch = Some(switch::run(&mut ctx)),
            Scenario::Coldstart => results.coldstart = Some(coldstart::run(&mut ctx)),
            Scenario::Memory => results.memory = Some(memory::run(&mut ctx)),
            Scenario::Throughput => results.throughput = Some(throughput::run(&mut ctx)),
            Scenario::Metering => results.metering = Some(metering::run(&mut ctx)),
            Scenario::Kv => results.kv = Some(kv::run(&mut ctx)),
            Scenario::Cron => results.cron = Some(cron::run(&mut ctx)),
            Scenario::Proxy => results.proxy = Some(proxy::run(&mut ctx)),
            Scenario::Tls => results.tls = Some(tls::run(&mut ctx)),
        }
        eprintln!("harness: {} done in {:.1} s", scenario.name(), began.elapsed().as_secs_f64());
    }
    results.finish(started.elapsed());

    let docs = args.mode == Mode::Full && !args.no_docs;
    let plot_dir = if docs { workspace.join("bench/plots") } else { out.join("plots") };
    results.plots = plots::write_all(&results, &plot_dir);
    let json = report::write_json(&results, &out)?;
    let sections = report::sections(&results);
    if docs {
        report::update_benchmarks_md(&workspace.join("BENCHMARKS.md"), &sections)?;
    }
    println!("{}", report::summary_text(&results, &sections));
    println!("results: {}", json.display());
    if docs {
        println!("updated BENCHMARKS.md and {}", plot_dir.display());
    } else {
        println!("plots: {}", plot_dir.display());
    }
    if !args.keep_work {
        let _ = std::fs::remove_dir_all(&ctx.work);
    }
    Ok(())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Builds the isobar binary with cargo in this harness's profile and returns its path.
fn build_isobar(workspace: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let profile_dir = exe.parent().context("the harness's directory")?.to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(workspace).args(["build", "--quiet", "-p", "isobar", "--bin", "isobar"]);
    if release {
        build.arg("--release");
    }
    eprintln!("harness: building isobar ({})", if release { "release" } else { "debug" });
    let status = build.status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build -p isobar failed (set RUSTY_V8_ARCHIVE as README.md says?)");
    }
    let bin = profile_dir.join("isobar");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// 1,024 connections plus 1,000 tenants' sockets need more than the usual soft limit of open
/// files; the children inherit the raised limit.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
