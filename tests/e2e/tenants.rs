//! The multi-tenant server, `isobar serve --config FILE`: routing by Host and path, isolation
//! between tenants on one core, per-tenant limits (CPU, heap, wall time, concurrency), the admin
//! API (metrics, tenants, hot deploy, delete), isolate eviction, and reloading on SIGHUP.
//!
//! Each test writes its configuration (and any script it changes) into a fresh temporary
//! directory that is removed at the end; scripts that never change live in
//! `tests/workers/tenants/`. Every loop and wait is bounded, and only loopback is used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use isobar_e2e::{Client, Isobar, Metrics, Response, TempDir, eventually, run_expecting_failure, workspace};
use serde_json::{Value, json};

/// The admin flag every test that reads metrics or uses the tenants API passes.
const ADMIN: [&str; 2] = ["--admin", "127.0.0.1:0"];
/// How long a test waits for something that happens asynchronously (a metric that a core
/// publishes after the response, a reload after SIGHUP) before it fails.
const SETTLE: Duration = Duration::from_secs(10);

/// The absolute path of a script in `tests/workers/tenants/`.
fn worker(name: &str) -> String {
    workspace().join("tests/workers/tenants").join(name).display().to_string()
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One `[[tenant]]` table; `extra` holds more `key = value` lines.
fn tenant(name: &str, script: &str, routes: &[&str], extra: &str) -> String {
    let routes: Vec<String> = routes.iter().map(|r| toml_str(r)).collect();
    format!(
        "[[tenant]]\nname = {}\nscript = {}\nroutes = [{}]\n{extra}\n",
        toml_str(name),
        toml_str(script),
        routes.join(", ")
    )
}

/// A tenant running `named.js`, which answers "NAME PATH\n".
fn named(name: &str, routes: &[&str], extra: &str) -> String {
    tenant(name, &worker("named.js"), routes, &format!("vars = {{ NAME = {} }}\n{extra}", toml_str(name)))
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} is not in:\n{text}")) + 1
}

/// Scrapes until `done(metrics)` holds (metrics are published by each core, possibly just after
/// the response was sent), then returns that scrape; after `SETTLE` returns the last one anyway,
/// so the caller's exact assertions report what was seen.
fn metrics_when(isobar: &Isobar, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let mut last = None;
    let found = eventually(SETTLE, || {
        let metrics = isobar.metrics();
        if done(&metrics) {
            return Some(metrics);
        }
        last = Some(metrics);
        None
    });
    found.or(last).expect("at least one scrape")
}

/// Asserts `response` is isobar's own 404 for a request no route matches.
fn assert_unrouted(response: &Response, what: &str) {
    assert_eq!(response.status, 404, "{what}: {}", response.text());
    assert!(
        response.text().to_lowercase().contains("no worker"),
        "{what}: isobar's own 404, got {:?}",
        response.text()
    );
}

/// A PUT of `body` as JSON to the admin API.
fn put_json(isobar: &Isobar, path: &str, body: &Value) -> Response {
    isobar.admin_request("PUT", path, &[("content-type", "application/json")], body.to_string().as_bytes())
}

/// The `version` of a tenant according to `GET /tenants/NAME`.
fn version_of(isobar: &Isobar, name: &str) -> Value {
    let response = isobar.admin_request("GET", &format!("/tenants/{name}"), &[], b"");
    assert_eq!(response.status, 200, "GET /tenants/{name}: {}", response.text());
    let version = response.json()["version"].clone();
    assert!(!version.is_null(), "tenant {name} has a version: {}", response.text());
    version
}

/// 1. Exact host beats the longest wildcard, which beats a shorter one; the longest whole-segment
///    path prefix wins; the Host's port and case do not matter; a Host no route matches gets
///    isobar's own 404 and is counted. `--listen` overrides the file's `listen`.
#[test]
fn requests_are_routed_by_host_and_path_prefix() {
    let dir = TempDir::new("routing");
    let config = [
        "[server]\nlisten = \"127.0.0.1:9\"\n\n".to_string(),
        named("shop", &["shop.example.com", "*.shop.example.com"], ""),
        named("api", &["shop.example.com/api"], ""),
        named("deep", &["*.eu.shop.example.com"], ""),
        named("wild", &["*.example.com"], ""),
        named("root", &["example.com"], ""),
        named("pages", &["example.com/shop", "example.com/docs/v1"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &ADMIN);
    assert_ne!(isobar.addr.port(), 9, "--listen on the command line overrides [server] listen");

    let routed = [
        ("shop.example.com", "/", "shop", "/"),
        ("shop.example.com", "/cart", "shop", "/cart"),
        ("shop.example.com", "/api", "api", "/api"),
        ("shop.example.com", "/api/items?page=2", "api", "/api/items"),
        ("shop.example.com", "/apix", "shop", "/apix"),
        ("a.shop.example.com", "/", "shop", "/"),
        ("a.b.shop.example.com", "/x", "shop", "/x"),
        ("eu.shop.example.com", "/", "shop", "/"),
        ("x.eu.shop.example.com", "/", "deep", "/"),
        ("other.example.com", "/shop", "wild", "/shop"),
        ("example.com", "/", "root", "/"),
        ("example.com", "/shop", "pages", "/shop"),
        ("example.com", "/shop/cart?x=1", "pages", "/shop/cart"),
        ("example.com", "/shopping", "root", "/shopping"),
        ("example.com", "/docs/v1/intro", "pages", "/docs/v1/intro"),
        ("example.com", "/docs/v2", "root", "/docs/v2"),
        ("EXAMPLE.COM:8443", "/shop/x", "pages", "/shop/x"),
        ("Shop.Example.Com:80", "/", "shop", "/"),
        ("A.SHOP.EXAMPLE.COM", "/", "shop", "/"),
        ("example.com:8080", "/", "root", "/"),
    ];
    for (host, path, tenant, seen) in routed {
        let response = isobar.get_host(host, path);
        assert_eq!(response.status, 200, "{host}{path}: {}", response.text());
        assert_eq!(response.text(), format!("{tenant} {seen}\n"), "{host}{path} goes to {tenant}");
    }

    let unrouted = ["example.org", "nothing.test", "notexample.com", "example.com.evil.test"];
    for host in unrouted {
        assert_unrouted(&isobar.get_host(host, "/"), host);
    }

    // Routing is per request, not per connection.
    let mut client = isobar.connect();
    for _ in 0..3 {
        for (host, tenant) in [("shop.example.com", "shop"), ("example.com", "root")] {
            let response = client.request_with_host("GET", host, "/", &[], b"");
            assert_eq!(response.text(), format!("{tenant} /\n"), "keep-alive request to {host}");
        }
    }

    let expected = unrouted.len() as f64;
    let metrics = metrics_when(&isobar, |m| m.sum("isobar_unrouted_requests_total", &[]) >= expected);
    assert_eq!(metrics.sum("isobar_unrouted_requests_total", &[]), expected, "{}", metrics.text);
}

/// 2. Two tenants on one core: nothing one sets (globals, top-level vars, built-in prototypes)
///    is visible to the other. `--cores 1` overrides the file's `cores = 2`.
#[test]
fn tenants_on_one_core_do_not_share_globals() {
    let dir = TempDir::new("globals");
    let config = [
        "[server]\ncores = 2\n\n".to_string(),
        tenant("setter", &worker("globals-setter.js"), &["setter.test"], ""),
        tenant("peeker", &worker("globals-peeker.js"), &["peeker.test"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &["--cores", "1"]);
    for round in 0..3 {
        let setter = isobar.get_host("setter.test", "/");
        assert_eq!(setter.text(), "setter string string string\n", "round {round}: the setter sees its own traces");
        assert_eq!(setter.header("x-isobar-core"), Some("0"), "--cores 1 overrides cores = 2");
        let peeker = isobar.get_host("peeker.test", "/");
        assert_eq!(peeker.status, 200, "round {round}: {}", peeker.text());
        assert_eq!(peeker.header("x-isobar-core"), Some("0"), "both tenants share core 0");
        let seen = peeker.json();
        for key in ["topLevelVar", "leaked", "leakedAtRequest", "arrayPolluted", "objectPolluted"] {
            assert_eq!(seen[key], "undefined", "round {round}: the peeker sees the setter's {key}: {seen}");
        }
    }
}

/// 3. An infinite loop is cut at `cpu_ms` with a 503 that says so, while another tenant on the
///    same core keeps answering promptly; the looping tenant's next request gets a fresh isolate.
#[test]
fn infinite_loop_is_cut_at_the_cpu_limit_and_the_core_keeps_serving() {
    let dir = TempDir::new("cpu");
    let config = [
        tenant("spinner", &worker("spin.js"), &["spinner.test"], "limits = { cpu_ms = 50 }\n"),
        named("steady", &["steady.test"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    let addr = isobar.addr;

    // Keep spinning (bounded) until the steady client is done, so the two overlap.
    let steady_done = Arc::new(AtomicBool::new(false));
    let spinner = {
        let steady_done = steady_done.clone();
        std::thread::spawn(move || {
            let mut spins = Vec::new();
            while spins.is_empty() || (!steady_done.load(Ordering::SeqCst) && spins.len() < 20) {
                let started = Instant::now();
                let response = Client::connect(addr).request_with_host("GET", "spinner.test", "/spin", &[], b"");
                spins.push((response, started.elapsed()));
            }
            spins
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    let mut steady = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let response = Client::connect(addr).request_with_host("GET", "steady.test", &format!("/{i}"), &[], b"");
        steady.push((response, started.elapsed()));
        std::thread::sleep(Duration::from_millis(10));
    }
    steady_done.store(true, Ordering::SeqCst);
    let spins = spinner.join().expect("the spinning client");

    for (i, (response, took)) in steady.iter().enumerate() {
        assert_eq!(response.status, 200, "steady request {i}: {}", response.text());
        assert_eq!(response.text(), format!("steady /{i}\n"));
        assert!(*took < Duration::from_secs(1), "steady request {i} took {took:?} beside the loop");
    }
    for (i, (response, took)) in spins.iter().enumerate() {
        assert_eq!(response.status, 503, "spin {i}: {}", response.text());
        let body = response.text().to_lowercase();
        assert!(body.contains("cpu") && body.contains("limit"), "spin {i}: the body says why: {body:?}");
        assert!(*took < Duration::from_secs(5), "spin {i} was cut only after {took:?}");
    }
    let after = isobar.get_host("spinner.test", "/");
    assert_eq!((after.status, after.text().as_str()), (200, "spin ok\n"), "a fresh isolate answers");

    let cut = spins.len() as f64;
    let cpu = [("tenant", "spinner"), ("limit", "cpu")];
    let metrics = metrics_when(&isobar, |m| m.sum("isobar_tenant_limit_exceeded_total", &cpu) >= cut);
    assert_eq!(metrics.sum("isobar_tenant_limit_exceeded_total", &cpu), cut, "{}", metrics.text);
    assert_eq!(metrics.sum("isobar_tenant_limit_exceeded_total", &[("tenant", "steady")]), 0.0);
}

/// 4. A tenant whose heap passes `heap_mb` gets a 503 that mentions memory; the process lives on,
///    the same tenant's next request works, and another tenant is unaffected.
#[test]
fn heap_bomb_is_stopped_at_the_heap_limit_and_the_process_survives() {
    let dir = TempDir::new("heap");
    // A CPU limit far above what the allocations need, so the heap limit is what stops them.
    let config = [
        tenant("bomber", &worker("heap-bomb.js"), &["bomber.test"], "limits = { heap_mb = 16, cpu_ms = 10000 }\n"),
        named("bystander", &["bystander.test"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let mut isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    assert_eq!(isobar.get_host("bomber.test", "/").text(), "bomb ok\n");
    for attempt in 0..2 {
        let bomb = isobar.get_host("bomber.test", "/bomb");
        assert_eq!(bomb.status, 503, "attempt {attempt}: {}", bomb.text());
        assert!(bomb.text().to_lowercase().contains("memory"), "attempt {attempt}: {:?}", bomb.text());
        assert!(isobar.is_running(), "the process survives; stderr:\n{}", isobar.stderr());
        let after = isobar.get_host("bomber.test", "/");
        assert_eq!((after.status, after.text().as_str()), (200, "bomb ok\n"), "attempt {attempt}");
        let other = isobar.get_host("bystander.test", "/");
        assert_eq!((other.status, other.text().as_str()), (200, "bystander /\n"), "attempt {attempt}");
    }
    let heap = [("tenant", "bomber"), ("limit", "heap")];
    let metrics = metrics_when(&isobar, |m| m.sum("isobar_tenant_limit_exceeded_total", &heap) >= 2.0);
    assert_eq!(metrics.sum("isobar_tenant_limit_exceeded_total", &heap), 2.0, "{}", metrics.text);
    assert!(isobar.is_running());
}

/// One request of the hot-deploy client.
struct Sample {
    started: Instant,
    core: Option<String>,
    status: u16,
    body: String,
}

/// 5. A PUT replaces a tenant's script while a client keeps sending: no request fails, each core
///    switches from v1 to v2 once and never back, every request sent after the PUT returned sees
///    v2, and a request in flight during the PUT finishes on v1.
#[test]
fn hot_deploy_switches_versions_without_failing_a_request() {
    const V1: &str = r#"export default {
  async fetch(request) {
    if (new URL(request.url).pathname === "/slow") {
      await new Promise((resolve) => setTimeout(resolve, 700));
      return new Response("v1 slow\n");
    }
    return new Response("v1\n");
  },
};
"#;
    const V2: &str = r#"export default {
  fetch(request) {
    return new Response(new URL(request.url).pathname === "/slow" ? "v2 slow\n" : "v2\n");
  },
};
"#;
    let dir = TempDir::new("deploy");
    dir.write("v1.js", V1);
    // A relative script path: resolved against the config file's directory, not isobar's.
    let config = dir.write("isobar.toml", &tenant("live", "v1.js", &["live.test"], ""));
    let isobar = Isobar::serve(&config, &ADMIN);
    let addr = isobar.addr;
    let v1_version = version_of(&isobar, "live");

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (samples, stop) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            for _ in 0..400 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                // A fresh connection each time, so the requests spread over the cores.
                let started = Instant::now();
                let mut connection = Client::connect(addr);
                connection.send_with_host("GET", "live.test", "/", &[], b"");
                // A broken answer is recorded as status 0, to be reported with the others.
                let sample = match connection.try_read_response(false) {
                    Ok(response) => Sample {
                        started,
                        core: response.header("x-isobar-core").map(str::to_owned),
                        status: response.status,
                        body: response.text(),
                    },
                    Err(error) => Sample { started, core: None, status: 0, body: error },
                };
                samples.lock().unwrap().push(sample);
                // Paced, so that the 400 requests outlast the PUT even on a fast machine.
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let count = || samples.lock().unwrap().len();
    assert!(eventually(SETTLE, || (count() >= 20).then_some(())).is_some(), "the client got going");

    let in_flight =
        std::thread::spawn(move || Client::connect(addr).request_with_host("GET", "live.test", "/slow", &[], b""));
    std::thread::sleep(Duration::from_millis(200));
    let put = put_json(&isobar, "/tenants/live", &json!({ "script": V2 }));
    let put_returned = Instant::now();
    assert_eq!(put.status, 200, "replacing a tenant: {}", put.text());
    let put = put.json();
    assert_eq!(put["name"], "live");
    assert_ne!(put["version"], v1_version, "a new version: {put}");
    assert_eq!(isobar.get_host("live.test", "/").text(), "v2\n", "the first request after the PUT");

    let after_put = || samples.lock().unwrap().iter().filter(|s| s.started > put_returned).count();
    eventually(SETTLE, || (after_put() >= 20).then_some(()));
    stop.store(true, Ordering::SeqCst);
    client.join().expect("the client thread");
    let slow = in_flight.join().expect("the in-flight request");
    assert_eq!((slow.status, slow.text().as_str()), (200, "v1 slow\n"), "in flight during the PUT: ends on v1");

    let samples = samples.lock().unwrap();
    let failed: Vec<String> =
        samples.iter().filter(|s| s.status != 200).map(|s| format!("{} {:?}", s.status, s.body)).collect();
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}", failed.len(), samples.len());
    assert_eq!(samples.first().map(|s| s.body.as_str()), Some("v1\n"));
    assert!(samples.iter().all(|s| s.body == "v1\n" || s.body == "v2\n"), "only v1 and v2 answer");
    assert!(samples.iter().any(|s| s.started > put_returned), "the client ran past the PUT");
    // Requests of one client are sequential, so on one core each began after the one before ended.
    let mut switched: BTreeMap<String, usize> = BTreeMap::new();
    for (i, sample) in samples.iter().enumerate() {
        let core = sample.core.clone().expect("x-isobar-core on every answer");
        if sample.body == "v2\n" {
            switched.entry(core).or_insert(i);
        } else if let Some(first_v2) = switched.get(&core) {
            panic!("core {core} answered v2 at request {first_v2} and v1 again at request {i}");
        }
        if sample.started > put_returned {
            assert_eq!(sample.body, "v2\n", "request {i} was sent after the PUT returned");
        }
    }
    assert_eq!(version_of(&isobar, "live"), put["version"]);
}

/// 6. `/metrics` is Prometheus text; a tenant's requests are counted by status class, its bytes
///    in and out are counted, and its CPU seconds grow by about the CPU its requests used.
#[test]
fn metrics_count_requests_by_class_bytes_and_cpu_time() {
    let dir = TempDir::new("metrics");
    let config = [
        tenant("codes", &worker("status.js"), &["codes.test"], ""),
        tenant("burner", &worker("status.js"), &["burner.test"], "limits = { cpu_ms = 10000 }\n"),
        named("idle", &["idle.test"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &ADMIN);

    let expected = [("1xx", 0.0), ("2xx", 4.0), ("3xx", 0.0), ("4xx", 3.0), ("5xx", 2.0)];
    for (path, status) in [
        ("/ok", 200),
        ("/ok", 200),
        ("/ok", 200),
        ("/created", 201),
        ("/missing", 404),
        ("/missing", 404),
        ("/other", 400),
        ("/fail", 500),
        ("/throw", 500),
    ] {
        assert_eq!(isobar.get_host("codes.test", path).status, status, "{path}");
    }
    let requests =
        |m: &Metrics, class: &str| m.sum("isobar_tenant_requests_total", &[("tenant", "codes"), ("class", class)]);
    let metrics = metrics_when(&isobar, |m| expected.iter().all(|(class, n)| requests(m, class) >= *n));
    for (class, n) in expected {
        assert_eq!(requests(&metrics, class), n, "codes' {class} requests:\n{}", metrics.text);
    }
    assert_eq!(metrics.sum("isobar_tenant_requests_total", &[("tenant", "idle")]), 0.0, "idle had none");

    // Every per-tenant series says which tenant and which core; every per-core one which core.
    for sample in &metrics.samples {
        let core = sample.labels.get("core");
        if sample.metric.starts_with("isobar_tenant_") {
            assert!(sample.labels.get("tenant").is_some(), "{} has a tenant label", sample.metric);
        }
        if sample.metric.starts_with("isobar_tenant_") || sample.metric.starts_with("isobar_core_") {
            assert!(core.is_some_and(|c| c.parse::<usize>().is_ok()), "{} {:?} has a core label", sample.metric, core);
        }
    }
    for name in [
        "isobar_tenant_cpu_seconds_total",
        "isobar_tenant_wall_seconds_total",
        "isobar_tenant_bytes_in_total",
        "isobar_tenant_bytes_out_total",
        "isobar_tenant_isolates",
        "isobar_tenant_heap_bytes",
    ] {
        assert!(!metrics.series(name, &[("tenant", "codes")]).is_empty(), "{name} for codes:\n{}", metrics.text);
    }
    for name in ["isobar_core_isolates", "isobar_core_isolates_created_total", "isobar_core_isolates_evicted_total"] {
        assert!(metrics.has(name), "{name}:\n{}", metrics.text);
    }
    assert!(metrics.has("isobar_unrouted_requests_total"), "{}", metrics.text);
    assert!(metrics.sum("isobar_tenant_wall_seconds_total", &[("tenant", "codes")]) > 0.0);
    assert!(metrics.sum("isobar_tenant_isolates", &[("tenant", "codes")]) >= 1.0, "codes has a live isolate");
    assert!(metrics.sum("isobar_tenant_heap_bytes", &[("tenant", "codes")]) > 0.0, "its heap is measured");
    assert!(metrics.sum("isobar_core_isolates_created_total", &[]) >= 1.0);

    // Bytes in count request bodies, bytes out count response bodies.
    let bytes = |m: &Metrics, name: &str| m.sum(name, &[("tenant", "codes")]);
    let (in_before, out_before) =
        (bytes(&metrics, "isobar_tenant_bytes_in_total"), bytes(&metrics, "isobar_tenant_bytes_out_total"));
    let post = isobar.connect().request_with_host("POST", "codes.test", "/ok", &[], &[b'b'; 10_000]);
    assert_eq!(post.status, 200);
    assert_eq!(isobar.get_host("codes.test", "/big").body.len(), 50_000);
    let grown = |m: &Metrics| {
        bytes(m, "isobar_tenant_bytes_in_total") >= in_before + 10_000.0
            && bytes(m, "isobar_tenant_bytes_out_total") >= out_before + 50_000.0
    };
    let metrics = metrics_when(&isobar, grown);
    assert!(grown(&metrics), "bytes in from {in_before}, out from {out_before}:\n{}", metrics.text);

    // Find a loop that takes at least 100 ms here, then run it three times.
    let mut n: u64 = 1_000_000;
    for _ in 0..12 {
        let started = Instant::now();
        let response = isobar.get_host("burner.test", &format!("/burn?n={n}"));
        assert_eq!(response.status, 200, "n = {n}: {}", response.text());
        if started.elapsed() >= Duration::from_millis(100) {
            break;
        }
        n *= 4;
    }
    let cpu = |m: &Metrics| m.sum("isobar_tenant_cpu_seconds_total", &[("tenant", "burner")]);
    let before = cpu(&metrics_when(&isobar, |_| true));
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(isobar.get_host("burner.test", &format!("/burn?n={n}")).status, 200);
    }
    let wall = started.elapsed().as_secs_f64();
    let metrics = metrics_when(&isobar, |m| cpu(m) - before >= 0.1);
    let used = cpu(&metrics) - before;
    assert!(used >= 0.1, "3 requests of >= 100 ms of work added {used} s of CPU:\n{}", metrics.text);
    assert!(used <= wall + 0.5, "{used} s of CPU in {wall} s of serial requests: the unit is not seconds");
}

/// 7. Date.now() stands still during one request's synchronous work, moves between requests and
///    across a timer, is close to the real time, and SharedArrayBuffer does not exist.
#[test]
fn date_now_does_not_advance_during_synchronous_work() {
    let dir = TempDir::new("clock");
    let config = dir
        .write("isobar.toml", &tenant("clock", &worker("clock.js"), &["clock.test"], "limits = { cpu_ms = 10000 }\n"));
    let isobar = Isobar::serve(&config, &[]);

    // Grow the loop until one request takes at least 50 ms, so a moving clock would show.
    let mut n: u64 = 1_000_000;
    let mut slow = None;
    for _ in 0..12 {
        let started = Instant::now();
        let response = isobar.get_host("clock.test", &format!("/?n={n}"));
        assert_eq!(response.status, 200, "{}", response.text());
        if started.elapsed() >= Duration::from_millis(50) {
            slow = Some(response);
            break;
        }
        n *= 4;
    }
    let slow = slow.expect("a loop that takes 50 ms");
    assert_eq!(slow.text(), "0", "Date.now() moved during {n} steps of synchronous work");
    assert_eq!(slow.header("x-shared-array-buffer"), Some("undefined"));

    let now_ms = |r: &Response| -> i64 { r.header("x-now").expect("x-now").parse().expect("a number") };
    let first = now_ms(&slow);
    let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((real - first).abs() < 10_000, "Date.now() {first} is near the real time {real}");
    std::thread::sleep(Duration::from_millis(100));
    let second = now_ms(&isobar.get_host("clock.test", "/?n=0"));
    assert!(second - first >= 50, "Date.now() moved between requests: {first} then {second}");

    let across_timer: i64 = isobar.get_host("clock.test", "/sleep").text().parse().expect("a number");
    assert!(across_timer >= 20, "Date.now() moved across a 30 ms timer by only {across_timer} ms");
}

/// 8. A bad configuration stops start-up with exit code 1 and `FILE:LINE:COL: message` naming the
///    key; so does a tenant script with a syntax error, at the script's `FILE:LINE:COL`.
#[test]
fn config_errors_name_the_file_line_and_key() {
    let dir = TempDir::new("config-errors");
    dir.write("shop.js", "export default { fetch() { return new Response(\"shop\\n\"); } };\n");
    let head = "[server]\nlisten = \"127.0.0.1:0\"\n\n[isolates]\nper_core_max = 10\npool = 1\n\n";
    let shop = "[[tenant]]\nname = \"shop\"\nscript = \"shop.js\"\nroutes = [\"shop.example.com\"]\n";
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        ("unknown-key", format!("{head}[defaults.limits]\ncpu_ms = 50\ncpu = 50\n\n{shop}"), "cpu = 50", &["cpu"]),
        ("zero-cpu", format!("{head}{shop}limits = {{ cpu_ms = 0 }}\n"), "cpu_ms = 0", &["cpu_ms"]),
        ("wrong-type", format!("{head}[defaults.limits]\nheap_mb = \"big\"\n\n{shop}"), "heap_mb", &["heap_mb"]),
        (
            "duplicate-tenant",
            format!(
                "{head}{shop}\n[[tenant]]\nname = \"shop\"  # again\nscript = \"shop.js\"\nroutes = [\"other.example.com\"]\n"
            ),
            "# again",
            &["shop", "name"],
        ),
        (
            "bad-route",
            format!("{head}[[tenant]]\nname = \"shop\"\nscript = \"shop.js\"\nroutes = [\"a.*.com\"]\n"),
            "a.*.com",
            &["a.*.com"],
        ),
        (
            "bad-name",
            format!("{head}[[tenant]]\nname = \"Shop!\"\nscript = \"shop.js\"\nroutes = [\"shop.example.com\"]\n"),
            "Shop!",
            &["Shop!"],
        ),
        ("bad-format", format!("{head}{shop}format = \"commonjs\"\n"), "commonjs", &["format"]),
        (
            "pool-over-max",
            format!("[server]\nlisten = \"127.0.0.1:0\"\n\n[isolates]\nper_core_max = 2\npool = 4\n\n{shop}"),
            "pool = 4",
            &["pool"],
        ),
        (
            "missing-script",
            format!("{head}[[tenant]]\nname = \"shop\"\nscript = \"missing.js\"\nroutes = [\"shop.example.com\"]\n"),
            "missing.js",
            &["missing.js"],
        ),
    ];
    for (label, text, needle, words) in cases {
        let path = dir.write(&format!("{label}.toml"), &text);
        let line = line_of(&text, needle);
        let (code, stderr) = run_expecting_failure(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{label}: stderr:\n{stderr}");
        assert_position(&stderr, &path, line, label);
        for word in words {
            assert!(stderr.contains(word), "{label}: stderr names {word:?}:\n{stderr}");
        }
    }

    // A script with a syntax error, found relative to the config file.
    let broken = std::fs::read_to_string(workspace().join("tests/workers/broken.js")).unwrap();
    dir.write("broken.js", &broken);
    let text = format!("{head}[[tenant]]\nname = \"broken\"\nscript = \"broken.js\"\nroutes = [\"broken.test\"]\n");
    let path = dir.write("broken-script.toml", &text);
    let (code, stderr) = run_expecting_failure(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("broken.js:3:15"), "the script's file, line and column:\n{stderr}");
    assert!(stderr.contains("SyntaxError"), "stderr:\n{stderr}");
}

/// Asserts `stderr` has `FILE:LINE:COL:` for `file` and `line`, with a numeric column.
fn assert_position(stderr: &str, file: &Path, line: usize, label: &str) {
    let prefix = format!("{}:{line}:", file.display());
    let found = stderr.match_indices(&prefix).any(|(at, _)| {
        let rest = &stderr[at + prefix.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(':')
    });
    assert!(found, "{label}: stderr has {prefix}COL:\n{stderr}");
}

/// 9a. More than `concurrency` requests of one tenant in flight on a core: the extra ones get an
///     immediate 503 with Retry-After; other tenants and later requests are not affected.
#[test]
fn concurrency_cap_answers_503_with_retry_after() {
    let dir = TempDir::new("concurrency");
    let config = [
        tenant(
            "waiter",
            &workspace().join("tests/workers/slow.js").display().to_string(),
            &["waiter.test"],
            "limits = { concurrency = 2 }\n",
        ),
        named("other", &["other.test"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    let mut clients: Vec<Client> = (0..4).map(|_| isobar.connect()).collect();
    let sent = Instant::now();
    for client in &mut clients {
        client.send_with_host("GET", "waiter.test", "/?ms=1000", &[], b"");
    }
    // One reader per connection, so each answer's time is its own and not its predecessor's.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| std::thread::spawn(move || (client.read_response(false), sent.elapsed())))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let other = isobar.get_host("other.test", "/");
    assert_eq!((other.status, other.text().as_str()), (200, "other /\n"), "the cap is per tenant");
    assert!(sent.elapsed() < Duration::from_millis(900), "the other tenant answered while waiter was full");

    let answered: Vec<(Response, Duration)> =
        readers.into_iter().map(|reader| reader.join().expect("a reader thread")).collect();
    let ok = answered.iter().filter(|(r, _)| r.status == 200).count();
    let refused: Vec<_> = answered.iter().filter(|(r, _)| r.status == 503).collect();
    assert_eq!(
        (ok, refused.len()),
        (2, 2),
        "statuses: {:?}",
        answered.iter().map(|(r, _)| r.status).collect::<Vec<_>>()
    );
    for (response, took) in &answered {
        if response.status == 200 {
            assert_eq!(response.text(), "slept 1000ms\n");
            assert!(*took >= Duration::from_millis(900), "an admitted request ran its full second: {took:?}");
        }
    }
    for (response, took) in refused {
        let retry = response.header("retry-after").unwrap_or_default().trim();
        assert!(
            !retry.is_empty() && (retry.bytes().all(|b| b.is_ascii_digit()) || retry.ends_with("GMT")),
            "Retry-After is seconds or a date: {retry:?}"
        );
        assert!(*took < Duration::from_millis(900), "refused at once, not queued: {took:?}");
    }
    let later = isobar.get_host("waiter.test", "/?ms=0");
    assert_eq!((later.status, later.text().as_str()), (200, "slept 0ms\n"), "the slots are free again");

    let limit = [("tenant", "waiter"), ("limit", "concurrency")];
    let metrics = metrics_when(&isobar, |m| m.sum("isobar_tenant_limit_exceeded_total", &limit) >= 2.0);
    assert_eq!(metrics.sum("isobar_tenant_limit_exceeded_total", &limit), 2.0, "{}", metrics.text);
}

/// 9b. A request that runs past `wall_ms` (awaiting a timer, no CPU) gets 503 soon after it.
#[test]
fn wall_time_limit_answers_503() {
    let dir = TempDir::new("wall");
    let slow = workspace().join("tests/workers/slow.js").display().to_string();
    let config = dir.write("isobar.toml", &tenant("sleepy", &slow, &["sleepy.test"], "limits = { wall_ms = 200 }\n"));
    let isobar = Isobar::serve(&config, &ADMIN);
    let started = Instant::now();
    let response = isobar.get_host("sleepy.test", "/?ms=2000");
    let took = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(took < Duration::from_millis(1500), "cut at about 200 ms, not after the 2 s timer: {took:?}");
    let quick = isobar.get_host("sleepy.test", "/?ms=0");
    assert_eq!((quick.status, quick.text().as_str()), (200, "slept 0ms\n"));
    let wall = [("tenant", "sleepy"), ("limit", "wall")];
    let metrics = metrics_when(&isobar, |m| m.sum("isobar_tenant_limit_exceeded_total", &wall) >= 1.0);
    assert_eq!(metrics.sum("isobar_tenant_limit_exceeded_total", &wall), 1.0, "{}", metrics.text);
}

/// 9c. With `admin_token`, every admin request needs `Authorization: Bearer TOKEN`.
#[test]
fn admin_token_is_required_when_configured() {
    let dir = TempDir::new("token");
    let config = [
        "[server]\nadmin = \"127.0.0.1:0\"\nadmin_token = \"s3cret\"\n\n".to_string(),
        named("shop", &["shop.test"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &ADMIN);
    let right = [("authorization", "Bearer s3cret")];
    for path in ["/metrics", "/tenants", "/tenants/shop"] {
        for (what, headers) in [("no header", &[][..]), ("a wrong token", &[("authorization", "Bearer wrong")][..])] {
            let response = isobar.admin_request("GET", path, headers, b"");
            assert_eq!(response.status, 401, "GET {path} with {what}: {}", response.text());
            assert!(!response.text().contains("s3cret"), "the token is not echoed");
        }
        let ok = isobar.admin_request("GET", path, &right, b"");
        assert_eq!(ok.status, 200, "GET {path} with the token: {}", ok.text());
    }
    let scrape = isobar.admin_request("GET", "/metrics", &right, b"");
    Metrics::parse(&scrape.text()).unwrap_or_else(|e| panic!("{e}"));

    let script = "export default { fetch() { return new Response(\"intruder\\n\"); } };";
    let body = json!({ "script": script, "routes": ["intruder.test"] }).to_string();
    let put =
        isobar.admin_request("PUT", "/tenants/intruder", &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(put.status, 401, "PUT without a token: {}", put.text());
    let delete = isobar.admin_request("DELETE", "/tenants/shop", &[("authorization", "Bearer wrong")], b"");
    assert_eq!(delete.status, 401);
    assert_eq!(isobar.admin_request("GET", "/tenants/intruder", &right, b"").status, 404, "nothing was created");
    assert_unrouted(&isobar.get_host("intruder.test", "/"), "intruder.test");
    assert_eq!(isobar.get_host("shop.test", "/").text(), "shop /\n", "nothing was deleted");
}

/// 9d. `GET /tenants` and `GET /tenants/NAME` show routes, format, merged limits, vars and the
///     names of secrets, never their values (which the script does see on `env`).
#[test]
fn tenants_api_shows_settings_and_secret_names_but_never_secret_values() {
    let dir = TempDir::new("tenants-api");
    let config = [
        "[defaults.limits]\ncpu_ms = 40\nheap_mb = 64\nwall_ms = 5000\nsubrequests = 10\nconcurrency = 8\n\n"
            .to_string(),
        tenant(
            "shop",
            &worker("env.js"),
            &["shop.test", "*.shop.test"],
            "format = \"module\"\nvars = { GREETING = \"hello\" }\n\
             secrets = { API_KEY = \"sekrit-value-1\", OTHER = \"sekrit-value-2\" }\nlimits = { cpu_ms = 20 }\n",
        ),
        named("blog", &["blog.test"], ""),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &ADMIN);
    assert_eq!(isobar.get_host("shop.test", "/").text(), "hello sekrit-value-1\n", "vars and secrets are on env");

    let list = isobar.admin_request("GET", "/tenants", &[], b"");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(!list.text().contains("sekrit-value"), "no secret value in GET /tenants: {}", list.text());
    let list = list.json();
    let tenants = list["tenants"].as_array().expect("a tenants array");
    let names: BTreeSet<&str> = tenants.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["blog", "shop"]));
    let shop = tenants.iter().find(|t| t["name"] == "shop").unwrap();
    assert_eq!(shop["routes"], json!(["shop.test", "*.shop.test"]));
    assert_eq!(shop["format"], "module");
    assert_eq!(
        shop["limits"],
        json!({ "cpu_ms": 20, "heap_mb": 64, "wall_ms": 5000, "subrequests": 10, "concurrency": 8 }),
        "the tenant's override over [defaults.limits]"
    );
    assert_eq!(shop["vars"], json!({ "GREETING": "hello" }));
    let secrets: BTreeSet<&str> =
        shop["secrets"].as_array().expect("secret names").iter().filter_map(Value::as_str).collect();
    assert_eq!(secrets, BTreeSet::from(["API_KEY", "OTHER"]));
    assert!(!shop["version"].is_null());
    for key in ["cpu_seconds", "requests", "isolates", "heap_bytes"] {
        assert!(shop["stats"][key].is_number(), "stats.{key}: {shop}");
    }
    let blog = tenants.iter().find(|t| t["name"] == "blog").unwrap();
    // The configured format (auto) or the one it resolved to: named.js is a module.
    assert!(matches!(blog["format"].as_str(), Some("auto" | "module")), "blog's format: {blog}");
    assert_eq!(blog["limits"]["cpu_ms"], 40, "blog has the defaults");

    let one = isobar.admin_request("GET", "/tenants/shop", &[], b"");
    assert_eq!(one.status, 200);
    assert!(!one.text().contains("sekrit-value"), "no secret value in GET /tenants/shop: {}", one.text());
    let one = one.json();
    assert_eq!(one["name"], "shop");
    assert_eq!(one["routes"], shop["routes"]);
    assert_eq!(one["secrets"], shop["secrets"]);
    let requests = eventually(SETTLE, || {
        let stats = isobar.admin_request("GET", "/tenants/shop", &[], b"").json()["stats"].clone();
        (stats["requests"] == 1).then_some(stats)
    });
    assert!(requests.is_some(), "stats.requests counts the one request to shop");
    assert_eq!(isobar.admin_request("GET", "/tenants/nobody", &[], b"").status, 404);
}

/// 9e. DELETE removes a tenant: its hosts get isobar's 404, the API no longer knows it.
#[test]
fn delete_removes_a_tenant_and_unroutes_its_hosts() {
    let dir = TempDir::new("delete");
    let config = [named("shop", &["shop.test"], ""), named("blog", &["blog.test", "*.blog.test"], "")].concat();
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &ADMIN);
    assert_eq!(isobar.get_host("blog.test", "/").text(), "blog /\n");
    let delete = isobar.admin_request("DELETE", "/tenants/blog", &[], b"");
    assert_eq!(delete.status, 200, "{}", delete.text());
    for host in ["blog.test", "www.blog.test"] {
        assert_unrouted(&isobar.get_host(host, "/"), host);
    }
    assert_eq!(isobar.admin_request("GET", "/tenants/blog", &[], b"").status, 404);
    assert_eq!(isobar.admin_request("DELETE", "/tenants/blog", &[], b"").status, 404, "already gone");
    assert_eq!(isobar.admin_request("DELETE", "/tenants/never", &[], b"").status, 404);
    let names: Vec<Value> = isobar.admin_request("GET", "/tenants", &[], b"").json()["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("shop")]);
    assert_eq!(isobar.get_host("shop.test", "/").text(), "shop /\n", "the other tenant is untouched");
}

/// 9f. PUT creates (201) and replaces (200, keeping settings) tenants, as JSON or as a bare
///     script; a script that does not compile gets 400 with its line and column, a route of
///     another tenant 409, and neither changes what is served.
#[test]
fn put_creates_replaces_and_rejects_bad_scripts_and_taken_routes() {
    let dir = TempDir::new("put");
    let config = dir.write("isobar.toml", &named("shop", &["shop.test"], ""));
    let isobar = Isobar::serve(&config, &ADMIN);
    let script = |v: &str| {
        format!("export default {{ fetch(request, env) {{ return new Response(`fresh {v} ${{env.WHO}}\\n`); }} }};\n")
    };
    let fresh = || isobar.get_host("fresh.test", "/").text();

    let created = put_json(
        &isobar,
        "/tenants/fresh",
        &json!({ "script": script("v1"), "routes": ["fresh.test"], "vars": { "WHO": "me" } }),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["name"], "fresh");
    assert!(!created["version"].is_null(), "{created}");
    assert_eq!(fresh(), "fresh v1 me\n");

    let replaced = put_json(&isobar, "/tenants/fresh", &json!({ "script": script("v2") }));
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    let replaced = replaced.json();
    assert_ne!(replaced["version"], created["version"]);
    assert_eq!(fresh(), "fresh v2 me\n", "routes and vars are kept");

    let bare = isobar.admin_request(
        "PUT",
        "/tenants/fresh",
        &[("content-type", "application/javascript")],
        script("v3").as_bytes(),
    );
    assert_eq!(bare.status, 200, "a bare script: {}", bare.text());
    assert_eq!(fresh(), "fresh v3 me\n", "a bare script keeps the settings");
    let v3 = version_of(&isobar, "fresh");

    let broken = std::fs::read_to_string(workspace().join("tests/workers/broken.js")).unwrap();
    let rejected = put_json(&isobar, "/tenants/fresh", &json!({ "script": broken }));
    assert_eq!(rejected.status, 400, "{}", rejected.text());
    assert!(rejected.text().contains("3:15"), "the compile error's line:column: {}", rejected.text());
    assert_eq!(fresh(), "fresh v3 me\n", "a rejected script changes nothing");

    let taken = put_json(&isobar, "/tenants/fresh", &json!({ "script": script("v4"), "routes": ["shop.test"] }));
    assert_eq!(taken.status, 409, "{}", taken.text());
    assert_eq!(fresh(), "fresh v3 me\n", "a rejected route changes nothing");
    assert_eq!(isobar.get_host("shop.test", "/").text(), "shop /\n", "shop keeps its route");
    assert_eq!(version_of(&isobar, "fresh"), v3);

    let ghost =
        isobar.admin_request("PUT", "/tenants/ghost", &[("content-type", "text/javascript")], script("g").as_bytes());
    assert!(matches!(ghost.status, 400 | 404), "a bare script for no tenant: {} {}", ghost.status, ghost.text());
    let no_routes = put_json(&isobar, "/tenants/newbie", &json!({ "script": script("n") }));
    assert_eq!(no_routes.status, 400, "a new tenant needs routes: {}", no_routes.text());
    let bad_name = put_json(&isobar, "/tenants/Bad!Name", &json!({ "script": script("b"), "routes": ["bad.test"] }));
    assert!((400..500).contains(&bad_name.status), "an invalid tenant name: {}", bad_name.status);
    let bad_name = isobar.admin_request("GET", "/tenants/Bad!Name", &[], b"");
    assert!(matches!(bad_name.status, 400 | 404), "Bad!Name was not created: {}", bad_name.status);
    for name in ["ghost", "newbie"] {
        assert_eq!(
            isobar.admin_request("GET", &format!("/tenants/{name}"), &[], b"").status,
            404,
            "{name} not created"
        );
    }
    assert_unrouted(&isobar.get_host("bad.test", "/"), "bad.test");
}

/// 9g. With `per_core_max = 2` and no pool, five tenants in turn on one core: every answer is
///     right although isolates are evicted, and the core never holds more than two.
#[test]
fn least_recently_used_isolates_are_evicted_beyond_the_cap() {
    let dir = TempDir::new("evict");
    let names = ["t0", "t1", "t2", "t3", "t4"];
    let mut config = String::from("[isolates]\nper_core_max = 2\npool = 0\n\n");
    for name in names {
        config.push_str(&named(name, &[&format!("{name}.test")], ""));
    }
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    for round in 0..3 {
        for name in names {
            let response = isobar.get_host(&format!("{name}.test"), "/");
            assert_eq!((response.status, response.text()), (200, format!("{name} /\n")), "round {round}");
        }
    }
    let metrics = metrics_when(&isobar, |m| m.sum("isobar_core_isolates_evicted_total", &[]) > 0.0);
    assert!(metrics.sum("isobar_core_isolates_evicted_total", &[]) > 0.0, "{}", metrics.text);
    assert!(metrics.sum("isobar_core_isolates_created_total", &[]) >= 5.0, "{}", metrics.text);
    let live = metrics.series("isobar_core_isolates", &[]);
    assert!(!live.is_empty(), "isobar_core_isolates:\n{}", metrics.text);
    for (labels, value) in live {
        assert!(value <= 2.0, "core {:?} holds {value} isolates", labels.get("core"));
    }
    assert!(metrics.sum("isobar_tenant_isolates", &[]) <= 2.0, "{}", metrics.text);
}

/// 9h. SIGHUP re-reads the file: a changed script and changed vars take effect, a removed tenant
///     goes, the listener and open connections stay; a broken file is logged and changes nothing.
#[test]
fn sighup_reloads_the_config_and_keeps_the_old_one_when_broken() {
    let dir = TempDir::new("sighup");
    let a_script = |v: &str| format!("export default {{ fetch() {{ return new Response(\"a{v}\\n\"); }} }};\n");
    dir.write("a.js", &a_script("1"));
    let a = tenant("a", "a.js", &["a.test"], "");
    let b = named("b", &["b.test"], "");
    let c = |name: &str| {
        tenant("c", &worker("named.js"), &["c.test"], &format!("vars = {{ NAME = {} }}\n", toml_str(name)))
    };
    let config = dir.write("isobar.toml", &[a.clone(), b.clone(), c("c")].concat());
    let mut isobar = Isobar::serve(&config, &[]);
    assert_eq!(isobar.get_host("a.test", "/").text(), "a1\n");
    assert_eq!(isobar.get_host("b.test", "/").text(), "b /\n");
    let mut kept = isobar.connect();
    assert_eq!(kept.request_with_host("GET", "c.test", "/", &[], b"").text(), "c /\n");

    dir.write("a.js", &a_script("2"));
    dir.write("isobar.toml", &[a.clone(), c("c2")].concat());
    isobar.hangup();
    let reloaded = eventually(SETTLE, || {
        let done = isobar.get_host("a.test", "/").text() == "a2\n"
            && isobar.get_host("c.test", "/").text() == "c2 /\n"
            && isobar.get_host("b.test", "/").status == 404;
        done.then_some(())
    });
    assert!(
        reloaded.is_some(),
        "after SIGHUP: a {:?}, c {:?}",
        isobar.get_host("a.test", "/").text(),
        isobar.get_host("c.test", "/").text()
    );
    assert_unrouted(&isobar.get_host("b.test", "/"), "b.test after b was removed");
    assert!(isobar.is_running());
    let through_kept = kept.request_with_host("GET", "c.test", "/", &[], b"");
    assert_eq!(through_kept.text(), "c2 /\n", "a connection opened before the reload still works");

    // A broken file: an unknown key, and a change that must not be applied.
    let broken = [a.clone(), c("c3"), "[defaults.limits]\ncpu = 5\n".to_string()].concat();
    let broken_line = line_of(&broken, "cpu = 5");
    dir.write("isobar.toml", &broken);
    isobar.hangup();
    let position = format!("{}:{broken_line}:", config.display());
    let logged = eventually(SETTLE, || isobar.stderr().contains(&position).then_some(()));
    assert!(logged.is_some(), "the reload error is logged with {position}; stderr:\n{}", isobar.stderr());
    assert!(isobar.is_running(), "a broken reload does not stop the process");
    assert_eq!(isobar.get_host("a.test", "/").text(), "a2\n");
    assert_eq!(isobar.get_host("c.test", "/").text(), "c2 /\n", "nothing of the broken file was applied");
    assert_unrouted(&isobar.get_host("b.test", "/"), "b.test");

    // Reloading still works after a failed reload.
    dir.write("isobar.toml", &[a, b, c("c4")].concat());
    isobar.hangup();
    let restored = eventually(SETTLE, || (isobar.get_host("b.test", "/").text() == "b /\n").then_some(()));
    assert!(restored.is_some(), "b is back after a good reload");
    assert_eq!(isobar.get_host("c.test", "/").text(), "c4 /\n");
    isobar.terminate();
    assert_eq!(isobar.wait_exit(Duration::from_secs(10)), Some(0), "stderr:\n{}", isobar.stderr());
}

/// 17. `isobar snapshot --out FILE` writes V8's startup snapshot; `serve --snapshot FILE` starts
///     from it and serves; a damaged file or one that is not a snapshot is named in a warning,
///     and isobar builds the snapshot itself and serves all the same.
#[test]
fn a_snapshot_file_is_used_when_sound_and_rebuilt_when_not() {
    let dir = TempDir::new("snapshot");
    let config = dir.write("isobar.toml", &[named("one", &["one.test"], ""), named("two", &["two.test"], "")].concat());
    let file = dir.path().join("snapshot.bin");
    let output = std::process::Command::new(isobar_e2e::isobar_bin())
        .args(["snapshot", "--out"])
        .arg(&file)
        .output()
        .expect("run isobar snapshot");
    assert!(output.status.success(), "isobar snapshot: {}", String::from_utf8_lossy(&output.stderr));
    let bytes = std::fs::read(&file).expect("the snapshot file exists");
    assert!(bytes.len() > 100_000, "a snapshot of isobar's API is hundreds of KB, got {}", bytes.len());

    let serve_with = |path: &Path| {
        let isobar = Isobar::serve(&config, &["--cores", "1", "--snapshot", path.to_str().unwrap()]);
        for (host, name) in [("one.test", "one"), ("two.test", "two")] {
            let response = isobar.get_host(host, "/x");
            assert_eq!(response.text(), format!("{name} /x\n"), "{host} from {}", path.display());
        }
        // The log line that follows the snapshot's, read from a pipe by another thread.
        eventually(SETTLE, || Some(isobar.stderr()).filter(|log| log.contains("snapshot ready in")))
            .unwrap_or_else(|| isobar.stderr())
    };
    let log = serve_with(&file);
    assert!(log.contains("snapshot loaded from"), "{log}");
    assert!(!log.contains("not using the snapshot"), "{log}");

    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let damaged_file = dir.path().join("damaged.bin");
    std::fs::write(&damaged_file, &damaged).unwrap();
    let log = serve_with(&damaged_file);
    assert!(log.contains("not using the snapshot file") && log.contains("damaged"), "{log}");

    let log = serve_with(&config);
    assert!(log.contains("not an isobar snapshot file"), "{log}");
    let log = serve_with(&dir.path().join("missing.bin"));
    assert!(log.contains("not using the snapshot file") && log.contains("missing.bin"), "{log}");
}
