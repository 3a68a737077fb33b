//! Blob and File (`blob.js`): immutable bytes with a type, and a name and date for a File.
//!
//! Why JavaScript and not Rust: a Blob's bytes are one Uint8Array held in a private field, so
//! they live in an ArrayBuffer that V8's counting allocator charges to the isolate (a tenant's
//! Blobs are bounded by its memory limit, with no Rust-side table to bound and free), `slice()`
//! is a view of the same memory, and the only native work (UTF-8 encoding and decoding) is
//! already an op of `api/encoding`. This area must not hand its internal Uint8Array to tenant
//! code: every reader gets a copy, which is what keeps a Blob immutable.

pub const JS: (&str, &str) = ("isobar:blob", include_str!("blob.js"));

#[cfg(test)]
mod tests {
    #[test]
    fn blob_and_file_behave_as_the_file_api_says() {
        crate::testing::api_test("blob/test.js", &crate::testing::Req::get("http://example.com/"));
    }
}
