//! Proptests: arbitrary bytes, mutated DER and arbitrary JWKs given to every import, and arbitrary
//! ciphertexts and signatures given to every operation, must come back as values (a key or an
//! error), never a panic.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::jwk::encode_member;
use crate::test_vectors::{import_params, rng, usages};
use crate::{
    EncryptParams, HashAlgorithm, ImportKeyParams, JsonWebKey, KeyData, KeyFormat, KeyUsage, KeyUsages, SignParams,
    decrypt, import_key, unwrap_key, verify,
};

/// Every importable algorithm, with the hash or curve it needs.
fn every_algorithm() -> Vec<ImportKeyParams> {
    let mut all = Vec::new();
    for name in ["AES-CTR", "AES-CBC", "AES-GCM", "AES-KW", "PBKDF2", "HKDF", "Ed25519", "X25519"] {
        all.push(import_params(name, None, None));
    }
    for hash in ["SHA-1", "SHA-256", "MD5"] {
        all.push(import_params("HMAC", Some(hash), None));
        for name in ["RSASSA-PKCS1-v1_5", "RSA-PSS", "RSA-OAEP"] {
            all.push(import_params(name, Some(hash), None));
        }
    }
    for curve in ["P-256", "P-384"] {
        all.push(import_params("ECDSA", None, Some(curve)));
        all.push(import_params("ECDH", None, Some(curve)));
    }
    all
}

/// Usage sets that get past the usage checks of one key type or another.
fn usage_sets() -> [KeyUsages; 6] {
    [
        KeyUsages::NONE,
        usages(&[KeyUsage::Sign]),
        usages(&[KeyUsage::Verify]),
        usages(&[KeyUsage::DeriveBits]),
        usages(&[KeyUsage::Encrypt, KeyUsage::WrapKey]),
        usages(&[KeyUsage::Decrypt, KeyUsage::UnwrapKey]),
    ]
}

fn import_everywhere(format: KeyFormat, bytes: &[u8]) {
    for params in every_algorithm() {
        for key_usages in usage_sets() {
            for extractable in [false, true] {
                // Only the absence of a panic matters; either outcome is a value.
                let _ = import_key(format, KeyData::Bytes(bytes), &params, extractable, key_usages);
            }
        }
    }
}

const FIXTURES: [(&[u8], KeyFormat); 10] = [
    (include_bytes!("fixtures/rsa1024.pkcs8.der"), KeyFormat::Pkcs8),
    (include_bytes!("fixtures/rsa2048.spki.der"), KeyFormat::Spki),
    (include_bytes!("fixtures/rsa512.pkcs8.der"), KeyFormat::Pkcs8),
    (include_bytes!("fixtures/p384.pkcs8.der"), KeyFormat::Pkcs8),
    (include_bytes!("fixtures/p384.spki.der"), KeyFormat::Spki),
    (include_bytes!("fixtures/ed25519.pkcs8.der"), KeyFormat::Pkcs8),
    (include_bytes!("fixtures/ed25519.spki.der"), KeyFormat::Spki),
    (include_bytes!("fixtures/x25519.pkcs8.der"), KeyFormat::Pkcs8),
    (include_bytes!("fixtures/x25519.spki.der"), KeyFormat::Spki),
    (include_bytes!("fixtures/rsa512.spki.der"), KeyFormat::Spki),
];

fn base64url_member() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        vec(any::<u8>(), 0..80).prop_map(|bytes| Some(encode_member(&bytes))),
        "[A-Za-z0-9_=+/!-]{0,24}".prop_map(Some),
    ]
}

fn jwk_strategy() -> impl Strategy<Value = JsonWebKey> {
    let kty = prop_oneof![Just(None), Just(Some("oct")), Just(Some("RSA")), Just(Some("EC")), Just(Some("OKP"))];
    let crv =
        prop_oneof![Just(None), Just(Some("P-256")), Just(Some("P-384")), Just(Some("Ed25519")), Just(Some("X25519"))];
    let alg = prop_oneof![
        Just(None),
        Just(Some("A128GCM")),
        Just(Some("HS256")),
        Just(Some("RS256")),
        Just(Some("ES256")),
        Just(Some("EdDSA"))
    ];
    let exponent =
        prop_oneof![Just(Some(encode_member(&[1, 0, 1]))), Just(Some(encode_member(&[3]))), base64url_member()];
    (
        (kty, crv, alg, any::<Option<bool>>()),
        (base64url_member(), base64url_member(), base64url_member(), base64url_member()),
        (vec(any::<u8>(), 120..260), exponent, base64url_member()),
        (base64url_member(), base64url_member(), base64url_member(), base64url_member(), base64url_member()),
    )
        .prop_map(|((kty, crv, alg, ext), (k, x, y, d), (n, e, key_use), (p, q, dp, dq, qi))| JsonWebKey {
            kty: kty.map(str::to_owned),
            crv: crv.map(str::to_owned),
            alg: alg.map(str::to_owned),
            ext,
            k,
            x,
            y,
            d,
            // Moduli long enough to pass the size check, so the number theory sees hostile values.
            n: Some(encode_member(&n)),
            e,
            key_use,
            p,
            q,
            dp,
            dq,
            qi,
            ..JsonWebKey::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_in_every_format_never_panic(bytes in vec(any::<u8>(), 0..700)) {
        for format in [KeyFormat::Raw, KeyFormat::Spki, KeyFormat::Pkcs8] {
            import_everywhere(format, &bytes);
        }
    }

    #[test]
    fn mutated_der_never_panics(which in 0..FIXTURES.len(), index in any::<usize>(), flip in 1u8..=255, cut in any::<usize>()) {
        let (fixture, format) = FIXTURES[which];
        let mut bytes = fixture.to_vec();
        let index = index % bytes.len();
        bytes[index] ^= flip;
        import_everywhere(format, &bytes);
        // Truncations reach every length check of the DER readers.
        import_everywhere(format, &fixture[..cut % fixture.len()]);
    }

    #[test]
    fn arbitrary_jwks_never_panic(jwk in jwk_strategy()) {
        for params in every_algorithm() {
            for key_usages in usage_sets() {
                let _ = import_key(KeyFormat::Jwk, KeyData::Jwk(&jwk), &params, false, key_usages);
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(text in ".{0,200}", bytes in vec(any::<u8>(), 0..200)) {
        let _ = JsonWebKey::from_json(text.as_bytes());
        let _ = JsonWebKey::from_json(&bytes);
    }

    #[test]
    fn arbitrary_ciphertexts_and_signatures_never_panic(
        data in vec(any::<u8>(), 0..300),
        iv in vec(any::<u8>(), 0..20),
        tag_length in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        counter_length in any::<u32>(),
        salt_length in any::<u32>(),
    ) {
        let aes = |name| crate::test_vectors::raw_secret(name, None, &[9; 32], &[KeyUsage::Decrypt, KeyUsage::UnwrapKey]);
        let (gcm, cbc, ctr, kw) = (
            aes("AES-GCM"),
            aes("AES-CBC"),
            aes("AES-CTR"),
            crate::test_vectors::raw_secret("AES-KW", None, &[9; 32], &[KeyUsage::UnwrapKey]),
        );
        let _ = decrypt(&EncryptParams::AesGcm { iv: &iv, additional_data: Some(&data), tag_length }, &gcm, &data, &mut rng());
        let _ = decrypt(&EncryptParams::AesCbc { iv: &iv }, &cbc, &data, &mut rng());
        let _ = decrypt(&EncryptParams::AesCtr { counter: &iv, length: counter_length }, &ctr, &data, &mut rng());
        for format in [KeyFormat::Raw, KeyFormat::Jwk] {
            let _ = unwrap_key(
                format,
                &data,
                &kw,
                &EncryptParams::AesKw,
                &import_params("AES-GCM", None, None),
                true,
                usages(&[KeyUsage::Encrypt]),
                &mut rng(),
            );
        }
        let oaep = import_key(
            KeyFormat::Pkcs8,
            KeyData::Bytes(include_bytes!("fixtures/rsa1024.pkcs8.der")),
            &import_params("RSA-OAEP", Some("SHA-1"), None),
            false,
            usages(&[KeyUsage::Decrypt]),
        )
        .unwrap();
        let _ = decrypt(&EncryptParams::RsaOaep { label: Some(&iv) }, &oaep, &data, &mut rng());
        let rsa = import_key(
            KeyFormat::Spki,
            KeyData::Bytes(include_bytes!("fixtures/rsa2048.spki.der")),
            &import_params("RSA-PSS", Some("SHA-256"), None),
            false,
            usages(&[KeyUsage::Verify]),
        )
        .unwrap();
        let _ = verify(&SignParams::RsaPss { salt_length }, &rsa, &data, &iv);
        let p384 = import_key(
            KeyFormat::Spki,
            KeyData::Bytes(include_bytes!("fixtures/p384.spki.der")),
            &import_params("ECDSA", None, Some("P-384")),
            false,
            usages(&[KeyUsage::Verify]),
        )
        .unwrap();
        let _ = verify(&SignParams::Ecdsa { hash: HashAlgorithm::Md5 }, &p384, &data, &iv);
        let ed = import_key(
            KeyFormat::Raw,
            KeyData::Bytes(&[0xff; 32]),
            &import_params("Ed25519", None, None),
            false,
            usages(&[KeyUsage::Verify]),
        )
        .unwrap();
        let _ = verify(&SignParams::Ed25519, &ed, &data, &iv);
    }
}
