//! The Workers API, one folder per area, as deno's `ext/` crates and workerd's `api/` folder:
//! each area holds its ops and native classes (Rust), its JavaScript, its state and its tests.
//!
//! This module lists them for the snapshot: the bootstrap order of the JS files, every op, every
//! native class. Adding an area means adding it to the three lists below.

pub mod blob;
pub mod cache;
pub mod clone;
pub mod compression;
pub mod console;
pub mod crypto;
pub mod encoding;
pub mod events;
pub mod fetch;
pub mod formdata;
pub mod kv;
pub mod service;
pub mod streams;
pub mod time;
pub mod timers;
pub mod url;
pub mod urlpattern;
pub mod wasm;
pub mod websocket;
pub mod worker;

use crate::bridge::OpDecl;
use crate::bridge::class::ClassDecl;

/// The primordials, evaluated first: `(function () { ... return primordials; })`.
pub const PRIMORDIALS: (&str, &str) = ("isobar:primordials", include_str!("../bridge/primordials.js"));

/// isobar's JavaScript as static external strings, in [`PRIMORDIALS`] then [`BOOTSTRAP`]
/// order: V8 reads the sources from the binary (shared by every isolate) instead of copying
/// them into each isolate's heap, where they were a third of what the snapshot put there
/// (~340 KB of ~1 MB). The snapshot refers to each by its address, registered as an external
/// reference (`engine::external_references`), as deno does with its extensions' sources. Every
/// file must be ASCII (checked at compile time).
pub static SOURCES: [v8::OneByteConst; BOOTSTRAP.len() + 1] = sources();

const fn sources() -> [v8::OneByteConst; BOOTSTRAP.len() + 1] {
    let mut out = [v8::String::create_external_onebyte_const(b""); BOOTSTRAP.len() + 1];
    out[0] = v8::String::create_external_onebyte_const(PRIMORDIALS.1.as_bytes());
    let mut i = 0;
    while i < BOOTSTRAP.len() {
        out[i + 1] = v8::String::create_external_onebyte_const(BOOTSTRAP[i].1.as_bytes());
        i += 1;
    }
    out
}

/// isobar's JavaScript, evaluated into the snapshot's context in this order. Each file is a
/// function called with `(ops, internals, global, primordials)`.
pub const BOOTSTRAP: &[(&str, &str)] = &[
    ("isobar:webidl", include_str!("webidl/webidl.js")),
    events::JS,
    console::JS,
    timers::JS,
    encoding::JS,
    streams::COMMON_JS,
    streams::READABLE_JS,
    streams::WRITABLE_JS,
    streams::TRANSFORM_JS,
    streams::BODY_JS,
    encoding::STREAM_JS,
    compression::JS,
    url::JS,
    urlpattern::JS,
    blob::JS,
    formdata::JS,
    crypto::JS,
    crypto::SUBTLE_JS,
    time::JS,
    fetch::JS,
    fetch::OUTBOUND_JS,
    // Before clone.js, which treats Cache and CacheStorage as host objects (not cloneable).
    cache::JS,
    clone::JS,
    kv::JS,
    service::JS,
    websocket::JS,
    wasm::JS,
    worker::JS,
];

/// Every op, on the `ops` object by its name.
pub fn ops() -> Vec<OpDecl> {
    let mut all = Vec::new();
    all.extend(console::ops());
    all.extend(timers::ops());
    all.extend(encoding::ops());
    all.extend(compression::ops());
    all.extend(url::ops());
    all.extend(urlpattern::ops());
    all.extend(formdata::ops());
    all.extend(clone::ops());
    all.extend(crypto::ops());
    all.extend(time::ops());
    all.extend(fetch::outbound::ops());
    all.extend(kv::ops());
    all.extend(service::ops());
    all.extend(cache::ops());
    all.extend(wasm::ops());
    all.extend(websocket::ops());
    all
}

/// Every native class, in `ClassId` order.
pub fn classes() -> Vec<ClassDecl> {
    let mut all = fetch::classes();
    all.push(worker::class());
    all.push(fetch::outbound::class());
    all
}

/// Numeric constants Rust and JS share (`internals.consts`), defined once, here.
pub fn consts() -> Vec<(&'static str, &'static [(&'static str, u32)])> {
    vec![("logLevel", console::LOG_LEVELS)]
}
