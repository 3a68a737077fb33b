//! Published known-answer vectors, each with its source. The vectors are facts from the cited
//! documents; everything else here is isobar's.

use crate::jwk::encode_member;
use crate::test_vectors::{hex, import_params, raw_secret, rng, usages};
use crate::{
    AlgorithmDictionary, CryptoKey, DeriveParams, EncryptParams, ExportedKey, HashAlgorithm, JsonWebKey, KeyData,
    KeyFormat, KeyUsage, SignParams, decrypt, derive_bits, encrypt, export_key, import_key, sign, unwrap_key, verify,
    wrap_key,
};

fn hmac_sign(hash: &str, key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = raw_secret("HMAC", Some(hash), key, &[KeyUsage::Sign, KeyUsage::Verify]);
    let mac = sign(&SignParams::Hmac, &key, data, &mut rng()).unwrap();
    assert!(verify(&SignParams::Hmac, &key, &mac, data).unwrap());
    mac
}

#[test]
fn hmac_matches_rfc_4231_and_rfc_2202() {
    // RFC 4231 section 4.2 (test case 1) and 4.3 (test case 2).
    let key = [0x0b; 20];
    assert_eq!(
        hmac_sign("SHA-256", &key, b"Hi There"),
        hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    );
    assert_eq!(
        hmac_sign("SHA-384", &key, b"Hi There"),
        hex("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6")
    );
    assert_eq!(
        hmac_sign("SHA-512", &key, b"Hi There"),
        hex("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4\
             be9d914eeb61f1702e696c203a126854")
    );
    assert_eq!(
        hmac_sign("SHA-256", b"Jefe", b"what do ya want for nothing?"),
        hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    // RFC 2202 section 3 (HMAC-SHA-1, test case 1) and section 2 (HMAC-MD5, test case 1).
    assert_eq!(hmac_sign("SHA-1", &key, b"Hi There"), hex("b617318655057264e28bc0b6fb378c8ef146be00"));
    assert_eq!(hmac_sign("MD5", &[0x0b; 16], b"Hi There"), hex("9294727a3638bb1c13f48ef8158bfc9d"));
}

fn kdf_key(name: &str, secret: &[u8]) -> CryptoKey {
    import_key(
        KeyFormat::Raw,
        KeyData::Bytes(secret),
        &import_params(name, None, None),
        false,
        usages(&[KeyUsage::DeriveBits]),
    )
    .unwrap()
}

#[test]
fn hkdf_matches_rfc_5869() {
    let info = hex("f0f1f2f3f4f5f6f7f8f9");
    let salt = hex("000102030405060708090a0b0c");
    let cases = [
        // Test case 1 (SHA-256).
        (
            HashAlgorithm::Sha256,
            vec![0x0b; 22],
            salt.clone(),
            info.clone(),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        // Test case 3 (SHA-256, empty salt and info).
        (
            HashAlgorithm::Sha256,
            vec![0x0b; 22],
            Vec::new(),
            Vec::new(),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
        // Test case 4 (SHA-1).
        (
            HashAlgorithm::Sha1,
            vec![0x0b; 11],
            salt,
            info,
            "085a01ea1b10f36933068b56efa5ad81a4f14b822f5b091568a9cdd4f155fda2c22e422478d305f3f896",
        ),
    ];
    for (hash, ikm, salt, info, okm) in cases {
        let key = kdf_key("HKDF", &ikm);
        let params = DeriveParams::Hkdf { hash, salt: &salt, info: &info };
        assert_eq!(derive_bits(&params, &key, Some(42 * 8)).unwrap(), hex(okm));
    }
}

#[test]
fn pbkdf2_matches_rfc_6070_and_rfc_7914() {
    // RFC 6070 section 2 (PBKDF2-HMAC-SHA1).
    let cases: [(&[u8], &[u8], u32, &str); 4] = [
        (b"password", b"salt", 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
        (b"password", b"salt", 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"),
        (b"password", b"salt", 4096, "4b007901b765489abead49d926f721d065a429c1"),
        (
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
        ),
    ];
    for (password, salt, iterations, expected) in cases {
        let key = kdf_key("PBKDF2", password);
        let expected = hex(expected);
        let params = DeriveParams::Pbkdf2 { hash: HashAlgorithm::Sha1, salt, iterations };
        assert_eq!(derive_bits(&params, &key, Some(expected.len() as u32 * 8)).unwrap(), expected);
    }
    // RFC 7914 section 11 (PBKDF2-HMAC-SHA256).
    let key = kdf_key("PBKDF2", b"passwd");
    let params = DeriveParams::Pbkdf2 { hash: HashAlgorithm::Sha256, salt: b"salt", iterations: 1 };
    assert_eq!(
        derive_bits(&params, &key, Some(512)).unwrap(),
        hex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef31\
             7c71b845b1e30bd509112041d3a19783")
    );
}

#[test]
fn aes_kw_matches_rfc_3394() {
    let kek_bytes = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
    // Section 4.1 (128-bit KEK, 128-bit key), 4.2 (192-bit KEK), 4.6 (256-bit KEK, 256-bit key).
    let cases = [
        (16, "00112233445566778899AABBCCDDEEFF", "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"),
        (24, "00112233445566778899AABBCCDDEEFF", "96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D"),
        (
            32,
            "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
            "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21",
        ),
    ];
    for (kek_length, key_data, wrapped) in cases {
        let kek = raw_secret("AES-KW", None, &kek_bytes[..kek_length], &[KeyUsage::WrapKey, KeyUsage::UnwrapKey]);
        let key = raw_secret("AES-GCM", None, &hex(key_data), &[KeyUsage::Encrypt]);
        let output = wrap_key(KeyFormat::Raw, &key, &kek, &EncryptParams::AesKw, &mut rng()).unwrap();
        assert_eq!(output, hex(wrapped));
        let unwrapped = unwrap_key(
            KeyFormat::Raw,
            &output,
            &kek,
            &EncryptParams::AesKw,
            &import_params("AES-GCM", None, None),
            true,
            usages(&[KeyUsage::Encrypt]),
            &mut rng(),
        )
        .unwrap();
        assert_eq!(export_key(KeyFormat::Raw, &unwrapped).unwrap(), ExportedKey::Bytes(hex(key_data)));
    }
}

/// NIST SP 800-38A appendix F: the four-block plaintext every mode example encrypts.
const SP800_38A_PLAINTEXT: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
                                   30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";

fn encrypt_decrypt(name: &str, key: &[u8], params: &EncryptParams<'_>, plaintext: &[u8]) -> Vec<u8> {
    let key = raw_secret(name, None, key, &[KeyUsage::Encrypt, KeyUsage::Decrypt]);
    let ciphertext = encrypt(params, &key, plaintext, &mut rng()).unwrap();
    assert_eq!(decrypt(params, &key, &ciphertext, &mut rng()).unwrap(), plaintext);
    ciphertext
}

#[test]
fn aes_cbc_matches_sp_800_38a() {
    let iv = hex("000102030405060708090a0b0c0d0e0f");
    let plaintext = hex(SP800_38A_PLAINTEXT);
    // F.2.1 (CBC-AES128.Encrypt) and F.2.5 (CBC-AES256.Encrypt); PKCS#7 adds one block of 0x10.
    let cases = [
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2\
             73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
        ),
        (
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
             39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        ),
    ];
    for (key, expected) in cases {
        let ciphertext = encrypt_decrypt("AES-CBC", &hex(key), &EncryptParams::AesCbc { iv: &iv }, &plaintext);
        assert_eq!(ciphertext.len(), 80);
        assert_eq!(&ciphertext[..64], &hex(expected)[..]);
    }
}

#[test]
fn aes_ctr_matches_sp_800_38a() {
    // F.5.1 (CTR-AES128.Encrypt): the counter's low byte wraps into the next byte, which any
    // counter length of 16 bits or more carries the same way.
    let key = hex("2b7e151628aed2a6abf7158809cf4f3c");
    let counter = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    let expected = hex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff\
         5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee");
    for length in [16, 64, 128] {
        let params = EncryptParams::AesCtr { counter: &counter, length };
        assert_eq!(
            encrypt_decrypt("AES-CTR", &key, &params, &hex(SP800_38A_PLAINTEXT)),
            expected,
            "counter length {length}"
        );
    }
}

#[test]
fn aes_gcm_matches_the_gcm_specification_test_cases() {
    // McGrew and Viega, "The Galois/Counter Mode of Operation", appendix B (the test cases NIST
    // SP 800-38D's validation builds on): test cases 1, 2 and 4.
    let zero_key = [0u8; 16];
    let zero_iv = [0u8; 12];
    let sealed = encrypt_decrypt(
        "AES-GCM",
        &zero_key,
        &EncryptParams::AesGcm { iv: &zero_iv, additional_data: None, tag_length: None },
        b"",
    );
    assert_eq!(sealed, hex("58e2fccefa7e3061367f1d57a4e7455a"));
    let sealed = encrypt_decrypt(
        "AES-GCM",
        &zero_key,
        &EncryptParams::AesGcm { iv: &zero_iv, additional_data: None, tag_length: Some(128) },
        &[0u8; 16],
    );
    assert_eq!(sealed, hex("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf"));

    let key = hex("feffe9928665731c6d6a8f9467308308");
    let iv = hex("cafebabefacedbaddecaf888");
    let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let plaintext =
        hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525\
         b16aedf5aa0de657ba637b39");
    let ciphertext =
        hex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05\
         1ba30b396a0aac973d58e091");
    let tag = hex("5bc94fbc3221a5db94fae95ae7121a47");
    // A shorter tag is the full tag's prefix (SP 800-38D section 7.1, MSB_t).
    for tag_length in [32, 64, 96, 104, 112, 120, 128] {
        let params = EncryptParams::AesGcm { iv: &iv, additional_data: Some(&aad), tag_length: Some(tag_length) };
        let sealed = encrypt_decrypt("AES-GCM", &key, &params, &plaintext);
        let mut expected = ciphertext.clone();
        expected.extend_from_slice(&tag[..(tag_length / 8) as usize]);
        assert_eq!(sealed, expected, "tag length {tag_length}");
    }
}

fn okp_jwk(curve: &str, private: Option<&[u8]>, public: &[u8]) -> JsonWebKey {
    JsonWebKey {
        kty: Some("OKP".into()),
        crv: Some(curve.into()),
        x: Some(encode_member(public)),
        d: private.map(encode_member),
        ..JsonWebKey::default()
    }
}

#[test]
fn ed25519_matches_rfc_8032() {
    // RFC 8032 section 7.1, TEST 1 and TEST 2.
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b\
             d25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c\
             387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (secret, public, message, signature) in cases {
        let private = import_key(
            KeyFormat::Jwk,
            KeyData::Jwk(&okp_jwk("Ed25519", Some(&hex(secret)), &hex(public))),
            &import_params("Ed25519", None, None),
            false,
            usages(&[KeyUsage::Sign]),
        )
        .unwrap();
        let public = import_key(
            KeyFormat::Raw,
            KeyData::Bytes(&hex(public)),
            &import_params("Ed25519", None, None),
            true,
            usages(&[KeyUsage::Verify]),
        )
        .unwrap();
        let message = hex(message);
        assert_eq!(sign(&SignParams::Ed25519, &private, &message, &mut rng()).unwrap(), hex(signature));
        assert!(verify(&SignParams::Ed25519, &public, &hex(signature), &message).unwrap());
        let mut tampered = hex(signature);
        tampered[0] ^= 1;
        assert!(!verify(&SignParams::Ed25519, &public, &tampered, &message).unwrap());
    }
}

#[test]
fn x25519_matches_rfc_7748() {
    // RFC 7748 section 6.1.
    let alice_private = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let alice_public = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let bob_private = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let bob_public = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    let params = import_params("X25519", None, None);
    for (private, public, peer) in
        [(&alice_private, &alice_public, &bob_public), (&bob_private, &bob_public, &alice_public)]
    {
        let private = import_key(
            KeyFormat::Jwk,
            KeyData::Jwk(&okp_jwk("X25519", Some(private), public)),
            &params,
            false,
            usages(&[KeyUsage::DeriveBits]),
        )
        .unwrap();
        let peer = import_key(KeyFormat::Raw, KeyData::Bytes(peer), &params, true, usages(&[])).unwrap();
        assert_eq!(derive_bits(&DeriveParams::X25519 { public: &peer }, &private, None).unwrap(), shared);
        assert_eq!(
            derive_bits(&DeriveParams::X25519 { public: &peer }, &private, Some(100)).unwrap(),
            [&shared[..12], &[shared[12] & 0xf0]].concat()
        );
    }
}

fn ec_jwk(curve: &str, x: &str, y: &str, d: Option<&str>) -> JsonWebKey {
    JsonWebKey {
        kty: Some("EC".into()),
        crv: Some(curve.into()),
        x: Some(encode_member(&hex(x))),
        y: Some(encode_member(&hex(y))),
        d: d.map(|d| encode_member(&hex(d))),
        ..JsonWebKey::default()
    }
}

fn ec_import(name: &str, curve: &str, jwk: &JsonWebKey, list: &[KeyUsage]) -> CryptoKey {
    import_key(KeyFormat::Jwk, KeyData::Jwk(jwk), &import_params(name, None, Some(curve)), true, usages(list)).unwrap()
}

#[test]
fn ecdsa_matches_rfc_6979() {
    // RFC 6979 appendix A.2.5 (P-256) and A.2.6 (P-384), message "sample". isobar signs with
    // RFC 6979's deterministic nonce, so with the curve's own hash the signatures match exactly.
    struct Case {
        curve: &'static str,
        d: &'static str,
        x: &'static str,
        y: &'static str,
        hash: HashAlgorithm,
        signature: &'static str,
    }
    let p256 = (
        "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721",
        "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6",
        "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299",
    );
    let cases = [
        Case {
            curve: "P-256",
            d: p256.0,
            x: p256.1,
            y: p256.2,
            hash: HashAlgorithm::Sha256,
            signature: "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716\
                        F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8",
        },
        // SHA-1 is shorter than the field: the hash is used as an integer, unpadded.
        Case {
            curve: "P-256",
            d: p256.0,
            x: p256.1,
            y: p256.2,
            hash: HashAlgorithm::Sha1,
            signature: "61340C88C3AAEBEB4F6D667F672CA9759A6CCAA9FA8811313039EE4A35471D32\
                        6D7F147DAC089441BB2E2FE8F7A3FA264B9C475098FDCF6E00D7C996E1B8B7EB",
        },
        Case {
            curve: "P-384",
            d: "6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D896D5724E4C70A825F872C9EA60D2EDF5",
            x: "EC3A4E415B4E19A4568618029F427FA5DA9A8BC4AE92E02E06AAE5286B300C64DEF8F0EA9055866064A254515480BC13",
            y: "8015D9B72D7D57244EA8EF9AC0C621896708A59367F9DFB9F54CA84B3F1C9DB1288B231C3AE0D4FE7344FD2533264720",
            hash: HashAlgorithm::Sha384,
            signature: "94EDBB92A5ECB8AAD4736E56C691916B3F88140666CE9FA73D64C4EA95AD133C81A648152E44ACF96E36DD1E80FABE46\
                        99EF4AEB15F178CEA1FE40DB2603138F130E740A19624526203B6351D0A3A94FA329C145786E679E7B82C71A38628AC8",
        },
    ];
    for case in cases {
        let private =
            ec_import("ECDSA", case.curve, &ec_jwk(case.curve, case.x, case.y, Some(case.d)), &[KeyUsage::Sign]);
        let public = ec_import("ECDSA", case.curve, &ec_jwk(case.curve, case.x, case.y, None), &[KeyUsage::Verify]);
        let params = SignParams::Ecdsa { hash: case.hash };
        assert!(verify(&params, &public, &hex(case.signature), b"sample").unwrap());
        assert!(!verify(&params, &public, &hex(case.signature), b"samplE").unwrap());
        let signature = sign(&params, &private, b"sample", &mut rng()).unwrap();
        assert!(verify(&params, &public, &signature, b"sample").unwrap());
        // The ecdsa crate's RFC 6979 nonce uses the curve's own hash (SHA-256 for P-256, SHA-384
        // for P-384) in its HMAC-DRBG, as the RFC does when that is the message hash; with
        // another message hash the nonce (and so the signature bytes) differs but is as valid.
        if case.hash.output_bytes() * 8 == case.curve[2..].parse::<usize>().unwrap() {
            assert_eq!(signature, hex(case.signature), "{} {}", case.curve, case.hash.as_str());
        }
    }
}

#[test]
fn ecdh_matches_rfc_5903() {
    // RFC 5903 section 8.1 (256-bit random ECP group) and 8.2 (384-bit).
    let cases = [
        (
            "P-256",
            "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180",
            "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63",
            "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
            "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
        ),
        (
            "P-384",
            "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194",
            "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA",
            "9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
            "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571",
            "DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
            "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4D603135569B9E9D09CF5D4A270F59746",
        ),
    ];
    for (curve, i, gix, giy, grx, gry, girx) in cases {
        let private = ec_import("ECDH", curve, &ec_jwk(curve, gix, giy, Some(i)), &[KeyUsage::DeriveBits]);
        let peer = ec_import("ECDH", curve, &ec_jwk(curve, grx, gry, None), &[]);
        let shared = derive_bits(&DeriveParams::Ecdh { public: &peer }, &private, None).unwrap();
        assert_eq!(shared, hex(girx), "{curve}");
    }
}

#[test]
fn derive_key_imports_the_derived_bits() {
    // RFC 5869 test case 1's first 16 bytes become an AES-128 key.
    let key = import_key(
        KeyFormat::Raw,
        KeyData::Bytes(&[0x0b; 22]),
        &import_params("HKDF", None, None),
        false,
        usages(&[KeyUsage::DeriveKey]),
    )
    .unwrap();
    let salt = hex("000102030405060708090a0b0c");
    let info = hex("f0f1f2f3f4f5f6f7f8f9");
    let params = DeriveParams::Hkdf { hash: HashAlgorithm::Sha256, salt: &salt, info: &info };
    let derived_type = crate::DerivedKeyType::from_dictionary(&AlgorithmDictionary {
        length: Some(128),
        ..AlgorithmDictionary::named("AES-GCM")
    })
    .unwrap();
    let derived = crate::derive_key(&params, &key, &derived_type, true, usages(&[KeyUsage::Encrypt])).unwrap();
    assert_eq!(derived.algorithm().length(), Some(128));
    assert_eq!(
        export_key(KeyFormat::Raw, &derived).unwrap(),
        ExportedKey::Bytes(hex("3cb25f25faacd57a90434f64d0362f2a"))
    );
}
