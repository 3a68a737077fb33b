//! Timers: `setTimeout`, `setInterval` and their `clear`s, kept in Rust.
//!
//! A timer's callback and arguments are held here as V8 handles, with its deadline and the
//! request that set it (`bridge::context`). Timers belong to their request, as in workerd: one
//! can only be set while a request is being handled, it fires working for that request (its CPU
//! counts against that request's limit), and when the request's work is over (its response sent
//! and its `waitUntil()` promises settled or cut) its remaining timers are cancelled. So a script
//! cannot leave an interval running after its request ends, and the core never fires a timer for
//! a request that no longer exists.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::bridge::{self, JsError, OpDecl, args, context};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:timers", include_str!("timers.js"));

/// How many timers one isolate may have pending at once; setTimeout beyond it throws.
pub const TIMERS_MAX: usize = 10_000;
/// The longest delay, as in browsers (2^31 - 1 ms); longer ones fire at once, as browsers do.
const DELAY_MAX_MS: f64 = 2_147_483_647.0;
/// An interval never repeats faster than this, so a zero-delay setInterval cannot take a core.
const INTERVAL_MIN: Duration = Duration::from_millis(1);
/// Arguments kept per timer.
const ARGS_MAX: u32 = 64;

/// workerd's message for I/O attempted outside of a request, which scripts may test for.
pub const OUTSIDE_REQUEST: &str = "Some functionality, such as asynchronous I/O, timeouts, and generating random values, can only be performed while handling a request.";

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("timerStart", timer_start), op_decl!("timerCancel", timer_cancel)]
}

struct Timer {
    callback: v8::Global<v8::Function>,
    args: Vec<v8::Global<v8::Value>>,
    deadline: Instant,
    repeat: Option<Duration>,
    request: u64,
}

/// Pending timers of one isolate.
#[derive(Default)]
pub struct Timers {
    by_deadline: BTreeSet<(Instant, u32)>,
    timers: HashMap<u32, Timer>,
    next_id: u32,
    /// The instant from which new timers count: the scheduler's time at its last I/O event.
    base: Option<Instant>,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").field("pending", &self.timers.len()).finish()
    }
}

/// A timer taken out of the table to be fired.
pub struct Due {
    pub id: u32,
    pub request: u64,
    callback: v8::Global<v8::Function>,
    args: Vec<v8::Global<v8::Value>>,
}

impl Timers {
    pub fn set_base(&mut self, now: Instant) {
        self.base = Some(now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// Whether `request` has a timer pending.
    pub fn has_for(&self, request: u64) -> bool {
        self.timers.values().any(|t| t.request == request)
    }

    fn cancel(&mut self, id: u32) {
        if let Some(timer) = self.timers.remove(&id) {
            self.by_deadline.remove(&(timer.deadline, id));
        }
    }

    /// Cancels every timer of `request` (its work is over).
    pub fn cancel_request(&mut self, request: u64) {
        let ids: Vec<u32> = self.timers.iter().filter(|(_, t)| t.request == request).map(|(id, _)| *id).collect();
        for id in ids {
            self.cancel(id);
        }
    }

    /// Drops every timer (the isolate is going away; handles must go while it is alive).
    pub fn clear(&mut self) {
        self.timers.clear();
        self.by_deadline.clear();
    }

    /// Takes the earliest timer due at `now`; an interval is put back for its next run.
    pub fn pop_due(&mut self, scope: &mut v8::PinScope, now: Instant) -> Option<Due> {
        let &(deadline, id) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.remove(&(deadline, id));
        let timer = self.timers.get_mut(&id)?;
        let due = Due {
            id,
            request: timer.request,
            callback: timer.callback.clone(),
            args: timer.args.iter().map(|a| v8::Global::new(scope, a)).collect(),
        };
        match timer.repeat {
            Some(every) => {
                timer.deadline = now + every;
                self.by_deadline.insert((timer.deadline, id));
            }
            None => {
                self.timers.remove(&id);
            }
        }
        Some(due)
    }
}

impl Due {
    /// Calls the timer's callback with its arguments (`this` is the global object). An exception
    /// goes to `reportError`, as in browsers; a terminated execution is left pending.
    pub fn fire(self, scope: &mut v8::PinScope) {
        context::enter(scope, Some(self.request));
        let callback = v8::Local::new(scope, &self.callback);
        let args: Vec<v8::Local<v8::Value>> = self.args.iter().map(|a| v8::Local::new(scope, a)).collect();
        let global = scope.get_current_context().global(scope);
        v8::tc_scope!(let tc, scope);
        if callback.call(tc, global.into(), &args).is_none() && !tc.has_terminated() {
            let exception = tc.exception();
            tc.reset();
            if let Some(exception) = exception {
                crate::api::events::report_error(tc, exception);
            }
        }
    }
}

op!(fn timer_start(scope, args) {
    let Ok(callback) = v8::Local::<v8::Function>::try_from(args.get(0)) else {
        return Err(JsError::type_error(
            "setTimeout/setInterval: the callback must be a function (code in a string is not allowed)",
        ));
    };
    let delay = args.get(1).number_value(scope).ok_or(JsError::Pending)?;
    let delay_ms = if delay.is_finite() && delay > 0.0 { delay.min(DELAY_MAX_MS).floor() } else { 0.0 };
    let delay_ms = if delay > DELAY_MAX_MS { 0.0 } else { delay_ms };
    let repeat = args.get(3).boolean_value(scope);
    let mut extra = Vec::new();
    if let Ok(list) = v8::Local::<v8::Array>::try_from(args.get(2)) {
        if list.length() > ARGS_MAX {
            return Err(JsError::range_error(format!("setTimeout: more than {ARGS_MAX} arguments for the callback")));
        }
        for i in 0..list.length() {
            let value = list.get_index(scope, i).ok_or(JsError::Pending)?;
            extra.push(v8::Global::new(scope, value));
        }
    }
    let state = bridge::state(scope);
    let request = context::current(scope)
        .filter(|id| state.borrow_mut().requests.get_mut(*id).is_some())
        .ok_or(JsError::type_error(OUTSIDE_REQUEST))?;
    let mut state = state.borrow_mut();
    let timers = &mut state.timers;
    if timers.timers.len() >= TIMERS_MAX {
        return Err(JsError::range_error(format!("setTimeout: more than {TIMERS_MAX} pending timers in this worker")));
    }
    let delay = Duration::from_millis(delay_ms as u64);
    let base = timers.base.unwrap_or_else(Instant::now);
    let deadline = base + delay;
    loop {
        timers.next_id = timers.next_id.wrapping_add(1).max(1);
        if !timers.timers.contains_key(&timers.next_id) {
            break;
        }
    }
    let id = timers.next_id;
    let callback = v8::Global::new(scope, callback);
    let repeat = repeat.then(|| delay.max(INTERVAL_MIN));
    timers.timers.insert(id, Timer { callback, args: extra, deadline, repeat, request });
    timers.by_deadline.insert((deadline, id));
    Ok(id)
});

op!(fn timer_cancel(scope, args) {
    let id = args.get(0);
    // Any value that is not a timer id is ignored, as in browsers.
    if id.is_number() {
        let n = args::enforce_range(scope, id, 0.0..=u32::MAX as f64, "clearTimeout").unwrap_or(0.0) as u32;
        bridge::state(scope).borrow_mut().timers.cancel(n);
    }
    Ok(())
});

#[cfg(test)]
mod tests {
    #[test]
    fn behaves_as_the_standard_says() {
        crate::testing::api_test("timers/test.js", &crate::testing::Req::get("http://example.com/"));
    }
}
