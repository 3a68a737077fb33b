//! `crypto`: random values from the kernel (getrandom through kernel-shim), UUIDs, and WebCrypto:
//! `crypto.subtle`, `CryptoKey` and `crypto.DigestStream` (`subtle.js` with `subtle.rs` and
//! `digest_stream.rs`) over `isobar-crypto` (`runtime/crypto`), the engine that decides everything
//! WebCrypto decides. The engine is its own crate so that it builds and tests without V8 and cannot
//! touch an isolate; `docs/webcrypto.md` says what it supports and where it follows workerd.

pub mod digest_stream;
pub mod subtle;

use crate::bridge::{JsError, OpDecl, args};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:crypto", include_str!("crypto.js"));
/// Loaded after `crypto.js` (it adds `subtle` and `DigestStream` to its `Crypto`).
pub const SUBTLE_JS: (&str, &str) = ("isobar:crypto-subtle", include_str!("subtle.js"));

/// What the crypto area keeps per isolate beside its resources.
#[derive(Debug)]
pub struct CryptoState {
    /// Keys stored since the last collection forced to make room for keys (`subtle::store_key`):
    /// a full collection is forced at most once per [`subtle::KEYS_PER_FORCED_COLLECTION`], so a
    /// script that holds a full table cannot make every attempt cost one.
    pub keys_since_collection: usize,
}

impl Default for CryptoState {
    fn default() -> Self {
        // The first full table may force a collection.
        CryptoState { keys_since_collection: subtle::KEYS_PER_FORCED_COLLECTION }
    }
}

/// The most bytes one getRandomValues call fills (the Web Crypto limit).
const RANDOM_BYTES_MAX: usize = 65536;

pub fn ops() -> Vec<OpDecl> {
    let mut all = vec![op_decl!("randomFill", random_fill), op_decl!("randomUuid", random_uuid)];
    all.extend(subtle::ops());
    all.extend(digest_stream::ops());
    all
}

op!(fn random_fill(scope, args) {
    let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(args.get(0)) else {
        return Err(JsError::type_error("getRandomValues: the argument must be an integer TypedArray"));
    };
    let len = view.byte_length();
    if len > RANDOM_BYTES_MAX {
        return Err(JsError::dom("QuotaExceededError", "getRandomValues: more than 65536 bytes requested"));
    }
    let mut bytes = vec![0u8; len];
    kernel_shim::random::fill(&mut bytes)
        .map_err(|_| JsError::dom("OperationError", "getRandomValues: the kernel's random source failed"))?;
    args::copy_into_view(scope, view, &bytes);
    Ok(())
});

op!(fn random_uuid(scope, args) {
    let _ = &args;
    let mut b = [0u8; 16];
    kernel_shim::random::fill(&mut b)
        .map_err(|_| JsError::dom("OperationError", "randomUUID: the kernel's random source failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    args::new_string(scope, &uuid)
});

#[cfg(test)]
mod tests {
    use crate::testing::{Req, api_test};

    #[test]
    fn random_values_and_uuids() {
        api_test("crypto/test_random.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn subtle_round_trips_every_algorithm() {
        api_test("crypto/test_subtle.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn subtle_imports_and_exports_every_format() {
        api_test("crypto/test_keys.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn subtle_rejects_with_the_errors_the_spec_names() {
        api_test("crypto/test_errors.js", &Req::get("http://example.com/"));
    }

    fn open_resources(worker: &mut crate::Worker) -> usize {
        worker.isolate_mut().state.borrow().resources.len()
    }

    /// A key's Rust side lives until its CryptoKey is collected, and not longer: the
    /// FinalizationRegistry frees it once the collector has run and the core pumps V8's tasks.
    #[test]
    fn keys_are_freed_when_collected() {
        let mut worker = crate::testing::load_api_test("crypto/test_key_lifetime.js");
        let ok = (200, "ok".to_string());
        let kept = crate::testing::request(&mut worker, 1, &Req::get("http://example.com/?count=2000&keep=1"));
        assert_eq!(crate::testing::body_of(kept), ok);
        worker.isolate_mut().low_memory();
        worker.run_microtasks(std::time::Duration::MAX);
        let held = open_resources(&mut worker);
        assert!(held >= 2000, "{held} keys open while the script holds 2000");
        let released = crate::testing::request(&mut worker, 2, &Req::get("http://example.com/?release=1"));
        assert_eq!(crate::testing::body_of(released), ok);
        worker.isolate_mut().low_memory();
        worker.run_microtasks(std::time::Duration::MAX);
        let after = open_resources(&mut worker);
        assert!(after < 100, "{after} of {held} keys still open after they were dropped and collected");
    }

    /// A request that makes far more keys than the resource table holds, in a loop of awaits
    /// (where no finalizer can run), still works: full tables are swept of collected keys.
    #[test]
    fn many_keys_in_one_request() {
        let mut worker = crate::testing::load_api_test("crypto/test_key_lifetime.js");
        let outcome = crate::testing::request(&mut worker, 1, &Req::get("http://example.com/?count=20000"));
        assert_eq!(crate::testing::body_of(outcome), (200, "ok".to_string()));
        let open = open_resources(&mut worker);
        assert!(open <= crate::bridge::resources::RESOURCES_MAX, "{open} resources open");
    }

    /// DigestStream needs WritableStream (the streams area, merged separately): without it the
    /// test checks the clear TypeError, answers "skipped: ...", and this prints the note.
    #[test]
    fn digest_stream() {
        let mut worker = crate::testing::load_api_test("crypto/test_digest_stream.js");
        let (status, body) =
            crate::testing::body_of(crate::testing::request(&mut worker, 1, &Req::get("http://example.com/")));
        assert_eq!(status, 200);
        match body.strip_prefix("skipped: ") {
            Some(note) => println!("note: crypto/test_digest_stream.js skipped: {note}"),
            None => assert_eq!(body, "ok"),
        }
    }
}
