//! Payment cryptography (filled in by the crypto work).
