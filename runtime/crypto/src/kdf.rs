//! PBKDF2 and HKDF: raw key import and `deriveBits`, on RustCrypto's pbkdf2 and hkdf.

use hkdf::Hkdf;
use zeroize::Zeroizing;

use crate::algorithm::{AlgorithmName, HashAlgorithm, KeyFormat};
use crate::digest::with_hash;
use crate::error::{CryptoError, not_supported, operation, syntax, type_error};
use crate::key::{CryptoKey, KeyAlgorithm, KeyData, KeyMaterial, KeyType};
use crate::usage::{KeyUsage, KeyUsages};

/// The most PBKDF2 iterations one call may ask for. workerd's default limit (what Cloudflare's
/// production runtime enforces); the spec sets none. One call runs on the core without yielding,
/// so an unbounded count would let a script hold a core far past its CPU limit.
pub const PBKDF2_ITERATIONS_MAX: u32 = 100_000;

/// How many hash outputs a derivation may produce: HKDF's own bound (RFC 5869 section 2.3), which
/// workerd also applies to PBKDF2.
const DERIVED_OUTPUTS_MAX: usize = 255;

pub(crate) fn import(
    algorithm: AlgorithmName,
    format: KeyFormat,
    key_data: KeyData<'_>,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let usages =
        usages.require_within(KeyUsages::of(&[KeyUsage::DeriveKey, KeyUsage::DeriveBits]), algorithm.as_str())?;
    if extractable {
        return Err(syntax(format!("{} keys cannot be extractable.", algorithm.as_str())));
    }
    let bytes = match (format, key_data) {
        (KeyFormat::Raw, KeyData::Bytes(bytes)) => Zeroizing::new(bytes.to_vec()),
        (KeyFormat::Raw, KeyData::Jwk(_)) => {
            return Err(type_error("The key data does not match the import format."));
        }
        _ => {
            return Err(not_supported(format!("{} keys can only be imported in \"raw\" format.", algorithm.as_str())));
        }
    };
    let key_algorithm = if algorithm == AlgorithmName::Hkdf { KeyAlgorithm::Hkdf } else { KeyAlgorithm::Pbkdf2 };
    Ok(CryptoKey::new(KeyType::Secret, false, key_algorithm, usages, KeyMaterial::Secret(bytes)))
}

/// The requested length in bytes: present and a whole number of bytes, or an `OperationError`.
fn whole_bytes(length: Option<u32>, algorithm: &str, hash: HashAlgorithm) -> Result<usize, CryptoError> {
    let length = length.ok_or_else(|| operation(format!("{algorithm} cannot derive a key with null length.")))?;
    if length % 8 != 0 {
        return Err(operation(format!(
            "{algorithm} requires a derived key length that is a multiple of eight (requested {length})."
        )));
    }
    let bytes = (length / 8) as usize;
    if bytes > DERIVED_OUTPUTS_MAX * hash.output_bytes() {
        return Err(operation(format!(
            "{algorithm} cannot derive more than {} bits with {}.",
            DERIVED_OUTPUTS_MAX * hash.output_bytes() * 8,
            hash.as_str()
        )));
    }
    Ok(bytes)
}

pub(crate) fn hkdf_derive_bits(
    key: &CryptoKey,
    hash: HashAlgorithm,
    salt: &[u8],
    info: &[u8],
    length: Option<u32>,
) -> Result<Vec<u8>, CryptoError> {
    let bytes = whole_bytes(length, "HKDF", hash)?;
    let ikm = key.secret_bytes()?;
    let mut okm = vec![0u8; bytes];
    with_hash!(hash, Hash => Hkdf::<Hash>::new(Some(salt), ikm).expand(info, &mut okm))
        .map_err(|_| operation("HKDF deriveBits failed."))?;
    Ok(okm)
}

pub(crate) fn pbkdf2_derive_bits(
    key: &CryptoKey,
    hash: HashAlgorithm,
    salt: &[u8],
    iterations: u32,
    length: Option<u32>,
) -> Result<Vec<u8>, CryptoError> {
    let bytes = whole_bytes(length, "PBKDF2", hash)?;
    if iterations == 0 {
        return Err(operation("PBKDF2 requires a positive iteration count (requested 0)."));
    }
    if iterations > PBKDF2_ITERATIONS_MAX {
        return Err(not_supported(format!(
            "Pbkdf2 failed: iteration counts above {PBKDF2_ITERATIONS_MAX} are not supported (requested {iterations})."
        )));
    }
    let password = key.secret_bytes()?;
    let mut derived = vec![0u8; bytes];
    with_hash!(hash, Hash => pbkdf2::pbkdf2_hmac::<Hash>(password, salt, iterations, &mut derived));
    Ok(derived)
}
