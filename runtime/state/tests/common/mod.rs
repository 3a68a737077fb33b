//! KV semantics shared by both backends' tests: each backend provides a [`KvHarness`] that runs
//! one operation to completion, and the same cases run against the embedded store and against a
//! real redis-server.

#![allow(dead_code)]

use std::sync::Arc;

use isobar_state::clock::ManualClock;
use isobar_state::kv::{
    Expiration, KvError, KvOp, KvReply, KvValue, ListKey, ListResult, Namespace, NamespaceRegistry,
};

/// 2030-01-01T00:00:00Z; the Redis harness overrides it with the real time because the server
/// expires hashes by its own clock.
pub const T0_MS: u64 = 1_893_456_000_000;

pub trait KvHarness {
    /// Runs one operation and waits (bounded) for its reply.
    fn exec(&mut self, namespace: &Namespace, op: KvOp) -> Result<KvReply, KvError>;
    fn clock(&self) -> &Arc<ManualClock>;
    fn registry(&self) -> &Arc<NamespaceRegistry>;
}

pub fn get(h: &mut dyn KvHarness, ns: &Namespace, key: &str) -> Option<KvValue> {
    match h.exec(ns, KvOp::Get { key: key.into(), cache_ttl_secs: None }) {
        Ok(KvReply::Value(value)) => value,
        other => panic!("get {key}: {other:?}"),
    }
}

pub fn put(h: &mut dyn KvHarness, ns: &Namespace, key: &str, value: &[u8], expiration: Expiration, meta: Option<&str>) {
    let op = KvOp::Put { key: key.into(), value: value.to_vec(), expiration, metadata: meta.map(str::to_owned) };
    assert_eq!(h.exec(ns, op), Ok(KvReply::Done), "put {key}");
}

pub fn delete(h: &mut dyn KvHarness, ns: &Namespace, key: &str) {
    assert_eq!(h.exec(ns, KvOp::Delete { key: key.into() }), Ok(KvReply::Done), "delete {key}");
}

pub fn list(h: &mut dyn KvHarness, ns: &Namespace, prefix: &str, limit: u32, cursor: Option<String>) -> ListResult {
    match h.exec(ns, KvOp::List { prefix: prefix.into(), limit, cursor }) {
        Ok(KvReply::List(result)) => result,
        other => panic!("list {prefix}: {other:?}"),
    }
}

/// Every page of a listing, following cursors; checks the cursor invariant on the way.
pub fn list_all(h: &mut dyn KvHarness, ns: &Namespace, prefix: &str, limit: u32) -> (Vec<ListKey>, usize) {
    let mut keys = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = list(h, ns, prefix, limit, cursor.take());
        pages += 1;
        assert!(page.keys.len() <= limit as usize);
        assert_eq!(page.list_complete, page.cursor.is_none(), "a cursor exactly when incomplete");
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return (keys, pages),
        }
        assert!(pages < 10_000, "listing does not end");
    }
}

pub fn value(bytes: &[u8], meta: Option<&str>) -> Option<KvValue> {
    Some(KvValue { value: bytes.to_vec(), metadata: meta.map(str::to_owned) })
}

/// Each case takes fresh namespaces under `tenant`, so the cases do not see each other's keys.
pub fn run_all(h: &mut dyn KvHarness, tenant: &str) {
    basic_values_and_metadata(h, tenant);
    expiration(h, tenant);
    namespaces_are_isolated(h, tenant);
    list_pagination_in_byte_order(h, tenant);
    limit_errors(h, tenant);
    largest_value(h, tenant);
}

pub fn basic_values_and_metadata(h: &mut dyn KvHarness, tenant: &str) {
    let ns = h.registry().namespace(tenant, "basic").unwrap();
    assert_eq!(get(h, &ns, "missing"), None);
    let every_byte: Vec<u8> = (0..=255).collect();
    put(h, &ns, "bin", &every_byte, Expiration::Never, None);
    assert_eq!(get(h, &ns, "bin"), value(&every_byte, None));
    put(h, &ns, "empty", b"", Expiration::Never, None);
    assert_eq!(get(h, &ns, "empty"), value(b"", None));
    let meta = r#"{"owner":"ana","n":[1,2,{"x":null}]}"#;
    put(h, &ns, "with-meta", b"v1", Expiration::Never, Some(meta));
    assert_eq!(get(h, &ns, "with-meta"), value(b"v1", Some(meta)));
    // Overwriting replaces value and metadata together.
    put(h, &ns, "with-meta", b"v2", Expiration::Never, None);
    assert_eq!(get(h, &ns, "with-meta"), value(b"v2", None));
    // Keys are any UTF-8 but "." and "..", including "..." and the limit's length.
    let long = "é".repeat(256);
    put(h, &ns, &long, b"long", Expiration::Never, None);
    put(h, &ns, "...", b"dots", Expiration::Never, None);
    assert_eq!(get(h, &ns, &long), value(b"long", None));
    assert_eq!(get(h, &ns, "..."), value(b"dots", None));
    delete(h, &ns, "with-meta");
    assert_eq!(get(h, &ns, "with-meta"), None);
    delete(h, &ns, "never-existed");
    let listed = list(h, &ns, "", 1000, None);
    let names: Vec<&str> = listed.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, vec!["...", "bin", "empty", long.as_str()]);
    assert!(listed.list_complete);
}

pub fn expiration(h: &mut dyn KvHarness, tenant: &str) {
    let ns = h.registry().namespace(tenant, "expiry").unwrap();
    let now_secs = h.clock().now_ms_for_tests() / 1000;
    put(h, &ns, "ttl", b"a", Expiration::Ttl(60), Some(r#""m""#));
    put(h, &ns, "at", b"b", Expiration::At(now_secs + 120), None);
    put(h, &ns, "forever", b"c", Expiration::Never, None);
    assert_eq!(get(h, &ns, "ttl"), value(b"a", Some(r#""m""#)));
    let listed = list(h, &ns, "", 10, None);
    let expirations: Vec<(&str, Option<u64>)> = listed.keys.iter().map(|k| (k.name.as_str(), k.expiration)).collect();
    assert_eq!(expirations, vec![("at", Some(now_secs + 120)), ("forever", None), ("ttl", Some(now_secs + 60))]);
    assert_eq!(listed.keys[2].metadata.as_deref(), Some(r#""m""#));

    h.clock().advance_ms(59_999);
    assert_eq!(get(h, &ns, "ttl"), value(b"a", Some(r#""m""#)), "not yet expired");
    h.clock().advance_ms(1);
    assert_eq!(get(h, &ns, "ttl"), None, "expired at exactly its expiration");
    let names: Vec<String> = list(h, &ns, "", 10, None).keys.into_iter().map(|k| k.name).collect();
    assert_eq!(names, vec!["at", "forever"]);
    h.clock().advance_ms(60_000);
    assert_eq!(get(h, &ns, "at"), None);
    assert_eq!(get(h, &ns, "forever"), value(b"c", None));
    // A put over an expired key starts afresh; a put without expiration clears the old one.
    put(h, &ns, "ttl", b"again", Expiration::Ttl(60), None);
    put(h, &ns, "ttl", b"again", Expiration::Never, None);
    h.clock().advance_ms(120_000);
    assert_eq!(get(h, &ns, "ttl"), value(b"again", None));
}

pub fn namespaces_are_isolated(h: &mut dyn KvHarness, tenant: &str) {
    let a = h.registry().namespace(tenant, "iso-a").unwrap();
    let b = h.registry().namespace(tenant, "iso-b").unwrap();
    let other_tenant = format!("{tenant}-other");
    let c = h.registry().namespace(&other_tenant, "iso-a").unwrap();
    put(h, &a, "k", b"from a", Expiration::Never, None);
    put(h, &b, "k", b"from b", Expiration::Never, None);
    assert_eq!(get(h, &a, "k"), value(b"from a", None));
    assert_eq!(get(h, &b, "k"), value(b"from b", None));
    assert_eq!(get(h, &c, "k"), None);
    assert_eq!(list(h, &c, "", 10, None).keys, vec![]);
    delete(h, &a, "k");
    assert_eq!(get(h, &b, "k"), value(b"from b", None));
}

pub fn list_pagination_in_byte_order(h: &mut dyn KvHarness, tenant: &str) {
    let ns = h.registry().namespace(tenant, "paging").unwrap();
    // 2,600 keys in a shuffled order, over two prefixes, plus keys whose UTF-8 sorts after ASCII.
    let mut names: Vec<String> = (0..1300).map(|i| format!("user:{i:05}")).collect();
    names.extend((0..1300).map(|i| format!("item:{}", i * 7919 % 1300)));
    names.extend(["é", "z", "zz", "\u{10348}", "Z", "0"].map(String::from));
    let mut order: Vec<usize> = (0..names.len()).collect();
    // A fixed permutation so the store cannot get lucky on insertion order.
    order.sort_by_key(|i| (i * 2_654_435_761) % 4_294_967_291);
    for i in order {
        let meta = format!("{{\"i\":{i}}}");
        put(h, &ns, &names[i], names[i].as_bytes(), Expiration::Never, Some(&meta));
    }
    let mut expected: Vec<&String> = names.iter().collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

    let (all, pages) = list_all(h, &ns, "", 1000);
    assert_eq!(pages, 3);
    let listed: Vec<&String> = all.iter().map(|k| &k.name).collect();
    assert_eq!(listed, expected);
    for key in &all {
        let i = names.iter().position(|n| *n == key.name).unwrap();
        assert_eq!(key.metadata.as_deref(), Some(format!("{{\"i\":{i}}}").as_str()));
        assert_eq!(key.expiration, None);
    }

    let (users, pages) = list_all(h, &ns, "user:", 250);
    assert_eq!(pages, 6, "1300 keys in pages of 250 take 6 pages");
    assert_eq!(users.len(), 1300);
    assert!(users.windows(2).all(|w| w[0].name < w[1].name));
    assert!(users.iter().all(|k| k.name.starts_with("user:")));

    // An exact page boundary still ends with list_complete (possibly after an empty page).
    let (items, pages) = list_all(h, &ns, "item:", 100);
    assert_eq!((items.len(), pages), (1300, 13));
    let first = list(h, &ns, "item:", 1000, None);
    assert_eq!(first.keys.len(), 1000);
    assert!(!first.list_complete);
    let rest = list(h, &ns, "item:", 1000, first.cursor.clone());
    assert_eq!(rest.keys.len(), 300);
    assert!(rest.list_complete);

    // A cursor keeps working when the key it names is deleted meanwhile.
    let page = list(h, &ns, "user:", 10, None);
    delete(h, &ns, &page.keys[9].name);
    let next = list(h, &ns, "user:", 10, page.cursor);
    assert_eq!(next.keys[0].name, "user:00010");

    assert_eq!(list(h, &ns, "nothing-here", 10, None).keys, vec![]);
    assert!(list(h, &ns, "nothing-here", 10, None).list_complete);
}

pub fn limit_errors(h: &mut dyn KvHarness, tenant: &str) {
    let ns = h.registry().namespace(tenant, "limits").unwrap();
    let put_op = |key: &str, value: usize, expiration, meta: Option<String>| KvOp::Put {
        key: key.into(),
        value: vec![b'v'; value],
        expiration,
        metadata: meta,
    };
    assert_eq!(h.exec(&ns, put_op("", 1, Expiration::Never, None)), Err(KvError::KeyEmpty));
    assert_eq!(h.exec(&ns, put_op(".", 1, Expiration::Never, None)), Err(KvError::KeyDots));
    assert_eq!(h.exec(&ns, put_op(&"k".repeat(513), 1, Expiration::Never, None)), Err(KvError::KeyTooLong(513)));
    assert_eq!(
        h.exec(&ns, put_op("k", 25 * 1024 * 1024 + 1, Expiration::Never, None)),
        Err(KvError::ValueTooLarge(25 * 1024 * 1024 + 1))
    );
    let meta = format!("[{}]", "1,".repeat(511) + "1");
    assert_eq!(meta.len(), 1025);
    assert_eq!(h.exec(&ns, put_op("k", 1, Expiration::Never, Some(meta))), Err(KvError::MetadataTooLarge(1025)));
    assert_eq!(h.exec(&ns, put_op("k", 1, Expiration::Ttl(30), None)), Err(KvError::ExpirationTtlTooShort(30)));
    let now_secs = h.clock().now_ms_for_tests() / 1000;
    assert_eq!(
        h.exec(&ns, put_op("k", 1, Expiration::At(now_secs + 10), None)),
        Err(KvError::ExpirationTooSoon(now_secs + 10))
    );
    assert_eq!(
        h.exec(&ns, KvOp::Get { key: "k".into(), cache_ttl_secs: Some(10) }),
        Err(KvError::CacheTtlTooShort(10))
    );
    assert_eq!(
        h.exec(&ns, KvOp::List { prefix: String::new(), limit: 1001, cursor: None }),
        Err(KvError::ListLimitOutOfRange(1001))
    );
    assert_eq!(
        h.exec(&ns, KvOp::List { prefix: String::new(), limit: 10, cursor: Some("%%%".into()) }),
        Err(KvError::InvalidCursor)
    );
    // Nothing of the refused puts was stored, and the errors were counted.
    assert_eq!(get(h, &ns, "k"), None);
    assert_eq!(ns.counters().snapshot().errors, 10);
}

pub fn largest_value(h: &mut dyn KvHarness, tenant: &str) {
    let ns = h.registry().namespace(tenant, "large").unwrap();
    let big: Vec<u8> = (0..25 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    put(h, &ns, "big", &big, Expiration::Never, Some("{}"));
    let got = get(h, &ns, "big").unwrap();
    assert!(got.value == big, "25 MiB value round-trips");
    let counters = ns.counters().snapshot();
    assert_eq!(counters.puts, 1);
    assert_eq!(counters.gets, 1);
    assert_eq!(counters.bytes_written, (3 + big.len() + 2) as u64);
    assert_eq!(counters.bytes_read, (big.len() + 2) as u64);
}

/// `ManualClock` reads through the trait; a short name for tests.
pub trait ClockRead {
    fn now_ms_for_tests(&self) -> u64;
}

impl ClockRead for Arc<ManualClock> {
    fn now_ms_for_tests(&self) -> u64 {
        use isobar_state::clock::Clock;
        self.now_unix_ms()
    }
}
