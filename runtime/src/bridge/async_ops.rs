//! Promises an op returns at once and the core settles later, when the I/O it started completes
//! on the core's ring (or on a storage thread that answers the core).
//!
//! An op that starts I/O calls [`AsyncOps::start`], which makes a promise, keeps its resolver
//! under a new op id, and returns both. The op records what must be done (an area-specific
//! request the scheduler understands) and returns the promise. When the work is done, the core
//! enters the isolate and calls [`AsyncOps::settle`] with the op id and a function that makes the
//! result inside the isolate. The table is bounded: a script cannot start unbounded work.

use std::collections::HashMap;

use super::{JsError, Scope};

/// How many async ops one isolate may have pending at once.
pub const PENDING_MAX: usize = 10_000;

/// Makes an op's result inside the isolate: the value to resolve with, or the error to reject with.
pub type Settle = Box<dyn for<'s, 'i> FnOnce(&mut v8::PinScope<'s, 'i>) -> Result<v8::Local<'s, v8::Value>, JsError>>;

struct Pending {
    resolver: v8::Global<v8::PromiseResolver>,
    /// The request that started it (see `bridge::context`), to cancel it when the request ends.
    request: Option<u64>,
}

/// An isolate's pending async ops.
#[derive(Default)]
pub struct AsyncOps {
    pending: HashMap<u32, Pending>,
    next_id: u32,
}

impl std::fmt::Debug for AsyncOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncOps").field("pending", &self.pending.len()).finish()
    }
}

impl AsyncOps {
    /// A new pending op for `request`: its id and the promise to return to the script.
    pub fn start<'s>(
        &mut self,
        scope: &mut Scope<'s, '_>,
        request: Option<u64>,
    ) -> Result<(u32, v8::Local<'s, v8::Promise>), JsError> {
        if self.pending.len() >= PENDING_MAX {
            return Err(JsError::range_error(format!(
                "too many operations in progress in this worker (the limit is {PENDING_MAX})"
            )));
        }
        let resolver = v8::PromiseResolver::new(scope).ok_or(JsError::Pending)?;
        let promise = resolver.get_promise(scope);
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.pending.contains_key(&self.next_id) {
                break;
            }
        }
        self.pending.insert(self.next_id, Pending { resolver: v8::Global::new(scope, resolver), request });
        Ok((self.next_id, promise))
    }

    /// Takes the resolver of op `id` out of the table (`None` if it was settled or cancelled).
    fn take<'s>(&mut self, scope: &mut Scope<'s, '_>, id: u32) -> Option<v8::Local<'s, v8::PromiseResolver>> {
        let pending = self.pending.remove(&id)?;
        Some(v8::Local::new(scope, pending.resolver))
    }

    /// The ids of the ops `request` started.
    pub fn of_request(&self, request: u64) -> Vec<u32> {
        self.pending.iter().filter(|(_, p)| p.request == Some(request)).map(|(id, _)| *id).collect()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Settles op `id` of the isolate `scope` is in with what `settle` makes. Returns false if the op
/// was not pending (already settled or cancelled).
pub fn settle(scope: &mut Scope, id: u32, settle: Settle) -> bool {
    let Some(state) = super::state_of(scope) else { return false };
    let resolver = state.borrow_mut().async_ops.take(scope, id);
    let Some(resolver) = resolver else { return false };
    v8::tc_scope!(let tc, scope);
    match settle(tc) {
        Ok(value) => {
            resolver.resolve(tc, value);
        }
        Err(error) => {
            let exception = match error.to_value(tc) {
                Some(exception) => exception,
                // The result's maker threw: reject with what it threw.
                None => tc.exception().unwrap_or_else(|| v8::undefined(tc).into()),
            };
            if !tc.has_terminated() {
                tc.reset();
                resolver.reject(tc, exception);
            }
        }
    }
    true
}
