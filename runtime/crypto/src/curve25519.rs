//! Ed25519 signatures (ed25519-dalek) and X25519 key agreement (x25519-dalek), with raw, spki,
//! pkcs8 (RFC 8410 structures, through the pkcs8/spki/der crates) and jwk (RFC 8037 "OKP") keys.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use pkcs8::der::asn1::{BitStringRef, OctetString, OctetStringRef};
use pkcs8::der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, ObjectIdentifier, PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use rand_core::TryCryptoRng;
use zeroize::Zeroizing;

use crate::algorithm::{AlgorithmName, KeyFormat};
use crate::ec::truncate_secret;
use crate::error::{CryptoError, data, invalid_access, not_supported, operation, random_source_failed, type_error};
use crate::jwk::{JsonWebKey, decode_member, encode_member};
use crate::key::{CryptoKey, CryptoKeyPair, ExportedKey, KeyAlgorithm, KeyData, KeyMaterial, KeyType};
use crate::usage::{KeyUsage, KeyUsages};

/// id-Ed25519 (RFC 8410 section 3).
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-X25519 (RFC 8410 section 3).
const X25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");

const KEY_BYTES: usize = 32;
const SIGNATURE_BYTES: usize = 64;

fn oid(algorithm: AlgorithmName) -> ObjectIdentifier {
    if algorithm == AlgorithmName::Ed25519 { ED25519_OID } else { X25519_OID }
}

fn key_algorithm(algorithm: AlgorithmName) -> KeyAlgorithm {
    if algorithm == AlgorithmName::Ed25519 { KeyAlgorithm::Ed25519 } else { KeyAlgorithm::X25519 }
}

fn private_usages(algorithm: AlgorithmName) -> KeyUsages {
    if algorithm == AlgorithmName::Ed25519 {
        KeyUsages::of(&[KeyUsage::Sign])
    } else {
        KeyUsages::of(&[KeyUsage::DeriveKey, KeyUsage::DeriveBits])
    }
}

fn public_usages(algorithm: AlgorithmName) -> KeyUsages {
    if algorithm == AlgorithmName::Ed25519 { KeyUsages::of(&[KeyUsage::Verify]) } else { KeyUsages::NONE }
}

/// The public key of a private scalar or seed.
fn public_of(algorithm: AlgorithmName, private: &[u8; KEY_BYTES]) -> [u8; KEY_BYTES] {
    if algorithm == AlgorithmName::Ed25519 {
        SigningKey::from_bytes(private).verifying_key().to_bytes()
    } else {
        x25519_dalek::x25519(*private, x25519_dalek::X25519_BASEPOINT_BYTES)
    }
}

fn private_key(algorithm: AlgorithmName, private: &[u8; KEY_BYTES], extractable: bool, usages: KeyUsages) -> CryptoKey {
    let material = if algorithm == AlgorithmName::Ed25519 {
        KeyMaterial::Ed25519Private(Box::new(SigningKey::from_bytes(private)))
    } else {
        KeyMaterial::X25519Private(Zeroizing::new(*private))
    };
    CryptoKey::new(KeyType::Private, extractable, key_algorithm(algorithm), usages, material)
}

fn public_key(algorithm: AlgorithmName, public: [u8; KEY_BYTES], extractable: bool, usages: KeyUsages) -> CryptoKey {
    let material = if algorithm == AlgorithmName::Ed25519 {
        KeyMaterial::Ed25519Public(public)
    } else {
        KeyMaterial::X25519Public(public)
    };
    CryptoKey::new(KeyType::Public, extractable, key_algorithm(algorithm), usages, material)
}

/// The private bytes of a private key, the public bytes of a public key.
fn private_bytes(key: &CryptoKey) -> Option<Zeroizing<[u8; KEY_BYTES]>> {
    match &key.material {
        KeyMaterial::Ed25519Private(signing) => Some(Zeroizing::new(signing.to_bytes())),
        KeyMaterial::X25519Private(scalar) => Some(scalar.clone()),
        _ => None,
    }
}

fn public_bytes(key: &CryptoKey) -> Option<[u8; KEY_BYTES]> {
    match &key.material {
        KeyMaterial::Ed25519Public(public) | KeyMaterial::X25519Public(public) => Some(*public),
        KeyMaterial::Ed25519Private(signing) => Some(signing.verifying_key().to_bytes()),
        KeyMaterial::X25519Private(scalar) => Some(public_of(AlgorithmName::X25519, scalar)),
        _ => None,
    }
}

pub(crate) fn generate<R: TryCryptoRng + ?Sized>(
    algorithm: AlgorithmName,
    extractable: bool,
    usages: KeyUsages,
    rng: &mut R,
) -> Result<CryptoKeyPair, CryptoError> {
    let usages =
        usages.require_within(private_usages(algorithm).union(public_usages(algorithm)), algorithm.as_str())?;
    let mut private = Zeroizing::new([0u8; KEY_BYTES]);
    rng.try_fill_bytes(private.as_mut()).map_err(|_| random_source_failed())?;
    let public = public_of(algorithm, &private);
    Ok(CryptoKeyPair {
        public_key: public_key(algorithm, public, true, usages.intersection(public_usages(algorithm))),
        private_key: private_key(algorithm, &private, extractable, usages.intersection(private_usages(algorithm))),
    })
}

fn exactly_key_bytes(
    bytes: &[u8],
    what: &str,
    algorithm: AlgorithmName,
) -> Result<Zeroizing<[u8; KEY_BYTES]>, CryptoError> {
    let array: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| {
        data(format!("{} {what} must be exactly 32 bytes (provided {}).", algorithm.as_str(), bytes.len()))
    })?;
    Ok(Zeroizing::new(array))
}

pub(crate) fn import(
    algorithm: AlgorithmName,
    format: KeyFormat,
    key_data: KeyData<'_>,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let invalid = |what: &str| data(format!("Invalid {} {what} input.", algorithm.as_str()));
    match (format, key_data) {
        (KeyFormat::Raw, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(public_usages(algorithm), algorithm.as_str())?;
            let public = exactly_key_bytes(bytes, "raw keys", algorithm)?;
            Ok(public_key(algorithm, *public, extractable, usages))
        }
        (KeyFormat::Spki, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(public_usages(algorithm), algorithm.as_str())?;
            let spki = SubjectPublicKeyInfoRef::from_der(bytes).map_err(|_| invalid("SPKI"))?;
            if spki.algorithm.oid != oid(algorithm) || spki.algorithm.parameters.is_some() {
                return Err(invalid("SPKI"));
            }
            let public = spki.subject_public_key.as_bytes().ok_or_else(|| invalid("SPKI"))?;
            let public = exactly_key_bytes(public, "public keys", algorithm)?;
            Ok(public_key(algorithm, *public, extractable, usages))
        }
        (KeyFormat::Pkcs8, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(private_usages(algorithm), algorithm.as_str())?;
            let info = PrivateKeyInfoRef::from_der(bytes).map_err(|_| invalid("PKCS8"))?;
            if info.algorithm.oid != oid(algorithm) || info.algorithm.parameters.is_some() {
                return Err(invalid("PKCS8"));
            }
            // RFC 8410 section 7: the private key is itself an OCTET STRING (CurvePrivateKey).
            let inner = OctetString::from_der(info.private_key.as_bytes()).map_err(|_| invalid("PKCS8"))?;
            let private = exactly_key_bytes(inner.as_bytes(), "private keys", algorithm)?;
            // A version-2 structure may carry the public key; it must be this key's.
            if let Some(public) = info.public_key
                && public.as_bytes() != Some(&public_of(algorithm, &private)[..])
            {
                return Err(data("The PKCS8 public key does not belong to its private key."));
            }
            Ok(private_key(algorithm, &private, extractable, usages))
        }
        (KeyFormat::Jwk, KeyData::Jwk(jwk)) => import_jwk(algorithm, jwk, extractable, usages),
        _ => Err(type_error("The key data does not match the import format.")),
    }
}

fn import_jwk(
    algorithm: AlgorithmName,
    jwk: &JsonWebKey,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let is_private = jwk.d.is_some();
    let allowed = if is_private { private_usages(algorithm) } else { public_usages(algorithm) };
    let usages = usages.require_within(allowed, algorithm.as_str())?;
    jwk.require_kty("OKP", algorithm.as_str())?;
    match jwk.crv.as_deref() {
        Some(crv) if crv == algorithm.as_str() => {}
        // workerd names a curve mismatch NotSupportedError.
        Some(crv) => {
            return Err(not_supported(format!(
                "Only {} is supported but \"{crv}\" was requested.",
                algorithm.as_str()
            )));
        }
        None => return Err(data(format!("Missing field \"crv\" for {} key.", algorithm.as_str()))),
    }
    if algorithm == AlgorithmName::Ed25519
        && let Some(alg) = &jwk.alg
        && alg != "EdDSA"
        && alg != "Ed25519"
    {
        return Err(data(format!("The JSON Web Key's \"alg\" \"{alg}\" does not match Ed25519.")));
    }
    jwk.check_use(if algorithm == AlgorithmName::Ed25519 { "sig" } else { "enc" }, usages)?;
    jwk.check_ext_and_key_ops(extractable, usages)?;
    let public = exactly_key_bytes(&decode_member(jwk.x.as_deref(), "x")?, "public keys", algorithm)?;
    if !is_private {
        return Ok(public_key(algorithm, *public, extractable, usages));
    }
    let private = exactly_key_bytes(&decode_member(jwk.d.as_deref(), "d")?, "private keys", algorithm)?;
    if public_of(algorithm, &private) != *public {
        return Err(data("The JSON Web Key's \"x\" does not belong to its \"d\"."));
    }
    Ok(private_key(algorithm, &private, extractable, usages))
}

pub(crate) fn export(key: &CryptoKey, format: KeyFormat) -> Result<ExportedKey, CryptoError> {
    let algorithm = key.algorithm.algorithm();
    let encoding_failed = || operation("Key export failed.");
    match (key.key_type, format) {
        (KeyType::Public, KeyFormat::Raw) => {
            Ok(ExportedKey::Bytes(public_bytes(key).ok_or_else(encoding_failed)?.to_vec()))
        }
        (KeyType::Public, KeyFormat::Spki) => {
            let public = public_bytes(key).ok_or_else(encoding_failed)?;
            let spki = SubjectPublicKeyInfoRef {
                algorithm: AlgorithmIdentifierRef { oid: oid(algorithm), parameters: None },
                subject_public_key: BitStringRef::from_bytes(&public).map_err(|_| encoding_failed())?,
            };
            Ok(ExportedKey::Bytes(spki.to_der().map_err(|_| encoding_failed())?))
        }
        (KeyType::Private, KeyFormat::Pkcs8) => {
            let private = private_bytes(key).ok_or_else(encoding_failed)?;
            let inner = Zeroizing::new(
                OctetStringRef::new(private.as_ref())
                    .and_then(|octets| octets.to_der())
                    .map_err(|_| encoding_failed())?,
            );
            let info = PrivateKeyInfoRef::new(
                AlgorithmIdentifierRef { oid: oid(algorithm), parameters: None },
                OctetStringRef::new(&inner).map_err(|_| encoding_failed())?,
            );
            Ok(ExportedKey::Bytes(info.to_der().map_err(|_| encoding_failed())?))
        }
        (_, KeyFormat::Jwk) => {
            let public = public_bytes(key).ok_or_else(encoding_failed)?;
            let private = private_bytes(key);
            let jwk = JsonWebKey {
                kty: Some("OKP".into()),
                crv: Some(algorithm.as_str().into()),
                x: Some(encode_member(&public)),
                d: private.map(|private| encode_member(private.as_ref())),
                alg: (algorithm == AlgorithmName::Ed25519).then(|| "EdDSA".into()),
                ..JsonWebKey::default()
            };
            Ok(ExportedKey::Jwk(jwk.with_usages(key.usages)))
        }
        (KeyType::Private, KeyFormat::Raw) => {
            Err(invalid_access(format!("Raw export of {} keys is only allowed for public keys.", algorithm.as_str())))
        }
        (KeyType::Private, _) => Err(invalid_access("Asymmetric spki export requires a public key.")),
        (_, _) => Err(invalid_access("Asymmetric pkcs8 export requires a private key.")),
    }
}

pub(crate) fn sign(key: &CryptoKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let KeyMaterial::Ed25519Private(signing) = &key.material else {
        return Err(invalid_access("Asymmetric signing requires a private key."));
    };
    Ok(signing.sign(data).to_bytes().to_vec())
}

/// A signature that is not 64 bytes is an `OperationError` (workerd; the spec says false). A
/// public key that is not a curve point verifies nothing.
pub(crate) fn verify(key: &CryptoKey, signature: &[u8], data: &[u8]) -> Result<bool, CryptoError> {
    let KeyMaterial::Ed25519Public(public) = &key.material else {
        return Err(invalid_access("Asymmetric verification requires a public key."));
    };
    let signature: [u8; SIGNATURE_BYTES] = signature
        .try_into()
        .map_err(|_| operation(format!("Invalid Ed25519 signature length {}.", signature.len())))?;
    let Ok(verifying) = VerifyingKey::from_bytes(public) else {
        return Ok(false);
    };
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    // RFC 8032 verification as BoringSSL (and so workerd) does it: `S` must be canonical and the
    // recomputed `R` must equal the signature's, without rejecting small-order public keys. That is
    // ed25519-dalek's `verify`, not its `verify_strict`.
    Ok(verifying.verify(data, &signature).is_ok())
}

/// X25519 agreement. An all-zero result (a small-order peer point) is an `OperationError`, as the
/// spec requires.
pub(crate) fn derive_bits(key: &CryptoKey, peer: &CryptoKey, length: Option<u32>) -> Result<Vec<u8>, CryptoError> {
    let KeyMaterial::X25519Private(scalar) = &key.material else {
        return Err(invalid_access("The deriveBits operation is only valid for a private key."));
    };
    if peer.key_type != KeyType::Public {
        return Err(invalid_access(format!(
            "The provided key has type \"{}\", not \"public\".",
            peer.key_type.as_str()
        )));
    }
    let KeyMaterial::X25519Public(peer_public) = &peer.material else {
        return Err(invalid_access(format!(
            "An X25519 private key cannot derive bits with a peer {} public key.",
            peer.algorithm.name()
        )));
    };
    let shared = Zeroizing::new(x25519_dalek::x25519(**scalar, *peer_public));
    if shared.iter().all(|byte| *byte == 0) {
        return Err(operation("Detected small order secure curve points, aborting X25519 derivation."));
    }
    truncate_secret(shared.as_ref(), length)
}
