//! The embedded KV backend against a real redb file: Workers semantics (shared with the Redis
//! backend's tests), a full queue, background purge, and durability across `kill -9`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use isobar_state::clock::{ManualClock, SystemClock};
use isobar_state::kv::embedded::{EmbeddedConfig, EmbeddedKv, KvClient};
use isobar_state::kv::{Expiration, KvError, KvOp, KvReply, Namespace, NamespaceRegistry};

use common::{KvHarness, T0_MS};

const REPLY_WAIT: Duration = Duration::from_secs(20);

struct Embedded {
    clock: Arc<ManualClock>,
    registry: Arc<NamespaceRegistry>,
    // Field order: the client goes before the store, whose drop joins the storage thread.
    client: KvClient,
    woken: Receiver<()>,
    store: EmbeddedKv,
    next_token: u64,
}

fn wake_channel() -> (Arc<dyn Fn() + Send + Sync>, Receiver<()>) {
    let (tx, rx): (Sender<()>, Receiver<()>) = crossbeam_channel::unbounded();
    (
        Arc::new(move || {
            let _ = tx.send(());
        }),
        rx,
    )
}

impl Embedded {
    fn open(config: EmbeddedConfig) -> Self {
        let clock = ManualClock::new(T0_MS);
        let registry = NamespaceRegistry::new();
        let store = EmbeddedKv::open(config, clock.clone(), registry.clone()).unwrap();
        let (wake, woken) = wake_channel();
        let client = store.client(wake);
        Self { clock, registry, client, woken, store, next_token: 0 }
    }
}

impl KvHarness for Embedded {
    fn exec(&mut self, namespace: &Namespace, op: KvOp) -> Result<KvReply, KvError> {
        self.next_token += 1;
        let token = self.next_token;
        self.client.submit(token, namespace, op)?;
        let deadline = Instant::now() + REPLY_WAIT;
        loop {
            if let Some((got, result)) = self.client.try_recv() {
                assert_eq!(got, token);
                return result;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no reply within {REPLY_WAIT:?}");
            let _ = self.woken.recv_timeout(left);
        }
    }

    fn clock(&self) -> &Arc<ManualClock> {
        &self.clock
    }

    fn registry(&self) -> &Arc<NamespaceRegistry> {
        &self.registry
    }
}

#[test]
fn workers_kv_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Embedded::open(EmbeddedConfig::new(dir.path().join("kv.redb")));
    common::run_all(&mut store, "tenant-a");
    assert!(store.store.stats().commits.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    {
        let mut store = Embedded::open(EmbeddedConfig::new(&path));
        let ns = store.registry.namespace("t", "ns").unwrap();
        common::put(&mut store, &ns, "k", b"v", Expiration::Never, Some("1"));
    }
    let mut store = Embedded::open(EmbeddedConfig::new(&path));
    let ns = store.registry.namespace("t", "ns").unwrap();
    assert_eq!(common::get(&mut store, &ns, "k"), common::value(b"v", Some("1")));
}

#[test]
fn a_full_queue_is_an_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path().join("kv.redb"));
    config.queue_max = 8;
    let store = EmbeddedKv::open(config, Arc::new(SystemClock), NamespaceRegistry::new()).unwrap();
    let ns = store.namespace("t", "ns").unwrap();
    // The first reply's wake blocks the storage thread until the test lets it go, standing in
    // for a slow disk; meanwhile the queue fills.
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = entered_tx.try_send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(20));
    });
    let mut client = store.client(wake);
    let get = || KvOp::Get { key: "k".into(), cache_ttl_secs: None };
    client.submit(0, &ns, get()).unwrap();
    entered_rx.recv_timeout(REPLY_WAIT).expect("storage thread reached the wake");
    for token in 1..=8 {
        client.submit(token, &ns, get()).unwrap();
    }
    let started = Instant::now();
    assert_eq!(client.submit(9, &ns, get()), Err(KvError::QueueFull));
    assert!(started.elapsed() < Duration::from_secs(1), "a full queue never waits");
    assert_eq!(store.stats().queue_full.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(ns.counters().snapshot().errors, 1);
    // Let everything drain: all nine accepted operations are answered.
    drop(release_tx);
    let deadline = Instant::now() + REPLY_WAIT;
    let mut answered = Vec::new();
    while answered.len() < 9 && Instant::now() < deadline {
        match client.try_recv() {
            Some((token, result)) => {
                assert_eq!(result, Ok(KvReply::Value(None)));
                answered.push(token);
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, (0..=8).collect::<Vec<_>>());
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn in_flight_per_core_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path().join("kv.redb"));
    config.in_flight_per_client_max = 3;
    let store = EmbeddedKv::open(config, Arc::new(SystemClock), NamespaceRegistry::new()).unwrap();
    let ns = store.namespace("t", "ns").unwrap();
    let (wake, _woken) = wake_channel();
    let mut client = store.client(wake);
    for token in 0..3 {
        client.submit(token, &ns, KvOp::Delete { key: "k".into() }).unwrap();
    }
    assert_eq!(client.submit(3, &ns, KvOp::Delete { key: "k".into() }), Err(KvError::TooManyInFlight));
}

#[test]
fn expired_keys_are_purged_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path().join("kv.redb"));
    config.purge_interval = Duration::from_millis(20);
    config.purge_batch_max = 7;
    let mut store = Embedded::open(config);
    let ns = store.registry.namespace("t", "ns").unwrap();
    for i in 0..50 {
        common::put(&mut store, &ns, &format!("k{i}"), b"v", Expiration::Ttl(60), None);
    }
    common::put(&mut store, &ns, "keep", b"v", Expiration::Ttl(600), None);
    store.clock.advance_ms(61_000);
    // Nobody reads the keys; the storage thread removes them by itself, 7 per transaction.
    let deadline = Instant::now() + REPLY_WAIT;
    while store.store.stats().purged.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "purge did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.store.stats().purged.load(std::sync::atomic::Ordering::Relaxed), 50);
    let listed = common::list(&mut store, &ns, "", 100, None);
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(listed.keys[0].name, "keep");
}

#[test]
fn group_commit_batches_concurrent_puts() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedKv::open(
        EmbeddedConfig::new(dir.path().join("kv.redb")),
        Arc::new(SystemClock),
        NamespaceRegistry::new(),
    )
    .unwrap();
    let ns = store.namespace("t", "ns").unwrap();
    let (wake, woken) = wake_channel();
    let mut client = store.client(wake);
    for token in 0..500u64 {
        let op =
            KvOp::Put { key: format!("k{token}"), value: vec![1; 100], expiration: Expiration::Never, metadata: None };
        client.submit(token, &ns, op).unwrap();
    }
    let mut done = 0;
    let deadline = Instant::now() + REPLY_WAIT;
    while done < 500 {
        assert!(Instant::now() < deadline);
        match client.try_recv() {
            Some((_, result)) => {
                assert_eq!(result, Ok(KvReply::Done));
                done += 1;
            }
            None => drop(woken.recv_timeout(Duration::from_millis(100))),
        }
    }
    // 500 puts queued at once are committed in far fewer transactions (each one fsync).
    let commits = store.stats().commits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(commits < 500, "{commits} commits for 500 puts");
}

/// The child half of the durability test: opens the store named by `ISOBAR_KV_CHILD_DB` and
/// puts keys as fast as it can, printing each key once its put is acknowledged, until killed.
#[test]
fn durability_child() {
    let Ok(path) = std::env::var("ISOBAR_KV_CHILD_DB") else { return };
    let store = EmbeddedKv::open(EmbeddedConfig::new(path), Arc::new(SystemClock), NamespaceRegistry::new()).unwrap();
    let ns = store.namespace("t", "durable").unwrap();
    let (wake, woken) = wake_channel();
    let mut client = store.client(wake);
    let mut stdout = std::io::stdout().lock();
    let mut next = 0u64;
    // Keep up to 64 puts in flight so batches form, as they would under load from many cores.
    // Bounded by count and time in case the parent never kills us.
    let started = Instant::now();
    while next < 1_000_000 && started.elapsed() < Duration::from_secs(60) {
        while client.in_flight() < 64 {
            let op = KvOp::Put {
                key: format!("key-{next:08}"),
                value: format!("value-{next}").into_bytes(),
                expiration: Expiration::Never,
                metadata: None,
            };
            client.submit(next, &ns, op).unwrap();
            next += 1;
        }
        let _ = woken.recv_timeout(Duration::from_millis(100));
        while let Some((token, result)) = client.try_recv() {
            assert_eq!(result, Ok(KvReply::Done));
            writeln!(stdout, "ACK key-{token:08}").unwrap();
        }
        stdout.flush().unwrap();
    }
}

#[test]
fn acknowledged_puts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "durability_child", "--nocapture", "--test-threads=1"])
        .env("ISOBAR_KV_CHILD_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read acknowledgements on a thread so the kill is not held up by a blocking read.
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(key) = line.strip_prefix("ACK ") {
                let _ = ack_tx.send(key.to_owned());
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 3000 && Instant::now() < deadline {
        if let Ok(key) = ack_rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(key);
        }
    }
    assert!(acked.len() >= 3000, "child acknowledged only {} puts", acked.len());
    // SIGKILL, in the middle of the stream: the child has puts in flight and in its queue.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    // Acknowledgements printed before the kill, and read after it, count too.
    acked.extend(ack_rx.try_iter());

    let mut store = Embedded::open(EmbeddedConfig::new(&path));
    let ns = store.registry.namespace("t", "durable").unwrap();
    for key in &acked {
        let index: u64 = key.trim_start_matches("key-").parse().unwrap();
        assert_eq!(
            common::get(&mut store, &ns, key),
            common::value(format!("value-{index}").as_bytes(), None),
            "acknowledged {key} is missing after kill -9"
        );
    }
    // The store is usable, and keys are listed in order, after the crash.
    let (all, _) = common::list_all(&mut store, &ns, "", 1000);
    assert!(all.len() >= acked.len());
    assert!(all.windows(2).all(|w| w[0].name < w[1].name));
    eprintln!("{} acknowledged puts, {} keys after kill -9", acked.len(), all.len());
}
