//! How long the engine's most expensive operations hold a core, to check the limits in
//! docs/webcrypto.md: RSA key generation and signing at the largest sizes, and PBKDF2 at its
//! iteration cap. The 8192-bit generation goes through the rsa crate directly, since the engine
//! refuses to generate keys that large (this measurement is why). Run with `cargo run --release -p isobar-crypto --example operation_cost`.
//! (A script's CPU limit cannot interrupt one of these calls: it runs in Rust, not in V8.)

use std::time::Instant;

use isobar_crypto::{
    AlgorithmDictionary, DeriveParams, GenerateKeyParams, GeneratedKey, HashAlgorithm, ImportKeyParams, KeyData,
    KeyFormat, KeyUsage, KeyUsages, PBKDF2_ITERATIONS_MAX, SignParams, derive_bits, generate_key, import_key, sign,
};

fn main() {
    let mut rng = getrandom::SysRng;
    for modulus_length in [2048, 4096] {
        let params = GenerateKeyParams::from_dictionary(&AlgorithmDictionary {
            modulus_length: Some(modulus_length),
            public_exponent: Some(&[1, 0, 1]),
            hash: Some("SHA-256"),
            ..AlgorithmDictionary::named("RSASSA-PKCS1-v1_5")
        })
        .expect("valid parameters");
        let started = Instant::now();
        let generated = generate_key(&params, false, KeyUsages::of(&[KeyUsage::Sign]), &mut rng).expect("generates");
        let generate_ms = started.elapsed().as_secs_f64() * 1000.0;
        let GeneratedKey::Pair(pair) = generated else { unreachable!("RSA makes pairs") };
        let started = Instant::now();
        let signs = 10;
        for _ in 0..signs {
            sign(&SignParams::RsassaPkcs1V15, &pair.private_key, b"message", &mut rng).expect("signs");
        }
        let sign_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(signs);
        println!("RSA-{modulus_length}: generateKey {generate_ms:.0} ms, sign {sign_ms:.2} ms");
    }
    let started = Instant::now();
    let private = rsa::PrivateKey::new(&mut rng, 8192).expect("generates");
    let generate_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    private.sign_with_rng(&mut rng, rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &[0; 32]).expect("signs");
    println!(
        "RSA-8192 (rsa crate directly): generate {generate_ms:.0} ms, sign {:.2} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let password = import_key(
        KeyFormat::Raw,
        KeyData::Bytes(b"password"),
        &ImportKeyParams::Pbkdf2,
        false,
        KeyUsages::of(&[KeyUsage::DeriveBits]),
    )
    .expect("imports");
    for hash in [HashAlgorithm::Sha256, HashAlgorithm::Sha512] {
        let params = DeriveParams::Pbkdf2 { hash, salt: b"salt", iterations: PBKDF2_ITERATIONS_MAX };
        let started = Instant::now();
        derive_bits(&params, &password, Some(256)).expect("derives");
        println!(
            "PBKDF2-{} x {PBKDF2_ITERATIONS_MAX}: {:.0} ms",
            hash.as_str(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
}
