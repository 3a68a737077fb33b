//! JSON Web Keys (RFC 7517/7518) as WebCrypto imports and exports them: the `JsonWebKey` dictionary
//! as a serde struct, base64url for its members, and the checks every JWK import applies (`ext`,
//! `key_ops`, `use`). Each algorithm module checks its own `kty`, `alg` and key members.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{CryptoError, data};
use crate::usage::{KeyUsage, KeyUsages};

/// The JsonWebKey dictionary. Every member is optional, as in WebIDL; imports check the ones their
/// algorithm needs. Absent members are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JsonWebKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oth: Option<Vec<RsaOtherPrimesInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

/// One entry of an RSA JWK's `oth` (multi-prime keys, which isobar refuses).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RsaOtherPrimesInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<String>,
}

impl JsonWebKey {
    /// Parses JWK JSON (what `unwrapKey` decrypts); anything that is not a JSON object with members
    /// of the right types is a `DataError`.
    pub fn from_json(json: &[u8]) -> Result<JsonWebKey, CryptoError> {
        serde_json::from_slice(json).map_err(|error| data(format!("The data is not a valid JSON Web Key: {error}.")))
    }

    /// Serializes the JWK to JSON (what `wrapKey` encrypts).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        // Serializing plain strings, booleans and vectors of them cannot fail; an empty object is
        // a safe fallback should serde ever disagree.
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec()))
    }

    /// `kty`, or a `DataError` when it differs from `expected`.
    pub(crate) fn require_kty(&self, expected: &str, algorithm: &str) -> Result<(), CryptoError> {
        match self.kty.as_deref() {
            Some(kty) if kty == expected => Ok(()),
            Some(kty) => Err(data(format!(
                "{algorithm} \"jwk\" key import requires a JSON Web Key with \"kty\" \"{expected}\" (found \"{kty}\")."
            ))),
            None => Err(data("The JSON Web Key has no \"kty\" member.")),
        }
    }

    /// Checks `ext` and `key_ops` against the import's `extractable` and `usages`, as every JWK
    /// import does.
    pub(crate) fn check_ext_and_key_ops(&self, extractable: bool, usages: KeyUsages) -> Result<(), CryptoError> {
        if self.ext == Some(false) && extractable {
            return Err(data("The JSON Web Key's \"ext\" is false but an extractable key was requested."));
        }
        if let Some(key_ops) = &self.key_ops {
            // RFC 7517 section 4.3: duplicate key operation values must not be present.
            for (index, op) in key_ops.iter().enumerate() {
                if key_ops.iter().skip(index + 1).any(|other| other == op) {
                    return Err(data(format!("The JSON Web Key's \"key_ops\" contains \"{op}\" more than once.")));
                }
            }
            if let Some(missing) = usages.iter().find(|usage| !key_ops.iter().any(|op| op == usage.as_str())) {
                return Err(data(format!(
                    "The JSON Web Key's \"key_ops\" does not allow the usage \"{}\".",
                    missing.as_str()
                )));
            }
        }
        Ok(())
    }

    /// Checks `use` when the import asks for usages: it must be `expected` ("enc" or "sig").
    pub(crate) fn check_use(&self, expected: &str, usages: KeyUsages) -> Result<(), CryptoError> {
        match &self.key_use {
            Some(key_use) if !usages.is_empty() && key_use != expected => {
                Err(data(format!("The JSON Web Key's \"use\" is \"{key_use}\" but \"{expected}\" is required.")))
            }
            _ => Ok(()),
        }
    }

    /// Fills `key_ops` and `ext` the way every export does.
    pub(crate) fn with_usages(mut self, usages: KeyUsages) -> JsonWebKey {
        self.key_ops = Some(usages.iter().map(|usage: KeyUsage| usage.as_str().to_owned()).collect());
        self.ext = Some(true);
        self
    }
}

/// Decodes a base64url JWK member. Padding is tolerated, as workerd's decoder does; any other
/// deviation is a `DataError` naming the member.
pub(crate) fn decode_member(value: Option<&str>, member: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let value = value.ok_or_else(|| data(format!("The JSON Web Key has no \"{member}\" member.")))?;
    Base64UrlUnpadded::decode_vec(value.trim_end_matches('='))
        .map(Zeroizing::new)
        .map_err(|_| data(format!("The JSON Web Key's \"{member}\" is not valid base64url.")))
}

/// Encodes bytes as an unpadded base64url JWK member.
pub(crate) fn encode_member(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_leaves_out_absent_members() {
        let jwk = JsonWebKey {
            kty: Some("oct".into()),
            k: Some(encode_member(b"0123456789abcdef")),
            key_use: Some("enc".into()),
            ..JsonWebKey::default()
        };
        let json = jwk.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains("\"use\":\"enc\""), "{text}");
        assert!(!text.contains("null"), "{text}");
        assert_eq!(JsonWebKey::from_json(&json).unwrap(), jwk);
    }

    #[test]
    fn malformed_json_is_a_data_error() {
        for json in [&b"not json"[..], b"[1,2]", b"{\"kty\": 5}", b"{\"ext\": \"yes\"}", b""] {
            assert_eq!(JsonWebKey::from_json(json).unwrap_err().name(), "DataError");
        }
    }

    #[test]
    fn base64url_tolerates_padding_and_rejects_other_alphabets() {
        assert_eq!(&*decode_member(Some("AQAB"), "e").unwrap(), &[1, 0, 1]);
        assert_eq!(&*decode_member(Some("AQ=="), "e").unwrap(), &[1]);
        assert_eq!(decode_member(Some("A+/B"), "e").unwrap_err().name(), "DataError");
        assert_eq!(decode_member(None, "e").unwrap_err().name(), "DataError");
    }

    #[test]
    fn key_ops_must_cover_the_usages_without_duplicates() {
        let sign = KeyUsages::of(&[KeyUsage::Sign]);
        let jwk = JsonWebKey { key_ops: Some(vec!["verify".into()]), ..JsonWebKey::default() };
        assert_eq!(jwk.check_ext_and_key_ops(false, sign).unwrap_err().name(), "DataError");
        let jwk = JsonWebKey { key_ops: Some(vec!["sign".into(), "sign".into()]), ..JsonWebKey::default() };
        assert_eq!(jwk.check_ext_and_key_ops(false, sign).unwrap_err().name(), "DataError");
        let jwk = JsonWebKey { ext: Some(false), ..JsonWebKey::default() };
        assert_eq!(jwk.check_ext_and_key_ops(true, sign).unwrap_err().name(), "DataError");
        assert!(jwk.check_ext_and_key_ops(false, sign).is_ok());
    }
}
