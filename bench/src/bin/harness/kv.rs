//! Scenario 6, Workers KV from a Worker on one core (issue 10's "Measure"): gets and puts per
//! second, p50/p99 and server CPU per operation, one Worker source (`SCRIPT`, an ES module) on
//! every system:
//!
//! - isobar with its embedded store (redb in the work directory, one fsync per write batch);
//! - isobar with its Redis backend against a redis-server the harness starts (valkey-server
//!   when installed): once memory only, once with `appendfsync always` (durable before the
//!   reply, as the embedded store is);
//! - workerd (full mode), whose `kvNamespace` binding speaks HTTP to a service: the harness's
//!   own in-memory service (`kv_service.rs`), a process of its own.
//!
//! Each request is one KV operation (`/get?k=` or `/put?k=` over a pre-populated key set, a
//! value of `VALUE_BYTES`), plus `/nop`, the same route parsing without KV, so that what an
//! operation adds to a request can be read off. The store's processes (redis-server, the
//! service) run on the server CPU beside the front end; server CPU is the sum, and the store's
//! share is reported on its own. All systems are up at once and take turns round by round.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::Context;
use crate::load::{Client, LoadSpec, Request};
use crate::measure::{self, Series, Spread, on_client};
use crate::servers::{IsobarTenants, Server};

/// Bytes of every value the Worker puts (`value(key)` pads to this).
pub const VALUE_BYTES: usize = 100;
/// Keys written by one `/fill` request (each a `put` in flight at once).
const FILL_BATCH: usize = 50;

/// The Worker, the same source on isobar and workerd.
pub const SCRIPT: &str = r#"// The kv scenario's Worker (bench/src/bin/harness/kv.rs): one KV operation per request.
const VALUE_BYTES = 100;
function value(key) {
  return `${key}:`.padEnd(VALUE_BYTES, "v");
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = url.searchParams.get("k");
    switch (url.pathname) {
      case "/get": {
        const stored = await env.KV.get(key);
        return stored === null ? new Response("missing\n", { status: 404 }) : new Response(stored);
      }
      case "/put":
        await env.KV.put(key, value(key));
        return new Response("stored\n");
      case "/nop":
        return new Response("nop\n");
      case "/fill": {
        const from = Number(url.searchParams.get("from"));
        const n = Number(url.searchParams.get("n"));
        const puts = [];
        for (let i = from; i < from + n; i++) puts.push(env.KV.put(`k${i}`, value(`k${i}`)));
        await Promise.all(puts);
        return new Response(`${n}\n`);
      }
    }
    return new Response("not found\n", { status: 404 });
  },
};
"#;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Get,
    Put,
    /// The same route and URL parsing, no KV operation.
    Nop,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Get, Op::Put, Op::Nop];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Nop => "no KV",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Op::Get => "/get",
            Op::Put => "/put",
            Op::Nop => "/nop",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct KvResults {
    pub keys: usize,
    pub value_bytes: usize,
    /// The Redis-protocol server used, with its version, or why there is none.
    pub redis: String,
    pub systems: Vec<KvSystem>,
}

#[derive(Debug, Serialize)]
pub struct KvSystem {
    pub system: String,
    /// Where the values go and what a reply promises.
    pub store: String,
    pub error: Option<String>,
    pub cells: Vec<KvCell>,
}

impl KvSystem {
    pub fn cell(&self, op: Op, connections: usize) -> Option<&KvCell> {
        self.cells.iter().find(|c| c.op == op && c.connections == connections)
    }
}

/// One operation at one connection count, over rounds.
#[derive(Debug, Serialize)]
pub struct KvCell {
    pub op: Op,
    pub connections: usize,
    /// Server figures: the front end and its store's processes together.
    pub series: Series,
    /// The store's processes' own CPU per request, by round (empty when it is in the front
    /// end's process, as the embedded store is).
    pub store_cpu_us_per_request: Vec<f64>,
    pub store_cpu: Option<Spread>,
}

/// A system under test: the process that runs the Worker, and the store's, if separate.
struct Row {
    system: KvSystem,
    front: Option<Server>,
    store: Option<Server>,
}

pub fn run(ctx: &mut Context) -> KvResults {
    let plan = ctx.plan.clone();
    let redis = redis_program();
    let mut results = KvResults {
        keys: plan.kv_keys,
        value_bytes: VALUE_BYTES,
        redis: match &redis {
            Ok((_, version)) => version.clone(),
            Err(reason) => reason.clone(),
        },
        systems: vec![],
    };
    let mut rows: Vec<Row> = Vec::new();
    let embedded = isobar(ctx, "kv-isobar-embedded", String::new());
    rows.push(row(
        "isobar, embedded store".into(),
        "redb file, one fsync per write batch before any reply".into(),
        embedded,
        None,
    ));
    if plan.mode == crate::Mode::Full {
        for durable in [false, true] {
            let (system, store) = if durable {
                ("isobar, Redis backend, appendfsync always", "redis-server, append-only file fsynced before the reply")
            } else {
                ("isobar, Redis backend, in memory", "redis-server, no persistence (--save '' --appendonly no)")
            };
            let name = if durable { "kv-redis-durable" } else { "kv-redis-memory" };
            let started = match &redis {
                Ok((program, _)) => ctx.launcher.redis(name, program, durable).map_err(|e| format!("{e:#}")),
                Err(reason) => Err(reason.clone()),
            };
            match started {
                Ok(mut redis_server) => {
                    let ready = on_client(&ctx.client, || redis_server.wait_listening(Duration::from_secs(20)));
                    let front = ready.map_err(|e| format!("{e:#}")).and_then(|()| {
                        let addr = redis_server.endpoints[0];
                        let config = format!("[kv]\nbackend = \"redis\"\nnodes = [\"{addr}\"]\n");
                        isobar(ctx, &format!("{name}-isobar"), config)
                    });
                    rows.push(row(system.into(), store.into(), front, Some(redis_server)));
                }
                Err(reason) => rows.push(row(system.into(), store.into(), Err(reason), None)),
            }
        }
        let workerd = match ctx.peers.workerd.clone() {
            Ok(peer) => {
                let service = ctx.launcher.kv_service("kv-service").map_err(|e| format!("{e:#}"));
                match service {
                    Ok(mut service) => {
                        let ready = on_client(&ctx.client, || service.wait_listening(Duration::from_secs(20)));
                        let front = ready.map_err(|e| format!("{e:#}")).and_then(|()| {
                            let addr = service.endpoints[0];
                            ctx.launcher
                                .workerd_kv("kv-workerd", &peer.program, SCRIPT, addr)
                                .map_err(|e| format!("{e:#}"))
                        });
                        (format!("workerd ({})", peer.version), front, Some(service))
                    }
                    Err(reason) => (format!("workerd ({})", peer.version), Err(reason), None),
                }
            }
            Err(reason) => ("workerd".to_string(), Err(reason), None),
        };
        rows.push(row(
            workerd.0,
            "the harness's in-memory HTTP service (kv_service.rs): nothing written to disk".into(),
            workerd.1,
            workerd.2,
        ));
    }

    // Every front end listening and answering, then the keys written through the Worker.
    for r in rows.iter_mut() {
        let Some(front) = &mut r.front else { continue };
        let keys = plan.kv_keys;
        let ready = on_client(&ctx.client, || {
            front.wait_listening(Duration::from_secs(60))?;
            front.warm_up("/nop", Some("nop\n"))?;
            populate(front, keys)
        });
        if let Err(error) = ready {
            r.system.error = Some(format!("{error:#}"));
            r.front = None;
            r.store = None;
        }
    }

    for &connections in &plan.kv_connections {
        for op in Op::ALL {
            eprintln!("harness: kv: {} at {connections} connections", op.name());
            for r in rows.iter_mut().filter(|r| r.front.is_some()) {
                r.system.cells.push(KvCell {
                    op,
                    connections,
                    series: Series::default(),
                    store_cpu_us_per_request: vec![],
                    store_cpu: None,
                });
            }
            for round in 0..plan.rounds {
                let count = rows.len();
                for k in 0..count {
                    let r = &mut rows[(k + round) % count];
                    let Some(front) = &mut r.front else { continue };
                    let host = front.tenants[0].1.clone();
                    let requests: Vec<Request> = key_order(plan.kv_keys)
                        .map(|i| Request::get(0, &host, &format!("{}?k=k{i}", op.path())))
                        .collect();
                    let spec = LoadSpec {
                        endpoints: vec![front.endpoints[0]],
                        requests,
                        concurrency: connections,
                        warmup: plan.warmup,
                        duration: plan.kv_window,
                        requests_max: plan.requests_max,
                    };
                    let store_pids = r.store.as_ref().map(Server::pids).unwrap_or_default();
                    let result = measure::measure_with_part(&front.pids(), &store_pids, &spec, &ctx.client);
                    let cell = r.system.cells.iter_mut().find(|c| c.op == op && c.connections == connections);
                    if let Some(cell) = cell {
                        match result {
                            Ok((measurement, store_cpu)) => {
                                cell.series.record(round, Ok(measurement));
                                if r.store.is_some() {
                                    cell.store_cpu_us_per_request.push(store_cpu);
                                }
                            }
                            Err(error) => cell.series.record(round, Err(error)),
                        }
                    }
                    let alive = front.check_alive().and_then(|()| r.store.as_mut().map_or(Ok(()), Server::check_alive));
                    if let Err(error) = alive {
                        r.system.error = Some(format!("{error:#}"));
                        r.front = None;
                        r.store = None;
                    }
                }
            }
        }
    }
    for mut r in rows {
        for cell in &mut r.system.cells {
            cell.store_cpu = Spread::of(&cell.store_cpu_us_per_request);
        }
        drop(r.front);
        drop(r.store);
        results.systems.push(r.system);
    }
    results
}

fn row(system: String, store: String, front: Result<Server, String>, store_server: Option<Server>) -> Row {
    let (front, error) = match front {
        Ok(server) => (Some(server), None),
        Err(error) => (None, Some(error)),
    };
    let store_server = if front.is_some() { store_server } else { None };
    Row { system: KvSystem { system, store, error, cells: vec![] }, front, store: store_server }
}

/// `isobar serve` on one core with the KV Worker as its one tenant and `config` (a `[kv]`
/// table; none: the embedded store in the work directory).
fn isobar(ctx: &mut Context, name: &str, config: String) -> Result<Server, String> {
    let mut spec = IsobarTenants::new(name, &ctx.isobar, 1);
    spec.script = Box::new(|_| SCRIPT.to_string());
    spec.config_toml = config;
    spec.tenant_toml = "kv = [{ binding = \"KV\", namespace = \"bench\" }]\n".into();
    ctx.launcher.isobar_tenants(&spec).map_err(|e| format!("{e:#}"))
}

/// Writes keys `k0..k{keys}` through the Worker (`/fill`, `FILL_BATCH` puts at once), and
/// reads the first and the last back.
fn populate(server: &Server, keys: usize) -> Result<()> {
    let host = &server.tenants[0].1;
    let mut client = Client::connect(server.endpoints[0], Duration::from_secs(5)).context("connect")?;
    for from in (0..keys).step_by(FILL_BATCH) {
        let n = FILL_BATCH.min(keys - from);
        let (status, body) = client.get(host, &format!("/fill?from={from}&n={n}")).context("/fill")?;
        if status != 200 {
            bail!("{}: /fill answered {status}: {}", server.name, String::from_utf8_lossy(&body));
        }
    }
    for key in [0, keys.saturating_sub(1)] {
        let (status, body) = client.get(host, &format!("/get?k=k{key}")).context("/get")?;
        let expected = format!("{:v<width$}", format!("k{key}:"), width = VALUE_BYTES);
        if status != 200 || body != expected.as_bytes() {
            bail!("{}: k{key} reads back {status} {:?}", server.name, String::from_utf8_lossy(&body));
        }
    }
    Ok(())
}

/// Every key once, in a scattered order (a stride prime to the count), so consecutive
/// requests do not touch neighbouring keys.
fn key_order(keys: usize) -> impl Iterator<Item = usize> {
    let stride = [7919, 7907, 7901, 7883].into_iter().find(|p| !keys.is_multiple_of(*p)).unwrap_or(1);
    (0..keys).map(move |i| (i * stride) % keys)
}

/// valkey-server or redis-server from PATH, with what `--version` says.
fn redis_program() -> Result<(std::path::PathBuf, String), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["valkey-server", "redis-server"] {
        let Some(program) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()) else { continue };
        let output = std::process::Command::new(&program).arg("--version").output();
        let version = output
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| name.to_string());
        return Ok((program, version));
    }
    Err("neither valkey-server nor redis-server is on PATH".into())
}

#[cfg(test)]
mod tests {
    use super::key_order;

    #[test]
    fn key_order_is_a_permutation() {
        for keys in [1, 2, 100, 1000, 7919 * 2] {
            let mut seen: Vec<usize> = key_order(keys).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..keys).collect::<Vec<_>>(), "{keys}");
        }
    }
}
