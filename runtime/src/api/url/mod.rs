//! URL and URLSearchParams: parsing and serialisation in Rust (the `url` crate, a WHATWG URL
//! Standard parser), the classes in `url.js`.
//!
//! Inputs are capped at [`URL_BYTES_MAX`]; a serialisation V8 cannot hold is a RangeError, never
//! a panic (percent-encoding can make a URL's href several times longer than its input).

use crate::bridge::{JsError, OpDecl, args};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:url", include_str!("url.js"));

/// The longest URL (or base, or setter value, or query string) an op takes, in bytes of UTF-8.
pub const URL_BYTES_MAX: usize = 16 << 20;

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("urlParse", url_parse),
        op_decl!("urlSet", url_set),
        op_decl!("formDecode", form_decode),
        op_decl!("formEncode", form_encode),
    ]
}

/// The components of `url` as an object keyed by the names of the URL attributes.
fn url_components<'s>(scope: &mut v8::PinScope<'s, '_>, url: &url::Url) -> Result<v8::Local<'s, v8::Object>, JsError> {
    use url::quirks;
    let object = v8::Object::new(scope);
    let parts: [(&'static str, &str); 10] = [
        ("href", quirks::href(url)),
        ("protocol", quirks::protocol(url)),
        ("username", quirks::username(url)),
        ("password", quirks::password(url)),
        ("host", quirks::host(url)),
        ("hostname", quirks::hostname(url)),
        ("port", quirks::port(url)),
        ("pathname", quirks::pathname(url)),
        ("search", quirks::search(url)),
        ("hash", quirks::hash(url)),
    ];
    for (key, value) in parts {
        let value = args::new_string(scope, value)?;
        args::set(scope, object, key, value.into())?;
    }
    let origin = args::new_string(scope, &quirks::origin(url))?;
    args::set(scope, object, "origin", origin.into())?;
    Ok(object)
}

/// Parses `input` against an optional `base`, as `new URL(input, base)` does.
pub fn parse(input: &str, base: Option<&str>) -> Option<url::Url> {
    match base {
        None => url::Url::parse(input).ok(),
        Some(base) => url::Url::parse(base).and_then(|b| b.join(input)).ok(),
    }
}

op!(fn url_parse(scope, args) {
    let input = args::string_coerced(scope, &args, 0, URL_BYTES_MAX, "URL")?;
    let base = if args.get(1).is_undefined() {
        None
    } else {
        Some(args::string_coerced(scope, &args, 1, URL_BYTES_MAX, "URL")?)
    };
    match parse(&input, base.as_deref()) {
        Some(url) => Ok(Some(url_components(scope, &url)?)),
        None => Ok(None),
    }
});

op!(fn url_set(scope, args) {
    use url::quirks;
    let href = args::string_coerced(scope, &args, 0, URL_BYTES_MAX, "URL")?;
    let which = args::string_coerced(scope, &args, 1, 16, "URL")?;
    let value = args::string_coerced(scope, &args, 2, URL_BYTES_MAX, "URL")?;
    let Ok(mut url) = url::Url::parse(&href) else { return Ok(None) };
    let ok = match which.as_str() {
        "href" => match url::Url::parse(&value) {
            Ok(u) => {
                url = u;
                true
            }
            Err(_) => false,
        },
        "protocol" => quirks::set_protocol(&mut url, &value).is_ok(),
        "username" => quirks::set_username(&mut url, &value).is_ok(),
        "password" => quirks::set_password(&mut url, &value).is_ok(),
        "host" => quirks::set_host(&mut url, &value).is_ok(),
        "hostname" => quirks::set_hostname(&mut url, &value).is_ok(),
        "port" => quirks::set_port(&mut url, &value).is_ok(),
        "pathname" => {
            quirks::set_pathname(&mut url, &value);
            true
        }
        "search" => {
            quirks::set_search(&mut url, &value);
            true
        }
        "hash" => {
            quirks::set_hash(&mut url, &value);
            true
        }
        _ => return Err(JsError::type_error("URL: unknown attribute")),
    };
    // A setter the standard says to ignore leaves the URL as it was; report it unchanged.
    if ok || which != "href" { Ok(Some(url_components(scope, &url)?)) } else { Ok(None) }
});

op!(fn form_decode(scope, args) {
    let input = args::string_coerced(scope, &args, 0, URL_BYTES_MAX, "URLSearchParams")?;
    let mut values: Vec<v8::Local<v8::Value>> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(input.as_bytes()) {
        values.push(args::new_string(scope, &k)?.into());
        values.push(args::new_string(scope, &v)?.into());
    }
    Ok(v8::Array::new_with_elements(scope, &values))
});

op!(fn form_encode(scope, args) {
    let Ok(flat) = v8::Local::<v8::Array>::try_from(args.get(0)) else {
        return Err(JsError::type_error("formEncode: argument must be an array"));
    };
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    let mut total = 0usize;
    let n = flat.length();
    let mut i = 0;
    while i + 1 < n {
        let k = flat.get_index(scope, i).ok_or(JsError::Pending)?;
        let v = flat.get_index(scope, i + 1).ok_or(JsError::Pending)?;
        let k = args::to_js_string(scope, k)?;
        let v = args::to_js_string(scope, v)?;
        let k = args::to_rust_string(scope, k, URL_BYTES_MAX, "URLSearchParams")?;
        let v = args::to_rust_string(scope, v, URL_BYTES_MAX, "URLSearchParams")?;
        total = total.saturating_add(k.len() + v.len());
        if total > URL_BYTES_MAX {
            return Err(JsError::range_error("URLSearchParams: the query would be too long"));
        }
        serializer.append_pair(&k, &v);
        i += 2;
    }
    args::new_string(scope, &serializer.finish())
});

#[cfg(test)]
mod tests {
    #[test]
    fn behaves_as_the_standard_says() {
        crate::testing::api_test("url/test.js", &crate::testing::Req::get("http://example.com/"));
    }
}
