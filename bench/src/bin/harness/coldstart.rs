//! Scenario 2, cold start: process launch to first 200 for isobar (`run` with its snapshot
//! cache and with it off, the `--baseline` build's `run` if given, and `serve` with a snapshot
//! file), workerd, deno, bun, node and a native responder (a new process per tenant),
//! each launched on the server CPU in turn, round by round; and a new tenant's first response
//! inside a running isobar, with its pool of ready isolates warm and with it empty, and through
//! the admin API (deploy, then first response).
//!
//! Launch time is from just before the process is spawned to the first complete 200 response,
//! polled from the client CPU every 0.2 ms on a fresh port (so no earlier process can answer).
//! A new tenant's time is its first request on an open keep-alive connection: tenants arrive
//! 20 ms apart, slower than the pool refills (a few ms per isolate).
//!
//! Each time comes with the CPU time the server spent on it (the process CPU clock: at the first
//! 200 for a launch, around the request for a new tenant), which the shared host's other work
//! does not inflate the way it inflates wall time.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::load::Client;
use crate::measure::{Spread, on_client};
use crate::servers::{HELLO_BODY, IsobarTenants, Placement, Runtime, spawn, worker_module};
use crate::{Context, Mode};

#[derive(Debug, Serialize)]
pub struct ColdStartResults {
    pub launches: Vec<Row>,
    pub new_tenants: Vec<Row>,
}

/// One system's times over rounds, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Row {
    pub system: String,
    pub samples_ms: Vec<f64>,
    pub spread: Option<Spread>,
    /// The server's CPU time for each sample.
    pub cpu_samples_ms: Vec<f64>,
    pub cpu_spread: Option<Spread>,
    pub errors: Vec<String>,
}

impl Row {
    fn new(system: &str) -> Row {
        Row {
            system: system.to_string(),
            samples_ms: vec![],
            spread: None,
            cpu_samples_ms: vec![],
            cpu_spread: None,
            errors: vec![],
        }
    }

    /// Records a (wall time, server CPU time) sample.
    fn record(&mut self, result: Result<(Duration, Option<Duration>)>) {
        match result {
            Ok((wall, cpu)) => {
                self.samples_ms.push(wall.as_secs_f64() * 1000.0);
                if let Some(cpu) = cpu {
                    self.cpu_samples_ms.push(cpu.as_secs_f64() * 1000.0);
                }
            }
            Err(error) => self.errors.push(format!("{error:#}")),
        }
    }

    fn finish(&mut self) {
        self.spread = Spread::of(&self.samples_ms);
        self.cpu_spread = Spread::of(&self.cpu_samples_ms);
    }
}

/// How to launch one system answering hello world on a port.
struct Launch {
    name: String,
    program: PathBuf,
    /// The arguments for a port.
    args: Box<dyn Fn(u16) -> Vec<OsString>>,
    env: Vec<(&'static str, String)>,
}

pub fn run(ctx: &mut Context) -> ColdStartResults {
    let (launches, mut rows) = launches(ctx);
    let placement = ctx.launcher.placement.clone();
    let log = ctx.work.join("coldstart.log");
    // One launch each first, unmeasured: file caches, deno's transpile cache.
    for launch in &launches {
        let _ = launch_once(ctx, launch, &placement, &log);
    }
    for round in 0..ctx.plan.coldstart_rounds {
        for k in 0..launches.len() {
            let i = (k + round) % launches.len();
            let result = launch_once(ctx, &launches[i], &placement, &log);
            rows[i].record(result);
        }
    }
    for row in rows.iter_mut() {
        row.finish();
    }
    let new_tenants = new_tenants(ctx).unwrap_or_else(|error| {
        let mut row = Row::new("new tenant in a running isobar");
        row.errors.push(format!("{error:#}"));
        vec![row]
    });
    ColdStartResults { launches: rows, new_tenants }
}

fn launches(ctx: &mut Context) -> (Vec<Launch>, Vec<Row>) {
    let mut list = Vec::new();
    let mut rows = Vec::new();
    let hello = ctx.workspace.join("examples/hello.js");
    let isobar = ctx.isobar.clone();
    // `isobar run` as a developer runs it twice: its snapshot cache (in the work directory, so
    // the host's own cache plays no part) is filled by the unmeasured first launch. Beside it
    // the same build with the cache off (the snapshot built at every start, as before the
    // cache), and the baseline build's `run` when one is given.
    let cache = ctx.work.join("snapshot-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let run_args = |hello: PathBuf, extra: Vec<OsString>| {
        Box::new(move |port: u16| {
            let mut args: Vec<OsString> = vec!["--log".into(), "warn".into(), "run".into(), hello.clone().into()];
            args.extend(["--cores".into(), "1".into(), "--listen".into(), format!("127.0.0.1:{port}").into()]);
            args.extend(extra.iter().cloned());
            args
        }) as Box<dyn Fn(u16) -> Vec<OsString>>
    };
    list.push(Launch {
        name: "isobar run".into(),
        program: isobar.clone(),
        args: run_args(hello.clone(), vec!["--snapshot-cache".into(), cache.into()]),
        env: vec![],
    });
    list.push(Launch {
        name: "isobar run, snapshot cache off".into(),
        program: isobar.clone(),
        args: run_args(hello.clone(), vec!["--snapshot-cache".into(), "off".into()]),
        env: vec![],
    });
    if let Some(baseline) = &ctx.baseline {
        list.push(Launch {
            name: "isobar baseline run".into(),
            program: baseline.clone(),
            args: run_args(hello.clone(), vec![]),
            env: vec![],
        });
    }
    match serve_files(ctx) {
        Ok((config, snapshot)) => list.push(Launch {
            name: "isobar serve --snapshot".into(),
            program: isobar,
            args: Box::new(move |port| {
                vec![
                    "--log".into(),
                    "warn".into(),
                    "serve".into(),
                    "--config".into(),
                    config.clone().into(),
                    "--snapshot".into(),
                    snapshot.clone().into(),
                    "--listen".into(),
                    format!("127.0.0.1:{port}").into(),
                ]
            }),
            env: vec![],
        }),
        Err(error) => {
            let mut row = Row::new("isobar serve --snapshot");
            row.errors.push(format!("{error:#}"));
            rows.push(row);
        }
    }
    if ctx.plan.mode == Mode::Full {
        let dir = ctx.work.join("coldstart");
        let _ = std::fs::create_dir_all(&dir);
        match &ctx.peers.workerd {
            Ok(peer) => {
                let dir = dir.clone();
                let _ = std::fs::write(dir.join("hello.js"), worker_module(0, HELLO_BODY));
                list.push(Launch {
                    name: format!("workerd ({})", peer.version),
                    program: peer.program.clone(),
                    args: Box::new(move |port| {
                        let config = dir.join(format!("workerd-{port}.capnp"));
                        let text = format!(
                            "using Workerd = import \"/workerd/workerd.capnp\";\nconst config :Workerd.Config = (\n  \
                             services = [ (name = \"main\", worker = .hello) ],\n  sockets = [ (name = \"http\", \
                             address = \"127.0.0.1:{port}\", http = (), service = \"main\") ],\n);\nconst hello \
                             :Workerd.Worker = (\n  modules = [ (name = \"hello.js\", esModule = embed \"hello.js\") ],\n  \
                             compatibilityDate = \"2024-09-23\",\n);\n"
                        );
                        let _ = std::fs::write(&config, text);
                        vec!["serve".into(), config.into()]
                    }),
                    env: vec![],
                });
            }
            Err(reason) => rows.push(missing("workerd", reason)),
        }
        for (runtime, peer) in
            [(Runtime::Deno, &ctx.peers.deno), (Runtime::Bun, &ctx.peers.bun), (Runtime::Node, &ctx.peers.node)]
        {
            match peer {
                Ok(peer) => {
                    let dir = dir.clone();
                    list.push(Launch {
                        name: format!("{} ({})", runtime.name(), peer.version),
                        program: peer.program.clone(),
                        args: Box::new(move |port| {
                            let script = dir.join(format!("{}-{port}.js", runtime.name()));
                            let addr = SocketAddr::from(([127, 0, 0, 1], port));
                            let _ = std::fs::write(&script, runtime.script(0, HELLO_BODY, addr));
                            runtime.args(&script)
                        }),
                        env: crate::servers::runtime_env(&ctx.work),
                    });
                }
                Err(reason) => rows.push(missing(runtime.name(), reason)),
            }
        }
        match &ctx.peers.responder {
            Ok(peer) => list.push(Launch {
                name: "new process per tenant (C responder)".into(),
                program: peer.program.clone(),
                args: Box::new(|port| {
                    vec!["--port".into(), port.to_string().into(), "--body".into(), HELLO_BODY.into()]
                }),
                env: vec![],
            }),
            Err(reason) => rows.push(missing("new process per tenant (C responder)", reason)),
        }
    }
    // Rows for the launchable systems come first, in launch order; missing ones after.
    let mut launch_rows: Vec<Row> = list.iter().map(|l| Row::new(&l.name)).collect();
    launch_rows.extend(rows);
    (list, launch_rows)
}

fn missing(name: &str, reason: &str) -> Row {
    let mut row = Row::new(name);
    row.errors.push(reason.to_string());
    row
}

/// A one-tenant configuration and a snapshot file made by this isobar binary.
fn serve_files(ctx: &Context) -> Result<(PathBuf, PathBuf)> {
    let dir = ctx.work.join("coldstart-serve");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(ctx.workspace.join("examples/hello.js"), dir.join("hello.js")).context("copy hello.js")?;
    let config = dir.join("isobar.toml");
    std::fs::write(
        &config,
        "[server]\ncores = 1\n[[tenant]]\nname = \"hello\"\nscript = \"hello.js\"\nroutes = [\"hello.bench\"]\n",
    )?;
    let snapshot = dir.join("snapshot.bin");
    let output = std::process::Command::new(&ctx.isobar)
        .args(["--log", "warn", "snapshot", "--out"])
        .arg(&snapshot)
        .output()
        .context("run isobar snapshot")?;
    if !output.status.success() {
        bail!("isobar snapshot failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok((config, snapshot))
}

/// Spawns the system on a fresh port and times it to its first 200; with the CPU time the
/// process had used by then.
fn launch_once(
    ctx: &mut Context,
    launch: &Launch,
    placement: &Placement,
    log: &Path,
) -> Result<(Duration, Option<Duration>)> {
    let port = ctx.launcher.ports.take(1)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let args = (launch.args)(port);
    let env: Vec<(&str, &str)> = launch.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let mut child = spawn(&launch.program, &args, &env, placement, log)?;
    let result = (|| {
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Ok(mut client) = Client::connect(addr, Duration::from_millis(100))
                && let Ok((status, _)) = client.get("hello.bench", "/")
            {
                if status == 200 {
                    let elapsed = started.elapsed();
                    return Ok((elapsed, crate::procfs::process_cpu(child.id())));
                }
                bail!("{} answered {status}", launch.name);
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{} exited ({status}) before answering; see {}", launch.name, log.display());
            }
            if Instant::now() > deadline {
                bail!("{} did not answer within 30 s", launch.name);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// New tenants' first responses inside running isobars: pool warm, pool empty, and deployed
/// through the admin API.
fn new_tenants(ctx: &mut Context) -> Result<Vec<Row>> {
    let per_round = ctx.plan.new_tenants_per_round;
    let total = ctx.plan.coldstart_rounds * per_round + 1;
    let mut warm_spec = IsobarTenants::new("new-tenant-pool-warm", &ctx.isobar, total);
    warm_spec.admin = true;
    let mut empty_spec = IsobarTenants::new("new-tenant-pool-empty", &ctx.isobar, total);
    empty_spec.pool = 0;
    let mut warm = ctx.launcher.isobar_tenants(&warm_spec)?;
    let mut empty = ctx.launcher.isobar_tenants(&empty_spec)?;
    let mut rows = vec![
        Row::new("new tenant, pool warm"),
        Row::new("new tenant, pool empty"),
        Row::new("deploy through the admin API (PUT -> 201)"),
        Row::new("first response after that deploy"),
    ];
    let admin = warm.admin.context("the admin listener")?;
    let warm_pid = *warm.pids().first().context("the isobar process")?;
    let empty_pid = *empty.pids().first().context("the isobar process")?;
    on_client(&ctx.client, || {
        warm.wait_listening(Duration::from_secs(120))?;
        empty.wait_listening(Duration::from_secs(120))?;
        // Tenant 0 is the one request that takes the cores' start-up costs.
        let mut warm_client = Client::connect(warm.endpoints[0], Duration::from_secs(5))?;
        let mut empty_client = Client::connect(empty.endpoints[0], Duration::from_secs(5))?;
        let mut admin_client = Client::connect(admin, Duration::from_secs(5))?;
        warm_client.get("t0.bench", "/")?;
        empty_client.get("t0.bench", "/")?;
        // Give the pools time to fill after start-up.
        std::thread::sleep(Duration::from_millis(500));
        let mut next = 1;
        for _round in 0..ctx.plan.coldstart_rounds {
            for _ in 0..per_round {
                let host = format!("t{next}.bench");
                rows[0].record(first_response(&mut warm_client, warm_pid, &host, next));
                std::thread::sleep(Duration::from_millis(20));
                rows[1].record(first_response(&mut empty_client, empty_pid, &host, next));
                std::thread::sleep(Duration::from_millis(20));
                let name = format!("n{next}");
                let body = serde_json::json!({
                    "script": worker_module(next, &format!("tenant {next}\n")),
                    "routes": [format!("{name}.bench")],
                })
                .to_string();
                let request = format!(
                    "PUT /tenants/{name} HTTP/1.1\r\nhost: admin\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let cpu_before = crate::procfs::process_cpu(warm_pid);
                let started = Instant::now();
                let deployed = admin_client.request(request.as_bytes()).and_then(|(status, text)| {
                    if status == 201 {
                        let cpu =
                            cpu_before.zip(crate::procfs::process_cpu(warm_pid)).map(|(a, b)| b.saturating_sub(a));
                        Ok((started.elapsed(), cpu))
                    } else {
                        bail!("PUT answered {status}: {}", String::from_utf8_lossy(&text))
                    }
                });
                let ok = deployed.is_ok();
                rows[2].record(deployed);
                if ok {
                    rows[3].record(first_response(&mut warm_client, warm_pid, &format!("{name}.bench"), next));
                }
                std::thread::sleep(Duration::from_millis(20));
                next += 1;
            }
        }
        Ok(())
    })?;
    warm.check_alive()?;
    empty.check_alive()?;
    for row in rows.iter_mut() {
        row.finish();
    }
    Ok(rows)
}

/// A new tenant's first request: its latency, and the server's CPU time around it.
fn first_response(client: &mut Client, pid: u32, host: &str, id: usize) -> Result<(Duration, Option<Duration>)> {
    let cpu_before = crate::procfs::process_cpu(pid);
    let started = Instant::now();
    let (status, body) = client.get(host, "/")?;
    let elapsed = started.elapsed();
    let cpu = cpu_before.zip(crate::procfs::process_cpu(pid)).map(|(a, b)| b.saturating_sub(a));
    if status != 200 || body != format!("tenant {id}\n").as_bytes() {
        bail!("{host} answered {status} {:?}", String::from_utf8_lossy(&body));
    }
    Ok((elapsed, cpu))
}
