//! The Cache API through the real binary: a Worker that answers from `caches` or fills it from
//! its "origin" (a body made on the spot), with the default system-call filter on (the cache
//! thread runs confined). A miss, then a hit with the same body from either core; a miss again
//! once max-age has passed on the wall clock; delete makes it miss; tenants and cache names do
//! not see each other's entries; the disk tier works under the filter; /metrics counts it all.
//!
//! Every loop is bounded in count and time; only loopback is used; only processes the test
//! started are signalled.

use std::collections::BTreeSet;
use std::time::Duration;

use isobar_e2e::{Client, Isobar, TempDir, eventually};

/// Serves `https://origin.test<path>` from the cache, or makes a fresh body (unique: it holds a
/// random number), answers with it marked `cf-cache-status: MISS` and puts a copy in the cache.
/// `?max-age=N` sets the copy's lifetime, `?named=NAME` uses `caches.open(NAME)`, `?delete`
/// deletes the entry and answers whether one was deleted; `?spin` starts 200 cache calls, lets
/// the core hand them to the store, then loops until the CPU limit condemns the isolate.
const SCRIPT: &str = r#"
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const named = url.searchParams.get("named");
    const cache = named === null ? caches.default : await caches.open(named);
    const key = `https://origin.test${url.pathname}`;
    if (url.searchParams.has("delete")) {
      return new Response(String(await cache.delete(key)));
    }
    if (url.searchParams.has("spin")) {
      for (let i = 0; i < 100; i++) {
        cache.match(`${key}/${i}`);
        cache.put(`${key}/${i}`, new Response("x", { headers: { "cache-control": "max-age=60" } }));
      }
      await new Promise((resolve) => setTimeout(resolve, 0));
      for (;;) {}
    }
    const hit = await cache.match(key);
    if (hit !== undefined) return hit;
    const body = `origin ${url.pathname} ${Math.random()}`;
    const maxAge = url.searchParams.get("max-age") ?? "60";
    const headers = { "cache-control": `max-age=${maxAge}`, "x-from": "origin" };
    await cache.put(key, new Response(body, { headers }));
    return new Response(body, { headers: { ...headers, "cf-cache-status": "MISS" } });
  },
};
"#;

/// `(cf-cache-status, body)` of `GET path` on a new connection (SO_REUSEPORT spreads them over
/// the cores), with the core that answered.
fn fetch(isobar: &Isobar, host: Option<&str>, path: &str) -> (String, String, String) {
    let mut client = isobar.connect();
    let response = match host {
        Some(host) => client.request_with_host("GET", host, path, &[], b""),
        None => client.request("GET", path, &[], b""),
    };
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    let status = response.header("cf-cache-status").unwrap_or("<none>").to_string();
    let core = response.header("x-isobar-core").unwrap_or("?").to_string();
    (status, response.text(), core)
}

fn text(client: &mut Client, host: &str, path: &str) -> String {
    client.request_with_host("GET", host, path, &[], b"").text()
}

#[test]
fn cache_hit_after_miss_expires_with_max_age_and_is_metered() {
    let dir = TempDir::new("cache-run");
    let script = dir.write("cache.js", SCRIPT).display().to_string();
    let cache_dir = dir.path().join("cache").display().to_string();
    let isobar = Isobar::start(&["run", &script, "--cores", "2", "--admin", "127.0.0.1:0", "--cache-path", &cache_dir]);

    let (status, first, _) = fetch(&isobar, None, "/page?max-age=2");
    assert_eq!(status, "MISS");
    assert!(first.starts_with("origin /page "), "{first}");
    // Both cores answer from the one store.
    let mut cores = BTreeSet::new();
    for _ in 0..40 {
        let (status, body, core) = fetch(&isobar, None, "/page?max-age=2");
        if status == "MISS" {
            break; // max-age passed already on a slow machine; checked below
        }
        assert_eq!((status.as_str(), body.as_str()), ("HIT", first.as_str()), "the cached body");
        cores.insert(core);
        if cores.len() == 2 {
            break;
        }
    }
    assert!(!cores.is_empty(), "at least one hit before max-age=2 passed");

    // Past max-age (2 s of wall clock), the next request misses and fills the cache again.
    let refilled = eventually(Duration::from_secs(15), || {
        let (status, body, _) = fetch(&isobar, None, "/page?max-age=2");
        (status == "MISS").then_some(body)
    })
    .expect("the entry expired");
    assert_ne!(refilled, first, "a new origin body");
    let (status, body, _) = fetch(&isobar, None, "/page?max-age=60");
    assert!((status == "HIT" && body == refilled) || status == "MISS", "{status} {body}");

    // delete: true once, then the next request misses.
    let (_, body, _) = fetch(&isobar, None, "/page?max-age=60");
    let (_, deleted, _) = fetch(&isobar, None, "/page?delete");
    assert_eq!(deleted, "true");
    let (_, deleted_again, _) = fetch(&isobar, None, "/page?delete");
    assert_eq!(deleted_again, "false");
    let (status, after, _) = fetch(&isobar, None, "/page?max-age=60");
    assert_eq!(status, "MISS");
    assert_ne!(after, body);

    let mut seen = String::new();
    let metered = eventually(Duration::from_secs(10), || {
        let metrics = isobar.metrics();
        let matches = metrics.sum("isobar_tenant_cache_operations_total", &[("verb", "match")]);
        let puts = metrics.sum("isobar_tenant_cache_operations_total", &[("verb", "put")]);
        let deletes = metrics.sum("isobar_tenant_cache_operations_total", &[("verb", "delete")]);
        let hits = metrics.sum("isobar_tenant_cache_hits_total", &[]);
        let misses = metrics.sum("isobar_tenant_cache_misses_total", &[]);
        let errors = metrics.sum("isobar_tenant_cache_errors_total", &[]);
        seen = format!("matches {matches} puts {puts} deletes {deletes} hits {hits} misses {misses} errors {errors}");
        (matches >= 5.0 && puts >= 3.0 && deletes == 2.0 && hits >= 2.0 && misses >= 3.0 && errors == 0.0).then_some(())
    });
    assert!(metered.is_some(), "cache metrics: {seen}");
}

#[test]
fn cache_tenants_and_cache_names_are_apart_without_a_cache_table() {
    let dir = TempDir::new("cache-tenants");
    let script = dir.write("cache.js", SCRIPT).display().to_string();
    let config = format!(
        "[[tenant]]\nname = \"a\"\nscript = {script:?}\nroutes = [\"a.test\"]\n\
         [[tenant]]\nname = \"b\"\nscript = {script:?}\nroutes = [\"b.test\"]\n"
    );
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &["--cores", "1"]);
    let mut client = isobar.connect();
    let a = text(&mut client, "a.test", "/shared");
    assert_eq!(text(&mut client, "a.test", "/shared"), a, "a hit for tenant a");
    // The same URL, the same cache name, another tenant: its own entry.
    let b = text(&mut client, "b.test", "/shared");
    assert_ne!(b, a, "tenant b does not see tenant a's entry");
    assert_eq!(text(&mut client, "b.test", "/shared"), b);
    assert_eq!(text(&mut client, "b.test", "/shared?delete"), "true");
    assert_eq!(text(&mut client, "a.test", "/shared"), a, "b's delete left a's entry");
    // caches.open(name) is apart from caches.default and from other names.
    let named = text(&mut client, "a.test", "/shared?named=default");
    assert_ne!(named, a, "caches.open(\"default\") is not caches.default");
    assert_eq!(text(&mut client, "a.test", "/shared?named=default"), named);
    assert_ne!(text(&mut client, "a.test", "/shared?named=other"), named);
    assert!(dir.path().join("cache").is_dir(), "the default directory is beside the configuration");
}

/// Everything through the disk tier (`memory_mb = 0`): the confined cache thread creates, reads
/// and removes entry files (a call its filter refused would stop the process), and leaves none
/// behind when it stops.
#[test]
fn cache_disk_tier_works_under_the_system_call_filter() {
    let dir = TempDir::new("cache-disk");
    let script = dir.write("cache.js", SCRIPT).display().to_string();
    let config = format!(
        "[cache]\npath = \"entries\"\nmemory_mb = 0\ndisk_mb = 64\n\
         [[tenant]]\nname = \"a\"\nscript = {script:?}\nroutes = [\"*\"]\n"
    );
    let config = dir.write("isobar.toml", &config);
    let mut isobar = Isobar::serve(&config, &["--cores", "2"]);
    let entries = dir.path().join("entries");
    let entry_files = || {
        std::fs::read_dir(&entries)
            .map(|list| list.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "entry")).count())
            .unwrap_or(0)
    };
    let mut bodies = Vec::new();
    for i in 0..5 {
        let (status, body, _) = fetch(&isobar, None, &format!("/disk{i}"));
        assert_eq!(status, "MISS");
        bodies.push(body);
    }
    assert_eq!(entry_files(), 5, "each entry is a file");
    for (i, body) in bodies.iter().enumerate() {
        let (status, hit, _) = fetch(&isobar, None, &format!("/disk{i}"));
        assert_eq!((status.as_str(), hit.as_str()), ("HIT", body.as_str()), "read back from disk");
    }
    let (_, deleted, _) = fetch(&isobar, None, "/disk0?delete");
    assert_eq!(deleted, "true");
    assert_eq!(entry_files(), 4, "delete removes the file");
    assert!(!isobar.stderr().contains("made a forbidden system call"), "{}", isobar.stderr());
    isobar.terminate();
    assert_eq!(isobar.wait_exit(Duration::from_secs(30)), Some(0), "{}", isobar.stderr());
    assert_eq!(entry_files(), 0, "no entry outlives the process");
}

/// An isolate condemned (CPU limit) with cache calls in flight: their answers arrive for an
/// isolate that is gone and are dropped; the core and the cache go on serving.
#[test]
fn cache_calls_of_a_condemned_isolate_are_dropped_and_the_core_serves_on() {
    let dir = TempDir::new("cache-condemned");
    let script = dir.write("cache.js", SCRIPT).display().to_string();
    let cache_dir = dir.path().join("cache").display().to_string();
    let mut isobar = Isobar::start(&[
        "run",
        &script,
        "--cores",
        "1",
        "--cpu-ms",
        "50",
        "--cache-path",
        &cache_dir,
        "--admin",
        "127.0.0.1:0",
    ]);
    let (status, body, _) = fetch(&isobar, None, "/kept");
    assert_eq!(status, "MISS");
    for _ in 0..3 {
        let response = isobar.connect().request("GET", "/spin?spin", &[], b"");
        assert_eq!(response.status, 503, "{}", response.text());
        let (status, hit, _) = fetch(&isobar, None, "/kept");
        assert_eq!((status.as_str(), hit.as_str()), ("HIT", body.as_str()), "the cache still serves");
    }
    // The spinning requests' calls did reach the store (they were counted as they were
    // submitted), so their answers came back for isolates that were gone.
    let submitted = isobar.metrics().sum("isobar_tenant_cache_operations_total", &[]);
    assert!(submitted >= 3.0 * 200.0, "{submitted} cache calls submitted");
    assert!(isobar.is_running(), "{}", isobar.stderr());
}
