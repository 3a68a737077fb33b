//! Helpers the tests share: hex decoding for published vectors, the OS random source, and
//! shorthands for building keys.

use crate::{AlgorithmDictionary, CryptoKey, ImportKeyParams, KeyData, KeyFormat, KeyUsage, KeyUsages, import_key};

/// Decodes a hex string (whitespace ignored), as the RFCs and NIST print their vectors.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}

/// The kernel's random source, as the tests' rng.
pub(crate) fn rng() -> getrandom::SysRng {
    getrandom::SysRng
}

pub(crate) fn usages(list: &[KeyUsage]) -> KeyUsages {
    KeyUsages::of(list)
}

/// Normalizes an import algorithm from a name and optional hash/curve, as the glue would.
pub(crate) fn import_params(name: &str, hash: Option<&str>, curve: Option<&str>) -> ImportKeyParams {
    ImportKeyParams::from_dictionary(&AlgorithmDictionary {
        hash,
        named_curve: curve,
        ..AlgorithmDictionary::named(name)
    })
    .unwrap()
}

/// Imports raw secret bytes under `name` (AES or HMAC).
pub(crate) fn raw_secret(name: &str, hash: Option<&str>, bytes: &[u8], list: &[KeyUsage]) -> CryptoKey {
    import_key(KeyFormat::Raw, KeyData::Bytes(bytes), &import_params(name, hash, None), true, usages(list)).unwrap()
}
