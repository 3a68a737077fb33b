//! Key usages (`"encrypt"`, `"sign"`, ...) and the set a key carries, with the checks every import
//! and generation applies: a usage outside the algorithm's set is a `SyntaxError`.

use crate::error::{CryptoError, syntax};

/// One WebCrypto key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    DeriveKey,
    DeriveBits,
    WrapKey,
    UnwrapKey,
}

impl KeyUsage {
    /// Every usage, in the order `CryptoKey.usages` and JWK `key_ops` list them (workerd's order).
    pub const ALL: [KeyUsage; 8] = [
        KeyUsage::Encrypt,
        KeyUsage::Decrypt,
        KeyUsage::Sign,
        KeyUsage::Verify,
        KeyUsage::DeriveKey,
        KeyUsage::DeriveBits,
        KeyUsage::WrapKey,
        KeyUsage::UnwrapKey,
    ];

    /// The usage's name as scripts write it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUsage::Encrypt => "encrypt",
            KeyUsage::Decrypt => "decrypt",
            KeyUsage::Sign => "sign",
            KeyUsage::Verify => "verify",
            KeyUsage::DeriveKey => "deriveKey",
            KeyUsage::DeriveBits => "deriveBits",
            KeyUsage::WrapKey => "wrapKey",
            KeyUsage::UnwrapKey => "unwrapKey",
        }
    }

    /// Parses a usage name (case-sensitive, as the spec's enum is).
    pub fn from_name(name: &str) -> Option<KeyUsage> {
        KeyUsage::ALL.into_iter().find(|usage| usage.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of usages, stored as a bitset; duplicates in the script's list collapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyUsages(u8);

impl KeyUsages {
    /// The empty set.
    pub const NONE: KeyUsages = KeyUsages(0);

    /// The set holding exactly `usages`.
    pub fn of(usages: &[KeyUsage]) -> KeyUsages {
        KeyUsages(usages.iter().fold(0, |bits, usage| bits | usage.bit()))
    }

    /// Parses the script's usage list. An unknown name is a `SyntaxError`, as in workerd (the spec's
    /// WebIDL enum would make it a TypeError).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<KeyUsages, CryptoError> {
        let mut usages = KeyUsages::NONE;
        for name in names {
            let name = name.as_ref();
            let usage = KeyUsage::from_name(name).ok_or_else(|| syntax(format!("Unknown key usage \"{name}\".")))?;
            usages = usages.with(usage);
        }
        Ok(usages)
    }

    /// This set plus `usage`.
    pub fn with(self, usage: KeyUsage) -> KeyUsages {
        KeyUsages(self.0 | usage.bit())
    }

    pub fn contains(self, usage: KeyUsage) -> bool {
        self.0 & usage.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The usages in either set.
    pub fn union(self, other: KeyUsages) -> KeyUsages {
        KeyUsages(self.0 | other.0)
    }

    /// The usages in both sets.
    pub fn intersection(self, other: KeyUsages) -> KeyUsages {
        KeyUsages(self.0 & other.0)
    }

    /// Whether every usage of this set is in `other`.
    pub fn is_subset_of(self, other: KeyUsages) -> bool {
        self.0 & !other.0 == 0
    }

    /// The usages in canonical order.
    pub fn iter(self) -> impl Iterator<Item = KeyUsage> {
        KeyUsage::ALL.into_iter().filter(move |usage| self.contains(*usage))
    }

    /// The usage names in canonical order, as `CryptoKey.usages` returns them.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(KeyUsage::as_str).collect()
    }

    /// Checks that every usage is one `algorithm` allows in this context; the spec names a
    /// `SyntaxError` for anything else.
    pub(crate) fn require_within(self, allowed: KeyUsages, algorithm: &str) -> Result<KeyUsages, CryptoError> {
        match self.iter().find(|usage| !allowed.contains(*usage)) {
            None => Ok(self),
            Some(usage) => Err(syntax(format!("Usage \"{}\" is not valid for a {algorithm} key.", usage.as_str()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_is_canonical() {
        let usages = KeyUsages::from_names(&["verify", "sign", "verify", "encrypt"]).unwrap();
        assert_eq!(usages.names(), vec!["encrypt", "sign", "verify"]);
        assert!(usages.contains(KeyUsage::Sign));
        assert!(!usages.contains(KeyUsage::Decrypt));
    }

    #[test]
    fn unknown_usage_is_a_syntax_error() {
        let error = KeyUsages::from_names(&["sign", "Sign"]).unwrap_err();
        assert_eq!(error.name(), "SyntaxError");
    }

    #[test]
    fn usage_outside_the_allowed_set_is_a_syntax_error() {
        let usages = KeyUsages::of(&[KeyUsage::Sign, KeyUsage::Encrypt]);
        let allowed = KeyUsages::of(&[KeyUsage::Sign, KeyUsage::Verify]);
        assert_eq!(usages.require_within(allowed, "HMAC").unwrap_err().name(), "SyntaxError");
        assert!(KeyUsages::of(&[KeyUsage::Sign]).require_within(allowed, "HMAC").is_ok());
    }
}
