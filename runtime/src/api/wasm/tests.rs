//! WebAssembly memory inside the isolate's budget: the rewrite of deployed modules, the
//! reservations of live instances and memories, their release on collection, and no run-time
//! compilation. Modules are built with wasm-encoder; workers run in real isolates.

use std::time::Duration;

use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, Module,
    TypeSection, ValType,
};

use super::cap_memories;
use crate::isolate::Isolate;
use crate::testing::{Req, body_of, request};
use crate::{ScriptFormat, Worker, WorkerSpec};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 64 << 10;

/// A module with one memory of `minimum`..`maximum` pages, exported as "memory", and
/// `grow(pages) -> old size or -1`.
fn grower(minimum: u64, maximum: Option<u64>) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType { minimum, maximum, memory64: false, shared: false, page_size_log2: None });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("grow", ExportKind::Func, 0);
    exports.export("memory", ExportKind::Memory, 0);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut grow = Function::new([]);
    grow.instruction(&Instruction::LocalGet(0));
    grow.instruction(&Instruction::MemoryGrow(0));
    grow.instruction(&Instruction::End);
    code.function(&grow);
    module.section(&code);
    module.finish()
}

/// The memories a module defines, as (minimum, maximum) pages.
fn memories_of(bytes: &[u8]) -> Vec<(u64, Option<u64>)> {
    let mut found = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::MemorySection(section) = payload.unwrap() {
            for memory in section {
                let memory = memory.unwrap();
                found.push((memory.initial, memory.maximum));
            }
        }
    }
    found
}

#[test]
fn every_defined_memory_gets_a_maximum_within_the_budget() {
    let (capped, charge) = cap_memories(&grower(1, None), 16 * MIB).unwrap();
    assert_eq!(memories_of(&capped), [(1, Some(256))]);
    assert_eq!(charge, 16 * MIB);

    let (capped, charge) = cap_memories(&grower(1, Some(10)), 16 * MIB).unwrap();
    assert_eq!(memories_of(&capped), [(1, Some(10))], "a smaller maximum stays");
    assert_eq!(charge, 10 * PAGE);

    let (capped, _) = cap_memories(&grower(2, Some(65536)), 16 * MIB).unwrap();
    assert_eq!(memories_of(&capped), [(2, Some(256))]);
    // Only the memory section changed: the rest parses to the same exports.
    let exports = |bytes: &[u8]| {
        let mut names = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            if let wasmparser::Payload::ExportSection(section) = payload.unwrap() {
                names.extend(section.into_iter().map(|e| e.unwrap().name.to_string()));
            }
        }
        names
    };
    assert_eq!(exports(&capped), ["grow", "memory"]);

    let error = cap_memories(&grower(300, None), 16 * MIB).unwrap_err();
    assert!(error.contains("starts at 19660800 bytes"), "{error}");
    assert!(cap_memories(b"not wasm", 16 * MIB).unwrap_err().contains("not a WebAssembly module"));
    let mut truncated = grower(1, None);
    truncated.truncate(truncated.len() - 3);
    assert!(cap_memories(&truncated, 16 * MIB).is_err(), "a section past the end is refused");
}

/// A worker in a fresh directory, with `grow.wasm` (no maximum) and its bytes as `grow.bin`,
/// in an isolate of `heap` bytes.
fn worker(label: &str, heap: usize, main: &str) -> (std::path::PathBuf, Worker) {
    let dir = std::env::temp_dir().join(format!("isobar-wasm-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let module = grower(1, None);
    std::fs::write(dir.join("grow.wasm"), &module).unwrap();
    std::fs::write(dir.join("grow.bin"), &module).unwrap();
    let path = dir.join("main.js");
    std::fs::write(&path, main).unwrap();
    let spec = WorkerSpec::from_source(label, &path, main.to_string(), ScriptFormat::Auto);
    let isolate = Isolate::new(label, heap).unwrap();
    let worker = Worker::load(isolate, &spec, Duration::MAX).unwrap_or_else(|e| panic!("{label}: {e}"));
    (dir, worker)
}

fn get(worker: &mut Worker, id: u64, path: &str) -> (u16, String) {
    body_of(request(worker, id, &Req::get(&format!("http://wasm.test{path}"))))
}

#[test]
fn memory_never_grows_past_the_isolate_budget() {
    let main = r#"
        import grow from "./grow.wasm";
        export default {
          fetch() {
            const instance = new WebAssembly.Instance(grow);
            const { exports } = instance;
            const parts = [
              instance instanceof WebAssembly.Instance,
              WebAssembly.Instance.prototype.constructor === WebAssembly.Instance,
              exports.grow(100),   // 1 -> 101 pages
              exports.grow(1000),  // past 256 pages (16 MiB): refused by V8 itself
              exports.memory.buffer.byteLength,
            ];
            try { exports.memory.grow(200); parts.push("grew"); } catch (e) { parts.push(e.name); }
            return new Response(parts.join(" "));
          },
        };"#;
    let (dir, mut worker) = worker("grow", 16 << 20, main);
    assert_eq!(get(&mut worker, 1, "/"), (200, format!("true true 1 -1 {} RangeError", 101 * PAGE)));
    assert_eq!(worker.condemned(), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn live_instances_and_memories_reserve_their_maximum_until_collected() {
    let main = r#"
        import grow from "./grow.wasm";
        let kept;
        export default {
          async fetch(request) {
            const path = new URL(request.url).pathname;
            const attempt = (make) => { try { return String(make()); } catch (e) { return e.name; } };
            if (path === "/keep") {
              kept = new WebAssembly.Instance(grow);
              // The whole 16 MiB budget is reserved by `kept` (its memory has no maximum).
              return new Response([
                attempt(() => new WebAssembly.Instance(grow)),
                attempt(() => new WebAssembly.Memory({ initial: 1 })),
                await WebAssembly.instantiate(grow).then(() => "instantiated", (e) => e.name),
              ].join(" "));
            }
            if (path === "/drop") { kept = undefined; return new Response("dropped"); }
            if (path === "/again") return new Response(attempt(() => new WebAssembly.Instance(grow).exports.grow(0)));
            if (path === "/memory") {
              const memory = new WebAssembly.Memory({ initial: 1, maximum: 100000 });
              let grew;
              try { memory.grow(300); grew = "grew"; } catch (e) { grew = e.name; }
              return new Response(`${memory.buffer.byteLength} ${grew} ` + attempt(() => new WebAssembly.Memory({ initial: 300 })));
            }
            return new Response("?", { status: 404 });
          },
        };"#;
    let (dir, mut worker) = worker("reserve", 16 << 20, main);
    assert_eq!(get(&mut worker, 1, "/keep"), (200, "RangeError RangeError RangeError".into()));
    assert_eq!(get(&mut worker, 2, "/drop"), (200, "dropped".into()));
    // Once collected, the reservation comes back (the registry's cleanup runs as a task).
    worker.isolate_mut().low_memory();
    worker.run_microtasks(Duration::MAX);
    assert_eq!(get(&mut worker, 3, "/again"), (200, "1".into()));
    worker.isolate_mut().low_memory();
    worker.run_microtasks(Duration::MAX);
    assert_eq!(get(&mut worker, 4, "/memory"), (200, format!("{PAGE} RangeError RangeError")));
    assert_eq!(worker.condemned(), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn wasm_is_not_compiled_at_run_time() {
    let main = r#"
        import bytes from "./grow.bin";
        export default {
          async fetch() {
            const parts = [];
            try { new WebAssembly.Module(bytes); parts.push("compiled"); } catch (e) { parts.push(e.name); }
            parts.push(await WebAssembly.compile(bytes).then(() => "compiled", (e) => e.name));
            parts.push(await WebAssembly.instantiate(bytes).then(() => "compiled", (e) => e.name));
            parts.push(WebAssembly.validate(bytes));
            try { new WebAssembly.Module(bytes); } catch (e) { parts.push(/disallowed/.test(e.message)); }
            return new Response(parts.join(" "));
          },
        };"#;
    let (dir, mut worker) = worker("codegen", 16 << 20, main);
    assert_eq!(get(&mut worker, 1, "/"), (200, "CompileError CompileError CompileError true true".into()));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_deployed_module_is_compiled_once_and_shared_by_every_isolate() {
    let main = r#"
        import grow from "./grow.wasm";
        export default {
          fetch() {
            const { exports } = new WebAssembly.Instance(grow);
            return new Response(`${exports.grow(3)} ${exports.grow(0)}`);
          },
        };"#;
    let (dir, _) = worker("shared", 16 << 20, main);
    let path = dir.join("main.js");
    let spec = WorkerSpec::from_source("shared", &path, main.to_string(), ScriptFormat::Auto);
    let (format, modules) = crate::worker::bundle(&spec).unwrap();
    let spec = WorkerSpec { modules: std::sync::Arc::new(modules), read_disk: false, format, ..spec };
    let wasm = match spec.modules.get(&dir.join("grow.wasm")) {
        Some(crate::worker::ModuleSource::Wasm(wasm)) => wasm.clone(),
        other => panic!("grow.wasm is bundled as Wasm: {other:?}"),
    };
    // Bundling only checks it: nothing is kept for the cores.
    let bundled = wasm.compilations();
    assert_eq!(bundled, 0, "bundling keeps no compilation");
    // Three isolates, one on another thread (as another core), and one with another budget.
    let load = |heap: usize| Worker::load(Isolate::new("shared", heap).unwrap(), &spec, Duration::MAX).unwrap();
    let mut first = load(16 << 20);
    let mut second = load(16 << 20);
    let spec_for_thread = spec.clone();
    let on_thread = std::thread::spawn(move || {
        let mut third =
            Worker::load(Isolate::new("shared", 16 << 20).unwrap(), &spec_for_thread, Duration::MAX).unwrap();
        get(&mut third, 1, "/")
    });
    assert_eq!(on_thread.join().unwrap(), (200, "1 4".into()));
    assert_eq!(get(&mut first, 1, "/"), (200, "1 4".into()));
    assert_eq!(get(&mut second, 1, "/"), (200, "1 4".into()));
    assert_eq!(wasm.compilations(), bundled + 1, "one compilation for every isolate with a 16 MiB budget");
    let mut bigger = load(32 << 20);
    assert_eq!(get(&mut bigger, 1, "/"), (200, "1 4".into()));
    assert_eq!(wasm.compilations(), bundled + 2, "another budget, other capped bytes, one more compilation");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_module_larger_than_the_default_limit_loads_where_the_tenant_limit_allows_it() {
    // 3,200 pages (200 MiB) to start with: more than the default 128 MiB, less than 512 MiB.
    let dir = std::env::temp_dir().join(format!("isobar-wasm-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big.wasm"), grower(3200, None)).unwrap();
    let main = r#"import big from "./big.wasm";
        export default { fetch() { return new Response(String(big instanceof WebAssembly.Module)); } };"#;
    let path = dir.join("main.js");
    std::fs::write(&path, main).unwrap();
    let spec = WorkerSpec::from_source("big", &path, main.to_string(), ScriptFormat::Auto);
    // Bundling checks the module without any tenant's limit.
    let (format, modules) = crate::worker::bundle(&spec).unwrap();
    let spec = WorkerSpec { modules: std::sync::Arc::new(modules), read_disk: false, format, ..spec };
    Worker::validate(&spec, 512 << 20, Duration::from_secs(5)).unwrap();
    let error = Worker::validate(&spec, 128 << 20, Duration::from_secs(5)).unwrap_err().to_string();
    assert!(error.contains("starts at 209715200 bytes, more than the 134217728 bytes"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_maximum_never_passes_what_the_memory_can_address() {
    // A budget past 4 GiB (or none, when bundling) still gives a 32-bit memory at most 65,536
    // pages, which V8 accepts.
    let (capped, charge) = cap_memories(&grower(1, None), u64::MAX).unwrap();
    assert_eq!(memories_of(&capped), [(1, Some(65536))]);
    assert_eq!(charge, 1 << 32);
}

#[test]
fn a_size_whose_value_of_changes_cannot_pass_the_budget() {
    // The first conversion answers a huge maximum (so the charge is the budget), a later one
    // would answer 1 page (so V8 would be handed the object and read it again as huge).
    let main = r#"
        export default {
          fetch() {
            let calls = 0;
            const shifty = { valueOf() { calls++; return calls === 1 ? 100000 : calls === 2 ? 1 : 100000; } };
            const memory = new WebAssembly.Memory({ initial: 1, maximum: shifty });
            let grew;
            try { memory.grow(1000); grew = "grew"; } catch (e) { grew = e.name; }
            return new Response(`${calls} ${grew} ${memory.buffer.byteLength}`);
          },
        };"#;
    let (dir, mut worker) = worker("shifty", 16 << 20, main);
    assert_eq!(get(&mut worker, 1, "/"), (200, format!("1 RangeError {PAGE}")));
    let _ = std::fs::remove_dir_all(dir);
}
