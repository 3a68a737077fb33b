//! Generate, export in every format the algorithm allows, import again, and check the imported
//! keys work with the originals.

use crate::test_vectors::{import_params, rng, usages};
use crate::{
    AlgorithmDictionary, CryptoKey, CryptoKeyPair, DeriveParams, DerivedKeyType, EncryptParams, ExportedKey,
    GenerateKeyParams, GeneratedKey, HashAlgorithm, ImportKeyParams, KeyData, KeyFormat, KeyType, KeyUsage, KeyUsages,
    SignParams, decrypt, derive_bits, derive_key, encrypt, export_key, generate_key, import_key, sign,
    timing_safe_equal, unwrap_key, verify, wrap_key,
};

fn generate(dictionary: AlgorithmDictionary<'_>, list: &[KeyUsage]) -> GeneratedKey {
    let params = GenerateKeyParams::from_dictionary(&dictionary).unwrap();
    generate_key(&params, true, usages(list), &mut rng()).unwrap()
}

fn secret(generated: GeneratedKey) -> CryptoKey {
    match generated {
        GeneratedKey::Secret(key) => key,
        GeneratedKey::Pair(_) => panic!("expected a secret key"),
    }
}

fn pair(generated: GeneratedKey) -> CryptoKeyPair {
    match generated {
        GeneratedKey::Pair(pair) => pair,
        GeneratedKey::Secret(_) => panic!("expected a key pair"),
    }
}

/// Exports `key` in `format` and imports the result with the same algorithm and usages.
fn reimport(key: &CryptoKey, format: KeyFormat, params: &ImportKeyParams) -> CryptoKey {
    let exported = export_key(format, key).unwrap();
    let data = match &exported {
        ExportedKey::Bytes(bytes) => KeyData::Bytes(bytes),
        ExportedKey::Jwk(jwk) => {
            assert_eq!(jwk.ext, Some(true));
            assert_eq!(
                jwk.key_ops.as_ref().map(|ops| ops.iter().map(String::as_str).collect::<Vec<_>>()),
                Some(key.usages().names())
            );
            // Through JSON and back, as wrapKey and the glue do.
            let json = jwk.to_json();
            let parsed = crate::JsonWebKey::from_json(&json).unwrap();
            assert_eq!(&parsed, jwk);
            KeyData::Jwk(jwk)
        }
    };
    let imported = import_key(format, data, params, true, key.usages()).unwrap();
    assert_eq!(imported.algorithm(), key.algorithm());
    assert_eq!(imported.key_type(), key.key_type());
    imported
}

#[test]
fn aes_keys_round_trip_through_raw_and_jwk() {
    let iv = [7u8; 16];
    let gcm_iv = [9u8; 12];
    for name in ["AES-CTR", "AES-CBC", "AES-GCM"] {
        let params = match name {
            "AES-CTR" => EncryptParams::AesCtr { counter: &iv, length: 32 },
            "AES-CBC" => EncryptParams::AesCbc { iv: &iv },
            _ => EncryptParams::AesGcm { iv: &gcm_iv, additional_data: Some(b"header"), tag_length: Some(96) },
        };
        for length in [128, 192, 256] {
            let key = secret(generate(
                AlgorithmDictionary { length: Some(length), ..AlgorithmDictionary::named(name) },
                &[KeyUsage::Encrypt, KeyUsage::Decrypt],
            ));
            assert_eq!(key.algorithm().length(), Some(length));
            assert_eq!(key.key_type(), KeyType::Secret);
            let ciphertext = encrypt(&params, &key, b"attack at dawn, bring snacks", &mut rng()).unwrap();
            for format in [KeyFormat::Raw, KeyFormat::Jwk] {
                let imported = reimport(&key, format, &import_params(name, None, None));
                assert_eq!(
                    decrypt(&params, &imported, &ciphertext, &mut rng()).unwrap(),
                    b"attack at dawn, bring snacks"
                );
            }
        }
    }
}

#[test]
fn hmac_keys_round_trip_and_honour_odd_lengths() {
    for hash in ["SHA-1", "SHA-256", "SHA-384", "SHA-512", "MD5"] {
        let key = secret(generate(
            AlgorithmDictionary { hash: Some(hash), ..AlgorithmDictionary::named("HMAC") },
            &[KeyUsage::Sign, KeyUsage::Verify],
        ));
        let expected_length = HashAlgorithm::from_name(hash).unwrap().block_bits();
        assert_eq!(key.algorithm().length(), Some(expected_length));
        let mac = sign(&SignParams::Hmac, &key, b"data", &mut rng()).unwrap();
        let formats: &[KeyFormat] = if hash == "MD5" { &[KeyFormat::Raw] } else { &[KeyFormat::Raw, KeyFormat::Jwk] };
        for format in formats {
            let imported = reimport(&key, *format, &import_params("HMAC", Some(hash), None));
            assert!(verify(&SignParams::Hmac, &imported, &mac, b"data").unwrap());
        }
    }
    // A 12-bit key keeps 12 bits: the last byte's low four bits are zero.
    let key = secret(generate(
        AlgorithmDictionary { hash: Some("SHA-256"), length: Some(12), ..AlgorithmDictionary::named("HMAC") },
        &[KeyUsage::Sign],
    ));
    let ExportedKey::Bytes(bytes) = export_key(KeyFormat::Raw, &key).unwrap() else {
        panic!("raw export is bytes");
    };
    assert_eq!(bytes.len(), 2);
    assert_eq!(bytes[1] & 0x0f, 0);
}

fn exercise_signing_pair(pair: &CryptoKeyPair, params: &SignParams, import: &ImportKeyParams, formats: &[KeyFormat]) {
    let message = b"the quick brown fox";
    for format in formats {
        let (private, public) = match format {
            KeyFormat::Pkcs8 => (reimport(&pair.private_key, *format, import), pair.public_key.clone()),
            KeyFormat::Spki | KeyFormat::Raw => (pair.private_key.clone(), reimport(&pair.public_key, *format, import)),
            KeyFormat::Jwk => {
                (reimport(&pair.private_key, *format, import), reimport(&pair.public_key, *format, import))
            }
        };
        let signature = sign(params, &private, message, &mut rng()).unwrap();
        assert!(verify(params, &public, &signature, message).unwrap(), "{format:?}");
        assert!(verify(params, &pair.public_key, &signature, message).unwrap());
        assert!(!verify(params, &public, &signature, b"the quick brown cat").unwrap());
    }
}

#[test]
fn ecdsa_and_ed25519_pairs_round_trip_through_every_format() {
    for curve in ["P-256", "P-384"] {
        let pair = pair(generate(
            AlgorithmDictionary { named_curve: Some(curve), ..AlgorithmDictionary::named("ECDSA") },
            &[KeyUsage::Sign, KeyUsage::Verify],
        ));
        assert_eq!(pair.public_key.usages(), KeyUsages::of(&[KeyUsage::Verify]));
        assert_eq!(pair.private_key.usages(), KeyUsages::of(&[KeyUsage::Sign]));
        assert!(pair.public_key.extractable());
        for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256, HashAlgorithm::Sha384, HashAlgorithm::Sha512] {
            exercise_signing_pair(
                &pair,
                &SignParams::Ecdsa { hash },
                &import_params("ECDSA", None, Some(curve)),
                &[KeyFormat::Pkcs8, KeyFormat::Spki, KeyFormat::Raw, KeyFormat::Jwk],
            );
        }
    }
    let pair = pair(generate(AlgorithmDictionary::named("Ed25519"), &[KeyUsage::Sign, KeyUsage::Verify]));
    exercise_signing_pair(
        &pair,
        &SignParams::Ed25519,
        &import_params("Ed25519", None, None),
        &[KeyFormat::Pkcs8, KeyFormat::Spki, KeyFormat::Raw, KeyFormat::Jwk],
    );
}

fn agreement<'a>(name: &str, public: &'a CryptoKey) -> DeriveParams<'a> {
    if name == "ECDH" { DeriveParams::Ecdh { public } } else { DeriveParams::X25519 { public } }
}

#[test]
fn ecdh_and_x25519_agree_after_every_format() {
    for (name, curve) in [("ECDH", Some("P-256")), ("ECDH", Some("P-384")), ("X25519", None)] {
        let dictionary = AlgorithmDictionary { named_curve: curve, ..AlgorithmDictionary::named(name) };
        let alice = pair(generate(dictionary, &[KeyUsage::DeriveBits]));
        let bob = pair(generate(dictionary, &[KeyUsage::DeriveBits, KeyUsage::DeriveKey]));
        assert!(alice.public_key.usages().is_empty());
        let shared = derive_bits(&agreement(name, &bob.public_key), &alice.private_key, None).unwrap();
        assert_eq!(shared, derive_bits(&agreement(name, &alice.public_key), &bob.private_key, None).unwrap());
        let import = import_params(name, None, curve);
        for format in [KeyFormat::Raw, KeyFormat::Spki, KeyFormat::Jwk] {
            let public = reimport(&bob.public_key, format, &import);
            assert_eq!(derive_bits(&agreement(name, &public), &alice.private_key, None).unwrap(), shared);
        }
        for format in [KeyFormat::Pkcs8, KeyFormat::Jwk] {
            let private = reimport(&alice.private_key, format, &import);
            assert_eq!(derive_bits(&agreement(name, &bob.public_key), &private, None).unwrap(), shared);
        }
        // deriveKey: the shared secret's first 128 bits as an AES-GCM key, the same on both sides.
        let derived_type = DerivedKeyType::from_dictionary(&AlgorithmDictionary {
            length: Some(128),
            ..AlgorithmDictionary::named("AES-GCM")
        })
        .unwrap();
        let key = derive_key(
            &agreement(name, &alice.public_key),
            &bob.private_key,
            &derived_type,
            true,
            usages(&[KeyUsage::Encrypt]),
        )
        .unwrap();
        assert_eq!(export_key(KeyFormat::Raw, &key).unwrap(), ExportedKey::Bytes(shared[..16].to_vec()));
    }
}

const RSA1024_PKCS8: &[u8] = include_bytes!("fixtures/rsa1024.pkcs8.der");

fn rsa_private(name: &str, hash: &str, list: &[KeyUsage]) -> CryptoKey {
    import_key(
        KeyFormat::Pkcs8,
        KeyData::Bytes(RSA1024_PKCS8),
        &import_params(name, Some(hash), None),
        true,
        usages(list),
    )
    .unwrap()
}

/// The public half of a private RSA key, through its JWK (dropping the private members).
fn rsa_public_of(private: &CryptoKey, list: &[KeyUsage]) -> CryptoKey {
    let ExportedKey::Jwk(jwk) = export_key(KeyFormat::Jwk, private).unwrap() else {
        panic!("jwk export is a JWK");
    };
    let public = crate::JsonWebKey { kty: jwk.kty, alg: jwk.alg, n: jwk.n, e: jwk.e, ..crate::JsonWebKey::default() };
    let RsaNames(name, hash) = rsa_names(private);
    import_key(KeyFormat::Jwk, KeyData::Jwk(&public), &import_params(name, Some(hash), None), true, usages(list))
        .unwrap()
}

struct RsaNames(&'static str, &'static str);

fn rsa_names(key: &CryptoKey) -> RsaNames {
    RsaNames(key.algorithm().name(), key.algorithm().hash().unwrap().as_str())
}

#[test]
fn rsa_keys_round_trip_through_pkcs8_spki_and_jwk() {
    for (name, params) in
        [("RSASSA-PKCS1-v1_5", SignParams::RsassaPkcs1V15), ("RSA-PSS", SignParams::RsaPss { salt_length: 32 })]
    {
        for hash in ["SHA-1", "SHA-256", "SHA-384", "SHA-512"] {
            let private = rsa_private(name, hash, &[KeyUsage::Sign]);
            let public = rsa_public_of(&private, &[KeyUsage::Verify]);
            assert_eq!(public.algorithm().modulus_length(), Some(1024));
            let pair = CryptoKeyPair { public_key: public, private_key: private };
            exercise_signing_pair(
                &pair,
                &params,
                &import_params(name, Some(hash), None),
                &[KeyFormat::Pkcs8, KeyFormat::Spki, KeyFormat::Jwk],
            );
        }
    }
    let private = rsa_private("RSA-OAEP", "SHA-256", &[KeyUsage::Decrypt, KeyUsage::UnwrapKey]);
    let public = rsa_public_of(&private, &[KeyUsage::Encrypt, KeyUsage::WrapKey]);
    let import = import_params("RSA-OAEP", Some("SHA-256"), None);
    let params = EncryptParams::RsaOaep { label: Some(b"context") };
    for format in [KeyFormat::Spki, KeyFormat::Jwk] {
        let public = reimport(&public, format, &import);
        let ciphertext = encrypt(&params, &public, b"a secret", &mut rng()).unwrap();
        assert_eq!(ciphertext.len(), 128);
        for format in [KeyFormat::Pkcs8, KeyFormat::Jwk] {
            let private = reimport(&private, format, &import);
            assert_eq!(decrypt(&params, &private, &ciphertext, &mut rng()).unwrap(), b"a secret");
        }
    }
}

#[test]
fn rsa_generation_makes_working_pairs() {
    // 1024 bits is the smallest size isobar accepts, and quick enough for a debug build.
    for (name, list, exponent) in [
        ("RSASSA-PKCS1-v1_5", &[KeyUsage::Sign, KeyUsage::Verify][..], &[1u8, 0, 1][..]),
        ("RSA-OAEP", &[KeyUsage::Encrypt, KeyUsage::Decrypt][..], &[3u8][..]),
    ] {
        let pair = pair(generate(
            AlgorithmDictionary {
                modulus_length: Some(1024),
                public_exponent: Some(exponent),
                hash: Some("SHA-256"),
                ..AlgorithmDictionary::named(name)
            },
            list,
        ));
        assert_eq!(pair.private_key.algorithm().modulus_length(), Some(1024));
        assert_eq!(pair.public_key.algorithm().public_exponent(), Some(exponent));
        if name == "RSA-OAEP" {
            let params = EncryptParams::RsaOaep { label: None };
            let ciphertext = encrypt(&params, &pair.public_key, b"hello", &mut rng()).unwrap();
            assert_eq!(decrypt(&params, &pair.private_key, &ciphertext, &mut rng()).unwrap(), b"hello");
        } else {
            exercise_signing_pair(
                &pair,
                &SignParams::RsassaPkcs1V15,
                &import_params(name, Some("SHA-256"), None),
                &[KeyFormat::Pkcs8, KeyFormat::Spki, KeyFormat::Jwk],
            );
        }
    }
}

#[test]
fn wrap_and_unwrap_round_trip_with_every_wrapping_algorithm() {
    let hmac = secret(generate(
        AlgorithmDictionary { hash: Some("SHA-256"), ..AlgorithmDictionary::named("HMAC") },
        &[KeyUsage::Sign, KeyUsage::Verify],
    ));
    let mac = sign(&SignParams::Hmac, &hmac, b"payload", &mut rng()).unwrap();
    let hmac_import = import_params("HMAC", Some("SHA-256"), None);

    let gcm = secret(generate(
        AlgorithmDictionary { length: Some(256), ..AlgorithmDictionary::named("AES-GCM") },
        &[KeyUsage::WrapKey, KeyUsage::UnwrapKey],
    ));
    let kw = secret(generate(
        AlgorithmDictionary { length: Some(128), ..AlgorithmDictionary::named("AES-KW") },
        &[KeyUsage::WrapKey, KeyUsage::UnwrapKey],
    ));
    let oaep_private = rsa_private("RSA-OAEP", "SHA-1", &[KeyUsage::UnwrapKey]);
    let oaep_public = rsa_public_of(&oaep_private, &[KeyUsage::WrapKey]);

    let iv = [1u8; 12];
    let gcm_params = EncryptParams::AesGcm { iv: &iv, additional_data: None, tag_length: None };
    let oaep_params = EncryptParams::RsaOaep { label: None };
    let cases: [(&CryptoKey, &CryptoKey, &EncryptParams<'_>, &[KeyFormat]); 3] = [
        (&gcm, &gcm, &gcm_params, &[KeyFormat::Raw, KeyFormat::Jwk]),
        // AES-KW needs a multiple of 8 bytes; a 64-byte HMAC key is one.
        (&kw, &kw, &EncryptParams::AesKw, &[KeyFormat::Raw]),
        (&oaep_public, &oaep_private, &oaep_params, &[KeyFormat::Raw]),
    ];
    for (wrapping, unwrapping, params, formats) in cases {
        for format in formats {
            let wrapped = wrap_key(*format, &hmac, wrapping, params, &mut rng()).unwrap();
            let unwrapped = unwrap_key(
                *format,
                &wrapped,
                unwrapping,
                params,
                &hmac_import,
                false,
                usages(&[KeyUsage::Verify]),
                &mut rng(),
            )
            .unwrap();
            assert!(!unwrapped.extractable());
            assert!(verify(&SignParams::Hmac, &unwrapped, &mac, b"payload").unwrap());
        }
    }
}

#[test]
fn pbkdf2_derives_an_hmac_key_of_the_hash_block_length() {
    let password = import_key(
        KeyFormat::Raw,
        KeyData::Bytes(b"correct horse battery staple"),
        &import_params("PBKDF2", None, None),
        false,
        usages(&[KeyUsage::DeriveKey]),
    )
    .unwrap();
    let params = DeriveParams::Pbkdf2 { hash: HashAlgorithm::Sha256, salt: b"pepper", iterations: 1000 };
    let derived_type = DerivedKeyType::from_dictionary(&AlgorithmDictionary {
        hash: Some("SHA-384"),
        ..AlgorithmDictionary::named("HMAC")
    })
    .unwrap();
    let key = derive_key(&params, &password, &derived_type, false, usages(&[KeyUsage::Sign])).unwrap();
    assert_eq!(key.algorithm().length(), Some(1024));
    assert_eq!(key.algorithm().hash(), Some(HashAlgorithm::Sha384));
    assert!(!key.extractable());
}

#[test]
fn timing_safe_equal_compares_contents() {
    assert!(timing_safe_equal(b"abc", b"abc").unwrap());
    assert!(!timing_safe_equal(b"abc", b"abd").unwrap());
    assert!(timing_safe_equal(b"", b"").unwrap());
    assert_eq!(timing_safe_equal(b"abc", b"ab").unwrap_err().name(), "TypeError");
}
