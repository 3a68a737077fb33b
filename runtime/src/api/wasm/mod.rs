//! WebAssembly inside the tenant's memory limit, and no Wasm code generated at run time.
//!
//! V8 keeps a Wasm memory outside its heap, where neither the heap limit nor isobar's counting
//! ArrayBuffer allocator sees it: left alone, a tenant with a 16 MiB limit could hold gigabytes
//! (issue 12, item 5). Three rules keep every isolate's Wasm memory within its budget (its heap
//! limit again, as for ArrayBuffers):
//!
//! - **Every memory has a maximum within the budget.** When isobar compiles a deployed module it
//!   rewrites the module's memory section (nothing else) so that each memory the module defines
//!   has a maximum no larger than the budget; V8 itself then refuses to grow past it
//!   (`memory.grow` returns -1, `Memory.prototype.grow` throws a RangeError). A memory whose
//!   initial size is already larger is a load error. `new WebAssembly.Memory()` gets the same
//!   clamp (wasm.js).
//! - **Live memories reserve their maximum.** Instantiating a module reserves the sum of the
//!   maxima of the memories it defines, and `new WebAssembly.Memory()` its own maximum; the
//!   reservations of live objects never exceed the budget (past it, a RangeError), and a
//!   reservation is returned when its object is collected (a `FinalizationRegistry`).
//! - **Compiled once per deploy.** A deployed module's machine code is shared by every isolate
//!   that loads it, on every core (V8's `CompiledWasmModule`): the first load with a given budget
//!   (the deploy's own check, usually) compiles, later ones only wrap the shared code in a new
//!   module object. (Bundling compiles it once more, only to check it, and keeps nothing.)
//! - **No run-time compilation.** `WebAssembly.compile`, `new WebAssembly.Module` and
//!   `WebAssembly.instantiate` of bytes are refused, as Cloudflare Workers refuse them: every
//!   module is one of the worker's deployed `.wasm` files, compiled (and capped) by isobar.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use wasm_encoder::Encode;
use wasmparser::{BinaryReader, MemorySectionReader};

use crate::bridge::{self, JsError, OpDecl};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:wasm", include_str!("wasm.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("wasmBudgetBytes", budget_bytes),
        op_decl!("wasmModuleCharge", module_charge),
        op_decl!("wasmReserve", reserve),
        op_decl!("wasmRelease", release),
    ]
}

/// An isolate's Wasm memory budget and what live instances and memories have reserved of it.
#[derive(Debug, Default)]
pub struct WasmBudget {
    pub max_bytes: u64,
    pub reserved_bytes: u64,
}

/// A deployed `.wasm` module: its bytes, and its code once compiled, shared by every isolate
/// that loads it (per memory budget, since the capped bytes differ by budget).
#[derive(Clone)]
pub struct WasmSource {
    bytes: Arc<[u8]>,
    compiled: Arc<Mutex<Vec<Compiled>>>,
}

/// One compilation of a module: for which budget, what an instance reserves, the shared code.
struct Compiled {
    budget_bytes: u64,
    charge: u64,
    module: v8::CompiledWasmModule,
}

impl WasmSource {
    pub fn new(bytes: Vec<u8>) -> WasmSource {
        WasmSource { bytes: bytes.into(), compiled: Arc::default() }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many times it was compiled (once per memory budget it was loaded with).
    pub fn compilations(&self) -> usize {
        self.compiled.lock().map_or(0, |compiled| compiled.len())
    }
}

impl PartialEq for WasmSource {
    fn eq(&self, other: &WasmSource) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for WasmSource {}

impl std::fmt::Debug for WasmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WasmSource({} bytes)", self.bytes.len())
    }
}

/// The private property on a compiled module that says how many bytes an instance of it reserves.
const CHARGE_KEY: &str = "isobar.wasmCharge";

/// The id of the memory section.
const MEMORY_SECTION: u8 = 5;

thread_local! {
    /// Set while isobar compiles a deployed module, the only Wasm compilation allowed.
    static COMPILING_DEPLOYED: Cell<bool> = const { Cell::new(false) };
}

/// V8's question before it compiles Wasm: only isobar's own compilation of deployed modules.
pub extern "C" fn allow_code_generation(_context: v8::Local<v8::Context>, _source: v8::Local<v8::String>) -> bool {
    COMPILING_DEPLOYED.with(Cell::get)
}

/// The module object for a deployed module in this isolate, its memories capped to
/// `budget_bytes`, marked with what each instance of it reserves. Compiled on the first call
/// for a budget; later calls (other isolates, other cores) share that code.
pub fn compile_deployed<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    source: &WasmSource,
    budget_bytes: u64,
) -> Result<v8::Local<'s, v8::WasmModuleObject>, String> {
    // A poisoned lock only means another core panicked mid-compile: the list is still whole.
    let mut compiled = source.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (module, charge) = match compiled.iter().find(|c| c.budget_bytes == budget_bytes) {
        Some(shared) => {
            let module = v8::WasmModuleObject::from_compiled_module(scope, &shared.module)
                .ok_or("the shared WebAssembly module could not be loaded")?;
            (module, shared.charge)
        }
        None => {
            let (capped, charge) = cap_memories(&source.bytes, budget_bytes)?;
            let module = compile(scope, &capped)?;
            compiled.push(Compiled { budget_bytes, charge, module: module.get_compiled_module() });
            (module, charge)
        }
    };
    drop(compiled);
    let key = charge_key(scope).ok_or("out of memory")?;
    let charge = v8::Number::new(scope, charge as f64);
    module.set_private(scope, key, charge.into());
    Ok(module)
}

/// Checks that a deployed module compiles (at bundling, before any tenant's limit applies):
/// its memories capped only to what they can address, compiled, and not kept.
pub fn check(scope: &mut v8::PinScope, source: &WasmSource) -> Result<(), String> {
    let (capped, _) = cap_memories(&source.bytes, u64::MAX)?;
    compile(scope, &capped).map(drop)
}

/// The private key under which a compiled module carries what an instance of it reserves.
fn charge_key<'s>(scope: &mut v8::PinScope<'s, '_>) -> Option<v8::Local<'s, v8::Private>> {
    let name = v8::String::new(scope, CHARGE_KEY)?;
    Some(v8::Private::for_api(scope, Some(name)))
}

/// Compiles `bytes`, the one Wasm compilation isobar allows.
fn compile<'s>(scope: &mut v8::PinScope<'s, '_>, bytes: &[u8]) -> Result<v8::Local<'s, v8::WasmModuleObject>, String> {
    COMPILING_DEPLOYED.with(|allowed| allowed.set(true));
    let compiled = {
        v8::tc_scope!(let tc, scope);
        match v8::WasmModuleObject::compile(tc, bytes) {
            Some(module) => Ok(v8::Global::new(tc, module)),
            None if tc.has_caught() => Err(crate::worker::exception_text(tc)),
            None => Err("not a valid WebAssembly module".to_string()),
        }
    };
    COMPILING_DEPLOYED.with(|allowed| allowed.set(false));
    compiled.map(|module| v8::Local::new(scope, module))
}

/// `bytes` with every memory the module defines given a maximum of at most `budget_bytes`, and
/// the bytes an instance reserves (the sum of those maxima). Only the memory section changes;
/// every other byte is copied as it is. Imported memories are reserved where they are made.
pub fn cap_memories(bytes: &[u8], budget_bytes: u64) -> Result<(Vec<u8>, u64), String> {
    const HEADER: usize = 8;
    if bytes.len() < HEADER || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly module (no `\\0asm` header)".into());
    }
    let malformed = |e: wasmparser::BinaryReaderError| format!("not a valid WebAssembly module: {e}");
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&bytes[..HEADER]);
    let mut charge: u64 = 0;
    let mut at = HEADER;
    while at < bytes.len() {
        let id = bytes[at];
        let mut reader = BinaryReader::new(&bytes[at + 1..], at + 1);
        let size = reader.read_var_u32().map_err(malformed)? as usize;
        let start = at + 1 + reader.current_position();
        let end =
            start.checked_add(size).filter(|end| *end <= bytes.len()).ok_or("a section runs past the module's end")?;
        if id != MEMORY_SECTION {
            out.extend_from_slice(&bytes[at..end]);
            at = end;
            continue;
        }
        let section = MemorySectionReader::new(BinaryReader::new(&bytes[start..end], start)).map_err(malformed)?;
        let mut memories = wasm_encoder::MemorySection::new();
        for memory in section {
            let memory = memory.map_err(malformed)?;
            let page_log2 = memory.page_size_log2.unwrap_or(16);
            if page_log2 > 16 {
                return Err(format!("a memory's page size of 2^{page_log2} bytes is not a WebAssembly page size"));
            }
            // Never past what the memory's type can address (a 32-bit memory: 4 GiB).
            let addressable: u64 = if memory.memory64 { 1 << 48 } else { 1 << 32 };
            let budget_pages = budget_bytes.min(addressable) >> page_log2;
            if memory.initial > budget_pages {
                return Err(format!(
                    "a memory of the module starts at {} bytes, more than the {} bytes of WebAssembly memory its \
                     isolate may hold (the tenant's memory limit)",
                    memory.initial.saturating_mul(1 << page_log2),
                    budget_pages << page_log2
                ));
            }
            let maximum = memory.maximum.map_or(budget_pages, |maximum| maximum.min(budget_pages));
            charge = charge.saturating_add(maximum << page_log2);
            memories.memory(wasm_encoder::MemoryType {
                minimum: memory.initial,
                maximum: Some(maximum),
                memory64: memory.memory64,
                shared: memory.shared,
                page_size_log2: memory.page_size_log2,
            });
        }
        out.push(MEMORY_SECTION);
        memories.encode(&mut out);
        at = end;
    }
    Ok((out, charge))
}

/// Puts the wrappers of wasm.js on the context's `WebAssembly` (V8 makes it per context, after
/// the snapshot), before a worker's code runs.
pub fn install(scope: &mut v8::PinScope) -> Result<(), crate::LoadError> {
    let failed = |message: &str| crate::LoadError::Bootstrap { file: "isobar:wasm".into(), message: message.into() };
    let install =
        bridge::hooks::get(scope, bridge::hooks::Hook::InstallWasm).ok_or_else(|| failed("installWasm is missing"))?;
    let undefined = v8::undefined(scope).into();
    install.call(scope, undefined, &[]).map(drop).ok_or_else(|| failed("installWasm threw"))
}

op!(fn budget_bytes(scope, args) {
    let _ = &args;
    Ok(bridge::state(scope).borrow().wasm.max_bytes as f64)
});

// What an instance of `module` reserves; the whole budget for a module isobar did not compile
// (there should be none: run-time compilation is refused).
op!(fn module_charge(scope, args) {
    let Ok(module) = v8::Local::<v8::WasmModuleObject>::try_from(args.get(0)) else {
        return Ok(0.0);
    };
    let key = charge_key(scope).ok_or_else(|| JsError::range_error("out of memory"))?;
    let charge = module.get_private(scope, key).and_then(|v| v.number_value(scope));
    Ok(match charge {
        Some(charge) if charge.is_finite() && charge >= 0.0 => charge,
        _ => bridge::state(scope).borrow().wasm.max_bytes as f64,
    })
});

fn bytes_arg(scope: &mut v8::PinScope, value: v8::Local<v8::Value>) -> Result<u64, JsError> {
    match value.number_value(scope) {
        Some(n) if n.is_finite() && n >= 0.0 && n <= u64::MAX as f64 => Ok(n as u64),
        _ => Err(JsError::type_error("a byte count must be a finite number of at least 0")),
    }
}

op!(fn reserve(scope, args) {
    let bytes = bytes_arg(scope, args.get(0))?;
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    let budget = &mut state.wasm;
    let total = budget.reserved_bytes.saturating_add(bytes);
    if total > budget.max_bytes {
        return Err(JsError::range_error(format!(
            "WebAssembly memory of {bytes} bytes does not fit: {} of the isolate's {} bytes are reserved by live \
             instances and memories",
            budget.reserved_bytes, budget.max_bytes
        )));
    }
    budget.reserved_bytes = total;
    Ok(())
});

op!(fn release(scope, args) {
    let bytes = bytes_arg(scope, args.get(0))?;
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    state.wasm.reserved_bytes = state.wasm.reserved_bytes.saturating_sub(bytes);
    Ok(())
});

#[cfg(test)]
mod tests;
