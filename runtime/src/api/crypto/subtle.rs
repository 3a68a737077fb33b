//! The Rust half of `crypto.subtle` and `CryptoKey`: ops that turn the values `subtle.js` has
//! already converted (Web IDL types checked, algorithm dictionaries normalized into plain objects
//! isobar made, BufferSources copied) into `isobar_crypto`'s types, run the engine, and turn its
//! results back into JS values. The engine decides everything WebCrypto decides; this module
//! decides nothing but how values cross.
//!
//! Keys live here, not in V8: each `CryptoKey` object holds the id of a [`KeyResource`] in the
//! isolate's `ResourceTable` (bounded), freed by `subtle.js`'s FinalizationRegistry when the object
//! is collected, or by `store_key`'s sweep when the table is full first. Operations run to
//! completion on the core's thread, inside the request's CPU budget; the watchdog cannot interrupt
//! Rust code, which is why the engine caps the expensive ones (RSA generation at 4096 bits, PBKDF2
//! at 100,000 iterations; `docs/webcrypto.md`).
//!
//! This module must not read a tenant's object (every object it reads was made by `subtle.js`
//! with a null prototype and plain data properties, so no tenant getter can run), and must not
//! let a tenant's input reach a panic or an unbounded Rust allocation.

use std::rc::Rc;

use isobar_crypto::rand_core::{TryCryptoRng, TryRng};
use isobar_crypto::{
    AlgorithmDictionary, CryptoError, CryptoKey, DeriveParams, DerivedKeyType, EncryptParams, ExportedKey,
    GenerateKeyParams, GeneratedKey, ImportKeyParams, JsonWebKey, KeyAlgorithm, KeyData, KeyFormat, KeyType, KeyUsages,
    RsaOtherPrimesInfo, SignParams,
};

use crate::bridge::resources::{RESOURCES_MAX, Resource};
use crate::bridge::{self, JsError, OpDecl, Scope, args};
use crate::{op, op_decl};

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("cryptoKeyInfo", crypto_key_info),
        op_decl!("cryptoKeyFree", crypto_key_free),
        op_decl!("subtleDigest", subtle_digest),
        op_decl!("subtleEncrypt", subtle_encrypt),
        op_decl!("subtleSign", subtle_sign),
        op_decl!("subtleVerify", subtle_verify),
        op_decl!("subtleGenerateKey", subtle_generate_key),
        op_decl!("subtleImportKey", subtle_import_key),
        op_decl!("subtleExportKey", subtle_export_key),
        op_decl!("subtleDeriveBits", subtle_derive_bits),
        op_decl!("subtleDeriveKey", subtle_derive_key),
        op_decl!("subtleWrapKey", subtle_wrap_key),
        op_decl!("subtleUnwrapKey", subtle_unwrap_key),
        op_decl!("subtleTimingSafeEqual", subtle_timing_safe_equal),
    ]
}

/// The engine's error as the exception the script sees: a `DOMException` with the name the engine
/// chose, or a `TypeError`.
pub(crate) fn thrown(error: CryptoError) -> JsError {
    if error.is_dom_exception() {
        JsError::dom(error.name(), error.message().to_owned())
    } else {
        JsError::type_error(error.message().to_owned())
    }
}

/// Randomness for the engine, straight from the kernel's CSPRNG (`getrandom(2)` through
/// kernel-shim). Nothing is buffered, so no future key material sits in Rust memory; the engine
/// draws in blocks (a candidate prime, an IV), so the system calls stay few.
pub(crate) struct KernelRandom;

impl TryRng for KernelRandom {
    type Error = std::io::Error;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        kernel_shim::random::fill(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        kernel_shim::random::fill(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), Self::Error> {
        kernel_shim::random::fill(destination)
    }
}

// getrandom(2) is the kernel's CSPRNG, the source the engine's contract asks for.
impl TryCryptoRng for KernelRandom {}

/// A `CryptoKey`'s Rust side: the engine's key, behind an `Rc` so that an operation holding two keys
/// (wrapKey, ECDH's `public`) never needs two borrows of the resource table, and a weak handle to
/// the JS object that owns it.
///
/// The owner's FinalizationRegistry frees the entry after the object is collected, but its callback
/// runs only between tasks, and a request that makes keys in a loop of awaits never leaves its
/// microtasks: the weak handle lets `store_key` free the entries of collected keys itself when
/// the table is full, and lets `cryptoKeyFree` tell a late callback from one for a reused id.
pub struct KeyResource {
    key: Rc<CryptoKey>,
    owner: v8::Weak<v8::Object>,
}

impl Resource for KeyResource {
    fn name(&self) -> &'static str {
        "CryptoKey"
    }

    fn bytes(&self) -> usize {
        // An estimate: an RSA private key holds about five numbers the modulus's size.
        let modulus_bytes = self.key.algorithm().modulus_length().unwrap_or(0) as usize / 8;
        std::mem::size_of::<CryptoKey>() + 5 * modulus_bytes
    }
}

/// How many keys must have been stored since the last forced collection before a full table may
/// force another (each costs a full garbage collection of the isolate's heap).
pub const KEYS_PER_FORCED_COLLECTION: usize = RESOURCES_MAX / 4;

/// Stores `key` for the CryptoKey object `owner` (made by `subtle.js`, not yet handed to the
/// script) and returns its id. When the table is full, keys whose owner was collected are freed
/// first, after a full collection if none were and enough keys were stored since the last one
/// (only a script that drops keys faster than the collector runs, or that holds thousands of
/// resources, gets here).
fn store_key<'s>(scope: &mut Scope<'s, '_>, key: CryptoKey, owner: v8::Local<'s, v8::Object>) -> Result<u32, JsError> {
    let state = bridge::state(scope);
    if state.borrow().resources.len() >= RESOURCES_MAX {
        let sweep = || state.borrow_mut().resources.retain(|entry: &KeyResource| !entry.owner.is_empty());
        let keys_since_collection = state.borrow().crypto.keys_since_collection;
        if sweep() == 0 && keys_since_collection >= KEYS_PER_FORCED_COLLECTION {
            state.borrow_mut().crypto.keys_since_collection = 0;
            scope.low_memory_notification();
            sweep();
        }
    }
    let owner = v8::Weak::new(scope, owner);
    let id = state.borrow_mut().resources.add(KeyResource { key: Rc::new(key), owner })?;
    let mut state = state.borrow_mut();
    state.crypto.keys_since_collection = state.crypto.keys_since_collection.saturating_add(1);
    Ok(id)
}

/// Argument `i` as the CryptoKey object a new key will belong to.
fn owner_arg<'s>(args: &v8::FunctionCallbackArguments<'s>, i: i32) -> Result<v8::Local<'s, v8::Object>, JsError> {
    v8::Local::<v8::Object>::try_from(args.get(i)).map_err(|_| JsError::type_error("CryptoKey: no owner object"))
}

/// The key whose id is `value` (a number `subtle.js` took from a `CryptoKey`).
fn key_of(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<Rc<CryptoKey>, JsError> {
    let id = id_of(scope, value)?;
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    Ok(state.resources.get_mut::<KeyResource>(id, "CryptoKey")?.key.clone())
}

fn id_of(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<u32, JsError> {
    if !value.is_uint32() {
        return Err(JsError::type_error("CryptoKey: not a key"));
    }
    value.uint32_value(scope).ok_or(JsError::Pending)
}

/// The longest algorithm, hash or curve name read; longer ones are cut (they match nothing and the
/// engine's NotSupportedError quotes what was kept).
const NAME_BYTES_MAX: usize = 256;
/// The longest JWK member read: a base64url secret of 768 KiB (an RSA-8192 modulus takes 1.4 KB).
/// Each member is copied into Rust, so this bounds what one JWK can make an op allocate.
const JWK_MEMBER_BYTES_MAX: usize = 1 << 20;
/// The longest `key_ops` entry or `oth` member read (an `oth` prime of an 8192-bit key is under
/// 1 KB; operation names are short).
const JWK_SHORT_MEMBER_BYTES_MAX: usize = 8 << 10;
/// The most `key_ops` (or `oth`) entries a JWK may have: there are eight usages, and the engine's
/// duplicate check is quadratic, so a list of millions would hold the core in Rust code.
const JWK_LIST_MAX: u32 = 64;

/// The members of a normalized algorithm dictionary, owned; [`Dictionary::borrowed`] is the
/// engine's view of them.
#[derive(Default)]
struct Dictionary {
    name: String,
    hash: Option<String>,
    length: Option<u32>,
    named_curve: Option<String>,
    modulus_length: Option<u32>,
    public_exponent: Option<Vec<u8>>,
    iv: Option<Vec<u8>>,
    additional_data: Option<Vec<u8>>,
    tag_length: Option<u32>,
    counter: Option<Vec<u8>>,
    label: Option<Vec<u8>>,
    salt_length: Option<u32>,
    salt: Option<Vec<u8>>,
    info: Option<Vec<u8>>,
    iterations: Option<u32>,
    public: Option<Rc<CryptoKey>>,
}

impl Dictionary {
    /// Reads the null-prototype object `subtle.js`'s `normalize` made.
    fn read<'s>(scope: &mut Scope<'s, '_>, value: v8::Local<'s, v8::Value>) -> Result<Dictionary, JsError> {
        let object = v8::Local::<v8::Object>::try_from(value)
            .map_err(|_| JsError::type_error("crypto.subtle: the algorithm is not a normalized dictionary"))?;
        let name = args::get(scope, object, "name")?;
        let Some(name) = short_string(scope, name)? else {
            return Err(JsError::type_error("crypto.subtle: the algorithm has no name"));
        };
        let hash = args::get(scope, object, "hash")?;
        let length = args::get(scope, object, "length")?;
        let named_curve = args::get(scope, object, "namedCurve")?;
        let modulus_length = args::get(scope, object, "modulusLength")?;
        let public_exponent = args::get(scope, object, "publicExponent")?;
        let iv = args::get(scope, object, "iv")?;
        let additional_data = args::get(scope, object, "additionalData")?;
        let tag_length = args::get(scope, object, "tagLength")?;
        let counter = args::get(scope, object, "counter")?;
        let label = args::get(scope, object, "label")?;
        let salt_length = args::get(scope, object, "saltLength")?;
        let salt = args::get(scope, object, "salt")?;
        let info = args::get(scope, object, "info")?;
        let iterations = args::get(scope, object, "iterations")?;
        let public = args::get(scope, object, "public")?;
        Ok(Dictionary {
            name,
            hash: short_string(scope, hash)?,
            length: uint32(scope, length, "length")?,
            named_curve: short_string(scope, named_curve)?,
            modulus_length: uint32(scope, modulus_length, "modulusLength")?,
            public_exponent: buffer(public_exponent, "publicExponent")?,
            iv: buffer(iv, "iv")?,
            additional_data: buffer(additional_data, "additionalData")?,
            tag_length: uint32(scope, tag_length, "tagLength")?,
            counter: buffer(counter, "counter")?,
            label: buffer(label, "label")?,
            salt_length: uint32(scope, salt_length, "saltLength")?,
            salt: buffer(salt, "salt")?,
            info: buffer(info, "info")?,
            iterations: uint32(scope, iterations, "iterations")?,
            public: if public.is_undefined() { None } else { Some(key_of(scope, public)?) },
        })
    }

    fn borrowed(&self) -> AlgorithmDictionary<'_> {
        AlgorithmDictionary {
            name: &self.name,
            hash: self.hash.as_deref(),
            length: self.length,
            named_curve: self.named_curve.as_deref(),
            modulus_length: self.modulus_length,
            public_exponent: self.public_exponent.as_deref(),
            iv: self.iv.as_deref(),
            additional_data: self.additional_data.as_deref(),
            tag_length: self.tag_length,
            counter: self.counter.as_deref(),
            label: self.label.as_deref(),
            salt_length: self.salt_length,
            salt: self.salt.as_deref(),
            info: self.info.as_deref(),
            iterations: self.iterations,
            public: self.public.as_deref(),
        }
    }
}

/// A name-like string (`None` for undefined). One longer than [`NAME_BYTES_MAX`] cannot name
/// anything, so it is not copied: a placeholder that matches nothing stands in for it.
fn short_string(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<Option<String>, JsError> {
    if value.is_undefined() {
        return Ok(None);
    }
    let Ok(text) = v8::Local::<v8::String>::try_from(value) else {
        return Err(JsError::type_error("crypto.subtle: expected a string"));
    };
    if text.utf8_length(scope) > NAME_BYTES_MAX {
        return Ok(Some(format!("(a name longer than {NAME_BYTES_MAX} bytes)")));
    }
    args::to_rust_string(scope, text, NAME_BYTES_MAX, "crypto.subtle").map(Some)
}

/// An integer member `subtle.js` already range-checked (`None` for undefined).
fn uint32(scope: &mut Scope, value: v8::Local<v8::Value>, what: &str) -> Result<Option<u32>, JsError> {
    if value.is_undefined() {
        return Ok(None);
    }
    if !value.is_uint32() {
        return Err(JsError::type_error(format!("crypto.subtle: \"{what}\" must be an unsigned 32-bit integer")));
    }
    Ok(Some(value.uint32_value(scope).ok_or(JsError::Pending)?))
}

/// A BufferSource member (`None` for undefined).
fn buffer(value: v8::Local<v8::Value>, what: &str) -> Result<Option<Vec<u8>>, JsError> {
    if value.is_undefined() {
        return Ok(None);
    }
    args::bytes(value, args::BUFFER_BYTES_MAX, what).map(Some)
}

/// The script's key usages: an array of strings `subtle.js` converted from the sequence. Read one
/// at a time: a long string cannot be a usage, so it is never copied.
fn usages(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<KeyUsages, JsError> {
    const USAGE_BYTES_MAX: usize = 16;
    let array = v8::Local::<v8::Array>::try_from(value)
        .map_err(|_| JsError::type_error("crypto.subtle: \"keyUsages\" must be a sequence"))?;
    let mut usages = KeyUsages::NONE;
    for index in 0..array.length() {
        let item = array.get_index(scope, index).ok_or(JsError::Pending)?;
        let Ok(item) = v8::Local::<v8::String>::try_from(item) else {
            return Err(JsError::type_error("crypto.subtle: \"keyUsages\" must hold strings"));
        };
        let name = if item.utf8_length(scope) > USAGE_BYTES_MAX {
            String::from("(a string longer than any usage)")
        } else {
            args::to_rust_string(scope, item, USAGE_BYTES_MAX, "keyUsages")?
        };
        usages = usages.union(KeyUsages::from_names(&[name]).map_err(thrown)?);
    }
    Ok(usages)
}

/// An array of strings isobar made, with at most `count_max` entries.
fn string_list(
    scope: &mut Scope,
    value: v8::Local<v8::Value>,
    count_max: u32,
    what: &str,
) -> Result<Vec<String>, JsError> {
    let array = v8::Local::<v8::Array>::try_from(value)
        .map_err(|_| JsError::type_error(format!("crypto.subtle: \"{what}\" must be a sequence")))?;
    let count = array.length();
    if count > count_max {
        return Err(JsError::dom("DataError", format!("\"{what}\" has more than {count_max} entries")));
    }
    let mut names = Vec::with_capacity(count.min(16) as usize);
    for index in 0..count {
        let item = array.get_index(scope, index).ok_or(JsError::Pending)?;
        let Ok(item) = v8::Local::<v8::String>::try_from(item) else {
            return Err(JsError::type_error(format!("crypto.subtle: \"{what}\" must hold strings")));
        };
        let length = item.utf8_length(scope);
        if length > JWK_SHORT_MEMBER_BYTES_MAX {
            return Err(JsError::dom(
                "DataError",
                format!("\"{what}\" has a {length}-byte entry; none is longer than {JWK_SHORT_MEMBER_BYTES_MAX}."),
            ));
        }
        names.push(args::to_rust_string(scope, item, JWK_SHORT_MEMBER_BYTES_MAX, what)?);
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// JSON Web Keys

/// A string member of an isobar-made JWK object.
fn jwk_string<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    key: &'static str,
) -> Result<Option<String>, JsError> {
    jwk_string_of_at_most(scope, object, key, JWK_MEMBER_BYTES_MAX)
}

/// A string member of an isobar-made JWK object, of at most `bytes_max` bytes (a `DataError`
/// beyond: no real key has such a member).
fn jwk_string_of_at_most<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    key: &'static str,
    bytes_max: usize,
) -> Result<Option<String>, JsError> {
    let value = args::get(scope, object, key)?;
    if value.is_undefined() {
        return Ok(None);
    }
    let Ok(text) = v8::Local::<v8::String>::try_from(value) else {
        return Err(JsError::type_error(format!("JsonWebKey: \"{key}\" must be a string")));
    };
    let length = text.utf8_length(scope);
    if length > bytes_max {
        return Err(JsError::dom(
            "DataError",
            format!("The JSON Web Key's \"{key}\" is {length} bytes long; no key has one longer than {bytes_max}."),
        ));
    }
    args::to_rust_string(scope, text, bytes_max, "JsonWebKey").map(Some)
}

/// The `JsonWebKey` dictionary `subtle.js` converted (members already strings, `ext` a boolean,
/// `key_ops` an array of strings, `oth` an array of `{ d, r, t }`).
fn jwk_from_object<'s>(scope: &mut Scope<'s, '_>, object: v8::Local<'s, v8::Object>) -> Result<JsonWebKey, JsError> {
    let ext = args::get(scope, object, "ext")?;
    let key_ops = args::get(scope, object, "key_ops")?;
    let oth = args::get(scope, object, "oth")?;
    let mut jwk = JsonWebKey {
        kty: jwk_string(scope, object, "kty")?,
        key_use: jwk_string(scope, object, "use")?,
        key_ops: None,
        alg: jwk_string(scope, object, "alg")?,
        ext: if ext.is_undefined() { None } else { Some(ext.is_true()) },
        crv: jwk_string(scope, object, "crv")?,
        x: jwk_string(scope, object, "x")?,
        y: jwk_string(scope, object, "y")?,
        d: jwk_string(scope, object, "d")?,
        n: jwk_string(scope, object, "n")?,
        e: jwk_string(scope, object, "e")?,
        p: jwk_string(scope, object, "p")?,
        q: jwk_string(scope, object, "q")?,
        dp: jwk_string(scope, object, "dp")?,
        dq: jwk_string(scope, object, "dq")?,
        qi: jwk_string(scope, object, "qi")?,
        oth: None,
        k: jwk_string(scope, object, "k")?,
    };
    if !key_ops.is_undefined() {
        jwk.key_ops = Some(string_list(scope, key_ops, JWK_LIST_MAX, "key_ops")?);
    }
    if !oth.is_undefined() {
        let array = v8::Local::<v8::Array>::try_from(oth)
            .map_err(|_| JsError::type_error("JsonWebKey: \"oth\" must be a sequence"))?;
        if array.length() > JWK_LIST_MAX {
            return Err(JsError::dom("DataError", format!("\"oth\" has more than {JWK_LIST_MAX} entries")));
        }
        let mut primes = Vec::new();
        for index in 0..array.length() {
            let item = array.get_index(scope, index).ok_or(JsError::Pending)?;
            let item = v8::Local::<v8::Object>::try_from(item)
                .map_err(|_| JsError::type_error("JsonWebKey: \"oth\" must hold dictionaries"))?;
            primes.push(RsaOtherPrimesInfo {
                r: jwk_string_of_at_most(scope, item, "r", JWK_SHORT_MEMBER_BYTES_MAX)?,
                d: jwk_string_of_at_most(scope, item, "d", JWK_SHORT_MEMBER_BYTES_MAX)?,
                t: jwk_string_of_at_most(scope, item, "t", JWK_SHORT_MEMBER_BYTES_MAX)?,
            });
        }
        jwk.oth = Some(primes);
    }
    Ok(jwk)
}

/// Sets string member `key` of an object isobar made, if the value is present.
fn set_string<'s>(
    scope: &mut Scope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    key: &'static str,
    value: &Option<String>,
) -> Result<(), JsError> {
    if let Some(value) = value {
        let value = args::new_string(scope, value)?;
        args::set(scope, object, key, value.into())?;
    }
    Ok(())
}

/// An exported JWK as a JS object, members in the order Web IDL converts a dictionary (sorted),
/// absent ones left out.
fn jwk_to_object<'s>(scope: &mut Scope<'s, '_>, jwk: &JsonWebKey) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let object = v8::Object::new(scope);
    set_string(scope, object, "alg", &jwk.alg)?;
    set_string(scope, object, "crv", &jwk.crv)?;
    set_string(scope, object, "d", &jwk.d)?;
    set_string(scope, object, "dp", &jwk.dp)?;
    set_string(scope, object, "dq", &jwk.dq)?;
    set_string(scope, object, "e", &jwk.e)?;
    if let Some(ext) = jwk.ext {
        let value = v8::Boolean::new(scope, ext);
        args::set(scope, object, "ext", value.into())?;
    }
    set_string(scope, object, "k", &jwk.k)?;
    if let Some(key_ops) = &jwk.key_ops {
        let mut items = Vec::with_capacity(key_ops.len());
        for op in key_ops {
            items.push(args::new_string(scope, op)?.into());
        }
        let array = v8::Array::new_with_elements(scope, &items);
        args::set(scope, object, "key_ops", array.into())?;
    }
    set_string(scope, object, "kty", &jwk.kty)?;
    set_string(scope, object, "n", &jwk.n)?;
    if let Some(oth) = &jwk.oth {
        let mut items = Vec::with_capacity(oth.len());
        for prime in oth {
            let entry = v8::Object::new(scope);
            set_string(scope, entry, "d", &prime.d)?;
            set_string(scope, entry, "r", &prime.r)?;
            set_string(scope, entry, "t", &prime.t)?;
            items.push(entry.into());
        }
        let array = v8::Array::new_with_elements(scope, &items);
        args::set(scope, object, "oth", array.into())?;
    }
    set_string(scope, object, "p", &jwk.p)?;
    set_string(scope, object, "q", &jwk.q)?;
    set_string(scope, object, "qi", &jwk.qi)?;
    set_string(scope, object, "use", &jwk.key_use)?;
    set_string(scope, object, "x", &jwk.x)?;
    set_string(scope, object, "y", &jwk.y)?;
    Ok(object)
}

// ---------------------------------------------------------------------------------------------
// CryptoKey

/// `KeyAlgorithm` as the plain object `CryptoKey.algorithm` returns (members in Web IDL's order:
/// the base dictionary's first, each dictionary's own sorted).
fn algorithm_object<'s>(
    scope: &mut Scope<'s, '_>,
    algorithm: &KeyAlgorithm,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let object = v8::Object::new(scope);
    let name = args::name(scope, algorithm.name())?;
    args::set(scope, object, "name", name.into())?;
    if let Some(modulus_length) = algorithm.modulus_length() {
        let value = v8::Integer::new_from_unsigned(scope, modulus_length);
        args::set(scope, object, "modulusLength", value.into())?;
    }
    if let Some(exponent) = algorithm.public_exponent() {
        let value = args::new_u8_array(scope, exponent.to_vec())?;
        args::set(scope, object, "publicExponent", value.into())?;
    }
    if let Some(hash) = algorithm.hash() {
        let hash_object = v8::Object::new(scope);
        let hash_name = args::name(scope, hash.as_str())?;
        args::set(scope, hash_object, "name", hash_name.into())?;
        args::set(scope, object, "hash", hash_object.into())?;
    }
    if let Some(length) = algorithm.length() {
        let value = v8::Integer::new_from_unsigned(scope, length);
        args::set(scope, object, "length", value.into())?;
    }
    if let Some(curve) = algorithm.named_curve() {
        let value = args::name(scope, curve.as_str())?;
        args::set(scope, object, "namedCurve", value.into())?;
    }
    Ok(object)
}

// cryptoKeyInfo(id) -> [type, extractable, algorithm, usages]: what the key's getters return, made
// once per key (the JS side caches it, so `key.algorithm === key.algorithm`).
op!(fn crypto_key_info(scope, args) {
    let key = key_of(scope, args.get(0))?;
    let key_type = match key.key_type() {
        KeyType::Secret => "secret",
        KeyType::Public => "public",
        KeyType::Private => "private",
    };
    let key_type = args::name(scope, key_type)?;
    let extractable = v8::Boolean::new(scope, key.extractable());
    let algorithm = algorithm_object(scope, key.algorithm())?;
    let mut names = Vec::new();
    for usage in key.usages().names() {
        names.push(args::name(scope, usage)?.into());
    }
    let usages = v8::Array::new_with_elements(scope, &names);
    let info = [key_type.into(), extractable.into(), algorithm.into(), usages.into()];
    Ok(v8::Array::new_with_elements(scope, &info))
});

// cryptoKeyFree(id): the FinalizationRegistry's callback. The entry may already have been freed by
// store_key's sweep and its id given to a new resource, so only a key whose owner is gone is freed.
op!(fn crypto_key_free(scope, args) {
    let id = id_of(scope, args.get(0))?;
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    let collected = state.resources.get_mut::<KeyResource>(id, "CryptoKey").is_ok_and(|entry| entry.owner.is_empty());
    if collected {
        state.resources.close(id);
    }
    Ok(())
});

/// A generated key (its id, owned by `first`) or key pair (`[publicId, privateId]`, owned by
/// `first` and `second`) for `subtle.js` to bind.
fn generated_to_js<'s>(
    scope: &mut Scope<'s, '_>,
    generated: GeneratedKey,
    first: v8::Local<'s, v8::Object>,
    second: v8::Local<'s, v8::Object>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    match generated {
        GeneratedKey::Secret(key) => {
            let id = store_key(scope, key, first)?;
            Ok(v8::Integer::new_from_unsigned(scope, id).into())
        }
        GeneratedKey::Pair(pair) => {
            let public_id = store_key(scope, pair.public_key, first)?;
            let private_id = match store_key(scope, pair.private_key, second) {
                Ok(id) => id,
                Err(error) => {
                    bridge::state(scope).borrow_mut().resources.close(public_id);
                    return Err(error);
                }
            };
            let ids = [
                v8::Integer::new_from_unsigned(scope, public_id).into(),
                v8::Integer::new_from_unsigned(scope, private_id).into(),
            ];
            Ok(v8::Array::new_with_elements(scope, &ids).into())
        }
    }
}

fn key_id_to_js<'s>(
    scope: &mut Scope<'s, '_>,
    key: CryptoKey,
    owner: v8::Local<'s, v8::Object>,
) -> Result<v8::Local<'s, v8::Value>, JsError> {
    let id = store_key(scope, key, owner)?;
    Ok(v8::Integer::new_from_unsigned(scope, id).into())
}

// ---------------------------------------------------------------------------------------------
// SubtleCrypto

// subtleDigest(hashName, data) -> ArrayBuffer
op!(fn subtle_digest(scope, args) {
    let name = short_string(scope, args.get(0))?.unwrap_or_default();
    let hash = isobar_crypto::HashAlgorithm::from_name(&name).map_err(thrown)?;
    let data = args::bytes(args.get(1), args::BUFFER_BYTES_MAX, "digest")?;
    Ok(args::new_array_buffer(scope, isobar_crypto::digest(hash, &data)))
});

// subtleEncrypt(algorithm, keyId, data, decrypting) -> ArrayBuffer
op!(fn subtle_encrypt(scope, args) {
    let dictionary = Dictionary::read(scope, args.get(0))?;
    let key = key_of(scope, args.get(1))?;
    let data = args::bytes(args.get(2), args::BUFFER_BYTES_MAX, "data")?;
    let decrypting = args.get(3).is_true();
    let params = EncryptParams::for_encrypt(&dictionary.borrowed()).map_err(thrown)?;
    let output = if decrypting {
        isobar_crypto::decrypt(&params, &key, &data, &mut KernelRandom)
    } else {
        isobar_crypto::encrypt(&params, &key, &data, &mut KernelRandom)
    }
    .map_err(thrown)?;
    Ok(args::new_array_buffer(scope, output))
});

// subtleSign(algorithm, keyId, data) -> ArrayBuffer
op!(fn subtle_sign(scope, args) {
    let dictionary = Dictionary::read(scope, args.get(0))?;
    let key = key_of(scope, args.get(1))?;
    let data = args::bytes(args.get(2), args::BUFFER_BYTES_MAX, "data")?;
    let params = SignParams::from_dictionary(&dictionary.borrowed()).map_err(thrown)?;
    let signature = isobar_crypto::sign(&params, &key, &data, &mut KernelRandom).map_err(thrown)?;
    Ok(args::new_array_buffer(scope, signature))
});

// subtleVerify(algorithm, keyId, signature, data) -> boolean
op!(fn subtle_verify(scope, args) {
    let dictionary = Dictionary::read(scope, args.get(0))?;
    let key = key_of(scope, args.get(1))?;
    let signature = args::bytes(args.get(2), args::BUFFER_BYTES_MAX, "signature")?;
    let data = args::bytes(args.get(3), args::BUFFER_BYTES_MAX, "data")?;
    let params = SignParams::from_dictionary(&dictionary.borrowed()).map_err(thrown)?;
    isobar_crypto::verify(&params, &key, &signature, &data).map_err(thrown)
});

// subtleGenerateKey(algorithm, extractable, usages, first, second) -> id | [publicId, privateId]
op!(fn subtle_generate_key(scope, args) {
    let dictionary = Dictionary::read(scope, args.get(0))?;
    let extractable = args.get(1).is_true();
    let usages = usages(scope, args.get(2))?;
    let params = GenerateKeyParams::from_dictionary(&dictionary.borrowed()).map_err(thrown)?;
    let generated = isobar_crypto::generate_key(&params, extractable, usages, &mut KernelRandom).map_err(thrown)?;
    generated_to_js(scope, generated, owner_arg(&args, 3)?, owner_arg(&args, 4)?)
});

/// The format argument; an unknown one is a `NotSupportedError` (as in workerd).
fn format_of(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<KeyFormat, JsError> {
    let name = short_string(scope, value)?.unwrap_or_default();
    KeyFormat::from_name(&name).map_err(thrown)
}

// subtleImportKey(format, keyData, algorithm, extractable, usages, owner) -> id. keyData is a Uint8Array
// copy, or the JsonWebKey object subtle.js converted.
op!(fn subtle_import_key(scope, args) {
    let format = format_of(scope, args.get(0))?;
    let key_data = args.get(1);
    let dictionary = Dictionary::read(scope, args.get(2))?;
    let extractable = args.get(3).is_true();
    let usages = usages(scope, args.get(4))?;
    let is_bytes = args::buffer_len(key_data).is_some();
    let key = match format {
        KeyFormat::Jwk => {
            let object = match v8::Local::<v8::Object>::try_from(key_data) {
                Ok(object) if !is_bytes => object,
                _ => return Err(JsError::type_error("importKey: a \"jwk\" import needs a JsonWebKey dictionary")),
            };
            let jwk = jwk_from_object(scope, object)?;
            let params = ImportKeyParams::from_dictionary(&dictionary.borrowed()).map_err(thrown)?;
            isobar_crypto::import_key(format, KeyData::Jwk(&jwk), &params, extractable, usages)
        }
        _ => {
            if !is_bytes {
                return Err(JsError::type_error(format!(
                    "importKey: a \"{}\" import needs an ArrayBuffer or ArrayBufferView",
                    format.as_str()
                )));
            }
            let bytes = args::bytes(key_data, args::BUFFER_BYTES_MAX, "keyData")?;
            let params = ImportKeyParams::from_dictionary(&dictionary.borrowed()).map_err(thrown)?;
            isobar_crypto::import_key(format, KeyData::Bytes(&bytes), &params, extractable, usages)
        }
    }
    .map_err(thrown)?;
    key_id_to_js(scope, key, owner_arg(&args, 5)?)
});

// subtleExportKey(format, keyId) -> ArrayBuffer | JsonWebKey object
op!(fn subtle_export_key(scope, args) {
    let format = format_of(scope, args.get(0))?;
    let key = key_of(scope, args.get(1))?;
    match isobar_crypto::export_key(format, &key).map_err(thrown)? {
        ExportedKey::Bytes(bytes) => Ok(v8::Local::<v8::Value>::from(args::new_array_buffer(scope, bytes))),
        ExportedKey::Jwk(jwk) => Ok(jwk_to_object(scope, &jwk)?.into()),
    }
});

/// deriveBits' `length`: null (or undefined) for none.
fn length_of(scope: &mut Scope, value: v8::Local<v8::Value>) -> Result<Option<u32>, JsError> {
    if value.is_null_or_undefined() {
        return Ok(None);
    }
    uint32(scope, value, "length")
}

// subtleDeriveBits(algorithm, baseKeyId, length | null) -> ArrayBuffer
op!(fn subtle_derive_bits(scope, args) {
    let dictionary = Dictionary::read(scope, args.get(0))?;
    let key = key_of(scope, args.get(1))?;
    let length = length_of(scope, args.get(2))?;
    let params = DeriveParams::from_dictionary(&dictionary.borrowed()).map_err(thrown)?;
    let bits = isobar_crypto::derive_bits(&params, &key, length).map_err(thrown)?;
    Ok(args::new_array_buffer(scope, bits))
});

// subtleDeriveKey(algorithm, baseKeyId, derivedKeyType, extractable, usages, owner) -> id
op!(fn subtle_derive_key(scope, args) {
    let dictionary = Dictionary::read(scope, args.get(0))?;
    let key = key_of(scope, args.get(1))?;
    let derived = Dictionary::read(scope, args.get(2))?;
    let extractable = args.get(3).is_true();
    let usages = usages(scope, args.get(4))?;
    let params = DeriveParams::from_dictionary(&dictionary.borrowed()).map_err(thrown)?;
    let derived = DerivedKeyType::from_dictionary(&derived.borrowed()).map_err(thrown)?;
    let key = isobar_crypto::derive_key(&params, &key, &derived, extractable, usages).map_err(thrown)?;
    key_id_to_js(scope, key, owner_arg(&args, 5)?)
});

// subtleWrapKey(format, keyId, wrappingKeyId, algorithm) -> ArrayBuffer
op!(fn subtle_wrap_key(scope, args) {
    let format = format_of(scope, args.get(0))?;
    let key = key_of(scope, args.get(1))?;
    let wrapping_key = key_of(scope, args.get(2))?;
    let dictionary = Dictionary::read(scope, args.get(3))?;
    let params = EncryptParams::for_wrap(&dictionary.borrowed()).map_err(thrown)?;
    let wrapped = isobar_crypto::wrap_key(format, &key, &wrapping_key, &params, &mut KernelRandom).map_err(thrown)?;
    Ok(args::new_array_buffer(scope, wrapped))
});

// subtleUnwrapKey(format, wrappedKey, unwrappingKeyId, algorithm, unwrappedKeyAlgorithm,
// extractable, usages, owner) -> id
op!(fn subtle_unwrap_key(scope, args) {
    let format = format_of(scope, args.get(0))?;
    let wrapped = args::bytes(args.get(1), args::BUFFER_BYTES_MAX, "wrappedKey")?;
    let unwrapping_key = key_of(scope, args.get(2))?;
    let dictionary = Dictionary::read(scope, args.get(3))?;
    let unwrapped = Dictionary::read(scope, args.get(4))?;
    let extractable = args.get(5).is_true();
    let usages = usages(scope, args.get(6))?;
    let params = EncryptParams::for_wrap(&dictionary.borrowed()).map_err(thrown)?;
    let import = ImportKeyParams::from_dictionary(&unwrapped.borrowed()).map_err(thrown)?;
    let key = isobar_crypto::unwrap_key(
        format,
        &wrapped,
        &unwrapping_key,
        &params,
        &import,
        extractable,
        usages,
        &mut KernelRandom,
    )
    .map_err(thrown)?;
    key_id_to_js(scope, key, owner_arg(&args, 7)?)
});

// subtleTimingSafeEqual(a, b) -> boolean (a Workers extension; different lengths: TypeError)
op!(fn subtle_timing_safe_equal(scope, args) {
    let _ = &scope;
    let a = args::bytes(args.get(0), args::BUFFER_BYTES_MAX, "timingSafeEqual")?;
    let b = args::bytes(args.get(1), args::BUFFER_BYTES_MAX, "timingSafeEqual")?;
    isobar_crypto::timing_safe_equal(&a, &b).map_err(thrown)
});
