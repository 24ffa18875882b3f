//! One error type for every operation: it names the argument at fault so the HSM can map it to
//! a payShield error code and a human can see which field was wrong.
use core::fmt;

/// A rejected input or a failed check (bad MAC, bad PIN block layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoError {
    /// Name of the argument at fault, as spelled in the Python contract (`pan`, `key`, ...).
    pub field: &'static str,
    /// What is wrong with it (never contains secret material).
    pub message: String,
}

impl CryptoError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for CryptoError {}

pub type Result<T> = core::result::Result<T, CryptoError>;

/// Shorthand used by the validators: `Err(bad("pan", "must be 13-19 digits"))`.
pub fn bad(field: &'static str, message: impl Into<String>) -> CryptoError {
    CryptoError::new(field, message)
}
