//! The op fuzzer (issue 12): in a real isolate made from the real snapshot, `op_fuzz.js` calls
//! every function isobar installs for tenants (constructors, statics, prototype methods and
//! accessors, found by walking `globalThis`) with arguments from a seeded generator: odd numbers,
//! huge and lone-surrogate strings, typed arrays, detached and shrunk buffers, proxies whose
//! traps throw, objects whose getters and conversions throw, symbols, and instances of isobar's
//! own classes. No call may panic (which condemns the isolate with `Condemned::Panic`) or abort
//! the test process, and the isolate must keep answering requests.
//!
//! Bounded: a fixed list of seeds, a fixed number of calls per request, and a wall-clock budget
//! after which the remaining seeds are skipped (the test reports how many it ran).

use std::time::{Duration, Instant};

use crate::isolate::Condemned;
use crate::testing::{Req, body_of, request};
use crate::{ScriptFormat, Worker, WorkerSpec};

/// Seeds tried, one request each, unless the time budget runs out first.
const SEEDS: u32 = 400;
/// Calls per request.
const CALLS_PER_SEED: u32 = 250;
/// When to stop starting new seeds (a debug build runs the whole list in well under a minute
/// on an idle machine; a loaded one stops here instead).
const BUDGET: Duration = Duration::from_secs(45);

fn fuzz_worker() -> Worker {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/op_fuzz.js");
    let source = std::fs::read_to_string(&path).expect("op_fuzz.js");
    let spec = WorkerSpec::from_source("op-fuzz", &path, source, ScriptFormat::Module);
    Worker::new(&spec).unwrap_or_else(|e| panic!("op_fuzz.js does not load: {e}"))
}

#[test]
fn random_arguments_to_every_op_never_panic_or_abort() {
    let started = Instant::now();
    let mut worker = fuzz_worker();
    let targets = body_of(request(&mut worker, 1, &Req::get("http://fuzz.test/targets"))).1;
    let target_count = targets.lines().count();
    assert!(target_count > 200, "the walk finds isobar's API ({target_count} targets):\n{targets}");
    let mut id = 2;
    let mut ran = 0;
    let mut replaced = Vec::new();
    for seed in 0..SEEDS {
        if started.elapsed() > BUDGET {
            break;
        }
        let url = format!("http://fuzz.test/?seed={seed}&calls={CALLS_PER_SEED}");
        id += 1;
        let outcome = request(&mut worker, id, &Req::get(&url));
        ran += 1;
        let condemned = worker.condemned();
        assert_ne!(condemned, Some(Condemned::Panic), "seed {seed}: an op panicked (see the log above)");
        if let Some(limit) = condemned {
            // A heap or CPU limit is a legitimate answer to a huge argument; carry on in a
            // fresh isolate, as the scheduler would.
            replaced.push((seed, limit));
            worker = fuzz_worker();
            continue;
        }
        let (status, text) = body_of(outcome);
        assert_eq!(status, 200, "seed {seed}: {text}");
        id += 1;
        let ping = body_of(request(&mut worker, id, &Req::get("http://fuzz.test/ping")));
        assert_eq!(ping, (200, "pong".to_string()), "seed {seed}: the isolate still answers");
    }
    eprintln!(
        "op fuzz: {ran} seeds x {CALLS_PER_SEED} calls over {target_count} targets in {:?}; isolates replaced \
         after a limit: {replaced:?}",
        started.elapsed()
    );
    assert!(ran >= 20, "only {ran} seeds ran within {BUDGET:?}");
    assert!(replaced.len() * 4 <= ran, "most seeds run without hitting a limit: {replaced:?}");
}
