//! What an isolate's ops ask of the core's I/O, queued during a call into the isolate and
//! carried out by the scheduler right after it (an op cannot reach the ring: the core is inside
//! V8 while the op runs). Each request names the async op (`bridge::async_ops`) to settle when
//! it is done, and the isolate-local key of the subrequest it is about.

use super::FetchRequest;
use crate::bridge::{self, JsError, Scope};

/// One piece of work for the core.
#[derive(Debug)]
pub enum Work {
    /// Start a subrequest; settle `op` with the Response once its head arrives.
    Fetch { op: u32, request: u64, key: u64, fetch: Box<FetchRequest> },
    /// Settle `op` with the next piece of subrequest `key`'s response body (null at its end).
    BodyRead { op: u32, key: u64 },
    /// Nobody will read subrequest `key`'s body: drop it (and its connection if mid-body).
    BodyCancel { key: u64 },
    /// Hand these request body bytes of subrequest `key` over; settle `op` once all are taken.
    UploadWrite { op: u32, key: u64, bytes: Vec<u8> },
    /// The request body of subrequest `key` is complete.
    UploadFinish { key: u64 },
    /// Abort subrequest `key` (its signal fired).
    Abort { key: u64 },
    /// A KV operation on the tenant's KV binding number `binding`; settle `op` with its reply.
    Kv { op: u32, binding: u32, kv: Box<isobar_state::kv::KvOp> },
    /// Call the tenant behind service binding `binding` (same core, no socket) for request
    /// `request`; settle `op` with its response.
    Service { op: u32, request: u64, binding: u32, call: Box<crate::api::service::ServiceCall> },
    /// A KV operation the op refused itself (a Workers limit): count it and its error.
    KvRefused { verb: &'static str },
    /// A Cache API call on the tenant's caches; settle `op` with the store's reply.
    Cache { op: u32, cache: Box<crate::api::cache::CacheRequest> },
    /// Send a message on the WebSocket bound as `socket`.
    WsSend { socket: u32, message: netstack::WsMessage },
    /// Start the close handshake of the WebSocket bound as `socket`.
    WsClose { socket: u32, code: u16, reason: String },
    /// Open a WebSocket for request `request`, bound as `socket`; settle `op` once the server
    /// accepted the upgrade.
    WsConnect { op: u32, request: u64, socket: u32, connect: Box<crate::api::websocket::WsConnect> },
}

/// How many pieces of work one isolate may queue between two turns of the core.
pub const WORK_MAX: usize = 10_000;

/// Queues `work` for the core after this entry (refused past [`WORK_MAX`]), for ops that
/// settle no promise (a subrequest's body pieces, a WebSocket's sends).
pub fn push(scope: &mut Scope, work: Work) -> Result<(), JsError> {
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    if state.outbox.len() >= WORK_MAX {
        return Err(JsError::range_error("too many operations started at once in this worker"));
    }
    state.outbox.push(work);
    Ok(())
}

/// Starts an async op of request `request` whose work the core carries out after the entry:
/// `work(op)` is queued in the outbox (refused past [`WORK_MAX`]) and the op's promise returned.
pub fn start_op<'s>(
    scope: &mut Scope<'s, '_>,
    request: u64,
    work: impl FnOnce(u32) -> Work,
) -> Result<v8::Local<'s, v8::Promise>, JsError> {
    let state = bridge::state(scope);
    if state.borrow().outbox.len() >= WORK_MAX {
        return Err(JsError::range_error("too many operations started at once in this worker"));
    }
    let (op, promise) = state.borrow_mut().async_ops.start(scope, Some(request))?;
    state.borrow_mut().outbox.push(work(op));
    Ok(promise)
}
