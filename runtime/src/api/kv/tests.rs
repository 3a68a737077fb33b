//! KVNamespace in a real isolate against a real embedded store in a temporary directory. The
//! test plays the core's part: it carries the isolate's `Work::Kv` to a `KvClient`, waits for
//! the storage thread's replies and settles the ops, so the whole path but the ring runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use isobar_state::clock::ManualClock;
use isobar_state::kv::NamespaceRegistry;
use isobar_state::kv::embedded::{EmbeddedConfig, EmbeddedKv, KvClient};
use isobar_tenancy::KvBinding;

use crate::bridge::async_ops::Settle;
use crate::outbound::outbox::Work;
use crate::testing::{Req, api_dir, body_of};
use crate::{Outcome, RequestParts, ScriptFormat, Worker, WorkerSpec};

struct Harness {
    worker: Worker,
    client: KvClient,
    store: EmbeddedKv,
    clock: Arc<ManualClock>,
    next_id: u64,
    /// Verbs of the operations the ops refused themselves (`Work::KvRefused`).
    refused: Vec<&'static str>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let clock = ManualClock::new(now);
        let store =
            EmbeddedKv::open(EmbeddedConfig::new(dir.path().join("kv.redb")), clock.clone(), NamespaceRegistry::new())
                .unwrap();
        let client = store.client(Arc::new(|| {}));
        let file = api_dir().join("kv/test.js");
        let source = std::fs::read_to_string(&file).unwrap();
        let mut spec = WorkerSpec::from_source("kv", &file, source, ScriptFormat::Auto);
        let assert = std::fs::read_to_string(api_dir().join("test_assert.js")).unwrap();
        spec.modules = Arc::new(
            [(file.parent().unwrap().join("assert.js"), crate::worker::ModuleSource::Js(assert))].into_iter().collect(),
        );
        spec.kv = Arc::new(vec![
            KvBinding { binding: "KV".into(), namespace: "main".into() },
            KvBinding { binding: "KV2".into(), namespace: "other".into() },
        ]);
        let worker = Worker::new(&spec).unwrap();
        Harness { worker, client, store, clock, next_id: 1, refused: Vec::new(), _dir: dir }
    }

    /// Carries the isolate's KV work to the store and settles what it answers.
    fn carry_work(&mut self) -> bool {
        let mut work = Vec::new();
        self.worker.take_outbox(&mut work);
        if work.is_empty() {
            return false;
        }
        let mut settled: Vec<(u32, Settle)> = Vec::new();
        let mut submitted = 0;
        for item in work {
            let (op, binding, kv) = match item {
                Work::Kv { op, binding, kv } => (op, binding, kv),
                Work::KvRefused { verb } => {
                    self.refused.push(verb);
                    continue;
                }
                _ => panic!("only KV work is expected"),
            };
            let name = if binding == 0 { "main" } else { "other" };
            let namespace = self.store.namespace("kvtest", name).unwrap();
            match self.client.submit(u64::from(op), &namespace, *kv) {
                Ok(()) => submitted += 1,
                Err(error) => settled.push((op, super::settle_reply(Err(error)))),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while submitted > 0 {
            match self.client.try_recv() {
                Some((token, result)) => {
                    settled.push((token as u32, super::settle_reply(result)));
                    submitted -= 1;
                }
                None => {
                    assert!(Instant::now() < deadline, "the store did not answer");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        self.worker.settle(settled, Duration::MAX);
        true
    }

    /// Runs the test's phase `path`; it must answer "ok".
    fn phase(&mut self, path: &str) {
        let id = self.next_id;
        self.next_id += 1;
        let url = format!("http://kv.test{path}");
        let req = Req::get(&url);
        let parts = RequestParts { method: req.method, url: req.url, headers: req.headers, body: req.body };
        self.worker.dispatch(id, &parts, Instant::now(), Duration::MAX, 50);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut outcomes = Vec::new();
        loop {
            self.worker.run_microtasks(Duration::MAX);
            self.worker.take_outcomes(&mut outcomes);
            if let Some(i) = outcomes
                .iter()
                .position(|o| matches!(o, Outcome::Response { id: x, .. } | Outcome::Failed { id: x, .. } if *x == id))
            {
                let outcome = outcomes.swap_remove(i);
                self.worker.responded(id, Instant::now());
                assert_eq!(body_of(Some(outcome)), (200, "ok".to_string()), "{path}");
                return;
            }
            assert!(Instant::now() < deadline, "{path} never finished");
            if !self.carry_work() {
                // Streams and timers need their turns too.
                if let Some(next) = self.worker.next_timer() {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    self.worker.fire_timers(Instant::now(), Duration::MAX);
                } else if !self.worker.has_pending_work() {
                    panic!("{path}: the script waits on nothing");
                }
            }
        }
    }
}

#[test]
fn kv_types_metadata_and_deletes() {
    let mut harness = Harness::new();
    harness.phase("/semantics");
    let counters = harness.store.registry().snapshot();
    let main = counters.iter().find(|(_, ns, _)| ns == "main").map(|(_, _, c)| *c).unwrap();
    assert!(main.puts >= 10 && main.gets >= 10 && main.deletes == 2, "{main:?}");
    assert!(main.bytes_written > 0 && main.bytes_read > 0, "{main:?}");
}

#[test]
fn kv_expiration_follows_the_store_clock() {
    let mut harness = Harness::new();
    harness.phase("/expire-put");
    // Past the 60 s TTL by the store's clock, without sleeping.
    harness.clock.advance_ms(61_000);
    harness.phase("/expire-check");
}

#[test]
fn kv_list_pages_through_thousands_of_keys() {
    let mut harness = Harness::new();
    harness.phase("/list");
}

#[test]
fn kv_limits_are_workers_errors() {
    let mut harness = Harness::new();
    harness.phase("/limits");
    // Limits the ops check before copying the bytes are reported to the core, to be counted.
    for verb in ["get", "put", "delete", "list"] {
        assert!(harness.refused.contains(&verb), "{verb} refusals reported: {:?}", harness.refused);
    }
}

#[test]
fn kv_many_operations_in_flight() {
    let mut harness = Harness::new();
    harness.phase("/concurrent");
}
