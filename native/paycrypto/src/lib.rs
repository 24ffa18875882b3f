//! Payment cryptography for the switch's software HSM: block ciphers, key check values and
//! parity, ISO 9564 PIN blocks, Visa PVV, IBM 3624 offsets, CVV/CVV2/iCVV, EMV cryptograms,
//! ISO 9797-1 MACs and TR-31 version D key blocks.
//!
//! Pure Rust, no Python: `native/src/crypto.rs` binds it. One function per operation, named
//! after the standard; every error names the argument at fault.
pub mod block;
pub mod cvv;
pub mod digits;
pub mod emv;
pub mod error;
pub mod fastdes;
pub mod ibm3624;
pub mod keycache;
pub mod keys;
pub mod mac;
pub mod pinblock;
pub mod pvv;
pub mod tr31;

pub use error::{CryptoError, Result};

#[cfg(test)]
mod tests;
