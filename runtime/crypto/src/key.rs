//! The Rust model of a WebCrypto `CryptoKey`: its type, its algorithm dictionary, whether it is
//! extractable, its usages, and the key material (which never leaves this crate except through
//! `exportKey`).

use std::fmt;

use zeroize::Zeroizing;

use crate::algorithm::{AlgorithmName, HashAlgorithm, NamedCurve};
use crate::ec::{EcPrivateKey, EcPublicKey};
use crate::error::CryptoError;
use crate::jwk::JsonWebKey;
use crate::usage::KeyUsages;

/// `CryptoKey.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Secret,
    Public,
    Private,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Secret => "secret",
            KeyType::Public => "public",
            KeyType::Private => "private",
        }
    }
}

/// `CryptoKey.algorithm`: the dictionary a key reports. Use the accessors to build the JS object;
/// members that do not apply are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// AES-CTR, AES-CBC, AES-GCM or AES-KW; `length` in bits.
    Aes {
        algorithm: AlgorithmName,
        length: u32,
    },
    /// `length` in bits.
    Hmac {
        hash: HashAlgorithm,
        length: u32,
    },
    /// RSASSA-PKCS1-v1_5, RSA-PSS or RSA-OAEP.
    Rsa {
        algorithm: AlgorithmName,
        modulus_length: u32,
        /// Big-endian without leading zeros.
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
    Pbkdf2,
    Hkdf,
}

impl KeyAlgorithm {
    /// The algorithm this key belongs to.
    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            KeyAlgorithm::Aes { algorithm, .. }
            | KeyAlgorithm::Rsa { algorithm, .. }
            | KeyAlgorithm::Ec { algorithm, .. } => *algorithm,
            KeyAlgorithm::Hmac { .. } => AlgorithmName::Hmac,
            KeyAlgorithm::Ed25519 => AlgorithmName::Ed25519,
            KeyAlgorithm::X25519 => AlgorithmName::X25519,
            KeyAlgorithm::Pbkdf2 => AlgorithmName::Pbkdf2,
            KeyAlgorithm::Hkdf => AlgorithmName::Hkdf,
        }
    }

    /// `algorithm.name`.
    pub fn name(&self) -> &'static str {
        self.algorithm().as_str()
    }

    /// `algorithm.length` (AES and HMAC).
    pub fn length(&self) -> Option<u32> {
        match self {
            KeyAlgorithm::Aes { length, .. } | KeyAlgorithm::Hmac { length, .. } => Some(*length),
            _ => None,
        }
    }

    /// `algorithm.hash` (HMAC and RSA); the JS value is `{ name: hash.as_str() }`.
    pub fn hash(&self) -> Option<HashAlgorithm> {
        match self {
            KeyAlgorithm::Hmac { hash, .. } | KeyAlgorithm::Rsa { hash, .. } => Some(*hash),
            _ => None,
        }
    }

    /// `algorithm.namedCurve` (ECDSA and ECDH).
    pub fn named_curve(&self) -> Option<NamedCurve> {
        match self {
            KeyAlgorithm::Ec { named_curve, .. } => Some(*named_curve),
            _ => None,
        }
    }

    /// `algorithm.modulusLength` (RSA).
    pub fn modulus_length(&self) -> Option<u32> {
        match self {
            KeyAlgorithm::Rsa { modulus_length, .. } => Some(*modulus_length),
            _ => None,
        }
    }

    /// `algorithm.publicExponent` (RSA): a new `Uint8Array` of these bytes.
    pub fn public_exponent(&self) -> Option<&[u8]> {
        match self {
            KeyAlgorithm::Rsa { public_exponent, .. } => Some(public_exponent),
            _ => None,
        }
    }
}

/// The secret or public values behind a key. Private to the crate: scripts reach them only through
/// `exportKey`, which checks `extractable`.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    /// AES, HMAC, PBKDF2 and HKDF keys.
    Secret(Zeroizing<Vec<u8>>),
    // The asymmetric keys are boxed so that a CryptoKey stays small whatever it holds.
    RsaPrivate(Box<::rsa::PrivateKey>),
    RsaPublic(Box<::rsa::PublicKey>),
    EcPrivate(Box<EcPrivateKey>),
    EcPublic(Box<EcPublicKey>),
    /// The 32-byte seed; the signing key expands it.
    Ed25519Private(Box<ed25519_dalek::SigningKey>),
    /// Kept as bytes and decoded when verifying: like BoringSSL, an encoding that is not a curve
    /// point imports fine and simply verifies nothing.
    Ed25519Public([u8; 32]),
    /// The 32-byte scalar as given (X25519 clamps it when used).
    X25519Private(Zeroizing<[u8; 32]>),
    X25519Public([u8; 32]),
}

/// A WebCrypto key. Cheap to clone only for secret keys; the glue should hold it behind an `Rc`.
#[derive(Clone)]
pub struct CryptoKey {
    pub(crate) key_type: KeyType,
    pub(crate) extractable: bool,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) usages: KeyUsages,
    pub(crate) material: KeyMaterial,
}

impl CryptoKey {
    pub(crate) fn new(
        key_type: KeyType,
        extractable: bool,
        algorithm: KeyAlgorithm,
        usages: KeyUsages,
        material: KeyMaterial,
    ) -> CryptoKey {
        CryptoKey { key_type, extractable, algorithm, usages, material }
    }

    /// `CryptoKey.type`.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// `CryptoKey.extractable`.
    pub fn extractable(&self) -> bool {
        self.extractable
    }

    /// `CryptoKey.algorithm`.
    pub fn algorithm(&self) -> &KeyAlgorithm {
        &self.algorithm
    }

    /// `CryptoKey.usages`.
    pub fn usages(&self) -> KeyUsages {
        self.usages
    }

    /// The secret bytes of an AES, HMAC, PBKDF2 or HKDF key.
    pub(crate) fn secret_bytes(&self) -> Result<&[u8], CryptoError> {
        match &self.material {
            KeyMaterial::Secret(bytes) => Ok(bytes),
            _ => Err(crate::error::operation("The key holds no secret bytes.")),
        }
    }
}

impl fmt::Debug for CryptoKey {
    // Key material is left out on purpose: a Debug print must never leak a secret into a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CryptoKey")
            .field("type", &self.key_type)
            .field("extractable", &self.extractable)
            .field("algorithm", &self.algorithm)
            .field("usages", &self.usages.names())
            .finish_non_exhaustive()
    }
}

/// The result of generating an asymmetric key.
#[derive(Debug, Clone)]
pub struct CryptoKeyPair {
    pub public_key: CryptoKey,
    pub private_key: CryptoKey,
}

/// What `generateKey` returns: one secret key or a key pair.
#[derive(Debug, Clone)]
pub enum GeneratedKey {
    Secret(CryptoKey),
    Pair(CryptoKeyPair),
}

/// The `keyData` of `importKey`: bytes for raw, pkcs8 and spki; a JWK for jwk.
#[derive(Debug, Clone, Copy)]
pub enum KeyData<'a> {
    Bytes(&'a [u8]),
    Jwk(&'a JsonWebKey),
}

/// What `exportKey` returns: an `ArrayBuffer`'s bytes, or a JWK for the glue to turn into an
/// object.
#[allow(clippy::large_enum_variant, reason = "an export lives only until the glue converts it")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportedKey {
    Bytes(Vec<u8>),
    Jwk(JsonWebKey),
}
