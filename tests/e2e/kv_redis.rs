//! Workers KV on a Valkey/Redis server, through the real binary: `[kv] backend = "redis"`, the
//! cores' own connections to a `redis-server` each test starts on a free loopback port. Two
//! isobar processes share one server; a server that is stopped, killed and started again gives
//! scripts clean errors by the operation's deadline (never a hung core) and then serves again.
//!
//! Skipped, saying so, when neither `valkey-server` nor `redis-server` is installed (`.ci/run`
//! installs `redis-server`). Every loop is bounded in count and time; only loopback is used;
//! only processes the test started are signalled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isobar_e2e::{Client, Isobar, TempDir};
use isobar_redis_testing::require_redis_server as require_server;
use isobar_redis_testing::{RedisCluster, RedisServer, key_slot};

/// A Worker that puts and gets from query parameters, reports a KV error as text, and answers
/// `/ping` without touching KV.
const SCRIPT: &str = r#"
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = url.searchParams.get("key");
    try {
      switch (url.pathname) {
        case "/ping":
          return new Response("pong");
        case "/put":
          await env.KV.put(key, url.searchParams.get("value"), { metadata: { by: url.searchParams.get("by") } });
          return new Response("stored");
        case "/get": {
          const { value, metadata } = await env.KV.getWithMetadata(key);
          return new Response(value === null ? "<null>" : `${value} by ${metadata.by}`);
        }
        case "/count": {
          let n = 0, cursor;
          for (let i = 0; i < 100; i++) {
            const page = await env.KV.list({ prefix: url.searchParams.get("prefix"), cursor, limit: 7 });
            n += page.keys.length;
            if (page.list_complete) break;
            cursor = page.cursor;
          }
          return new Response(String(n));
        }
      }
    } catch (e) {
      return new Response(`${e.constructor.name}: ${e.message}`, { status: 503 });
    }
    return new Response("not found", { status: 404 });
  },
};
"#;

/// A configuration with one tenant whose `KV` binding is namespace `shared` on the server at
/// `node` (a cluster's seed when `cluster`).
fn serve(dir: &TempDir, node: &str, cluster: bool, cores: &str) -> Isobar {
    let script = dir.path().join("kv.js");
    if !script.exists() {
        dir.write("kv.js", SCRIPT);
    }
    let config = format!(
        "[kv]\nbackend = \"redis\"\nnodes = [{node:?}]\ncluster = {cluster}\n\
         [[tenant]]\nname = \"app\"\nscript = {:?}\nroutes = [\"*\"]\n[[tenant.kv]]\nbinding = \"KV\"\nnamespace = \"shared\"\n",
        script.display().to_string()
    );
    let config = dir.write("isobar.toml", &config);
    Isobar::serve(&config, &["--cores", cores, "--admin", "127.0.0.1:0"])
}

fn text(client: &mut Client, path: &str) -> (u16, String) {
    let response = client.request("GET", path, &[], b"");
    (response.status, response.text())
}

#[test]
fn two_isobar_processes_share_a_redis_store() {
    require_server!();
    let redis = RedisServer::start(false);
    let dir = TempDir::new("kv-redis-two");
    let (first, second) = (serve(&dir, &redis.node(), false, "2"), serve(&dir, &redis.node(), false, "1"));
    let mut a = first.connect();
    let mut b = second.connect();
    assert_eq!(text(&mut a, "/put?key=greeting&value=hello&by=first"), (200, "stored".into()));
    assert_eq!(text(&mut b, "/get?key=greeting"), (200, "hello by first".into()));
    assert_eq!(text(&mut b, "/put?key=greeting&value=hi&by=second"), (200, "stored".into()));
    assert_eq!(text(&mut a, "/get?key=greeting"), (200, "hi by second".into()));
    // Writes through both processes (and both cores of the first), listed by either in pages.
    for i in 0..60 {
        let process = if i % 2 == 0 { &first } else { &second };
        let mut client = process.connect();
        assert_eq!(text(&mut client, &format!("/put?key=item{i:03}&value={i}&by=x")), (200, "stored".into()));
    }
    assert_eq!(text(&mut a, "/count?prefix=item"), (200, "60".into()));
    assert_eq!(text(&mut b, "/count?prefix=item"), (200, "60".into()));
    assert_eq!(text(&mut a, "/get?key=absent"), (200, "<null>".into()));

    let metrics = isobar_e2e::eventually(Duration::from_secs(10), || {
        let metrics = first.metrics();
        (metrics.sum("isobar_tenant_kv_operations_total", &[("verb", "put")]) >= 31.0).then_some(metrics)
    })
    .unwrap_or_else(|| panic!("KV puts not metered: {}", first.metrics().text));
    assert!(metrics.sum("isobar_tenant_kv_bytes_written_total", &[]) > 0.0);
    assert_eq!(metrics.sum("isobar_tenant_kv_errors_total", &[]), 0.0);
}

#[test]
fn a_redis_store_that_stops_or_dies_gives_errors_not_a_hung_core() {
    require_server!();
    let mut redis = RedisServer::start(false);
    let dir = TempDir::new("kv-redis-down");
    let isobar = serve(&dir, &redis.node(), false, "1");
    let mut client = isobar.connect();
    assert_eq!(text(&mut client, "/put?key=k&value=v&by=me"), (200, "stored".into()));

    // Stopped: the server holds the connection and never answers. The operation ends by its
    // deadline (2 s) with an error, and meanwhile the core serves other requests.
    redis.signal("-STOP");
    let started = Instant::now();
    let mut waiting = isobar.connect();
    waiting.send("GET", "/get?key=k", &[], b"");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(text(&mut isobar.connect(), "/ping"), (200, "pong".into()), "the core serves while KV waits");
    let response = waiting.read_response(false);
    let took = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.text(), "Error: KV operation failed: the store did not answer in time");
    assert!(took < Duration::from_secs(10), "the timeout took {took:?}");

    // Killed: refused connections are errors at once, for every operation.
    redis.signal("-CONT");
    redis.kill_now();
    for _ in 0..3 {
        let (status, body) = text(&mut client, "/get?key=k");
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("Error: KV operation failed: the store is unavailable"), "{body}");
    }
    assert_eq!(text(&mut client, "/ping"), (200, "pong".into()));

    // Back (empty: it kept nothing on disk): the cores connect again on their own.
    redis.restart();
    let stored = isobar_e2e::eventually(Duration::from_secs(15), || {
        (text(&mut client, "/put?key=k&value=again&by=me").1 == "stored").then_some(())
    });
    assert!(stored.is_some(), "KV did not recover: {}", text(&mut client, "/put?key=k&value=again&by=me").1);
    assert_eq!(text(&mut client, "/get?key=k"), (200, "again by me".into()));

    let errors = isobar.metrics().sum("isobar_tenant_kv_errors_total", &[("tenant", "app")]);
    assert!(errors >= 4.0, "the failed operations are metered: {errors}");
}

/// A Redis Cluster seen through isobar: the namespace's slot is migrated to another primary
/// (ASK while it moves, MOVED after) while two clients keep writing and reading through both
/// cores, and not one operation fails.
#[test]
fn a_redis_cluster_slot_moved_during_traffic_loses_nothing() {
    require_server!();
    let cluster = RedisCluster::start();
    let dir = TempDir::new("kv-redis-cluster");
    let isobar = serve(&dir, &cluster.servers[0].node(), true, "2");
    let slot = key_slot(b"app/shared");
    let source = cluster.owner_of(slot);
    let target = (source + 1) % 3;
    let mut client = isobar.connect();
    for i in 0..50 {
        assert_eq!(text(&mut client, &format!("/put?key=k{i:02}&value={i}&by=setup")), (200, "stored".into()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let traffic: Vec<_> = (0..2)
        .map(|n| {
            let (stop, failures) = (stop.clone(), failures.clone());
            let mut client = isobar.connect();
            std::thread::spawn(move || {
                let (started, mut ops) = (Instant::now(), 0u32);
                while !stop.load(Ordering::Relaxed) && ops < 20_000 && started.elapsed() < Duration::from_secs(90) {
                    let key = format!("bg{n}-{}", ops % 40);
                    let put = text(&mut client, &format!("/put?key={key}&value={ops}&by=bg"));
                    let get = text(&mut client, &format!("/get?key={key}"));
                    if put != (200, "stored".into()) || get != (200, format!("{ops} by bg")) {
                        failures.lock().unwrap().push(format!("{key}: put {put:?}, get {get:?}"));
                    }
                    ops += 2;
                }
                ops
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    cluster.begin_migration(slot, source, target);
    cluster.finish_migration(slot, source, target, || std::thread::sleep(Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let ops: u32 = traffic.into_iter().map(|t| t.join().expect("traffic thread")).sum();

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {ops} operations failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ops >= 20, "traffic ran: {ops} operations");
    assert_eq!(cluster.owner_of(slot), target, "the slot moved");
    for i in [0, 17, 49] {
        assert_eq!(text(&mut client, &format!("/get?key=k{i:02}")), (200, format!("{i} by setup")));
    }
    assert_eq!(text(&mut client, "/count?prefix=k"), (200, "50".into()));
    assert_eq!(isobar.metrics().sum("isobar_tenant_kv_errors_total", &[]), 0.0);
}
