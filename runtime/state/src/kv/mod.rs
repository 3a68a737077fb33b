//! Workers KV: the operations, their limits and errors, namespaces and their counters, shared by
//! both backends: [`embedded`] (one redb file per host, the default) and [`redis`] (a Valkey or
//! Redis server or cluster shared by many hosts).
//!
//! Everything a script can get wrong is checked here, on the caller's thread, before anything
//! is queued ([`KvOp::prepare`]): the script gets its error at once and the store never sees the
//! operation. The limits are Cloudflare's documented ones (developers.cloudflare.com/kv/platform/
//! limits): keys 1..=512 bytes and not `.` or `..`, values up to 25 MiB, metadata up to 1024
//! bytes of JSON, `list` limit up to 1000; `expirationTtl` at least 60 s and an absolute
//! `expiration` at least 60 s in the future ("expiration targets less than 60 seconds into the
//! future are not supported"); `cacheTtl`, when given, at least 30 s (Cloudflare lowered it from
//! 60 s; see [`CACHE_TTL_MIN_SECS`]). What this module must not do: I/O of any kind.

pub mod embedded;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// Longest key, in UTF-8 bytes.
pub const KEY_BYTES_MAX: usize = 512;
/// Largest value.
pub const VALUE_BYTES_MAX: usize = 25 * 1024 * 1024;
/// Largest metadata, as serialized JSON.
pub const METADATA_BYTES_MAX: usize = 1024;
/// Most keys one `list` returns (and its default).
pub const LIST_LIMIT_MAX: u32 = 1000;
/// Shortest `expirationTtl`, and how far in the future an absolute `expiration` must be.
pub const EXPIRATION_TTL_MIN_SECS: u64 = 60;
/// Shortest `cacheTtl`. Cloudflare's limits page gives 30 s (older pages said 60 s). Neither
/// backend has an edge cache for it to control (reads are always served from the store), so it
/// is validated and otherwise ignored.
pub const CACHE_TTL_MIN_SECS: u64 = 30;
/// Longest tenant or namespace name.
pub const NAMESPACE_NAME_BYTES_MAX: usize = 255;

/// Why a KV operation failed. [`KvError::js_class`] says which JavaScript error the script gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum KvError {
    /// Key name cannot be empty.
    KeyEmpty,
    /// "." and ".." are not allowed as key names.
    KeyDots,
    /// KV operation failed: 414 UTF-8 encoded length of {0} exceeds key length limit of 512.
    KeyTooLong(usize),
    /// KV PUT failed: 413 value length of {0} bytes exceeds limit of 26214400.
    ValueTooLarge(usize),
    /// KV PUT failed: 413 metadata length of {0} bytes exceeds limit of 1024.
    MetadataTooLarge(usize),
    /// KV PUT failed: metadata is not valid JSON.
    MetadataNotJson,
    /// KV PUT failed: 400 Invalid expiration_ttl of {0}. Expiration TTL must be at least 60.
    ExpirationTtlTooShort(u64),
    /// KV PUT failed: 400 Invalid expiration of {0}. Expiration times must be at least 60 seconds in the future.
    ExpirationTooSoon(u64),
    /// KV GET failed: 400 Invalid cache_ttl of {0}. Cache TTL must be at least 30.
    CacheTtlTooShort(u64),
    /// KV LIST failed: 400 Invalid key_count_limit of {0}. Please specify an integer between 1 and 1000.
    ListLimitOutOfRange(u32),
    /// KV LIST failed: 414 prefix length of {0} bytes exceeds limit of 512.
    PrefixTooLong(usize),
    /// KV LIST failed: 400 invalid cursor.
    InvalidCursor,
    /// invalid KV namespace: tenant and namespace names must be 1..=255 bytes without '{{', '}}' or NUL
    BadNamespace,
    /// KV operation failed: too many operations queued for the store; try again
    QueueFull,
    /// KV operation failed: too many operations in flight on this core; try again
    TooManyInFlight,
    /// KV operation failed: storage error: {0}
    Storage(String),
    /// KV operation failed: the store is shut down
    Closed,
    /// KV operation failed: the store did not answer in time
    Timeout,
    /// KV operation failed: the store is unavailable: {0}
    Unavailable(String),
    /// KV operation failed: too many cluster redirections
    TooManyRedirections,
    /// KV operation failed: unexpected reply from the store: {0}
    Protocol(String),
}

impl KvError {
    /// The JavaScript error class a script sees for this error, following workerd: bad key names
    /// are `TypeError`s; everything else, including the limits the KV service enforces (which
    /// workerd reports as `Error("KV PUT failed: 413 ...")`), is an `Error`.
    pub fn js_class(&self) -> &'static str {
        match self {
            Self::KeyEmpty | Self::KeyDots => "TypeError",
            _ => "Error",
        }
    }
}

/// When a value expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    Never,
    /// Absolute, in seconds since the Unix epoch (`expiration`).
    At(u64),
    /// Relative to now, in seconds (`expirationTtl`). When a script gives both, the glue passes
    /// the TTL, as the KV service does.
    Ttl(u64),
}

/// One KV operation, as the script asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// `get` and `getWithMetadata` (the reply always carries the metadata).
    Get {
        key: String,
        cache_ttl_secs: Option<u64>,
    },
    Put {
        key: String,
        value: Vec<u8>,
        expiration: Expiration,
        metadata: Option<String>,
    },
    Delete {
        key: String,
    },
    /// `limit` defaults to [`LIST_LIMIT_MAX`] in the glue when the script gives none.
    List {
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    },
}

/// A value as `get` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvValue {
    pub value: Vec<u8>,
    /// The metadata JSON text, as it was put.
    pub metadata: Option<String>,
}

/// One key in a `list` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKey {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub expiration: Option<u64>,
    pub metadata: Option<String>,
}

/// A `list` result. As in Workers, a page may hold fewer than `limit` keys (expired keys are
/// skipped, and a page stops after a bounded scan) with `list_complete` still false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub keys: Vec<ListKey>,
    pub list_complete: bool,
    /// Present exactly when `list_complete` is false: pass it back to get the next page.
    pub cursor: Option<String>,
}

/// The answer to one [`KvOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvReply {
    /// `get`: `None` when the key does not exist or has expired.
    Value(Option<KvValue>),
    /// `put` and `delete` (deleting a missing key succeeds too).
    Done,
    List(ListResult),
}

impl KvOp {
    /// Checks the operation against Workers' limits and turns a TTL into an absolute time, at
    /// `now_unix_ms`. The store only ever sees prepared operations.
    pub fn prepare(self, now_unix_ms: u64) -> Result<Self, KvError> {
        match self {
            Self::Get { key, cache_ttl_secs } => {
                check_key(&key)?;
                if let Some(ttl) = cache_ttl_secs.filter(|ttl| *ttl < CACHE_TTL_MIN_SECS) {
                    return Err(KvError::CacheTtlTooShort(ttl));
                }
                Ok(Self::Get { key, cache_ttl_secs })
            }
            Self::Put { key, value, expiration, metadata } => {
                check_key(&key)?;
                if value.len() > VALUE_BYTES_MAX {
                    return Err(KvError::ValueTooLarge(value.len()));
                }
                if let Some(metadata) = &metadata {
                    if metadata.len() > METADATA_BYTES_MAX {
                        return Err(KvError::MetadataTooLarge(metadata.len()));
                    }
                    serde_json::from_str::<serde_json::value::Value>(metadata).map_err(|_| KvError::MetadataNotJson)?;
                }
                let now_secs = now_unix_ms / 1000;
                let expiration = match expiration {
                    Expiration::Never => Expiration::Never,
                    Expiration::Ttl(ttl) if ttl < EXPIRATION_TTL_MIN_SECS => {
                        return Err(KvError::ExpirationTtlTooShort(ttl));
                    }
                    Expiration::Ttl(ttl) => Expiration::At(now_secs.saturating_add(ttl)),
                    Expiration::At(at) if at < now_secs.saturating_add(EXPIRATION_TTL_MIN_SECS) => {
                        return Err(KvError::ExpirationTooSoon(at));
                    }
                    Expiration::At(at) => Expiration::At(at),
                };
                Ok(Self::Put { key, value, expiration, metadata })
            }
            Self::Delete { key } => {
                check_key(&key)?;
                Ok(Self::Delete { key })
            }
            Self::List { prefix, limit, cursor } => {
                if !(1..=LIST_LIMIT_MAX).contains(&limit) {
                    return Err(KvError::ListLimitOutOfRange(limit));
                }
                if prefix.len() > KEY_BYTES_MAX {
                    return Err(KvError::PrefixTooLong(prefix.len()));
                }
                if let Some(cursor) = &cursor {
                    decode_cursor(cursor)?;
                }
                Ok(Self::List { prefix, limit, cursor })
            }
        }
    }

    /// The verb for counters and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Get { .. } => "get",
            Self::Put { .. } => "put",
            Self::Delete { .. } => "delete",
            Self::List { .. } => "list",
        }
    }

    fn bytes_written(&self) -> u64 {
        match self {
            Self::Put { key, value, metadata, .. } => {
                (key.len() + value.len() + metadata.as_ref().map_or(0, String::len)) as u64
            }
            _ => 0,
        }
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::KeyEmpty);
    }
    if key == "." || key == ".." {
        return Err(KvError::KeyDots);
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(KvError::KeyTooLong(key.len()));
    }
    Ok(())
}

/// The cursor of a page that ended after `last_key`: opaque to scripts (base64url of the key),
/// the same in both backends so a cursor means "strictly after this key".
pub fn encode_cursor(last_key: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last_key)
}

/// The key a cursor continues after.
pub fn decode_cursor(cursor: &str) -> Result<Vec<u8>, KvError> {
    // A cursor encodes one key, so anything longer than a key's encoding is not ours.
    if cursor.len() > KEY_BYTES_MAX * 4 / 3 + 4 {
        return Err(KvError::InvalidCursor);
    }
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| KvError::InvalidCursor)?;
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(KvError::InvalidCursor);
    }
    Ok(key)
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// if there is none (the prefix is empty or all `0xff`).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut successor = prefix.to_vec();
    while let Some(last) = successor.pop() {
        if last < u8::MAX {
            successor.push(last + 1);
            return Some(successor);
        }
    }
    None
}

/// Operation and byte counters of one namespace (exported by the lead on /metrics).
#[derive(Debug, Default)]
pub struct NamespaceCounters {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub deletes: AtomicU64,
    pub lists: AtomicU64,
    /// Value and metadata bytes returned by `get`.
    pub bytes_read: AtomicU64,
    /// Key, value and metadata bytes stored by `put`.
    pub bytes_written: AtomicU64,
    /// Operations that ended in an error, including those refused before they were queued.
    pub errors: AtomicU64,
}

/// A copy of [`NamespaceCounters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub gets: u64,
    pub puts: u64,
    pub deletes: u64,
    pub lists: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
}

impl NamespaceCounters {
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            gets: self.gets.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Counts one finished operation.
    pub(crate) fn record(&self, verb: &'static str, bytes_written: u64, result: &Result<KvReply, KvError>) {
        let counter = match verb {
            "get" => &self.gets,
            "put" => &self.puts,
            "delete" => &self.deletes,
            _ => &self.lists,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(KvReply::Value(Some(value))) => {
                let bytes = value.value.len() + value.metadata.as_ref().map_or(0, String::len);
                self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Ok(KvReply::Done) => {
                self.bytes_written.fetch_add(bytes_written, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One tenant's KV namespace: its place in the key space and its counters. Cheap to clone;
/// made by a [`NamespaceRegistry`] so every handle on the same namespace shares its counters.
#[derive(Debug, Clone)]
pub struct Namespace(Arc<NamespaceInner>);

#[derive(Debug)]
struct NamespaceInner {
    tenant: String,
    name: String,
    counters: NamespaceCounters,
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Self) -> bool {
        self.0.tenant == other.0.tenant && self.0.name == other.0.name
    }
}
impl Eq for Namespace {}

impl Namespace {
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn counters(&self) -> &NamespaceCounters {
        &self.0.counters
    }

    /// The prefix of this namespace's keys in the embedded store: both names length-prefixed,
    /// so no tenant's key space can reach into another's whatever bytes the names hold.
    pub(crate) fn embedded_prefix(&self) -> Vec<u8> {
        let mut prefix = Vec::with_capacity(self.0.tenant.len() + self.0.name.len() + 2);
        // Names are at most 255 bytes (checked at creation), so each length fits in a byte.
        prefix.push(u8::try_from(self.0.tenant.len()).unwrap_or(u8::MAX));
        prefix.extend_from_slice(self.0.tenant.as_bytes());
        prefix.push(u8::try_from(self.0.name.len()).unwrap_or(u8::MAX));
        prefix.extend_from_slice(self.0.name.as_bytes());
        prefix
    }
}

/// Every namespace handed out, so their counters can be listed for /metrics.
#[derive(Debug, Default)]
pub struct NamespaceRegistry {
    namespaces: Mutex<HashMap<(String, String), Namespace>>,
}

impl NamespaceRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The namespace `name` of `tenant` (the same handle, and counters, on every call). Called at
    /// deploy time on the control thread, not per request.
    pub fn namespace(&self, tenant: &str, name: &str) -> Result<Namespace, KvError> {
        let valid = |s: &str| !s.is_empty() && s.len() <= NAMESPACE_NAME_BYTES_MAX && !s.contains(['{', '}', '\0']);
        if !valid(tenant) || !valid(name) {
            return Err(KvError::BadNamespace);
        }
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let namespace = namespaces.entry((tenant.to_owned(), name.to_owned())).or_insert_with(|| {
            Namespace(Arc::new(NamespaceInner {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                counters: NamespaceCounters::default(),
            }))
        });
        Ok(namespace.clone())
    }

    /// (tenant, namespace, counters) for every namespace, sorted.
    pub fn snapshot(&self) -> Vec<(String, String, CountersSnapshot)> {
        let namespaces = self.namespaces.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut rows: Vec<_> = namespaces
            .values()
            .map(|ns| (ns.tenant().to_owned(), ns.name().to_owned(), ns.counters().snapshot()))
            .collect();
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_typed_errors() {
        let now = 1_000_000_000_000;
        let get = |key: &str| KvOp::Get { key: key.into(), cache_ttl_secs: None }.prepare(now);
        assert_eq!(get(""), Err(KvError::KeyEmpty));
        assert_eq!(get("."), Err(KvError::KeyDots));
        assert_eq!(get(".."), Err(KvError::KeyDots));
        assert!(get("...").is_ok());
        assert!(get(&"k".repeat(512)).is_ok());
        assert_eq!(get(&"k".repeat(513)), Err(KvError::KeyTooLong(513)));
        // 512 bytes, not 512 characters: "é" is two bytes.
        assert_eq!(get(&"é".repeat(257)), Err(KvError::KeyTooLong(514)));
        assert_eq!(KvError::KeyEmpty.js_class(), "TypeError");
        assert_eq!(KvError::KeyTooLong(513).js_class(), "Error");
        assert_eq!(
            KvOp::Get { key: "k".into(), cache_ttl_secs: Some(29) }.prepare(now),
            Err(KvError::CacheTtlTooShort(29))
        );
        assert!(KvOp::Get { key: "k".into(), cache_ttl_secs: Some(30) }.prepare(now).is_ok());

        let put = |value: Vec<u8>, expiration, metadata: Option<&str>| {
            KvOp::Put { key: "k".into(), value, expiration, metadata: metadata.map(str::to_owned) }.prepare(now)
        };
        assert!(put(vec![0; VALUE_BYTES_MAX], Expiration::Never, None).is_ok());
        assert_eq!(put(vec![0; VALUE_BYTES_MAX + 1], Expiration::Never, None), Err(KvError::ValueTooLarge(26214401)));
        let big = format!("\"{}\"", "m".repeat(1023));
        assert_eq!(put(vec![], Expiration::Never, Some(&big)), Err(KvError::MetadataTooLarge(1025)));
        assert_eq!(put(vec![], Expiration::Never, Some("{nope")), Err(KvError::MetadataNotJson));
        assert_eq!(put(vec![], Expiration::Ttl(59), None), Err(KvError::ExpirationTtlTooShort(59)));
        let now_secs = now / 1000;
        assert_eq!(
            put(vec![], Expiration::Ttl(60), None).map(|op| match op {
                KvOp::Put { expiration, .. } => expiration,
                _ => Expiration::Never,
            }),
            Ok(Expiration::At(now_secs + 60))
        );
        assert_eq!(put(vec![], Expiration::At(now_secs + 59), None), Err(KvError::ExpirationTooSoon(now_secs + 59)));
        assert!(put(vec![], Expiration::At(now_secs + 60), None).is_ok());

        let list = |limit, cursor: Option<&str>| {
            KvOp::List { prefix: String::new(), limit, cursor: cursor.map(str::to_owned) }.prepare(now)
        };
        assert_eq!(list(0, None), Err(KvError::ListLimitOutOfRange(0)));
        assert_eq!(list(1001, None), Err(KvError::ListLimitOutOfRange(1001)));
        assert!(list(1000, None).is_ok());
        assert_eq!(list(10, Some("not base64!")), Err(KvError::InvalidCursor));
        assert_eq!(list(10, Some(&"A".repeat(5000))), Err(KvError::InvalidCursor));
        assert!(list(10, Some(&encode_cursor(b"key"))).is_ok());
    }

    #[test]
    fn prefix_successors() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn namespaces_are_shared_and_checked() {
        let registry = NamespaceRegistry::new();
        let a = registry.namespace("t1", "ns").unwrap();
        let b = registry.namespace("t1", "ns").unwrap();
        a.counters().gets.fetch_add(1, Ordering::Relaxed);
        assert_eq!(b.counters().snapshot().gets, 1);
        assert_eq!(registry.namespace("t{1}", "ns").unwrap_err(), KvError::BadNamespace);
        assert_eq!(registry.namespace("", "ns").unwrap_err(), KvError::BadNamespace);
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        let x = registry.namespace("ab", "c").unwrap().embedded_prefix();
        let y = registry.namespace("a", "bc").unwrap().embedded_prefix();
        assert_ne!(x, y);
        assert!(!x.starts_with(&y) && !y.starts_with(&x));
        assert_eq!(registry.snapshot().len(), 3);
    }
}
