//! The JavaScript functions Rust calls, by a typed name instead of a string looked up at run time.
//!
//! isobar's bootstrap JS registers each hook on `internals.hooks` under the name [`Hook::name`]
//! gives. When the snapshot is built, every hook is read once and stored in the snapshot's
//! context data at a fixed index; a missing or misspelt hook fails the snapshot build (an isobar
//! bug found at start-up, never during a request). A new isolate takes them back into a
//! [`Hooks`] slot when its context is made.

use super::Scope;

macro_rules! hooks {
    ($($variant:ident => $js:literal,)*) => {
        /// A function isobar's JS gives Rust.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Hook { $($variant,)* }

        impl Hook {
            pub const ALL: &'static [Hook] = &[$(Hook::$variant,)*];

            /// The property of `internals.hooks` it is registered under.
            pub fn name(self) -> &'static str {
                match self { $(Hook::$variant => $js,)* }
            }
        }
    };
}

hooks! {
    // api/events
    DomException => "DOMException",
    ReportError => "reportError",
    UnhandledRejection => "unhandledRejection",
    // api/fetch
    HeaderPairs => "headerPairs",
    ArrayValues => "arrayValues",
    ExtractBody => "extractBody",
    StreamFromBody => "streamFromBody",
    StreamDisturbed => "streamDisturbed",
    TeeStream => "teeStream",
    ConsumeStream => "consumeStream",
    MakeBlob => "makeBlob",
    ParseFormData => "parseFormData",
    IsAbortSignal => "isAbortSignal",
    NewAbortSignal => "newAbortSignal",
    StreamFromSource => "streamFromSource",
    StreamReader => "streamReader",
    ReadChunk => "readChunk",
    StreamKnownLength => "streamKnownLength",
    // api/kv
    KvNamespace => "kvNamespace",
    // api/service
    ServiceBinding => "serviceBinding",
    // api/websocket
    BindWebSocket => "bindWebSocket",
    WebSocketEvent => "webSocketEvent",
    // api/wasm
    InstallWasm => "installWasm",
    // api/worker
    DispatchFetch => "dispatchFetch",
    CheckServiceWorker => "checkServiceWorker",
    SetGlobalBindings => "setGlobalBindings",
    RunScheduled => "runScheduled",
}

/// Index of the first hook among the snapshot context's data (0 is the `internals` object).
pub const FIRST_CONTEXT_DATA_INDEX: usize = 1;

/// One isolate's hooks, as V8 handles (kept in an isolate slot).
pub struct Hooks(pub Vec<v8::Global<v8::Function>>);

/// The hook `hook` of this isolate, if it has its hooks (every isolate made from the snapshot).
pub fn get<'s>(scope: &mut Scope<'s, '_>, hook: Hook) -> Option<v8::Local<'s, v8::Function>> {
    // A Local straight from the slot's Global (a clone would create a global handle per call).
    let global = scope.get_slot::<Hooks>()?.0.get(hook as usize)?;
    Some(v8::Local::new(scope, global))
}

/// Reads every hook from `internals.hooks` (at snapshot build time); the error names the first
/// one missing.
pub fn collect<'s>(
    scope: &mut Scope<'s, '_>,
    internals: v8::Local<'s, v8::Object>,
) -> Result<Vec<v8::Local<'s, v8::Function>>, String> {
    let key = v8::String::new(scope, "hooks").ok_or("hooks")?;
    let table = internals
        .get(scope, key.into())
        .and_then(|v| v8::Local::<v8::Object>::try_from(v).ok())
        .ok_or("internals.hooks is not an object")?;
    let mut out = Vec::with_capacity(Hook::ALL.len());
    for hook in Hook::ALL {
        let key = v8::String::new(scope, hook.name()).ok_or("hook name")?;
        let function = table
            .get(scope, key.into())
            .and_then(|v| v8::Local::<v8::Function>::try_from(v).ok())
            .ok_or_else(|| format!("internals.hooks.{} is not a function", hook.name()))?;
        out.push(function);
    }
    Ok(out)
}
