//! The bridge between tenant JavaScript and Rust: the only way a script reaches isobar's Rust code.
//!
//! Everything an API area exposes to JavaScript goes through here:
//! - **ops** ([`OpDecl`]): native functions on the private `ops` object that isobar's own JS
//!   receives at bootstrap. An op is written as a closure that returns `Result<_, JsError>`;
//!   [`guard`] turns an `Err` into the JS exception it names (TypeError, RangeError, a
//!   DOMException) and a panic into a terminated isolate, so nothing a script passes can unwind
//!   through V8 (which would abort the process).
//! - **native classes** ([`class`]): Web API classes whose methods are Rust callbacks and whose
//!   state lives in V8 internal fields (Request, Response, Headers): no per-isolate JavaScript
//!   runs on the request path, so a cold isolate costs little.
//! - **argument conversion** ([`args`]): every string and buffer that crosses is size-checked,
//!   and every V8 allocation that can fail (a string beyond V8's maximum length) becomes a
//!   RangeError instead of an `unwrap`.
//! - **resources** ([`resources`]) and **async ops** ([`async_ops`]): Rust state a script holds by
//!   id, and promises an op returns now and the core completes later, from its ring.
//! - **request contexts** ([`context`]): which request a piece of JS works for, carried across
//!   awaits by V8's continuation-preserved embedder data.
//!
//! The bridge must not know any one API's semantics (they live in `api/<area>/`), and must never
//! let a tenant's input become a panic or an unbounded allocation.

pub mod args;
pub mod async_ops;
pub mod class;
pub mod context;
pub mod hooks;
pub mod resources;

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use crate::state::IsolateState;

pub(crate) type Scope<'s, 'i> = v8::PinScope<'s, 'i>;

/// The JavaScript error an op throws. Messages are written for the tenant's developer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsError {
    /// A plain `Error` (what workerd throws where no more specific type applies).
    Plain(Cow<'static, str>),
    Type(Cow<'static, str>),
    Range(Cow<'static, str>),
    Syntax(Cow<'static, str>),
    /// A `DOMException` with this name (e.g. "InvalidStateError", "DataError").
    Dom {
        name: &'static str,
        message: Cow<'static, str>,
    },
    /// An exception is already pending in V8 (a script callback threw, or execution was
    /// terminated): nothing more to throw.
    Pending,
}

impl JsError {
    pub fn type_error(message: impl Into<Cow<'static, str>>) -> JsError {
        JsError::Type(message.into())
    }

    pub fn range_error(message: impl Into<Cow<'static, str>>) -> JsError {
        JsError::Range(message.into())
    }

    pub fn dom(name: &'static str, message: impl Into<Cow<'static, str>>) -> JsError {
        JsError::Dom { name, message: message.into() }
    }

    /// The exception value, made in `scope`.
    pub fn to_value<'s>(&self, scope: &mut Scope<'s, '_>) -> Option<v8::Local<'s, v8::Value>> {
        type Make<'s, 'a, 'b> = fn(&'a mut Scope<'s, 'b>, v8::Local<'s, v8::String>) -> v8::Local<'s, v8::Value>;
        let (text, make): (&str, Make<'s, '_, '_>) = match self {
            JsError::Plain(m) => (m, |s, m| v8::Exception::error(s, m)),
            JsError::Type(m) => (m, |s, m| v8::Exception::type_error(s, m)),
            JsError::Range(m) => (m, |s, m| v8::Exception::range_error(s, m)),
            JsError::Syntax(m) => (m, |s, m| v8::Exception::syntax_error(s, m)),
            JsError::Dom { name, message } => return new_dom_exception(scope, name, message),
            JsError::Pending => return None,
        };
        let message = new_string_lossy(scope, text);
        Some(make(scope, message))
    }

    /// Throws this error in `scope` (nothing if an exception is already pending).
    pub fn throw(&self, scope: &mut Scope) {
        if let Some(exception) = self.to_value(scope) {
            scope.throw_exception(exception);
        }
    }
}

/// A `DOMException` made through the constructor isobar's JS registered (the class lives in
/// `api/events`); a plain Error with the name set if the context has none yet.
fn new_dom_exception<'s>(scope: &mut Scope<'s, '_>, name: &str, message: &str) -> Option<v8::Local<'s, v8::Value>> {
    let message = new_string_lossy(scope, message);
    let name_value = new_string_lossy(scope, name);
    if let Some(ctor) = hooks::get(scope, hooks::Hook::DomException) {
        let args = [message.into(), name_value.into()];
        if let Some(error) = ctor.new_instance(scope, &args) {
            return Some(error.into());
        }
        return None; // the constructor threw (termination): that exception is pending
    }
    let error = v8::Exception::error(scope, message);
    if let Ok(object) = v8::Local::<v8::Object>::try_from(error) {
        let key = v8::String::new_from_one_byte(scope, b"name", v8::NewStringType::Internalized)?;
        object.set(scope, key.into(), name_value.into());
    }
    Some(error)
}

/// A JS string of `text`, truncated to what V8 accepts instead of failing: for messages, where
/// a shorter message is better than none.
pub fn new_string_lossy<'s>(scope: &mut Scope<'s, '_>, text: &str) -> v8::Local<'s, v8::String> {
    const MESSAGE_BYTES_MAX: usize = 64 << 10;
    let mut end = text.len().min(MESSAGE_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    v8::String::new(scope, &text[..end]).unwrap_or_else(|| v8::String::empty(scope))
}

/// What an op gives back.
pub enum Ret<'s> {
    Undefined,
    Value(v8::Local<'s, v8::Value>),
    Bool(bool),
    Number(f64),
    Uint32(u32),
    Int32(i32),
    Null,
}

impl<'s, T> From<v8::Local<'s, T>> for Ret<'s>
where
    v8::Local<'s, T>: Into<v8::Local<'s, v8::Value>>,
{
    fn from(value: v8::Local<'s, T>) -> Ret<'s> {
        Ret::Value(value.into())
    }
}

impl From<()> for Ret<'_> {
    fn from(_: ()) -> Self {
        Ret::Undefined
    }
}

impl From<bool> for Ret<'_> {
    fn from(value: bool) -> Self {
        Ret::Bool(value)
    }
}

impl From<f64> for Ret<'_> {
    fn from(value: f64) -> Self {
        Ret::Number(value)
    }
}

impl From<u32> for Ret<'_> {
    fn from(value: u32) -> Self {
        Ret::Uint32(value)
    }
}

impl<'s, T: Into<Ret<'s>>> From<Option<T>> for Ret<'s> {
    fn from(value: Option<T>) -> Self {
        match value {
            Some(v) => v.into(),
            None => Ret::Undefined,
        }
    }
}

impl<'s> Ret<'s> {
    fn set(self, rv: &mut v8::ReturnValue<'s, v8::Value>) {
        match self {
            Ret::Undefined => {}
            Ret::Value(v) => rv.set(v),
            Ret::Bool(b) => rv.set_bool(b),
            Ret::Number(n) => rv.set_double(n),
            Ret::Uint32(n) => rv.set_uint32(n),
            Ret::Int32(n) => rv.set_int32(n),
            Ret::Null => rv.set_null(),
        }
    }
}

/// Runs the body of a native callback: its `Err` becomes a JS exception, its panic a condemned
/// isolate (the scheduler answers 503 and discards it) with execution terminated. Every native
/// callback isobar registers with V8 goes through here.
pub fn guard<'s, 'i, R, F>(
    scope: &mut Scope<'s, 'i>,
    name: &'static str,
    mut rv: v8::ReturnValue<'s, v8::Value>,
    body: F,
) where
    R: Into<Ret<'s>>,
    F: FnOnce(&mut Scope<'s, 'i>) -> Result<R, JsError>,
{
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(scope)));
    match result {
        Ok(Ok(value)) => value.into().set(&mut rv),
        Ok(Err(error)) => error.throw(scope),
        Err(payload) => on_panic(scope, name, payload.as_ref()),
    }
}

/// The same guard for callbacks that return nothing to JS (V8 hooks such as the promise reject
/// callback or a module resolver): a panic condemns the isolate.
pub fn guard_hook<'s, 'i, R: Default>(
    scope: &mut Scope<'s, 'i>,
    name: &'static str,
    body: impl FnOnce(&mut Scope<'s, 'i>) -> R,
) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(scope))) {
        Ok(value) => value,
        Err(payload) => {
            on_panic(scope, name, payload.as_ref());
            R::default()
        }
    }
}

fn on_panic(scope: &mut Scope, name: &str, payload: &(dyn std::any::Any + Send)) {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    tracing::error!("isobar bug: native callback {name} panicked ({what}); the isolate is terminated and discarded");
    if let Some(state) = state_of(scope) {
        state.borrow_mut().panicked = true;
    }
    scope.terminate_execution();
}

/// The isolate's state, if this isolate has one (the snapshot builder's has none).
pub fn state_of(scope: &mut Scope) -> Option<Rc<RefCell<IsolateState>>> {
    scope.get_slot::<Rc<RefCell<IsolateState>>>().cloned()
}

/// The isolate's state; ops run only in isolates that have one, except during the snapshot's
/// warm-up, which gets a detached state.
pub fn state(scope: &mut Scope) -> Rc<RefCell<IsolateState>> {
    state_of(scope).unwrap_or_else(|| Rc::new(RefCell::new(IsolateState::new("snapshot"))))
}

/// One op: its name on the `ops` object and its native function.
#[derive(Clone, Copy)]
pub struct OpDecl {
    pub name: &'static str,
    pub callback: v8::FunctionCallback,
}

impl std::fmt::Debug for OpDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Declares an op: `op!(fn print(scope, args) -> Result<(), JsError> { ... })` defines a native
/// callback whose body runs inside [`guard`], and `op_decl!(print)` lists it.
#[macro_export]
macro_rules! op {
    ($(#[$meta:meta])* fn $name:ident($scope:ident, $args:ident) $body:block) => {
        $(#[$meta])*
        fn $name<'s, 'i>(
            $scope: &mut v8::PinScope<'s, 'i>,
            $args: v8::FunctionCallbackArguments<'s>,
            rv: v8::ReturnValue<'s, v8::Value>,
        ) {
            $crate::bridge::guard($scope, stringify!($name), rv, |$scope| $body);
        }
    };
}

/// `op_decl!("jsName", rust_fn)`: an [`OpDecl`] for an op defined with [`op!`].
#[macro_export]
macro_rules! op_decl {
    ($js:literal, $name:ident) => {
        $crate::bridge::OpDecl { name: $js, callback: v8::MapFnTo::map_fn_to($name) }
    };
}
