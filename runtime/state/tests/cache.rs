//! The Cache API store with its real thread and a real directory: hit, miss, expiry, delete,
//! method rules, what `put` refuses or skips, tenants and cache names apart, and LRU eviction
//! under the memory budget (to disk) and the disk budget (out).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use isobar_state::cache::policy::SkipReason;
use isobar_state::cache::{
    CacheClient, CacheConfig, CacheError, CacheKey, CacheOp, CacheReply, CacheStore, CachedResponse,
};
use isobar_state::clock::ManualClock;

const T0_MS: u64 = 1_893_456_000_000;

struct Harness {
    clock: Arc<ManualClock>,
    client: CacheClient,
    woken: Receiver<()>,
    store: CacheStore,
    dir: tempfile::TempDir,
    next: u64,
}

impl Harness {
    fn new(configure: impl FnOnce(&mut CacheConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CacheConfig::new(dir.path().join("cache"));
        configure(&mut config);
        let clock = ManualClock::new(T0_MS);
        let store = CacheStore::open(config, clock.clone()).unwrap();
        let (tx, woken) = crossbeam_channel::unbounded();
        let client = store.client(Arc::new(move || {
            let _ = tx.send(());
        }));
        Self { clock, client, woken, store, dir, next: 0 }
    }

    fn call(&mut self, op: CacheOp) -> Result<CacheReply, CacheError> {
        self.next += 1;
        self.client.submit(self.next, op)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((token, result)) = self.client.try_recv() {
                assert_eq!(token, self.next);
                return result;
            }
            assert!(Instant::now() < deadline, "no reply");
            let _ = self.woken.recv_timeout(Duration::from_millis(100));
        }
    }

    fn put(&mut self, key: &CacheKey, response: CachedResponse) -> Option<SkipReason> {
        match self.call(CacheOp::Put { key: key.clone(), method: "GET".into(), response }) {
            Ok(CacheReply::Put(skipped)) => skipped,
            other => panic!("{other:?}"),
        }
    }

    fn get(&mut self, key: &CacheKey) -> Option<CachedResponse> {
        self.match_with(key, "GET", false)
    }

    fn match_with(&mut self, key: &CacheKey, method: &str, ignore_method: bool) -> Option<CachedResponse> {
        match self.call(CacheOp::Match { key: key.clone(), method: method.into(), ignore_method }) {
            Ok(CacheReply::Match(found)) => found,
            other => panic!("{other:?}"),
        }
    }

    fn delete(&mut self, key: &CacheKey, method: &str, ignore_method: bool) -> bool {
        match self.call(CacheOp::Delete { key: key.clone(), method: method.into(), ignore_method }) {
            Ok(CacheReply::Deleted(deleted)) => deleted,
            other => panic!("{other:?}"),
        }
    }

    fn entry_files(&self) -> usize {
        entry_files(&self.dir.path().join("cache"))
    }
}

/// The `*.entry` files in `dir` (beside them are the stores' lock files).
fn entry_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "entry")).count()
}

fn key(tenant: &str, name: Option<&str>, url: &str) -> CacheKey {
    CacheKey { tenant: tenant.into(), cache_name: name.map(str::to_owned), url: url.into() }
}

fn response(cache_control: &str, body: &[u8]) -> CachedResponse {
    CachedResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into()), ("cache-control".into(), cache_control.into())],
        body: body.to_vec(),
    }
}

#[test]
fn hit_miss_expiry_and_delete() {
    let mut h = Harness::new(|_| {});
    let page = key("t", None, "https://example.com/page");
    assert_eq!(h.get(&page), None, "miss");
    assert_eq!(h.put(&page, response("max-age=60", b"hello")), None);
    let hit = h.get(&page).expect("hit");
    assert_eq!(hit.body, b"hello");
    assert_eq!(hit.status, 200);
    assert!(hit.headers.contains(&("content-type".into(), "text/plain".into())));
    assert!(hit.headers.contains(&("cf-cache-status".into(), "HIT".into())));
    // s-maxage wins over max-age.
    let short = key("t", None, "https://example.com/short");
    h.put(&short, response("max-age=600, s-maxage=10", b"s"));

    h.clock.advance_ms(9_999);
    assert!(h.get(&short).is_some());
    h.clock.advance_ms(1);
    assert_eq!(h.get(&short), None, "expired at s-maxage");
    h.clock.advance_ms(49_999);
    assert!(h.get(&page).is_some());
    h.clock.advance_ms(1);
    assert_eq!(h.get(&page), None, "expired at max-age");

    h.put(&page, response("max-age=60", b"again"));
    assert!(!h.delete(&page, "POST", false), "non-GET delete without ignoreMethod does nothing");
    assert!(h.get(&page).is_some());
    assert!(h.delete(&page, "GET", false));
    assert!(!h.delete(&page, "GET", false), "already gone");
    assert_eq!(h.get(&page), None);

    let stats = h.store.stats().tenants();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].1.hits, 4);
    assert_eq!(stats[0].1.puts_stored, 3);
}

#[test]
fn methods_refusals_and_skips() {
    let mut h = Harness::new(|_| {});
    let url = key("t", None, "https://example.com/a");
    h.put(&url, response("max-age=60", b"a"));
    assert_eq!(h.match_with(&url, "POST", false), None);
    assert_eq!(h.match_with(&url, "HEAD", true).map(|r| r.body), Some(b"a".to_vec()), "ignoreMethod");
    assert!(h.delete(&url, "DELETE", true));

    let put = |method: &str, response| CacheOp::Put { key: url.clone(), method: method.into(), response };
    assert_eq!(h.call(put("POST", response("max-age=60", b""))), Err(CacheError::NonGetPut));
    let mut partial = response("max-age=60", b"");
    partial.status = 206;
    assert_eq!(h.call(put("GET", partial)), Err(CacheError::PartialContent));
    let mut vary = response("max-age=60", b"");
    vary.headers.push(("Vary".into(), "*".into()));
    assert_eq!(h.call(put("GET", vary)), Err(CacheError::VaryStar));
    assert_eq!(CacheError::VaryStar.js_class(), "TypeError");
    let bad_url = CacheOp::Match { key: key("t", None, "/relative"), method: "GET".into(), ignore_method: false };
    assert_eq!(h.call(bad_url), Err(CacheError::InvalidUrl));

    assert_eq!(h.put(&url, response("no-store", b"x")), Some(SkipReason::NoStore));
    assert_eq!(h.put(&url, response("private, max-age=60", b"x")), Some(SkipReason::Private));
    let mut cookie = response("max-age=60", b"x");
    cookie.headers.push(("Set-Cookie".into(), "session=1".into()));
    assert_eq!(h.put(&url, cookie.clone()), Some(SkipReason::SetCookie));
    assert_eq!(h.get(&url), None);
    // private=Set-Cookie: stored, without the cookie.
    cookie.headers.retain(|(n, _)| n != "cache-control");
    cookie.headers.push(("cache-control".into(), "private=Set-Cookie, max-age=60".into()));
    assert_eq!(h.put(&url, cookie), None);
    let stored = h.get(&url).unwrap();
    assert!(!stored.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("set-cookie")));
    let mut not_modified = response("max-age=60", b"");
    not_modified.status = 304;
    assert_eq!(h.put(&url, not_modified), Some(SkipReason::NotModified));
    let mut error = response("", b"");
    error.headers.clear();
    error.status = 500;
    assert_eq!(h.put(&url, error), Some(SkipReason::StatusNotCacheable));
    // The entry limit: a larger response is an Error (Cloudflare's cache answers 413).
    let mut h = Harness::new(|c| c.entry_bytes_max = 1000);
    let put = CacheOp::Put { key: url.clone(), method: "GET".into(), response: response("max-age=60", &[0; 2000]) };
    let error = h.call(put).unwrap_err();
    assert!(matches!(error, CacheError::TooLarge { bytes, max: 1000 } if bytes > 2000), "{error:?}");
    assert_eq!(error.js_class(), "Error");
    assert_eq!(h.put(&url, response("max-age=60", &[0; 500])), None, "within the limit");
}

#[test]
fn stores_share_a_directory_and_remove_what_dead_ones_left() {
    // Everything on disk, so both stores write entry files side by side.
    let mut first = Harness::new(|c| c.memory_bytes_max = 0);
    let dir = first.dir.path().join("cache");
    // A store that died: its lock file is not locked, its entry is left.
    std::fs::write(dir.join("deadbeef.lock"), b"").unwrap();
    std::fs::write(dir.join("deadbeef-1.entry"), b"junk").unwrap();
    std::fs::write(dir.join("0rphan-7.entry"), b"junk").unwrap();
    let url = key("t", None, "https://example.com/same");
    first.put(&url, response("max-age=60", b"first"));

    let mut config = CacheConfig::new(&dir);
    config.memory_bytes_max = 0;
    let second = CacheStore::open(config, first.clock.clone()).unwrap();
    let (tx, woken) = crossbeam_channel::unbounded();
    let client = second.client(Arc::new(move || {
        let _ = tx.send(());
    }));
    let mut second = Harness {
        clock: first.clock.clone(),
        client,
        woken,
        store: second,
        dir: tempfile::tempdir().unwrap(),
        next: 0,
    };
    assert!(!dir.join("deadbeef.lock").exists() && !dir.join("deadbeef-1.entry").exists(), "a dead store's files go");
    assert!(!dir.join("0rphan-7.entry").exists(), "so does an entry without a lock");
    assert_eq!(entry_files(&dir), 1, "the live store's entry stays");

    // The same key in each store: each reads its own file.
    assert_eq!(second.get(&url), None, "a store never reads another's files");
    second.put(&url, response("max-age=60", b"second"));
    assert_eq!(entry_files(&dir), 2);
    assert_eq!(first.get(&url).unwrap().body, b"first");
    assert_eq!(second.get(&url).unwrap().body, b"second");

    // A store that stops takes its files, lock included, with it.
    let Harness { store, client, .. } = second;
    drop(client);
    drop(store);
    assert_eq!(entry_files(&dir), 1);
    let locks =
        std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "lock"));
    assert_eq!(locks.count(), 1, "only the first store's lock is left");
    assert_eq!(first.get(&url).unwrap().body, b"first");
}

#[test]
fn tenants_and_cache_names_are_apart() {
    let mut h = Harness::new(|_| {});
    let url = "https://example.com/shared";
    h.put(&key("a", None, url), response("max-age=60", b"a-default"));
    h.put(&key("a", Some("custom"), url), response("max-age=60", b"a-custom"));
    assert_eq!(h.get(&key("b", None, url)), None);
    assert_eq!(h.get(&key("a", Some("default"), url)), None, "open('default') is not caches.default");
    assert_eq!(h.get(&key("a", None, url)).unwrap().body, b"a-default");
    assert_eq!(h.get(&key("a", Some("custom"), url)).unwrap().body, b"a-custom");
}

#[test]
fn memory_budget_overflows_to_disk_least_recently_used_first() {
    // Each entry is ~10 KiB; memory holds three, disk plenty.
    let mut h = Harness::new(|c| {
        c.memory_bytes_max = 35 * 1024;
        c.disk_bytes_max = 1024 * 1024;
    });
    let keys: Vec<CacheKey> = (0..6).map(|i| key("t", None, &format!("https://example.com/{i}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        h.put(k, response("max-age=600", &vec![i as u8; 10 * 1024]));
    }
    let stats = h.store.stats();
    assert_eq!(stats.demoted.load(Ordering::Relaxed), 3, "the three oldest went to disk");
    assert!(stats.memory_bytes.load(Ordering::Relaxed) <= 35 * 1024);
    assert_eq!(h.entry_files(), 3);
    // All six are still hits; reading one from disk brings it back to memory.
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(h.get(k).unwrap().body, vec![i as u8; 10 * 1024]);
    }
    assert_eq!(h.store.stats().evicted.load(Ordering::Relaxed), 0);
    assert_eq!(h.store.stats().entries.load(Ordering::Relaxed), 6);
}

#[test]
fn disk_budget_evicts_least_recently_used() {
    // Memory holds one ~10 KiB entry, disk three: seven entries leave four in the cache.
    let mut h = Harness::new(|c| {
        c.memory_bytes_max = 12 * 1024;
        c.disk_bytes_max = 32 * 1024;
    });
    let keys: Vec<CacheKey> = (0..7).map(|i| key("t", None, &format!("https://example.com/{i}"))).collect();
    for (i, k) in keys.iter().take(4).enumerate() {
        h.put(k, response("max-age=600", &vec![i as u8; 10 * 1024]));
    }
    // Touch the oldest: it becomes the most recently used, so the next oldest goes first.
    assert!(h.get(&keys[0]).is_some());
    for (i, k) in keys.iter().enumerate().skip(4) {
        h.put(k, response("max-age=600", &vec![i as u8; 10 * 1024]));
    }
    let present: Vec<bool> = keys.iter().map(|k| h.get(k).is_some()).collect();
    assert!(present[0], "recently used survives");
    assert!(!present[1] && !present[2] && !present[3], "least recently used were evicted: {present:?}");
    assert!(h.store.stats().disk_bytes.load(Ordering::Relaxed) <= 32 * 1024);
    assert!(h.store.stats().evicted.load(Ordering::Relaxed) >= 3);
    assert!(h.entry_files() <= 3);
    // A response larger than memory but within disk goes straight to disk.
    let big = key("t", None, "https://example.com/big");
    assert_eq!(h.put(&big, response("max-age=600", &[7; 20 * 1024])), None);
    assert_eq!(h.get(&big).map(|r| r.body.len()), Some(20 * 1024));
}

#[test]
fn entry_files_are_removed_when_the_store_stops() {
    let mut h = Harness::new(|c| c.memory_bytes_max = 1024);
    h.put(&key("t", None, "https://example.com/x"), response("max-age=600", &[1; 4096]));
    assert_eq!(h.entry_files(), 1);
    let dir = h.dir.path().join("cache");
    let Harness { store, client, dir: _keep, .. } = h;
    drop(client);
    drop(store);
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "entries and the lock file are gone");
}
