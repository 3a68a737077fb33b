//! Keys, signatures and ciphertexts made by OpenSSL (fixtures/README.md has the commands): isobar
//! must read what another implementation wrote and write what it reads.

use crate::test_vectors::{import_params, rng, usages};
use crate::{
    CryptoKey, EncryptParams, ExportedKey, KeyData, KeyFormat, KeyUsage, SignParams, decrypt, export_key, import_key,
    sign, verify,
};

const MESSAGE: &[u8] = include_bytes!("fixtures/message.txt");
const RSA2048_PKCS8: &[u8] = include_bytes!("fixtures/rsa2048.pkcs8.der");
const RSA2048_SPKI: &[u8] = include_bytes!("fixtures/rsa2048.spki.der");
const RSA2048_PKCS1V15_SHA256: &[u8] = include_bytes!("fixtures/rsa2048.pkcs1v15-sha256.sig");
const RSA2048_PSS_SHA256_SALT32: &[u8] = include_bytes!("fixtures/rsa2048.pss-sha256-salt32.sig");
const RSA2048_OAEP_SHA256_LABEL: &[u8] = include_bytes!("fixtures/rsa2048.oaep-sha256-label.bin");
const RSA512_PKCS8: &[u8] = include_bytes!("fixtures/rsa512.pkcs8.der");
const RSA512_SPKI: &[u8] = include_bytes!("fixtures/rsa512.spki.der");
const P384_PKCS8: &[u8] = include_bytes!("fixtures/p384.pkcs8.der");
const P384_SPKI: &[u8] = include_bytes!("fixtures/p384.spki.der");
const P384_ECDSA_SHA384: &[u8] = include_bytes!("fixtures/p384.ecdsa-sha384.sig");
const ED25519_PKCS8: &[u8] = include_bytes!("fixtures/ed25519.pkcs8.der");
const ED25519_SPKI: &[u8] = include_bytes!("fixtures/ed25519.spki.der");
const X25519_PKCS8: &[u8] = include_bytes!("fixtures/x25519.pkcs8.der");
const X25519_SPKI: &[u8] = include_bytes!("fixtures/x25519.spki.der");

fn import(
    format: KeyFormat,
    bytes: &[u8],
    name: &str,
    hash: Option<&str>,
    curve: Option<&str>,
    list: &[KeyUsage],
) -> Result<CryptoKey, crate::CryptoError> {
    import_key(format, KeyData::Bytes(bytes), &import_params(name, hash, curve), true, usages(list))
}

#[test]
fn rsa_pkcs1_v1_5_signatures_match_openssl_byte_for_byte() {
    let private =
        import(KeyFormat::Pkcs8, RSA2048_PKCS8, "RSASSA-PKCS1-v1_5", Some("SHA-256"), None, &[KeyUsage::Sign]).unwrap();
    let public =
        import(KeyFormat::Spki, RSA2048_SPKI, "RSASSA-PKCS1-v1_5", Some("SHA-256"), None, &[KeyUsage::Verify]).unwrap();
    assert_eq!(public.algorithm().modulus_length(), Some(2048));
    assert_eq!(public.algorithm().public_exponent(), Some(&[1u8, 0, 1][..]));
    // PKCS#1 v1.5 signatures are deterministic: the same key and message give the same bytes.
    assert_eq!(sign(&SignParams::RsassaPkcs1V15, &private, MESSAGE, &mut rng()).unwrap(), RSA2048_PKCS1V15_SHA256);
    assert!(verify(&SignParams::RsassaPkcs1V15, &public, RSA2048_PKCS1V15_SHA256, MESSAGE).unwrap());
    assert!(!verify(&SignParams::RsassaPkcs1V15, &public, RSA2048_PKCS1V15_SHA256, b"other").unwrap());
    // Both encodings come back as OpenSSL wrote them.
    assert_eq!(export_key(KeyFormat::Spki, &public).unwrap(), ExportedKey::Bytes(RSA2048_SPKI.to_vec()));
    assert_eq!(export_key(KeyFormat::Pkcs8, &private).unwrap(), ExportedKey::Bytes(RSA2048_PKCS8.to_vec()));
}

#[test]
fn rsa_pss_verifies_openssl_signatures_with_the_right_salt_length_only() {
    let public = import(KeyFormat::Spki, RSA2048_SPKI, "RSA-PSS", Some("SHA-256"), None, &[KeyUsage::Verify]).unwrap();
    let right = SignParams::RsaPss { salt_length: 32 };
    let wrong = SignParams::RsaPss { salt_length: 20 };
    assert!(verify(&right, &public, RSA2048_PSS_SHA256_SALT32, MESSAGE).unwrap());
    assert!(!verify(&wrong, &public, RSA2048_PSS_SHA256_SALT32, MESSAGE).unwrap());
    assert!(!verify(&right, &public, RSA2048_PSS_SHA256_SALT32, b"other").unwrap());
}

#[test]
fn rsa_oaep_decrypts_openssl_ciphertexts_with_the_label() {
    let private =
        import(KeyFormat::Pkcs8, RSA2048_PKCS8, "RSA-OAEP", Some("SHA-256"), None, &[KeyUsage::Decrypt]).unwrap();
    let with_label = EncryptParams::RsaOaep { label: Some(b"label") };
    assert_eq!(decrypt(&with_label, &private, RSA2048_OAEP_SHA256_LABEL, &mut rng()).unwrap(), MESSAGE);
    let without_label = EncryptParams::RsaOaep { label: None };
    let error = decrypt(&without_label, &private, RSA2048_OAEP_SHA256_LABEL, &mut rng()).unwrap_err();
    assert_eq!(error.name(), "OperationError");
}

#[test]
fn rsa_keys_outside_1024_to_8192_bits_are_refused() {
    for (format, bytes, usage) in
        [(KeyFormat::Pkcs8, RSA512_PKCS8, KeyUsage::Sign), (KeyFormat::Spki, RSA512_SPKI, KeyUsage::Verify)]
    {
        let error = import(format, bytes, "RSASSA-PKCS1-v1_5", Some("SHA-256"), None, &[usage]).unwrap_err();
        assert_eq!(error.name(), "OperationError", "{}", error.message());
    }
}

#[test]
fn ecdsa_p384_verifies_openssl_signatures_and_reads_its_keys() {
    let private = import(KeyFormat::Pkcs8, P384_PKCS8, "ECDSA", None, Some("P-384"), &[KeyUsage::Sign]).unwrap();
    let public = import(KeyFormat::Spki, P384_SPKI, "ECDSA", None, Some("P-384"), &[KeyUsage::Verify]).unwrap();
    let params = SignParams::Ecdsa { hash: crate::HashAlgorithm::Sha384 };
    assert!(verify(&params, &public, P384_ECDSA_SHA384, MESSAGE).unwrap());
    let ours = sign(&params, &private, MESSAGE, &mut rng()).unwrap();
    assert_eq!(ours.len(), 96);
    assert!(verify(&params, &public, &ours, MESSAGE).unwrap());
    assert_eq!(export_key(KeyFormat::Spki, &public).unwrap(), ExportedKey::Bytes(P384_SPKI.to_vec()));
    // A P-384 key is not a P-256 key.
    let error = import(KeyFormat::Pkcs8, P384_PKCS8, "ECDSA", None, Some("P-256"), &[KeyUsage::Sign]).unwrap_err();
    assert_eq!(error.name(), "DataError");
    let error = import(KeyFormat::Spki, P384_SPKI, "ECDH", None, Some("P-256"), &[]).unwrap_err();
    assert_eq!(error.name(), "DataError");
}

#[test]
fn okp_keys_from_openssl_import_and_export_unchanged() {
    for (name, pkcs8, spki, private_usage, public_usages) in [
        ("Ed25519", ED25519_PKCS8, ED25519_SPKI, KeyUsage::Sign, &[KeyUsage::Verify][..]),
        ("X25519", X25519_PKCS8, X25519_SPKI, KeyUsage::DeriveBits, &[][..]),
    ] {
        let private = import(KeyFormat::Pkcs8, pkcs8, name, None, None, &[private_usage]).unwrap();
        let public = import(KeyFormat::Spki, spki, name, None, None, public_usages).unwrap();
        assert_eq!(export_key(KeyFormat::Pkcs8, &private).unwrap(), ExportedKey::Bytes(pkcs8.to_vec()));
        assert_eq!(export_key(KeyFormat::Spki, &public).unwrap(), ExportedKey::Bytes(spki.to_vec()));
        // The private key's public half is the SPKI's key.
        let ExportedKey::Jwk(jwk) = export_key(KeyFormat::Jwk, &private).unwrap() else {
            panic!("jwk export is a JWK");
        };
        let ExportedKey::Bytes(raw) = export_key(KeyFormat::Raw, &public).unwrap() else {
            panic!("raw export is bytes");
        };
        assert_eq!(jwk.x, Some(crate::jwk::encode_member(&raw)), "{name}");
        // An Ed25519 key is not an X25519 key.
        let other = if name == "Ed25519" { "X25519" } else { "Ed25519" };
        assert_eq!(import(KeyFormat::Spki, spki, other, None, None, &[]).unwrap_err().name(), "DataError");
    }
    let private = import(KeyFormat::Pkcs8, ED25519_PKCS8, "Ed25519", None, None, &[KeyUsage::Sign]).unwrap();
    let public = import(KeyFormat::Spki, ED25519_SPKI, "Ed25519", None, None, &[KeyUsage::Verify]).unwrap();
    let signature = sign(&SignParams::Ed25519, &private, MESSAGE, &mut rng()).unwrap();
    assert!(verify(&SignParams::Ed25519, &public, &signature, MESSAGE).unwrap());
}
