//! RSASSA-PKCS1-v1_5, RSA-PSS and RSA-OAEP on RustCrypto's rsa crate (0.10: constant-time
//! arithmetic on crypto-bigint, which closes the Marvin timing attack of 0.9), with spki, pkcs8 and
//! jwk keys.
//!
//! Limits: moduli of 1024 to 8192 bits for imported keys (the rsa crate's own bounds; workerd
//! allows 256 to 16384, but keys under 1024 bits are breakable and larger ones cost a core too
//! long per operation), and 1024 to 4096 bits for generated ones (see
//! [`RSA_GENERATED_MODULUS_BITS_MAX`]). Generation also needs a multiple of 128 bits and a public
//! exponent of 3 or 65537; imports need an exponent of 3, 17, 37 or 65537 (both as workerd's
//! strict crypto checks).
//! Every size check runs before the number theory, so a hostile key costs no more than a valid one.

use ::rsa::pkcs1::{self, EncodeRsaPrivateKey, RsaPrivateKeyRef, RsaPublicKeyRef};
use ::rsa::pkcs8::der::Decode;
use ::rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use ::rsa::traits::PublicKeyParts;
use ::rsa::{BoxedUint, Oaep, Pkcs1v15Sign, PrivateKey, PublicKey, pss::Pss};
use rand_core::TryCryptoRng;
use zeroize::Zeroizing;

use crate::algorithm::{AlgorithmName, HashAlgorithm, KeyFormat};
use crate::digest::{digest, with_hash};
use crate::error::{CryptoError, data, invalid_access, not_supported, operation, random_source_failed, type_error};
use crate::jwk::{JsonWebKey, decode_member, encode_member};
use crate::key::{CryptoKey, CryptoKeyPair, ExportedKey, KeyAlgorithm, KeyData, KeyMaterial, KeyType};
use crate::usage::{KeyUsage, KeyUsages};

/// The smallest RSA modulus isobar accepts, in bits.
pub const RSA_MODULUS_BITS_MIN: u32 = 1024;
/// The largest RSA modulus isobar accepts, in bits.
pub const RSA_MODULUS_BITS_MAX: u32 = 8192;
/// The largest RSA modulus `generateKey` makes, in bits. Generation runs on the core without
/// yielding and a script's CPU limit cannot interrupt it: measured on the development VM
/// (examples/operation_cost.rs, release build) 2048 bits took 0.35 s, 4096 bits 7 s and 8192 bits
/// 49 s, so 8192-bit generation would stall every other tenant on the core for most of a minute.
pub const RSA_GENERATED_MODULUS_BITS_MAX: u32 = 4096;

fn private_usages(algorithm: AlgorithmName) -> KeyUsages {
    if algorithm == AlgorithmName::RsaOaep {
        KeyUsages::of(&[KeyUsage::Decrypt, KeyUsage::UnwrapKey])
    } else {
        KeyUsages::of(&[KeyUsage::Sign])
    }
}

fn public_usages(algorithm: AlgorithmName) -> KeyUsages {
    if algorithm == AlgorithmName::RsaOaep {
        KeyUsages::of(&[KeyUsage::Encrypt, KeyUsage::WrapKey])
    } else {
        KeyUsages::of(&[KeyUsage::Verify])
    }
}

/// The exponent as a number; `None` past 64 bits.
fn exponent_value(bytes: &[u8]) -> Option<u64> {
    let significant = &bytes[bytes.iter().take_while(|byte| **byte == 0).count()..];
    if significant.len() > 8 {
        return None;
    }
    Some(significant.iter().fold(0u64, |value, byte| (value << 8) | u64::from(*byte)))
}

/// The bit length of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> u64 {
    let significant = &bytes[bytes.iter().take_while(|byte| **byte == 0).count()..];
    match significant.first() {
        Some(first) => significant.len() as u64 * 8 - u64::from(first.leading_zeros()),
        None => 0,
    }
}

/// Checks an imported key's modulus and exponent before any arithmetic is done with them.
fn check_imported_parameters(modulus: &[u8], exponent: &[u8]) -> Result<(), CryptoError> {
    let bits = bit_length(modulus);
    if !(u64::from(RSA_MODULUS_BITS_MIN)..=u64::from(RSA_MODULUS_BITS_MAX)).contains(&bits) {
        return Err(operation(format!(
            "RSA keys must have a modulus of {RSA_MODULUS_BITS_MIN} to {RSA_MODULUS_BITS_MAX} bits, but this one has {bits}."
        )));
    }
    match exponent_value(exponent) {
        Some(3 | 17 | 37 | 65537) => Ok(()),
        _ => Err(operation("Imported RSA key has an invalid publicExponent (allowed: 3, 17, 37, 65537).")),
    }
}

fn key_algorithm(algorithm: AlgorithmName, hash: HashAlgorithm, public: &PublicKey) -> KeyAlgorithm {
    KeyAlgorithm::Rsa {
        algorithm,
        // The modulus in whole bytes, as workerd reports it (RSA_size * 8).
        modulus_length: (public.size() * 8) as u32,
        public_exponent: public.e_bytes().to_vec(),
        hash,
    }
}

fn private_key(
    algorithm: AlgorithmName,
    hash: HashAlgorithm,
    key: PrivateKey,
    extractable: bool,
    usages: KeyUsages,
) -> CryptoKey {
    let key_algorithm = key_algorithm(algorithm, hash, key.as_public_key());
    CryptoKey::new(KeyType::Private, extractable, key_algorithm, usages, KeyMaterial::RsaPrivate(Box::new(key)))
}

fn public_key(
    algorithm: AlgorithmName,
    hash: HashAlgorithm,
    key: PublicKey,
    extractable: bool,
    usages: KeyUsages,
) -> CryptoKey {
    let key_algorithm = key_algorithm(algorithm, hash, &key);
    CryptoKey::new(KeyType::Public, extractable, key_algorithm, usages, KeyMaterial::RsaPublic(Box::new(key)))
}

pub(crate) fn generate<R: TryCryptoRng + ?Sized>(
    algorithm: AlgorithmName,
    modulus_length: u32,
    public_exponent: &[u8],
    hash: HashAlgorithm,
    extractable: bool,
    usages: KeyUsages,
    rng: &mut R,
) -> Result<CryptoKeyPair, CryptoError> {
    let usages =
        usages.require_within(private_usages(algorithm).union(public_usages(algorithm)), algorithm.as_str())?;
    if !(RSA_MODULUS_BITS_MIN..=RSA_GENERATED_MODULUS_BITS_MAX).contains(&modulus_length)
        || !modulus_length.is_multiple_of(128)
    {
        return Err(operation(format!(
            "The modulus length must be a multiple of 128 between {RSA_MODULUS_BITS_MIN} and \
             {RSA_GENERATED_MODULUS_BITS_MAX}, but {modulus_length} was requested."
        )));
    }
    let exponent = match exponent_value(public_exponent) {
        Some(exponent @ (3 | 65537)) => exponent,
        _ => return Err(operation("The \"publicExponent\" must be either 3 or 65537.")),
    };
    let private =
        PrivateKey::new_with_exp(rng, modulus_length as usize, BoxedUint::from(exponent)).map_err(|error| {
            if error == ::rsa::Error::Rng { random_source_failed() } else { operation("RSA key generation failed.") }
        })?;
    let public = private.to_public_key();
    // The spec's publicExponent is the script's bytes, not a re-encoding.
    let with_given_exponent = |key: CryptoKey| match key.algorithm {
        KeyAlgorithm::Rsa { algorithm, modulus_length, hash, .. } => CryptoKey {
            algorithm: KeyAlgorithm::Rsa { algorithm, modulus_length, public_exponent: public_exponent.to_vec(), hash },
            ..key
        },
        _ => key,
    };
    Ok(CryptoKeyPair {
        public_key: with_given_exponent(public_key(
            algorithm,
            hash,
            public,
            true,
            usages.intersection(public_usages(algorithm)),
        )),
        private_key: with_given_exponent(private_key(
            algorithm,
            hash,
            private,
            extractable,
            usages.intersection(private_usages(algorithm)),
        )),
    })
}

pub(crate) fn import(
    algorithm: AlgorithmName,
    hash: HashAlgorithm,
    format: KeyFormat,
    key_data: KeyData<'_>,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    match (format, key_data) {
        (KeyFormat::Spki, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(public_usages(algorithm), algorithm.as_str())?;
            let public = public_from_spki(bytes)?;
            Ok(public_key(algorithm, hash, public, extractable, usages))
        }
        (KeyFormat::Pkcs8, KeyData::Bytes(bytes)) => {
            let usages = usages.require_within(private_usages(algorithm), algorithm.as_str())?;
            let private = private_from_pkcs8(bytes)?;
            Ok(private_key(algorithm, hash, private, extractable, usages))
        }
        (KeyFormat::Jwk, KeyData::Jwk(jwk)) => import_jwk(algorithm, hash, jwk, extractable, usages),
        (KeyFormat::Raw, _) => {
            Err(not_supported(format!("{} keys cannot be imported in \"raw\" format.", algorithm.as_str())))
        }
        _ => Err(type_error("The key data does not match the import format.")),
    }
}

fn public_from_spki(bytes: &[u8]) -> Result<PublicKey, CryptoError> {
    let invalid = || data("Invalid SPKI input.");
    let spki = SubjectPublicKeyInfoRef::from_der(bytes).map_err(|_| invalid())?;
    // WebCrypto imports only rsaEncryption keys (not id-RSASSA-PSS ones).
    if spki.algorithm.oid != pkcs1::ALGORITHM_OID {
        return Err(invalid());
    }
    let pkcs1 =
        RsaPublicKeyRef::from_der(spki.subject_public_key.as_bytes().ok_or_else(invalid)?).map_err(|_| invalid())?;
    check_imported_parameters(pkcs1.modulus.as_bytes(), pkcs1.public_exponent.as_bytes())?;
    PublicKey::try_from(spki).map_err(|_| invalid())
}

fn private_from_pkcs8(bytes: &[u8]) -> Result<PrivateKey, CryptoError> {
    let invalid = || data("Invalid PKCS8 input.");
    let info = PrivateKeyInfoRef::from_der(bytes).map_err(|_| invalid())?;
    if info.algorithm.oid != pkcs1::ALGORITHM_OID {
        return Err(invalid());
    }
    let pkcs1 = RsaPrivateKeyRef::from_der(info.private_key.as_bytes()).map_err(|_| invalid())?;
    if pkcs1.other_prime_infos.is_some() {
        return Err(not_supported("Multi-prime RSA keys are not supported."));
    }
    check_imported_parameters(pkcs1.modulus.as_bytes(), pkcs1.public_exponent.as_bytes())?;
    PrivateKey::try_from(info).map_err(|_| invalid())
}

/// The JWK `alg` of each family and hash (RFC 7518 section 3.1 and 4.1).
fn jwk_alg(algorithm: AlgorithmName, hash: HashAlgorithm) -> Option<String> {
    let suffix = hash.jwk_suffix()?;
    Some(match algorithm {
        AlgorithmName::RsassaPkcs1V15 => format!("RS{suffix}"),
        AlgorithmName::RsaPss => format!("PS{suffix}"),
        _ if hash == HashAlgorithm::Sha1 => "RSA-OAEP".to_owned(),
        _ => format!("RSA-OAEP-{suffix}"),
    })
}

fn is_known_rsa_alg(alg: &str) -> bool {
    [AlgorithmName::RsassaPkcs1V15, AlgorithmName::RsaPss, AlgorithmName::RsaOaep]
        .into_iter()
        .flat_map(|family| {
            [HashAlgorithm::Sha1, HashAlgorithm::Sha256, HashAlgorithm::Sha384, HashAlgorithm::Sha512]
                .map(move |hash| jwk_alg(family, hash))
        })
        .any(|known| known.as_deref() == Some(alg))
}

/// A JWK integer as a `BoxedUint` of `bits_precision` bits; `DataError` if it does not fit.
fn jwk_uint(bytes: &[u8], bits_precision: u32, member: &str) -> Result<BoxedUint, CryptoError> {
    BoxedUint::from_be_slice(bytes, bits_precision)
        .map_err(|_| data(format!("The JSON Web Key's \"{member}\" is larger than the modulus.")))
}

fn trimmed(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.iter().take_while(|byte| **byte == 0).count()..]
}

fn import_jwk(
    algorithm: AlgorithmName,
    hash: HashAlgorithm,
    jwk: &JsonWebKey,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let is_private = jwk.d.is_some();
    let allowed = if is_private { private_usages(algorithm) } else { public_usages(algorithm) };
    let usages = usages.require_within(allowed, algorithm.as_str())?;
    jwk.require_kty("RSA", algorithm.as_str())?;
    if let Some(alg) = &jwk.alg {
        if !is_known_rsa_alg(alg) {
            return Err(not_supported(format!(
                "Unrecognized or unimplemented algorithm \"{alg}\" in the JSON Web Key's \"alg\"."
            )));
        }
        if jwk_alg(algorithm, hash).as_deref() != Some(alg.as_str()) {
            return Err(data(format!(
                "The JSON Web Key's \"alg\" \"{alg}\" does not match {} with {}.",
                algorithm.as_str(),
                hash.as_str()
            )));
        }
    }
    jwk.check_use(if algorithm == AlgorithmName::RsaOaep { "enc" } else { "sig" }, usages)?;
    jwk.check_ext_and_key_ops(extractable, usages)?;

    let n = decode_member(jwk.n.as_deref(), "n")?;
    let e = decode_member(jwk.e.as_deref(), "e")?;
    check_imported_parameters(&n, &e)?;
    let n_bits = (trimmed(&n).len() * 8) as u32;
    let modulus = jwk_uint(trimmed(&n), n_bits, "n")?;
    let exponent = jwk_uint(trimmed(&e), 64, "e")?;
    if !is_private {
        let public = PublicKey::new_with_size_limits(
            modulus,
            exponent,
            RSA_MODULUS_BITS_MIN as usize..=RSA_MODULUS_BITS_MAX as usize,
        )
        .map_err(|_| data("Invalid RSA public key in JSON Web Key."))?;
        return Ok(public_key(algorithm, hash, public, extractable, usages));
    }

    if jwk.oth.is_some() {
        return Err(not_supported("Multi-prime RSA keys are not supported."));
    }
    let d = decode_member(jwk.d.as_deref(), "d")?;
    let crt_members = [&jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi];
    let crt_present = crt_members.iter().filter(|member| member.is_some()).count();
    if crt_present != 0 && crt_present != crt_members.len() {
        return Err(data(
            "Invalid RSA private key in JSON Web Key; if one of \"p\", \"q\", \"dp\", \"dq\" and \"qi\" is \
             present, all must be.",
        ));
    }
    let primes = if crt_present == 0 {
        Vec::new()
    } else {
        let p = decode_member(jwk.p.as_deref(), "p")?;
        let q = decode_member(jwk.q.as_deref(), "q")?;
        vec![jwk_uint(trimmed(&p), n_bits, "p")?, jwk_uint(trimmed(&q), n_bits, "q")?]
    };
    let private = PrivateKey::from_components(modulus, exponent, jwk_uint(trimmed(&d), n_bits, "d")?, primes)
        .map_err(|_| data("Invalid RSA private key in JSON Web Key."))?;
    if crt_present != 0 {
        // The crate recomputes the CRT values; the JWK's must agree with them.
        let encoded = private.to_pkcs1_der().map_err(|_| data("Invalid RSA private key in JSON Web Key."))?;
        let components = RsaPrivateKeyRef::from_der(encoded.as_bytes())
            .map_err(|_| data("Invalid RSA private key in JSON Web Key."))?;
        for (member, name, expected) in [
            (&jwk.dp, "dp", components.exponent1.as_bytes()),
            (&jwk.dq, "dq", components.exponent2.as_bytes()),
            (&jwk.qi, "qi", components.coefficient.as_bytes()),
        ] {
            let given = decode_member(member.as_deref(), name)?;
            if trimmed(&given) != expected {
                return Err(data(format!("The JSON Web Key's \"{name}\" does not match its other members.")));
            }
        }
    }
    Ok(private_key(algorithm, hash, private, extractable, usages))
}

pub(crate) fn export(key: &CryptoKey, format: KeyFormat) -> Result<ExportedKey, CryptoError> {
    let KeyAlgorithm::Rsa { algorithm, hash, .. } = key.algorithm else {
        return Err(operation("Not an RSA key."));
    };
    match (&key.material, format) {
        (KeyMaterial::RsaPublic(public), KeyFormat::Spki) => public
            .to_public_key_der()
            .map(|document| ExportedKey::Bytes(document.as_bytes().to_vec()))
            .map_err(|_| operation("Public key export failed.")),
        (KeyMaterial::RsaPrivate(private), KeyFormat::Pkcs8) => private
            .to_pkcs8_der()
            .map(|document| ExportedKey::Bytes(document.as_bytes().to_vec()))
            .map_err(|_| operation("Private key export failed.")),
        (material, KeyFormat::Jwk) => {
            let alg = jwk_alg(algorithm, hash).ok_or_else(|| {
                not_supported(format!("JWK export is not supported for hash algorithm \"{}\".", hash.as_str()))
            })?;
            let mut jwk = JsonWebKey { kty: Some("RSA".into()), alg: Some(alg), ..JsonWebKey::default() };
            match material {
                KeyMaterial::RsaPublic(public) => {
                    jwk.n = Some(encode_member(&public.n_bytes()));
                    jwk.e = Some(encode_member(&public.e_bytes()));
                }
                KeyMaterial::RsaPrivate(private) => {
                    let encoded = private.to_pkcs1_der().map_err(|_| operation("Private key export failed."))?;
                    let components = RsaPrivateKeyRef::from_der(encoded.as_bytes())
                        .map_err(|_| operation("Private key export failed."))?;
                    jwk.n = Some(encode_member(components.modulus.as_bytes()));
                    jwk.e = Some(encode_member(components.public_exponent.as_bytes()));
                    jwk.d = Some(encode_member(components.private_exponent.as_bytes()));
                    jwk.p = Some(encode_member(components.prime1.as_bytes()));
                    jwk.q = Some(encode_member(components.prime2.as_bytes()));
                    jwk.dp = Some(encode_member(components.exponent1.as_bytes()));
                    jwk.dq = Some(encode_member(components.exponent2.as_bytes()));
                    jwk.qi = Some(encode_member(components.coefficient.as_bytes()));
                }
                _ => return Err(operation("Not an RSA key.")),
            }
            Ok(ExportedKey::Jwk(jwk.with_usages(key.usages)))
        }
        // workerd throws InvalidAccessError for raw RSA export (the spec: NotSupportedError).
        (_, KeyFormat::Raw) => {
            Err(invalid_access(format!("Cannot export \"{}\" in \"raw\" format.", algorithm.as_str())))
        }
        (KeyMaterial::RsaPrivate(_), _) => Err(invalid_access("Asymmetric spki export requires a public key.")),
        (_, _) => Err(invalid_access("Asymmetric pkcs8 export requires a private key.")),
    }
}

fn key_hash(key: &CryptoKey) -> Result<HashAlgorithm, CryptoError> {
    key.algorithm.hash().ok_or_else(|| operation("Not an RSA key."))
}

/// RSASSA-PKCS1-v1_5 (`salt_length == None`) or RSA-PSS signing with the key's hash.
pub(crate) fn sign<R: TryCryptoRng + ?Sized>(
    key: &CryptoKey,
    salt_length: Option<u32>,
    data: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    let KeyMaterial::RsaPrivate(private) = &key.material else {
        return Err(invalid_access("Asymmetric signing requires a private key."));
    };
    let hash = key_hash(key)?;
    let hashed = digest(hash, data);
    let modulus_bytes = private.as_public_key().size();
    let signed = match salt_length {
        None => with_hash!(hash, Hash => private.sign_with_rng(rng, Pkcs1v15Sign::new::<Hash>(), &hashed)),
        Some(salt_length) => {
            let salt_length = salt_length as usize;
            if salt_length + hash.output_bytes() + 2 > modulus_bytes {
                return Err(operation("The key is too small for signing with this digest and salt length."));
            }
            with_hash!(hash, Hash => private.sign_with_rng(rng, Pss::<Hash>::new_with_salt(salt_length), &hashed))
        }
    };
    signed.map_err(
        |error| {
            if error == ::rsa::Error::Rng { random_source_failed() } else { operation("RSA signing failed.") }
        },
    )
}

/// Verification: any malformed or mismatched signature is simply not valid.
pub(crate) fn verify(
    key: &CryptoKey,
    salt_length: Option<u32>,
    signature: &[u8],
    data: &[u8],
) -> Result<bool, CryptoError> {
    let KeyMaterial::RsaPublic(public) = &key.material else {
        return Err(invalid_access("Asymmetric verification requires a public key."));
    };
    let hash = key_hash(key)?;
    let hashed = digest(hash, data);
    let verified = match salt_length {
        None => with_hash!(hash, Hash => public.verify(Pkcs1v15Sign::new::<Hash>(), &hashed, signature)),
        Some(salt_length) => {
            with_hash!(hash, Hash => public.verify(Pss::<Hash>::new_with_salt(salt_length as usize), &hashed, signature))
        }
    };
    Ok(verified.is_ok())
}

pub(crate) fn oaep_encrypt<R: TryCryptoRng + ?Sized>(
    key: &CryptoKey,
    label: Option<&[u8]>,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    let KeyMaterial::RsaPublic(public) = &key.material else {
        return Err(invalid_access("Encryption/key wrapping only works with public keys."));
    };
    let hash = key_hash(key)?;
    let encrypted = with_hash!(hash, Hash => match label {
        Some(label) => public.encrypt(rng, Oaep::<Hash>::new_with_label(label.to_vec()), plaintext),
        None => public.encrypt(rng, Oaep::<Hash>::new(), plaintext),
    });
    encrypted.map_err(|error| match error {
        ::rsa::Error::Rng => random_source_failed(),
        ::rsa::Error::MessageTooLong => operation("The plaintext is too long for RSA-OAEP with this key and hash."),
        _ => operation("RSA-OAEP encryption failed."),
    })
}

pub(crate) fn oaep_decrypt<R: TryCryptoRng + ?Sized>(
    key: &CryptoKey,
    label: Option<&[u8]>,
    ciphertext: &[u8],
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let KeyMaterial::RsaPrivate(private) = &key.material else {
        return Err(invalid_access("Decryption/key unwrapping only works with private keys."));
    };
    let hash = key_hash(key)?;
    let decrypted = with_hash!(hash, Hash => match label {
        Some(label) => private.decrypt_blinded(rng, Oaep::<Hash>::new_with_label(label.to_vec()), ciphertext),
        None => private.decrypt_blinded(rng, Oaep::<Hash>::new(), ciphertext),
    });
    decrypted.map(Zeroizing::new).map_err(|_| operation("RSA-OAEP decryption failed."))
}
