//! The `SubtleCrypto` methods: each checks what the spec checks before any algorithm runs (the
//! key's algorithm matches the requested one, the key has the usage, it is extractable), runs the
//! algorithm, and applies the spec's checks on the result (a secret or private key needs a usage).

use rand_core::TryCryptoRng;
use subtle::ConstantTimeEq;

use crate::algorithm::{
    AlgorithmName, DeriveParams, DerivedKeyType, EncryptParams, GenerateKeyParams, ImportKeyParams, KeyFormat,
    SignParams,
};
use crate::error::{CryptoError, invalid_access, not_supported, operation, syntax, type_error};
use crate::jwk::JsonWebKey;
use crate::key::{CryptoKey, ExportedKey, GeneratedKey, KeyData, KeyType};
use crate::usage::{KeyUsage, KeyUsages};
use crate::{aes, curve25519, ec, hmac, kdf, rsa};

/// The spec's checks before a key is used: same algorithm (`InvalidAccessError`, as workerd; the
/// spec would too) and the usage present (`InvalidAccessError`).
fn check_key(key: &CryptoKey, requested: AlgorithmName, usage: KeyUsage) -> Result<(), CryptoError> {
    if key.algorithm.algorithm() != requested {
        return Err(invalid_access(format!(
            "Requested algorithm \"{}\" does not match this CryptoKey's algorithm \"{}\".",
            requested.as_str(),
            key.algorithm.name()
        )));
    }
    if !key.usages.contains(usage) {
        return Err(invalid_access(format!(
            "Requested key usage \"{}\" does not match any usage listed in this CryptoKey.",
            usage.as_str()
        )));
    }
    Ok(())
}

/// A secret or private key without usages is useless; the spec makes it a `SyntaxError`.
fn require_usages(key: &CryptoKey) -> Result<(), CryptoError> {
    if key.usages.is_empty() && matches!(key.key_type, KeyType::Secret | KeyType::Private) {
        return Err(syntax("Secret/private CryptoKeys must have at least one usage."));
    }
    Ok(())
}

/// `crypto.subtle.generateKey`.
pub fn generate_key<R: TryCryptoRng + ?Sized>(
    params: &GenerateKeyParams,
    extractable: bool,
    usages: KeyUsages,
    rng: &mut R,
) -> Result<GeneratedKey, CryptoError> {
    let generated = match params {
        GenerateKeyParams::Aes { algorithm, length } => {
            GeneratedKey::Secret(aes::generate(*algorithm, *length, extractable, usages, rng)?)
        }
        GenerateKeyParams::Hmac { hash, length } => {
            GeneratedKey::Secret(hmac::generate(*hash, *length, extractable, usages, rng)?)
        }
        GenerateKeyParams::Rsa { algorithm, modulus_length, public_exponent, hash } => GeneratedKey::Pair(
            rsa::generate(*algorithm, *modulus_length, public_exponent, *hash, extractable, usages, rng)?,
        ),
        GenerateKeyParams::Ec { algorithm, named_curve } => {
            GeneratedKey::Pair(ec::generate(*algorithm, *named_curve, extractable, usages, rng)?)
        }
        GenerateKeyParams::Ed25519 => {
            GeneratedKey::Pair(curve25519::generate(AlgorithmName::Ed25519, extractable, usages, rng)?)
        }
        GenerateKeyParams::X25519 => {
            GeneratedKey::Pair(curve25519::generate(AlgorithmName::X25519, extractable, usages, rng)?)
        }
    };
    match &generated {
        GeneratedKey::Secret(key) => require_usages(key)?,
        GeneratedKey::Pair(pair) => require_usages(&pair.private_key)?,
    }
    Ok(generated)
}

/// `crypto.subtle.importKey`.
pub fn import_key(
    format: KeyFormat,
    key_data: KeyData<'_>,
    params: &ImportKeyParams,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let key = match *params {
        ImportKeyParams::Aes { algorithm } => aes::import(algorithm, format, key_data, extractable, usages)?,
        ImportKeyParams::Hmac { hash, length } => hmac::import(hash, length, format, key_data, extractable, usages)?,
        ImportKeyParams::Rsa { algorithm, hash } => {
            rsa::import(algorithm, hash, format, key_data, extractable, usages)?
        }
        ImportKeyParams::Ec { algorithm, named_curve } => {
            ec::import(algorithm, named_curve, format, key_data, extractable, usages)?
        }
        ImportKeyParams::Ed25519 => curve25519::import(AlgorithmName::Ed25519, format, key_data, extractable, usages)?,
        ImportKeyParams::X25519 => curve25519::import(AlgorithmName::X25519, format, key_data, extractable, usages)?,
        ImportKeyParams::Pbkdf2 => kdf::import(AlgorithmName::Pbkdf2, format, key_data, extractable, usages)?,
        ImportKeyParams::Hkdf => kdf::import(AlgorithmName::Hkdf, format, key_data, extractable, usages)?,
    };
    require_usages(&key)?;
    Ok(key)
}

/// `crypto.subtle.exportKey`.
pub fn export_key(format: KeyFormat, key: &CryptoKey) -> Result<ExportedKey, CryptoError> {
    if !key.extractable {
        return Err(invalid_access(format!("Attempt to export non-extractable {} key.", key.algorithm.name())));
    }
    let algorithm = key.algorithm.algorithm();
    match algorithm {
        _ if algorithm.is_aes() => aes::export(key, format),
        AlgorithmName::Hmac => hmac::export(key, format),
        _ if algorithm.is_rsa() => rsa::export(key, format),
        AlgorithmName::Ecdsa | AlgorithmName::Ecdh => ec::export(key, format),
        AlgorithmName::Ed25519 | AlgorithmName::X25519 => curve25519::export(key, format),
        _ => Err(not_supported(format!("{} keys cannot be exported.", algorithm.as_str()))),
    }
}

fn encrypt_unchecked<R: TryCryptoRng + ?Sized>(
    params: &EncryptParams<'_>,
    key: &CryptoKey,
    data: &[u8],
    decrypting: bool,
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    match params {
        EncryptParams::RsaOaep { label } if decrypting => Ok(rsa::oaep_decrypt(key, *label, data, rng)?.to_vec()),
        EncryptParams::RsaOaep { label } => rsa::oaep_encrypt(key, *label, data, rng),
        EncryptParams::AesKw if decrypting => Ok(aes::unwrap(key, data)?.to_vec()),
        EncryptParams::AesKw => aes::wrap(key, data),
        _ => aes::encrypt_or_decrypt(key, params, data, decrypting),
    }
}

/// `crypto.subtle.encrypt`.
pub fn encrypt<R: TryCryptoRng + ?Sized>(
    params: &EncryptParams<'_>,
    key: &CryptoKey,
    data: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    check_key(key, params.algorithm(), KeyUsage::Encrypt)?;
    encrypt_unchecked(params, key, data, false, rng)
}

/// `crypto.subtle.decrypt`.
pub fn decrypt<R: TryCryptoRng + ?Sized>(
    params: &EncryptParams<'_>,
    key: &CryptoKey,
    data: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    check_key(key, params.algorithm(), KeyUsage::Decrypt)?;
    encrypt_unchecked(params, key, data, true, rng)
}

/// `crypto.subtle.sign`. The rng salts RSA-PSS and blinds RSA; the other algorithms are
/// deterministic.
pub fn sign<R: TryCryptoRng + ?Sized>(
    params: &SignParams,
    key: &CryptoKey,
    data: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    check_key(key, params.algorithm(), KeyUsage::Sign)?;
    match *params {
        SignParams::Hmac => hmac::sign(key, data),
        SignParams::RsassaPkcs1V15 => rsa::sign(key, None, data, rng),
        SignParams::RsaPss { salt_length } => rsa::sign(key, Some(salt_length), data, rng),
        SignParams::Ecdsa { hash } => ec::sign(key, hash, data),
        SignParams::Ed25519 => curve25519::sign(key, data),
    }
}

/// `crypto.subtle.verify`.
pub fn verify(params: &SignParams, key: &CryptoKey, signature: &[u8], data: &[u8]) -> Result<bool, CryptoError> {
    check_key(key, params.algorithm(), KeyUsage::Verify)?;
    match *params {
        SignParams::Hmac => hmac::verify(key, signature, data),
        SignParams::RsassaPkcs1V15 => rsa::verify(key, None, signature, data),
        SignParams::RsaPss { salt_length } => rsa::verify(key, Some(salt_length), signature, data),
        SignParams::Ecdsa { hash } => ec::verify(key, hash, signature, data),
        SignParams::Ed25519 => curve25519::verify(key, signature, data),
    }
}

fn derive_bits_unchecked(
    params: &DeriveParams<'_>,
    key: &CryptoKey,
    length: Option<u32>,
) -> Result<Vec<u8>, CryptoError> {
    match *params {
        DeriveParams::Ecdh { public } => ec::derive_bits(key, public, length),
        DeriveParams::X25519 { public } => curve25519::derive_bits(key, public, length),
        DeriveParams::Hkdf { hash, salt, info } => kdf::hkdf_derive_bits(key, hash, salt, info, length),
        DeriveParams::Pbkdf2 { hash, salt, iterations } => kdf::pbkdf2_derive_bits(key, hash, salt, iterations, length),
    }
}

/// `crypto.subtle.deriveBits`; `length` is in bits, `None` for the script's `null`.
pub fn derive_bits(
    params: &DeriveParams<'_>,
    base_key: &CryptoKey,
    length: Option<u32>,
) -> Result<Vec<u8>, CryptoError> {
    check_key(base_key, params.algorithm(), KeyUsage::DeriveBits)?;
    derive_bits_unchecked(params, base_key, length)
}

/// The spec's "get key length" for the key `deriveKey` will import.
fn derived_key_length(derived: &DerivedKeyType) -> Result<Option<u32>, CryptoError> {
    match derived.import {
        ImportKeyParams::Aes { .. } => match derived.length {
            Some(length @ (128 | 192 | 256)) => Ok(Some(length)),
            Some(length) => Err(operation(format!(
                "Derived AES key must be 128, 192, or 256 bits in length but provided {length}."
            ))),
            None => Err(type_error("Missing field \"length\" in \"derivedKeyParams\".")),
        },
        ImportKeyParams::Hmac { hash, .. } => match derived.length {
            // workerd makes a zero length a TypeError.
            Some(0) => Err(type_error("HMAC key length must be a non-zero unsigned long integer.")),
            Some(length) => Ok(Some(length)),
            None => Ok(Some(hash.block_bits())),
        },
        // Deriving a KDF key takes whatever length the KDF's deriveBits settles on (none).
        ImportKeyParams::Hkdf | ImportKeyParams::Pbkdf2 => Ok(None),
        _ => Err(not_supported("Unrecognized derived key type requested.")),
    }
}

/// `crypto.subtle.deriveKey`: derive the bits the derived key type needs, then import them raw.
pub fn derive_key(
    params: &DeriveParams<'_>,
    base_key: &CryptoKey,
    derived: &DerivedKeyType,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    check_key(base_key, params.algorithm(), KeyUsage::DeriveKey)?;
    let length = derived_key_length(derived)?;
    let secret = zeroize::Zeroizing::new(derive_bits_unchecked(params, base_key, length)?);
    import_key(KeyFormat::Raw, KeyData::Bytes(&secret), &derived.import, extractable, usages)
}

/// `crypto.subtle.wrapKey`: export `key` in `format`, then encrypt (or AES-KW wrap) the export.
pub fn wrap_key<R: TryCryptoRng + ?Sized>(
    format: KeyFormat,
    key: &CryptoKey,
    wrapping_key: &CryptoKey,
    params: &EncryptParams<'_>,
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    check_key(wrapping_key, params.algorithm(), KeyUsage::WrapKey)?;
    let exported = match export_key(format, key)? {
        ExportedKey::Bytes(bytes) => zeroize::Zeroizing::new(bytes),
        ExportedKey::Jwk(jwk) => jwk.to_json(),
    };
    encrypt_unchecked(params, wrapping_key, &exported, false, rng)
}

/// `crypto.subtle.unwrapKey`: decrypt (or AES-KW unwrap), then import in `format`; a "jwk" that is
/// not valid JWK JSON is a `DataError`.
#[allow(clippy::too_many_arguments, reason = "the arguments are the spec's, in its order")]
pub fn unwrap_key<R: TryCryptoRng + ?Sized>(
    format: KeyFormat,
    wrapped_key: &[u8],
    unwrapping_key: &CryptoKey,
    params: &EncryptParams<'_>,
    unwrapped_key_params: &ImportKeyParams,
    extractable: bool,
    usages: KeyUsages,
    rng: &mut R,
) -> Result<CryptoKey, CryptoError> {
    check_key(unwrapping_key, params.algorithm(), KeyUsage::UnwrapKey)?;
    let bytes = zeroize::Zeroizing::new(encrypt_unchecked(params, unwrapping_key, wrapped_key, true, rng)?);
    match format {
        KeyFormat::Jwk => {
            let jwk = JsonWebKey::from_json(&bytes)?;
            import_key(format, KeyData::Jwk(&jwk), unwrapped_key_params, extractable, usages)
        }
        _ => import_key(format, KeyData::Bytes(&bytes), unwrapped_key_params, extractable, usages),
    }
}

/// `crypto.subtle.timingSafeEqual` (a Workers extension): compares in time that depends only on
/// the length; buffers of different lengths are a `TypeError`, as in workerd.
pub fn timing_safe_equal(a: &[u8], b: &[u8]) -> Result<bool, CryptoError> {
    if a.len() != b.len() {
        return Err(type_error("Input buffers must have the same byte length."));
    }
    Ok(a.ct_eq(b).into())
}
