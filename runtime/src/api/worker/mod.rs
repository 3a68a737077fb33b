//! How requests reach a tenant's code: the handler of a module worker (called from Rust), the
//! FetchEvent of a service worker (`worker.js`), and `ExecutionContext` (`ctx.waitUntil()`,
//! `ctx.passThroughOnException()`), native.

use crate::bridge::class::{self, ClassDecl, ClassId};
use crate::bridge::{self, JsError, Scope};
use crate::op;

pub const JS: (&str, &str) = ("isobar:worker", include_str!("worker.js"));

/// ExecutionContext fields: the request it belongs to.
const REQUEST: usize = 1;
const FIELDS: usize = 2;

/// How many `waitUntil()` promises one request may register.
pub const WAIT_UNTIL_MAX: u32 = 1000;

pub fn class() -> ClassDecl {
    use v8::MapFnTo;
    let mut decl = ClassDecl::new(ClassId::ExecutionContext, "ExecutionContext", FIELDS);
    decl.methods = vec![
        ("waitUntil", wait_until.map_fn_to(), 1),
        ("passThroughOnException", pass_through_on_exception.map_fn_to(), 0),
    ];
    decl
}

/// The `ctx` of request `id`.
pub fn new_context<'s>(scope: &mut Scope<'s, '_>, id: u64) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let ctx = class::new_instance(scope, ClassId::ExecutionContext)?;
    Ok(context_into(scope, ctx, id))
}

/// [`new_context`] into `ctx`, an ExecutionContext made by `class::new_instance` and not yet
/// given its request.
pub fn context_into<'s>(
    scope: &mut Scope<'s, '_>,
    ctx: v8::Local<'s, v8::Object>,
    id: u64,
) -> v8::Local<'s, v8::Object> {
    let id = v8::Number::new(scope, id as f64);
    class::set_field(ctx, REQUEST, id.into());
    ctx
}

fn request_of(scope: &mut Scope, ctx: v8::Local<v8::Object>) -> Option<u64> {
    let id = class::field(scope, ctx, REQUEST).number_value(scope)?;
    (id >= 0.0).then_some(id as u64)
}

op!(fn wait_until(scope, args) {
    let Some(id) = request_of(scope, args.this()) else { return Ok(()) };
    let value = args.get(0);
    // Any value is accepted; a non-promise settles at once.
    let resolver = v8::PromiseResolver::new(scope).ok_or(JsError::Pending)?;
    resolver.resolve(scope, value);
    let promise = resolver.get_promise(scope);
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    let Some(request) = state.requests.get_mut(id) else {
        // The request's work is already over: as in workerd, the promise is no longer awaited.
        return Err(JsError::type_error("waitUntil(): this request has already finished"));
    };
    if request.wait_until >= WAIT_UNTIL_MAX {
        return Err(JsError::range_error(format!("waitUntil(): more than {WAIT_UNTIL_MAX} promises for one request")));
    }
    request.wait_until += 1;
    let global = v8::Global::new(scope, promise);
    state.wait_until.push((id, global));
    Ok(())
});

op!(fn pass_through_on_exception(scope, args) {
    if let Some(id) = request_of(scope, args.this()) {
        let state = bridge::state(scope);
        if let Some(request) = state.borrow_mut().requests.get_mut(id) {
            request.pass_through = true;
        }
    }
    Ok(())
});
