//! Every failure the spec (or workerd, where it differs) names, checked for the exception name.

use crate::jwk::encode_member;
use crate::test_vectors::{import_params, raw_secret, rng, usages};
use crate::{
    AlgorithmDictionary, CryptoError, CryptoKey, DeriveParams, DerivedKeyType, EncryptParams, GenerateKeyParams,
    GeneratedKey, HashAlgorithm, JsonWebKey, KeyData, KeyFormat, KeyUsage, RsaOtherPrimesInfo, SignParams, decrypt,
    derive_bits, derive_key, encrypt, export_key, generate_key, import_key, sign, unwrap_key, verify, wrap_key,
};

fn expect<T: std::fmt::Debug>(result: Result<T, CryptoError>, name: &str) {
    match result {
        Ok(value) => panic!("expected {name}, got Ok({value:?})"),
        Err(error) => assert_eq!(error.name(), name, "{}", error.message()),
    }
}

fn aes(name: &str, list: &[KeyUsage]) -> CryptoKey {
    raw_secret(name, None, &[0x42; 16], list)
}

fn generated_pair(dictionary: AlgorithmDictionary<'_>, list: &[KeyUsage]) -> crate::CryptoKeyPair {
    let params = GenerateKeyParams::from_dictionary(&dictionary).unwrap();
    match generate_key(&params, true, usages(list), &mut rng()).unwrap() {
        GeneratedKey::Pair(pair) => pair,
        GeneratedKey::Secret(_) => panic!("expected a pair"),
    }
}

#[test]
fn a_key_used_without_its_usage_or_for_another_algorithm_is_invalid_access() {
    let iv = [0u8; 16];
    let cbc = EncryptParams::AesCbc { iv: &iv };
    let decrypt_only = aes("AES-CBC", &[KeyUsage::Decrypt]);
    expect(encrypt(&cbc, &decrypt_only, b"x", &mut rng()), "InvalidAccessError");
    let gcm_key = aes("AES-GCM", &[KeyUsage::Encrypt, KeyUsage::Decrypt]);
    expect(encrypt(&cbc, &gcm_key, b"x", &mut rng()), "InvalidAccessError");
    let verify_only = raw_secret("HMAC", Some("SHA-256"), b"key", &[KeyUsage::Verify]);
    expect(sign(&SignParams::Hmac, &verify_only, b"x", &mut rng()), "InvalidAccessError");
    let sign_only = raw_secret("HMAC", Some("SHA-256"), b"key", &[KeyUsage::Sign]);
    expect(verify(&SignParams::Hmac, &sign_only, b"", b"x"), "InvalidAccessError");
    expect(
        wrap_key(
            KeyFormat::Raw,
            &gcm_key,
            &gcm_key,
            &EncryptParams::AesGcm { iv: &iv, additional_data: None, tag_length: None },
            &mut rng(),
        ),
        "InvalidAccessError",
    );
    let pair = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-256"), ..AlgorithmDictionary::named("ECDSA") },
        &[KeyUsage::Sign, KeyUsage::Verify],
    );
    // ECDSA params against an HMAC key, and an Ed25519 request against an ECDSA key.
    expect(
        sign(&SignParams::Ecdsa { hash: HashAlgorithm::Sha256 }, &sign_only, b"x", &mut rng()),
        "InvalidAccessError",
    );
    expect(sign(&SignParams::Ed25519, &pair.private_key, b"x", &mut rng()), "InvalidAccessError");
    expect(
        sign(&SignParams::Ecdsa { hash: HashAlgorithm::Sha256 }, &pair.public_key, b"x", &mut rng()),
        "InvalidAccessError",
    );
}

#[test]
fn non_extractable_keys_cannot_be_exported_or_wrapped() {
    let key = import_key(
        KeyFormat::Raw,
        KeyData::Bytes(&[1; 32]),
        &import_params("AES-GCM", None, None),
        false,
        usages(&[KeyUsage::Encrypt]),
    )
    .unwrap();
    expect(export_key(KeyFormat::Raw, &key), "InvalidAccessError");
    let kw = aes("AES-KW", &[KeyUsage::WrapKey]);
    expect(wrap_key(KeyFormat::Raw, &key, &kw, &EncryptParams::AesKw, &mut rng()), "InvalidAccessError");
}

#[test]
fn bad_usages_are_syntax_errors() {
    expect(
        import_key(
            KeyFormat::Raw,
            KeyData::Bytes(&[0; 16]),
            &import_params("AES-KW", None, None),
            true,
            usages(&[KeyUsage::Encrypt]),
        ),
        "SyntaxError",
    );
    expect(
        import_key(KeyFormat::Raw, KeyData::Bytes(&[0; 16]), &import_params("AES-CBC", None, None), true, usages(&[])),
        "SyntaxError",
    );
    expect(
        import_key(
            KeyFormat::Raw,
            KeyData::Bytes(b"password"),
            &import_params("PBKDF2", None, None),
            true,
            usages(&[KeyUsage::DeriveBits]),
        ),
        "SyntaxError",
    );
    let ecdsa = GenerateKeyParams::from_dictionary(&AlgorithmDictionary {
        named_curve: Some("P-256"),
        ..AlgorithmDictionary::named("ECDSA")
    })
    .unwrap();
    // Only a public-key usage leaves the private key with none.
    expect(generate_key(&ecdsa, true, usages(&[KeyUsage::Verify]), &mut rng()), "SyntaxError");
    expect(generate_key(&ecdsa, true, usages(&[KeyUsage::Encrypt]), &mut rng()), "SyntaxError");
    // ECDH public keys take no usages.
    let pair = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-256"), ..AlgorithmDictionary::named("ECDH") },
        &[KeyUsage::DeriveBits],
    );
    let crate::ExportedKey::Bytes(raw) = export_key(KeyFormat::Raw, &pair.public_key).unwrap() else {
        panic!("raw export is bytes");
    };
    expect(
        import_key(
            KeyFormat::Raw,
            KeyData::Bytes(&raw),
            &import_params("ECDH", None, Some("P-256")),
            true,
            usages(&[KeyUsage::DeriveBits]),
        ),
        "SyntaxError",
    );
}

fn import_jwk(
    jwk: &JsonWebKey,
    params: &crate::ImportKeyParams,
    extractable: bool,
    list: &[KeyUsage],
) -> Result<CryptoKey, CryptoError> {
    import_key(KeyFormat::Jwk, KeyData::Jwk(jwk), params, extractable, usages(list))
}

#[test]
fn bad_symmetric_jwks_are_data_errors() {
    let good = JsonWebKey {
        kty: Some("oct".into()),
        k: Some(encode_member(&[7; 16])),
        alg: Some("A128GCM".into()),
        key_use: Some("enc".into()),
        key_ops: Some(vec!["encrypt".into(), "decrypt".into()]),
        ext: Some(true),
        ..JsonWebKey::default()
    };
    let gcm = import_params("AES-GCM", None, None);
    assert!(import_jwk(&good, &gcm, true, &[KeyUsage::Encrypt]).is_ok());
    let bad = [
        JsonWebKey { kty: Some("RSA".into()), ..good.clone() },
        JsonWebKey { kty: None, ..good.clone() },
        JsonWebKey { k: None, ..good.clone() },
        JsonWebKey { k: Some("not*base64".into()), ..good.clone() },
        JsonWebKey { k: Some(encode_member(&[7; 15])), alg: None, ..good.clone() },
        JsonWebKey { alg: Some("A256GCM".into()), ..good.clone() },
        JsonWebKey { alg: Some("A128CBC".into()), ..good.clone() },
        JsonWebKey { key_use: Some("sig".into()), ..good.clone() },
        JsonWebKey { key_ops: Some(vec!["decrypt".into()]), ..good.clone() },
        JsonWebKey { key_ops: Some(vec!["encrypt".into(), "encrypt".into()]), ..good.clone() },
        JsonWebKey { ext: Some(false), ..good.clone() },
    ];
    for jwk in bad {
        expect(import_jwk(&jwk, &gcm, true, &[KeyUsage::Encrypt]), "DataError");
    }
    let hmac = import_params("HMAC", Some("SHA-256"), None);
    let hmac_jwk = JsonWebKey {
        kty: Some("oct".into()),
        k: Some(encode_member(b"secret")),
        alg: Some("HS384".into()),
        ..JsonWebKey::default()
    };
    expect(import_jwk(&hmac_jwk, &hmac, true, &[KeyUsage::Sign]), "DataError");
    let md5 = import_params("HMAC", Some("MD5"), None);
    expect(import_jwk(&hmac_jwk, &md5, true, &[KeyUsage::Sign]), "NotSupportedError");
}

#[test]
fn bad_asymmetric_jwks_are_data_errors() {
    let pair = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-256"), ..AlgorithmDictionary::named("ECDSA") },
        &[KeyUsage::Sign, KeyUsage::Verify],
    );
    let crate::ExportedKey::Jwk(private) = export_key(KeyFormat::Jwk, &pair.private_key).unwrap() else {
        panic!("jwk export is a JWK");
    };
    let ecdsa = import_params("ECDSA", None, Some("P-256"));
    assert!(import_jwk(&private, &ecdsa, true, &[KeyUsage::Sign]).is_ok());
    let mut off_curve = private.clone();
    off_curve.y = off_curve.x.clone();
    let other = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-256"), ..AlgorithmDictionary::named("ECDSA") },
        &[KeyUsage::Sign],
    );
    let crate::ExportedKey::Jwk(other) = export_key(KeyFormat::Jwk, &other.private_key).unwrap() else {
        panic!("jwk export is a JWK");
    };
    let bad = [
        JsonWebKey { kty: Some("OKP".into()), ..private.clone() },
        JsonWebKey { crv: Some("P-384".into()), ..private.clone() },
        JsonWebKey { crv: None, ..private.clone() },
        JsonWebKey { x: None, ..private.clone() },
        JsonWebKey { alg: Some("ES384".into()), ..private.clone() },
        JsonWebKey { key_use: Some("enc".into()), ..private.clone() },
        JsonWebKey { d: other.d.clone(), ..private.clone() },
        JsonWebKey { d: Some(encode_member(&[0; 33])), ..private.clone() },
        off_curve,
    ];
    for jwk in bad {
        expect(import_jwk(&jwk, &ecdsa, true, &[KeyUsage::Sign]), "DataError");
    }
    expect(
        import_jwk(&JsonWebKey { alg: Some("ES999".into()), ..private.clone() }, &ecdsa, true, &[KeyUsage::Sign]),
        "NotSupportedError",
    );

    let rsa_private = import_key(
        KeyFormat::Pkcs8,
        KeyData::Bytes(include_bytes!("fixtures/rsa1024.pkcs8.der")),
        &import_params("RSA-PSS", Some("SHA-256"), None),
        true,
        usages(&[KeyUsage::Sign]),
    )
    .unwrap();
    let crate::ExportedKey::Jwk(rsa) = export_key(KeyFormat::Jwk, &rsa_private).unwrap() else {
        panic!("jwk export is a JWK");
    };
    let pss = import_params("RSA-PSS", Some("SHA-256"), None);
    assert!(import_jwk(&rsa, &pss, true, &[KeyUsage::Sign]).is_ok());
    let bad = [
        JsonWebKey { n: None, ..rsa.clone() },
        JsonWebKey { e: Some("!!".into()), ..rsa.clone() },
        JsonWebKey { alg: Some("PS384".into()), ..rsa.clone() },
        JsonWebKey { alg: Some("RS256".into()), ..rsa.clone() },
        JsonWebKey { p: None, ..rsa.clone() },
        JsonWebKey { qi: rsa.dp.clone(), ..rsa.clone() },
        JsonWebKey { d: rsa.p.clone(), ..rsa.clone() },
        JsonWebKey { key_use: Some("enc".into()), ..rsa.clone() },
    ];
    for jwk in bad {
        expect(import_jwk(&jwk, &pss, true, &[KeyUsage::Sign]), "DataError");
    }
    expect(
        import_jwk(
            &JsonWebKey { oth: Some(vec![RsaOtherPrimesInfo::default()]), ..rsa.clone() },
            &pss,
            true,
            &[KeyUsage::Sign],
        ),
        "NotSupportedError",
    );
    // An exponent outside workerd's allowed set.
    expect(
        import_jwk(
            &JsonWebKey {
                e: Some(encode_member(&[5])),
                key_ops: None,
                d: None,
                p: None,
                q: None,
                dp: None,
                dq: None,
                qi: None,
                ..rsa.clone()
            },
            &pss,
            true,
            &[KeyUsage::Verify],
        ),
        "OperationError",
    );

    let okp = JsonWebKey {
        kty: Some("OKP".into()),
        crv: Some("X25519".into()),
        x: Some(encode_member(&[9; 32])),
        ..JsonWebKey::default()
    };
    let ed25519 = import_params("Ed25519", None, None);
    expect(import_jwk(&okp, &ed25519, true, &[KeyUsage::Verify]), "NotSupportedError");
    let ed = JsonWebKey { crv: Some("Ed25519".into()), ..okp.clone() };
    assert!(import_jwk(&ed, &ed25519, true, &[KeyUsage::Verify]).is_ok());
    expect(
        import_jwk(&JsonWebKey { x: Some(encode_member(&[9; 31])), ..ed.clone() }, &ed25519, true, &[]),
        "DataError",
    );
    expect(
        import_jwk(&JsonWebKey { alg: Some("ES256".into()), ..ed.clone() }, &ed25519, true, &[KeyUsage::Verify]),
        "DataError",
    );
    expect(
        import_jwk(&JsonWebKey { d: Some(encode_member(&[1; 32])), ..ed }, &ed25519, true, &[KeyUsage::Sign]),
        "DataError",
    );
}

#[test]
fn bad_lengths_and_formats_are_refused_with_the_named_errors() {
    expect(
        import_key(
            KeyFormat::Raw,
            KeyData::Bytes(&[0; 15]),
            &import_params("AES-CTR", None, None),
            true,
            usages(&[KeyUsage::Encrypt]),
        ),
        "DataError",
    );
    expect(
        import_key(
            KeyFormat::Pkcs8,
            KeyData::Bytes(&[0; 16]),
            &import_params("AES-CTR", None, None),
            true,
            usages(&[KeyUsage::Encrypt]),
        ),
        "NotSupportedError",
    );
    expect(
        import_key(
            KeyFormat::Raw,
            KeyData::Bytes(&[0; 16]),
            &import_params("RSA-OAEP", Some("SHA-1"), None),
            true,
            usages(&[KeyUsage::Encrypt]),
        ),
        "NotSupportedError",
    );
    expect(
        import_key(
            KeyFormat::Spki,
            KeyData::Bytes(&[0; 16]),
            &import_params("HKDF", None, None),
            false,
            usages(&[KeyUsage::DeriveBits]),
        ),
        "NotSupportedError",
    );
    let hmac = |length, bytes: &[u8]| {
        import_key(
            KeyFormat::Raw,
            KeyData::Bytes(bytes),
            &crate::ImportKeyParams::Hmac { hash: HashAlgorithm::Sha256, length },
            true,
            usages(&[KeyUsage::Sign]),
        )
    };
    expect(hmac(None, &[]), "DataError");
    expect(hmac(Some(17), &[1, 2]), "DataError");
    expect(hmac(Some(8), &[1, 2]), "DataError");
    assert_eq!(hmac(Some(9), &[1, 0xff]).unwrap().algorithm().length(), Some(9));

    let generate = |dictionary: AlgorithmDictionary<'_>, list: &[KeyUsage]| {
        generate_key(&GenerateKeyParams::from_dictionary(&dictionary).unwrap(), true, usages(list), &mut rng())
    };
    expect(
        generate(
            AlgorithmDictionary { length: Some(100), ..AlgorithmDictionary::named("AES-GCM") },
            &[KeyUsage::Encrypt],
        ),
        "OperationError",
    );
    expect(
        generate(
            AlgorithmDictionary { hash: Some("SHA-1"), length: Some(0), ..AlgorithmDictionary::named("HMAC") },
            &[KeyUsage::Sign],
        ),
        "OperationError",
    );
    expect(
        generate(
            AlgorithmDictionary { hash: Some("SHA-1"), length: Some(u32::MAX), ..AlgorithmDictionary::named("HMAC") },
            &[KeyUsage::Sign],
        ),
        "OperationError",
    );
    // 8192-bit keys import fine but are not generated (that would hold the core for most of a minute).
    for (modulus, exponent) in [
        (1000, &[1u8, 0, 1][..]),
        (512, &[1, 0, 1]),
        (8192, &[1, 0, 1]),
        (16384, &[1, 0, 1]),
        (2048, &[5]),
        (2048, &[1; 20]),
    ] {
        expect(
            generate(
                AlgorithmDictionary {
                    modulus_length: Some(modulus),
                    public_exponent: Some(exponent),
                    hash: Some("SHA-256"),
                    ..AlgorithmDictionary::named("RSA-PSS")
                },
                &[KeyUsage::Sign],
            ),
            "OperationError",
        );
    }
}

#[test]
fn bad_aes_parameters_and_tampered_data_are_operation_errors() {
    let key = aes("AES-GCM", &[KeyUsage::Encrypt, KeyUsage::Decrypt]);
    let gcm = |iv, tag_length| EncryptParams::AesGcm { iv, additional_data: Some(b"aad"), tag_length };
    let iv = [3u8; 12];
    expect(encrypt(&gcm(&[], None), &key, b"x", &mut rng()), "OperationError");
    expect(encrypt(&gcm(&iv, Some(100)), &key, b"x", &mut rng()), "OperationError");
    expect(encrypt(&gcm(&[3; 8], None), &key, b"x", &mut rng()), "NotSupportedError");
    expect(decrypt(&gcm(&iv, None), &key, &[0; 15], &mut rng()), "OperationError");
    let sealed = encrypt(&gcm(&iv, None), &key, b"attack at dawn", &mut rng()).unwrap();
    for index in [0, sealed.len() - 1] {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x80;
        expect(decrypt(&gcm(&iv, None), &key, &tampered, &mut rng()), "OperationError");
    }
    let other_aad = EncryptParams::AesGcm { iv: &iv, additional_data: Some(b"AAD"), tag_length: None };
    expect(decrypt(&other_aad, &key, &sealed, &mut rng()), "OperationError");
    expect(decrypt(&gcm(&iv, Some(96)), &key, &sealed, &mut rng()), "OperationError");

    let cbc_key = aes("AES-CBC", &[KeyUsage::Encrypt, KeyUsage::Decrypt]);
    expect(encrypt(&EncryptParams::AesCbc { iv: &[0; 15] }, &cbc_key, b"x", &mut rng()), "OperationError");
    let cbc = EncryptParams::AesCbc { iv: &[0; 16] };
    let ciphertext = encrypt(&cbc, &cbc_key, b"sixteen byte msg", &mut rng()).unwrap();
    expect(decrypt(&cbc, &cbc_key, &ciphertext[..17], &mut rng()), "OperationError");
    expect(decrypt(&cbc, &cbc_key, &[], &mut rng()), "OperationError");
    let wrong_key = raw_secret("AES-CBC", None, &[0x43; 16], &[KeyUsage::Decrypt]);
    // A wrong key leaves garbage padding (the last block decrypts to noise).
    expect(decrypt(&cbc, &wrong_key, &ciphertext, &mut rng()), "OperationError");

    let ctr_key = aes("AES-CTR", &[KeyUsage::Encrypt]);
    let ctr = |counter, length| EncryptParams::AesCtr { counter, length };
    expect(encrypt(&ctr(&[0; 15], 64), &ctr_key, b"x", &mut rng()), "OperationError");
    expect(encrypt(&ctr(&[0; 16], 0), &ctr_key, b"x", &mut rng()), "OperationError");
    expect(encrypt(&ctr(&[0; 16], 129), &ctr_key, b"x", &mut rng()), "OperationError");
    // A 1-bit counter has two values: three blocks would reuse one.
    assert!(encrypt(&ctr(&[0; 16], 1), &ctr_key, &[0; 32], &mut rng()).is_ok());
    expect(encrypt(&ctr(&[0; 16], 1), &ctr_key, &[0; 33], &mut rng()), "OperationError");

    let kw = aes("AES-KW", &[KeyUsage::WrapKey, KeyUsage::UnwrapKey]);
    let wrapped =
        wrap_key(KeyFormat::Raw, &aes("AES-CBC", &[KeyUsage::Encrypt]), &kw, &EncryptParams::AesKw, &mut rng())
            .unwrap();
    let mut tampered = wrapped.clone();
    tampered[5] ^= 1;
    let unwrap_with = |bytes: &[u8]| {
        unwrap_key(
            KeyFormat::Raw,
            bytes,
            &kw,
            &EncryptParams::AesKw,
            &import_params("AES-CBC", None, None),
            true,
            usages(&[KeyUsage::Encrypt]),
            &mut rng(),
        )
    };
    expect(unwrap_with(&tampered), "OperationError");
    expect(unwrap_with(&wrapped[..20]), "OperationError");
    expect(unwrap_with(&wrapped[..16]), "OperationError");
}

#[test]
fn counter_wrap_around_matches_an_explicit_split() {
    // With a 4-bit counter starting at 14, blocks use counters 14, 15, 0, 1: the same as encrypting
    // two blocks from 14 and two from 0 (with the upper bits kept).
    let key = aes("AES-CTR", &[KeyUsage::Encrypt]);
    let mut start = [0xabu8; 16];
    start[15] = 0xae;
    let mut wrapped = start;
    wrapped[15] = 0xa0;
    let data = [0x5au8; 64];
    let whole = encrypt(&EncryptParams::AesCtr { counter: &start, length: 4 }, &key, &data, &mut rng()).unwrap();
    let first =
        encrypt(&EncryptParams::AesCtr { counter: &start, length: 128 }, &key, &data[..32], &mut rng()).unwrap();
    let second =
        encrypt(&EncryptParams::AesCtr { counter: &wrapped, length: 128 }, &key, &data[32..], &mut rng()).unwrap();
    assert_eq!(whole, [first, second].concat());
    // The all-ones block, which the ctr crate cannot produce, is still right: a full-width counter
    // at 2^128 - 1 wraps to zero.
    let all_ones = [0xffu8; 16];
    let zero = [0u8; 16];
    let whole =
        encrypt(&EncryptParams::AesCtr { counter: &all_ones, length: 128 }, &key, &data[..32], &mut rng()).unwrap();
    let tail =
        encrypt(&EncryptParams::AesCtr { counter: &zero, length: 128 }, &key, &data[16..32], &mut rng()).unwrap();
    assert_eq!(&whole[16..], &tail[..]);
    let ecb_of_all_ones = encrypt(
        &EncryptParams::AesCbc { iv: &all_ones },
        &raw_secret("AES-CBC", None, &[0x42; 16], &[KeyUsage::Encrypt]),
        &[0; 16],
        &mut rng(),
    )
    .unwrap();
    let keystream: Vec<u8> = whole[..16].iter().zip(&data[..16]).map(|(c, p)| c ^ p).collect();
    // CBC of a zero block under IV all-ones is AES(all-ones): the CTR keystream block.
    assert_eq!(keystream, ecb_of_all_ones[..16]);
}

#[test]
fn bad_exports_are_named_as_workerd_names_them() {
    let pair = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-384"), ..AlgorithmDictionary::named("ECDSA") },
        &[KeyUsage::Sign, KeyUsage::Verify],
    );
    expect(export_key(KeyFormat::Raw, &pair.private_key), "InvalidAccessError");
    expect(export_key(KeyFormat::Spki, &pair.private_key), "InvalidAccessError");
    expect(export_key(KeyFormat::Pkcs8, &pair.public_key), "InvalidAccessError");
    let ed = generated_pair(AlgorithmDictionary::named("Ed25519"), &[KeyUsage::Sign]);
    expect(export_key(KeyFormat::Raw, &ed.private_key), "InvalidAccessError");
    expect(export_key(KeyFormat::Pkcs8, &ed.public_key), "InvalidAccessError");
    let rsa = import_key(
        KeyFormat::Pkcs8,
        KeyData::Bytes(include_bytes!("fixtures/rsa1024.pkcs8.der")),
        &import_params("RSASSA-PKCS1-v1_5", Some("MD5"), None),
        true,
        usages(&[KeyUsage::Sign]),
    )
    .unwrap();
    expect(export_key(KeyFormat::Raw, &rsa), "InvalidAccessError");
    expect(export_key(KeyFormat::Spki, &rsa), "InvalidAccessError");
    expect(export_key(KeyFormat::Jwk, &rsa), "NotSupportedError");
    expect(export_key(KeyFormat::Spki, &aes("AES-GCM", &[KeyUsage::Encrypt])), "NotSupportedError");
    let hmac_md5 = raw_secret("HMAC", Some("MD5"), b"k", &[KeyUsage::Sign]);
    expect(export_key(KeyFormat::Jwk, &hmac_md5), "NotSupportedError");
    // MD5 still signs (workerd allows it everywhere a hash is named).
    assert_eq!(sign(&SignParams::RsassaPkcs1V15, &rsa, b"x", &mut rng()).unwrap().len(), 128);
}

#[test]
fn bad_derivations_are_named() {
    let p256 = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-256"), ..AlgorithmDictionary::named("ECDH") },
        &[KeyUsage::DeriveBits, KeyUsage::DeriveKey],
    );
    let p384 = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-384"), ..AlgorithmDictionary::named("ECDH") },
        &[KeyUsage::DeriveBits],
    );
    let ecdsa = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-256"), ..AlgorithmDictionary::named("ECDSA") },
        &[KeyUsage::Sign, KeyUsage::Verify],
    );
    let ecdh = |public| DeriveParams::Ecdh { public };
    expect(derive_bits(&ecdh(&p384.public_key), &p256.private_key, None), "InvalidAccessError");
    expect(derive_bits(&ecdh(&p256.private_key), &p256.private_key, None), "InvalidAccessError");
    expect(derive_bits(&ecdh(&ecdsa.public_key), &p256.private_key, None), "InvalidAccessError");
    expect(derive_bits(&ecdh(&p256.public_key), &p256.public_key, None), "InvalidAccessError");
    expect(derive_bits(&ecdh(&p256.public_key), &p256.private_key, Some(257)), "OperationError");
    assert_eq!(derive_bits(&ecdh(&p256.public_key), &p256.private_key, Some(0)).unwrap(), Vec::<u8>::new());

    let x25519 = generated_pair(AlgorithmDictionary::named("X25519"), &[KeyUsage::DeriveBits]);
    let zero_point =
        import_key(KeyFormat::Raw, KeyData::Bytes(&[0; 32]), &import_params("X25519", None, None), true, usages(&[]))
            .unwrap();
    expect(derive_bits(&DeriveParams::X25519 { public: &zero_point }, &x25519.private_key, None), "OperationError");
    expect(
        derive_bits(&DeriveParams::X25519 { public: &x25519.public_key }, &x25519.private_key, Some(264)),
        "OperationError",
    );

    let hkdf_key = import_key(
        KeyFormat::Raw,
        KeyData::Bytes(b"input keying material"),
        &import_params("HKDF", None, None),
        false,
        usages(&[KeyUsage::DeriveBits, KeyUsage::DeriveKey]),
    )
    .unwrap();
    let hkdf = DeriveParams::Hkdf { hash: HashAlgorithm::Sha256, salt: b"", info: b"" };
    expect(derive_bits(&hkdf, &hkdf_key, None), "OperationError");
    expect(derive_bits(&hkdf, &hkdf_key, Some(12)), "OperationError");
    expect(derive_bits(&hkdf, &hkdf_key, Some(255 * 256 + 8)), "OperationError");
    assert_eq!(derive_bits(&hkdf, &hkdf_key, Some(255 * 256)).unwrap().len(), 255 * 32);

    let pbkdf2_key = import_key(
        KeyFormat::Raw,
        KeyData::Bytes(b"password"),
        &import_params("PBKDF2", None, None),
        false,
        usages(&[KeyUsage::DeriveBits, KeyUsage::DeriveKey]),
    )
    .unwrap();
    let pbkdf2 = |iterations| DeriveParams::Pbkdf2 { hash: HashAlgorithm::Sha256, salt: b"salt", iterations };
    expect(derive_bits(&pbkdf2(0), &pbkdf2_key, Some(256)), "OperationError");
    expect(derive_bits(&pbkdf2(100_001), &pbkdf2_key, Some(256)), "NotSupportedError");
    expect(derive_bits(&pbkdf2(1), &pbkdf2_key, None), "OperationError");
    // A PBKDF2 key is not an HKDF key.
    expect(derive_bits(&hkdf, &pbkdf2_key, Some(256)), "InvalidAccessError");

    let derived = |dictionary| DerivedKeyType::from_dictionary(&dictionary).unwrap();
    expect(
        derive_key(
            &pbkdf2(1),
            &pbkdf2_key,
            &derived(AlgorithmDictionary { length: Some(100), ..AlgorithmDictionary::named("AES-CBC") }),
            true,
            usages(&[KeyUsage::Encrypt]),
        ),
        "OperationError",
    );
    expect(
        derive_key(
            &pbkdf2(1),
            &pbkdf2_key,
            &derived(AlgorithmDictionary {
                hash: Some("SHA-1"),
                length: Some(0),
                ..AlgorithmDictionary::named("HMAC")
            }),
            true,
            usages(&[KeyUsage::Sign]),
        ),
        "TypeError",
    );
    // Deriving an HKDF key has no length to derive: PBKDF2 refuses a null length.
    expect(
        derive_key(
            &pbkdf2(1),
            &pbkdf2_key,
            &derived(AlgorithmDictionary::named("HKDF")),
            false,
            usages(&[KeyUsage::DeriveBits]),
        ),
        "OperationError",
    );
}

#[test]
fn bad_signatures_and_messages_are_named_as_workerd_names_them() {
    let ed = generated_pair(AlgorithmDictionary::named("Ed25519"), &[KeyUsage::Sign, KeyUsage::Verify]);
    // workerd: a signature that is not 64 bytes is an OperationError (the spec says false).
    expect(verify(&SignParams::Ed25519, &ed.public_key, &[0; 63], b"x"), "OperationError");
    let ecdsa = generated_pair(
        AlgorithmDictionary { named_curve: Some("P-256"), ..AlgorithmDictionary::named("ECDSA") },
        &[KeyUsage::Sign, KeyUsage::Verify],
    );
    let params = SignParams::Ecdsa { hash: HashAlgorithm::Sha256 };
    // ECDSA: a wrong-length or out-of-range signature is just false; DER is not accepted.
    assert!(!verify(&params, &ecdsa.public_key, &[0; 63], b"x").unwrap());
    assert!(!verify(&params, &ecdsa.public_key, &[0; 64], b"x").unwrap());
    assert!(!verify(&params, &ecdsa.public_key, &[0xff; 64], b"x").unwrap());

    let rsa = import_key(
        KeyFormat::Pkcs8,
        KeyData::Bytes(include_bytes!("fixtures/rsa1024.pkcs8.der")),
        &import_params("RSA-PSS", Some("SHA-512"), None),
        true,
        usages(&[KeyUsage::Sign]),
    )
    .unwrap();
    // 1024-bit modulus, SHA-512: at most 128 - 64 - 2 = 62 bytes of salt.
    assert!(sign(&SignParams::RsaPss { salt_length: 62 }, &rsa, b"x", &mut rng()).is_ok());
    expect(sign(&SignParams::RsaPss { salt_length: 63 }, &rsa, b"x", &mut rng()), "OperationError");
    expect(sign(&SignParams::RsaPss { salt_length: u32::MAX }, &rsa, b"x", &mut rng()), "OperationError");

    let oaep = import_key(
        KeyFormat::Spki,
        KeyData::Bytes(include_bytes!("fixtures/rsa2048.spki.der")),
        &import_params("RSA-OAEP", Some("SHA-256"), None),
        true,
        usages(&[KeyUsage::Encrypt]),
    )
    .unwrap();
    let params = EncryptParams::RsaOaep { label: None };
    // 2048-bit modulus, SHA-256: at most 256 - 2 * 32 - 2 = 190 bytes of plaintext.
    assert!(encrypt(&params, &oaep, &[1; 190], &mut rng()).is_ok());
    expect(encrypt(&params, &oaep, &[1; 191], &mut rng()), "OperationError");
}

#[test]
fn unwrapping_garbage_as_a_jwk_is_a_data_error() {
    let key = aes("AES-GCM", &[KeyUsage::Encrypt, KeyUsage::UnwrapKey]);
    let iv = [5u8; 12];
    let params = EncryptParams::AesGcm { iv: &iv, additional_data: None, tag_length: None };
    for plaintext in [&b"not json"[..], b"{\"kty\": 1}", b"[]"] {
        let wrapped = encrypt(&params, &key, plaintext, &mut rng()).unwrap();
        expect(
            unwrap_key(
                KeyFormat::Jwk,
                &wrapped,
                &key,
                &params,
                &import_params("AES-GCM", None, None),
                true,
                usages(&[KeyUsage::Encrypt]),
                &mut rng(),
            ),
            "DataError",
        );
    }
}

#[test]
fn jwk_data_with_a_bytes_format_is_a_type_error() {
    let jwk = JsonWebKey::default();
    for (format, params, usage) in [
        (KeyFormat::Raw, import_params("AES-GCM", None, None), KeyUsage::Encrypt),
        (KeyFormat::Pkcs8, import_params("ECDSA", None, Some("P-256")), KeyUsage::Sign),
        (KeyFormat::Spki, import_params("RSA-PSS", Some("SHA-1"), None), KeyUsage::Verify),
    ] {
        expect(import_key(format, KeyData::Jwk(&jwk), &params, true, usages(&[usage])), "TypeError");
    }
    expect(
        import_key(
            KeyFormat::Jwk,
            KeyData::Bytes(b"{}"),
            &import_params("Ed25519", None, None),
            true,
            usages(&[KeyUsage::Verify]),
        ),
        "TypeError",
    );
}
