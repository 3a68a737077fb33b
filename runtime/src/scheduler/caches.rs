//! The core's side of the Cache API (`caches`): the core's client of the host's cache store, the
//! calls it has handed to the store, and the eventfd the store's thread writes when replies are
//! ready. (Named for the `caches` global: `crate::cache` is the core's cache of isolates.)
//!
//! An isolate's cache call is queued as `Work::Cache`; after the entry the core adds the
//! tenant's name to the key (the script never names a tenant, so tenants' entries stay apart),
//! submits the call (never blocking: a full queue is an error the script gets at once) and
//! remembers which isolate and op wait for it under a token. The storage thread answers on the
//! client's own channel and writes the core's cache eventfd, whose read on the ring (key tag
//! [`TAG_CACHES`]) makes the ring wait return; the core then drains every reply and settles the
//! ops. What it must not do: wait for the store, or settle an op of an isolate that is gone.

use std::collections::HashMap;
use std::sync::Arc;

use isobar_state::cache::{CacheClient, CacheReply, CacheStore};
use kernel_shim::EventFd;
use kernel_shim::ring::{Completion, CompletionData, Op, tagged_key};

use super::Core;
use crate::api::cache::{CacheRequest, settle_reply};
use crate::bridge::JsError;
use crate::bridge::async_ops::Settle;

/// Completion-key tag of the cache eventfd's reads.
pub(super) const TAG_CACHES: u8 = 0x06;

/// What waits on one submitted call.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    version: u64,
    op: u32,
    /// A `match` that looks the entry up: its answer is a hit or a miss.
    lookup: bool,
}

/// One core's cache client and the calls in flight on it.
pub(super) struct CoreCaches {
    /// Keeps the store's thread alive while a core may submit to it.
    _store: Arc<CacheStore>,
    client: CacheClient,
    wake: Arc<EventFd>,
    next_token: u64,
    waiting: HashMap<u64, Waiting>,
}

impl std::fmt::Debug for CoreCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreCaches").field("waiting", &self.waiting.len()).finish_non_exhaustive()
    }
}

impl CoreCaches {
    /// A client of `store` for this core, with its eventfd (made now, before the process is
    /// sealed: a core may not make descriptors later).
    pub(super) fn new(store: Arc<CacheStore>) -> std::io::Result<CoreCaches> {
        let wake = Arc::new(EventFd::new()?);
        let writer = wake.clone();
        // A failed write means the counter is saturated, which wakes the core just the same.
        let client = store.client(Arc::new(move || {
            let _ = writer.notify();
        }));
        Ok(CoreCaches { _store: store, client, wake, next_token: 0, waiting: HashMap::new() })
    }
}

/// The settlement of a call that never reached the store because the server has none.
fn no_store() -> Settle {
    Box::new(|_| Err(JsError::Plain("Cache operation failed: this server has no cache store".into())))
}

impl Core {
    /// Queues a read of the cache eventfd on the ring (at start-up and after each wake).
    pub(super) fn arm_caches(&mut self, mut buf: Vec<u8>) {
        let Some(caches) = &self.caches else { return };
        buf.clear();
        buf.reserve(EventFd::READ_BYTES);
        let fd = caches.wake.fd();
        self.ring.submit(Op::Read { fd, buf }, tagged_key(TAG_CACHES, 0));
    }

    /// Hands `version`'s cache call to the store, keyed by its tenant; an error the store gives
    /// at once (a TypeError, the entry limit, a full queue) settles `op` now, through `settled`.
    pub(super) fn submit_cache(&mut self, version: u64, op: u32, call: CacheRequest, settled: &mut Vec<(u32, Settle)>) {
        let Some(tenant) = self.cache.tenant(version) else {
            settled.push((op, Box::new(|_| Err(JsError::Plain("Cache operation failed: the worker is gone".into())))));
            return;
        };
        let counters = self.counters.entry(tenant.name.clone()).or_default();
        counters.count_cache(call.verb());
        let Some(caches) = &mut self.caches else {
            counters.cache_errors += 1;
            settled.push((op, no_store()));
            return;
        };
        let lookup = call.is_lookup();
        caches.next_token += 1;
        let token = caches.next_token;
        match caches.client.submit(token, call.into_op(&tenant.name)) {
            Ok(()) => {
                caches.waiting.insert(token, Waiting { version, op, lookup });
            }
            Err(error) => {
                counters.cache_errors += 1;
                settled.push((op, settle_reply(Err(error))));
            }
        }
    }

    /// The store's thread has replies for this core: settle every call they answer, then wait
    /// for the next wake.
    pub(super) fn on_caches_wake(&mut self, completion: Completion) {
        let buf = match completion.data {
            CompletionData::Buffer(buf) => buf,
            _ => Vec::new(),
        };
        let mut by_version: HashMap<u64, Vec<(u32, Settle)>> = HashMap::new();
        while let Some(caches) = &mut self.caches {
            let Some((token, result)) = caches.client.try_recv() else { break };
            // A call of an isolate that is gone (condemned) is dropped unanswered.
            let Some(waiting) = caches.waiting.remove(&token) else { continue };
            if let Some(tenant) = self.cache.tenant(waiting.version) {
                let counters = self.counters.entry(tenant.name.clone()).or_default();
                match &result {
                    Ok(CacheReply::Match(Some(_))) => counters.cache_hits += 1,
                    Ok(CacheReply::Match(None)) if waiting.lookup => counters.cache_misses += 1,
                    Ok(_) => {}
                    Err(_) => counters.cache_errors += 1,
                }
            }
            by_version.entry(waiting.version).or_default().push((waiting.op, settle_reply(result)));
        }
        for (version, settled) in by_version {
            self.settle(version, settled);
        }
        self.arm_caches(buf);
    }

    /// `version`'s isolate is gone: forget what its calls wait for (their replies are dropped).
    pub(super) fn caches_isolate_gone(&mut self, version: u64) {
        if let Some(caches) = &mut self.caches {
            caches.waiting.retain(|_, w| w.version != version);
        }
    }
}
