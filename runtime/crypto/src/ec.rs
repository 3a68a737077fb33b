//! ECDSA and ECDH on P-256 and P-384, on RustCrypto's p256 and p384 (elliptic-curve, ecdsa).
//! Signatures are WebCrypto's fixed-size `r || s`, never DER. Import in raw (public points,
//! compressed or not), spki, pkcs8 and jwk; export the same.
//!
//! ECDSA signs deterministically (RFC 6979); verifiers cannot tell, and every signature is as valid
//! as BoringSSL's randomized ones.

use rand_core::TryCryptoRng;
use zeroize::Zeroizing;

use crate::algorithm::{AlgorithmName, HashAlgorithm, KeyFormat, NamedCurve};
use crate::digest::digest;
use crate::error::{CryptoError, data, invalid_access, not_supported, operation, random_source_failed, type_error};
use crate::jwk::{JsonWebKey, decode_member, encode_member};
use crate::key::{CryptoKey, CryptoKeyPair, ExportedKey, KeyAlgorithm, KeyData, KeyMaterial, KeyType};
use crate::usage::{KeyUsage, KeyUsages};

/// Generates the same set of functions for each curve crate; the enums below dispatch to them.
macro_rules! curve_functions {
    ($module:ident, $curve:ident) => {
        mod $module {
            use rand_core::TryCryptoRng;
            use $curve::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
            use $curve::ecdsa::{Signature, SigningKey, VerifyingKey};
            use $curve::elliptic_curve::Generate;
            use $curve::elliptic_curve::sec1::ToSec1Point;
            use $curve::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
            use $curve::{PublicKey, SecretKey};
            use zeroize::Zeroizing;

            pub(super) fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Option<SecretKey> {
                SecretKey::try_generate_from_rng(rng).ok()
            }

            pub(super) fn public_from_sec1(bytes: &[u8]) -> Option<PublicKey> {
                PublicKey::from_sec1_bytes(bytes).ok()
            }

            /// The uncompressed point `04 || x || y`.
            pub(super) fn public_to_sec1(public: &PublicKey) -> Vec<u8> {
                public.to_sec1_point(false).as_bytes().to_vec()
            }

            pub(super) fn public_coordinates(public: &PublicKey) -> (Vec<u8>, Vec<u8>) {
                let point = public.to_sec1_point(false);
                let x = point.x().map(|x| x.to_vec()).unwrap_or_default();
                let y = point.y().map(|y| y.to_vec()).unwrap_or_default();
                (x, y)
            }

            pub(super) fn public_from_spki(der: &[u8]) -> Option<PublicKey> {
                PublicKey::from_public_key_der(der).ok()
            }

            pub(super) fn public_to_spki(public: &PublicKey) -> Option<Vec<u8>> {
                public.to_public_key_der().ok().map(|document| document.as_bytes().to_vec())
            }

            pub(super) fn secret_from_pkcs8(der: &[u8]) -> Option<SecretKey> {
                SecretKey::from_pkcs8_der(der).ok()
            }

            pub(super) fn secret_to_pkcs8(secret: &SecretKey) -> Option<Zeroizing<Vec<u8>>> {
                secret.to_pkcs8_der().ok().map(|document| Zeroizing::new(document.as_bytes().to_vec()))
            }

            pub(super) fn secret_from_scalar(bytes: &[u8]) -> Option<SecretKey> {
                SecretKey::from_slice(bytes).ok()
            }

            pub(super) fn secret_scalar(secret: &SecretKey) -> Zeroizing<Vec<u8>> {
                Zeroizing::new(secret.to_bytes().to_vec())
            }

            pub(super) fn public_of(secret: &SecretKey) -> PublicKey {
                secret.public_key()
            }

            /// Signs a prehash already cut or padded to the field size; returns `r || s`.
            pub(super) fn sign(secret: &SecretKey, prehash: &[u8]) -> Option<Vec<u8>> {
                let signature: Signature = SigningKey::from(secret).sign_prehash(prehash).ok()?;
                Some(signature.to_bytes().to_vec())
            }

            pub(super) fn verify(public: &PublicKey, prehash: &[u8], signature: &[u8]) -> bool {
                let Ok(signature) = Signature::from_slice(signature) else {
                    return false;
                };
                VerifyingKey::from(public).verify_prehash(prehash, &signature).is_ok()
            }

            /// The shared secret: the x-coordinate of the product point.
            pub(super) fn diffie_hellman(secret: &SecretKey, public: &PublicKey) -> Zeroizing<Vec<u8>> {
                Zeroizing::new(secret.diffie_hellman(public).raw_secret_bytes().to_vec())
            }
        }
    };
}

curve_functions!(p256_functions, p256);
curve_functions!(p384_functions, p384);

/// An EC private key on one of the supported curves.
#[derive(Clone)]
pub(crate) enum EcPrivateKey {
    P256(p256::SecretKey),
    P384(p384::SecretKey),
}

/// An EC public key on one of the supported curves.
#[derive(Clone)]
pub(crate) enum EcPublicKey {
    P256(p256::PublicKey),
    P384(p384::PublicKey),
}

impl EcPrivateKey {
    fn public_key(&self) -> EcPublicKey {
        match self {
            EcPrivateKey::P256(secret) => EcPublicKey::P256(p256_functions::public_of(secret)),
            EcPrivateKey::P384(secret) => EcPublicKey::P384(p384_functions::public_of(secret)),
        }
    }
}

impl EcPublicKey {
    fn coordinates(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            EcPublicKey::P256(public) => p256_functions::public_coordinates(public),
            EcPublicKey::P384(public) => p384_functions::public_coordinates(public),
        }
    }

    fn to_sec1(&self) -> Vec<u8> {
        match self {
            EcPublicKey::P256(public) => p256_functions::public_to_sec1(public),
            EcPublicKey::P384(public) => p384_functions::public_to_sec1(public),
        }
    }
}

fn public_from_sec1(curve: NamedCurve, bytes: &[u8]) -> Option<EcPublicKey> {
    match curve {
        NamedCurve::P256 => p256_functions::public_from_sec1(bytes).map(EcPublicKey::P256),
        NamedCurve::P384 => p384_functions::public_from_sec1(bytes).map(EcPublicKey::P384),
    }
}

/// The usages each half of a key pair may carry.
fn private_usages(algorithm: AlgorithmName) -> KeyUsages {
    if algorithm == AlgorithmName::Ecdsa {
        KeyUsages::of(&[KeyUsage::Sign])
    } else {
        KeyUsages::of(&[KeyUsage::DeriveKey, KeyUsage::DeriveBits])
    }
}

/// ECDH public keys take no usages (workerd's strict crypto checks, on since 2023-08-01).
fn public_usages(algorithm: AlgorithmName) -> KeyUsages {
    if algorithm == AlgorithmName::Ecdsa { KeyUsages::of(&[KeyUsage::Verify]) } else { KeyUsages::NONE }
}

fn private_key(
    algorithm: AlgorithmName,
    curve: NamedCurve,
    key: EcPrivateKey,
    extractable: bool,
    usages: KeyUsages,
) -> CryptoKey {
    CryptoKey::new(
        KeyType::Private,
        extractable,
        KeyAlgorithm::Ec { algorithm, named_curve: curve },
        usages,
        KeyMaterial::EcPrivate(Box::new(key)),
    )
}

fn public_key(
    algorithm: AlgorithmName,
    curve: NamedCurve,
    key: EcPublicKey,
    extractable: bool,
    usages: KeyUsages,
) -> CryptoKey {
    CryptoKey::new(
        KeyType::Public,
        extractable,
        KeyAlgorithm::Ec { algorithm, named_curve: curve },
        usages,
        KeyMaterial::EcPublic(Box::new(key)),
    )
}

pub(crate) fn generate<R: TryCryptoRng + ?Sized>(
    algorithm: AlgorithmName,
    curve: NamedCurve,
    extractable: bool,
    usages: KeyUsages,
    rng: &mut R,
) -> Result<CryptoKeyPair, CryptoError> {
    let allowed = private_usages(algorithm).union(public_usages(algorithm));
    let usages = usages.require_within(allowed, algorithm.as_str())?;
    let secret = match curve {
        NamedCurve::P256 => p256_functions::generate(rng).map(EcPrivateKey::P256),
        NamedCurve::P384 => p384_functions::generate(rng).map(EcPrivateKey::P384),
    }
    .ok_or_else(random_source_failed)?;
    let public = secret.public_key();
    Ok(CryptoKeyPair {
        public_key: public_key(algorithm, curve, public, true, usages.intersection(public_usages(algorithm))),
        private_key: private_key(algorithm, curve, secret, extractable, usages.intersection(private_usages(algorithm))),
    })
}

/// Decodes a JWK coordinate or scalar: at most the field size, left-padded to it (BoringSSL reads
/// these as big integers, so shorter encodings are accepted).
fn field_member(jwk_value: Option<&str>, member: &str, curve: NamedCurve) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let bytes = decode_member(jwk_value, member)?;
    let size = curve.field_bytes();
    if bytes.len() > size {
        return Err(data(format!(
            "The JSON Web Key's \"{member}\" is longer than a {} field element.",
            curve.as_str()
        )));
    }
    let mut padded = Zeroizing::new(vec![0u8; size]);
    padded[size - bytes.len()..].copy_from_slice(&bytes);
    Ok(padded)
}

pub(crate) fn import(
    algorithm: AlgorithmName,
    curve: NamedCurve,
    format: KeyFormat,
    key_data: KeyData<'_>,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let invalid = || data(format!("Invalid {} {} key data.", curve.as_str(), algorithm.as_str()));
    match (format, key_data) {
        (KeyFormat::Raw, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(public_usages(algorithm), algorithm.as_str())?;
            let public = public_from_sec1(curve, bytes).ok_or_else(invalid)?;
            Ok(public_key(algorithm, curve, public, extractable, usages))
        }
        (KeyFormat::Spki, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(public_usages(algorithm), algorithm.as_str())?;
            let public = match curve {
                NamedCurve::P256 => p256_functions::public_from_spki(bytes).map(EcPublicKey::P256),
                NamedCurve::P384 => p384_functions::public_from_spki(bytes).map(EcPublicKey::P384),
            }
            .ok_or_else(invalid)?;
            Ok(public_key(algorithm, curve, public, extractable, usages))
        }
        (KeyFormat::Pkcs8, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(private_usages(algorithm), algorithm.as_str())?;
            let secret = match curve {
                NamedCurve::P256 => p256_functions::secret_from_pkcs8(bytes).map(EcPrivateKey::P256),
                NamedCurve::P384 => p384_functions::secret_from_pkcs8(bytes).map(EcPrivateKey::P384),
            }
            .ok_or_else(invalid)?;
            Ok(private_key(algorithm, curve, secret, extractable, usages))
        }
        (KeyFormat::Jwk, KeyData::Jwk(jwk)) => import_jwk(algorithm, curve, jwk, extractable, usages),
        _ => Err(type_error("The key data does not match the import format.")),
    }
}

fn import_jwk(
    algorithm: AlgorithmName,
    curve: NamedCurve,
    jwk: &JsonWebKey,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let is_private = jwk.d.is_some();
    let allowed = if is_private { private_usages(algorithm) } else { public_usages(algorithm) };
    let usages = usages.require_within(allowed, algorithm.as_str())?;
    jwk.require_kty("EC", algorithm.as_str())?;
    match jwk.crv.as_deref() {
        Some(crv) if crv == curve.as_str() => {}
        Some(crv) => {
            return Err(data(format!(
                "The JSON Web Key's \"crv\" is \"{crv}\" but \"{}\" was requested.",
                curve.as_str()
            )));
        }
        None => return Err(data("The JSON Web Key has no \"crv\" member.")),
    }
    if algorithm == AlgorithmName::Ecdsa
        && let Some(alg) = &jwk.alg
    {
        let alg_curve = match alg.as_str() {
            "ES256" => "P-256",
            "ES384" => "P-384",
            "ES512" => "P-521",
            _ => {
                return Err(not_supported(format!(
                    "Unrecognized or unimplemented algorithm \"{alg}\" in the JSON Web Key's \"alg\"."
                )));
            }
        };
        if alg_curve != curve.as_str() {
            return Err(data(format!(
                "The JSON Web Key's \"alg\" \"{alg}\" does not match the curve {}.",
                curve.as_str()
            )));
        }
    }
    jwk.check_use(if algorithm == AlgorithmName::Ecdsa { "sig" } else { "enc" }, usages)?;
    jwk.check_ext_and_key_ops(extractable, usages)?;

    let x = field_member(jwk.x.as_deref(), "x", curve)?;
    let y = field_member(jwk.y.as_deref(), "y", curve)?;
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let public = public_from_sec1(curve, &point)
        .ok_or_else(|| data(format!("The JSON Web Key's \"x\" and \"y\" are not a point on {}.", curve.as_str())))?;
    if !is_private {
        return Ok(public_key(algorithm, curve, public, extractable, usages));
    }
    let d = field_member(jwk.d.as_deref(), "d", curve)?;
    let secret = match curve {
        NamedCurve::P256 => p256_functions::secret_from_scalar(&d).map(EcPrivateKey::P256),
        NamedCurve::P384 => p384_functions::secret_from_scalar(&d).map(EcPrivateKey::P384),
    }
    .ok_or_else(|| data("The JSON Web Key's \"d\" is not a valid private scalar."))?;
    if secret.public_key().to_sec1() != public.to_sec1() {
        return Err(data("The JSON Web Key's \"x\" and \"y\" do not belong to its \"d\"."));
    }
    Ok(private_key(algorithm, curve, secret, extractable, usages))
}

pub(crate) fn export(key: &CryptoKey, format: KeyFormat) -> Result<ExportedKey, CryptoError> {
    let KeyAlgorithm::Ec { named_curve, .. } = key.algorithm else {
        return Err(operation("Not an EC key."));
    };
    match (&key.material, format) {
        (KeyMaterial::EcPublic(public), KeyFormat::Raw) => Ok(ExportedKey::Bytes(public.to_sec1())),
        (KeyMaterial::EcPublic(public), KeyFormat::Spki) => match &**public {
            EcPublicKey::P256(public) => p256_functions::public_to_spki(public),
            EcPublicKey::P384(public) => p384_functions::public_to_spki(public),
        }
        .map(ExportedKey::Bytes)
        .ok_or_else(|| operation("Public key export failed.")),
        (KeyMaterial::EcPrivate(secret), KeyFormat::Pkcs8) => match &**secret {
            EcPrivateKey::P256(secret) => p256_functions::secret_to_pkcs8(secret),
            EcPrivateKey::P384(secret) => p384_functions::secret_to_pkcs8(secret),
        }
        .map(|der| ExportedKey::Bytes(der.to_vec()))
        .ok_or_else(|| operation("Private key export failed.")),
        (KeyMaterial::EcPublic(public), KeyFormat::Jwk) => {
            Ok(ExportedKey::Jwk(jwk_of(named_curve, public, None).with_usages(key.usages)))
        }
        (KeyMaterial::EcPrivate(secret), KeyFormat::Jwk) => {
            let scalar = match &**secret {
                EcPrivateKey::P256(secret) => p256_functions::secret_scalar(secret),
                EcPrivateKey::P384(secret) => p384_functions::secret_scalar(secret),
            };
            let jwk = jwk_of(named_curve, &secret.public_key(), Some(&scalar));
            Ok(ExportedKey::Jwk(jwk.with_usages(key.usages)))
        }
        (KeyMaterial::EcPrivate(_), KeyFormat::Raw) => {
            Err(invalid_access("Raw export of elliptic curve keys is only allowed for public keys."))
        }
        (KeyMaterial::EcPrivate(_), _) => Err(invalid_access("Asymmetric spki export requires a public key.")),
        (_, _) => Err(invalid_access("Asymmetric pkcs8 export requires a private key.")),
    }
}

fn jwk_of(curve: NamedCurve, public: &EcPublicKey, scalar: Option<&[u8]>) -> JsonWebKey {
    let (x, y) = public.coordinates();
    JsonWebKey {
        kty: Some("EC".into()),
        crv: Some(curve.as_str().into()),
        x: Some(encode_member(&x)),
        y: Some(encode_member(&y)),
        d: scalar.map(encode_member),
        ..JsonWebKey::default()
    }
}

/// The message hash as ECDSA consumes it: cut to the field size (the leftmost bits, as bits2int
/// takes them for these curves) or left-padded with zeros to it (the same integer).
fn prehash(curve: NamedCurve, hash: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    let hashed = digest(hash, data);
    let size = curve.field_bytes();
    if hashed.len() >= size {
        hashed[..size].to_vec()
    } else {
        let mut padded = vec![0u8; size - hashed.len()];
        padded.extend_from_slice(&hashed);
        padded
    }
}

pub(crate) fn sign(key: &CryptoKey, hash: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let KeyMaterial::EcPrivate(secret) = &key.material else {
        return Err(invalid_access("Asymmetric signing requires a private key."));
    };
    let signature = match &**secret {
        EcPrivateKey::P256(secret) => p256_functions::sign(secret, &prehash(NamedCurve::P256, hash, data)),
        EcPrivateKey::P384(secret) => p384_functions::sign(secret, &prehash(NamedCurve::P384, hash, data)),
    };
    signature.ok_or_else(|| operation("ECDSA signing failed."))
}

/// A signature of the wrong length, or with `r` or `s` out of range, is simply not valid.
pub(crate) fn verify(key: &CryptoKey, hash: HashAlgorithm, signature: &[u8], data: &[u8]) -> Result<bool, CryptoError> {
    let KeyMaterial::EcPublic(public) = &key.material else {
        return Err(invalid_access("Asymmetric verification requires a public key."));
    };
    Ok(match &**public {
        EcPublicKey::P256(public) => p256_functions::verify(public, &prehash(NamedCurve::P256, hash, data), signature),
        EcPublicKey::P384(public) => p384_functions::verify(public, &prehash(NamedCurve::P384, hash, data), signature),
    })
}

pub(crate) fn derive_bits(key: &CryptoKey, peer: &CryptoKey, length: Option<u32>) -> Result<Vec<u8>, CryptoError> {
    let KeyMaterial::EcPrivate(secret) = &key.material else {
        return Err(invalid_access("The deriveBits operation is only valid for a private key."));
    };
    if peer.key_type != KeyType::Public {
        return Err(invalid_access(format!(
            "The provided key has type \"{}\", not \"public\".",
            peer.key_type.as_str()
        )));
    }
    if peer.algorithm.algorithm() != AlgorithmName::Ecdh {
        return Err(invalid_access(format!(
            "An ECDH private key cannot derive bits with a peer {} public key.",
            peer.algorithm.name()
        )));
    }
    let KeyMaterial::EcPublic(peer_public) = &peer.material else {
        return Err(invalid_access("The peer key is not an EC public key."));
    };
    let shared = match (&**secret, &**peer_public) {
        (EcPrivateKey::P256(secret), EcPublicKey::P256(public)) => p256_functions::diffie_hellman(secret, public),
        (EcPrivateKey::P384(secret), EcPublicKey::P384(public)) => p384_functions::diffie_hellman(secret, public),
        _ => {
            return Err(invalid_access(format!(
                "The private key uses curve \"{}\" but the public key uses \"{}\".",
                key.algorithm.named_curve().map(NamedCurve::as_str).unwrap_or_default(),
                peer.algorithm.named_curve().map(NamedCurve::as_str).unwrap_or_default()
            )));
        }
    };
    truncate_secret(&shared, length)
}

/// The first `length` bits of a shared secret (all of it when `length` is absent), with the bits
/// past `length` in the last byte cleared, as workerd does.
pub(crate) fn truncate_secret(shared: &[u8], length: Option<u32>) -> Result<Vec<u8>, CryptoError> {
    let available_bits = shared.len() as u64 * 8;
    let length = length.map_or(available_bits, u64::from);
    if length > available_bits {
        return Err(operation(format!(
            "Derived key length ({length} bits) is too long (should be at most {available_bits} bits)."
        )));
    }
    let bytes = length.div_ceil(8) as usize;
    let mut output = shared.get(..bytes).unwrap_or(shared).to_vec();
    let spare_bits = (bytes as u64 * 8 - length) as u32;
    if spare_bits > 0
        && let Some(last) = output.last_mut()
    {
        *last &= 0xffu8 << spare_bits;
    }
    Ok(output)
}
