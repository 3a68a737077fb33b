//! What the API tests share: each area's JS tests are self-checking module workers in
//! `api/<area>/` that answer "ok" or fail with the assertion that broke, run in real isolates
//! made from the real snapshot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Outcome, RequestParts, ScriptFormat, Worker, WorkerSpec};

/// A request to send to a test worker.
pub struct Req<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

impl<'a> Req<'a> {
    pub fn get(url: &'a str) -> Req<'a> {
        Req { method: "GET", url, headers: &[], body: b"" }
    }
}

pub fn api_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/api")
}

/// A worker loaded from `api/<path>`, with `./assert.js` importable beside it.
pub fn load_api_test(path: &str) -> Worker {
    let file = api_dir().join(path);
    let source = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{path}: {e}"));
    let assert = std::fs::read_to_string(api_dir().join("test_assert.js")).unwrap();
    let mut spec = WorkerSpec::from_source(path, &file, source, ScriptFormat::Auto);
    let mut modules = std::collections::BTreeMap::new();
    modules.insert(file.parent().unwrap().join("assert.js"), crate::worker::ModuleSource::Js(assert));
    spec.modules = Arc::new(modules);
    Worker::new(&spec).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Dispatches one request and drives microtasks and timers until it finishes (at most 5 s).
pub fn request(worker: &mut Worker, id: u64, req: &Req) -> Option<Outcome> {
    let parts = RequestParts { method: req.method, url: req.url, headers: req.headers, body: req.body };
    worker.dispatch(id, &parts, Instant::now(), Duration::MAX, 50);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut outcomes = Vec::new();
    loop {
        worker.run_microtasks(Duration::MAX);
        worker.take_outcomes(&mut outcomes);
        if let Some(i) = outcomes
            .iter()
            .position(|o| matches!(o, Outcome::Response { id: x, .. } | Outcome::Failed { id: x, .. } if *x == id))
        {
            let outcome = outcomes.swap_remove(i);
            worker.responded(id, Instant::now());
            return Some(outcome);
        }
        let next = worker.next_timer()?;
        if next > deadline {
            return None;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        worker.fire_timers(Instant::now(), Duration::MAX);
    }
}

/// The status and body of an outcome (panics on a failure or no outcome).
pub fn body_of(outcome: Option<Outcome>) -> (u16, String) {
    match outcome {
        Some(Outcome::Response { response, .. }) => {
            (response.status, String::from_utf8_lossy(&response.body).into_owned())
        }
        Some(Outcome::Failed { message, .. }) => panic!("request failed: {message}"),
        Some(Outcome::BodyChunk { .. }) => panic!("a streamed body chunk, not an outcome"),
        None => panic!("request never finished"),
    }
}

/// Runs the JS test `api/<path>` with `req`; it must answer 200 "ok".
pub fn api_test(path: &str, req: &Req) {
    let mut worker = load_api_test(path);
    assert_eq!(body_of(request(&mut worker, 1, req)), (200, "ok".to_string()), "{path}");
}
