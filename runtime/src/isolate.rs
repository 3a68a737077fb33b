//! One V8 isolate as isobar keeps it: made from the startup snapshot, its heap and ArrayBuffer
//! memory capped, its CPU time metered on every entry, and exited whenever it is idle.
//!
//! Many isolates live on one core thread. rusty_v8 enters an isolate when it is created and
//! expects isolates to be dropped in reverse creation order; isobar instead keeps every isolate
//! *exited* while it is idle and enters it only for the duration of one call ([`Entered`]), so
//! isolates can be used, and dropped, in any order (see docs/why-isolates-stay-exited.md).

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine;
use crate::state::IsolateState;
use crate::watchdog::{CoreWatch, EntryEnd};

/// Why an isolate may not run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condemned {
    /// The watchdog terminated a script that ran past its CPU-time budget.
    CpuLimit,
    /// The heap reached its limit; the isolate was terminated before V8 ran out of memory.
    HeapLimit,
    /// A native callback panicked (an isobar bug): the isolate was terminated and is discarded,
    /// so no state the panic left half-changed is ever used again.
    Panic,
}

/// The handles Rust keeps into an isolate: its context, and once a script is loaded, the
/// handler Rust calls for each request and the `env` it passes.
pub(crate) struct Handles {
    pub context: v8::Global<v8::Context>,
    /// A module worker's default export and its `fetch` method (`None`: a service worker).
    pub handler: Option<(v8::Global<v8::Object>, v8::Global<v8::Function>)>,
    pub env: Option<v8::Global<v8::Value>>,
}

/// Counts the ArrayBuffer memory of one isolate against its cap. V8's heap limit does not cover
/// ArrayBuffer contents (they live outside the heap), so without this a tenant could allocate
/// gigabytes of buffers.
struct BufferBudget {
    used_bytes: AtomicUsize,
    max_bytes: usize,
}

const BUFFER_ALIGN: usize = 16;

unsafe extern "C" fn buffer_allocate(budget: &BufferBudget, len: usize) -> *mut c_void {
    // SAFETY: same contract as buffer_allocate_uninitialized, plus zeroing.
    unsafe { buffer_alloc(budget, len, true) }
}

unsafe extern "C" fn buffer_allocate_uninitialized(budget: &BufferBudget, len: usize) -> *mut c_void {
    // SAFETY: V8 frees every pointer returned here through buffer_free with the same length.
    unsafe { buffer_alloc(budget, len, false) }
}

unsafe fn buffer_alloc(budget: &BufferBudget, len: usize, zeroed: bool) -> *mut c_void {
    let before = budget.used_bytes.fetch_add(len, Ordering::Relaxed);
    if before.saturating_add(len) > budget.max_bytes {
        budget.used_bytes.fetch_sub(len, Ordering::Relaxed);
        return std::ptr::null_mut(); // V8 throws RangeError: Array buffer allocation failed
    }
    if len == 0 {
        return BUFFER_ALIGN as *mut c_void; // dangling but aligned; never dereferenced
    }
    let Ok(layout) = std::alloc::Layout::from_size_align(len, BUFFER_ALIGN) else {
        budget.used_bytes.fetch_sub(len, Ordering::Relaxed);
        return std::ptr::null_mut();
    };
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { if zeroed { std::alloc::alloc_zeroed(layout) } else { std::alloc::alloc(layout) } };
    if ptr.is_null() {
        budget.used_bytes.fetch_sub(len, Ordering::Relaxed);
    }
    ptr.cast()
}

unsafe extern "C" fn buffer_free(budget: &BufferBudget, data: *mut c_void, len: usize) {
    budget.used_bytes.fetch_sub(len, Ordering::Relaxed);
    if len == 0 || data.is_null() {
        return;
    }
    // SAFETY: `data` came from buffer_alloc with this `len` and the same alignment.
    unsafe { std::alloc::dealloc(data.cast(), std::alloc::Layout::from_size_align_unchecked(len, BUFFER_ALIGN)) };
}

unsafe extern "C" fn buffer_budget_drop(budget: *const BufferBudget) {
    // SAFETY: the pointer is the Arc::into_raw handed to new_rust_allocator; V8 calls this once.
    drop(unsafe { Arc::from_raw(budget) });
}

static BUFFER_VTABLE: v8::RustAllocatorVtable<BufferBudget> = v8::RustAllocatorVtable {
    allocate: buffer_allocate,
    allocate_uninitialized: buffer_allocate_uninitialized,
    free: buffer_free,
    drop: buffer_budget_drop,
};

/// What the near-heap-limit callback needs; boxed so its address is stable.
struct HeapGuard {
    handle: v8::IsolateHandle,
    hit: AtomicBool,
}

/// Extra heap granted each time the limit is reached, so the isolate can be terminated cleanly
/// instead of V8 aborting the whole process on out-of-memory. V8 calls the callback from inside
/// the allocation that failed and aborts if that allocation still does not fit, so the headroom
/// must hold the largest single object V8 makes: a two-byte string of its maximum length
/// (2^29 - 24 characters, 1 GiB), or a fixed array of its maximum length (about as much). A
/// tenant's script built a 256 MiB one-byte string into 512 MiB of two-byte in one flatten,
/// which the earlier 256 MiB headroom did not hold. Only what the script really allocates is
/// committed, and the termination requested here lands at its next call or loop iteration.
pub(crate) const HEAP_HEADROOM_BYTES: usize = (1 << 30) + (256 << 20);

unsafe extern "C" fn near_heap_limit(data: *mut c_void, current_limit: usize, _initial_limit: usize) -> usize {
    // SAFETY: `data` is the HeapGuard boxed in the Isolate, which outlives the V8 isolate.
    let guard = unsafe { &*(data as *const HeapGuard) };
    guard.hit.store(true, Ordering::Relaxed);
    guard.handle.terminate_execution();
    current_limit.saturating_add(HEAP_HEADROOM_BYTES)
}

extern "C" fn out_of_memory(location: *const std::ffi::c_char, details: &v8::OomDetails) {
    // V8 aborts the process after this returns; say why on the way down.
    let location = if location.is_null() {
        String::new()
    } else {
        // SAFETY: V8 passes a NUL-terminated location string that lives during the call.
        unsafe { std::ffi::CStr::from_ptr(location) }.to_string_lossy().into_owned()
    };
    eprintln!("isobar: fatal: V8 ran out of memory ({location}, heap: {}); aborting", details.is_heap_oom);
}

/// CPU accounting of one isolate, updated by [`Entered`].
struct Meter {
    cpu_total: Cell<Duration>,
    last_entry: Cell<Duration>,
    /// Entries so far (see [`Isolate::entries`]).
    entries: Cell<u64>,
    condemned: Cell<Option<Condemned>>,
    watch: Option<Arc<CoreWatch>>,
    handle: v8::IsolateHandle,
}

/// Memory mappings one isolate takes, with a margin: the process needs `vm.max_map_count` to
/// hold them all, or V8 aborts when an isolate cannot map its memory. Measured with
/// `SMAPS=1 isolates 1000` (bench/src/bin/isolates.rs): about ten per isolate; about fourteen
/// with pointer compression, where V8 maps its per-isolate tables in 64 KB pieces.
#[cfg(not(feature = "ptrcomp"))]
pub const MAPS_PER_ISOLATE: u64 = 12;
#[cfg(feature = "ptrcomp")]
pub const MAPS_PER_ISOLATE: u64 = 18;

/// An isolate made from the snapshot, with isobar's API in its context.
pub struct Isolate {
    pub(crate) handles: Option<Handles>,
    pub(crate) state: Rc<RefCell<IsolateState>>,
    meter: Meter,
    heap_guard: Box<HeapGuard>,
    buffers: Arc<BufferBudget>,
    heap_max_bytes: usize,
    /// Exited whenever no call is in progress; see the module docs.
    isolate: ManuallyDrop<v8::OwnedIsolate>,
    /// Its place in an isolate group (with pointer compression), released after it.
    _seat: crate::cage::Seat,
}

impl std::fmt::Debug for Isolate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolate").field("heap_max_bytes", &self.heap_max_bytes).finish_non_exhaustive()
    }
}

/// The isolate entered for the lifetime of the guard, with its CPU time metered and watched.
pub(crate) struct Entered<'a> {
    isolate: &'a mut v8::OwnedIsolate,
    meter: &'a Meter,
    started: Instant,
    sequence: Option<u64>,
}

impl std::ops::Deref for Entered<'_> {
    type Target = v8::Isolate;
    fn deref(&self) -> &v8::Isolate {
        self.isolate
    }
}

impl std::ops::DerefMut for Entered<'_> {
    fn deref_mut(&mut self) -> &mut v8::Isolate {
        self.isolate
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let ended = Instant::now();
        let end = match (&self.meter.watch, self.sequence) {
            (Some(watch), Some(sequence)) => watch.end(sequence),
            _ => EntryEnd { terminated: false, seen: None },
        };
        if end.terminated {
            self.meter.condemned.set(Some(Condemned::CpuLimit));
        }
        let spent = crate::watchdog::entry_cpu(self.started, ended, &end, kernel_shim::cpu::thread_cpu_time);
        self.meter.last_entry.set(spent);
        self.meter.cpu_total.set(self.meter.cpu_total.get() + spent);
        // SAFETY: paired with the enter in Isolate::enter; guards are scoped, so no other
        // isolate entered on this thread since is still entered.
        unsafe { self.isolate.exit() };
    }
}

impl Isolate {
    /// A fresh isolate from the snapshot with at most `heap_max_bytes` of heap (and as much again
    /// of ArrayBuffer memory), named `name` in logs until a tenant's script is loaded.
    pub fn new(name: &str, heap_max_bytes: usize) -> Result<Isolate, String> {
        let buffers = Arc::new(BufferBudget { used_bytes: AtomicUsize::new(0), max_bytes: heap_max_bytes });
        // SAFETY: the pointer is an Arc reference handed to V8, released by buffer_budget_drop.
        let allocator = unsafe { v8::new_rust_allocator(Arc::into_raw(buffers.clone()), &BUFFER_VTABLE) };
        let (seat, isolate) = crate::cage::seat(heap_max_bytes, || engine::new_isolate(heap_max_bytes, allocator))?;
        let mut isolate = isolate?;
        isolate.set_microtasks_policy(v8::MicrotasksPolicy::Explicit);
        isolate.set_capture_stack_trace_for_uncaught_exceptions(true, 10);
        isolate.set_promise_reject_callback(promise_reject_callback);
        isolate.set_oom_error_handler(out_of_memory);
        let handle = isolate.thread_safe_handle();
        let heap_guard = Box::new(HeapGuard { handle: handle.clone(), hit: AtomicBool::new(false) });
        isolate.add_near_heap_limit_callback(near_heap_limit, &*heap_guard as *const HeapGuard as *mut c_void);
        isolate.set_allow_wasm_code_generation_callback(crate::api::wasm::allow_code_generation);
        let mut state = IsolateState::new(name);
        state.wasm.max_bytes = heap_max_bytes as u64;
        let state = Rc::new(RefCell::new(state));
        isolate.set_slot(state.clone());
        // SAFETY: Isolate::new entered the new isolate; this exits it again so it is idle and
        // exited like every other (module docs). Nothing else was entered after it.
        unsafe { isolate.exit() };
        let meter = Meter {
            cpu_total: Cell::new(Duration::ZERO),
            last_entry: Cell::new(Duration::ZERO),
            entries: Cell::new(0),
            condemned: Cell::new(None),
            watch: None,
            handle,
        };
        let mut this = Isolate {
            handles: None,
            state,
            meter,
            heap_guard,
            buffers,
            heap_max_bytes,
            isolate: ManuallyDrop::new(isolate),
            _seat: seat,
        };
        this.handles = Some(this.create_context()?);
        Ok(this)
    }

    fn create_context(&mut self) -> Result<Handles, String> {
        let mut entered = self.enter(Duration::MAX);
        let isolate: &mut v8::Isolate = &mut entered;
        v8::scope!(let hs, isolate);
        let context = v8::Context::new(hs, Default::default());
        let scope = &mut v8::ContextScope::new(hs, context);
        // The internals object is only for isobar's bootstrap; taking it releases the snapshot's
        // reference (nothing per isolate needs it: Rust reaches JS through the hooks).
        scope
            .get_context_data_from_snapshot_once::<v8::Object>(engine::INTERNALS_DATA_INDEX)
            .map_err(|e| format!("the snapshot has no internals object: {e:?}"))?;
        let (classes, hooks) = engine::take_snapshot_data(scope)?;
        scope.set_slot(classes);
        scope.set_slot(hooks);
        Ok(Handles { context: v8::Global::new(scope, context), handler: None, env: None })
    }

    /// Sets the watch through which the core's watchdog can stop runaway scripts.
    pub fn set_watch(&mut self, watch: Arc<CoreWatch>) {
        self.meter.watch = Some(watch);
    }

    /// Enters the isolate for one call with `budget` of CPU time (enforced by the watchdog when
    /// a watch is set).
    pub(crate) fn enter(&mut self, budget: Duration) -> Entered<'_> {
        // SAFETY: the isolate is idle and exited (module docs), and Entered's drop exits it.
        unsafe { self.isolate.enter() };
        self.meter.entries.set(self.meter.entries.get() + 1);
        let started = Instant::now();
        let sequence = self.meter.watch.as_ref().map(|watch| watch.begin(&self.meter.handle, started, budget));
        Entered { isolate: &mut self.isolate, meter: &self.meter, started, sequence }
    }

    /// A handle other threads can use to stop this isolate's script.
    pub fn thread_safe_handle(&self) -> v8::IsolateHandle {
        self.meter.handle.clone()
    }

    /// Why the isolate may not run again, if it may not.
    pub fn condemned(&self) -> Option<Condemned> {
        if self.heap_guard.hit.load(Ordering::Relaxed) {
            return Some(Condemned::HeapLimit);
        }
        if self.state.borrow().panicked {
            return Some(Condemned::Panic);
        }
        self.meter.condemned.get()
    }

    /// CPU time spent in this isolate, over all entries.
    pub fn cpu_total(&self) -> Duration {
        self.meter.cpu_total.get()
    }

    /// CPU time of the most recent entry, once: a second call, or a call after a method that
    /// had nothing to run and did not enter, gives zero, so no entry is charged twice.
    pub fn take_last_entry_cpu(&self) -> Duration {
        self.meter.last_entry.replace(Duration::ZERO)
    }

    /// How many times the isolate has been entered: a caller that notes it can tell later
    /// whether anything ran in the isolate since.
    pub fn entries(&self) -> u64 {
        self.meter.entries.get()
    }

    pub fn heap_max_bytes(&self) -> usize {
        self.heap_max_bytes
    }

    /// ArrayBuffer memory in use.
    pub fn buffer_bytes(&self) -> usize {
        self.buffers.used_bytes.load(Ordering::Relaxed)
    }

    /// Heap statistics: (used, total physical) bytes.
    pub fn heap_bytes(&mut self) -> (usize, usize) {
        // SAFETY: the isolate is idle and exited; entered only for this read.
        unsafe { self.isolate.enter() };
        let stats = self.isolate.get_heap_statistics();
        // SAFETY: paired with the enter above.
        unsafe { self.isolate.exit() };
        (stats.used_heap_size(), stats.total_physical_size())
    }

    /// Per heap space: (name, used bytes, physical bytes), for diagnosis and benchmarks.
    pub fn heap_spaces(&mut self) -> Vec<(String, usize, usize)> {
        let mut entered = self.enter(Duration::MAX);
        let count = entered.number_of_heap_spaces();
        (0..count)
            .filter_map(|i| entered.get_heap_space_statistics(i))
            .map(|s| (s.space_name().to_string_lossy().into_owned(), s.space_used_size(), s.physical_space_size()))
            .collect()
    }

    /// Asks V8 to give back what it can (a full GC and compaction) before the isolate is kept
    /// idle for long.
    pub fn low_memory(&mut self) {
        let mut entered = self.enter(Duration::MAX);
        entered.low_memory_notification();
    }
}

impl Drop for Isolate {
    fn drop(&mut self) {
        // SAFETY: the isolate is idle and exited (module docs); rusty_v8's OwnedIsolate::drop
        // requires it to be the current isolate and exits it itself, so it is entered here and
        // not exited again. `handles` are reset first, while the isolate is still alive.
        unsafe { self.isolate.enter() };
        self.handles = None;
        self.state.borrow_mut().release_handles();
        self.isolate.remove_slot::<crate::bridge::class::Classes>();
        self.isolate.remove_slot::<crate::bridge::hooks::Hooks>();
        // SAFETY: the isolate is dropped exactly once, here, and never used afterwards. The
        // heap guard and buffer budget it points to are dropped after it (field order).
        unsafe { ManuallyDrop::drop(&mut self.isolate) };
    }
}

extern "C" fn promise_reject_callback(message: v8::PromiseRejectMessage) {
    // A rejection with no handler is only *possibly* unhandled: a handler may be attached
    // later in the same turn. Like browsers, isobar notes it here and reports it only if it is
    // still unhandled after the microtask checkpoint (Worker::run_microtasks), through the
    // `unhandledrejection` event and then the log.
    let promise = message.get_promise();
    let hash = promise.get_identity_hash().get();
    v8::callback_scope!(unsafe scope, &message);
    crate::bridge::guard_hook(scope, "promise_reject_callback", |scope| {
        let Some(state) = crate::bridge::state_of(scope) else { return };
        let mut state = state.borrow_mut();
        match message.get_event() {
            v8::PromiseRejectEvent::PromiseRejectWithNoHandler => {
                if state.unhandled_rejections.len() >= IsolateState::UNHANDLED_REJECTIONS_MAX {
                    // Bounded: the oldest is dropped (and logged) rather than the list growing.
                    state.unhandled_rejections.remove(0);
                    state.log(
                        crate::state::LogLevel::Error,
                        "Uncaught (in promise): too many unhandled rejections; some are not shown",
                    );
                }
                state.unhandled_rejections.push((hash, v8::Global::new(scope, promise)));
            }
            v8::PromiseRejectEvent::PromiseHandlerAddedAfterReject => {
                if let Some(i) = state.unhandled_rejections.iter().position(|(h, _)| *h == hash) {
                    state.unhandled_rejections.swap_remove(i);
                }
            }
            _ => {}
        }
    })
}

/// How much of a value's description goes to the log.
const DESCRIPTION_BYTES_MAX: usize = 16 << 10;

/// A value as the log shows it: an error's stack if it has one, else its string form. Runs the
/// value's own getters and toString under a TryCatch (they may throw); the text is capped.
pub(crate) fn describe_value(scope: &mut v8::PinScope, value: v8::Local<v8::Value>) -> String {
    v8::tc_scope!(let tc, scope);
    let mut text: Option<v8::Local<v8::String>> = None;
    if let Ok(object) = v8::Local::<v8::Object>::try_from(value)
        && let Some(key) = v8::String::new(tc, "stack")
        && let Some(stack) = object.get(tc, key.into())
        && let Ok(stack) = v8::Local::<v8::String>::try_from(stack)
    {
        text = Some(stack);
    }
    if text.is_none() {
        tc.reset();
        text = value.to_string(tc);
    }
    let Some(text) = text else {
        tc.reset();
        return "[a value whose description threw]".to_string();
    };
    let mut buffer = vec![0u8; DESCRIPTION_BYTES_MAX];
    let written = text.write_utf8_v2(tc, &mut buffer, v8::WriteFlags::kReplaceInvalidUtf8, None);
    buffer.truncate(written);
    String::from_utf8(buffer).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
