//! Service bindings on the core: a tenant's `env.OTHER.fetch()` dispatched to the other tenant's
//! isolate on this core as a request whose response goes back to the caller's op instead of a
//! connection (`ReplyTo::Service`). No socket, no copy through the kernel: the request's parts
//! are handed from one isolate's outbox to the other's dispatch, and the response's bytes back.
//!
//! The call is a request of the other tenant in every other respect: its routes do not matter,
//! but its limits (CPU, wall time, memory, concurrency, subrequests) do, its counters count it,
//! and its isolate is made on demand like any other. A streamed response body (a script's
//! stream, or a subrequest's body passed through) is collected to its end, up to the caller's
//! memory limit (at most [`BODY_BYTES_MAX`]). Chains are at most [`DEPTH_MAX`] calls deep (a binding may name its own
//! tenant). What it must not do: settle an op of an isolate that is gone (its calls are
//! orphaned by [`Core::service_isolate_gone`] and their answers dropped).

use std::time::Instant;

use super::io::Streaming;
use super::{Core, Pending, ReplyTo};
use crate::api::fetch::body::BODY_BYTES_MAX;
use crate::api::service::{ServiceCall, ServiceResponse, settle_response};
use crate::bridge::async_ops::Settle;
use crate::state::{WireResponse, WireStream};
use crate::worker::{LoadError, RequestParts};

/// Most service-binding calls in one chain (A calls B calls C ...).
pub const DEPTH_MAX: u8 = 16;

/// The caller of a service-binding call: whose op to settle, and the response collected so far
/// when its body streams.
#[derive(Debug)]
pub(super) struct Caller {
    /// The caller's tenant version, or `None` once its isolate is gone (the answer is dropped).
    version: Option<u64>,
    op: u32,
    collected: Option<ServiceResponse>,
    /// The largest body the caller takes: its memory limit, at most [`BODY_BYTES_MAX`] (the
    /// body becomes a buffer in the caller's isolate).
    body_max: usize,
}

impl Caller {
    /// Appends a piece of a streamed body; false past the body limit.
    pub(super) fn collect(&mut self, bytes: Vec<u8>) -> bool {
        let Some(response) = &mut self.collected else { return false };
        if response.body.len() + bytes.len() > self.body_max {
            return false;
        }
        response.body.extend_from_slice(&bytes);
        true
    }
}

impl Core {
    /// `version`'s request `request` calls the tenant behind its service binding `binding`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_service(
        &mut self,
        version: u64,
        op: u32,
        request: u64,
        binding: u32,
        call: ServiceCall,
        settled: &mut Vec<(u32, Settle)>,
        now: Instant,
    ) {
        let mut refuse = |message: String| settled.push((op, settle_response(Err(message))));
        let Some(caller) = self.cache.tenant(version) else { return };
        let Some((name, target)) = caller.spec.services.get(binding as usize) else {
            return refuse("fetch: this service binding does not exist".into());
        };
        let depth = self.pending.get(&request).map_or(0, |p| p.depth).saturating_add(1);
        if depth > DEPTH_MAX {
            return refuse(format!("fetch: service binding {name}: the chain of calls is deeper than {DEPTH_MAX}"));
        }
        let Some(tenant) = self.deployment.tenants.get(target.as_str()).cloned() else {
            return refuse(format!("fetch: service binding {name}: the service {target:?} is not deployed"));
        };
        let in_flight = self.in_flight.entry(tenant.name.clone()).or_default();
        if *in_flight >= tenant.limits.concurrency {
            let counters = self.counters.entry(tenant.name.clone()).or_default();
            counters.count_limit(isobar_tenancy::stats::LimitKind::Concurrency);
            return refuse(format!("fetch: service binding {name}: too many requests in flight for {target:?}"));
        }
        let created_before = self.cache.created;
        let loaded = self.cache.get_or_load(&tenant).map(|_| ());
        self.counters.entry(tenant.name.clone()).or_default().cpu += self.cache.last_load_cpu;
        let slot = match loaded.map(|()| self.cache.slot(tenant.version)) {
            Ok(Some(slot)) => slot,
            Ok(None) => return refuse(format!("fetch: service binding {name}: {target:?} is not available")),
            Err(error) => {
                if !matches!(error, LoadError::Backoff { .. }) {
                    tracing::error!(target: "worker", "[{}] cannot start the worker: {error}", tenant.name);
                }
                return refuse(format!("fetch: service binding {name}: {target:?} failed to start"));
            }
        };
        let headers: Vec<(&str, &[u8])> = call.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let parts = RequestParts { method: &call.method, url: &call.url, headers: &headers, body: &call.body };
        let id = self.next_request_id;
        self.next_request_id += 1;
        slot.in_flight += 1;
        *self.in_flight.entry(tenant.name.clone()).or_default() += 1;
        slot.worker.dispatch(id, &parts, now, tenant.limits.cpu, tenant.limits.subrequests);
        let cpu = slot.worker.take_last_entry_cpu();
        let counters = self.counters.entry(tenant.name.clone()).or_default();
        counters.cpu += cpu;
        counters.bytes_in += call.body.len() as u64;
        if self.cache.created > created_before {
            counters.isolates_created += 1;
        }
        let wall_deadline = now + tenant.limits.wall;
        self.wall_deadlines.insert((wall_deadline, id));
        let callee = tenant.version;
        let body_max = caller.limits.heap_bytes.min(BODY_BYTES_MAX);
        let to = ReplyTo::Service(Caller { version: Some(version), op, collected: None, body_max });
        let started = Instant::now();
        let pending = Pending {
            to,
            depth,
            tenant,
            started,
            wall_deadline,
            cpu,
            stream: None,
            status: 0,
            bytes_out: 0,
            upgrade: None,
        };
        self.pending.insert(id, pending);
        self.pending_of.entry(callee).or_default().insert(id);
        self.touched.insert(callee);
    }

    /// The response of service call `id`: whole now, or its body collected as it streams.
    pub(super) fn service_respond(&mut self, id: u64, response: WireResponse, now: Instant) {
        let Some(pending) = self.pending.get_mut(&id) else { return };
        let version = pending.tenant.version;
        let ReplyTo::Service(caller) = &mut pending.to else { return };
        let mut headers = response.headers;
        headers.retain(|(name, _)| !super::is_hop_by_hop(name));
        let head = ServiceResponse { status: response.status, reason: response.reason, headers, body: response.body };
        if head.body.len() > caller.body_max {
            caller.collected = Some(head);
            self.service_end(id, false);
            self.complete(id, 0, now);
            return;
        }
        let Some(stream) = response.stream else {
            let bytes = head.body.len() as u64;
            caller.collected = Some(head);
            self.service_end(id, true);
            self.complete(id, bytes, now);
            return;
        };
        caller.collected = Some(head);
        let streaming = match stream {
            WireStream::Fetch { key } => match self.io.pass_through(version, key, id) {
                Some(exchange) => Streaming::Fetch { exchange },
                None => {
                    // The subrequest's body was already read or cancelled: an empty body.
                    self.service_end(id, true);
                    self.complete(id, 0, now);
                    return;
                }
            },
            WireStream::Js { reader, .. } => Streaming::Js { reader, reading: false },
        };
        if let Some(pending) = self.pending.get_mut(&id) {
            pending.stream = Some(streaming);
        }
        self.pump_stream(id, now);
    }

    /// Settles service call `id`'s caller: with the collected response if `complete`, else
    /// with an error (the body was cut short or over its limit).
    pub(super) fn service_end(&mut self, id: u64, complete: bool) {
        let Some(pending) = self.pending.get_mut(&id) else { return };
        let name = pending.tenant.name.clone();
        let ReplyTo::Service(caller) = &mut pending.to else { return };
        let (Some(version), Some(response)) = (caller.version.take(), caller.collected.take()) else { return };
        let (op, body_max) = (caller.op, caller.body_max);
        let result = if complete {
            Ok(response)
        } else {
            Err(format!("fetch: the response body of service {name:?} failed or is larger than {body_max} bytes"))
        };
        self.settle(version, vec![(op, settle_response(result))]);
    }

    /// `version`'s isolate is gone: the calls it made are answered to no one.
    pub(super) fn service_isolate_gone(&mut self, version: u64) {
        for pending in self.pending.values_mut() {
            if let ReplyTo::Service(caller) = &mut pending.to
                && caller.version == Some(version)
            {
                caller.version = None;
            }
        }
    }
}
