//! Real Valkey/Redis servers for tests: a server on a free loopback port,
//! a three-primary cluster, blocking admin commands, and a slot migration done the way an
//! operator's `redis-cli --cluster reshard` does it. Used by this crate's Redis tests and by the
//! end-to-end tests that point the isobar binary at a server. Only processes started here are
//! ever signalled; each is killed when its handle is dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use netstack::resp::Reply;
pub use netstack::resp::cluster::key_slot;
use netstack::resp::{Decoder, encode_command};

/// The server binary: Valkey if installed, else Redis (Debian's `redis-server`).
pub fn server_binary() -> Option<PathBuf> {
    ["/usr/bin/valkey-server", "/usr/bin/redis-server"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// Skips the calling test (saying so) when no server is installed; `.ci/run` installs
/// `redis-server`.
#[macro_export]
macro_rules! require_redis_server {
    () => {
        if $crate::server_binary().is_none() {
            eprintln!("SKIPPED: no valkey-server or redis-server; apt-get install redis-server");
            return;
        }
    };
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// One server this process started.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    cluster: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server on a free loopback port, persisting nothing; cluster-enabled if asked.
    pub fn start(cluster: bool) -> RedisServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = RedisServer { child: None, port: free_port(), cluster, dir };
        server.restart();
        server
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let mut command = Command::new(server_binary().expect("valkey-server or redis-server"));
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            command.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
            command.args(["--cluster-node-timeout", "5000"]);
        }
        self.child = Some(command.spawn().expect("start the server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while admin_try(self.port, &["PING"]).is_err() {
            assert!(Instant::now() < deadline, "the server on port {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn node(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to the running server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGKILL and reap; afterwards no signal is ever sent to this (possibly reused) pid.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// One command over a fresh blocking connection.
pub fn admin_try(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = Vec::new();
    encode_command(args, &mut out);
    stream.write_all(&out)?;
    let mut decoder = Decoder::new(64 * 1024 * 1024);
    let mut buf = [0u8; 65536];
    loop {
        if let Some(reply) = decoder.next_reply().map_err(|e| std::io::Error::other(e.to_string()))? {
            return Ok(reply);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        decoder.feed(&buf[..n]);
    }
}

/// One command that must succeed.
pub fn admin(port: u16, args: &[&str]) -> Reply {
    let reply = admin_try(port, args).unwrap_or_else(|e| panic!("{args:?} on port {port}: {e}"));
    assert!(reply.as_error().is_none(), "{args:?}: {reply:?}");
    reply
}

/// A bulk or simple string reply as text.
pub fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(reply.as_bytes().unwrap_or_default()).into_owned()
}

/// Three primaries on loopback, slots split in thirds, joined with CLUSTER MEET.
#[derive(Debug)]
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
    /// Each server's node id.
    pub ids: Vec<String>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start(true)).collect();
        let ids: Vec<String> = servers.iter().map(|s| text(&admin(s.port, &["CLUSTER", "MYID"]))).collect();
        let ranges = [("0", "5460"), ("5461", "10922"), ("10923", "16383")];
        for (server, (start, end)) in servers.iter().zip(ranges) {
            admin(server.port, &["CLUSTER", "ADDSLOTSRANGE", start, end]);
        }
        for server in &servers[1..] {
            admin(servers[0].port, &["CLUSTER", "MEET", "127.0.0.1", &server.port.to_string()]);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for server in &servers {
            loop {
                let info = text(&admin(server.port, &["CLUSTER", "INFO"]));
                let slots = admin(server.port, &["CLUSTER", "SLOTS"]);
                let ranges = if let Reply::Array(r) = &slots { r.len() } else { 0 };
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") && ranges == 3 {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not form: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { servers, ids }
    }

    /// The index of the server that serves `slot`, by the first server's map.
    pub fn owner_of(&self, slot: u16) -> usize {
        let Reply::Array(ranges) = admin(self.servers[0].port, &["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS is not an array")
        };
        for range in ranges {
            let Reply::Array(fields) = range else { panic!("a slot range is not an array") };
            let (Reply::Integer(start), Reply::Integer(end), Reply::Array(node)) = (&fields[0], &fields[1], &fields[2])
            else {
                panic!("unexpected slot range {fields:?}")
            };
            if (*start..=*end).contains(&i64::from(slot)) {
                let Reply::Integer(port) = node[1] else { panic!("unexpected node {node:?}") };
                return self.servers.iter().position(|s| i64::from(s.port) == port).expect("a known port");
            }
        }
        panic!("slot {slot} has no owner");
    }

    /// Starts moving `slot` from `source` to `target` (IMPORTING/MIGRATING): from now on the
    /// source answers `ASK` for keys it no longer has.
    pub fn begin_migration(&self, slot: u16, source: usize, target: usize) {
        let slot = slot.to_string();
        admin(self.servers[target].port, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &self.ids[source]]);
        admin(self.servers[source].port, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &self.ids[target]]);
    }

    /// Moves `keys` from `source` to `target` (MIGRATE).
    pub fn migrate_keys(&self, source: usize, target: usize, keys: &[String]) {
        let port = self.servers[target].port.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", port.as_str(), "", "0", "5000", "KEYS"];
        args.extend(keys.iter().map(String::as_str));
        admin(self.servers[source].port, &args);
    }

    /// Moves the rest of `slot`'s keys, 20 at a time with `between` run after each batch, then
    /// gives the slot to `target` on every node (the source then answers `MOVED`).
    pub fn finish_migration(&self, slot: u16, source: usize, target: usize, mut between: impl FnMut()) {
        let slot_text = slot.to_string();
        for _ in 0..100_000 {
            let keys = admin(self.servers[source].port, &["CLUSTER", "GETKEYSINSLOT", &slot_text, "20"]);
            let Reply::Array(keys) = keys else { panic!("GETKEYSINSLOT is not an array") };
            if keys.is_empty() {
                break;
            }
            self.migrate_keys(source, target, &keys.iter().map(text).collect::<Vec<_>>());
            between();
        }
        for server in &self.servers {
            admin(server.port, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &self.ids[target]]);
        }
    }
}
