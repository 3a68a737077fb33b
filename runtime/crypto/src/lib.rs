//! isobar's WebCrypto engine: everything `crypto.subtle` and `crypto.DigestStream` do, as plain
//! Rust, with no V8 in sight. It owns the key model ([`CryptoKey`], [`KeyAlgorithm`], usages),
//! the normalized algorithm parameters, JWK/SPKI/PKCS#8/raw import and export, every operation,
//! and the error each failure throws ([`CryptoError`] carries the DOMException name). The runtime's
//! glue turns JS values into these types and results back into JS; it decides nothing itself.
//!
//! It is its own crate (`runtime/crypto`, `isobar-crypto`) so that it builds and tests in seconds
//! without V8, and so that nothing in it can touch an isolate. It must not make system calls, read
//! clocks, or panic on any input: every operation that needs randomness takes the caller's
//! [`rand_core::TryCryptoRng`] (the runtime passes one over `kernel_shim::random`), and every
//! hostile input (bad lengths, bad DER, bad JWKs, silly RSA sizes) is a typed error.
//!
//! # Why these crates
//! Every primitive is RustCrypto's: sha1/sha2/md-5, hmac, pbkdf2, hkdf, aes with ctr/cbc/aes-gcm/
//! aes-kw, p256/p384 (elliptic-curve, ecdsa), ed25519-dalek, x25519-dalek, rsa 0.10 (constant-time
//! crypto-bigint arithmetic) and the pkcs8/spki/der encoders. One family means one set of traits,
//! one `rand_core`, and keys that move between formats without glue code. `ring` was considered
//! per algorithm and covers none of WebCrypto fully: its X25519 keys are ephemeral (no import or
//! export), its AES-GCM fixes a 96-bit nonce and a 128-bit tag, it has no MD5, no AES-CTR/CBC/KW,
//! no RSA-OAEP and no RSA key generation, and its key formats are PKCS#8 only. The compositions
//! this crate does itself are small and commented where they are: AES-CTR's counter wrap-around
//! and the dispatch over AES-GCM nonce and tag sizes (`aes.rs`), RFC 8410 key structures
//! (`curve25519.rs`).
//!
//! # Where behaviour follows workerd, and limits
//! `docs/webcrypto.md` lists them: AES-GCM IVs of 12 or 16 bytes, RSA moduli of 1024 to 8192
//! bits (4096 for generated keys), PBKDF2 at most 100,000 iterations, generated HMAC keys at most 65,536 bits, no P-521, and
//! the places where workerd's error names differ from the spec's.

mod aes;
mod algorithm;
mod curve25519;
mod digest;
mod ec;
mod error;
mod hmac;
mod jwk;
mod kdf;
mod key;
mod rsa;
mod subtle_crypto;
mod usage;

#[cfg(test)]
mod test_vectors;
#[cfg(test)]
mod tests;

pub use algorithm::{
    AlgorithmDictionary, AlgorithmName, DeriveParams, DerivedKeyType, EncryptParams, GenerateKeyParams, HashAlgorithm,
    ImportKeyParams, KeyFormat, NamedCurve, SignParams,
};
pub use digest::{DigestStream, digest};
pub use error::CryptoError;
pub use hmac::HMAC_GENERATED_KEY_BITS_MAX;
pub use jwk::{JsonWebKey, RsaOtherPrimesInfo};
pub use kdf::PBKDF2_ITERATIONS_MAX;
pub use key::{CryptoKey, CryptoKeyPair, ExportedKey, GeneratedKey, KeyAlgorithm, KeyData, KeyType};
pub use rand_core;
pub use rsa::{RSA_GENERATED_MODULUS_BITS_MAX, RSA_MODULUS_BITS_MAX, RSA_MODULUS_BITS_MIN};
pub use subtle_crypto::{
    decrypt, derive_bits, derive_key, encrypt, export_key, generate_key, import_key, sign, timing_safe_equal,
    unwrap_key, verify, wrap_key,
};
pub use usage::{KeyUsage, KeyUsages};
