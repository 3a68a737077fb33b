//! The Fetch API's classes: `Headers`, `Request`, `Response` (native, see `bridge::class`), the
//! Body mixin they share, and the JS that connects bodies to streams, Blob and FormData
//! (`fetch.js`). `fetch()` itself, the outbound side, is added with subrequests.

pub mod body;
pub mod headers;
pub mod outbound;
pub mod request;
pub mod response;

use crate::bridge::class::ClassDecl;
use crate::bridge::{JsError, Scope};

pub const JS: (&str, &str) = ("isobar:fetch", include_str!("fetch.js"));
/// `fetch()` itself; after `JS`, which it builds on.
pub const OUTBOUND_JS: (&str, &str) = ("isobar:fetch/outbound", include_str!("outbound.js"));

pub fn classes() -> Vec<ClassDecl> {
    vec![headers::class(), request::class(), response::class()]
}

/// The value of header `name` in `headers` as a JS value (for the hooks), if present.
pub fn header_value<'s>(
    scope: &mut Scope<'s, '_>,
    headers: v8::Local<'s, v8::Object>,
    name: &'static str,
) -> Result<Option<v8::Local<'s, v8::Value>>, JsError> {
    Ok(headers::value(scope, headers, name)?.map(Into::into))
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers() {
        crate::testing::api_test(
            "fetch/test_headers.js",
            &crate::testing::Req { headers: &[("x-test", b"yes")], ..crate::testing::Req::get("http://example.com/") },
        );
    }

    #[test]
    fn request_and_response() {
        crate::testing::api_test(
            "fetch/test_types.js",
            &crate::testing::Req {
                method: "POST",
                url: "http://example.com/path?q=1",
                headers: &[("content-type", b"application/json")],
                body: br#"{"hello":"world"}"#,
            },
        );
    }
}
