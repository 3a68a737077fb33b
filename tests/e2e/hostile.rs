//! Hostile tenants against the real binary (issue 12): a module that throws or spins at top level
//! (refused by `serve` at load, or cut on a core when it spins only later), strings
//! and buffers larger than isobar's APIs (or V8) can hold, a tenant that replaces
//! `Promise.prototype.then`, intervals that burn CPU after the response, a SIGHUP reload racing
//! an admin `PUT`, and every clock a script can read during one request.
//!
//! Each test runs `isobar serve` with a configuration in a fresh temporary directory; the
//! scripts live in `tests/workers/hostile/`. Every loop and wait is bounded in count and time,
//! only loopback is used, and latency is reported but never asserted (a hung core shows as a
//! request that is never answered, which fails the test through the client's read timeout).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use isobar_e2e::{Client, Isobar, Metrics, Response, TempDir, eventually, run_expecting_failure, workspace};
use serde_json::{Value, json};

/// The admin flag every test passes (metrics and the tenants API).
const ADMIN: [&str; 2] = ["--admin", "127.0.0.1:0"];
/// How long a test waits for something asynchronous (a metric, a reload) before it fails.
const SETTLE: Duration = Duration::from_secs(15);

/// The absolute path of a script in `tests/workers/hostile/`.
fn worker(name: &str) -> String {
    workspace().join("tests/workers/hostile").join(name).display().to_string()
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

/// A tenant running the e2e suite's `named.js`, which answers "NAME PATH\n".
fn named(name: &str, routes: &[&str]) -> String {
    let script = workspace().join("tests/workers/tenants/named.js").display().to_string();
    tenant(name, &script, routes, &format!("vars = {{ NAME = {} }}\n", toml_str(name)))
}

/// One GET to `host` on a fresh connection.
fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    Client::connect(addr).request_with_host("GET", host, path, &[], b"")
}

/// Scrapes until `done(metrics)` holds, or returns the last scrape after `SETTLE`.
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

/// Asserts the process is the one the test started and still runs.
fn assert_alive(isobar: &mut Isobar, pid: u32, what: &str) {
    assert!(isobar.is_running(), "{what}: the process died; stderr:\n{}", isobar.stderr());
    assert_eq!(isobar.pid(), pid, "{what}: the same process");
}

/// A module whose top level spins once the clock passes `spin_from` (ms since the epoch), so it
/// passes `serve`'s check at load and spins on a core, as a hostile script can arrange.
fn spin_later(spin_from: u128) -> String {
    format!(
        "// Spins at top level once the clock passes {spin_from}: only the start-up CPU limit can stop it.\n\
         if (Date.now() >= {spin_from}) {{ while (true) {{}} }}\n\
         export default {{ fetch() {{ return new Response(\"unreachable\\n\"); }} }};\n"
    )
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis()
}

/// 1. `serve` runs every configured tenant's top level once at load: a tenant that spins there
///    (or throws) stops start-up with an error naming it, within the check's CPU limit.
#[test]
fn serve_checks_every_tenant_top_level_at_load() {
    let dir = TempDir::new("hostile-load");
    let spinner = dir.write("spinner.js", &spin_later(0));
    let thrower = dir.write("thrower.js", "throw new TypeError('no config for this host');\n");
    for (name, script, says) in [
        ("spinner", &spinner, "exceeded its CPU time limit while loading"),
        ("thrower", &thrower, "no config for this host"),
    ] {
        let host = format!("{name}.test");
        let config = [named("healthy", &["healthy.test"]), tenant(name, &script.display().to_string(), &[&host], "")];
        let config = dir.write(&format!("{name}.toml"), &config.concat()).display().to_string();
        // Built (or found) first, so the bound below times isobar alone.
        isobar_e2e::isobar_bin();
        let started = Instant::now();
        let (code, stderr) =
            run_expecting_failure(&["serve", "--config", &config, "--listen", "127.0.0.1:0", "--cores", "1"]);
        assert!(
            code.is_some_and(|c| c != 0),
            "{name}: serve started with a tenant that fails at load ({code:?}); stderr:\n{stderr}"
        );
        assert!(stderr.contains(&format!("tenant {name}")) && stderr.contains(says), "{name}: stderr:\n{stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "{name}: refused after {:?}", started.elapsed());
    }
}

/// 2. A module that spins at top level on the only core (it passed the check at load): its
///    first request is cut by the start-up CPU limit (503, a log line naming the tenant), its
///    later requests are refused fast by the backoff (its billed CPU stays near one start-up's
///    worth across ten requests, not ten), and a healthy tenant on the same core answers every
///    request throughout.
#[test]
fn top_level_spin_is_cut_at_start_up_and_the_core_keeps_serving() {
    let dir = TempDir::new("hostile-spin");
    // Long enough for `serve` to start and check the tenant on a loaded machine.
    let spin_from = unix_ms() + 6_000;
    let spinner = dir.write("spinner.js", &spin_later(spin_from));
    let config =
        [tenant("spinner", &spinner.display().to_string(), &["spinner.test"], ""), named("healthy", &["healthy.test"])]
            .concat();
    let config = dir.write("isobar.toml", &config);
    let mut isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    let pid = isobar.pid();
    let addr = isobar.addr;
    let wait = spin_from.saturating_sub(unix_ms()) + 100;
    std::thread::sleep(Duration::from_millis(wait as u64));

    // The spinner's requests and the healthy tenant's overlap: the spinning client runs on its
    // own thread while this one sends the healthy requests.
    let spinner = std::thread::spawn(move || {
        (0..10)
            .map(|_| {
                let started = Instant::now();
                let response = get(addr, "spinner.test", "/");
                (response, started.elapsed())
            })
            .collect::<Vec<_>>()
    });
    let mut healthy = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        let response = get(addr, "healthy.test", &format!("/{i}"));
        healthy.push((response, started.elapsed()));
        std::thread::sleep(Duration::from_millis(5));
    }
    let spins = spinner.join().expect("the spinning client");

    for (i, (response, took)) in healthy.iter().enumerate() {
        assert_eq!(response.status, 200, "healthy request {i} ({took:?}): {}", response.text());
        assert_eq!(response.text(), format!("healthy /{i}\n"));
    }
    let slowest = healthy.iter().map(|(_, took)| *took).max().unwrap_or_default();
    eprintln!("healthy requests beside the spinning start-up: slowest {slowest:?}");
    for (i, (response, took)) in spins.iter().enumerate() {
        assert_eq!(response.status, 503, "spinner request {i} ({took:?}): {}", response.text());
        assert!(response.text().contains("failed to start"), "spinner request {i}: {:?}", response.text());
        assert_eq!(response.header("retry-after"), Some("1"), "spinner request {i}");
    }
    let stderr = isobar.stderr();
    assert!(
        stderr.contains("[spinner] cannot start the worker") && stderr.contains("CPU time limit while loading"),
        "the cut start-up is logged with the tenant's name; stderr:\n{stderr}"
    );

    // Billed: the start-up CPU is the spinner's. Bounded: the backoff (1 s, then doubling)
    // refuses the requests after the first without running the top level again, so ten
    // requests cost about one start-up (400 ms), not ten; two are allowed for a backoff that
    // expired while the requests were still being sent.
    let metrics = metrics_when(&isobar, |m| m.sum("isobar_tenant_cpu_seconds_total", &[("tenant", "spinner")]) > 0.3);
    let billed = metrics.sum("isobar_tenant_cpu_seconds_total", &[("tenant", "spinner")]);
    assert!(billed > 0.3, "the spinning start-up is billed to the spinner: {billed} s\n{}", metrics.text);
    assert!(billed < 1.5, "ten requests of a failing start-up cost {billed} s of CPU: the backoff does not hold");
    let healthy_cpu = metrics.sum("isobar_tenant_cpu_seconds_total", &[("tenant", "healthy")]);
    assert!(healthy_cpu < billed, "the spin is not billed to the healthy tenant ({healthy_cpu} s)");
    assert_alive(&mut isobar, pid, "after the spinning start-up");
    assert_eq!(get(addr, "healthy.test", "/after").text(), "healthy /after\n");
}

/// 3. Oversized strings and buffers in URL, URLSearchParams, TextDecoder, atob/btoa, Headers,
///    a response's headers and console.log: each is an error the script catches (or a 5xx
///    from isobar), never a crash; the process (same pid) and a second tenant go on serving,
///    and a log line stays bounded.
#[test]
fn oversized_strings_are_errors_and_the_process_stays_up() {
    let dir = TempDir::new("hostile-oversize");
    let config = [
        tenant(
            "oversize",
            &worker("oversize.js"),
            &["oversize.test"],
            "limits = { heap_mb = 1024, cpu_ms = 30000, wall_ms = 60000 }\n",
        ),
        // The same attacks with a heap smaller than the strings they build: a heap limit (503)
        // is a fine answer, an aborted process is not.
        tenant("small", &worker("oversize.js"), &["small.test"], "limits = { heap_mb = 64, cpu_ms = 30000 }\n"),
        named("bystander", &["bystander.test"]),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let mut isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    let pid = isobar.pid();
    let addr = isobar.addr;

    for path in ["/console", "/url-doubled", "/header-value", "/text-decoder-doubled", "/atob", "/btoa"] {
        let response = get(addr, "small.test", path);
        let text = response.text();
        let handled = (response.status == 200 && (text.starts_with("caught ") || text == "logged\n"))
            || matches!(response.status, 500 | 503);
        assert!(handled, "small heap {path}: got {} {text:?}", response.status);
        assert_alive(&mut isobar, pid, &format!("small heap {path}"));
        let after = get(addr, "small.test", "/");
        assert_eq!((after.status, after.text().as_str()), (200, "oversize ok\n"), "small heap after {path}");
    }

    // The attacks that must throw (a RangeError or TypeError, or a DOMException for atob's
    // invalid input): their input is past a documented cap.
    let must_throw = [
        "/url-doubled",
        "/url-search-setter",
        "/text-decoder-huge",
        "/text-decoder-doubled",
        "/header-value",
        "/header-count",
        "/atob",
        "/btoa",
    ];
    let may_cope = ["/url-expanding", "/url-search-params", "/text-decoder-expanding"];
    let mut seen = BTreeMap::new();
    for path in must_throw {
        let response = get(addr, "oversize.test", path);
        let text = response.text();
        let caught = ["caught RangeError", "caught TypeError", "caught InvalidCharacterError"];
        let handled = (response.status == 200 && caught.iter().any(|c| text.starts_with(c)))
            || matches!(response.status, 500 | 503);
        assert!(handled, "{path}: expected a caught RangeError/TypeError or a 5xx, got {} {text:?}", response.status);
        seen.insert(path, (response.status, text));
        assert_alive(&mut isobar, pid, path);
        assert_eq!(get(addr, "bystander.test", path).text(), format!("bystander {path}\n"), "after {path}");
    }
    for path in may_cope {
        let response = get(addr, "oversize.test", path);
        let text = response.text();
        let handled = (response.status == 200 && (text.starts_with("caught ") || text.starts_with("done ")))
            || matches!(response.status, 500 | 503);
        assert!(handled, "{path}: got {} {text:?}", response.status);
        seen.insert(path, (response.status, text));
        assert_alive(&mut isobar, pid, path);
        assert_eq!(get(addr, "bystander.test", path).text(), format!("bystander {path}\n"), "after {path}");
    }

    // Headers past what a response may carry: isobar answers 500 itself.
    let response = get(addr, "oversize.test", "/response-headers");
    assert!(response.status >= 500, "a response with 9 MiB of headers: {} {:?}", response.status, response.text());
    assert!(response.headers.len() < 100, "none of the oversized headers was sent");
    assert_alive(&mut isobar, pid, "/response-headers");

    // console.log of a 256 MiB string: the request is answered and the log line is bounded.
    let response = get(addr, "oversize.test", "/console");
    assert_eq!((response.status, response.text().as_str()), (200, "logged\n"), "console.log of a huge string");
    let logged = eventually(SETTLE, || {
        let stdout = isobar.stdout().join("\n");
        let stderr = isobar.stderr();
        let lines: Vec<usize> =
            stdout.lines().chain(stderr.lines()).filter(|l| l.contains("console-attack")).map(str::len).collect();
        (lines.len() >= 2).then_some(lines)
    });
    let lengths = logged.unwrap_or_else(|| panic!("the console lines were logged; stderr:\n{}", isobar.stderr()));
    assert!(lengths.iter().all(|&len| len <= (16 << 10) + 1024), "log lines are bounded: {lengths:?} bytes");

    assert_alive(&mut isobar, pid, "after every attack");
    let after = get(addr, "oversize.test", "/");
    assert_eq!((after.status, after.text().as_str()), (200, "oversize ok\n"), "the attacker's next request");
    assert_eq!(get(addr, "bystander.test", "/").text(), "bystander /\n");
    eprintln!("oversize attacks: {seen:#?}");
}

/// 4. A tenant that replaces `Promise.prototype.then` (so each reaction runs twice, or throws),
///    `Promise.prototype.constructor`, or `Promise[Symbol.species]`, and one that resolves its
///    handler's promise with a thenable that resolves twice: every request gets exactly one
///    response with the body the script meant (three pipelined requests get three responses in
///    order and nothing more), and the process stays up.
#[test]
fn overridden_promise_machinery_yields_exactly_one_response_per_request() {
    let dir = TempDir::new("hostile-then");
    let cases = [
        ("then-twice", "/then-twice", "then-twice"),
        ("then-throws", "/then-throws", "then-throws"),
        ("constructor", "/constructor", "constructor"),
        ("species", "/species", "species"),
        ("thenable", "/thenable-twice", "thenable first"),
    ];
    let mut config = String::new();
    for (name, _, _) in cases {
        config.push_str(&tenant(name, &worker("then-override.js"), &[&format!("{name}.test")], ""));
    }
    config.push_str(&named("bystander", &["bystander.test"]));
    let config = dir.write("isobar.toml", &config);
    let mut isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    let pid = isobar.pid();

    for (name, path, body) in cases {
        let host = format!("{name}.test");
        for round in 0..3 {
            let mut client = isobar.connect();
            for tag in 0..3 {
                client.send_with_host("GET", &host, &format!("{path}?tag={round}.{tag}"), &[], b"");
            }
            client.send_with_host("GET", &host, &format!("/plain?tag={round}.end"), &[], b"");
            for tag in 0..3 {
                let response = client.read_response(false);
                assert_eq!(response.status, 200, "{name} round {round} request {tag}: {}", response.text());
                assert_eq!(response.text(), format!("{body} {round}.{tag}\n"), "{name} round {round} request {tag}");
            }
            let last = client.read_response(false);
            assert_eq!(last.text(), format!("plain {round}.end\n"), "{name} round {round}: no extra response");
            // Nothing more arrives on the connection: no second response for any request.
            client.stream().set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut byte = [0u8; 1];
            let extra = std::io::Read::read(client.stream(), &mut byte);
            assert!(!matches!(extra, Ok(n) if n > 0), "{name} round {round}: bytes after the last response");
        }
        assert_alive(&mut isobar, pid, name);
        assert_eq!(isobar.get_host("bystander.test", "/").text(), "bystander /\n", "after {name}");
    }
}

/// 5. An interval that burns CPU after the response and is kept alive by `waitUntil` is stopped
///    once the request's CPU limit is used (the limit is counted on /metrics and logged); a bare
///    interval (no `waitUntil`) ends with the request's response. Either way the tenant's billed
///    CPU stops growing, and the tenant's other requests and another tenant are served
///    throughout.
#[test]
fn intervals_burning_cpu_after_the_response_are_stopped_at_the_cpu_limit() {
    let dir = TempDir::new("hostile-interval");
    let config = [
        tenant("burner", &worker("background-burn.js"), &["burner.test"], "limits = { cpu_ms = 50 }\n"),
        named("bystander", &["bystander.test"]),
    ]
    .concat();
    let config = dir.write("isobar.toml", &config);
    let mut isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    let pid = isobar.pid();
    let addr = isobar.addr;
    let cpu_limit = [("tenant", "burner"), ("limit", "cpu")];

    for (round, path) in ["/wait-until", "/bare-interval"].into_iter().enumerate() {
        let before = isobar.metrics().sum("isobar_tenant_limit_exceeded_total", &cpu_limit);
        let response = get(addr, "burner.test", path);
        assert_eq!(response.status, 200, "{path}: the response goes out before the burning: {}", response.text());
        // Served while the interval runs (or after it was stopped).
        for i in 0..10 {
            assert_eq!(get(addr, "burner.test", "/").text(), "background ok\n", "{path}: burner request {i}");
            assert_eq!(get(addr, "bystander.test", "/").text(), "bystander /\n", "{path}: bystander request {i}");
        }
        if path == "/wait-until" {
            let metrics =
                metrics_when(&isobar, |m| m.sum("isobar_tenant_limit_exceeded_total", &cpu_limit) >= before + 1.0);
            let hit = metrics.sum("isobar_tenant_limit_exceeded_total", &cpu_limit);
            assert!(hit > before, "{path}: the CPU limit is counted once the interval used it:\n{}", metrics.text);
            let stderr = isobar.stderr();
            assert!(
                stderr.contains("[burner] work after the response exceeded the CPU limit; cancelled"),
                "{path}: the cut is logged; stderr:\n{stderr}"
            );
        }
        // Stopped: the tenant's CPU does not keep growing (an interval burning a few ms every
        // ms would add most of a second in a second).
        let cpu = |m: &Metrics| m.sum("isobar_tenant_cpu_seconds_total", &[("tenant", "burner")]);
        let first = cpu(&isobar.metrics());
        std::thread::sleep(Duration::from_secs(1));
        let second = cpu(&isobar.metrics());
        assert!(
            second - first < 0.1,
            "round {round} {path}: the burning goes on after the limit: {first} s -> {second} s"
        );
        assert_alive(&mut isobar, pid, path);
    }
    assert_eq!(isobar.metrics().sum("isobar_tenant_limit_exceeded_total", &[("tenant", "bystander")]), 0.0);
}

/// The script of version `tag` of the race's tenant.
fn race_script(tag: &str) -> String {
    format!("export default {{ fetch() {{ return new Response({}); }} }};\n", toml_str(&format!("{tag}\n")))
}

/// Every core's answers for the race's tenant: `x-isobar-core` -> the bodies it gave, from many
/// connections (enough that both cores are reached).
fn answers_by_core(addr: SocketAddr) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_core: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for _ in 0..24 {
        let response = get(addr, "race.test", "/");
        assert_eq!(response.status, 200, "{}", response.text());
        let core = response.header("x-isobar-core").unwrap_or("?").to_string();
        by_core.entry(core).or_default().insert(response.text());
    }
    by_core
}

/// 6. A SIGHUP reload (the file names version A_i) races an admin PUT (version B_i) of the same
///    tenant, twenty rounds. Deployments are applied one at a time in a single order; whichever
///    is applied last is served. So after each round: every core serves the same version, and
///    it is the one the control plane reports (`GET /tenants/race`: B_i's version if the PUT was
///    applied last, otherwise A_i, which the reload gave a new version) — never an older round's,
///    never a mix.
#[test]
fn sighup_reload_racing_an_admin_put_leaves_every_core_on_the_last_deployment() {
    let dir = TempDir::new("hostile-race");
    let write_round = |tag: &str| {
        dir.write("race.js", &race_script(tag));
        dir.write(
            "isobar.toml",
            &[tenant("race", "race.js", &["race.test"], ""), named("steady", &["steady.test"])].concat(),
        )
    };
    let config = write_round("A0");
    let isobar = Isobar::serve(&config, &["--cores", "2", ADMIN[0], ADMIN[1]]);
    let addr = isobar.addr;
    let first = answers_by_core(addr);
    assert_eq!(first.len(), 2, "both cores are reached: {first:?}");

    let reloads = |isobar: &Isobar| isobar.stderr().matches("reloaded ").count();
    let mut outcomes = BTreeMap::<&str, usize>::new();
    for round in 1..=20 {
        let (a, b) = (format!("A{round}"), format!("B{round}"));
        write_round(&a);
        let reloads_before = reloads(&isobar);
        let admin = isobar.admin_addr();
        let put_body = json!({ "script": race_script(&b) }).to_string();
        let put = std::thread::spawn(move || {
            Client::connect(admin).request_with_host(
                "PUT",
                &admin.to_string(),
                "/tenants/race",
                &[("content-type", "application/json")],
                put_body.as_bytes(),
            )
        });
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_millis(round as u64 % 7));
        }
        isobar.hangup();
        let put = put.join().expect("the PUT thread");
        assert_eq!(put.status, 200, "round {round}: PUT: {}", put.text());
        let put_version = put.json()["version"].clone();
        let reloaded = eventually(SETTLE, || (reloads(&isobar) > reloads_before).then_some(()));
        assert!(reloaded.is_some(), "round {round}: the reload finished; stderr:\n{}", isobar.stderr());

        let listed = isobar.admin_request("GET", "/tenants/race", &[], b"");
        assert_eq!(listed.status, 200, "round {round}: {}", listed.text());
        let listed: Value = listed.json();
        let expected = if listed["version"] == put_version { &b } else { &a };
        *outcomes.entry(if expected == &b { "put last" } else { "reload last" }).or_default() += 1;
        let by_core = answers_by_core(addr);
        assert_eq!(by_core.len(), 2, "round {round}: both cores are reached: {by_core:?}");
        for (core, bodies) in &by_core {
            let want: BTreeSet<String> = [format!("{expected}\n")].into();
            assert_eq!(
                bodies, &want,
                "round {round}: core {core} serves what the control plane says was deployed last ({expected}, \
                 version {}); all cores: {by_core:?}",
                listed["version"]
            );
        }
    }
    eprintln!("SIGHUP/PUT race outcomes over 20 rounds: {outcomes:?}");
    assert_eq!(get(addr, "steady.test", "/").text(), "steady /\n");
}

/// 7. During one request's synchronous work (a busy loop), no clock moves: `Date.now()`,
///    `new Date()`, `Date()`, `performance.now()`, `Intl.DateTimeFormat().format()` and
///    `formatToParts()` (which read the current time when given no date), and `Temporal.Now` if
///    this V8 has it. The formatted current time is the frozen `Date.now()`; across two
///    requests with a pause between them the clock does move.
#[test]
fn every_clock_is_frozen_during_synchronous_work() {
    let dir = TempDir::new("hostile-clock");
    let config = tenant("clock", &worker("frozen-clock.js"), &["clock.test"], "limits = { cpu_ms = 10000 }\n");
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &["--cores", "1"]);
    let read = |n: u64| {
        let started = Instant::now();
        let response = get(isobar.addr, "clock.test", &format!("/?n={n}"));
        assert_eq!(response.status, 200, "{}", response.text());
        (response.json(), started.elapsed())
    };
    // Calibrate the loop so it runs at least 50 ms of real time (bounded: at most 8 doublings).
    let mut n = 2_000_000u64;
    let (mut seen, mut took) = read(n);
    for _ in 0..8 {
        if took >= Duration::from_millis(80) {
            break;
        }
        n *= 2;
        (seen, took) = read(n);
    }
    assert!(took >= Duration::from_millis(50), "the busy loop ran {took:?}");
    let (before, after) = (&seen["before"], &seen["after"]);
    for key in [
        "dateNow",
        "perfNow",
        "newDate",
        "dateString",
        "intlFixed",
        "intlMedium",
        "intlParts",
        "relativeNow",
        "temporal",
    ] {
        assert_eq!(before[key], after[key], "{key} moved during {took:?} of synchronous work: {seen}");
    }
    for clocks in [before, after] {
        assert_eq!(clocks["intlFixed"], clocks["intlFixedOfNow"], "Intl formats the frozen time: {clocks}");
        assert_eq!(clocks["intlMedium"], clocks["intlMediumOfNow"], "Intl formats the frozen time: {clocks}");
        let temporal = clocks["temporal"].as_str().unwrap_or_default();
        if temporal != "absent" {
            assert_eq!(temporal, clocks["dateNow"].to_string(), "Temporal.Now is the frozen clock: {clocks}");
        }
    }
    std::thread::sleep(Duration::from_millis(1100));
    let (later, _) = read(0);
    let moved = later["before"]["dateNow"].as_f64().unwrap_or(0.0) - before["dateNow"].as_f64().unwrap_or(0.0);
    assert!(moved >= 1000.0, "the clock moves between requests: {moved} ms");
    assert_ne!(later["before"]["intlFixed"], before["intlFixed"], "and Intl's view of it with it");
}

/// A module with one memory of 1 page and no maximum, exported as "memory", and
/// `grow(pages) -> old size in pages, or -1`: V8 alone would let it grow to 4 GiB.
const GROW_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, // type 0: (i32) -> i32
    0x03, 0x02, 0x01, 0x00, // function 0 has type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory 0: at least 1 page, no maximum
    0x07, 0x11, 0x02, 0x04, b'g', b'r', b'o', b'w', 0x00, 0x00, // export "grow" = function 0
    0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, // export "memory" = memory 0
    0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x40, 0x00, 0x0b, // local.get 0, memory.grow 0
];

/// 8. WebAssembly memory stays inside the tenant's memory limit (16 MiB here): a memory without a
///    maximum grows to the limit and no further, live instances and memories together cannot
///    pass it, and Wasm cannot be compiled at run time. Hundreds of attempts to allocate a
///    gigabyte each leave the process's memory where it was, and it goes on serving.
#[test]
fn wasm_memory_stays_inside_the_tenant_memory_limit() {
    let dir = TempDir::new("hostile-wasm");
    std::fs::write(dir.path().join("grow.wasm"), GROW_WASM).expect("write grow.wasm");
    std::fs::write(dir.path().join("grow.bin"), GROW_WASM).expect("write grow.bin");
    let script = dir.write(
        "wasm.js",
        r#"import grow from "./grow.wasm";
import bytes from "./grow.bin";
const attempt = (make) => { try { return String(make()); } catch (e) { return e.name; } };
export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/grow") {
      const { exports } = new WebAssembly.Instance(grow);
      const grown = [exports.grow(16384), exports.grow(200), exports.grow(100), exports.memory.buffer.byteLength];
      const more = [attempt(() => new WebAssembly.Instance(grow)), attempt(() => new WebAssembly.Memory({ initial: 1 }))];
      return new Response([...grown, ...more].join(" "));
    }
    if (pathname === "/hoard") {
      const kept = [];
      let refused = 0;
      for (let i = 0; i < 200; i++) {
        try { kept.push(new WebAssembly.Memory({ initial: 16, maximum: 16384 })); kept[kept.length - 1].grow(16368); }
        catch { refused++; }
      }
      return new Response(`${kept.length} ${refused}`);
    }
    if (pathname === "/compile") {
      return new Response(await WebAssembly.compile(bytes).then(() => "compiled", (e) => e.name + ": " + e.message));
    }
    return new Response("?", { status: 404 });
  },
};
"#,
    );
    let limits = "limits = { heap_mb = 16, cpu_ms = 5000 }\n";
    let config =
        [tenant("wasm", &script.display().to_string(), &["wasm.test"], limits), named("healthy", &["healthy.test"])];
    let config = dir.write("isobar.toml", &config.concat());
    let mut isobar = Isobar::serve(&config, &["--cores", "1", ADMIN[0], ADMIN[1]]);
    let pid = isobar.pid();
    let rss_before = isobar.rss_bytes();

    // 16 MiB is 256 pages: the first grow (to 16385 pages, 1 GiB) is refused by V8, then 1 -> 201.
    let grown = get(isobar.addr, "wasm.test", "/grow");
    assert_eq!(grown.status, 200, "{}", grown.text());
    assert_eq!(grown.text(), format!("-1 1 -1 {} RangeError RangeError", 201 * 65536));

    // Each memory may reach 16368 + 16 pages (1 GiB) on its own, but the tenant has 16 MiB.
    for round in 0..3 {
        let hoard = get(isobar.addr, "wasm.test", "/hoard");
        assert_eq!(hoard.status, 200, "round {round}: {}", hoard.text());
        let counts: Vec<u32> = hoard.text().split(' ').map(|n| n.parse().expect("a count")).collect();
        assert_eq!(counts[0] + counts[1], 200, "round {round}: {}", hoard.text());
        assert!(counts[0] <= 16, "round {round}: {} memories of at least 1 MiB fit in 16 MiB", counts[0]);
    }
    let rss_after = isobar.rss_bytes();
    eprintln!("RSS before the Wasm attempts {rss_before} bytes, after {rss_after}");
    assert!(
        rss_after < rss_before + (256 << 20),
        "600 attempts at a gigabyte of Wasm memory grew the process from {rss_before} to {rss_after} bytes"
    );

    let compile = get(isobar.addr, "wasm.test", "/compile");
    assert!(compile.text().starts_with("CompileError: "), "{}", compile.text());
    assert!(compile.text().contains("disallowed"), "{}", compile.text());
    assert_alive(&mut isobar, pid, "after the Wasm attempts");
    assert_eq!(get(isobar.addr, "healthy.test", "/after").text(), "healthy /after\n");
}
