//! The core's side of Workers KV: the core's client of the embedded store, the operations it has
//! handed to the store, and the eventfd the store's thread writes when replies are ready.
//!
//! An isolate's KV op is queued as `Work::Kv`; after the entry the core resolves the binding to
//! the tenant's namespace, submits the operation (never blocking: a full queue is an error the
//! script gets at once) and remembers which isolate and op wait for it under a token. The
//! storage thread answers on the client's own channel and writes the core's KV eventfd, whose
//! read on the ring (key tag [`TAG_KV`]) makes the ring wait return; the core then drains every
//! reply and settles the ops (their continuations run in the same turn, as for fetch).
//! What it must not do: wait for the store, or settle an op of an isolate that is gone.

use std::collections::HashMap;
use std::sync::Arc;

use isobar_state::kv::embedded::{EmbeddedKv, KvClient};
use isobar_state::kv::{KvError, KvOp, KvReply, Namespace};
use kernel_shim::EventFd;
use kernel_shim::ring::{Completion, CompletionData, Op, tagged_key};

use super::Core;
use crate::bridge::async_ops::Settle;

/// Completion-key tag of the KV eventfd's reads.
pub(super) const TAG_KV: u8 = 0x05;

/// What waits on one submitted operation.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    version: u64,
    op: u32,
    /// Key, value and metadata bytes of a put (counted once it is stored).
    bytes_written: u64,
}

/// One core's KV client and the operations in flight on it.
pub(super) struct CoreKv {
    store: Arc<EmbeddedKv>,
    client: KvClient,
    wake: Arc<EventFd>,
    next_token: u64,
    waiting: HashMap<u64, Waiting>,
    /// Namespaces already resolved, by (tenant version, binding index).
    namespaces: HashMap<(u64, u32), Namespace>,
}

impl std::fmt::Debug for CoreKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreKv").field("waiting", &self.waiting.len()).finish_non_exhaustive()
    }
}

impl CoreKv {
    /// A client of `store` for this core, with its eventfd (made now, before the process is
    /// sealed: a core may not make descriptors later).
    pub(super) fn new(store: Arc<EmbeddedKv>) -> std::io::Result<CoreKv> {
        let wake = Arc::new(EventFd::new()?);
        let writer = wake.clone();
        // A failed write means the counter is saturated, which wakes the core just the same.
        let client = store.client(Arc::new(move || {
            let _ = writer.notify();
        }));
        Ok(CoreKv { store, client, wake, next_token: 0, waiting: HashMap::new(), namespaces: HashMap::new() })
    }
}

impl Core {
    /// Queues a read of the KV eventfd on the ring (at start-up and after each wake).
    pub(super) fn arm_kv(&mut self, mut buf: Vec<u8>) {
        let Some(kv) = &self.kv else { return };
        buf.clear();
        buf.reserve(EventFd::READ_BYTES);
        let fd = kv.wake.fd();
        self.ring.submit(Op::Read { fd, buf }, tagged_key(TAG_KV, 0));
    }

    /// Hands `version`'s KV operation on binding `binding` to the store; an error the store
    /// gives at once (a limit, a full queue) settles `op` now, through `settled`.
    pub(super) fn submit_kv(
        &mut self,
        version: u64,
        op: u32,
        binding: u32,
        kv_op: KvOp,
        settled: &mut Vec<(u32, Settle)>,
    ) {
        let tenant = self.cache.tenant(version);
        if let Some(tenant) = &tenant {
            let counters = self.counters.entry(tenant.name.clone()).or_default();
            counters.count_kv(kv_op.verb());
        }
        let Some(kv) = &mut self.kv else {
            settled.push((
                op,
                crate::api::kv::settle_reply(Err(KvError::Unavailable("no KV store is configured".into()))),
            ));
            return;
        };
        let namespace = match kv.namespaces.get(&(version, binding)) {
            Some(namespace) => Ok(namespace.clone()),
            None => {
                let found = tenant.as_ref().and_then(|t| t.spec.kv.get(binding as usize).map(|b| (t, b)));
                match found {
                    Some((tenant, binding_spec)) => kv.store.namespace(&tenant.name, &binding_spec.namespace),
                    None => Err(KvError::Unavailable("this KV binding does not exist".into())),
                }
            }
        };
        let namespace = match namespace {
            Ok(namespace) => {
                kv.namespaces.entry((version, binding)).or_insert_with(|| namespace.clone());
                namespace
            }
            Err(error) => {
                self.count_kv_error(version);
                settled.push((op, crate::api::kv::settle_reply(Err(error))));
                return;
            }
        };
        let Some(kv) = &mut self.kv else { return };
        let bytes_written = match &kv_op {
            KvOp::Put { key, value, metadata, .. } => {
                (key.len() + value.len() + metadata.as_ref().map_or(0, String::len)) as u64
            }
            _ => 0,
        };
        kv.next_token += 1;
        let token = kv.next_token;
        match kv.client.submit(token, &namespace, kv_op) {
            Ok(()) => {
                kv.waiting.insert(token, Waiting { version, op, bytes_written });
            }
            Err(error) => {
                self.count_kv_error(version);
                settled.push((op, crate::api::kv::settle_reply(Err(error))));
            }
        }
    }

    fn count_kv_error(&mut self, version: u64) {
        if let Some(tenant) = self.cache.tenant(version) {
            self.counters.entry(tenant.name.clone()).or_default().kv_errors += 1;
        }
    }

    /// The store's thread has replies for this core: settle every op they answer, then wait
    /// for the next wake.
    pub(super) fn on_kv_wake(&mut self, completion: Completion) {
        let buf = match completion.data {
            CompletionData::Buffer(buf) => buf,
            _ => Vec::new(),
        };
        let mut by_version: HashMap<u64, Vec<(u32, Settle)>> = HashMap::new();
        while let Some(kv) = &mut self.kv {
            let Some((token, result)) = kv.client.try_recv() else { break };
            // An op of an isolate that is gone (condemned) is dropped unanswered.
            let Some(waiting) = kv.waiting.remove(&token) else { continue };
            if let Some(tenant) = self.cache.tenant(waiting.version) {
                let counters = self.counters.entry(tenant.name.clone()).or_default();
                match &result {
                    Ok(KvReply::Value(Some(value))) => {
                        counters.kv_bytes_read +=
                            (value.value.len() + value.metadata.as_ref().map_or(0, String::len)) as u64;
                    }
                    Ok(KvReply::Done) => counters.kv_bytes_written += waiting.bytes_written,
                    Ok(_) => {}
                    Err(_) => counters.kv_errors += 1,
                }
            }
            by_version.entry(waiting.version).or_default().push((waiting.op, crate::api::kv::settle_reply(result)));
        }
        for (version, settled) in by_version {
            self.settle(version, settled);
        }
        self.arm_kv(buf);
    }

    /// `version`'s isolate is gone: forget what its ops wait for (their replies are dropped),
    /// and the namespaces it resolved.
    pub(super) fn kv_isolate_gone(&mut self, version: u64) {
        if let Some(kv) = &mut self.kv {
            kv.waiting.retain(|_, w| w.version != version);
            kv.namespaces.retain(|(v, _), _| *v != version);
        }
    }
}
