//! Which request a piece of JavaScript works for.
//!
//! One isolate serves many requests at once (each awaiting something). Work a script starts —
//! a subrequest, a KV read, a timer — belongs to the request whose code started it: that is
//! whose subrequest limit it counts against, whose CPU it is, and what is cancelled when that
//! request ends. isobar records the request's id as V8's *continuation-preserved embedder data*
//! when it calls into the script for a request; V8 carries that value across `await` and
//! `.then()` continuations (the mechanism AsyncContext builds on), and isobar carries it across
//! timers itself. An op reads it with [`current`].

// Keyed by request ids isobar assigns (Cargo.toml says why Fx).
use rustc_hash::FxHashMap as HashMap;
use std::time::{Duration, Instant};

use super::Scope;

/// The bookkeeping of one request, from dispatch until its last piece of work (its response, and
/// then any `ctx.waitUntil()` work) is done.
#[derive(Debug)]
pub struct RequestContext {
    pub id: u64,
    /// Subrequests (fetch, service-binding calls) made so far, and how many are allowed.
    pub subrequests: u32,
    pub subrequests_max: u32,
    /// When the response was handed to the server; `None` while the handler is still working.
    pub responded: Option<Instant>,
    /// `ctx.waitUntil()` promises not yet settled.
    pub wait_until: u32,
    /// CPU time of the entries made for this request.
    pub cpu: Duration,
    /// `ctx.passThroughOnException()` was called.
    pub pass_through: bool,
    /// A Cron Trigger's firing (`scheduled()`), not an HTTP request.
    pub scheduled: bool,
    /// Some of its work failed (a scheduled handler that threw or rejected).
    pub failed: bool,
}

impl RequestContext {
    pub fn new(id: u64, subrequests_max: u32) -> RequestContext {
        RequestContext {
            id,
            subrequests: 0,
            subrequests_max,
            responded: None,
            wait_until: 0,
            cpu: Duration::ZERO,
            pass_through: false,
            scheduled: false,
            failed: false,
        }
    }
}

/// The live request contexts of one isolate.
#[derive(Debug, Default)]
pub struct Contexts {
    by_id: HashMap<u64, RequestContext>,
}

impl Contexts {
    pub fn insert(&mut self, context: RequestContext) {
        self.by_id.insert(context.id, context);
    }

    pub fn get(&self, id: u64) -> Option<&RequestContext> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut RequestContext> {
        self.by_id.get_mut(&id)
    }

    pub fn remove(&mut self, id: u64) -> Option<RequestContext> {
        self.by_id.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_id.keys().copied()
    }
}

/// Marks the code about to run in `scope` as working for request `id` (`None`: for no request,
/// e.g. module evaluation at load time).
pub fn enter(scope: &mut Scope, id: Option<u64>) {
    let value: v8::Local<v8::Value> = match id {
        // Request ids stay far below 2^53, so a Number holds them exactly.
        Some(id) => v8::Number::new(scope, id as f64).into(),
        None => v8::undefined(scope).into(),
    };
    scope.set_continuation_preserved_embedder_data(value);
}

/// The request the running code works for, if any.
pub fn current(scope: &mut Scope) -> Option<u64> {
    let value = scope.get_continuation_preserved_embedder_data();
    let n = value.number_value(scope).filter(|_| value.is_number())?;
    (n >= 0.0 && n.fract() == 0.0).then_some(n as u64)
}
