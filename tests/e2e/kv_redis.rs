//! Workers KV on a Valkey/Redis server, through the real binary: `[kv] backend = "redis"`, the
//! cores' own connections to a `redis-server` each test starts on a free loopback port. Two
//! isobar processes share one server; a server that is stopped, killed and started again gives
//! scripts clean errors by the operation's deadline (never a hung core) and then serves again.
//!
//! Skipped, saying so, when neither `valkey-server` nor `redis-server` is installed (`.ci/run`
//! installs `redis-server`). Every loop is bounded in count and time; only loopback is used;
//! only processes the test started are signalled.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isobar_e2e::{Client, Isobar, TempDir};

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

fn server_binary() -> Option<PathBuf> {
    ["/usr/bin/valkey-server", "/usr/bin/redis-server"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

macro_rules! require_server {
    () => {
        if server_binary().is_none() {
            eprintln!("SKIPPED: no valkey-server or redis-server; apt-get install redis-server");
            return;
        }
    };
}

/// One redis-server the test started, on a fixed port so it can be started again there.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut redis = Redis { child: None, port, dir: TempDir::new("redis") };
        redis.restart();
        redis
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    fn restart(&mut self) {
        let child = Command::new(server_binary().expect("a server binary"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let ready = isobar_e2e::eventually(Duration::from_secs(10), || self.ping().then_some(()));
        assert!(ready.is_some(), "redis-server did not answer PING on port {}", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT");
        }
        self.kill();
    }
}

/// A configuration with one tenant whose `KV` binding is namespace `shared` on `redis`.
fn serve(dir: &TempDir, redis: &Redis, cores: &str) -> Isobar {
    let script = dir.path().join("kv.js");
    if !script.exists() {
        dir.write("kv.js", SCRIPT);
    }
    let config = format!(
        "[kv]\nbackend = \"redis\"\nnodes = [\"127.0.0.1:{}\"]\n\
         [[tenant]]\nname = \"app\"\nscript = {:?}\nroutes = [\"*\"]\n[[tenant.kv]]\nbinding = \"KV\"\nnamespace = \"shared\"\n",
        redis.port,
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
    let redis = Redis::start();
    let dir = TempDir::new("kv-redis-two");
    let (first, second) = (serve(&dir, &redis, "2"), serve(&dir, &redis, "1"));
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
    let mut redis = Redis::start();
    let dir = TempDir::new("kv-redis-down");
    let isobar = serve(&dir, &redis, "1");
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
    redis.kill();
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
