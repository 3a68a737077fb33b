//! Algorithm identifiers and their normalized parameters: the Rust side of the spec's "normalize
//! an algorithm" step. The glue copies the members of the script's algorithm dictionary into an
//! [`AlgorithmDictionary`] (it reads values, it decides nothing); the `from_dictionary`
//! constructors here pick the algorithm registered for the operation (unknown name:
//! `NotSupportedError`) and require its members (missing member: `TypeError`).
//!
//! Names match case-insensitively and come back in the spec's casing; named curves also match
//! case-insensitively, as in workerd.

use crate::error::{CryptoError, not_supported, type_error};
use crate::key::CryptoKey;

/// A registered WebCrypto algorithm (digests are [`HashAlgorithm`]s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlgorithmName {
    AesCtr,
    AesCbc,
    AesGcm,
    AesKw,
    Hmac,
    Pbkdf2,
    Hkdf,
    RsassaPkcs1V15,
    RsaPss,
    RsaOaep,
    Ecdsa,
    Ecdh,
    Ed25519,
    X25519,
}

impl AlgorithmName {
    const ALL: [AlgorithmName; 14] = [
        AlgorithmName::AesCtr,
        AlgorithmName::AesCbc,
        AlgorithmName::AesGcm,
        AlgorithmName::AesKw,
        AlgorithmName::Hmac,
        AlgorithmName::Pbkdf2,
        AlgorithmName::Hkdf,
        AlgorithmName::RsassaPkcs1V15,
        AlgorithmName::RsaPss,
        AlgorithmName::RsaOaep,
        AlgorithmName::Ecdsa,
        AlgorithmName::Ecdh,
        AlgorithmName::Ed25519,
        AlgorithmName::X25519,
    ];

    /// The name in the spec's casing, as `CryptoKey.algorithm.name` returns it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmName::AesCtr => "AES-CTR",
            AlgorithmName::AesCbc => "AES-CBC",
            AlgorithmName::AesGcm => "AES-GCM",
            AlgorithmName::AesKw => "AES-KW",
            AlgorithmName::Hmac => "HMAC",
            AlgorithmName::Pbkdf2 => "PBKDF2",
            AlgorithmName::Hkdf => "HKDF",
            AlgorithmName::RsassaPkcs1V15 => "RSASSA-PKCS1-v1_5",
            AlgorithmName::RsaPss => "RSA-PSS",
            AlgorithmName::RsaOaep => "RSA-OAEP",
            AlgorithmName::Ecdsa => "ECDSA",
            AlgorithmName::Ecdh => "ECDH",
            AlgorithmName::Ed25519 => "Ed25519",
            AlgorithmName::X25519 => "X25519",
        }
    }

    /// Looks a name up case-insensitively; `None` if no algorithm has it.
    pub fn from_name(name: &str) -> Option<AlgorithmName> {
        AlgorithmName::ALL.into_iter().find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(name))
    }

    pub(crate) fn is_aes(self) -> bool {
        matches!(self, AlgorithmName::AesCtr | AlgorithmName::AesCbc | AlgorithmName::AesGcm | AlgorithmName::AesKw)
    }

    pub(crate) fn is_rsa(self) -> bool {
        matches!(self, AlgorithmName::RsassaPkcs1V15 | AlgorithmName::RsaPss | AlgorithmName::RsaOaep)
    }
}

/// A digest algorithm. MD5 is not in WebCrypto but Workers accept it everywhere a hash is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    Md5,
}

impl HashAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha384 => "SHA-384",
            HashAlgorithm::Sha512 => "SHA-512",
            HashAlgorithm::Md5 => "MD5",
        }
    }

    /// Looks a digest name up case-insensitively; an unknown one is a `NotSupportedError`.
    pub fn from_name(name: &str) -> Result<HashAlgorithm, CryptoError> {
        [HashAlgorithm::Sha1, HashAlgorithm::Sha256, HashAlgorithm::Sha384, HashAlgorithm::Sha512, HashAlgorithm::Md5]
            .into_iter()
            .find(|hash| hash.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| not_supported(format!("Unrecognized or unimplemented digest algorithm \"{name}\".")))
    }

    /// The digest's output length in bytes.
    pub fn output_bytes(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
        }
    }

    /// The digest's block length in bits: the default HMAC key length.
    pub fn block_bits(self) -> u32 {
        match self {
            HashAlgorithm::Sha1 | HashAlgorithm::Sha256 | HashAlgorithm::Md5 => 512,
            HashAlgorithm::Sha384 | HashAlgorithm::Sha512 => 1024,
        }
    }

    /// The suffix JWK `alg` values use ("256" in "HS256"); MD5 has none.
    pub(crate) fn jwk_suffix(self) -> Option<&'static str> {
        match self {
            HashAlgorithm::Sha1 => Some("1"),
            HashAlgorithm::Sha256 => Some("256"),
            HashAlgorithm::Sha384 => Some("384"),
            HashAlgorithm::Sha512 => Some("512"),
            HashAlgorithm::Md5 => None,
        }
    }
}

/// An elliptic curve for ECDSA and ECDH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedCurve {
    P256,
    P384,
}

impl NamedCurve {
    pub fn as_str(self) -> &'static str {
        match self {
            NamedCurve::P256 => "P-256",
            NamedCurve::P384 => "P-384",
        }
    }

    /// Looks a curve up case-insensitively (as workerd does); an unknown one, including P-521
    /// which isobar does not implement, is a `NotSupportedError`.
    pub fn from_name(name: &str) -> Result<NamedCurve, CryptoError> {
        [NamedCurve::P256, NamedCurve::P384]
            .into_iter()
            .find(|curve| curve.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| not_supported(format!("Unrecognized or unimplemented EC curve \"{name}\" requested.")))
    }

    /// The size of a field element (and of `r` and `s` in a signature) in bytes.
    pub fn field_bytes(self) -> usize {
        match self {
            NamedCurve::P256 => 32,
            NamedCurve::P384 => 48,
        }
    }
}

/// A key import/export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFormat {
    Raw,
    Pkcs8,
    Spki,
    Jwk,
}

impl KeyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFormat::Raw => "raw",
            KeyFormat::Pkcs8 => "pkcs8",
            KeyFormat::Spki => "spki",
            KeyFormat::Jwk => "jwk",
        }
    }

    /// Parses a format name. An unknown one is a `NotSupportedError`, as in workerd.
    pub fn from_name(name: &str) -> Result<KeyFormat, CryptoError> {
        [KeyFormat::Raw, KeyFormat::Pkcs8, KeyFormat::Spki, KeyFormat::Jwk]
            .into_iter()
            .find(|format| format.as_str() == name)
            .ok_or_else(|| not_supported(format!("Unrecognized key format \"{name}\".")))
    }
}

/// The members of a script's algorithm dictionary, copied by the glue. A string algorithm
/// identifier is a dictionary with only `name` ([`AlgorithmDictionary::named`]). `hash` holds the
/// hash's name whether the script gave a string or `{ name }`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlgorithmDictionary<'a> {
    pub name: &'a str,
    pub hash: Option<&'a str>,
    pub length: Option<u32>,
    pub named_curve: Option<&'a str>,
    pub modulus_length: Option<u32>,
    pub public_exponent: Option<&'a [u8]>,
    pub iv: Option<&'a [u8]>,
    pub additional_data: Option<&'a [u8]>,
    pub tag_length: Option<u32>,
    pub counter: Option<&'a [u8]>,
    pub label: Option<&'a [u8]>,
    pub salt_length: Option<u32>,
    pub salt: Option<&'a [u8]>,
    pub info: Option<&'a [u8]>,
    pub iterations: Option<u32>,
    pub public: Option<&'a CryptoKey>,
}

impl<'a> AlgorithmDictionary<'a> {
    /// The dictionary a bare algorithm name stands for.
    pub fn named(name: &'a str) -> AlgorithmDictionary<'a> {
        AlgorithmDictionary { name, ..AlgorithmDictionary::default() }
    }

    /// The algorithm if it is registered for `operation` (one of the `supported` names).
    fn algorithm_for(&self, operation: &str, supported: &[AlgorithmName]) -> Result<AlgorithmName, CryptoError> {
        AlgorithmName::from_name(self.name).filter(|algorithm| supported.contains(algorithm)).ok_or_else(|| {
            not_supported(format!("Unrecognized or unimplemented algorithm \"{}\" for {operation}.", self.name))
        })
    }

    fn require<T>(&self, member: Option<T>, member_name: &str) -> Result<T, CryptoError> {
        member.ok_or_else(|| type_error(format!("Missing field \"{member_name}\" in \"algorithm\".")))
    }

    fn require_hash(&self) -> Result<HashAlgorithm, CryptoError> {
        HashAlgorithm::from_name(self.require(self.hash, "hash")?)
    }

    fn require_curve(&self) -> Result<NamedCurve, CryptoError> {
        NamedCurve::from_name(self.require(self.named_curve, "namedCurve")?)
    }
}

/// Parameters of `encrypt`, `decrypt`, `wrapKey` and `unwrapKey`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptParams<'a> {
    RsaOaep {
        label: Option<&'a [u8]>,
    },
    AesCtr {
        counter: &'a [u8],
        /// The number of rightmost counter bits that increment.
        length: u32,
    },
    AesCbc {
        iv: &'a [u8],
    },
    AesGcm {
        iv: &'a [u8],
        additional_data: Option<&'a [u8]>,
        /// The tag length in bits; 128 when absent.
        tag_length: Option<u32>,
    },
    /// AES key wrap: registered only for `wrapKey`/`unwrapKey`.
    AesKw,
}

impl<'a> EncryptParams<'a> {
    /// Normalizes for `encrypt`/`decrypt`.
    pub fn for_encrypt(dictionary: &AlgorithmDictionary<'a>) -> Result<EncryptParams<'a>, CryptoError> {
        let algorithm = dictionary.algorithm_for(
            "encrypt/decrypt",
            &[AlgorithmName::RsaOaep, AlgorithmName::AesCtr, AlgorithmName::AesCbc, AlgorithmName::AesGcm],
        )?;
        EncryptParams::with_members(algorithm, dictionary)
    }

    /// Normalizes for `wrapKey`/`unwrapKey`: AES-KW, or any algorithm that encrypts.
    pub fn for_wrap(dictionary: &AlgorithmDictionary<'a>) -> Result<EncryptParams<'a>, CryptoError> {
        let algorithm = dictionary.algorithm_for(
            "wrapKey/unwrapKey",
            &[
                AlgorithmName::AesKw,
                AlgorithmName::RsaOaep,
                AlgorithmName::AesCtr,
                AlgorithmName::AesCbc,
                AlgorithmName::AesGcm,
            ],
        )?;
        EncryptParams::with_members(algorithm, dictionary)
    }

    fn with_members(algorithm: AlgorithmName, dictionary: &AlgorithmDictionary<'a>) -> Result<Self, CryptoError> {
        Ok(match algorithm {
            AlgorithmName::RsaOaep => EncryptParams::RsaOaep { label: dictionary.label },
            AlgorithmName::AesCtr => EncryptParams::AesCtr {
                counter: dictionary.require(dictionary.counter, "counter")?,
                length: dictionary.require(dictionary.length, "length")?,
            },
            AlgorithmName::AesCbc => EncryptParams::AesCbc { iv: dictionary.require(dictionary.iv, "iv")? },
            AlgorithmName::AesGcm => EncryptParams::AesGcm {
                iv: dictionary.require(dictionary.iv, "iv")?,
                additional_data: dictionary.additional_data,
                tag_length: dictionary.tag_length,
            },
            _ => EncryptParams::AesKw,
        })
    }

    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            EncryptParams::RsaOaep { .. } => AlgorithmName::RsaOaep,
            EncryptParams::AesCtr { .. } => AlgorithmName::AesCtr,
            EncryptParams::AesCbc { .. } => AlgorithmName::AesCbc,
            EncryptParams::AesGcm { .. } => AlgorithmName::AesGcm,
            EncryptParams::AesKw => AlgorithmName::AesKw,
        }
    }
}

/// Parameters of `sign` and `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignParams {
    Hmac,
    RsassaPkcs1V15,
    RsaPss {
        /// The salt length in bytes.
        salt_length: u32,
    },
    /// ECDSA names its hash at call time, not on the key.
    Ecdsa {
        hash: HashAlgorithm,
    },
    Ed25519,
}

impl SignParams {
    pub fn from_dictionary(dictionary: &AlgorithmDictionary<'_>) -> Result<SignParams, CryptoError> {
        let algorithm = dictionary.algorithm_for(
            "sign/verify",
            &[
                AlgorithmName::Hmac,
                AlgorithmName::RsassaPkcs1V15,
                AlgorithmName::RsaPss,
                AlgorithmName::Ecdsa,
                AlgorithmName::Ed25519,
            ],
        )?;
        Ok(match algorithm {
            AlgorithmName::Hmac => SignParams::Hmac,
            AlgorithmName::RsassaPkcs1V15 => SignParams::RsassaPkcs1V15,
            AlgorithmName::RsaPss => {
                SignParams::RsaPss { salt_length: dictionary.require(dictionary.salt_length, "saltLength")? }
            }
            AlgorithmName::Ecdsa => SignParams::Ecdsa { hash: dictionary.require_hash()? },
            _ => SignParams::Ed25519,
        })
    }

    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            SignParams::Hmac => AlgorithmName::Hmac,
            SignParams::RsassaPkcs1V15 => AlgorithmName::RsassaPkcs1V15,
            SignParams::RsaPss { .. } => AlgorithmName::RsaPss,
            SignParams::Ecdsa { .. } => AlgorithmName::Ecdsa,
            SignParams::Ed25519 => AlgorithmName::Ed25519,
        }
    }
}

/// Parameters of `deriveBits` and `deriveKey`.
#[derive(Debug, Clone, Copy)]
pub enum DeriveParams<'a> {
    Ecdh { public: &'a CryptoKey },
    X25519 { public: &'a CryptoKey },
    Hkdf { hash: HashAlgorithm, salt: &'a [u8], info: &'a [u8] },
    Pbkdf2 { hash: HashAlgorithm, salt: &'a [u8], iterations: u32 },
}

impl<'a> DeriveParams<'a> {
    pub fn from_dictionary(dictionary: &AlgorithmDictionary<'a>) -> Result<DeriveParams<'a>, CryptoError> {
        let algorithm = dictionary.algorithm_for(
            "deriveBits/deriveKey",
            &[AlgorithmName::Ecdh, AlgorithmName::X25519, AlgorithmName::Hkdf, AlgorithmName::Pbkdf2],
        )?;
        Ok(match algorithm {
            AlgorithmName::Ecdh => DeriveParams::Ecdh { public: dictionary.require(dictionary.public, "public")? },
            AlgorithmName::X25519 => DeriveParams::X25519 { public: dictionary.require(dictionary.public, "public")? },
            AlgorithmName::Hkdf => DeriveParams::Hkdf {
                hash: dictionary.require_hash()?,
                salt: dictionary.require(dictionary.salt, "salt")?,
                info: dictionary.require(dictionary.info, "info")?,
            },
            _ => DeriveParams::Pbkdf2 {
                hash: dictionary.require_hash()?,
                salt: dictionary.require(dictionary.salt, "salt")?,
                iterations: dictionary.require(dictionary.iterations, "iterations")?,
            },
        })
    }

    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            DeriveParams::Ecdh { .. } => AlgorithmName::Ecdh,
            DeriveParams::X25519 { .. } => AlgorithmName::X25519,
            DeriveParams::Hkdf { .. } => AlgorithmName::Hkdf,
            DeriveParams::Pbkdf2 { .. } => AlgorithmName::Pbkdf2,
        }
    }
}

/// Parameters of `generateKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerateKeyParams {
    /// AES-CTR, AES-CBC, AES-GCM or AES-KW; `length` in bits.
    Aes {
        algorithm: AlgorithmName,
        length: u32,
    },
    /// `length` in bits; the hash's block length when absent.
    Hmac {
        hash: HashAlgorithm,
        length: Option<u32>,
    },
    /// RSASSA-PKCS1-v1_5, RSA-PSS or RSA-OAEP.
    Rsa {
        algorithm: AlgorithmName,
        modulus_length: u32,
        /// Big-endian, as the script's `Uint8Array` holds it.
        public_exponent: Vec<u8>,
        hash: HashAlgorithm,
    },
    /// ECDSA or ECDH.
    Ec {
        algorithm: AlgorithmName,
        named_curve: NamedCurve,
    },
    Ed25519,
    X25519,
}

impl GenerateKeyParams {
    pub fn from_dictionary(dictionary: &AlgorithmDictionary<'_>) -> Result<GenerateKeyParams, CryptoError> {
        let algorithm = dictionary.algorithm_for(
            "generateKey",
            &[
                AlgorithmName::AesCtr,
                AlgorithmName::AesCbc,
                AlgorithmName::AesGcm,
                AlgorithmName::AesKw,
                AlgorithmName::Hmac,
                AlgorithmName::RsassaPkcs1V15,
                AlgorithmName::RsaPss,
                AlgorithmName::RsaOaep,
                AlgorithmName::Ecdsa,
                AlgorithmName::Ecdh,
                AlgorithmName::Ed25519,
                AlgorithmName::X25519,
            ],
        )?;
        Ok(match algorithm {
            algorithm if algorithm.is_aes() => {
                GenerateKeyParams::Aes { algorithm, length: dictionary.require(dictionary.length, "length")? }
            }
            AlgorithmName::Hmac => {
                GenerateKeyParams::Hmac { hash: dictionary.require_hash()?, length: dictionary.length }
            }
            algorithm if algorithm.is_rsa() => GenerateKeyParams::Rsa {
                algorithm,
                modulus_length: dictionary.require(dictionary.modulus_length, "modulusLength")?,
                public_exponent: dictionary.require(dictionary.public_exponent, "publicExponent")?.to_vec(),
                hash: dictionary.require_hash()?,
            },
            AlgorithmName::Ecdsa | AlgorithmName::Ecdh => {
                GenerateKeyParams::Ec { algorithm, named_curve: dictionary.require_curve()? }
            }
            AlgorithmName::Ed25519 => GenerateKeyParams::Ed25519,
            _ => GenerateKeyParams::X25519,
        })
    }

    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            GenerateKeyParams::Aes { algorithm, .. }
            | GenerateKeyParams::Rsa { algorithm, .. }
            | GenerateKeyParams::Ec { algorithm, .. } => *algorithm,
            GenerateKeyParams::Hmac { .. } => AlgorithmName::Hmac,
            GenerateKeyParams::Ed25519 => AlgorithmName::Ed25519,
            GenerateKeyParams::X25519 => AlgorithmName::X25519,
        }
    }
}

/// Parameters of `importKey` (and of the key `unwrapKey` and `deriveKey` produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKeyParams {
    /// AES-CTR, AES-CBC, AES-GCM or AES-KW.
    Aes {
        algorithm: AlgorithmName,
    },
    /// `length` in bits; the key data's length when absent.
    Hmac {
        hash: HashAlgorithm,
        length: Option<u32>,
    },
    /// RSASSA-PKCS1-v1_5, RSA-PSS or RSA-OAEP.
    Rsa {
        algorithm: AlgorithmName,
        hash: HashAlgorithm,
    },
    /// ECDSA or ECDH.
    Ec {
        algorithm: AlgorithmName,
        named_curve: NamedCurve,
    },
    Ed25519,
    X25519,
    Pbkdf2,
    Hkdf,
}

impl ImportKeyParams {
    pub fn from_dictionary(dictionary: &AlgorithmDictionary<'_>) -> Result<ImportKeyParams, CryptoError> {
        let algorithm = AlgorithmName::from_name(dictionary.name).ok_or_else(|| {
            not_supported(format!("Unrecognized or unimplemented algorithm \"{}\" for importKey.", dictionary.name))
        })?;
        Ok(match algorithm {
            algorithm if algorithm.is_aes() => ImportKeyParams::Aes { algorithm },
            AlgorithmName::Hmac => {
                ImportKeyParams::Hmac { hash: dictionary.require_hash()?, length: dictionary.length }
            }
            algorithm if algorithm.is_rsa() => ImportKeyParams::Rsa { algorithm, hash: dictionary.require_hash()? },
            AlgorithmName::Ecdsa | AlgorithmName::Ecdh => {
                ImportKeyParams::Ec { algorithm, named_curve: dictionary.require_curve()? }
            }
            AlgorithmName::Ed25519 => ImportKeyParams::Ed25519,
            AlgorithmName::X25519 => ImportKeyParams::X25519,
            AlgorithmName::Pbkdf2 => ImportKeyParams::Pbkdf2,
            _ => ImportKeyParams::Hkdf,
        })
    }

    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            ImportKeyParams::Aes { algorithm }
            | ImportKeyParams::Rsa { algorithm, .. }
            | ImportKeyParams::Ec { algorithm, .. } => *algorithm,
            ImportKeyParams::Hmac { .. } => AlgorithmName::Hmac,
            ImportKeyParams::Ed25519 => AlgorithmName::Ed25519,
            ImportKeyParams::X25519 => AlgorithmName::X25519,
            ImportKeyParams::Pbkdf2 => AlgorithmName::Pbkdf2,
            ImportKeyParams::Hkdf => AlgorithmName::Hkdf,
        }
    }
}

/// The `derivedKeyType` of `deriveKey`: how to import the derived bits, and the `length` member the
/// spec's "get key length" step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerivedKeyType {
    pub import: ImportKeyParams,
    pub length: Option<u32>,
}

impl DerivedKeyType {
    /// Normalizes for both "importKey" and "get key length": only AES, HMAC, HKDF and PBKDF2 keys can
    /// be derived (anything else is a `NotSupportedError`); AES needs `length` (`TypeError`).
    pub fn from_dictionary(dictionary: &AlgorithmDictionary<'_>) -> Result<DerivedKeyType, CryptoError> {
        let import = ImportKeyParams::from_dictionary(dictionary)?;
        match import {
            ImportKeyParams::Aes { .. } => {
                dictionary.require(dictionary.length, "length")?;
            }
            ImportKeyParams::Hmac { .. } | ImportKeyParams::Hkdf | ImportKeyParams::Pbkdf2 => {}
            _ => {
                return Err(not_supported(format!(
                    "Unrecognized derived key type \"{}\" requested.",
                    import.algorithm().as_str()
                )));
            }
        }
        Ok(DerivedKeyType { import, length: dictionary.length })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_case_insensitively_and_come_back_canonical() {
        assert_eq!(AlgorithmName::from_name("aes-gcm"), Some(AlgorithmName::AesGcm));
        assert_eq!(AlgorithmName::from_name("rsassa-pkcs1-V1_5").map(AlgorithmName::as_str), Some("RSASSA-PKCS1-v1_5"));
        assert_eq!(HashAlgorithm::from_name("sha-256").unwrap(), HashAlgorithm::Sha256);
        assert_eq!(NamedCurve::from_name("p-384").unwrap(), NamedCurve::P384);
        assert_eq!(HashAlgorithm::from_name("SHA-3").unwrap_err().name(), "NotSupportedError");
        assert_eq!(NamedCurve::from_name("P-521").unwrap_err().name(), "NotSupportedError");
    }

    #[test]
    fn an_algorithm_not_registered_for_the_operation_is_not_supported() {
        let hmac = AlgorithmDictionary::named("HMAC");
        assert_eq!(EncryptParams::for_encrypt(&hmac).unwrap_err().name(), "NotSupportedError");
        let kw = AlgorithmDictionary::named("AES-KW");
        assert_eq!(EncryptParams::for_encrypt(&kw).unwrap_err().name(), "NotSupportedError");
        assert!(matches!(EncryptParams::for_wrap(&kw), Ok(EncryptParams::AesKw)));
        let ecdsa = AlgorithmDictionary::named("ECDSA");
        assert_eq!(
            DerivedKeyType::from_dictionary(&AlgorithmDictionary { named_curve: Some("P-256"), ..ecdsa })
                .unwrap_err()
                .name(),
            "NotSupportedError"
        );
        assert_eq!(KeyFormat::from_name("pem").unwrap_err().name(), "NotSupportedError");
    }

    #[test]
    fn missing_members_are_type_errors() {
        let gcm = AlgorithmDictionary::named("AES-GCM");
        assert_eq!(EncryptParams::for_encrypt(&gcm).unwrap_err().name(), "TypeError");
        let ecdsa = AlgorithmDictionary::named("ECDSA");
        assert_eq!(SignParams::from_dictionary(&ecdsa).unwrap_err().name(), "TypeError");
        let rsa = AlgorithmDictionary {
            modulus_length: Some(2048),
            hash: Some("SHA-256"),
            ..AlgorithmDictionary::named("RSA-PSS")
        };
        assert_eq!(GenerateKeyParams::from_dictionary(&rsa).unwrap_err().name(), "TypeError");
        let aes = AlgorithmDictionary::named("AES-CBC");
        assert_eq!(DerivedKeyType::from_dictionary(&aes).unwrap_err().name(), "TypeError");
        let pbkdf2 =
            AlgorithmDictionary { hash: Some("SHA-256"), salt: Some(b"salt"), ..AlgorithmDictionary::named("PBKDF2") };
        assert_eq!(DeriveParams::from_dictionary(&pbkdf2).unwrap_err().name(), "TypeError");
    }

    #[test]
    fn a_bad_hash_name_is_not_supported() {
        let hmac = AlgorithmDictionary { hash: Some("SHA-999"), ..AlgorithmDictionary::named("HMAC") };
        assert_eq!(ImportKeyParams::from_dictionary(&hmac).unwrap_err().name(), "NotSupportedError");
    }
}
