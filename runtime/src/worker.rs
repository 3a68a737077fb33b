//! A Worker: one tenant's script loaded into one V8 isolate, and the requests it is serving.
//!
//! Many Workers live on one core thread. rusty_v8 enters an isolate when it is created and
//! expects isolates to be dropped in reverse creation order; isobar instead keeps every isolate
//! *exited* while it is idle and enters it only for the duration of one call (`Entered`), so
//! isolates can be used, and dropped, in any order.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use crate::engine;
use crate::ops;
use crate::state::{IsolateState, Outcome};

/// isobar's JavaScript API, evaluated into every context in this order.
const BOOTSTRAP: &[(&str, &str)] = &[
    ("isobar:core/00_core.js", include_str!("js/00_core.js")),
    ("isobar:core/10_url.js", include_str!("js/10_url.js")),
    ("isobar:core/20_headers.js", include_str!("js/20_headers.js")),
    ("isobar:core/30_fetch.js", include_str!("js/30_fetch.js")),
    ("isobar:core/90_worker.js", include_str!("js/90_worker.js")),
];

/// How a script is meant to be run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScriptFormat {
    /// ES module if the script uses `import`/`export`, else a classic service-worker script.
    #[default]
    Auto,
    /// `export default { fetch(request, env, ctx) }`
    Module,
    /// `addEventListener('fetch', event => event.respondWith(...))`
    ServiceWorker,
}

/// What a core needs to create a Worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub name: String,
    /// The main script's path; relative imports resolve against its directory.
    pub path: PathBuf,
    pub source: String,
    pub format: ScriptFormat,
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
    /// isobar's own bootstrap JavaScript failed; a bug in isobar.
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

/// Handles into the isolate; they must be dropped while the isolate is alive.
struct Handles {
    context: v8::Global<v8::Context>,
    dispatch: v8::Global<v8::Function>,
    fire_timer: v8::Global<v8::Function>,
}

pub struct Worker {
    handles: Option<Handles>,
    state: Rc<RefCell<IsolateState>>,
    /// Exited whenever no call is in progress; see the module docs.
    isolate: ManuallyDrop<v8::OwnedIsolate>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.state.borrow().name).finish()
    }
}

/// Enters an isolate for the lifetime of the guard, and gives access to it meanwhile.
struct Entered<'a>(&'a mut v8::OwnedIsolate);

impl<'a> Entered<'a> {
    fn new(isolate: &'a mut v8::OwnedIsolate) -> Entered<'a> {
        // SAFETY: every Worker keeps its isolate exited between calls (Worker::new exits it right
        // after creation), and guards are strictly nested on this thread, so enter/exit pairs
        // match V8's per-thread entered-isolate stack.
        unsafe { isolate.enter() };
        Entered(isolate)
    }
}

impl std::ops::Deref for Entered<'_> {
    type Target = v8::Isolate;
    fn deref(&self) -> &v8::Isolate {
        self.0
    }
}

impl std::ops::DerefMut for Entered<'_> {
    fn deref_mut(&mut self) -> &mut v8::Isolate {
        self.0
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // SAFETY: paired with the enter in Entered::new; no other isolate was entered on this
        // thread in between without being exited again (guards are scoped).
        unsafe { self.0.exit() };
    }
}

impl Worker {
    /// Creates the isolate, installs isobar's API and loads the tenant's script.
    pub fn new(spec: &WorkerSpec) -> Result<Worker, LoadError> {
        engine::init();
        let mut isolate = v8::Isolate::new(v8::CreateParams::default());
        isolate.set_microtasks_policy(v8::MicrotasksPolicy::Explicit);
        isolate.set_capture_stack_trace_for_uncaught_exceptions(true, 10);
        isolate.set_promise_reject_callback(promise_reject_callback);
        let state = Rc::new(RefCell::new(IsolateState::new(&spec.name)));
        isolate.set_slot(state.clone());
        isolate.set_slot(ModuleMap::default());
        // SAFETY: Isolate::new entered the new isolate; this exits it again so the isolate is
        // idle-and-exited like every other (see the module docs). Nothing else was entered after.
        unsafe { isolate.exit() };
        let mut worker = Worker { handles: None, state, isolate: ManuallyDrop::new(isolate) };
        let handles = worker.load(spec)?;
        worker.handles = Some(handles);
        Ok(worker)
    }

    pub fn name(&self) -> Rc<str> {
        self.state.borrow().name.clone()
    }

    fn load(&mut self, spec: &WorkerSpec) -> Result<Handles, LoadError> {
        let mut entered = Entered::new(&mut self.isolate);
        let isolate: &mut v8::Isolate = &mut entered;
        v8::scope!(let hs, isolate);
        let context = v8::Context::new(hs, Default::default());
        let scope = &mut v8::ContextScope::new(hs, context);
        let global = context.global(scope);

        let ops_object = v8::Object::new(scope);
        for (name, callback) in ops::table() {
            let function =
                v8::Function::new_raw(scope, callback).ok_or_else(|| bootstrap_error("ops", "cannot create an op"))?;
            let key = v8::String::new(scope, name).unwrap();
            ops_object.set(scope, key.into(), function.into());
        }
        let internals = v8::Object::new(scope);
        for (file, source) in BOOTSTRAP {
            v8::tc_scope!(let tc, scope);
            let init = run_classic(tc, file, source).map_err(|m| bootstrap_error(file, &m))?;
            let init = v8::Local::<v8::Function>::try_from(init)
                .map_err(|_| bootstrap_error(file, "the script does not evaluate to a function"))?;
            let undefined = v8::undefined(tc).into();
            if init.call(tc, undefined, &[ops_object.into(), internals.into(), global.into()]).is_none() {
                return Err(bootstrap_error(file, &exception_text(tc)));
            }
        }

        let file = spec.path.display().to_string();
        let format = match spec.format {
            ScriptFormat::Auto if looks_like_module(scope, spec) => ScriptFormat::Module,
            ScriptFormat::Auto => ScriptFormat::ServiceWorker,
            f => f,
        };
        match format {
            ScriptFormat::Module => load_module(scope, spec, internals)?,
            _ => {
                {
                    v8::tc_scope!(let tc, scope);
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
                let check = get_function(scope, internals, "checkServiceWorker")?;
                let undefined = v8::undefined(scope).into();
                let verdict = check.call(scope, undefined, &[]);
                if let Some(message) = verdict.filter(|v| v.is_string()) {
                    return Err(LoadError::NoHandler { file, message: message.to_rust_string_lossy(scope) });
                }
            }
        }

        let dispatch = get_function(scope, internals, "dispatch")?;
        let fire_timer = get_function(scope, internals, "fireTimer")?;
        Ok(Handles {
            context: v8::Global::new(scope, context),
            dispatch: v8::Global::new(scope, dispatch),
            fire_timer: v8::Global::new(scope, fire_timer),
        })
    }

    /// Starts one request. Its outcome arrives later through [`Worker::take_outcomes`]; the
    /// handler may finish during this call or after later microtask checkpoints and timers.
    pub fn dispatch(&mut self, id: u64, request: &RequestParts<'_>, now: Instant) {
        self.advance_clock(now);
        let Some(handles) = self.handles.as_ref() else { return };
        let mut entered = Entered::new(&mut self.isolate);
        let isolate: &mut v8::Isolate = &mut entered;
        v8::scope!(let hs, isolate);
        let context = v8::Local::new(hs, &handles.context);
        let scope = &mut v8::ContextScope::new(hs, context);
        let dispatch = v8::Local::new(scope, &handles.dispatch);

        let id_value = v8::Number::new(scope, id as f64).into();
        let method = v8::String::new(scope, request.method).unwrap().into();
        let url = v8::String::new_from_utf8(scope, request.url.as_bytes(), v8::NewStringType::Normal).unwrap().into();
        let mut header_values: Vec<v8::Local<v8::Value>> = Vec::with_capacity(request.headers.len() * 2);
        for (name, value) in request.headers {
            header_values.push(v8::String::new(scope, name).unwrap().into());
            // Header values are ByteStrings: each byte one Latin-1 character, as browsers do.
            header_values.push(v8::String::new_from_one_byte(scope, value, v8::NewStringType::Normal).unwrap().into());
        }
        let headers = v8::Array::new_with_elements(scope, &header_values).into();
        let body: v8::Local<v8::Value> = if request.body.is_empty() {
            v8::null(scope).into()
        } else {
            match ops::new_u8_array(scope, request.body.to_vec()) {
                Some(array) => array.into(),
                None => v8::null(scope).into(),
            }
        };
        v8::tc_scope!(let tc, scope);
        let undefined = v8::undefined(tc).into();
        if dispatch.call(tc, undefined, &[id_value, method, url, headers, body]).is_none() {
            let message = exception_text(tc);
            self.state.borrow_mut().outcomes.push(Outcome::Failed { id, message });
        }
    }

    /// Runs queued microtasks and the platform's foreground tasks: this is where awaited
    /// promises resume.
    pub fn run_microtasks(&mut self) {
        let mut entered = Entered::new(&mut self.isolate);
        let isolate: &mut v8::Isolate = &mut entered;
        let Some(handles) = self.handles.as_ref() else { return };
        {
            v8::scope!(let hs, isolate);
            let context = v8::Local::new(hs, &handles.context);
            let scope = &mut v8::ContextScope::new(hs, context);
            scope.perform_microtask_checkpoint();
        }
        engine::pump(isolate);
        self.state.borrow_mut().report_unhandled_rejections();
    }

    /// Fires every timer due at `now`, each followed by a microtask checkpoint.
    pub fn fire_timers(&mut self, now: Instant) {
        self.advance_clock(now);
        let Some(handles) = self.handles.as_ref() else { return };
        let mut entered = Entered::new(&mut self.isolate);
        let isolate: &mut v8::Isolate = &mut entered;
        v8::scope!(let hs, isolate);
        let context = v8::Local::new(hs, &handles.context);
        let scope = &mut v8::ContextScope::new(hs, context);
        let fire = v8::Local::new(scope, &handles.fire_timer);
        // A bounded batch: a zero-delay setInterval must not starve the rest of the core.
        for _ in 0..1000 {
            let due = self.state.borrow_mut().timers.pop_due(now);
            let Some(timer_id) = due else { break };
            let undefined = v8::undefined(scope).into();
            let arg = v8::Number::new(scope, timer_id as f64).into();
            v8::tc_scope!(let tc, scope);
            let _ = fire.call(tc, undefined, &[arg]);
            tc.perform_microtask_checkpoint();
        }
    }

    pub fn next_timer(&self) -> Option<Instant> {
        self.state.borrow().timers.next_deadline()
    }

    pub fn has_timers(&self) -> bool {
        !self.state.borrow().timers.is_empty()
    }

    /// Moves finished requests into `out`.
    pub fn take_outcomes(&mut self, out: &mut Vec<Outcome>) {
        out.append(&mut self.state.borrow_mut().outcomes);
    }

    fn advance_clock(&mut self, now: Instant) {
        let mut state = self.state.borrow_mut();
        state.clock.advance(now);
        state.timers.set_base(now);
    }

    /// Heap statistics of this isolate.
    pub fn heap_used_bytes(&mut self) -> usize {
        let mut entered = Entered::new(&mut self.isolate);
        entered.get_heap_statistics().used_heap_size()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: the isolate is idle and exited (module docs); rusty_v8's OwnedIsolate::drop
        // requires it to be the current isolate and exits it itself, so it is entered here and
        // not exited again. `handles` are reset first, while the isolate is still alive.
        unsafe { self.isolate.enter() };
        self.handles = None;
        // SAFETY: the isolate is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.isolate) };
    }
}

extern "C" fn promise_reject_callback(message: v8::PromiseRejectMessage) {
    // A rejection with no handler is only *possibly* unhandled: a handler may be attached
    // later in the same turn (as isobar's own dispatch does for an async fetch handler that
    // throws before its first await). Like browsers, isobar notes it here and reports it only
    // if it is still unhandled after the microtask checkpoint (Worker::run_microtasks).
    let promise = message.get_promise();
    let hash = promise.get_identity_hash().get();
    v8::callback_scope!(unsafe scope, &message);
    let Some(state) = scope.get_slot::<Rc<RefCell<IsolateState>>>().cloned() else { return };
    match message.get_event() {
        v8::PromiseRejectEvent::PromiseRejectWithNoHandler => {
            let text = match message.get_value() {
                Some(value) => describe_value(scope, value),
                None => "undefined".to_string(),
            };
            state.borrow_mut().note_unhandled_rejection(hash, text);
        }
        v8::PromiseRejectEvent::PromiseHandlerAddedAfterReject => state.borrow_mut().forget_unhandled_rejection(hash),
        _ => {}
    }
}

fn describe_value(scope: &mut v8::PinScope, value: v8::Local<v8::Value>) -> String {
    if let Ok(object) = v8::Local::<v8::Object>::try_from(value) {
        let key = v8::String::new(scope, "stack").unwrap();
        if let Some(stack) = object.get(scope, key.into()).filter(|s| s.is_string()) {
            return stack.to_rust_string_lossy(scope);
        }
    }
    value.to_rust_string_lossy(scope)
}

fn bootstrap_error(file: &str, message: &str) -> LoadError {
    LoadError::Bootstrap { file: file.to_string(), message: message.to_string() }
}

fn get_function<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    object: v8::Local<v8::Object>,
    name: &str,
) -> Result<v8::Local<'s, v8::Function>, LoadError> {
    let key = v8::String::new(scope, name).unwrap();
    object
        .get(scope, key.into())
        .and_then(|v| v8::Local::<v8::Function>::try_from(v).ok())
        .ok_or_else(|| bootstrap_error("internals", &format!("internals.{name} is not a function")))
}

fn script_origin<'s>(scope: &mut v8::PinScope<'s, '_>, name: &str, is_module: bool) -> v8::ScriptOrigin<'s> {
    let name = v8::String::new(scope, name).unwrap();
    v8::ScriptOrigin::new(scope, name.into(), 0, 0, false, 0, None, false, false, is_module, None)
}

fn run_classic<'s>(
    tc: &mut v8::PinnedRef<'s, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>,
    file: &str,
    source: &str,
) -> Result<v8::Local<'s, v8::Value>, String> {
    let origin = script_origin(tc, file, false);
    let code = v8::String::new(tc, source).ok_or("source too large")?;
    let script = v8::Script::compile(tc, code, Some(&origin)).ok_or_else(|| exception_text(tc))?;
    script.run(tc).ok_or_else(|| exception_text(tc))
}

/// The text of the exception a TryCatch holds: its stack if it has one.
fn exception_text(tc: &mut v8::PinnedRef<'_, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>) -> String {
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
    /// The first resolution failure, reported as a LoadError.
    error: Option<LoadError>,
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

fn load_module(scope: &mut v8::PinScope, spec: &WorkerSpec, internals: v8::Local<v8::Object>) -> Result<(), LoadError> {
    let file = spec.path.display().to_string();
    let root = spec.path.parent().map(Path::to_path_buf).unwrap_or_default();
    scope.get_slot_mut::<ModuleMap>().expect("module map slot is set at creation").root = root;
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
    let namespace = module.get_module_namespace();
    let set_exports = get_function(scope, internals, "setModuleExports")?;
    let undefined = v8::undefined(scope).into();
    let verdict = set_exports.call(scope, undefined, &[namespace]);
    if let Some(message) = verdict.filter(|v| v.is_string()) {
        return Err(LoadError::NoHandler { file, message: message.to_rust_string_lossy(scope) });
    }
    Ok(())
}

fn resolve_module<'s>(
    context: v8::Local<'s, v8::Context>,
    specifier: v8::Local<'s, v8::String>,
    _import_attributes: v8::Local<'s, v8::FixedArray>,
    referrer: v8::Local<'s, v8::Module>,
) -> Option<v8::Local<'s, v8::Module>> {
    v8::callback_scope!(unsafe scope, context);
    let specifier = specifier.to_rust_string_lossy(scope);
    let (referrer_path, root) = {
        let map = scope.get_slot::<ModuleMap>()?;
        (map.path_of.get(&referrer.get_identity_hash().get())?.clone(), map.root.clone())
    };
    let fail = |scope: &mut v8::PinScope, reason: String| {
        let error =
            LoadError::Import { file: referrer_path.display().to_string(), specifier: specifier.clone(), reason };
        if let Some(map) = scope.get_slot_mut::<ModuleMap>() {
            map.error.get_or_insert(error);
        }
        None
    };
    if !(specifier.starts_with("./") || specifier.starts_with("../") || specifier.starts_with('/')) {
        return fail(scope, "only relative imports (./x.js) of files beside the worker are supported".into());
    }
    let base = referrer_path.parent().unwrap_or(Path::new("."));
    let joined = base.join(&specifier);
    let path = match joined.canonicalize() {
        Ok(p) => p,
        Err(e) => return fail(scope, e.to_string()),
    };
    let canonical_root = root.canonicalize().unwrap_or(root);
    if !path.starts_with(&canonical_root) {
        return fail(
            scope,
            format!("{} is outside the worker's directory {}", path.display(), canonical_root.display()),
        );
    }
    if let Some(existing) = scope.get_slot::<ModuleMap>().and_then(|m| m.by_path.get(&path).cloned()) {
        return Some(v8::Local::new(scope, existing));
    }
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => return fail(scope, e.to_string()),
    };
    match compile_module_at(scope, &path, &source) {
        Ok(module) => Some(module),
        Err(error) => {
            if let Some(map) = scope.get_slot_mut::<ModuleMap>() {
                map.error.get_or_insert(error);
            }
            None
        }
    }
}
