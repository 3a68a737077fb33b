//! Memory and start-up cost of isolates, in-process: creates N workers from the snapshot (each
//! with its own generated script), serves one request in each, and reports RSS per worker and
//! creation times; then drops them all and reports how much RSS came back.
//!
//!   cargo run --release -p isobar-bench --bin isolates -- [N] [--v8-flags "..."]

use std::time::{Duration, Instant};

use runtime::{Outcome, RequestParts, ScriptFormat, Worker, WorkerSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .unwrap_or(0)
        * 1024
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut n = 1000usize;
    while let Some(arg) = args.next() {
        if arg == "--v8-flags" {
            runtime::engine::set_extra_flags(&args.next().expect("--v8-flags needs a value"));
        } else {
            n = arg.parse().expect("N must be a number");
        }
    }
    runtime::engine::init().expect("V8");
    if std::env::var_os("BARE").is_some() {
        // V8's own snapshot, no isobar API: the baseline our context adds to.
        let mut isolate = v8::Isolate::new(Default::default());
        {
            v8::scope!(let hs, &mut isolate);
            let context = v8::Context::new(hs, Default::default());
            let _scope = &mut v8::ContextScope::new(hs, context);
        }
        for i in 0..isolate.number_of_heap_spaces() {
            if let Some(s) = isolate.get_heap_space_statistics(i)
                && s.physical_space_size() > 0
            {
                println!(
                    "  bare {}: used {} physical {}",
                    s.space_name().to_string_lossy(),
                    s.space_used_size(),
                    s.physical_space_size()
                );
            }
        }
    }
    if std::env::var_os("PROBE").is_some() {
        for _ in 0..5 {
            let t = Instant::now();
            let mut isolate = runtime::isolate::Isolate::new("probe", 128 << 20).unwrap();
            let made = t.elapsed();
            for (name, used, physical) in isolate.heap_spaces() {
                if physical > 0 {
                    println!("  {name}: used {used} physical {physical}");
                }
            }
            drop(isolate);
            println!("isolate+context {made:?} (drop {:?})", t.elapsed() - made);
        }
    }
    let rss_start = rss_bytes();
    let mut workers = Vec::with_capacity(n);
    let mut create = Vec::with_capacity(n);
    let mut load = Vec::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    let path = std::path::PathBuf::from("generated.js");
    for i in 0..n {
        let source = format!(
            "const id = {i}; const greeting = 'tenant ' + id;\nexport default {{ async fetch(request) {{ return new Response(greeting + ' ' + new URL(request.url).pathname); }} }};"
        );
        let spec = WorkerSpec::from_source(&format!("t{i}"), &path, source, ScriptFormat::Module);
        let started = Instant::now();
        let isolate = runtime::isolate::Isolate::new(&spec.name, 128 << 20).expect("isolate");
        create.push(started.elapsed());
        let started = Instant::now();
        let mut worker = Worker::load(isolate, &spec, Duration::MAX).expect("worker loads");
        load.push(started.elapsed());
        let parts = RequestParts { method: "GET", url: "http://t/x", headers: &[], body: b"" };
        let started = Instant::now();
        worker.dispatch(1, &parts, Instant::now(), Duration::MAX, 50);
        worker.run_microtasks(Duration::MAX);
        let mut outcomes = Vec::new();
        worker.take_outcomes(&mut outcomes);
        first.push(started.elapsed());
        assert!(matches!(outcomes.first(), Some(Outcome::Response { .. })), "worker {i} answered");
        workers.push(worker);
    }
    if std::env::var_os("TRIM").is_some() {
        let before = rss_bytes();
        kernel_shim::memory::release_free_memory();
        println!("trim: {:.1} MB -> {:.1} MB", before as f64 / 1e6, rss_bytes() as f64 / 1e6);
    }
    let rss_full = rss_bytes();
    if std::env::var_os("SMAPS").is_some() {
        let _ = std::fs::copy("/proc/self/smaps", "/tmp/isolates.smaps");
    }
    let per_worker = (rss_full.saturating_sub(rss_start)) as f64 / n as f64;
    let mut heap_used = 0;
    let mut heap_physical = 0;
    for w in workers.iter_mut() {
        let (used, physical, _) = w.memory_bytes();
        heap_used += used;
        heap_physical += physical;
    }
    create.sort();
    load.sort();
    first.sort();
    println!("workers: {n}");
    println!("rss: start {:.1} MB, with workers {:.1} MB", rss_start as f64 / 1e6, rss_full as f64 / 1e6);
    println!("rss per worker: {:.3} MB", per_worker / 1e6);
    println!(
        "v8 heap per worker: used {:.3} MB, physical {:.3} MB",
        heap_used as f64 / n as f64 / 1e6,
        heap_physical as f64 / n as f64 / 1e6
    );
    println!(
        "new isolate + context (from the snapshot): p50 {:?} p99 {:?}",
        percentile(&create, 0.5),
        percentile(&create, 0.99)
    );
    println!("load the tenant's script into it: p50 {:?} p99 {:?}", percentile(&load, 0.5), percentile(&load, 0.99));
    println!("first request: p50 {:?} p99 {:?}", percentile(&first, 0.5), percentile(&first, 0.99));
    let started = Instant::now();
    // Drop in an order unrelated to creation (every other one first).
    let mut odd: Vec<Worker> = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        if i % 2 == 1 {
            odd.push(w);
        }
    }
    drop(odd);
    let dropped = started.elapsed();
    kernel_shim::memory::release_free_memory();
    if std::env::var_os("SMAPS").is_some() {
        let _ = std::fs::copy("/proc/self/smaps", "/tmp/isolates-after.smaps");
    }
    println!(
        "dropped all in {dropped:?}; rss after drop {:.1} MB ({:+.1}% of start)",
        rss_bytes() as f64 / 1e6,
        (rss_bytes() as f64 / rss_start as f64 - 1.0) * 100.0
    );
}
