//! V8, set up once per process.
//!
//! isobar uses V8's single-threaded platform: V8 starts no worker threads of its own, so every
//! cycle V8 spends (compilation, garbage collection) is spent on the core thread that owns the
//! isolate, where it is visible to the scheduler and billed to the tenant. The flags are fixed
//! before the first isolate exists; V8 reads them only once.

use std::sync::OnceLock;

static PLATFORM: OnceLock<v8::SharedRef<v8::Platform>> = OnceLock::new();

/// Flags every isolate of the process runs with.
///
/// - `--single-threaded`: no concurrent marking, sweeping or compilation threads.
/// - `--enable-sharedarraybuffer-per-context`: the SharedArrayBuffer constructor then exists only
///   where the embedder enables it, and isobar never does: no shared memory, and no
///   high-resolution timer built from a counting thread.
/// - `--disallow-code-generation-from-strings` is NOT set here: Workers forbid eval at request
///   time only; see the isolate's code-generation callback.
const FLAGS: &str = "--single-threaded --enable-sharedarraybuffer-per-context";

static EXTRA_FLAGS: OnceLock<String> = OnceLock::new();

/// Adds V8 flags (e.g. `--trace-gc`) for diagnosis; must be called before the first isolate.
/// Returns false if V8 was already initialised (the flags would be ignored).
pub fn set_extra_flags(flags: &str) -> bool {
    PLATFORM.get().is_none() && EXTRA_FLAGS.set(flags.to_string()).is_ok()
}

/// Initialises V8 for this process. Cheap and idempotent after the first call.
pub fn init() {
    PLATFORM.get_or_init(|| {
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

/// Runs the platform's pending foreground tasks for `isolate` (finalisers, GC follow-ups, Wasm
/// compilation steps). With the single-threaded platform nothing else would run them.
pub fn pump(isolate: &mut v8::Isolate) {
    if let Some(platform) = PLATFORM.get() {
        while v8::Platform::pump_message_loop(platform, isolate, false) {}
    }
}
