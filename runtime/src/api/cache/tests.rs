//! The Cache API in real isolates against a real cache store (its thread, a temporary
//! directory, a clock the test moves). The test plays the core's part: it carries each
//! isolate's `Work::Cache` to a `CacheClient` under the isolate's tenant name, waits for the
//! storage thread's replies and settles the ops, so the whole path but the ring runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use isobar_state::cache::{CacheClient, CacheConfig, CacheStore};
use isobar_state::clock::ManualClock;

use crate::bridge::async_ops::Settle;
use crate::outbound::outbox::Work;
use crate::testing::{Req, api_dir, body_of};
use crate::{Outcome, RequestParts, ScriptFormat, Worker, WorkerSpec};

/// The store, its clock and its directory, shared by the tenants of one test.
struct Store {
    store: Arc<CacheStore>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let clock = ManualClock::new(now);
        let mut config = CacheConfig::new(dir.path().join("cache"));
        // Small enough that a test body can pass it; the memory tier small enough that entries
        // also go through the disk tier.
        config.entry_bytes_max = 1024 * 1024;
        config.memory_bytes_max = 64 * 1024;
        let store = Arc::new(CacheStore::open(config, clock.clone()).unwrap());
        Store { store, clock, _dir: dir }
    }
}

/// One tenant's isolate running test.js, with its own client of the store (as a core has).
struct Tenant {
    name: &'static str,
    worker: Worker,
    client: CacheClient,
    next_id: u64,
}

impl Tenant {
    fn new(store: &Store, name: &'static str) -> Tenant {
        let file = api_dir().join("cache/test.js");
        let source = std::fs::read_to_string(&file).unwrap();
        let mut spec = WorkerSpec::from_source(name, &file, source, ScriptFormat::Auto);
        let assert = std::fs::read_to_string(api_dir().join("test_assert.js")).unwrap();
        spec.modules = Arc::new(
            [(file.parent().unwrap().join("assert.js"), crate::worker::ModuleSource::Js(assert))].into_iter().collect(),
        );
        let worker = Worker::new(&spec).unwrap();
        let client = store.store.client(Arc::new(|| {}));
        Tenant { name, worker, client, next_id: 1 }
    }

    /// Carries the isolate's cache calls to the store under this tenant's name, and settles
    /// what it answers (or refuses at once).
    fn carry_work(&mut self) -> bool {
        let mut work = Vec::new();
        self.worker.take_outbox(&mut work);
        if work.is_empty() {
            return false;
        }
        let mut settled: Vec<(u32, Settle)> = Vec::new();
        let mut submitted = 0;
        for item in work {
            let Work::Cache { op, cache } = item else { panic!("only cache work is expected") };
            match self.client.submit(u64::from(op), cache.into_op(self.name)) {
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
        let url = format!("http://cache.test{path}");
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
                assert_eq!(body_of(Some(outcome)), (200, "ok".to_string()), "{} {path}", self.name);
                assert_eq!(self.worker.condemned(), None, "{path}: the isolate survives");
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
fn cache_globals_names_and_unimplemented_methods() {
    let store = Store::new();
    Tenant::new(&store, "a").phase("/shapes");
}

#[test]
fn cache_match_put_delete_semantics() {
    let store = Store::new();
    Tenant::new(&store, "a").phase("/semantics");
    let stats = store.store.stats();
    assert!(stats.tenants()[0].1.hits >= 10, "{:?}", stats.tenants());
}

#[test]
fn cache_entries_expire_by_the_store_clock() {
    let store = Store::new();
    let mut tenant = Tenant::new(&store, "a");
    tenant.phase("/expire-put");
    // Past max-age=60 by the store's clock, without sleeping.
    store.clock.advance_ms(61_000);
    tenant.phase("/expire-check");
}

#[test]
fn cache_tenants_never_see_each_other() {
    let store = Store::new();
    let mut a = Tenant::new(&store, "a");
    let mut b = Tenant::new(&store, "b");
    a.phase("/tenant-put");
    b.phase("/tenant-check");
    a.phase("/tenant-still");
}

#[test]
fn cache_hostile_scripts_get_errors() {
    let store = Store::new();
    let mut tenant = Tenant::new(&store, "a");
    tenant.phase("/hostile");
    // The store and the isolate both still serve.
    tenant.phase("/tenant-put");
}
