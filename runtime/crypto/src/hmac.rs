//! HMAC keys and signatures, on RustCrypto's hmac over the hash named by the key.

use hmac::{Hmac, KeyInit, Mac};
use rand_core::TryCryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::algorithm::{HashAlgorithm, KeyFormat};
use crate::digest::with_hash;
use crate::error::{CryptoError, data, not_supported, operation, random_source_failed, type_error};
use crate::jwk::{JsonWebKey, decode_member, encode_member};
use crate::key::{CryptoKey, ExportedKey, KeyAlgorithm, KeyData, KeyMaterial, KeyType};
use crate::usage::{KeyUsage, KeyUsages};

/// The longest HMAC key `generateKey` makes, in bits. The spec sets no bound; this one keeps a
/// script from asking for gigabytes, and is far above any useful length (HMAC hashes keys longer
/// than the hash's block, 1024 bits at most, down to the hash's output).
pub const HMAC_GENERATED_KEY_BITS_MAX: u32 = 65_536;

fn allowed_usages() -> KeyUsages {
    KeyUsages::of(&[KeyUsage::Sign, KeyUsage::Verify])
}

/// Clears the bits past `length_bits` in the last byte, so a key of, say, 12 bits holds no more.
fn clear_trailing_bits(bytes: &mut [u8], length_bits: u32) {
    let spare_bits = (bytes.len() as u64 * 8).saturating_sub(u64::from(length_bits));
    if spare_bits > 0
        && spare_bits < 8
        && let Some(last) = bytes.last_mut()
    {
        *last &= 0xffu8 << spare_bits;
    }
}

fn make_key(
    hash: HashAlgorithm,
    length: u32,
    bytes: Zeroizing<Vec<u8>>,
    extractable: bool,
    usages: KeyUsages,
) -> CryptoKey {
    CryptoKey::new(
        KeyType::Secret,
        extractable,
        KeyAlgorithm::Hmac { hash, length },
        usages,
        KeyMaterial::Secret(bytes),
    )
}

pub(crate) fn generate<R: TryCryptoRng + ?Sized>(
    hash: HashAlgorithm,
    length: Option<u32>,
    extractable: bool,
    usages: KeyUsages,
    rng: &mut R,
) -> Result<CryptoKey, CryptoError> {
    let usages = usages.require_within(allowed_usages(), "HMAC")?;
    let length = length.unwrap_or_else(|| hash.block_bits());
    if length == 0 {
        return Err(operation("HMAC key length must be a non-zero number of bits."));
    }
    if length > HMAC_GENERATED_KEY_BITS_MAX {
        return Err(operation(format!(
            "HMAC keys of more than {HMAC_GENERATED_KEY_BITS_MAX} bits are not generated (requested {length})."
        )));
    }
    let mut bytes = Zeroizing::new(vec![0u8; length.div_ceil(8) as usize]);
    rng.try_fill_bytes(&mut bytes).map_err(|_| random_source_failed())?;
    clear_trailing_bits(&mut bytes, length);
    Ok(make_key(hash, length, bytes, extractable, usages))
}

pub(crate) fn import(
    hash: HashAlgorithm,
    length: Option<u32>,
    format: KeyFormat,
    key_data: KeyData<'_>,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let usages = usages.require_within(allowed_usages(), "HMAC")?;
    let mut bytes = match (format, key_data) {
        (KeyFormat::Raw, KeyData::Bytes(bytes)) => Zeroizing::new(bytes.to_vec()),
        (KeyFormat::Jwk, KeyData::Jwk(jwk)) => {
            jwk.require_kty("oct", "HMAC")?;
            let bytes = decode_member(jwk.k.as_deref(), "k")?;
            if let Some(alg) = &jwk.alg {
                // workerd refuses an `alg` for hashes that have no JWK name (MD5).
                let suffix = hash
                    .jwk_suffix()
                    .ok_or_else(|| not_supported(format!("HMAC with {} has no JWK \"alg\".", hash.as_str())))?;
                let expected = format!("HS{suffix}");
                if *alg != expected {
                    return Err(data(format!(
                        "The JSON Web Key's \"alg\" is \"{alg}\" but \"{expected}\" is required."
                    )));
                }
            }
            jwk.check_use("sig", usages)?;
            jwk.check_ext_and_key_ops(extractable, usages)?;
            bytes
        }
        (KeyFormat::Raw | KeyFormat::Jwk, _) => {
            return Err(type_error("The key data does not match the import format."));
        }
        (KeyFormat::Pkcs8 | KeyFormat::Spki, _) => {
            return Err(not_supported("HMAC keys can only be imported in \"raw\" or \"jwk\" format."));
        }
    };
    let data_bits = (bytes.len() as u64).saturating_mul(8);
    let length = match length {
        Some(length) => u64::from(length),
        None => data_bits,
    };
    // The spec: the length may leave out up to 7 bits of the last byte, no more and no fewer.
    if length == 0 || length > data_bits || length + 8 <= data_bits {
        return Err(data(format!(
            "Imported HMAC key length ({length}) must be non-zero, no greater than the key data's {data_bits} bits \
             and less than 8 bits shorter."
        )));
    }
    let length = u32::try_from(length).map_err(|_| data("The HMAC key is too long."))?;
    clear_trailing_bits(&mut bytes, length);
    Ok(make_key(hash, length, bytes, extractable, usages))
}

pub(crate) fn export(key: &CryptoKey, format: KeyFormat) -> Result<ExportedKey, CryptoError> {
    let bytes = key.secret_bytes()?;
    let KeyAlgorithm::Hmac { hash, .. } = key.algorithm else {
        return Err(operation("Not an HMAC key."));
    };
    match format {
        KeyFormat::Raw => Ok(ExportedKey::Bytes(bytes.to_vec())),
        KeyFormat::Jwk => {
            let suffix = hash
                .jwk_suffix()
                .ok_or_else(|| not_supported(format!("HMAC keys with {} cannot be exported as JWK.", hash.as_str())))?;
            let jwk = JsonWebKey {
                kty: Some("oct".into()),
                k: Some(encode_member(bytes)),
                alg: Some(format!("HS{suffix}")),
                ..JsonWebKey::default()
            };
            Ok(ExportedKey::Jwk(jwk.with_usages(key.usages)))
        }
        KeyFormat::Pkcs8 | KeyFormat::Spki => {
            Err(not_supported("HMAC keys can only be exported in \"raw\" or \"jwk\" format."))
        }
    }
}

/// The MAC of `data` under `key`, with the key's hash.
fn mac(hash: HashAlgorithm, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    with_hash!(hash, Hash => {
        let mut mac = <Hmac<Hash> as KeyInit>::new_from_slice(key).map_err(|_| operation("HMAC computation failed."))?;
        mac.update(data);
        Ok(mac.finalize().into_bytes().to_vec())
    })
}

pub(crate) fn sign(key: &CryptoKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let KeyAlgorithm::Hmac { hash, .. } = key.algorithm else {
        return Err(operation("Not an HMAC key."));
    };
    mac(hash, key.secret_bytes()?, data)
}

/// Compares in constant time; a signature of the wrong length is simply not valid.
pub(crate) fn verify(key: &CryptoKey, signature: &[u8], data: &[u8]) -> Result<bool, CryptoError> {
    let expected = sign(key, data)?;
    Ok(expected.len() == signature.len() && bool::from(expected.ct_eq(signature)))
}
