//! A Worker: one tenant's script loaded into an [`Isolate`], and the requests it is serving.
//!
//! Rust calls the tenant's handler directly (a module's `fetch`, or a service worker's
//! FetchEvent through one hook), with a native Request and ExecutionContext, and reads the
//! Response it returns (at once, or when its promise settles after a microtask checkpoint) in
//! Rust: one outcome per request id, whatever the script does to `Promise.prototype.then`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api;
use crate::bridge::class::{self, ClassId};
use crate::bridge::context::{self, RequestContext};
use crate::bridge::hooks;
use crate::engine;
use crate::isolate::{Condemned, Isolate, describe_value};
use crate::state::Outcome;
use crate::watchdog::CoreWatch;

/// The heap limit of a Worker made with [`Worker::new`] (tenants set their own).
pub const DEFAULT_HEAP_MAX_BYTES: usize = 128 << 20;

pub use isobar_tenancy::ScriptFormat;

/// One module of a Worker, typed by its file's extension (as Wrangler's default module rules
/// and workerd's module types): `import x from "./f.wasm"` gives a `WebAssembly.Module`,
/// `.json` the parsed value, `.txt`/`.html`/`.sql`/`.md`/`.csv` the text, `.bin` an
/// `ArrayBuffer`; anything else is an ES module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    Js(String),
    Wasm(crate::api::wasm::WasmSource),
    Json(String),
    Text(String),
    Data(Vec<u8>),
}

impl ModuleSource {
    /// The module at `path`, whose file holds `bytes`; text types must be UTF-8.
    pub fn from_file(path: &Path, bytes: Vec<u8>) -> Result<ModuleSource, String> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()));
        Ok(match extension.as_str() {
            "wasm" => ModuleSource::Wasm(crate::api::wasm::WasmSource::new(bytes)),
            "bin" => ModuleSource::Data(bytes),
            "json" => ModuleSource::Json(text(bytes)?),
            "txt" | "html" | "sql" | "md" | "csv" => ModuleSource::Text(text(bytes)?),
            _ => ModuleSource::Js(text(bytes)?),
        })
    }

    /// Bytes it holds (for bounds).
    pub fn len(&self) -> usize {
        match self {
            ModuleSource::Js(s) | ModuleSource::Json(s) | ModuleSource::Text(s) => s.len(),
            ModuleSource::Wasm(w) => w.bytes().len(),
            ModuleSource::Data(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a core needs to create a Worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub name: String,
    /// The main script's path; relative imports resolve against its directory.
    pub path: PathBuf,
    pub source: String,
    pub format: ScriptFormat,
    /// Sources of imported modules, by canonical path, known in advance: a core loading a
    /// tenant compiles from these and never reads the disk.
    pub modules: Arc<BTreeMap<PathBuf, ModuleSource>>,
    /// Whether imports missing from `modules` may be read from disk (start-up and control
    /// threads only).
    pub read_disk: bool,
    /// `env` bindings: (name, value) of vars and secrets.
    pub env: Arc<Vec<(String, String)>>,
    /// KV namespaces on `env`; a `KVNamespace`'s ops name the binding by its index here.
    pub kv: Arc<Vec<isobar_tenancy::KvBinding>>,
    /// Service bindings on `env`, (binding, tenant); a `Fetcher`'s op names it by its index.
    pub services: Arc<Vec<(String, String)>>,
}

impl WorkerSpec {
    /// A spec for a script read from `path`, whose imports are read from disk as needed.
    pub fn from_source(name: &str, path: &Path, source: String, format: ScriptFormat) -> WorkerSpec {
        WorkerSpec {
            name: name.to_string(),
            path: path.to_path_buf(),
            source,
            format,
            modules: Arc::default(),
            read_disk: true,
            env: Arc::default(),
            kv: Arc::default(),
            services: Arc::default(),
        }
    }
}

/// Why a Worker could not be created. Each message names the file, and where it can, the line
/// and column, in the `file:line:column` form editors understand.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// {file}:{line}:{column}: {message}
    #[error("{file}:{line}:{column}: {message}{excerpt}")]
    Compile { file: String, line: usize, column: usize, message: String, excerpt: String },
    /// The script threw while it was being evaluated.
    #[error("{file}: the script threw while loading: {message}")]
    Evaluate { file: String, message: String },
    /// The script ran but did not set up a fetch handler.
    #[error("{file}: {message}")]
    NoHandler { file: String, message: String },
    /// An import could not be resolved or read.
    #[error("{file}: cannot import {specifier:?}: {reason}")]
    Import { file: String, specifier: String, reason: String },
    /// The script hit its CPU or heap limit while loading.
    #[error("{file}: the script exceeded its {limit} limit while loading")]
    Limit { file: String, limit: &'static str },
    /// The script failed to start recently; it is not tried again until its backoff expires.
    #[error("{file}: not started again yet after a failed start-up ({reason})")]
    Backoff { file: String, reason: String },
    /// isobar's own JavaScript API or V8 set-up failed; a bug in isobar.
    #[error("isobar's JavaScript API failed to load ({file}): {message}")]
    Bootstrap { file: String, message: String },
}

/// The parts of an incoming HTTP request a handler sees.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The absolute URL, e.g. `http://example.com/path?query`.
    pub url: &'a str,
    /// Names in lower case; values as received.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// A tenant's script, loaded and ready to serve.
pub struct Worker {
    isolate: Isolate,
    name: Rc<str>,
    /// Every module compiled for this worker (main script included), by path.
    modules: BTreeMap<PathBuf, ModuleSource>,
    /// Requests whose work ended since the scheduler last looked (response sent and every
    /// `waitUntil()` settled): their timers are cancelled and their contexts gone.
    finished: Vec<u64>,
    /// The isolate's entry count after a dispatch, which ends with a checkpoint: while it is
    /// unchanged, nothing has run since and a checkpoint would find nothing to do.
    checkpointed_at: Option<u64>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.name).finish()
    }
}

/// The CPU a script's top level may use while it loads, unless the caller says otherwise
/// (Workers allow 400 ms for start-up, separately from the per-request limit).
pub const STARTUP_CPU_DEFAULT: Duration = Duration::from_millis(400);

/// Enters `$isolate` (an `&mut Isolate`) with `$budget` of CPU time and binds `$scope` to a
/// handle + context scope of its context and `$handles` to its handles. `None` if the isolate
/// has no context.
macro_rules! in_context {
    ($isolate:expr, $budget:expr, |$scope:ident, $handles:ident| $body:block) => {{
        let isolate: &mut Isolate = $isolate;
        match isolate.handles.as_ref().map(|h| h as *const crate::isolate::Handles) {
            None => None,
            Some(handles_ptr) => {
                let mut entered = isolate.enter($budget);
                // SAFETY: `handles` lives in the Isolate beside the V8 isolate and is neither
                // moved nor dropped while it is entered (Isolate::drop resets it only after).
                let $handles: &crate::isolate::Handles = unsafe { &*handles_ptr };
                let v8_isolate: &mut v8::Isolate = &mut entered;
                v8::scope!(let hs, v8_isolate);
                let context = v8::Local::new(hs, &$handles.context);
                let $scope = &mut v8::ContextScope::new(hs, context);
                Some($body)
            }
        }
    }};
}

impl Worker {
    /// Creates an isolate with the default heap limit and loads `spec` into it (no watchdog:
    /// for tests and tools; servers load through [`Worker::load`] with a watch and a budget).
    pub fn new(spec: &WorkerSpec) -> Result<Worker, LoadError> {
        engine::init().map_err(|message| bootstrap_error("snapshot", &message))?;
        let isolate = Isolate::new(&spec.name, DEFAULT_HEAP_MAX_BYTES).map_err(|m| bootstrap_error("isolate", &m))?;
        Worker::load(isolate, spec, Duration::MAX)
    }

    /// Loads the tenant's script into a fresh isolate (one from the pool). The script's top level
    /// runs with `startup_cpu` of CPU time, enforced by the watchdog if the isolate has a watch.
    pub fn load(mut isolate: Isolate, spec: &WorkerSpec, startup_cpu: Duration) -> Result<Worker, LoadError> {
        {
            let mut state = isolate.state.borrow_mut();
            state.name = spec.name.as_str().into();
            // The top level sees the time it runs at, not when a pooled isolate was made.
            state.clock.advance(Instant::now());
        }
        let file = spec.path.display().to_string();
        let root = spec.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let isolate_ptr: *mut Isolate = &mut isolate;
        let result = in_context!(&mut isolate, startup_cpu, |scope, handles| {
            scope.set_slot(ModuleMap {
                root,
                preloaded: spec.modules.clone(),
                read_disk: spec.read_disk,
                ..ModuleMap::default()
            });
            context::enter(scope, None);
            load_script(scope, spec)
        });
        let result = result.unwrap_or_else(|| Err(bootstrap_error("context", "the isolate has no context")));
        let modules = take_module_sources(&mut isolate);
        let _ = isolate_ptr;
        if let Some(condemned) = isolate.condemned() {
            let limit = match condemned {
                Condemned::CpuLimit => "CPU time",
                Condemned::HeapLimit => "memory",
                Condemned::Panic => "internal error",
            };
            return Err(LoadError::Limit { file, limit });
        }
        let loaded = result?;
        if let Some(handles) = isolate.handles.as_mut() {
            handles.handler = loaded.handler;
            handles.env = Some(loaded.env);
        }
        let name = isolate.state.borrow().name.clone();
        Ok(Worker { isolate, name, modules, finished: Vec::new(), checkpointed_at: None })
    }

    /// Loads `spec` into a fresh isolate of `heap_bytes` (the tenant's limit) on the calling
    /// thread (a control thread) and drops it: the script's top level runs once, and it must set
    /// up a fetch handler. A top level that runs longer than `cpu_max` (wall time, on this
    /// unloaded thread) is stopped.
    pub fn validate(spec: &WorkerSpec, heap_bytes: usize, cpu_max: Duration) -> Result<(), LoadError> {
        Worker::load_guarded(spec, heap_bytes, cpu_max).map(drop)
    }

    /// Loads `spec` into a fresh isolate under the CPU guard [`Worker::validate`] describes.
    fn load_guarded(spec: &WorkerSpec, heap_bytes: usize, cpu_max: Duration) -> Result<Worker, LoadError> {
        engine::init().map_err(|message| bootstrap_error("snapshot", &message))?;
        let isolate = Isolate::new(&spec.name, heap_bytes).map_err(|m| bootstrap_error("isolate", &m))?;
        let handle = isolate.thread_safe_handle();
        let file = spec.path.display().to_string();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let guard = std::thread::spawn(move || {
            let cut = done_rx.recv_timeout(cpu_max) == Err(std::sync::mpsc::RecvTimeoutError::Timeout);
            if cut {
                handle.terminate_execution();
            }
            cut
        });
        let result = Worker::load(isolate, spec, Duration::MAX);
        let _ = done_tx.send(());
        match guard.join() {
            Ok(true) => Err(LoadError::Limit { file, limit: "CPU time" }),
            _ => result,
        }
    }

    /// [`bundle`] and [`Worker::validate`] in one fresh isolate: `spec` (which may read its
    /// imports from disk) is loaded into an isolate of `heap_bytes` under the same CPU guard as
    /// `validate`, and the module sources it compiled and the format it ran in are returned for
    /// the tenant. For a start-up with one tenant (`isobar run`), where `bundle` would make the
    /// compiler isolate for this one script and `validate` another: an isolate costs ~3-5 ms of
    /// a 5 ms start-up budget. It runs the top level exactly as `validate` does, so nothing is
    /// checked less.
    pub fn bundle_and_validate(
        spec: &WorkerSpec,
        heap_bytes: usize,
        cpu_max: Duration,
    ) -> Result<(ScriptFormat, BTreeMap<PathBuf, ModuleSource>), LoadError> {
        let mut worker = Worker::load_guarded(spec, heap_bytes, cpu_max)?;
        Ok((worker.format(), std::mem::take(&mut worker.modules)))
    }

    /// The format the script ran in: a module's default export is its handler; a service worker
    /// has none (it registered a fetch listener, which `load` checked).
    pub fn format(&self) -> ScriptFormat {
        let module = self.isolate.handles.as_ref().is_some_and(|h| h.handler.is_some());
        if module { ScriptFormat::Module } else { ScriptFormat::ServiceWorker }
    }

    pub fn name(&self) -> Rc<str> {
        self.name.clone()
    }

    /// The sources of every module this worker compiled, by path: a bundle other cores can
    /// load without reading the disk.
    pub fn modules(&self) -> &BTreeMap<PathBuf, ModuleSource> {
        &self.modules
    }

    pub fn set_watch(&mut self, watch: Arc<CoreWatch>) {
        self.isolate.set_watch(watch);
    }

    /// Starts one request. Its outcome arrives later through [`Worker::take_outcomes`]; the
    /// handler may finish during this call or after later microtask checkpoints and timers.
    /// `budget` is the CPU time this entry may use before the watchdog stops it.
    pub fn dispatch(
        &mut self,
        id: u64,
        request: &RequestParts<'_>,
        now: Instant,
        budget: Duration,
        subrequests_max: u32,
    ) {
        self.advance_clock(now);
        let state = self.isolate.state.clone();
        state.borrow_mut().requests.insert(RequestContext::new(id, subrequests_max));
        let finished = &mut self.finished;
        let ok = in_context!(&mut self.isolate, budget, |scope, handles| {
            let outcome = dispatch_in(scope, handles, id, request);
            if let Some(outcome) = outcome {
                state.borrow_mut().outcomes.push(outcome);
            }
            // The checkpoint in the same entry: entering an isolate again costs more than its
            // microtasks when the isolate is cold (one request in a thousand).
            checkpoint(scope, &state, finished);
            make_spare(scope, &state);
        });
        if ok.is_none() {
            state.borrow_mut().outcomes.push(Outcome::Failed { id, message: "the worker has no context".into() });
        }
        self.checkpointed_at = Some(self.isolate.entries());
    }

    /// Starts one Cron Trigger firing as request `id`: the module's `scheduled(controller, env,
    /// ctx)` (or a service worker's "scheduled" event). It has no response: it is done when what
    /// the handler returned and its `waitUntil()` work settle, reported by
    /// [`Worker::take_scheduled_ended`]. A handler that is missing or throws at once ends it now
    /// as failed (the error is logged).
    pub fn dispatch_scheduled(
        &mut self,
        id: u64,
        cron: &str,
        scheduled_time_ms: u64,
        now: Instant,
        budget: Duration,
        subrequests_max: u32,
    ) {
        self.advance_clock(now);
        let state = self.isolate.state.clone();
        let mut context = RequestContext::new(id, subrequests_max);
        context.scheduled = true;
        context.responded = Some(now);
        state.borrow_mut().requests.insert(context);
        let started = in_context!(&mut self.isolate, budget, |scope, handles| {
            context::enter(scope, Some(id));
            let started = run_scheduled(scope, handles, id, cron, scheduled_time_ms);
            context::enter(scope, None);
            started
        });
        let failure = match started {
            Some(Ok(())) => None,
            Some(Err(message)) => Some(message),
            None => Some("the worker has no context".to_string()),
        };
        let mut state = state.borrow_mut();
        if let Some(message) = failure {
            state.log(crate::state::LogLevel::Error, &format!("scheduled ({cron}): {message}"));
            if let Some(request) = state.requests.get_mut(id) {
                request.failed = true;
            }
        }
        let done = state.requests.get(id).is_some_and(|r| r.wait_until == 0);
        drop(state);
        if done {
            self.end_request(id);
        }
    }

    /// Scheduled firings that ended since the last call: (id, whether they failed).
    pub fn take_scheduled_ended(&mut self, out: &mut Vec<(u64, bool)>) {
        out.append(&mut self.isolate.state.borrow_mut().scheduled_ended);
    }

    /// Runs queued microtasks and the platform's foreground tasks (this is where awaited
    /// promises resume), then collects what they settled: handlers' responses, `waitUntil()`
    /// promises, and rejections nobody handled.
    ///
    /// Nothing runs (and there is no entry's CPU to take) if the last entry was a dispatch,
    /// which ran its own checkpoint.
    pub fn run_microtasks(&mut self, budget: Duration) {
        if self.checkpointed_at == Some(self.isolate.entries()) {
            return;
        }
        let state = self.isolate.state.clone();
        let finished = &mut self.finished;
        in_context!(&mut self.isolate, budget, |scope, _handles| {
            checkpoint(scope, &state, finished);
        });
    }

    /// Fires every timer due at `now`, each followed by a microtask checkpoint. Returns the
    /// requests the timers worked for (their CPU is theirs).
    pub fn fire_timers(&mut self, now: Instant, budget: Duration) -> Vec<u64> {
        self.advance_clock(now);
        let state = self.isolate.state.clone();
        let mut fired = Vec::new();
        in_context!(&mut self.isolate, budget, |scope, _handles| {
            // A bounded batch: intervals due again at once must not starve the rest of the core.
            for _ in 0..1000 {
                let due = state.borrow_mut().timers.pop_due(scope, now);
                let Some(due) = due else { break };
                if !fired.contains(&due.request) {
                    fired.push(due.request);
                }
                due.fire(scope);
                if scope.is_execution_terminating() {
                    break;
                }
                scope.perform_microtask_checkpoint();
            }
        });
        fired
    }

    /// The I/O the script's ops asked for since the last call.
    pub fn take_outbox(&mut self, out: &mut Vec<crate::outbound::outbox::Work>) {
        out.append(&mut self.isolate.state.borrow_mut().outbox);
    }

    /// Settles async ops whose work is done (their continuations run at the next checkpoint).
    pub fn settle(&mut self, settled: Vec<(u32, crate::bridge::async_ops::Settle)>, budget: Duration) {
        if settled.is_empty() {
            return;
        }
        in_context!(&mut self.isolate, budget, |scope, _handles| {
            for (op, settle) in settled {
                crate::bridge::async_ops::settle(scope, op, settle);
                if scope.is_execution_terminating() {
                    break;
                }
            }
        });
    }

    /// Starts reading the next chunk of the response body stream `reader` (see `WireStream::Js`);
    /// the chunk arrives as an [`Outcome::BodyChunk`] after a microtask checkpoint.
    /// The read runs as request `request`'s work (its timers and I/O belong to it).
    pub fn read_body_chunk(&mut self, request: u64, reader: u32, budget: Duration) {
        let state = self.isolate.state.clone();
        let started = in_context!(&mut self.isolate, budget, |scope, _handles| {
            context::enter(scope, Some(request));
            let started = start_body_read(scope, &state, reader);
            context::enter(scope, None);
            started
        });
        match started {
            Some(Ok(())) => {}
            Some(Err(message)) => state.borrow_mut().outcomes.push(Outcome::BodyChunk { reader, chunk: Err(message) }),
            None => state
                .borrow_mut()
                .outcomes
                .push(Outcome::BodyChunk { reader, chunk: Err("the worker has no context".into()) }),
        }
    }

    /// Delivers a WebSocket event to the end bound as `socket`, as request `request`'s work
    /// (its listeners run at the next microtask checkpoint).
    pub fn ws_event(&mut self, request: u64, socket: u32, event: netstack::WsUpdate, now: Instant, budget: Duration) {
        self.advance_clock(now);
        in_context!(&mut self.isolate, budget, |scope, _handles| {
            crate::api::websocket::event(scope, request, socket, event);
        });
    }

    /// Keeps request `id` going after its response (an open WebSocket works for it), as a
    /// `waitUntil()` promise would.
    pub fn hold_request(&mut self, id: u64) {
        if let Some(request) = self.isolate.state.borrow_mut().requests.get_mut(id) {
            request.wait_until += 1;
        }
    }

    /// Undoes one [`Worker::hold_request`]: the request ends if nothing else keeps it.
    pub fn release_request(&mut self, id: u64) {
        let mut state = self.isolate.state.borrow_mut();
        let done = match state.requests.get_mut(id) {
            Some(request) => {
                request.wait_until = request.wait_until.saturating_sub(1);
                request.wait_until == 0 && request.responded.is_some()
            }
            None => false,
        };
        drop(state);
        if done {
            self.end_request(id);
        }
    }

    /// Forgets a response body stream (finished, or its client went away).
    pub fn drop_body_reader(&mut self, reader: u32) {
        let mut state = self.isolate.state.borrow_mut();
        state.body_readers.remove(&reader);
        state.body_reads.retain(|(r, _)| *r != reader);
    }

    pub fn next_timer(&self) -> Option<Instant> {
        self.isolate.state.borrow().timers.next_deadline()
    }

    /// Whether anything could still resume this isolate's waiting requests: a timer or an
    /// operation in progress. Without either, a request still waiting never gets a response.
    pub fn has_pending_work(&self) -> bool {
        let state = self.isolate.state.borrow();
        !state.timers.is_empty() || !state.async_ops.is_empty()
    }

    /// Moves finished requests' outcomes into `out`.
    pub fn take_outcomes(&mut self, out: &mut Vec<Outcome>) {
        out.append(&mut self.isolate.state.borrow_mut().outcomes);
    }

    /// The response of request `id` was sent (or the request failed): its work ends now unless
    /// `waitUntil()` promises are still pending.
    pub fn responded(&mut self, id: u64, now: Instant) {
        let mut state = self.isolate.state.borrow_mut();
        state.awaiting.retain(|(request, _)| *request != id);
        let done = match state.requests.get_mut(id) {
            Some(request) => {
                request.responded = Some(now);
                request.wait_until == 0
            }
            None => false,
        };
        if done {
            drop(state);
            self.end_request(id);
        }
    }

    /// Ends request `id`'s work now: its timers are cancelled, its `waitUntil()` promises are no
    /// longer awaited, and its context goes (the scheduler cuts work past its limits this way).
    pub fn end_request(&mut self, id: u64) {
        let mut state = self.isolate.state.borrow_mut();
        let Some(request) = state.requests.remove(id) else { return };
        if request.scheduled {
            state.scheduled_ended.push((id, request.failed));
        }
        state.timers.cancel_request(id);
        state.awaiting.retain(|(request, _)| *request != id);
        state.wait_until.retain(|(request, _)| *request != id);
        self.finished.push(id);
    }

    /// Requests whose work ended since the last call (see [`Worker::responded`]).
    pub fn take_finished(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.finished);
    }

    /// Requests whose response was sent and whose `waitUntil()` work goes on.
    pub fn background_requests(&self) -> Vec<(u64, Instant)> {
        let state = self.isolate.state.borrow();
        let mut out = Vec::new();
        for id in state.requests.ids() {
            if let Some(at) = state.requests.get(id).and_then(|r| r.responded) {
                out.push((id, at));
            }
        }
        out
    }

    fn advance_clock(&mut self, now: Instant) {
        let mut state = self.isolate.state.borrow_mut();
        state.clock.advance(now);
        state.timers.set_base(now);
    }

    /// Why this worker may not run again (it hit a limit), if so.
    pub fn condemned(&self) -> Option<Condemned> {
        self.isolate.condemned()
    }

    /// CPU time spent in this worker's isolate, over all entries.
    pub fn cpu_total(&self) -> Duration {
        self.isolate.cpu_total()
    }

    /// CPU time of the most recent entry, to be charged once ([`Isolate::take_last_entry_cpu`]).
    pub fn take_last_entry_cpu(&self) -> Duration {
        self.isolate.take_last_entry_cpu()
    }

    /// Heap (used, total physical) bytes plus ArrayBuffer bytes.
    pub fn memory_bytes(&mut self) -> (usize, usize, usize) {
        let (used, physical) = self.isolate.heap_bytes();
        (used, physical, self.isolate.buffer_bytes())
    }

    pub fn isolate_mut(&mut self) -> &mut Isolate {
        &mut self.isolate
    }
}

/// Calls the handler for request `id`; the outcome if it is known at once (a Response returned
/// synchronously, or a failure), else `None` (the handler's promise is awaited).
fn dispatch_in(
    scope: &mut v8::PinScope,
    handles: &crate::isolate::Handles,
    id: u64,
    request: &RequestParts,
) -> Option<Outcome> {
    context::enter(scope, Some(id));
    let incoming = api::fetch::request::Incoming {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
    };
    let result = {
        v8::tc_scope!(let tc, scope);
        let spare = std::mem::take(&mut crate::bridge::state(tc).borrow_mut().spare);
        let objects = match spare.then(|| spare_objects(tc)).flatten() {
            Some(objects) => Ok(objects),
            None => request_objects(tc),
        };
        let made = objects.and_then(|(req, ctx)| {
            let req = api::fetch::request::incoming_into(tc, req, &incoming)?;
            Ok((req, api::worker::context_into(tc, ctx, id)))
        });
        match made {
            Err(error) => Err(format!("isobar could not make the Request: {error:?}")),
            Ok((req, ctx)) => {
                let returned = match &handles.handler {
                    Some((object, fetch)) => {
                        let object = v8::Local::new(tc, object);
                        let fetch = v8::Local::new(tc, fetch);
                        let env = match &handles.env {
                            Some(env) => v8::Local::new(tc, env),
                            None => v8::undefined(tc).into(),
                        };
                        fetch.call(tc, object.into(), &[req.into(), env, ctx.into()])
                    }
                    None => match hooks::get(tc, hooks::Hook::DispatchFetch) {
                        Some(dispatch) => {
                            let undefined = v8::undefined(tc).into();
                            dispatch.call(tc, undefined, &[req.into(), ctx.into()])
                        }
                        None => None,
                    },
                };
                match returned {
                    Some(value) => Ok(value),
                    None => Err(exception_text(tc)),
                }
            }
        }
    };
    context::enter(scope, None);
    match result {
        Err(message) => Some(Outcome::Failed { id, message }),
        Ok(value) => {
            if let Ok(promise) = v8::Local::<v8::Promise>::try_from(value) {
                let state = crate::bridge::state(scope);
                state.borrow_mut().awaiting.push((id, v8::Global::new(scope, promise)));
                return None;
            }
            Some(outcome_of(scope, id, value))
        }
    }
}

/// Makes the next request's Request and ExecutionContext now, while this isolate's templates
/// and allocation area are in the cache: the next request to an isolate that serves one in a
/// thousand would otherwise find them cold (the instantiation was a fifth of such a request).
///
/// They wait in two embedder data slots of the context rather than in global handles: two
/// global handles made and dropped per request were ~1.4% of a hello-world request's CPU.
fn make_spare(scope: &mut v8::PinScope, state: &Rc<std::cell::RefCell<crate::state::IsolateState>>) {
    if scope.is_execution_terminating() || state.borrow().spare {
        return;
    }
    if let Ok((req, ctx)) = request_objects(scope) {
        let context = scope.get_current_context();
        context.set_embedder_data(SPARE_REQUEST_SLOT, req.into());
        context.set_embedder_data(SPARE_CONTEXT_SLOT, ctx.into());
        state.borrow_mut().spare = true;
    }
}

/// The context's embedder data slots of the spare Request and ExecutionContext (slot 0 is left
/// alone: V8's inspector reads it).
const SPARE_REQUEST_SLOT: i32 = 1;
const SPARE_CONTEXT_SLOT: i32 = 2;

/// The spare Request and ExecutionContext [`make_spare`] left in the context.
fn spare_objects<'s>(
    scope: &mut v8::PinScope<'s, '_>,
) -> Option<(v8::Local<'s, v8::Object>, v8::Local<'s, v8::Object>)> {
    let context = scope.get_current_context();
    let req = context.get_embedder_data(scope, SPARE_REQUEST_SLOT)?.try_into().ok()?;
    let ctx = context.get_embedder_data(scope, SPARE_CONTEXT_SLOT)?.try_into().ok()?;
    Some((req, ctx))
}

/// A Request and an ExecutionContext, made but not yet filled in for a request.
fn request_objects<'s>(
    scope: &mut v8::PinScope<'s, '_>,
) -> Result<(v8::Local<'s, v8::Object>, v8::Local<'s, v8::Object>), crate::bridge::JsError> {
    let req = class::new_instance(scope, ClassId::Request)?;
    let ctx = class::new_instance(scope, ClassId::ExecutionContext)?;
    Ok((req, ctx))
}

/// Runs queued microtasks and the platform's foreground tasks, then collects what they settled.
fn checkpoint(
    scope: &mut v8::PinScope,
    state: &Rc<std::cell::RefCell<crate::state::IsolateState>>,
    finished: &mut Vec<u64>,
) {
    // A script the watchdog stopped runs nothing more.
    if scope.is_execution_terminating() {
        return;
    }
    scope.perform_microtask_checkpoint();
    engine::pump(scope);
    if scope.is_execution_terminating() {
        return;
    }
    settle_awaiting(scope, state);
    settle_body_reads(scope, state);
    settle_wait_until(scope, state, finished);
    report_unhandled_rejections(scope, state);
}

/// The outcome of request `id` whose handler produced `value`.
fn outcome_of(scope: &mut v8::PinScope, id: u64, value: v8::Local<v8::Value>) -> Outcome {
    if !class::is_instance(scope, value, ClassId::Response) {
        let what = crate::bridge::args::type_name(value);
        return Outcome::Failed {
            id,
            message: format!("TypeError: the fetch handler returned {what}, not a Response"),
        };
    }
    let Ok(response) = v8::Local::<v8::Object>::try_from(value) else {
        return Outcome::Failed { id, message: "TypeError: not a Response".into() };
    };
    v8::tc_scope!(let tc, scope);
    match api::fetch::response::to_wire(tc, response) {
        Ok(response) => Outcome::Response { id, response },
        Err(message) => Outcome::Failed { id, message: format!("Error: {message}") },
    }
}

/// Handler promises that settled in the last checkpoint become outcomes.
fn settle_awaiting(scope: &mut v8::PinScope, state: &Rc<std::cell::RefCell<crate::state::IsolateState>>) {
    let awaiting = std::mem::take(&mut state.borrow_mut().awaiting);
    let mut still = Vec::with_capacity(awaiting.len());
    for (id, promise) in awaiting {
        let local = v8::Local::new(scope, &promise);
        match local.state() {
            v8::PromiseState::Pending => still.push((id, promise)),
            v8::PromiseState::Fulfilled => {
                let value = local.result(scope);
                let outcome = outcome_of(scope, id, value);
                state.borrow_mut().outcomes.push(outcome);
            }
            v8::PromiseState::Rejected => {
                let reason = local.result(scope);
                let message = describe_value(scope, reason);
                let mut state = state.borrow_mut();
                forget_rejection(&mut state, local);
                state.outcomes.push(Outcome::Failed { id, message });
            }
        }
    }
    // Anything awaited meanwhile (by a dispatch during this checkpoint) stays too.
    let mut state = state.borrow_mut();
    still.append(&mut state.awaiting);
    state.awaiting = still;
}

/// isobar handled this rejection itself (a handler's or a waitUntil promise): not unhandled.
fn forget_rejection(state: &mut crate::state::IsolateState, promise: v8::Local<v8::Promise>) {
    let hash = promise.get_identity_hash().get();
    state.unhandled_rejections.retain(|(h, _)| *h != hash);
}

fn start_body_read(
    scope: &mut v8::PinScope,
    state: &Rc<std::cell::RefCell<crate::state::IsolateState>>,
    reader: u32,
) -> Result<(), String> {
    let global = state.borrow().body_readers.get(&reader).cloned();
    let Some(global) = global else {
        return Err("the response body stream is gone".to_string());
    };
    let reader_object = v8::Local::new(scope, global);
    let Some(read) = hooks::get(scope, hooks::Hook::ReadChunk) else {
        return Err("isobar: readChunk is missing".to_string());
    };
    v8::tc_scope!(let tc, scope);
    let undefined = v8::undefined(tc).into();
    match read.call(tc, undefined, &[reader_object.into()]).and_then(|p| v8::Local::<v8::Promise>::try_from(p).ok()) {
        Some(promise) => {
            state.borrow_mut().body_reads.push((reader, v8::Global::new(tc, promise)));
            Ok(())
        }
        None => Err(exception_text(tc)),
    }
}

/// Reads of response body streams that finished become outcomes.
fn settle_body_reads(scope: &mut v8::PinScope, state: &Rc<std::cell::RefCell<crate::state::IsolateState>>) {
    let reads = std::mem::take(&mut state.borrow_mut().body_reads);
    let mut still = Vec::with_capacity(reads.len());
    for (reader, promise) in reads {
        let local = v8::Local::new(scope, &promise);
        let chunk = match local.state() {
            v8::PromiseState::Pending => {
                still.push((reader, promise));
                continue;
            }
            v8::PromiseState::Fulfilled => {
                let value = local.result(scope);
                if value.is_null() {
                    Ok(None)
                } else {
                    match crate::bridge::args::bytes(value, crate::api::fetch::body::BODY_BYTES_MAX, "response body") {
                        Ok(bytes) => Ok(Some(bytes)),
                        Err(_) => Err("a response body stream's chunk could not be read".to_string()),
                    }
                }
            }
            v8::PromiseState::Rejected => {
                let reason = local.result(scope);
                forget_rejection(&mut state.borrow_mut(), local);
                Err(describe_value(scope, reason))
            }
        };
        state.borrow_mut().outcomes.push(Outcome::BodyChunk { reader, chunk });
    }
    let mut state = state.borrow_mut();
    still.append(&mut state.body_reads);
    state.body_reads = still;
}

/// `waitUntil()` promises that settled: a rejection is reported; a request whose response is sent
/// and whose promises have all settled ends.
fn settle_wait_until(
    scope: &mut v8::PinScope,
    state: &Rc<std::cell::RefCell<crate::state::IsolateState>>,
    finished: &mut Vec<u64>,
) {
    let pending = std::mem::take(&mut state.borrow_mut().wait_until);
    let mut still = Vec::with_capacity(pending.len());
    let mut settled: Vec<u64> = Vec::new();
    for (id, promise) in pending {
        let local = v8::Local::new(scope, &promise);
        match local.state() {
            v8::PromiseState::Pending => still.push((id, promise)),
            v8::PromiseState::Fulfilled => settled.push(id),
            v8::PromiseState::Rejected => {
                forget_rejection(&mut state.borrow_mut(), local);
                let reason = local.result(scope);
                api::events::report_error(scope, reason);
                if let Some(request) = state.borrow_mut().requests.get_mut(id) {
                    request.failed = true;
                }
                settled.push(id);
            }
        }
    }
    let mut state = state.borrow_mut();
    still.append(&mut state.wait_until);
    state.wait_until = still;
    for id in settled {
        let done = match state.requests.get_mut(id) {
            Some(request) => {
                request.wait_until = request.wait_until.saturating_sub(1);
                request.wait_until == 0 && request.responded.is_some()
            }
            None => false,
        };
        if done {
            if let Some(request) = state.requests.remove(id)
                && request.scheduled
            {
                state.scheduled_ended.push((id, request.failed));
            }
            state.timers.cancel_request(id);
            finished.push(id);
        }
    }
}

/// Calls the script's scheduled handler for firing `id`; a promise it returns is awaited like
/// `waitUntil()` work.
fn run_scheduled(
    scope: &mut v8::PinScope,
    handles: &crate::isolate::Handles,
    id: u64,
    cron: &str,
    scheduled_time_ms: u64,
) -> Result<(), String> {
    let state = crate::bridge::state(scope);
    v8::tc_scope!(let tc, scope);
    let run = hooks::get(tc, hooks::Hook::RunScheduled).ok_or("isobar: runScheduled is missing")?;
    let ctx = api::worker::new_context(tc, id).map_err(|e| format!("isobar could not make the context: {e:?}"))?;
    let handler: v8::Local<v8::Value> = match &handles.handler {
        Some((object, _)) => v8::Local::new(tc, object).into(),
        None => v8::undefined(tc).into(),
    };
    let env = match &handles.env {
        Some(env) => v8::Local::new(tc, env),
        None => v8::undefined(tc).into(),
    };
    let cron = crate::bridge::new_string_lossy(tc, cron);
    let time = v8::Number::new(tc, scheduled_time_ms as f64);
    let undefined = v8::undefined(tc).into();
    let Some(returned) = run.call(tc, undefined, &[handler, env, cron.into(), time.into(), ctx.into()]) else {
        return Err(exception_text(tc));
    };
    if let Ok(promise) = v8::Local::<v8::Promise>::try_from(returned) {
        let mut state = state.borrow_mut();
        state.wait_until.push((id, v8::Global::new(tc, promise)));
        if let Some(request) = state.requests.get_mut(id) {
            request.wait_until += 1;
        }
    }
    Ok(())
}

/// Rejections still unhandled after the checkpoint: an `unhandledrejection` event, then the log.
fn report_unhandled_rejections(scope: &mut v8::PinScope, state: &Rc<std::cell::RefCell<crate::state::IsolateState>>) {
    let rejected = std::mem::take(&mut state.borrow_mut().unhandled_rejections);
    for (_, promise) in rejected {
        let promise = v8::Local::new(scope, &promise);
        if promise.has_handler() {
            continue;
        }
        let reason = promise.result(scope);
        if api::events::unhandled_rejection(scope, promise.into(), reason) {
            continue;
        }
        let text = describe_value(scope, reason);
        state.borrow_mut().log(crate::state::LogLevel::Error, &format!("Uncaught (in promise) {text}"));
    }
}

fn take_module_sources(isolate: &mut Isolate) -> BTreeMap<PathBuf, ModuleSource> {
    let mut entered = isolate.enter(Duration::MAX);
    entered.remove_slot::<ModuleMap>().map(|m| m.sources).unwrap_or_default()
}

/// What loading a script leaves for requests: the handler to call and the `env` to pass.
struct Loaded {
    handler: Option<(v8::Global<v8::Object>, v8::Global<v8::Function>)>,
    env: v8::Global<v8::Value>,
}

/// Makes the `env` object and evaluates the tenant's script (module or service worker).
fn load_script(scope: &mut v8::PinScope, spec: &WorkerSpec) -> Result<Loaded, LoadError> {
    crate::api::wasm::install(scope)?;
    let env = v8::Object::new(scope);
    for (key, value) in spec.env.iter() {
        let k = v8::String::new(scope, key).ok_or_else(|| bootstrap_error("env", "name too long"))?;
        let v = v8::String::new(scope, value).ok_or_else(|| bootstrap_error("env", "value too long"))?;
        env.create_data_property(scope, k.into(), v.into());
    }
    if !spec.kv.is_empty() {
        let make = crate::bridge::hooks::get(scope, crate::bridge::hooks::Hook::KvNamespace)
            .ok_or_else(|| bootstrap_error("env", "the KVNamespace hook is missing"))?;
        let undefined = v8::undefined(scope).into();
        for (index, binding) in spec.kv.iter().enumerate() {
            let k = v8::String::new(scope, &binding.binding).ok_or_else(|| bootstrap_error("env", "name too long"))?;
            let index = v8::Number::new(scope, index as f64);
            let namespace =
                make.call(scope, undefined, &[index.into()]).ok_or_else(|| bootstrap_error("env", "KVNamespace"))?;
            env.create_data_property(scope, k.into(), namespace);
        }
    }
    if !spec.services.is_empty() {
        let make = crate::bridge::hooks::get(scope, crate::bridge::hooks::Hook::ServiceBinding)
            .ok_or_else(|| bootstrap_error("env", "the service binding hook is missing"))?;
        let undefined = v8::undefined(scope).into();
        for (index, (binding, _)) in spec.services.iter().enumerate() {
            let k = v8::String::new(scope, binding).ok_or_else(|| bootstrap_error("env", "name too long"))?;
            let index = v8::Number::new(scope, index as f64);
            let fetcher =
                make.call(scope, undefined, &[index.into()]).ok_or_else(|| bootstrap_error("env", "Fetcher"))?;
            env.create_data_property(scope, k.into(), fetcher);
        }
    }
    let env_global = v8::Global::new(scope, v8::Local::<v8::Value>::from(env));

    let file = spec.path.display().to_string();
    let format = resolve_format(scope, spec);
    match format {
        ScriptFormat::Module => {
            let handler = load_module(scope, spec)?;
            Ok(Loaded { handler: Some(handler), env: env_global })
        }
        _ => {
            {
                // A service worker's bindings are globals.
                let set_globals = hooks::get(scope, hooks::Hook::SetGlobalBindings)
                    .ok_or_else(|| bootstrap_error("hooks", "setGlobalBindings is missing"))?;
                v8::tc_scope!(let tc, scope);
                let undefined = v8::undefined(tc).into();
                if set_globals.call(tc, undefined, &[env.into()]).is_none() {
                    return Err(LoadError::Evaluate { file: file.clone(), message: exception_text(tc) });
                }
                let origin = script_origin(tc, &file, false);
                let code = v8::String::new(tc, &spec.source).ok_or_else(|| LoadError::Evaluate {
                    file: file.clone(),
                    message: "the script is too large".into(),
                })?;
                let Some(script) = v8::Script::compile(tc, code, Some(&origin)) else {
                    return Err(compile_error(tc, &file));
                };
                if script.run(tc).is_none() {
                    return Err(LoadError::Evaluate { file: file.clone(), message: exception_text(tc) });
                }
            }
            scope.perform_microtask_checkpoint();
            let check = hooks::get(scope, hooks::Hook::CheckServiceWorker)
                .ok_or_else(|| bootstrap_error("hooks", "checkServiceWorker is missing"))?;
            let undefined = v8::undefined(scope).into();
            let verdict = check.call(scope, undefined, &[]);
            if !verdict.is_some_and(|v| v.is_true()) {
                return Err(LoadError::NoHandler {
                    file,
                    message: "the script registered no fetch handler; call addEventListener('fetch', (event) => event.respondWith(...)) or `export default { fetch }`".into(),
                });
            }
            Ok(Loaded { handler: None, env: env_global })
        }
    }
}

fn bootstrap_error(file: &str, message: &str) -> LoadError {
    LoadError::Bootstrap { file: file.to_string(), message: message.to_string() }
}

fn script_origin<'s>(scope: &mut v8::PinScope<'s, '_>, name: &str, is_module: bool) -> v8::ScriptOrigin<'s> {
    let name = v8::String::new(scope, name).unwrap();
    v8::ScriptOrigin::new(scope, name.into(), 0, 0, false, 0, None, false, false, is_module, None)
}

/// The text of the exception a TryCatch holds: its stack if it has one.
pub(crate) fn exception_text(tc: &mut v8::PinnedRef<'_, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>) -> String {
    if tc.has_terminated() {
        return "execution was terminated".to_string();
    }
    match tc.exception() {
        Some(exception) => describe_value(tc, exception),
        None => "unknown error".to_string(),
    }
}

fn compile_error(tc: &mut v8::PinnedRef<'_, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>, file: &str) -> LoadError {
    let Some(message) = tc.message() else {
        return LoadError::Compile {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: exception_text(tc),
            excerpt: String::new(),
        };
    };
    let text = message.get(tc).to_rust_string_lossy(tc);
    let line = message.get_line_number(tc).unwrap_or(0);
    let column = message.get_start_column() + 1;
    let excerpt = match message.get_source_line(tc) {
        Some(source_line) => {
            let source_line = source_line.to_rust_string_lossy(tc);
            let caret = " ".repeat(column.saturating_sub(1).min(source_line.len()));
            format!("\n    {source_line}\n    {caret}^")
        }
        None => String::new(),
    };
    let file = message
        .get_script_resource_name(tc)
        .map(|n| n.to_rust_string_lossy(tc))
        .filter(|n| !n.is_empty() && n != "undefined")
        .unwrap_or_else(|| file.to_string());
    LoadError::Compile { file, line, column, message: text, excerpt }
}

/// The format `spec` is run in (an `Auto` script resolved), with the main script recorded among
/// the worker's module sources.
fn resolve_format(scope: &mut v8::PinScope, spec: &WorkerSpec) -> ScriptFormat {
    let format = match spec.format {
        ScriptFormat::Auto if looks_like_module(scope, spec) => ScriptFormat::Module,
        ScriptFormat::Auto => ScriptFormat::ServiceWorker,
        f => f,
    };
    if let Some(map) = scope.get_slot_mut::<ModuleMap>() {
        map.sources.insert(spec.path.clone(), ModuleSource::Js(spec.source.clone()));
    }
    format
}

/// Whether an `Auto` script is an ES module: it is if compiling it as a classic script fails
/// with one of the errors only module syntax produces (the approach of Node's module detection).
fn looks_like_module(scope: &mut v8::PinScope, spec: &WorkerSpec) -> bool {
    v8::tc_scope!(let tc, scope);
    let file = spec.path.display().to_string();
    let origin = script_origin(tc, &file, false);
    let Some(code) = v8::String::new(tc, &spec.source) else { return false };
    if v8::Script::compile(tc, code, Some(&origin)).is_some() {
        return false;
    }
    let Some(message) = tc.message() else { return false };
    let text = message.get(tc).to_rust_string_lossy(tc);
    const MODULE_ONLY: &[&str] = &[
        "Cannot use import statement outside a module",
        "Unexpected token 'export'",
        "Cannot use 'import.meta' outside a module",
        "await is only valid in async functions and the top level bodies of modules",
    ];
    MODULE_ONLY.iter().any(|m| text.contains(m))
}

/// The modules of one isolate, for the resolve callback (which cannot capture state).
#[derive(Default)]
struct ModuleMap {
    /// Identity hash of a compiled module -> its path.
    path_of: std::collections::HashMap<i32, PathBuf>,
    /// Path -> the compiled module, so a module imported twice is compiled once.
    by_path: std::collections::HashMap<PathBuf, v8::Global<v8::Module>>,
    /// Imports must stay below this directory (the main script's).
    root: PathBuf,
    /// Module sources known in advance (a tenant's bundle).
    preloaded: Arc<BTreeMap<PathBuf, ModuleSource>>,
    /// Whether imports missing from `preloaded` may be read from disk.
    read_disk: bool,
    /// Every source compiled, by path: becomes [`Worker::modules`].
    sources: BTreeMap<PathBuf, ModuleSource>,
    /// The default export of each synthetic module (Wasm, JSON, text, data), by the module's
    /// identity hash, until V8 evaluates it.
    synthetic: std::collections::HashMap<i32, v8::Global<v8::Value>>,
    /// The first resolution failure, reported as a LoadError.
    error: Option<LoadError>,
}

impl ModuleMap {
    /// The path and source of the module `specifier` imported by `referrer`: from the preloaded
    /// bundle, or from disk when allowed. Errors are the reason, for a LoadError::Import.
    fn find_source(&self, referrer: &Path, specifier: &str) -> Result<(PathBuf, ModuleSource), String> {
        let path = import_path(referrer, specifier, &self.root)?;
        if let Some(source) = self.preloaded.get(&path) {
            return Ok((path, source.clone()));
        }
        if !self.read_disk {
            return Err("the module is not part of the deployed worker".into());
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                let source = ModuleSource::from_file(&path, bytes)?;
                Ok((path, source))
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Where `specifier`, imported by the module at `referrer`, lives; it must stay below `root`.
fn import_path(referrer: &Path, specifier: &str, root: &Path) -> Result<PathBuf, String> {
    if !(specifier.starts_with("./") || specifier.starts_with("../") || specifier.starts_with('/')) {
        return Err("only relative imports (./x.js) of files beside the worker are supported".into());
    }
    let base = referrer.parent().unwrap_or(Path::new(""));
    let path = join_lexically(base, specifier);
    if !path.starts_with(root) || path.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!("{} is outside the worker's directory {}", path.display(), root.display()));
    }
    Ok(path)
}

/// `base/relative` with `.` and `..` resolved lexically (no disk access, no symlinks followed).
fn join_lexically(base: &Path, relative: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in base.join(relative).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn compile_module_at<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    path: &Path,
    source: &str,
) -> Result<v8::Local<'s, v8::Module>, LoadError> {
    let file = path.display().to_string();
    v8::tc_scope!(let tc, scope);
    let origin = script_origin(tc, &file, true);
    let code = v8::String::new(tc, source)
        .ok_or_else(|| LoadError::Evaluate { file: file.clone(), message: "the module is too large".into() })?;
    let mut source = v8::script_compiler::Source::new(code, Some(&origin));
    match v8::script_compiler::compile_module(tc, &mut source) {
        Some(module) => {
            let global = v8::Global::new(tc, module);
            let map = tc.get_slot_mut::<ModuleMap>().expect("module map slot is set at creation");
            map.path_of.insert(module.get_identity_hash().get(), path.to_path_buf());
            map.by_path.insert(path.to_path_buf(), global);
            Ok(module)
        }
        None => Err(compile_error(tc, &file)),
    }
}

/// Compiles an imported module of any type: an ES module, or a synthetic module whose default
/// export is the Wasm module, the JSON value, the text or the bytes.
fn compile_any<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    path: &Path,
    source: &ModuleSource,
) -> Result<v8::Local<'s, v8::Module>, LoadError> {
    let file = path.display().to_string();
    let value: v8::Local<v8::Value> = match source {
        ModuleSource::Js(code) => return compile_module_at(scope, path, code),
        ModuleSource::Wasm(wasm) => {
            let budget = crate::bridge::state(scope).borrow().wasm.max_bytes;
            match crate::api::wasm::compile_deployed(scope, wasm, budget) {
                Ok(module) => module.into(),
                Err(message) => return Err(LoadError::Evaluate { file, message }),
            }
        }
        ModuleSource::Json(text) => {
            let string = v8::String::new(scope, text).ok_or_else(|| LoadError::Evaluate {
                file: file.clone(),
                message: "the JSON module is too large".into(),
            })?;
            let parsed = {
                v8::tc_scope!(let tc, scope);
                match v8::json::parse(tc, string) {
                    Some(value) => Ok(v8::Global::new(tc, value)),
                    None => Err(exception_text(tc)),
                }
            };
            match parsed {
                Ok(value) => v8::Local::new(scope, value),
                Err(message) => return Err(LoadError::Evaluate { file, message }),
            }
        }
        ModuleSource::Text(text) => v8::String::new(scope, text)
            .ok_or_else(|| LoadError::Evaluate { file: file.clone(), message: "the text module is too large".into() })?
            .into(),
        ModuleSource::Data(bytes) => crate::bridge::args::new_array_buffer(scope, bytes.clone()).into(),
    };
    let name = crate::bridge::new_string_lossy(scope, &file);
    let default = v8::String::new(scope, "default").ok_or_else(|| bootstrap_error("module", "name"))?;
    let module = v8::Module::create_synthetic_module(scope, name, &[default], synthetic_module_steps);
    let global_value = v8::Global::new(scope, value);
    let global_module = v8::Global::new(scope, module);
    let map =
        scope.get_slot_mut::<ModuleMap>().ok_or_else(|| bootstrap_error("modules", "the module map is missing"))?;
    let hash = module.get_identity_hash().get();
    map.synthetic.insert(hash, global_value);
    map.path_of.insert(hash, path.to_path_buf());
    map.by_path.insert(path.to_path_buf(), global_module);
    Ok(module)
}

/// V8 evaluates a synthetic module: its default export is the value kept for it.
fn synthetic_module_steps<'s>(
    context: v8::Local<'s, v8::Context>,
    module: v8::Local<v8::Module>,
) -> Option<v8::Local<'s, v8::Value>> {
    v8::callback_scope!(unsafe scope, context);
    let hash = module.get_identity_hash().get();
    let value = scope.get_slot_mut::<ModuleMap>().and_then(|m| m.synthetic.remove(&hash))?;
    let value = v8::Local::new(scope, value);
    let default = v8::String::new(scope, "default")?;
    module.set_synthetic_module_export(scope, default, value)?;
    let resolver = v8::PromiseResolver::new(scope)?;
    let undefined = v8::undefined(scope).into();
    resolver.resolve(scope, undefined);
    Some(resolver.get_promise(scope).into())
}

fn load_module(
    scope: &mut v8::PinScope,
    spec: &WorkerSpec,
) -> Result<(v8::Global<v8::Object>, v8::Global<v8::Function>), LoadError> {
    let file = spec.path.display().to_string();
    let module = compile_module_at(scope, &spec.path, &spec.source)?;
    {
        v8::tc_scope!(let tc, scope);
        if module.instantiate_module(tc, resolve_module).is_none() {
            if let Some(error) = tc.get_slot_mut::<ModuleMap>().and_then(|m| m.error.take()) {
                return Err(error);
            }
            return Err(LoadError::Evaluate { file: file.clone(), message: exception_text(tc) });
        }
        let Some(result) = module.evaluate(tc) else {
            return Err(LoadError::Evaluate { file: file.clone(), message: exception_text(tc) });
        };
        tc.perform_microtask_checkpoint();
        if let Ok(promise) = v8::Local::<v8::Promise>::try_from(result) {
            match promise.state() {
                v8::PromiseState::Rejected => {
                    let reason = promise.result(tc);
                    return Err(LoadError::Evaluate { file: file.clone(), message: describe_value(tc, reason) });
                }
                v8::PromiseState::Pending => {
                    return Err(LoadError::Evaluate {
                        file: file.clone(),
                        message: "top-level await did not settle during start-up".into(),
                    });
                }
                v8::PromiseState::Fulfilled => {}
            }
        }
    }
    // The default export must be an object with a fetch() method.
    const SHAPE: &str = "a module worker must `export default { async fetch(request, env, ctx) { ... } }`";
    let namespace = module.get_module_namespace();
    let namespace = v8::Local::<v8::Object>::try_from(namespace).map_err(|_| LoadError::NoHandler {
        file: file.clone(),
        message: format!("the module has no namespace; {SHAPE}"),
    })?;
    v8::tc_scope!(let tc, scope);
    let key = v8::String::new(tc, "default").ok_or_else(|| bootstrap_error("module", "name"))?;
    let handler = namespace.get(tc, key.into()).filter(|v| !v.is_null_or_undefined());
    let Some(handler) = handler.and_then(|h| v8::Local::<v8::Object>::try_from(h).ok()) else {
        if tc.has_caught() {
            return Err(LoadError::Evaluate { file, message: exception_text(tc) });
        }
        return Err(LoadError::NoHandler { file, message: format!("the module has no default export; {SHAPE}") });
    };
    let key = v8::String::new(tc, "fetch").ok_or_else(|| bootstrap_error("module", "name"))?;
    let fetch = handler.get(tc, key.into());
    let Some(fetch) = fetch.and_then(|f| v8::Local::<v8::Function>::try_from(f).ok()) else {
        if tc.has_caught() {
            return Err(LoadError::Evaluate { file, message: exception_text(tc) });
        }
        return Err(LoadError::NoHandler {
            file,
            message: format!("the default export has no fetch() method; {SHAPE}"),
        });
    };
    Ok((v8::Global::new(tc, handler), v8::Global::new(tc, fetch)))
}

fn resolve_module<'s>(
    context: v8::Local<'s, v8::Context>,
    specifier: v8::Local<'s, v8::String>,
    _import_attributes: v8::Local<'s, v8::FixedArray>,
    referrer: v8::Local<'s, v8::Module>,
) -> Option<v8::Local<'s, v8::Module>> {
    v8::callback_scope!(unsafe scope, context);
    let specifier = specifier.to_rust_string_lossy(scope);
    let referrer_path = {
        let map = scope.get_slot::<ModuleMap>()?;
        map.path_of.get(&referrer.get_identity_hash().get())?.clone()
    };
    let fail = |scope: &mut v8::PinScope, reason: String| {
        let error =
            LoadError::Import { file: referrer_path.display().to_string(), specifier: specifier.clone(), reason };
        if let Some(map) = scope.get_slot_mut::<ModuleMap>() {
            map.error.get_or_insert(error);
        }
        None
    };
    if let Some(existing) = scope.get_slot::<ModuleMap>().and_then(|m| {
        let path = import_path(&referrer_path, &specifier, &m.root).ok()?;
        m.by_path.get(&path).cloned()
    }) {
        return Some(v8::Local::new(scope, existing));
    }
    let found = match scope.get_slot::<ModuleMap>() {
        Some(map) => map.find_source(&referrer_path, &specifier),
        None => Err("no module map".to_string()),
    };
    let (path, source) = match found {
        Ok(found) => found,
        Err(reason) => return fail(scope, reason),
    };
    if let Some(map) = scope.get_slot_mut::<ModuleMap>() {
        map.sources.insert(path.clone(), source.clone());
    }
    match compile_any(scope, &path, &source) {
        Ok(module) => Some(module),
        Err(error) => {
            if let Some(map) = scope.get_slot_mut::<ModuleMap>() {
                map.error.get_or_insert(error);
            }
            None
        }
    }
}

thread_local! {
    /// An isolate for compiling (never running) scripts on a control thread: see [`bundle`].
    static COMPILER: std::cell::RefCell<Option<Isolate>> = const { std::cell::RefCell::new(None) };
}

/// Compiles `spec`'s script and every module it imports (without running anything), and returns
/// its format (resolved if `Auto`) and the sources of all its modules, by path: the bundle a core
/// loads a tenant from. Syntax errors and unresolvable imports are reported here, with
/// file:line:column. Runs on the calling thread in one long-lived isolate.
pub fn bundle(spec: &WorkerSpec) -> Result<(ScriptFormat, BTreeMap<PathBuf, ModuleSource>), LoadError> {
    engine::init().map_err(|message| bootstrap_error("snapshot", &message))?;
    COMPILER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Isolate::new("compiler", DEFAULT_HEAP_MAX_BYTES).map_err(|m| bootstrap_error("isolate", &m))?);
        }
        let isolate = slot.as_mut().expect("set above");
        let result = in_context!(isolate, Duration::MAX, |scope, _handles| {
            scope.set_slot(ModuleMap {
                root: spec.path.parent().map(Path::to_path_buf).unwrap_or_default(),
                preloaded: spec.modules.clone(),
                read_disk: spec.read_disk,
                ..ModuleMap::default()
            });
            let result = bundle_in(scope, spec);
            // Drop the compiled modules' handles while the isolate is entered.
            let map = scope.remove_slot::<ModuleMap>();
            result.map(|format| (format, map.map(|m| m.sources).unwrap_or_default()))
        });
        result.unwrap_or_else(|| Err(bootstrap_error("context", "the compiler isolate has no context")))
    })
}

fn bundle_in(scope: &mut v8::PinScope, spec: &WorkerSpec) -> Result<ScriptFormat, LoadError> {
    let file = spec.path.display().to_string();
    let format = resolve_format(scope, spec);
    if format == ScriptFormat::ServiceWorker {
        v8::tc_scope!(let tc, scope);
        let origin = script_origin(tc, &file, false);
        let code = v8::String::new(tc, &spec.source)
            .ok_or_else(|| LoadError::Evaluate { file: file.clone(), message: "the script is too large".into() })?;
        if v8::Script::compile(tc, code, Some(&origin)).is_none() {
            return Err(compile_error(tc, &file));
        }
        return Ok(format);
    }
    // Compile the module graph breadth-first, bounded so an import cycle or a huge graph ends.
    const MODULES_MAX: usize = 1000;
    let main = compile_module_at(scope, &spec.path, &spec.source)?;
    let mut queue = vec![(spec.path.clone(), main.get_module_requests())];
    let mut seen = std::collections::BTreeSet::from([spec.path.clone()]);
    while let Some((referrer, requests)) = queue.pop() {
        for i in 0..requests.length() {
            let Some(request) = requests.get(scope, i).and_then(|d| v8::Local::<v8::ModuleRequest>::try_from(d).ok())
            else {
                continue;
            };
            let specifier = request.get_specifier().to_rust_string_lossy(scope);
            let found = scope.get_slot::<ModuleMap>().map(|m| m.find_source(&referrer, &specifier));
            let (path, source) = match found {
                Some(Ok(found)) => found,
                Some(Err(reason)) => {
                    return Err(LoadError::Import { file: referrer.display().to_string(), specifier, reason });
                }
                None => return Err(bootstrap_error("modules", "the module map is missing")),
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            if seen.len() > MODULES_MAX {
                return Err(LoadError::Import { file, specifier, reason: format!("more than {MODULES_MAX} modules") });
            }
            if let Some(map) = scope.get_slot_mut::<ModuleMap>() {
                map.sources.insert(path.clone(), source.clone());
            }
            if let ModuleSource::Wasm(wasm) = &source {
                // Checked only: no isolate instantiates it here, so no tenant's memory limit
                // applies, and this compilation is not kept for the cores to share.
                crate::api::wasm::check(scope, wasm)
                    .map_err(|message| LoadError::Evaluate { file: path.display().to_string(), message })?;
                continue;
            }
            let module = compile_any(scope, &path, &source)?;
            if matches!(source, ModuleSource::Js(_)) {
                queue.push((path, module.get_module_requests()));
            }
        }
    }
    Ok(format)
}
