//! V8, set up once per process: flags, the single-threaded platform, and the startup snapshot
//! every isolate is made from.
//!
//! isobar uses V8's single-threaded platform: V8 starts no worker threads of its own, so every
//! cycle V8 spends (compilation, garbage collection) is spent on the core thread that owns the
//! isolate, where the scheduler sees it and bills it to the tenant. The flags are fixed before the
//! first isolate exists; V8 reads them only once.
//!
//! The snapshot holds a context in which isobar's whole JavaScript API has already been
//! evaluated, so a new isolate starts with `Request`, `Response`, `URL`... in place instead of
//! running ~1,500 lines of JS: that is most of what makes a new tenant cheap.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use crate::api;
use crate::bridge::{class, hooks};

static PLATFORM: OnceLock<v8::SharedRef<v8::Platform>> = OnceLock::new();
static EXTRA_FLAGS: OnceLock<String> = OnceLock::new();
static SNAPSHOT: OnceLock<Result<&'static [u8], String>> = OnceLock::new();
/// The snapshot copied out of its file's mapping by [`detach_snapshot`], used from then on.
static SNAPSHOT_COPY: OnceLock<&'static [u8]> = OnceLock::new();
static SNAPSHOT_KEY: OnceLock<u64> = OnceLock::new();
static SNAPSHOT_BUILT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static EXTERNAL_REFERENCES: OnceLock<ExternalReferences> = OnceLock::new();

/// The op table as V8 external references (plain function addresses).
struct ExternalReferences(&'static [v8::ExternalReference]);

// SAFETY: the slice holds only addresses of `extern "C"` functions, immutable for the whole
// process; sharing them between threads shares nothing mutable.
unsafe impl Sync for ExternalReferences {}
// SAFETY: as above.
unsafe impl Send for ExternalReferences {}

/// Flags every isolate of the process runs with.
///
/// - `--single-threaded`: no concurrent marking, sweeping or compilation threads.
/// - `--enable-sharedarraybuffer-per-context`: the SharedArrayBuffer constructor then exists only
///   where the embedder enables it, and isobar never does: no shared memory, and no
///   high-resolution timer built from a counting thread.
/// - `--no-memory-pool-share-memory-on-teardown`: a dropped isolate's heap pages go back to the
///   operating system at once. By default V8 moves them to a process-wide pool that is released
///   by a delayed platform task, which the single-threaded platform would only run while some
///   other isolate is pumped: evicted tenants' memory stayed resident (~0.4 MB each).
/// - `--disallow-code-generation-from-strings`: `eval()` and `new Function()` throw an
///   EvalError, as on Workers: a tenant's code is what was deployed, nothing it assembles later.
const FLAGS: &str = "--single-threaded --enable-sharedarraybuffer-per-context \
     --no-memory-pool-share-memory-on-teardown --disallow-code-generation-from-strings";

/// Index of the `internals` object among the snapshot context's data.
pub(crate) const INTERNALS_DATA_INDEX: usize = 0;

/// Adds V8 flags (e.g. `--trace-gc`) for diagnosis; must be called before the first isolate
/// and before [`snapshot_key`]. Returns false if it was too late (the flags would be ignored).
pub fn set_extra_flags(flags: &str) -> bool {
    PLATFORM.get().is_none() && SNAPSHOT_KEY.get().is_none() && EXTRA_FLAGS.set(flags.to_string()).is_ok()
}

/// Initialises V8 for this process and builds the startup snapshot (unless
/// [`use_snapshot_bytes`] gave one). Cheap and idempotent after the
/// first call; call it on the main thread before starting cores so the cost is paid once.
pub fn init() -> Result<(), String> {
    init_v8();
    snapshot().map(|_| ())
}

/// Initialises V8 alone: flags, entropy, the single-threaded platform (no snapshot yet).
/// Idempotent; [`init`] calls it.
pub fn init_v8() {
    PLATFORM.get_or_init(|| {
        // V8 seeds each new isolate's random numbers (Math.random, hash seeds) from /dev/urandom
        // unless the embedder gives it a source; once the process is sealed no core, and not
        // the admin thread, may open a file, so it gets getrandom(2).
        v8::V8::set_entropy_source(|buffer: &mut [u8]| kernel_shim::random::fill(buffer).is_ok());
        v8::V8::set_flags_from_string(FLAGS);
        if let Some(extra) = EXTRA_FLAGS.get() {
            v8::V8::set_flags_from_string(extra);
        }
        let platform = v8::new_single_threaded_default_platform(false).make_shared();
        v8::V8::initialize_platform(platform.clone());
        v8::V8::initialize();
        platform
    });
}

/// Whether this process built its snapshot (rather than loading one): then it is worth
/// keeping ([`snapshot_file`]) for the next start.
pub fn snapshot_was_built() -> bool {
    SNAPSHOT_BUILT.load(std::sync::atomic::Ordering::Relaxed)
}

/// The ops as V8 external references: the snapshot records functions by these addresses.
pub(crate) fn external_references() -> &'static [v8::ExternalReference] {
    EXTERNAL_REFERENCES
        .get_or_init(|| {
            let mut functions: Vec<v8::FunctionCallback> = api::ops().into_iter().map(|op| op.callback).collect();
            for class in api::classes() {
                functions.extend(class.callbacks());
            }
            let mut refs: Vec<v8::ExternalReference> =
                functions.into_iter().map(|function| v8::ExternalReference { function }).collect();
            // isobar's JS sources: the snapshot keeps them external (api::SOURCES).
            refs.extend(api::SOURCES.iter().map(|source| v8::ExternalReference {
                pointer: source as *const v8::OneByteConst as *mut std::ffi::c_void,
            }));
            // Lives for the whole process, as V8 requires of external references.
            ExternalReferences(Box::leak(refs.into_boxed_slice()))
        })
        .0
}

/// The startup snapshot blob (built on first use, unless [`use_snapshot_bytes`] gave one).
pub(crate) fn snapshot() -> Result<&'static [u8], String> {
    if let Some(copy) = SNAPSHOT_COPY.get() {
        return Ok(copy);
    }
    SNAPSHOT
        .get_or_init(|| {
            SNAPSHOT_BUILT.store(true, std::sync::atomic::Ordering::Relaxed);
            build_snapshot().map(|blob| &*Box::leak(blob.into_boxed_slice()))
        })
        .clone()
}

/// Copies a snapshot that [`use_snapshot_bytes`] took from a file's mapping into memory of its
/// own, for the isolates made from now on; once is enough, later calls do nothing. The mapping
/// made the start fast; the copy makes the process independent of the file, which, if cut short
/// in place while mapped, would take the mapped pages with it (see
/// `kernel_shim::file::map_private`). Call it once the start is over, off the first request's
/// path. Isolates made before it read the mapping only while they were made (V8 reads the blob
/// to make an isolate and its context, and isobar makes one context per isolate, at once), and
/// the mapping is never unmapped. Returns whether it copied the snapshot now.
pub fn detach_snapshot() -> bool {
    // A snapshot this process built is its own memory; only one `use_snapshot_bytes` took is
    // mapped.
    if SNAPSHOT_COPY.get().is_some() || snapshot_was_built() {
        return false;
    }
    match SNAPSHOT.get() {
        Some(Ok(mapped)) => SNAPSHOT_COPY.set(Box::leak(mapped.to_vec().into_boxed_slice())).is_ok(),
        _ => false,
    }
}

/// First bytes of a snapshot file written by [`snapshot_file`].
const SNAPSHOT_MAGIC: &[u8; 16] = b"isobar-snapshot\n";
/// Magic, key, blob length, blob checksum.
const SNAPSHOT_HEADER: usize = 16 + 8 + 8 + 8;

/// What a snapshot depends on: the binary that made it (its GNU build ID, which covers V8 and
/// every line of isobar linked into it), V8's version, the flags it runs with, isobar's
/// JavaScript API and its op table (V8 records ops by their index among the external
/// references). A snapshot file made with any of these different is not used: V8 would abort on
/// some mismatches and silently misbehave on others. The build ID is belt and braces for a
/// rebuilt binary whose Rust side changed in a way the rest does not show (how a template is
/// made, say); the rest still tells snapshots apart where no build ID can be read.
pub fn snapshot_key() -> u64 {
    *SNAPSHOT_KEY.get_or_init(compute_snapshot_key)
}

fn compute_snapshot_key() -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    let build_id = kernel_shim::executable::build_id();
    build_id.hash(&mut hasher);
    (env!("CARGO_PKG_VERSION"), v8::V8::get_version(), FLAGS, EXTRA_FLAGS.get()).hash(&mut hasher);
    // The JS API's half a megabyte of source is in the binary, so its build ID covers it; without
    // one the sources go in by length and CRC-32. (CRC-32 was ~0.1 ms of every start, SipHash over
    // them ~0.3 ms; the key only has to tell versions apart, not resist an adversary: who may
    // write the cache is checked apart.)
    for (name, source) in std::iter::once(&api::PRIMORDIALS).chain(api::BOOTSTRAP) {
        name.hash(&mut hasher);
        source.len().hash(&mut hasher);
        if build_id.is_none() {
            crc32fast::hash(source.as_bytes()).hash(&mut hasher);
        }
    }
    for op in api::ops() {
        op.name.hash(&mut hasher);
    }
    for class in api::classes() {
        class.name.hash(&mut hasher);
        class.fields.hash(&mut hasher);
        for (name, _, _) in &class.methods {
            name.hash(&mut hasher);
        }
        for (name, _, _) in &class.accessors {
            name.hash(&mut hasher);
        }
        for (name, _, _) in &class.statics {
            name.hash(&mut hasher);
        }
    }
    for hook in hooks::Hook::ALL {
        hook.name().hash(&mut hasher);
    }
    hasher.finish()
}

/// CRC-32 of the blob: a damaged file (cut short by a crash, a flipped bit) is told from a
/// sound one before V8 sees it. It guards against accidents only; who may have written a
/// cached file is checked apart (`kernel_shim::file::read_private`). CRC-32 with the CPU's
/// carry-less multiply reads a megabyte in well under 0.1 ms, where SipHash took ~0.5 ms of a
/// start-up budget of 5 ms.
fn checksum(bytes: &[u8]) -> u64 {
    u64::from(crc32fast::hash(bytes))
}

/// The startup snapshot as a file's contents, for [`use_snapshot_bytes`] in a later process of the same binary with the same flags: building
/// the snapshot is most of V8's start-up (~50 ms natively, seconds in a guest under TCG), so
/// `isobar` keeps it in a cache directory and the guest image ships one made at image build time.
pub fn snapshot_file() -> Result<Vec<u8>, String> {
    init()?;
    let blob = snapshot()?;
    let mut file = Vec::with_capacity(SNAPSHOT_HEADER + blob.len());
    file.extend_from_slice(SNAPSHOT_MAGIC);
    file.extend_from_slice(&snapshot_key().to_le_bytes());
    file.extend_from_slice(&(blob.len() as u64).to_le_bytes());
    file.extend_from_slice(&checksum(blob).to_le_bytes());
    file.extend_from_slice(blob);
    Ok(file)
}

/// Uses `file` (a file written by [`snapshot_file`], mapped) as the snapshot instead of building
/// one, once its key, length and checksum are checked. Call it before [`init`], and
/// [`detach_snapshot`] once the start is over. Returns why it cannot be used, in which case
/// [`init`] builds the snapshot as usual (and the mapping is dropped).
pub fn use_snapshot_bytes(file: kernel_shim::file::Mapped) -> Result<(), String> {
    if SNAPSHOT.get().is_some() {
        return Err("the snapshot was already made in this process".into());
    }
    let blob = parse_snapshot_file(&file)?.len();
    // The blob is the file's tail, read where it is mapped rather than copied.
    let file = file.leak();
    let blob = &file[file.len() - blob..];
    match SNAPSHOT.set(Ok(blob)) {
        Ok(()) => Ok(()),
        Err(_) => Err("the snapshot was already made in this process".into()),
    }
}

fn parse_snapshot_file(file: &[u8]) -> Result<&[u8], String> {
    let field = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().expect("8 bytes"));
    let magic = file.len().min(SNAPSHOT_MAGIC.len());
    if file[..magic] != SNAPSHOT_MAGIC[..magic] {
        return Err("not an isobar snapshot file".into());
    }
    if file.len() < SNAPSHOT_HEADER {
        return Err(format!("cut short ({} bytes)", file.len()));
    }
    if field(16) != snapshot_key() {
        return Err("made by another isobar build or with other V8 flags".into());
    }
    let blob = &file[SNAPSHOT_HEADER..];
    if field(24) != blob.len() as u64 || field(32) != checksum(blob) {
        return Err("damaged (length or checksum differs)".into());
    }
    Ok(blob)
}

fn build_snapshot() -> Result<Vec<u8>, String> {
    let mut creator = v8::Isolate::snapshot_creator(Some(Cow::Borrowed(external_references())), None);
    let built = fill_snapshot(&mut creator);
    if built.is_err() {
        // The creator must make its blob before it is dropped, even when filling it failed, and
        // V8 needs a default context for that.
        v8::scope!(let hs, &mut creator);
        let context = v8::Context::new(hs, Default::default());
        hs.set_default_context(context);
    }
    let blob = creator.create_blob(v8::FunctionCodeHandling::Keep);
    built?;
    let blob = blob.ok_or("V8 could not create the snapshot")?;
    Ok(blob.to_vec())
}

/// Evaluates isobar's API into the snapshot creator's default context.
fn fill_snapshot(creator: &mut v8::OwnedIsolate) -> Result<(), String> {
    {
        v8::scope!(let hs, creator);
        let context = v8::Context::new(hs, Default::default());
        let scope = &mut v8::ContextScope::new(hs, context);
        let global = context.global(scope);

        // Native classes: templates recorded as isolate data at their ClassId, constructors on
        // the global object.
        for (index, decl) in api::classes().iter().enumerate() {
            if decl.id as usize != index {
                return Err(format!("native class {} is out of ClassId order", decl.name));
            }
            let template = decl.template(scope)?;
            let constructor = template.get_function(scope).ok_or("cannot make a class constructor")?;
            let key = v8::String::new(scope, decl.name).ok_or("class name")?;
            global.define_own_property(scope, key.into(), constructor.into(), v8::PropertyAttribute::DONT_ENUM);
            let data_index = scope.add_isolate_data(template);
            if data_index != index {
                return Err(format!("class {} recorded at isolate data {data_index}, not {index}", decl.name));
            }
        }

        let ops_object = v8::Object::new(scope);
        for op in api::ops() {
            let function = v8::Function::new_raw(scope, op.callback).ok_or("cannot create an op function")?;
            let key = v8::String::new(scope, op.name).ok_or("op name")?;
            ops_object.set(scope, key.into(), function.into());
        }
        let internals = v8::Object::new(scope);
        let hooks_object = v8::Object::new(scope);
        let key = v8::String::new(scope, "hooks").ok_or("hooks")?;
        internals.set(scope, key.into(), hooks_object.into());
        let consts = v8::Object::new(scope);
        for (group, values) in api::consts() {
            let table = v8::Object::new(scope);
            for (name, value) in values {
                let k = v8::String::new(scope, name).ok_or("const name")?;
                let v = v8::Integer::new_from_unsigned(scope, *value);
                table.set(scope, k.into(), v.into());
            }
            let k = v8::String::new(scope, group).ok_or("const group")?;
            consts.set(scope, k.into(), table.into());
        }
        let key = v8::String::new(scope, "consts").ok_or("consts")?;
        internals.set(scope, key.into(), consts.into());

        let primordials = run_bootstrap_file(scope, api::PRIMORDIALS.0, &api::SOURCES[0], &[])?;
        for (file, source) in api::BOOTSTRAP.iter().zip(&api::SOURCES[1..]) {
            let args = [ops_object.into(), internals.into(), global.into(), primordials];
            run_bootstrap_file(scope, file.0, source, &args)?;
        }
        let hook_functions = hooks::collect(scope, internals)?;
        let index = scope.add_context_data(context, internals);
        assert_eq!(index, INTERNALS_DATA_INDEX, "internals is the first context data");
        for (i, function) in hook_functions.into_iter().enumerate() {
            let index = scope.add_context_data(context, function);
            assert_eq!(index, hooks::FIRST_CONTEXT_DATA_INDEX + i, "hooks follow internals in the context data");
        }
        scope.set_default_context(context);
    }
    Ok(())
}

/// Evaluates one bootstrap file (a function expression) and calls it with `args`.
fn run_bootstrap_file<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    file: &str,
    source: &'static v8::OneByteConst,
    args: &[v8::Local<'s, v8::Value>],
) -> Result<v8::Local<'s, v8::Value>, String> {
    v8::tc_scope!(let tc, scope);
    let name = v8::String::new(tc, file).ok_or("file name")?;
    let origin = v8::ScriptOrigin::new(tc, name.into(), 0, 0, false, 0, None, false, false, false, None);
    let code = v8::String::new_from_onebyte_const(tc, source).ok_or("source too large")?;
    let init = v8::Script::compile(tc, code, Some(&origin))
        .and_then(|script| script.run(tc))
        .and_then(|value| v8::Local::<v8::Function>::try_from(value).ok())
        .ok_or_else(|| format!("{file}: {}", describe_exception(tc)))?;
    let undefined = v8::undefined(tc).into();
    match init.call(tc, undefined, args) {
        Some(value) => Ok(value),
        None => Err(format!("{file}: {}", describe_exception(tc))),
    }
}

/// The class templates and hooks of a new isolate, taken back from the snapshot (once).
pub(crate) fn take_snapshot_data(scope: &mut v8::PinScope) -> Result<(class::Classes, hooks::Hooks), String> {
    let mut templates = Vec::new();
    for (index, decl) in api::classes().iter().enumerate() {
        let template = scope
            .get_isolate_data_from_snapshot_once::<v8::FunctionTemplate>(index)
            .map_err(|e| format!("the snapshot has no template for {}: {e:?}", decl.name))?;
        templates.push(v8::Global::new(scope, template));
    }
    let mut functions = Vec::new();
    for (i, hook) in hooks::Hook::ALL.iter().enumerate() {
        let function = scope
            .get_context_data_from_snapshot_once::<v8::Function>(hooks::FIRST_CONTEXT_DATA_INDEX + i)
            .map_err(|e| format!("the snapshot has no hook {}: {e:?}", hook.name()))?;
        functions.push(v8::Global::new(scope, function));
    }
    Ok((class::Classes::new(scope, templates), hooks::Hooks(functions)))
}

fn describe_exception(tc: &mut v8::PinnedRef<'_, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>) -> String {
    match tc.exception() {
        Some(e) => e.to_rust_string_lossy(tc),
        None => "unknown error".into(),
    }
}

/// A new isolate made from the snapshot, with at most `heap_max_bytes` of V8 heap and the given
/// ArrayBuffer allocator. It is returned entered, as rusty_v8 makes it.
pub(crate) fn new_isolate(
    heap_max_bytes: usize,
    allocator: v8::UniqueRef<v8::Allocator>,
) -> Result<v8::OwnedIsolate, String> {
    init()?;
    let blob = snapshot()?;
    let params = v8::CreateParams::default()
        .snapshot_blob(v8::StartupData::from(blob))
        .external_references(Cow::Borrowed(external_references()))
        .array_buffer_allocator(allocator)
        .heap_limits(0, heap_max_bytes);
    Ok(v8::Isolate::new(params))
}

/// Runs the platform's pending foreground tasks for `isolate` (finalisers, GC follow-ups, Wasm
/// compilation steps). With the single-threaded platform nothing else would run them.
pub fn pump(isolate: &mut v8::Isolate) {
    if let Some(platform) = PLATFORM.get() {
        while v8::Platform::pump_message_loop(platform, isolate, false) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_are_checked_before_use() {
        let file = snapshot_file().unwrap();
        assert_eq!(parse_snapshot_file(&file).unwrap(), snapshot().unwrap());

        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(parse_snapshot_file(&flipped).unwrap_err().contains("damaged"));

        let mut other_build = file.clone();
        other_build[16] ^= 1;
        assert!(parse_snapshot_file(&other_build).unwrap_err().contains("another isobar build"));

        assert!(parse_snapshot_file(&file[..SNAPSHOT_HEADER - 1]).unwrap_err().contains("cut short"));
        assert!(parse_snapshot_file(&[]).unwrap_err().contains("cut short"));
        assert!(parse_snapshot_file(&file[..file.len() - 1]).unwrap_err().contains("damaged"));
        assert!(parse_snapshot_file(b"#!/bin/sh\necho not a snapshot at all, but long enough").is_err());
    }
}
