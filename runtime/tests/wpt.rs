//! Conformance with the Web Platform Tests (material kept outside this repository): runs WPT's
//! `streams/**/*.any.js`, `encoding/streams/*.any.js` and `compression/*.any.js` in real
//! isolates through a small testharness stand-in (`tests/wpt/harness.js`) and prints the pass
//! counts per file and in total.
//!
//! The tests are not vendored, and no npm package carries them (checked: `wpt` on npm is an
//! unrelated tool, `wpt-runner` ships a runner only, web-streams-polyfill ships no tests), so
//! the runner reads a WPT checkout named by `ISOBAR_WPT_DIR` (any directory holding WPT's
//! `streams/` tree, e.g. the copy Node.js vendors in `test/fixtures/wpt`) and skips, saying
//! so, when it is not set. `ISOBAR_WPT_MIN_PASS` (a fraction, e.g. 0.9) makes the run fail
//! below that pass rate.
//!
//! Run: `ISOBAR_WPT_DIR=/path/to/wpt cargo test -p runtime --test wpt -- --nocapture`
//! (`ISOBAR_WPT_FILTER=piping` runs only the files whose path contains that text, and lists
//! every failure).
//!
//! One way to get a copy here, from Debian's source of Node.js 18 (its WPT copy dates from
//! 2023, so a few transform-stream tests still expect the behaviour from before the standard
//! added the transformer's `cancel`):
//! ```sh
//! echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
//!   > /etc/apt/sources.list.d/wpt-src.list && apt-get update
//! apt-get source --download-only nodejs
//! tar -xJf nodejs_18.*.orig.tar.xz --wildcards '*/test/fixtures/wpt/streams' '*/test/fixtures/wpt/encoding' \
//!   '*/test/fixtures/wpt/common' '*/test/fixtures/wpt/resources'
//! ISOBAR_WPT_DIR=$PWD/node-v18.20.4/test/fixtures/wpt cargo test -p runtime --test wpt -- --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runtime::{Outcome, RequestParts, ScriptFormat, Worker, WorkerSpec};

/// Files that need what a Workers isolate does not have (windows, realms, transfer between
/// workers, a garbage-collection hook, WebIDL's IDL harness).
const SKIP: &[&str] = &[
    "idlharness",
    "transferable",
    "garbage-collection",
    "owning-type",
    "transfer-type",
    "patched-global", // replaces globals the harness stand-in itself uses
    ".window.js",
    ".worker.js",
    ".serviceworker.js",
    "shadowrealm",
];

/// The longest one file may run (its tests time out after 2 s each inside the harness).
const FILE_WALL_MAX: Duration = Duration::from_secs(120);

fn any_js_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            any_js_files(&path, out);
        } else if path.to_string_lossy().ends_with(".any.js") {
            out.push(path);
        }
    }
}

/// The test file with the scripts its `// META: script=` lines name, in order, after the harness.
fn script_for(root: &Path, file: &Path, harness: &str) -> Result<String, String> {
    let source = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut script = String::from(harness);
    for line in source.lines() {
        let Some(meta) = line.strip_prefix("// META:") else { continue };
        let Some(src) = meta.trim().strip_prefix("script=") else { continue };
        let path = if let Some(absolute) = src.strip_prefix('/') {
            root.join(absolute)
        } else {
            file.parent().unwrap_or(root).join(src)
        };
        let helper = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        script.push_str("\n;\n");
        script.push_str(&helper);
    }
    script.push_str("\n;\n");
    script.push_str(&source);
    Ok(script)
}

/// Runs one file; (passed, total, failures as "name: message").
fn run_file(root: &Path, file: &Path, harness: &str) -> Result<(usize, usize, Vec<String>), String> {
    let script = script_for(root, file, harness)?;
    let spec = WorkerSpec::from_source("wpt", file, script, ScriptFormat::ServiceWorker);
    let mut worker = Worker::new(&spec).map_err(|e| format!("load: {e}"))?;
    let request = RequestParts { method: "GET", url: "http://wpt.test/", headers: &[], body: b"" };
    worker.dispatch(1, &request, Instant::now(), Duration::MAX, 50);
    let deadline = Instant::now() + FILE_WALL_MAX;
    let mut outcomes = Vec::new();
    let body = loop {
        worker.run_microtasks(Duration::MAX);
        worker.take_outcomes(&mut outcomes);
        if let Some(outcome) = outcomes.pop() {
            match outcome {
                Outcome::Response { response, .. } => break String::from_utf8_lossy(&response.body).into_owned(),
                Outcome::Failed { message, .. } => return Err(format!("the run failed: {message}")),
                Outcome::BodyChunk { .. } => return Err("the results page streamed its body".into()),
            }
        }
        if let Some(condemned) = worker.condemned() {
            return Err(format!("the isolate was condemned: {condemned:?}"));
        }
        let Some(next) = worker.next_timer() else { return Err("the run never finished".into()) };
        if next > deadline {
            return Err("the run took too long".into());
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        worker.fire_timers(Instant::now(), Duration::MAX);
    };
    let results: Vec<(String, String, String)> = serde_json::from_str(&body).map_err(|e| format!("results: {e}"))?;
    let passed = results.iter().filter(|r| r.1 == "PASS").count();
    let failures = results.iter().filter(|r| r.1 != "PASS").map(|r| format!("{} [{}] {}", r.0, r.1, r.2)).collect();
    Ok((passed, results.len(), failures))
}

#[test]
fn web_platform_tests() {
    let Some(root) = std::env::var_os("ISOBAR_WPT_DIR").map(PathBuf::from) else {
        eprintln!(
            "wpt: skipped: set ISOBAR_WPT_DIR to a web-platform-tests checkout (no registry package carries them)"
        );
        return;
    };
    let harness = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wpt/harness.js")).unwrap();
    let filter = std::env::var("ISOBAR_WPT_FILTER").unwrap_or_default();
    let mut files = Vec::new();
    for dir in ["streams", "encoding/streams", "compression"] {
        any_js_files(&root.join(dir), &mut files);
    }
    assert!(!files.is_empty(), "no *.any.js files under {}", root.display());
    let (mut passed, mut total) = (0, 0);
    for file in &files {
        let name = file.strip_prefix(&root).unwrap_or(file).to_string_lossy().into_owned();
        if SKIP.iter().any(|s| name.contains(s)) || !name.contains(&filter) {
            continue;
        }
        match run_file(&root, file, &harness) {
            Ok((p, t, failures)) => {
                println!("{p:4}/{t:<4} {name}");
                for failure in failures.iter().take(if filter.is_empty() { 3 } else { 200 }) {
                    println!("            {failure}");
                }
                passed += p;
                total += t;
            }
            Err(error) => println!("   error    {name}: {error}"),
        }
    }
    println!("wpt: {passed} passed, {} failed", total - passed);
    if let Some(min) = std::env::var("ISOBAR_WPT_MIN_PASS").ok().and_then(|v| v.parse::<f64>().ok()) {
        assert!(passed as f64 >= min * total as f64, "pass rate {passed}/{total} is below {min}");
    }
}
