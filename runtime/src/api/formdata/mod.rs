//! FormData (`formdata.js`) and the two form encodings a body can carry, parsed and serialised
//! here: multipart/form-data (RFC 7578, with the HTML standard's escaping) and
//! application/x-www-form-urlencoded (the URL standard's parser in the `url` crate).
//!
//! Why `multer` for multipart: it is the parser axum and Rocket use, kept up to date, with size
//! limits of its own, and its state machine is sans-I/O underneath its `async` face: a body that
//! is already in memory is one chunk of a stream that never waits, so every poll completes at
//! once and [`poll_now`] drives it without an executor (a `Pending` would be a multer bug, and is
//! reported as a malformed body rather than waited on). The `multipart` crate was the
//! alternative; it is unmaintained since 2021 and pulls in a server framework's worth of
//! dependencies. `mime` (multer's own dependency) parses the Content-Type.
//!
//! Everything this module reads comes from a stranger: every limit ([`Limits`]) is checked while
//! parsing, and every failure is a [`FormDataError`] that becomes a JS TypeError (RangeError for
//! an output too large to build). Nothing here may panic on any input (property tests below).

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::api::fetch::body::BODY_BYTES_MAX;
use crate::bridge::{JsError, OpDecl, args};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:formdata", include_str!("formdata.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("formDataParse", form_data_parse), op_decl!("formDataSerialize", form_data_serialize)]
}

/// What a form body may hold before isobar refuses to parse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries (multipart parts, or urlencoded pairs).
    pub parts_max: usize,
    /// Bytes of one part's content.
    pub part_bytes_max: usize,
    /// Bytes of one part's header section.
    pub part_header_bytes_max: usize,
}

impl Limits {
    /// The limits `Body.formData()` applies. A body is already bounded by the HTTP server's body
    /// limit; these bound what one body may turn into: how many JS objects, how large a header.
    pub const DEFAULT: Limits =
        Limits { parts_max: 10_000, part_bytes_max: BODY_BYTES_MAX, part_header_bytes_max: 16 << 10 };
}

/// Why a form body could not be parsed or built. The messages reach the tenant's developer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormDataError {
    #[error("the Content-Type {0:?} is not a valid MIME type")]
    BadContentType(String),
    #[error(
        "the Content-Type is {0:?}; FormData can parse only multipart/form-data and application/x-www-form-urlencoded"
    )]
    NotAForm(String),
    #[error(
        "the multipart/form-data Content-Type has no boundary parameter (RFC 7578 section 4.1 requires one, e.g. `multipart/form-data; boundary=\"abcd\"`)"
    )]
    NoBoundary,
    #[error("the multipart boundary must be 1 to 70 characters (RFC 2046 section 5.1.1); this one has {0}")]
    BadBoundary(usize),
    #[error("malformed multipart/form-data body: {0}")]
    Malformed(String),
    #[error("a multipart/form-data part has no Content-Disposition name (or a name that is not UTF-8)")]
    MissingName,
    #[error("the form has more than {max} entries")]
    TooManyParts { max: usize },
    #[error("a form part is larger than the {max} bytes allowed")]
    PartTooLarge { max: usize },
    #[error("a multipart/form-data part's headers are larger than the {max} bytes allowed")]
    HeadersTooLarge { max: usize },
    #[error("the encoded form would be larger than the {max} bytes allowed")]
    BodyTooLarge { max: usize },
}

impl From<FormDataError> for JsError {
    fn from(error: FormDataError) -> JsError {
        match error {
            FormDataError::BodyTooLarge { .. } => JsError::range_error(format!("FormData: {error}")),
            _ => JsError::type_error(format!("formData(): {error}")),
        }
    }
}

/// One entry of a form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: Value,
}

/// An entry's value: text, or a file's bytes with its name and Content-Type (as sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Text(String),
    File { bytes: Vec<u8>, filename: String, content_type: Option<String> },
}

/// The form encodings isobar parses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    Multipart { boundary: String },
    UrlEncoded,
}

/// Which encoding a Content-Type names (with its boundary for multipart).
pub fn encoding_of(content_type: &str) -> Result<Encoding, FormDataError> {
    let mime: mime::Mime = content_type.parse().map_err(|_| FormDataError::BadContentType(content_type.to_owned()))?;
    let essence = (mime.type_().as_str(), mime.subtype().as_str());
    if essence.0.eq_ignore_ascii_case("multipart") && essence.1.eq_ignore_ascii_case("form-data") {
        let boundary = mime.get_param(mime::BOUNDARY).ok_or(FormDataError::NoBoundary)?;
        let boundary = boundary.as_str();
        if boundary.is_empty() || boundary.len() > 70 {
            return Err(FormDataError::BadBoundary(boundary.chars().count()));
        }
        return Ok(Encoding::Multipart { boundary: boundary.to_owned() });
    }
    if essence.0.eq_ignore_ascii_case("application") && essence.1.eq_ignore_ascii_case("x-www-form-urlencoded") {
        return Ok(Encoding::UrlEncoded);
    }
    Err(FormDataError::NotAForm(mime.essence_str().to_owned()))
}

/// Parses a form body as its Content-Type says.
pub fn parse(body: Vec<u8>, content_type: &str, limits: &Limits) -> Result<Vec<Entry>, FormDataError> {
    match encoding_of(content_type)? {
        Encoding::Multipart { boundary } => parse_multipart(body, &boundary, limits),
        Encoding::UrlEncoded => parse_urlencoded(&body, limits),
    }
}

/// The URL standard's application/x-www-form-urlencoded parser (always UTF-8, as the standard
/// says; workerd refuses other charsets, isobar decodes as UTF-8 regardless).
pub fn parse_urlencoded(body: &[u8], limits: &Limits) -> Result<Vec<Entry>, FormDataError> {
    let mut entries = Vec::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if entries.len() == limits.parts_max {
            return Err(FormDataError::TooManyParts { max: limits.parts_max });
        }
        if name.len().max(value.len()) > limits.part_bytes_max {
            return Err(FormDataError::PartTooLarge { max: limits.part_bytes_max });
        }
        entries.push(Entry { name: name.into_owned(), value: Value::Text(value.into_owned()) });
    }
    Ok(entries)
}

/// Polls a future that cannot wait (see the module comment) to its end.
fn poll_now<T>(future: impl std::future::Future<Output = Result<T, multer::Error>>) -> Result<T, FormDataError> {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(result) => result.map_err(multer_error),
        Poll::Pending => Err(FormDataError::Malformed("the parser stopped before the end of the body".into())),
    }
}

fn multer_error(error: multer::Error) -> FormDataError {
    match error {
        multer::Error::FieldSizeExceeded { limit, .. } | multer::Error::StreamSizeExceeded { limit } => {
            FormDataError::PartTooLarge { max: usize::try_from(limit).unwrap_or(usize::MAX) }
        }
        other => FormDataError::Malformed(other.to_string()),
    }
}

/// Parses a multipart/form-data body (RFC 7578): a part with a `filename` becomes a file, any
/// other a UTF-8 string (invalid sequences replaced).
pub fn parse_multipart(
    body: impl Into<bytes::Bytes>,
    boundary: &str,
    limits: &Limits,
) -> Result<Vec<Entry>, FormDataError> {
    let chunk: bytes::Bytes = body.into();
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(chunk)));
    let size_limit = multer::SizeLimit::new().per_field(limits.part_bytes_max as u64);
    let mut multipart =
        multer::Multipart::with_constraints(stream, boundary, multer::Constraints::new().size_limit(size_limit));
    let mut entries = Vec::new();
    while let Some(field) = poll_now(multipart.next_field())? {
        if entries.len() == limits.parts_max {
            return Err(FormDataError::TooManyParts { max: limits.parts_max });
        }
        let header_bytes: usize =
            field.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
        if header_bytes > limits.part_header_bytes_max {
            return Err(FormDataError::HeadersTooLarge { max: limits.part_header_bytes_max });
        }
        let name = field.name().ok_or(FormDataError::MissingName)?.to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type =
            field.headers().get("content-type").map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let data = poll_now(field.bytes())?;
        let value = match filename {
            Some(filename) => Value::File { bytes: data.to_vec(), filename, content_type },
            None => Value::Text(String::from_utf8_lossy(&data).into_owned()),
        };
        entries.push(Entry { name, value });
    }
    Ok(entries)
}

/// A fresh boundary: 128 random bits, so no part's content can contain it by chance.
pub fn random_boundary() -> Result<String, JsError> {
    let mut random = [0u8; 16];
    kernel_shim::random::fill(&mut random)
        .map_err(|_| JsError::dom("OperationError", "FormData: the kernel's random source failed"))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("----isobar-formdata-{hex}"))
}

/// The HTML standard's newline normalisation for multipart/form-data: every CR not followed by
/// LF and every LF not preceded by CR becomes CRLF.
fn normalize_newlines(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\r', '\n']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                out.push_str("\r\n");
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A field name or filename as the HTML standard writes it inside quotes: newlines normalised,
/// then `"` as `%22`, CR as `%0D`, LF as `%0A`.
fn escape_quoted(out: &mut Vec<u8>, text: &str) {
    for byte in normalize_newlines(text).bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"%22"),
            b'\r' => out.extend_from_slice(b"%0D"),
            b'\n' => out.extend_from_slice(b"%0A"),
            b => out.push(b),
        }
    }
}

/// One entry to serialise, borrowed from the JS values.
pub enum EntryRef<'a> {
    Text { name: &'a str, value: &'a str },
    File { name: &'a str, filename: &'a str, content_type: &'a str, bytes: &'a [u8] },
}

/// Serialises entries as multipart/form-data with `boundary`; at most `bytes_max` bytes.
pub fn serialize_multipart(entries: &[EntryRef], boundary: &str, bytes_max: usize) -> Result<Vec<u8>, FormDataError> {
    let mut out = Vec::new();
    for entry in entries {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        match entry {
            EntryRef::Text { name, value } => {
                escape_quoted(&mut out, name);
                out.extend_from_slice(b"\"\r\n\r\n");
                out.extend_from_slice(normalize_newlines(value).as_bytes());
            }
            EntryRef::File { name, filename, content_type, bytes } => {
                escape_quoted(&mut out, name);
                out.extend_from_slice(b"\"; filename=\"");
                escape_quoted(&mut out, filename);
                out.extend_from_slice(b"\"\r\nContent-Type: ");
                // A type with a line break would forge headers; Blob types are printable ASCII,
                // but this function takes any string.
                let content_type = if content_type.is_empty() || content_type.contains(['\r', '\n']) {
                    "application/octet-stream"
                } else {
                    content_type
                };
                out.extend_from_slice(content_type.as_bytes());
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(b"\r\n");
        if out.len() > bytes_max {
            return Err(FormDataError::BodyTooLarge { max: bytes_max });
        }
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Ok(out)
}

/// `String(value)` as Rust UTF-8, at most a body's size.
fn string<'s>(scope: &mut v8::PinScope<'s, '_>, value: v8::Local<'s, v8::Value>) -> Result<String, JsError> {
    let value = args::to_js_string(scope, value)?;
    args::to_rust_string(scope, value, BODY_BYTES_MAX, "FormData")
}

/// Borrowed views of `entries` for [`serialize_multipart`].
pub fn refs(entries: &[Entry]) -> Vec<EntryRef<'_>> {
    entries
        .iter()
        .map(|entry| match &entry.value {
            Value::Text(value) => EntryRef::Text { name: &entry.name, value },
            Value::File { bytes, filename, content_type } => EntryRef::File {
                name: &entry.name,
                filename,
                content_type: content_type.as_deref().unwrap_or(""),
                bytes,
            },
        })
        .collect()
}

op!(fn form_data_parse(scope, args) {
    let body = args::bytes(args.get(0), BODY_BYTES_MAX, "formData()")?;
    let content_type = args::string_coerced(scope, &args, 1, 16 << 10, "formData()")?;
    let entries = parse(body, &content_type, &Limits::DEFAULT)?;
    let mut flat: Vec<v8::Local<v8::Value>> = Vec::with_capacity(entries.len() * 4);
    for entry in entries {
        let name = args::new_string(scope, &entry.name)?;
        flat.push(name.into());
        match entry.value {
            Value::Text(text) => {
                flat.push(args::new_string(scope, &text)?.into());
                flat.push(v8::undefined(scope).into());
                flat.push(v8::undefined(scope).into());
            }
            Value::File { bytes, filename, content_type } => {
                flat.push(args::new_u8_array(scope, bytes)?.into());
                flat.push(args::new_string(scope, &filename)?.into());
                // A File's type is printable ASCII, or "" (as the File constructor would make it).
                let content_type = content_type.filter(|t| t.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                match content_type {
                    Some(t) => flat.push(args::new_string(scope, &t)?.into()),
                    None => flat.push(v8::undefined(scope).into()),
                }
            }
        }
    }
    Ok(v8::Array::new_with_elements(scope, &flat))
});

op!(fn form_data_serialize(scope, args) {
    // [name, value, filename | undefined, type | undefined, ...]: a string value, or a file's bytes.
    let Ok(flat) = v8::Local::<v8::Array>::try_from(args.get(0)) else {
        return Err(JsError::type_error("formDataSerialize: argument must be an array"));
    };
    let mut entries = Vec::new();
    let mut total = 0usize;
    let mut i = 0;
    while i + 3 < flat.length() {
        let item = |scope: &mut v8::PinScope<'s, '_>, k: u32| flat.get_index(scope, i + k).ok_or(JsError::Pending);
        let (name, value, filename, content_type) = (item(scope, 0)?, item(scope, 1)?, item(scope, 2)?, item(scope, 3)?);
        let name = string(scope, name)?;
        let value = if filename.is_undefined() {
            Value::Text(string(scope, value)?)
        } else {
            let bytes = args::bytes(value, BODY_BYTES_MAX, "FormData")?;
            let filename = string(scope, filename)?;
            let content_type = if content_type.is_undefined() { None } else { Some(string(scope, content_type)?) };
            Value::File { bytes, filename, content_type }
        };
        total = total.saturating_add(name.len()).saturating_add(match &value {
            Value::Text(text) => text.len(),
            Value::File { bytes, filename, .. } => bytes.len() + filename.len(),
        });
        if total > BODY_BYTES_MAX {
            return Err(FormDataError::BodyTooLarge { max: BODY_BYTES_MAX }.into());
        }
        entries.push(Entry { name, value });
        i += 4;
    }
    let boundary = random_boundary()?;
    let body = serialize_multipart(&refs(&entries), &boundary, BODY_BYTES_MAX)?;
    drop(entries);
    let content_type = args::new_string(scope, &format!("multipart/form-data; boundary={boundary}"))?;
    let body = args::new_u8_array(scope, body)?;
    Ok(v8::Array::new_with_elements(scope, &[content_type.into(), body.into()]))
});

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn js_behaviour() {
        crate::testing::api_test("formdata/test.js", &crate::testing::Req::get("http://example.com/"));
    }

    #[test]
    fn multipart_upload_is_parsed_by_request_form_data() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello, world\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"upload\"; filename=\"a.bin\"\r\nContent-Type: application/x-thing\r\n\r\n\
\x00\x01\x02\xff\r\n--XyZ--\r\n";
        crate::testing::api_test(
            "formdata/test_upload.js",
            &crate::testing::Req {
                method: "POST",
                url: "http://example.com/upload",
                headers: &[("content-type", b"multipart/form-data; boundary=XyZ")],
                body,
            },
        );
    }

    fn text(name: &str, value: &str) -> Entry {
        Entry { name: name.into(), value: Value::Text(value.into()) }
    }

    #[test]
    fn content_types_choose_the_parser() {
        assert_eq!(
            encoding_of("multipart/form-data; boundary=\"a b\"").unwrap(),
            Encoding::Multipart { boundary: "a b".into() }
        );
        assert_eq!(
            encoding_of("Multipart/Form-Data; Boundary=Q").unwrap(),
            Encoding::Multipart { boundary: "Q".into() }
        );
        assert_eq!(encoding_of("application/x-www-form-urlencoded;charset=UTF-8").unwrap(), Encoding::UrlEncoded);
        assert_eq!(encoding_of("multipart/form-data"), Err(FormDataError::NoBoundary));
        assert!(matches!(
            encoding_of("multipart/form-data; boundary=\"\""),
            Err(FormDataError::BadBoundary(0) | FormDataError::BadContentType(_))
        ));
        assert_eq!(
            encoding_of(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            Err(FormDataError::BadBoundary(71))
        );
        assert!(matches!(encoding_of("text/plain"), Err(FormDataError::NotAForm(_))));
        assert!(matches!(encoding_of("not a type"), Err(FormDataError::BadContentType(_))));
    }

    #[test]
    fn multipart_parts_and_errors() {
        let body = b"preamble\r\n--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B\r\n\
Content-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\n\r\nfile\r\n--B--\r\nepilogue";
        let entries = parse_multipart(&body[..], "B", &Limits::DEFAULT).unwrap();
        assert_eq!(entries[0], text("a", "1"));
        assert_eq!(
            entries[1].value,
            Value::File { bytes: b"file".to_vec(), filename: "x.txt".into(), content_type: None }
        );

        let truncated = b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1";
        assert!(matches!(parse_multipart(&truncated[..], "B", &Limits::DEFAULT), Err(FormDataError::Malformed(_))));
        let no_boundary = b"just some bytes";
        assert!(matches!(parse_multipart(&no_boundary[..], "B", &Limits::DEFAULT), Err(FormDataError::Malformed(_))));
        let nameless = b"--B\r\nContent-Disposition: form-data\r\n\r\n1\r\n--B--";
        assert_eq!(parse_multipart(&nameless[..], "B", &Limits::DEFAULT), Err(FormDataError::MissingName));

        let limits = Limits { parts_max: 1, ..Limits::DEFAULT };
        assert_eq!(parse_multipart(&body[..], "B", &limits), Err(FormDataError::TooManyParts { max: 1 }));
        let limits = Limits { part_bytes_max: 3, ..Limits::DEFAULT };
        assert_eq!(parse_multipart(&body[..], "B", &limits), Err(FormDataError::PartTooLarge { max: 3 }));
        let limits = Limits { part_header_bytes_max: 40, ..Limits::DEFAULT };
        assert_eq!(parse_multipart(&body[..], "B", &limits), Err(FormDataError::HeadersTooLarge { max: 40 }));
    }

    #[test]
    fn urlencoded_entries_and_limits() {
        let entries = parse_urlencoded(b"a=1&b=%20x+y&&c", &Limits::DEFAULT).unwrap();
        assert_eq!(entries, vec![text("a", "1"), text("b", " x y"), text("c", "")]);
        let limits = Limits { parts_max: 2, ..Limits::DEFAULT };
        assert_eq!(parse_urlencoded(b"a&b&c", &limits), Err(FormDataError::TooManyParts { max: 2 }));
    }

    #[test]
    fn serialisation_escapes_names_and_normalises_newlines() {
        let entries = [
            EntryRef::Text { name: "a\"b\nc", value: "x\ny\rz" },
            EntryRef::File { name: "f", filename: "q\"r.txt", content_type: "", bytes: b"\x00\xff" },
        ];
        let out = serialize_multipart(&entries, "BB", 1 << 20).unwrap();
        let expected: &[u8] = b"--BB\r\nContent-Disposition: form-data; name=\"a%22b%0D%0Ac\"\r\n\r\nx\r\ny\r\nz\r\n\
--BB\r\nContent-Disposition: form-data; name=\"f\"; filename=\"q%22r.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n\
\x00\xff\r\n--BB--\r\n";
        assert_eq!(out, expected);
        assert_eq!(serialize_multipart(&entries, "BB", 10), Err(FormDataError::BodyTooLarge { max: 10 }));
    }

    /// A form entry proptest can generate and compare after a round trip: names without the
    /// characters the encoding escapes one way only (`"`, CR, LF), without control characters
    /// (which HTTP header syntax does not allow) and without backslashes (which multer, like
    /// RFC 2616 quoted strings, reads as escapes), text without bare newlines.
    fn entry_strategy() -> impl Strategy<Value = Entry> {
        let name = "[^\"\\\\\r\n\\x00-\\x1f\\x7f]{0,12}";
        prop_oneof![
            (name, "[^\r\n]{0,40}").prop_map(|(name, value)| Entry { name, value: Value::Text(value) }),
            (name, name, "[a-z]{1,8}/[a-z0-9.+-]{1,12}", proptest::collection::vec(any::<u8>(), 0..300)).prop_map(
                |(name, filename, content_type, bytes)| Entry {
                    name,
                    value: Value::File { bytes, filename, content_type: Some(content_type) }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn serialise_then_parse_gives_the_entries_back(entries in proptest::collection::vec(entry_strategy(), 0..12)) {
            let boundary = random_boundary().unwrap();
            let body = serialize_multipart(&refs(&entries), &boundary, 1 << 24).unwrap();
            let content_type = format!("multipart/form-data; boundary={boundary}");
            let parsed = parse(body, &content_type, &Limits::DEFAULT);
            // multer (like every parser) cannot represent a form with no parts: the body is
            // only the closing delimiter, which it reports as incomplete.
            if entries.is_empty() {
                prop_assert!(parsed.is_err() || parsed == Ok(Vec::new()));
            } else {
                prop_assert_eq!(parsed.unwrap(), entries);
            }
        }

        /// Fuzz-style: any bytes under any boundary parse or fail with a typed error, never panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), boundary in "[ -~]{1,20}") {
            let _ = parse_multipart(body.clone(), &boundary, &Limits::DEFAULT);
            let _ = parse_urlencoded(&body, &Limits::DEFAULT);
        }

        /// Fuzz-style on near-valid input: a valid body cut short, or with one byte changed,
        /// parses or fails cleanly, and every limit holds on whatever it yields.
        #[test]
        fn damaged_bodies_never_panic(
            entries in proptest::collection::vec(entry_strategy(), 1..6),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let body = serialize_multipart(&refs(&entries), "bound", 1 << 24).unwrap();
            let limits = Limits { parts_max: 3, part_bytes_max: 200, part_header_bytes_max: 120 };
            let truncated = &body[..cut.index(body.len())];
            if let Ok(parsed) = parse_multipart(truncated.to_vec(), "bound", &limits) {
                prop_assert!(parsed.len() <= 3);
            }
            let mut damaged = body.clone();
            let at = flip.index(damaged.len());
            damaged[at] = byte;
            if let Ok(parsed) = parse_multipart(damaged, "bound", &limits) {
                prop_assert!(parsed.len() <= 3);
                for entry in parsed {
                    if let Value::File { bytes, .. } = entry.value {
                        prop_assert!(bytes.len() <= 200);
                    }
                }
            }
        }
    }
}
