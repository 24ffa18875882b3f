//! ISO 8583 codec driven by specs as data, plus EMV BER-TLV.
//!
//! * [`spec`]: what a spec is (field number -> kind, encoding, length prefix, max, pad).
//! * [`builtin`]: the shipped `ascii87` and `binary87` specs.
//! * [`codec`]: message decode (streaming to a [`codec::Sink`]) and encode.
//! * [`tlv`]: field 55 (EMV) TLV parse and build.
//!
//! Pure Rust with no dependencies; the Python bindings live in the `switch-native` crate.
pub mod builtin;
pub mod codec;
pub mod ebcdic;
pub mod error;
pub mod spec;
pub mod tlv;

pub use codec::{
    decode, decode_into, decode_partial, encode, encode_into, peek_mti, Message, OwnedValue, Sink,
    Value,
};
pub use error::{Error, ErrorKind, Location, SpecError};
pub use spec::{FieldSpec, Spec};
