//! Tests of the Workers API and of Worker life cycles, run in real V8 isolates.
//!
//! The tests of each API area live in its folder (`api/<area>/`); these are about loading
//! scripts and the life of a Worker.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::testing::{Req, body_of};
use crate::{LoadError, Outcome, RequestParts, ScriptFormat, Worker, WorkerSpec};

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn spec_from_source(name: &str, source: &str, format: ScriptFormat) -> WorkerSpec {
    WorkerSpec::from_source(name, &js_dir().join(format!("{name}.js")), source.into(), format)
}

fn request(worker: &mut Worker, id: u64, parts: &RequestParts) -> Option<Outcome> {
    crate::testing::request(
        worker,
        id,
        &Req { method: parts.method, url: parts.url, headers: parts.headers, body: parts.body },
    )
}

fn get(url: &str) -> RequestParts<'_> {
    RequestParts { method: "GET", url, headers: &[], body: b"" }
}

#[test]
fn service_worker_format() {
    let source = r#"addEventListener("fetch", (event) => {
        event.respondWith(new Response("sw " + new URL(event.request.url).pathname, { headers: { "x-a": "b" } }));
    });"#;
    let mut worker = Worker::new(&spec_from_source("sw", source, ScriptFormat::Auto)).unwrap();
    match request(&mut worker, 7, &get("http://h/p")) {
        Some(Outcome::Response { id, response }) => {
            assert_eq!(id, 7);
            assert_eq!(response.body, b"sw /p");
            assert!(response.headers.contains(&("x-a".to_string(), b"b".to_vec())));
            assert!(response.headers.iter().any(|(k, v)| k == "content-type" && v == b"text/plain;charset=UTF-8"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn module_format_is_detected_and_sync_responses_work() {
    let source = "export default { fetch(r) { return new Response(r.method, { status: 418 }); } }";
    let mut worker = Worker::new(&spec_from_source("m", source, ScriptFormat::Auto)).unwrap();
    assert_eq!(body_of(request(&mut worker, 1, &get("http://h/"))), (418, "GET".to_string()));
}

#[test]
fn errors_in_handlers_fail_the_request_and_the_next_one_works() {
    let source = r#"export default { async fetch(r) {
        const path = new URL(r.url).pathname;
        if (path === "/throw") throw new Error("boom");
        if (path === "/reject") return Promise.reject(new TypeError("nope"));
        if (path === "/string") return "not a response";
        if (path === "/error") return Response.error();
        return new Response("fine");
    } }"#;
    let mut worker = Worker::new(&spec_from_source("errors", source, ScriptFormat::Auto)).unwrap();
    for (path, needle) in [
        ("/throw", "Error: boom"),
        ("/reject", "TypeError: nope"),
        ("/string", "not a Response"),
        ("/error", "Response.error()"),
    ] {
        let url = format!("http://h{path}");
        match request(&mut worker, 1, &get(&url)) {
            Some(Outcome::Failed { message, .. }) => assert!(message.contains(needle), "{path}: {message}"),
            other => panic!("{path}: expected a failure, got {other:?}"),
        }
        assert_eq!(body_of(request(&mut worker, 2, &get("http://h/ok"))), (200, "fine".to_string()));
    }
}

#[test]
fn stack_of_a_thrown_error_names_the_file_and_line() {
    let source = "export default {\n  fetch() {\n    throw new Error('deep');\n  }\n}\n";
    let mut worker = Worker::new(&spec_from_source("stack", source, ScriptFormat::Module)).unwrap();
    match request(&mut worker, 1, &get("http://h/")) {
        Some(Outcome::Failed { message, .. }) => assert!(message.contains("stack.js:3:"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_handler_that_never_responds_leaves_no_outcome_and_no_timer() {
    let source = "export default { fetch() { return new Promise(() => {}); } }";
    let mut worker = Worker::new(&spec_from_source("hang", source, ScriptFormat::Auto)).unwrap();
    assert!(request(&mut worker, 1, &get("http://h/")).is_none());
    assert!(!worker.has_pending_work());
}

#[test]
fn compile_errors_name_file_line_and_column() {
    let source = "export default {\n  fetch() {\n    return new Response(;\n  }\n}\n";
    let error = Worker::new(&spec_from_source("broken", source, ScriptFormat::Auto)).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, LoadError::Compile { line: 3, .. }), "{text}");
    assert!(text.contains("broken.js:3:"), "{text}");
    assert!(text.contains("SyntaxError"), "{text}");
}

#[test]
fn missing_handlers_are_start_up_errors() {
    let error = Worker::new(&spec_from_source("nohandler", "export const x = 1;", ScriptFormat::Auto)).unwrap_err();
    assert!(error.to_string().contains("no default export"), "{error}");
    let error = Worker::new(&spec_from_source("nolistener", "var x = 1;", ScriptFormat::Auto)).unwrap_err();
    assert!(error.to_string().contains("no fetch handler"), "{error}");
    let error = Worker::new(&spec_from_source("throws", "throw new Error('at load')", ScriptFormat::Auto)).unwrap_err();
    assert!(error.to_string().contains("at load"), "{error}");
}

#[test]
fn imports_resolve_beside_the_worker_and_not_outside_it() {
    let error = Worker::new(&spec_from_source(
        "escape",
        "import x from '../../Cargo.toml'; export default { fetch() {} }",
        ScriptFormat::Auto,
    ))
    .unwrap_err();
    assert!(error.to_string().contains("outside the worker's directory"), "{error}");
    let error = Worker::new(&spec_from_source(
        "bare",
        "import x from 'lodash'; export default { fetch() {} }",
        ScriptFormat::Auto,
    ))
    .unwrap_err();
    assert!(error.to_string().contains("only relative imports"), "{error}");
}

#[test]
fn tenants_do_not_see_each_others_globals() {
    let a =
        "globalThis.secret = 'a-only'; export default { fetch() { return new Response(String(globalThis.secret)); } }";
    let b = "export default { fetch() { return new Response(String(globalThis.secret)); } }";
    let mut wa = Worker::new(&spec_from_source("a", a, ScriptFormat::Auto)).unwrap();
    let mut wb = Worker::new(&spec_from_source("b", b, ScriptFormat::Auto)).unwrap();
    assert_eq!(body_of(request(&mut wa, 1, &get("http://h/"))).1, "a-only");
    assert_eq!(body_of(request(&mut wb, 1, &get("http://h/"))).1, "undefined");
}

#[test]
fn workers_can_be_dropped_in_any_order() {
    let source = "export default { fetch() { return new Response('x'); } }";
    let mut workers: Vec<Option<Worker>> = (0..5)
        .map(|i| Some(Worker::new(&spec_from_source(&format!("w{i}"), source, ScriptFormat::Auto)).unwrap()))
        .collect();
    for i in [2, 0, 4] {
        workers[i] = None;
    }
    for w in workers.iter_mut().flatten() {
        assert_eq!(body_of(request(w, 1, &get("http://h/"))).1, "x");
    }
    let late = Worker::new(&spec_from_source("late", source, ScriptFormat::Auto)).unwrap();
    workers.clear();
    drop(late);
}

#[test]
fn date_now_does_not_move_while_a_request_runs() {
    let source = "export default { fetch() { const a = Date.now(); let x = 0; for (let i = 0; i < 3e7; i++) x += i; return new Response(String(Date.now() - a)); } }";
    let mut worker = Worker::new(&spec_from_source("clock", source, ScriptFormat::Auto)).unwrap();
    assert_eq!(body_of(request(&mut worker, 1, &get("http://h/"))).1, "0");
}

#[test]
fn no_shared_array_buffer() {
    let source = "export default { fetch() { return new Response(typeof SharedArrayBuffer); } }";
    let mut worker = Worker::new(&spec_from_source("sab", source, ScriptFormat::Auto)).unwrap();
    assert_eq!(body_of(request(&mut worker, 1, &get("http://h/"))).1, "undefined");
}

#[test]
fn bundles_carry_every_module_and_load_without_the_disk() {
    let path = js_dir().join("bundle/main.js");
    let source = std::fs::read_to_string(&path).unwrap();
    let spec = WorkerSpec::from_source("bundle", &path, source, ScriptFormat::Auto);
    let (format, modules) = crate::worker::bundle(&spec).unwrap();
    assert_eq!(format, ScriptFormat::Module);
    let names: Vec<String> = modules.keys().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in ["main.js", "greet.js", "prefix.js"] {
        assert!(names.contains(&name.to_string()), "{names:?}");
    }
    // A core loads from the bundle only: no disk access allowed.
    let spec = WorkerSpec { modules: std::sync::Arc::new(modules), read_disk: false, format, ..spec };
    let mut worker = Worker::new(&spec).unwrap();
    assert_eq!(body_of(request(&mut worker, 1, &get("http://h/"))).1, "hello bundle");
    // Without the imported modules in the bundle, loading fails and says why.
    let bare = WorkerSpec { modules: std::sync::Arc::default(), ..spec };
    let error = Worker::new(&bare).unwrap_err();
    assert!(error.to_string().contains("not part of the deployed worker"), "{error}");
}

#[test]
fn bundling_reports_syntax_errors_in_imported_modules() {
    let dir = std::env::temp_dir().join(format!("isobar-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.js"), "export const x = ;\n").unwrap();
    let main = dir.join("main.js");
    let source = "import { x } from './bad.js'; export default { fetch() { return new Response(String(x)); } };";
    let spec = WorkerSpec::from_source("m", &main, source.into(), ScriptFormat::Auto);
    let error = crate::worker::bundle(&spec).unwrap_err().to_string();
    assert!(error.contains("bad.js:1:"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn array_buffer_memory_is_capped_with_the_heap_limit() {
    // ArrayBuffers live outside V8's heap. V8 counts them towards its heap limit as external
    // memory (so the near-heap-limit guard usually stops the isolate first), and isobar's
    // allocator refuses them beyond the same limit as a hard backstop. Either way a tenant
    // cannot hold more than its limit.
    let source = r#"export default { fetch() {
        const kept = [];
        try { for (let i = 0; i < 100; i++) kept.push(new ArrayBuffer(4 << 20)); }
        catch (e) { return new Response(`${e.name} after ${kept.length}`); }
        return new Response("no limit");
    } }"#;
    let spec = spec_from_source("buffers", source, ScriptFormat::Auto);
    let isolate = crate::isolate::Isolate::new("buffers", 16 << 20).unwrap();
    let mut worker = Worker::load(isolate, &spec, Duration::MAX).unwrap();
    match request(&mut worker, 1, &get("http://h/")) {
        Some(Outcome::Response { response, .. }) => {
            let body = String::from_utf8_lossy(&response.body).into_owned();
            assert!(body.starts_with("RangeError after "), "{body}");
        }
        Some(Outcome::Failed { message, .. }) => {
            assert!(message.contains("terminated"), "{message}");
            assert_eq!(worker.condemned(), Some(crate::isolate::Condemned::HeapLimit));
        }
        Some(Outcome::BodyChunk { .. }) => panic!("a streamed body chunk, not an outcome"),
        None => panic!("the request never finished"),
    }
    let (_, _, buffers) = worker.memory_bytes();
    assert!(buffers <= 16 << 20, "{buffers} bytes of ArrayBuffers held");
}

#[test]
fn a_runaway_script_is_stopped_by_the_watchdog_and_the_isolate_is_condemned() {
    let watchdog = crate::watchdog::Watchdog::start().unwrap();
    watchdog.set_smallest_limit(Duration::from_millis(20));
    let watch = std::sync::Arc::new(crate::watchdog::CoreWatch::for_current_thread().unwrap());
    watchdog.watch(&watch);
    let source =
        "export default { fetch(r) { if (r.url.endsWith('/spin')) { while (true) {} } return new Response('ok'); } }";
    let mut worker = Worker::new(&spec_from_source("spin", source, ScriptFormat::Auto)).unwrap();
    worker.set_watch(watch);
    let started = Instant::now();
    worker.dispatch(1, &get("http://h/spin"), Instant::now(), Duration::from_millis(20), 50);
    assert!(started.elapsed() < Duration::from_secs(2), "the loop was stopped ({:?})", started.elapsed());
    assert_eq!(worker.condemned(), Some(crate::isolate::Condemned::CpuLimit));
    let spent = worker.take_last_entry_cpu();
    assert!(spent >= Duration::from_millis(15), "{spent:?}");
    // A well-behaved worker on the same thread and watch is unaffected.
    let mut other = Worker::new(&spec_from_source(
        "calm",
        "export default { fetch() { return new Response('calm'); } }",
        ScriptFormat::Auto,
    ))
    .unwrap();
    assert_eq!(body_of(request(&mut other, 1, &get("http://h/"))).1, "calm");
    assert_eq!(other.condemned(), None);
}

#[test]
fn math_random_differs_between_isolates_made_from_the_same_snapshot() {
    let source = "export default { fetch() { return new Response(String(Math.random())); } }";
    let mut a = Worker::new(&spec_from_source("ra", source, ScriptFormat::Auto)).unwrap();
    let mut b = Worker::new(&spec_from_source("rb", source, ScriptFormat::Auto)).unwrap();
    assert_ne!(body_of(request(&mut a, 1, &get("http://h/"))).1, body_of(request(&mut b, 1, &get("http://h/"))).1);
}

/// A WebAssembly module exporting `add(i32, i32) -> i32`, written out by hand (magic and version,
/// then the type, function, export and code sections).
const ADD_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // type 0: (i32, i32) -> i32
    0x03, 0x02, 0x01, 0x00, // function 0 has type 0
    0x07, 0x07, 0x01, 0x03, b'a', b'd', b'd', 0x00, 0x00, // export "add" = function 0
    0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b, // local.get 0, local.get 1, i32.add
];

/// A module Worker in a fresh directory with `files` beside it.
fn worker_dir(label: &str, main: &str, files: &[(&str, &[u8])]) -> (std::path::PathBuf, WorkerSpec) {
    let dir = std::env::temp_dir().join(format!("isobar-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let path = dir.join("main.js");
    std::fs::write(&path, main).unwrap();
    let spec = WorkerSpec::from_source(label, &path, main.to_string(), ScriptFormat::Auto);
    (dir, spec)
}

#[test]
fn wasm_json_text_and_data_modules_are_imported_by_type() {
    let main = r#"
        import add from "./add.wasm";
        import config from "./config.json";
        import page from "./page.html";
        import blob from "./blob.bin";
        export default {
          async fetch() {
            const { exports } = await WebAssembly.instantiate(add);
            const parts = [
              add instanceof WebAssembly.Module,
              exports.add(40, 2),
              config.name, config.list.length,
              page.trim(),
              blob instanceof ArrayBuffer, new Uint8Array(blob)[2],
            ];
            return new Response(parts.join(" "));
          },
        };"#;
    let files: &[(&str, &[u8])] = &[
        ("add.wasm", ADD_WASM),
        ("config.json", br#"{"name": "isobar", "list": [1, 2, 3]}"#),
        ("page.html", b"<p>hi</p>\n"),
        ("blob.bin", &[7, 8, 9, 0xff]),
    ];
    let (dir, spec) = worker_dir("modtypes", main, files);
    let (format, modules) = crate::worker::bundle(&spec).unwrap();
    assert_eq!(modules.len(), 5, "{:?}", modules.keys().collect::<Vec<_>>());
    assert!(
        matches!(modules.get(&dir.join("add.wasm")), Some(crate::worker::ModuleSource::Wasm(w)) if w.bytes() == ADD_WASM)
    );
    // Loaded from the bundle alone, as a core does.
    std::fs::remove_dir_all(&dir).unwrap();
    let spec = WorkerSpec { modules: std::sync::Arc::new(modules), read_disk: false, format, ..spec };
    let mut worker = Worker::new(&spec).unwrap();
    assert_eq!(body_of(request(&mut worker, 1, &get("http://h/"))).1, "true 42 isobar 3 <p>hi</p> true 9");
}

#[test]
fn bad_wasm_and_json_modules_are_load_errors_naming_the_file() {
    for (name, bytes, needle) in
        [("bad.wasm", &b"\0asm\x01\0\0\0\x01"[..], "bad.wasm"), ("bad.json", &b"{ nope"[..], "bad.json")]
    {
        let main =
            format!("import x from './{name}'; export default {{ fetch() {{ return new Response(String(x)); }} }}");
        let (dir, spec) = worker_dir(&format!("bad-{}", name.replace('.', "-")), &main, &[(name, bytes)]);
        let error = crate::worker::bundle(&spec).unwrap_err().to_string();
        assert!(error.contains(needle), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn code_generation_from_strings_is_off() {
    let source = r#"export default { fetch() {
        const out = [];
        for (const attempt of [() => eval("1 + 1"), () => new Function("return 1")(), () => setTimeout("1", 0)]) {
          try { attempt(); out.push("allowed"); } catch (e) { out.push(e.name); }
        }
        return new Response(out.join(" "));
    } }"#;
    let mut worker = Worker::new(&spec_from_source("noeval", source, ScriptFormat::Auto)).unwrap();
    let body = body_of(request(&mut worker, 1, &get("http://h/"))).1;
    assert!(body.starts_with("EvalError EvalError "), "{body}");
}
