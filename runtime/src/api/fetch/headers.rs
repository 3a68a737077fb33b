//! `Headers`, native: the Fetch Standard's header list with its guards, as workerd has it.
//!
//! An instance's list is a JS array in an internal field, `[name0, value0, name1, value1, ...]`,
//! names lower-cased and values normalised, repeated names kept as separate entries (so
//! `set-cookie` stays apart). It lives in V8's heap, so the heap limit bounds it. Iteration is
//! the standard's "sort and combine".

use crate::bridge::class::{self, ClassDecl, ClassId};
use crate::bridge::{JsError, Scope, args, hooks};
use crate::op;

pub const GUARD: usize = 1;
pub const LIST: usize = 2;
pub const FIELDS: usize = 3;

/// Header entries as (name, value) JS strings.
type Pairs<'s> = Vec<(v8::Local<'s, v8::String>, v8::Local<'s, v8::String>)>;

/// No guard: the headers may be changed.
pub const GUARD_NONE: i32 = 0;
/// The headers of an incoming request, of `Response.redirect()`/`error()`: changes throw.
pub const GUARD_IMMUTABLE: i32 = 1;

/// Entries one Headers may hold; a script appending without end gets a RangeError.
pub const ENTRIES_MAX: u32 = 10_000;
/// The longest header name.
pub const NAME_BYTES_MAX: usize = 8192;
/// The longest header value: no longer one could be sent (every value is copied out of V8 to
/// be checked, so without this a script's 256 MiB string was copied whole, once per call).
pub const VALUE_BYTES_MAX: usize = super::response::WIRE_HEADER_BYTES_MAX;

pub fn class() -> ClassDecl {
    use v8::MapFnTo;
    let mut decl = ClassDecl::new(ClassId::Headers, "Headers", FIELDS);
    decl.constructor = Some(constructor.map_fn_to());
    decl.methods = vec![
        ("append", append.map_fn_to(), 2),
        ("delete", delete.map_fn_to(), 1),
        ("get", get.map_fn_to(), 1),
        ("getAll", get_all.map_fn_to(), 1),
        ("getSetCookie", get_set_cookie.map_fn_to(), 0),
        ("has", has.map_fn_to(), 1),
        ("set", set.map_fn_to(), 2),
        ("forEach", for_each.map_fn_to(), 1),
        ("entries", entries.map_fn_to(), 0),
        ("keys", keys.map_fn_to(), 0),
        ("values", values.map_fn_to(), 0),
    ];
    decl.iterable = true;
    decl
}

/// A new, empty Headers with `guard`.
pub fn new<'s>(scope: &mut Scope<'s, '_>, guard: i32) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let headers = class::new_instance(scope, ClassId::Headers)?;
    init(scope, headers, guard);
    Ok(headers)
}

fn init(scope: &mut Scope, headers: v8::Local<v8::Object>, guard: i32) {
    let guard = v8::Integer::new(scope, guard);
    class::set_field(headers, GUARD, guard.into());
    let list = v8::Array::new(scope, 0);
    class::set_field(headers, LIST, list.into());
}

/// The entry list of a Headers.
fn list<'s>(scope: &mut Scope<'s, '_>, headers: v8::Local<v8::Object>) -> Result<v8::Local<'s, v8::Array>, JsError> {
    v8::Local::<v8::Array>::try_from(class::field(scope, headers, LIST))
        .map_err(|_| JsError::type_error("Headers: Illegal invocation"))
}

fn guard_of(scope: &mut Scope, headers: v8::Local<v8::Object>) -> i32 {
    class::field(scope, headers, GUARD).int32_value(scope).unwrap_or(GUARD_IMMUTABLE)
}

pub fn set_guard(scope: &mut Scope, headers: v8::Local<v8::Object>, guard: i32) {
    let guard = v8::Integer::new(scope, guard);
    class::set_field(headers, GUARD, guard.into());
}

fn check_mutable(scope: &mut Scope, headers: v8::Local<v8::Object>) -> Result<(), JsError> {
    if guard_of(scope, headers) == GUARD_IMMUTABLE {
        return Err(JsError::type_error("Can't modify immutable headers."));
    }
    Ok(())
}

/// Whether `b` may appear in a header name (an HTTP token character).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name, validated and lower-cased, as an internalized JS string.
pub fn normalize_name<'s>(
    scope: &mut Scope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::String>, JsError> {
    let s = args::to_js_string(scope, value)?;
    // Checked before the copy: a name of hundreds of MiB is refused without copying it out.
    let bytes = (s.length() <= NAME_BYTES_MAX)
        .then(|| args::byte_string(scope, s))
        .flatten()
        .filter(|b| !b.is_empty() && b.len() <= NAME_BYTES_MAX && b.iter().all(|&b| is_token_byte(b)));
    let Some(mut bytes) = bytes else {
        let shown = args::to_rust_string(scope, s, 256, "Headers").unwrap_or_default();
        return Err(JsError::type_error(format!("Invalid header name: {shown:?}")));
    };
    if !bytes.iter().any(u8::is_ascii_uppercase) {
        return Ok(s);
    }
    bytes.make_ascii_lowercase();
    v8::String::new_from_one_byte(scope, &bytes, v8::NewStringType::Internalized)
        .ok_or_else(|| JsError::range_error("Headers: the name is too long"))
}

/// A header value: a ByteString with leading and trailing HTTP whitespace removed, and no NUL,
/// CR or LF inside.
pub fn normalize_value<'s>(
    scope: &mut Scope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
) -> Result<v8::Local<'s, v8::String>, JsError> {
    let s = args::to_js_string(scope, value)?;
    if s.length() > VALUE_BYTES_MAX {
        return Err(JsError::range_error(format!(
            "Header value: {} characters; at most {VALUE_BYTES_MAX} (a response's headers are at most that many bytes)",
            s.length()
        )));
    }
    let Some(bytes) = args::byte_string(scope, s) else {
        return Err(JsError::type_error("Header value: a character has a value above 255 (not a ByteString)"));
    };
    let is_ws = |b: &u8| matches!(b, b'\t' | b'\n' | b'\r' | b' ');
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ws(b)).map_or(start, |i| i + 1);
    let trimmed = &bytes[start..end];
    if trimmed.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        let shown = String::from_utf8_lossy(&trimmed[..trimmed.len().min(256)]).into_owned();
        return Err(JsError::type_error(format!("Invalid header value: {shown:?}")));
    }
    if trimmed.len() == bytes.len() {
        return Ok(s);
    }
    args::new_one_byte_string(scope, trimmed)
}

/// The list as (name, value) pairs of JS strings.
fn pairs<'s>(scope: &mut Scope<'s, '_>, list: v8::Local<'s, v8::Array>) -> Result<Pairs<'s>, JsError> {
    let n = list.length();
    let mut out = Vec::with_capacity(n as usize / 2);
    let mut i = 0;
    while i + 1 < n {
        let name = list.get_index(scope, i).ok_or(JsError::Pending)?;
        let value = list.get_index(scope, i + 1).ok_or(JsError::Pending)?;
        let (Ok(name), Ok(value)) = (v8::Local::<v8::String>::try_from(name), v8::Local::<v8::String>::try_from(value))
        else {
            return Err(JsError::type_error("Headers: corrupted header list"));
        };
        out.push((name, value));
        i += 2;
    }
    Ok(out)
}

fn write_pairs(
    scope: &mut Scope,
    headers: v8::Local<v8::Object>,
    pairs: &[(v8::Local<v8::String>, v8::Local<v8::String>)],
) {
    let flat: Vec<v8::Local<v8::Value>> = pairs.iter().flat_map(|(n, v)| [(*n).into(), (*v).into()]).collect();
    let list = v8::Array::new_with_elements(scope, &flat);
    class::set_field(headers, LIST, list.into());
}

/// Appends an already-normalised entry.
fn push(
    scope: &mut Scope,
    list: v8::Local<v8::Array>,
    name: v8::Local<v8::String>,
    value: v8::Local<v8::String>,
) -> Result<(), JsError> {
    let n = list.length();
    if n / 2 >= ENTRIES_MAX {
        return Err(JsError::range_error(format!("Headers: more than {ENTRIES_MAX} entries")));
    }
    list.set_index(scope, n, name.into()).ok_or(JsError::Pending)?;
    list.set_index(scope, n + 1, value.into()).ok_or(JsError::Pending)?;
    Ok(())
}

/// Appends `name: value` (validated) to `headers`, ignoring its guard: for isobar's own use.
pub fn append_unguarded<'s>(
    scope: &mut Scope<'s, '_>,
    headers: v8::Local<'s, v8::Object>,
    name: v8::Local<'s, v8::Value>,
    value: v8::Local<'s, v8::Value>,
) -> Result<(), JsError> {
    let name = normalize_name(scope, name)?;
    let value = normalize_value(scope, value)?;
    let list = list(scope, headers)?;
    push(scope, list, name, value)
}

/// Whether `headers` has an entry named `name` (lower case).
pub fn contains(scope: &mut Scope, headers: v8::Local<v8::Object>, name: &str) -> Result<bool, JsError> {
    let list = list(scope, headers)?;
    for (n, _) in pairs(scope, list)? {
        if n.to_rust_string_lossy(scope) == name {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Sets `name` (lower case, valid) to `value` if absent, ignoring the guard.
pub fn set_if_absent(
    scope: &mut Scope,
    headers: v8::Local<v8::Object>,
    name: &'static str,
    value: &str,
) -> Result<(), JsError> {
    if contains(scope, headers, name)? {
        return Ok(());
    }
    let name = args::name(scope, name)?;
    let value = args::new_string(scope, value)?;
    let list = list(scope, headers)?;
    push(scope, list, name, value)
}

/// Sets `name` (lower case, valid) to `value`, replacing every entry of that name, ignoring the guard.
pub fn set_unguarded(
    scope: &mut Scope,
    headers: v8::Local<v8::Object>,
    name: &'static str,
    value: &str,
) -> Result<(), JsError> {
    let name = args::name(scope, name)?;
    let value = args::new_string(scope, value)?;
    replace(scope, headers, name, value)
}

fn replace(
    scope: &mut Scope,
    headers: v8::Local<v8::Object>,
    name: v8::Local<v8::String>,
    value: v8::Local<v8::String>,
) -> Result<(), JsError> {
    let list = list(scope, headers)?;
    let mut entries = pairs(scope, list)?;
    match entries.iter().position(|(n, _)| n.strict_equals(name.into())) {
        None => push(scope, list, name, value),
        Some(first) => {
            entries[first].1 = value;
            let mut i = 0;
            entries.retain(|(n, _)| {
                let keep = i <= first || !n.strict_equals(name.into());
                i += 1;
                keep
            });
            write_pairs(scope, headers, &entries);
            Ok(())
        }
    }
}

/// Copies every entry of `from` (a Headers) into `to`.
pub fn copy_into(scope: &mut Scope, from: v8::Local<v8::Object>, to: v8::Local<v8::Object>) -> Result<(), JsError> {
    let source = list(scope, from)?;
    let entries = pairs(scope, source)?;
    write_pairs(scope, to, &entries);
    Ok(())
}

/// The entries as wire header pairs (lower-case names, values as bytes), at most `count_max`
/// entries and `bytes_max` bytes in all.
pub fn to_wire(
    scope: &mut Scope,
    headers: v8::Local<v8::Object>,
    out: &mut Vec<(String, Vec<u8>)>,
    count_max: usize,
    bytes_max: usize,
) -> Result<(), String> {
    let list = list(scope, headers).map_err(|_| "the response's headers are not a Headers".to_string())?;
    let entries = pairs(scope, list).map_err(|_| "the response's header list is damaged".to_string())?;
    if entries.len() > count_max {
        return Err(format!("the response has {} headers; at most {count_max} can be sent", entries.len()));
    }
    let mut total = 0usize;
    for (name, value) in entries {
        let name = name.to_rust_string_lossy(scope);
        let value = args::byte_string(scope, value).unwrap_or_default();
        total = total.saturating_add(name.len() + value.len() + 4);
        if total > bytes_max {
            return Err(format!("the response's headers are larger than {bytes_max} bytes"));
        }
        out.push((name, value));
    }
    Ok(())
}

/// Fills a new Headers from a Web IDL `HeadersInit`: another Headers, a sequence of pairs, or a
/// record. A sequence is iterated by isobar's JS (it must honour the script's iterators); a
/// record is read here.
pub fn fill<'s>(
    scope: &mut Scope<'s, '_>,
    headers: v8::Local<'s, v8::Object>,
    init: v8::Local<'s, v8::Value>,
) -> Result<(), JsError> {
    if init.is_undefined() || init.is_null() {
        return Ok(());
    }
    let Ok(object) = v8::Local::<v8::Object>::try_from(init) else {
        return Err(JsError::type_error(
            "Headers: the init argument must be an object, an array of pairs or a Headers",
        ));
    };
    if class::is_instance(scope, init, ClassId::Headers) {
        return copy_into(scope, object, headers);
    }
    let list = list(scope, headers)?;
    let iterator = v8::Symbol::get_iterator(scope);
    let method = object.get(scope, iterator.into()).ok_or(JsError::Pending)?;
    if !method.is_undefined() && !method.is_null() {
        // sequence<sequence<ByteString>>: isobar's JS runs the iterator protocol and checks the
        // pairs; the result is a flat array of [name, value, ...].
        let to_pairs = hooks::get(scope, hooks::Hook::HeaderPairs).ok_or(JsError::type_error("Headers: not ready"))?;
        let undefined = v8::undefined(scope).into();
        let flat = to_pairs.call(scope, undefined, &[init]).ok_or(JsError::Pending)?;
        let flat = v8::Local::<v8::Array>::try_from(flat).map_err(|_| JsError::type_error("Headers: bad init"))?;
        let n = flat.length();
        let mut i = 0;
        while i + 1 < n {
            let name = flat.get_index(scope, i).ok_or(JsError::Pending)?;
            let value = flat.get_index(scope, i + 1).ok_or(JsError::Pending)?;
            let name = normalize_name(scope, name)?;
            let value = normalize_value(scope, value)?;
            push(scope, list, name, value)?;
            i += 2;
        }
        return Ok(());
    }
    // record<ByteString, ByteString>: own enumerable string keys, in order.
    let keys = object
        .get_own_property_names(
            scope,
            v8::GetPropertyNamesArgs {
                mode: v8::KeyCollectionMode::OwnOnly,
                property_filter: v8::PropertyFilter::ONLY_ENUMERABLE | v8::PropertyFilter::SKIP_SYMBOLS,
                index_filter: v8::IndexFilter::IncludeIndices,
                key_conversion: v8::KeyConversionMode::ConvertToString,
            },
        )
        .ok_or(JsError::Pending)?;
    for i in 0..keys.length() {
        let key = keys.get_index(scope, i).ok_or(JsError::Pending)?;
        let value = object.get(scope, key).ok_or(JsError::Pending)?;
        let name = normalize_name(scope, key)?;
        let value = normalize_value(scope, value)?;
        push(scope, list, name, value)?;
    }
    Ok(())
}

op!(fn constructor(scope, args) {
    if args.new_target().is_undefined() {
        return Err(JsError::type_error("Failed to construct 'Headers': Please use the 'new' operator"));
    }
    let this = args.this();
    class::set_brand(scope, this, ClassId::Headers);
    init(scope, this, GUARD_NONE);
    fill(scope, this, args.get(0))?;
    Ok(())
});

op!(fn append(scope, args) {
    let this = args.this();
    check_mutable(scope, this)?;
    let name = normalize_name(scope, args.get(0))?;
    let value = normalize_value(scope, args.get(1))?;
    let list = list(scope, this)?;
    push(scope, list, name, value)
});

op!(fn delete(scope, args) {
    let this = args.this();
    check_mutable(scope, this)?;
    let name = normalize_name(scope, args.get(0))?;
    let list = list(scope, this)?;
    let mut entries = pairs(scope, list)?;
    let before = entries.len();
    entries.retain(|(n, _)| !n.strict_equals(name.into()));
    if entries.len() != before {
        write_pairs(scope, this, &entries);
    }
    Ok(())
});

/// The combined value of `name`: every value joined with ", " (null if none).
fn combined<'s>(
    scope: &mut Scope<'s, '_>,
    entries: &[(v8::Local<'s, v8::String>, v8::Local<'s, v8::String>)],
    name: v8::Local<v8::String>,
) -> Option<v8::Local<'s, v8::String>> {
    let mut out: Option<v8::Local<v8::String>> = None;
    for (n, v) in entries {
        if n.strict_equals(name.into()) {
            out = Some(match out {
                None => *v,
                Some(previous) => {
                    let separator = v8::String::new_from_one_byte(scope, b", ", v8::NewStringType::Internalized)?;
                    let joined = v8::String::concat(scope, previous, separator)?;
                    v8::String::concat(scope, joined, *v)?
                }
            });
        }
    }
    out
}

op!(fn get(scope, args) {
    let this = args.this();
    let name = normalize_name(scope, args.get(0))?;
    let list = list(scope, this)?;
    let entries = pairs(scope, list)?;
    Ok(match combined(scope, &entries, name) {
        Some(value) => crate::bridge::Ret::Value(value.into()),
        None => crate::bridge::Ret::Null,
    })
});

op!(fn get_all(scope, args) {
    // workerd keeps getAll for set-cookie only; it is the one header that cannot be combined.
    let name = normalize_name(scope, args.get(0))?;
    if name.to_rust_string_lossy(scope) != "set-cookie" {
        return Err(JsError::type_error("getAll() can only be used with the header name \"Set-Cookie\"."));
    }
    set_cookies(scope, args.this())
});

op!(fn get_set_cookie(scope, args) {
    set_cookies(scope, args.this())
});

fn set_cookies<'s>(
    scope: &mut Scope<'s, '_>,
    headers: v8::Local<'s, v8::Object>,
) -> Result<v8::Local<'s, v8::Array>, JsError> {
    let list = list(scope, headers)?;
    let entries = pairs(scope, list)?;
    let mut values: Vec<v8::Local<v8::Value>> = Vec::new();
    for (n, v) in entries {
        if n.to_rust_string_lossy(scope) == "set-cookie" {
            values.push(v.into());
        }
    }
    Ok(v8::Array::new_with_elements(scope, &values))
}

op!(fn has(scope, args) {
    let this = args.this();
    let name = normalize_name(scope, args.get(0))?;
    let list = list(scope, this)?;
    let entries = pairs(scope, list)?;
    Ok(entries.iter().any(|(n, _)| n.strict_equals(name.into())))
});

op!(fn set(scope, args) {
    let this = args.this();
    check_mutable(scope, this)?;
    let name = normalize_name(scope, args.get(0))?;
    let value = normalize_value(scope, args.get(1))?;
    replace(scope, this, name, value)?;
    Ok(())
});

/// The standard's "sort and combine": by name, values of one name joined, `set-cookie` apart.
fn sorted<'s>(scope: &mut Scope<'s, '_>, headers: v8::Local<'s, v8::Object>) -> Result<Pairs<'s>, JsError> {
    let list = list(scope, headers)?;
    let entries = pairs(scope, list)?;
    let mut names: Vec<(String, v8::Local<v8::String>)> = Vec::new();
    for (n, _) in &entries {
        let key = n.to_rust_string_lossy(scope);
        if !names.iter().any(|(k, _)| *k == key) {
            names.push((key, *n));
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(names.len());
    for (key, name) in names {
        if key == "set-cookie" {
            for (n, v) in &entries {
                if n.strict_equals(name.into()) {
                    out.push((name, *v));
                }
            }
        } else if let Some(value) = combined(scope, &entries, name) {
            out.push((name, value));
        }
    }
    Ok(out)
}

op!(fn for_each(scope, args) {
    let this = args.this();
    let Ok(callback) = v8::Local::<v8::Function>::try_from(args.get(0)) else {
        return Err(JsError::type_error("Headers.forEach: the callback must be a function"));
    };
    let this_arg = args.get(1);
    for (name, value) in sorted(scope, this)? {
        callback.call(scope, this_arg, &[value.into(), name.into(), this.into()]).ok_or(JsError::Pending)?;
    }
    Ok(())
});

/// An iterator over `items` (an array isobar made), as Array.prototype.values gives.
fn iterate<'s>(
    scope: &mut Scope<'s, '_>,
    items: Vec<v8::Local<'s, v8::Value>>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let array = v8::Array::new_with_elements(scope, &items);
    let values = hooks::get(scope, hooks::Hook::ArrayValues).ok_or(JsError::type_error("Headers: not ready"))?;
    values.call(scope, array.into(), &[]).ok_or(JsError::Pending)
}

op!(fn entries(scope, args) {
    let mut items = Vec::new();
    for (name, value) in sorted(scope, args.this())? {
        let pair = v8::Array::new_with_elements(scope, &[name.into(), value.into()]);
        items.push(pair.into());
    }
    iterate(scope, items)
});

op!(fn keys(scope, args) {
    let items = sorted(scope, args.this())?.into_iter().map(|(n, _)| n.into()).collect();
    iterate(scope, items)
});

op!(fn values(scope, args) {
    let items = sorted(scope, args.this())?.into_iter().map(|(_, v)| v.into()).collect();
    iterate(scope, items)
});

/// The combined value of `name` (lower case) in `headers`, if present.
pub fn value<'s>(
    scope: &mut Scope<'s, '_>,
    headers: v8::Local<'s, v8::Object>,
    name: &'static str,
) -> Result<Option<v8::Local<'s, v8::String>>, JsError> {
    let name = args::name(scope, name)?;
    let list = list(scope, headers)?;
    let entries = pairs(scope, list)?;
    Ok(combined(scope, &entries, name))
}
