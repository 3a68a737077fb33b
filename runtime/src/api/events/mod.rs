//! DOMException, Event and its kinds, EventTarget, AbortController/AbortSignal, reportError and
//! the global `error` / `unhandledrejection` events (`events.js`).

use crate::bridge::{Scope, hooks};

pub const JS: (&str, &str) = ("isobar:events", include_str!("events.js"));

/// Reports an uncaught exception the way `reportError` does: an `error` event on the global
/// scope, then the worker's log if no listener cancelled it.
pub fn report_error(scope: &mut Scope, exception: v8::Local<v8::Value>) {
    let Some(report) = hooks::get(scope, hooks::Hook::ReportError) else { return };
    let undefined = v8::undefined(scope).into();
    v8::tc_scope!(let tc, scope);
    let _ = report.call(tc, undefined, &[exception]);
}

/// Fires `unhandledrejection` for a promise rejected with no handler; true if a listener
/// handled it (called preventDefault), so it is not logged.
pub fn unhandled_rejection(scope: &mut Scope, promise: v8::Local<v8::Value>, reason: v8::Local<v8::Value>) -> bool {
    let Some(hook) = hooks::get(scope, hooks::Hook::UnhandledRejection) else { return false };
    let undefined = v8::undefined(scope).into();
    v8::tc_scope!(let tc, scope);
    hook.call(tc, undefined, &[promise, reason]).is_some_and(|v| v.is_true())
}

#[cfg(test)]
mod tests {
    #[test]
    fn events_and_abort() {
        crate::testing::api_test("events/test.js", &crate::testing::Req::get("http://example.com/"));
    }
}
