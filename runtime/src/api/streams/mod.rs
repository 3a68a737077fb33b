//! The WHATWG Streams Standard (ReadableStream with default and byte streams, BYOB readers,
//! tee, pipes, async iteration and `from`; WritableStream; TransformStream; the queuing
//! strategies) and workerd's IdentityTransformStream and FixedLengthStream, all in JavaScript
//! run into the snapshot, plus what the Fetch classes read bodies through (`body.js`).
//!
//! Why JavaScript: a stream's work is promise reactions and calls into a script's own
//! callbacks (start, pull, write, transform), which V8 runs fastest without crossing into
//! Rust and back; the native parts a stream may drive (compression, text decoding) are ops of
//! their own areas. Nothing here runs unless a script touches a stream: the request path
//! stays free of stream code.
//!
//! The files share the standard's abstract operations through `internals.streams`, which tenant
//! code never reaches, and use primordials after start-up, so a tenant replacing
//! `Promise.prototype.then` or `Array.prototype.push` cannot change how a stream behaves.
//! Promises isobar keeps internally are marked handled, so a stream reports no unhandled
//! rejection the standard does not cause.

/// The files, in the order they must be evaluated (listed in `api::BOOTSTRAP`).
pub const COMMON_JS: (&str, &str) = ("isobar:streams/common", include_str!("common.js"));
pub const READABLE_JS: (&str, &str) = ("isobar:streams/readable", include_str!("readable.js"));
pub const WRITABLE_JS: (&str, &str) = ("isobar:streams/writable", include_str!("writable.js"));
pub const TRANSFORM_JS: (&str, &str) = ("isobar:streams/transform", include_str!("transform.js"));
pub const BODY_JS: (&str, &str) = ("isobar:streams/body", include_str!("body.js"));

#[cfg(test)]
mod tests {
    use crate::testing::{Req, api_test};

    #[test]
    fn readable_streams() {
        api_test("streams/test_readable.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn byte_streams_and_byob_readers() {
        api_test("streams/test_byte.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn writable_streams() {
        api_test("streams/test_writable.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn transform_streams_and_pipes() {
        api_test("streams/test_transform.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn identity_and_fixed_length_streams() {
        api_test("streams/test_extras.js", &Req::get("http://example.com/"));
    }

    #[test]
    fn request_and_response_stream_bodies() {
        api_test(
            "streams/test_body.js",
            &Req { method: "POST", url: "http://example.com/upload", headers: &[], body: b"uploaded body" },
        );
    }
}
