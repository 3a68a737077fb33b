//! The one error type of the engine. Each variant is the exception the WebCrypto specification (or
//! workerd, where it differs) names for the case; the glue throws a `DOMException` with
//! [`CryptoError::name`] as its name, or a JS `TypeError` for [`CryptoError::Type`].

/// A failed WebCrypto operation: the DOMException name it maps to plus a message for the script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The algorithm, format, curve or operation is not supported (`NotSupportedError`).
    #[error("{0}")]
    NotSupported(String),
    /// The key usages are invalid for the key (`SyntaxError`).
    #[error("{0}")]
    Syntax(String),
    /// The key cannot be used this way: wrong algorithm, missing usage, not extractable
    /// (`InvalidAccessError`).
    #[error("{0}")]
    InvalidAccess(String),
    /// The key data is malformed or inconsistent (`DataError`).
    #[error("{0}")]
    Data(String),
    /// The operation itself failed: bad IV, failed authentication, bad lengths (`OperationError`).
    #[error("{0}")]
    Operation(String),
    /// A parameter is missing or has the wrong type; thrown as a JS `TypeError`, not a
    /// DOMException.
    #[error("{0}")]
    Type(String),
}

impl CryptoError {
    /// The exception's `name`: a DOMException name, or `"TypeError"`.
    pub fn name(&self) -> &'static str {
        match self {
            CryptoError::NotSupported(_) => "NotSupportedError",
            CryptoError::Syntax(_) => "SyntaxError",
            CryptoError::InvalidAccess(_) => "InvalidAccessError",
            CryptoError::Data(_) => "DataError",
            CryptoError::Operation(_) => "OperationError",
            CryptoError::Type(_) => "TypeError",
        }
    }

    /// Whether the glue throws a `DOMException` (every variant but [`CryptoError::Type`]).
    pub fn is_dom_exception(&self) -> bool {
        !matches!(self, CryptoError::Type(_))
    }

    /// The message given to the script.
    pub fn message(&self) -> &str {
        match self {
            CryptoError::NotSupported(message)
            | CryptoError::Syntax(message)
            | CryptoError::InvalidAccess(message)
            | CryptoError::Data(message)
            | CryptoError::Operation(message)
            | CryptoError::Type(message) => message,
        }
    }
}

/// Shorthands that keep the algorithm code readable; each builds the variant from a message.
pub(crate) fn not_supported(message: impl Into<String>) -> CryptoError {
    CryptoError::NotSupported(message.into())
}

pub(crate) fn syntax(message: impl Into<String>) -> CryptoError {
    CryptoError::Syntax(message.into())
}

pub(crate) fn invalid_access(message: impl Into<String>) -> CryptoError {
    CryptoError::InvalidAccess(message.into())
}

pub(crate) fn data(message: impl Into<String>) -> CryptoError {
    CryptoError::Data(message.into())
}

pub(crate) fn operation(message: impl Into<String>) -> CryptoError {
    CryptoError::Operation(message.into())
}

pub(crate) fn type_error(message: impl Into<String>) -> CryptoError {
    CryptoError::Type(message.into())
}

/// The error every operation returns when the caller's random source fails.
pub(crate) fn random_source_failed() -> CryptoError {
    operation("the random source failed")
}
