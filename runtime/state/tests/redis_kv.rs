//! The Redis KV backend against real redis-server processes the tests start on loopback (free
//! ports, killed when the test ends): the shared Workers semantics on a standalone server, two
//! clients sharing it, the server stopped and killed mid-test, and a three-node cluster with a
//! slot migrated during traffic. The sans-IO engine is driven here by a small blocking driver
//! over `std::net::TcpStream`; isobar drives it from a core's ring.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isobar_redis_testing::require_redis_server as require_server;
use isobar_redis_testing::{RedisCluster as Cluster, RedisServer as Server, admin, text};
use isobar_state::clock::{Clock, ManualClock, SystemClock};
use isobar_state::kv::redis::{Action, RedisConfig, RedisKv};
use isobar_state::kv::{Expiration, KvError, KvOp, KvReply, Namespace, NamespaceRegistry};
use netstack::resp::Reply;
use netstack::resp::cluster::key_slot;

use common::KvHarness;

/// A blocking driver for the sans-IO engine: connects, writes, reads, polls.
struct Driver {
    kv: RedisKv,
    sockets: HashMap<String, TcpStream>,
    next_token: u64,
}

impl Driver {
    fn new(config: RedisConfig, clock: Arc<dyn Clock>) -> Self {
        Self { kv: RedisKv::new(config, clock), sockets: HashMap::new(), next_token: 0 }
    }

    fn pump(&mut self) {
        let now = Instant::now();
        while let Some(action) = self.kv.poll_action() {
            match action {
                Action::Connect { node } => {
                    let address = node.parse().unwrap();
                    match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                        Ok(stream) => {
                            stream.set_nonblocking(true).unwrap();
                            stream.set_nodelay(true).unwrap();
                            self.sockets.insert(node, stream);
                        }
                        Err(_) => self.kv.connection_lost(&node, now),
                    }
                }
                Action::Send { node, bytes } => {
                    let sent = self.sockets.get_mut(&node).map(|s| write_all(s, &bytes));
                    if sent != Some(true) {
                        self.sockets.remove(&node);
                        self.kv.connection_lost(&node, now);
                    }
                }
                Action::Close { node } => {
                    self.sockets.remove(&node);
                }
            }
        }
        let mut buf = vec![0u8; 256 * 1024];
        let nodes: Vec<String> = self.sockets.keys().cloned().collect();
        for node in nodes {
            while let Some(stream) = self.sockets.get_mut(&node) {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        self.sockets.remove(&node);
                        self.kv.connection_lost(&node, Instant::now());
                        break;
                    }
                    Ok(n) => self.kv.received(&node, &buf[..n], Instant::now()),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.sockets.remove(&node);
                        self.kv.connection_lost(&node, Instant::now());
                        break;
                    }
                }
            }
        }
        self.kv.poll(Instant::now());
    }

    fn exec(&mut self, namespace: &Namespace, op: KvOp) -> Result<KvReply, KvError> {
        self.next_token += 1;
        let token = self.next_token;
        self.kv.submit(token, namespace, op, Instant::now())?;
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            self.pump();
            if let Some((got, result)) = self.kv.next_completion() {
                assert_eq!(got, token);
                return result;
            }
            assert!(Instant::now() < give_up, "the engine neither answered nor timed out");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Writes everything to a non-blocking socket, waiting (bounded) while it is full.
fn write_all(stream: &mut TcpStream, mut bytes: &[u8]) -> bool {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < give_up => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(_) => return false,
        }
    }
    true
}

struct Harness {
    driver: Driver,
    clock: Arc<ManualClock>,
    registry: Arc<NamespaceRegistry>,
}

impl KvHarness for Harness {
    fn exec(&mut self, namespace: &Namespace, op: KvOp) -> Result<KvReply, KvError> {
        self.driver.exec(namespace, op)
    }
    fn clock(&self) -> &Arc<ManualClock> {
        &self.clock
    }
    fn registry(&self) -> &Arc<NamespaceRegistry> {
        &self.registry
    }
}

/// A manual clock at the real time, on a whole second: the server's PEXPIREAT uses the real
/// clock, and the semantics check expiry to the millisecond.
fn real_time_clock() -> Arc<ManualClock> {
    ManualClock::new(SystemClock.now_unix_ms() / 1000 * 1000)
}

#[test]
fn standalone_semantics() {
    require_server!();
    let server = Server::start(false);
    let clock = real_time_clock();
    let mut harness = Harness {
        driver: Driver::new(RedisConfig::standalone(server.node()), clock.clone()),
        clock,
        registry: NamespaceRegistry::new(),
    };
    common::run_all(&mut harness, "tenant-r");
    // Expired index entries were purged by later puts, and values by the server: nothing of
    // the expiry case's expired keys is left in its index.
    let index = admin(server.port, &["ZRANGE", "isobar:{tenant-r/expiry}:i", "0", "-1"]);
    let Reply::Array(members) = index else { panic!("{index:?}") };
    let names: Vec<String> = members.iter().map(text).collect();
    assert!(!names.contains(&"at".to_string()), "{names:?}");
}

#[test]
fn two_clients_see_each_others_writes() {
    require_server!();
    let server = Server::start(false);
    let registry = NamespaceRegistry::new();
    let ns = registry.namespace("shared", "ns").unwrap();
    // Two engines with their own connections, as two isobar processes would have.
    let mut a = Driver::new(RedisConfig::standalone(server.node()), Arc::new(SystemClock));
    let mut b = Driver::new(RedisConfig::standalone(server.node()), Arc::new(SystemClock));
    let put = |key: &str, value: &str| KvOp::Put {
        key: key.into(),
        value: value.into(),
        expiration: Expiration::Never,
        metadata: Some("{\"by\":\"a\"}".into()),
    };
    let get = |key: &str| KvOp::Get { key: key.into(), cache_ttl_secs: None };
    assert_eq!(a.exec(&ns, put("k", "from a")), Ok(KvReply::Done));
    match b.exec(&ns, get("k")) {
        Ok(KvReply::Value(Some(v))) => {
            assert_eq!(v.value, b"from a");
            assert_eq!(v.metadata.as_deref(), Some("{\"by\":\"a\"}"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.exec(&ns, KvOp::Delete { key: "k".into() }), Ok(KvReply::Done));
    assert_eq!(a.exec(&ns, get("k")), Ok(KvReply::Value(None)));
    for i in 0..20 {
        assert_eq!(a.exec(&ns, put(&format!("a{i:02}"), "x")), Ok(KvReply::Done));
    }
    match b.exec(&ns, KvOp::List { prefix: "a".into(), limit: 1000, cursor: None }) {
        Ok(KvReply::List(list)) => assert_eq!(list.keys.len(), 20),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stopped_or_killed_server_gives_clean_errors() {
    require_server!();
    let server = Server::start(false);
    let registry = NamespaceRegistry::new();
    let ns = registry.namespace("t", "ns").unwrap();
    let mut config = RedisConfig::standalone(server.node());
    config.op_timeout = Duration::from_millis(300);
    let mut driver = Driver::new(config, Arc::new(SystemClock));
    let get = || KvOp::Get { key: "k".into(), cache_ttl_secs: None };
    assert_eq!(driver.exec(&ns, get()), Ok(KvReply::Value(None)));

    // A server that stops answering (SIGSTOP) is a timeout, by the deadline, not a hang.
    server.signal("-STOP");
    let started = Instant::now();
    assert_eq!(driver.exec(&ns, get()), Err(KvError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(driver.kv.in_flight(), 0);
    server.signal("-CONT");
    // The timed-out connection was closed; the next operation opens a fresh one.
    assert_eq!(driver.exec(&ns, get()), Ok(KvReply::Value(None)));

    // An operation in flight when the server dies fails cleanly, and so does every later one.
    driver.kv.submit(999, &ns, get(), Instant::now()).unwrap();
    let mut server = server;
    server.kill_now();
    let give_up = Instant::now() + Duration::from_secs(10);
    let in_flight = loop {
        driver.pump();
        if let Some(done) = driver.kv.next_completion() {
            break done;
        }
        assert!(Instant::now() < give_up);
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(in_flight.0, 999);
    assert!(matches!(in_flight.1, Err(KvError::Unavailable(_)) | Ok(KvReply::Value(None))), "{:?}", in_flight.1);
    for _ in 0..3 {
        let started = Instant::now();
        let result = driver.exec(&ns, get());
        assert!(matches!(result, Err(KvError::Unavailable(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert!(ns.counters().snapshot().errors >= 4);
}

fn cluster_client(cluster: &Cluster) -> Driver {
    let mut config = RedisConfig::cluster(vec![cluster.servers[0].node()]);
    config.op_timeout = Duration::from_secs(10);
    Driver::new(config, Arc::new(SystemClock))
}

fn value_of(driver: &mut Driver, ns: &Namespace, key: &str) -> Option<Vec<u8>> {
    match driver.exec(ns, KvOp::Get { key: key.into(), cache_ttl_secs: None }) {
        Ok(KvReply::Value(value)) => value.map(|v| v.value),
        other => panic!("get {key}: {other:?}"),
    }
}

#[test]
fn cluster_follows_moved_and_ask_during_a_slot_migration() {
    require_server!();
    let cluster = Cluster::start();
    let registry = NamespaceRegistry::new();
    let ns = registry.namespace("shop", "carts").unwrap();
    let other = registry.namespace("shop", "users").unwrap();
    let slot = key_slot(b"shop/carts");
    assert_eq!(slot, key_slot(b"isobar:{shop/carts}:v:anything"), "the hash tag pins the namespace's slot");
    let source = cluster.owner_of(slot);
    let target = (source + 1) % 3;

    let mut a = cluster_client(&cluster);
    let mut b = cluster_client(&cluster);
    let put = |key: &str| KvOp::Put {
        key: key.into(),
        value: format!("value of {key}").into_bytes(),
        expiration: Expiration::Never,
        metadata: None,
    };
    for i in 0..100 {
        assert_eq!(a.exec(&ns, put(&format!("k{i:03}"))), Ok(KvReply::Done));
        assert_eq!(a.exec(&other, put(&format!("u{i:03}"))), Ok(KvReply::Done));
    }
    // B loads its slot map now, before the migration, so it will be stale afterwards.
    assert_eq!(value_of(&mut b, &ns, "k000"), Some(b"value of k000".to_vec()));
    assert!(b.kv.stats().slot_map_refreshes >= 1);

    // Traffic on the migrating namespace from a third client, on its own thread, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let traffic = {
        let (stop, errors, ns) = (stop.clone(), errors.clone(), ns.clone());
        let mut c = cluster_client(&cluster);
        std::thread::spawn(move || {
            let mut ops = 0u32;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && ops < 20_000 && started.elapsed() < Duration::from_secs(60) {
                let key = format!("bg{:03}", ops % 50);
                let put = KvOp::Put {
                    key: key.clone(),
                    value: key.clone().into_bytes(),
                    expiration: Expiration::Never,
                    metadata: None,
                };
                if let Err(e) = c.exec(&ns, put) {
                    errors.lock().unwrap().push(format!("put {key}: {e}"));
                }
                match c.exec(&ns, KvOp::Get { key: key.clone(), cache_ttl_secs: None }) {
                    Ok(KvReply::Value(Some(v))) if v.value == key.as_bytes() => {}
                    other => errors.lock().unwrap().push(format!("get {key}: {other:?}")),
                }
                ops += 2;
            }
            (ops, c.kv.stats())
        })
    };
    std::thread::sleep(Duration::from_millis(200));

    cluster.begin_migration(slot, source, target);
    // Move one value first: A's get of it must be answered by ASK, then ASKING on the target.
    cluster.migrate_keys(source, target, &["isobar:{shop/carts}:v:k005".to_string()]);
    assert_eq!(value_of(&mut a, &ns, "k005"), Some(b"value of k005".to_vec()));
    assert!(a.kv.stats().ask >= 1, "{:?}", a.kv.stats());
    assert_eq!(value_of(&mut a, &ns, "k006"), Some(b"value of k006".to_vec()), "still on the source");
    std::thread::sleep(Duration::from_millis(100));
    // Move the rest in chunks, with traffic in between.
    cluster.finish_migration(slot, source, target, || std::thread::sleep(Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (ops, traffic_stats) = traffic.join().unwrap();

    // B's map still points at the source: the source answers MOVED and B follows it.
    for i in 0..100 {
        let key = format!("k{i:03}");
        assert_eq!(value_of(&mut b, &ns, &key), Some(format!("value of {key}").into_bytes()));
    }
    assert!(b.kv.stats().moved >= 1, "{:?}", b.kv.stats());
    // The other namespace (another slot) never moved and is intact.
    assert_eq!(value_of(&mut b, &other, "u042"), Some(b"value of u042".to_vec()));
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "traffic during the migration failed: {errors:?}");
    assert!(ops >= 20, "traffic ran ({ops} operations, {traffic_stats:?})");
    eprintln!("traffic: {ops} operations during the migration, {traffic_stats:?}");
    // Everything lists in order from the new owner.
    match a.exec(&ns, KvOp::List { prefix: "k".into(), limit: 1000, cursor: None }) {
        Ok(KvReply::List(list)) => {
            assert_eq!(list.keys.len(), 100);
            assert!(list.list_complete);
            assert!(list.keys.windows(2).all(|w| w[0].name < w[1].name));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cluster_node_killed_gives_clean_errors() {
    require_server!();
    let mut cluster = Cluster::start();
    let registry = NamespaceRegistry::new();
    let ns = registry.namespace("t", "ns").unwrap();
    let owner = cluster.owner_of(key_slot(b"t/ns"));
    let mut client = cluster_client(&cluster);
    let put = KvOp::Put { key: "k".into(), value: b"v".to_vec(), expiration: Expiration::Never, metadata: None };
    assert_eq!(client.exec(&ns, put.clone()), Ok(KvReply::Done));
    cluster.servers[owner].kill_now();
    let started = Instant::now();
    let result = client.exec(&ns, put);
    assert!(matches!(result, Err(KvError::Unavailable(_)) | Err(KvError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
