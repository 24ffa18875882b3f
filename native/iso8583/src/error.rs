//! Codec errors: every one names where it happened (MTI, bitmap, field N or the message as a
//! whole), the byte offset and what was wrong, so an operator can find the bad byte in a trace
//! without re-decoding by hand.
use std::fmt;

/// Which part of the message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Mti,
    Bitmap,
    Field(u8),
    Message,
}

impl Location {
    /// The field number, if the error is about a data field.
    pub fn field(self) -> Option<u8> {
        match self {
            Location::Field(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Mti => f.write_str("MTI"),
            Location::Bitmap => f.write_str("bitmap"),
            Location::Field(n) => write!(f, "field {n}"),
            Location::Message => f.write_str("message"),
        }
    }
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ends before the element does.
    Truncated { needed: usize, available: usize },
    /// A variable-length field declares (or is given) more than the spec allows.
    LengthExceedsMax { length: usize, max: usize },
    /// A fixed-length field is given a value of the wrong length (encode side).
    WrongLength { length: usize, expected: usize },
    /// A length prefix that is not a decimal number.
    BadLengthPrefix,
    /// A numeric field holds something other than a digit.
    NonNumeric { byte: u8 },
    /// An ASCII text field holds a byte or character outside 0..=127.
    NotAscii { byte: u8 },
    /// The first character of an x+n amount is not its sign (C, D) nor a digit.
    BadSign { byte: u8 },
    /// A character with no EBCDIC (cp500) code, i.e. above U+00FF.
    NotEncodable { ch: char },
    /// A hex-ASCII element holds something other than 0-9, A-F, a-f.
    BadHex { byte: u8 },
    /// A hex-ASCII element whose length in characters is odd.
    OddHexLength { length: usize },
    /// The pad nibble of an odd-length BCD value is not the one the spec says.
    BadPad { nibble: u8, expected: u8 },
    /// A bitmap bit (decode) or a value (encode) for a field the spec does not define.
    NoSuchField,
    /// Bytes left over after the last field the bitmap announces.
    TrailingData { count: usize },
    /// A text field was given bytes.
    ExpectedText,
    /// A binary field was given text.
    ExpectedBytes,
    /// A field number outside 2..=128 on encode (1 is the secondary bitmap, computed).
    FieldNumberOutOfRange { number: i64 },
    /// The same field given twice on encode.
    DuplicateField,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated: needs {needed} {}, only {available} left",
                    bytes(*needed)
                )
            }
            ErrorKind::LengthExceedsMax { length, max } => {
                write!(f, "length {length} exceeds max {max}")
            }
            ErrorKind::WrongLength { length, expected } => {
                write!(f, "length {length} but the field is fixed at {expected}")
            }
            ErrorKind::BadLengthPrefix => f.write_str("length prefix is not a decimal number"),
            ErrorKind::NonNumeric { byte } => write!(f, "non-numeric data (byte 0x{byte:02X})"),
            ErrorKind::NotAscii { byte } => write!(f, "non-ASCII data (byte 0x{byte:02X})"),
            ErrorKind::BadSign { byte } => {
                write!(f, "amount sign is not C, D or a digit (byte 0x{byte:02X})")
            }
            ErrorKind::NotEncodable { ch } => {
                write!(f, "character U+{:04X} has no EBCDIC code", *ch as u32)
            }
            ErrorKind::BadHex { byte } => write!(f, "invalid hex digit (byte 0x{byte:02X})"),
            ErrorKind::OddHexLength { length } => {
                write!(f, "hex data has an odd length {length}")
            }
            ErrorKind::BadPad { nibble, expected } => {
                write!(f, "pad nibble {nibble:X} where {expected:X} is required")
            }
            ErrorKind::NoSuchField => f.write_str("not defined by the spec"),
            ErrorKind::TrailingData { count } => {
                write!(f, "{count} {} of trailing data", bytes(*count))
            }
            ErrorKind::ExpectedText => f.write_str("expects str, got bytes"),
            ErrorKind::ExpectedBytes => f.write_str("expects bytes, got str"),
            ErrorKind::FieldNumberOutOfRange { number } => {
                write!(f, "field number {number} outside 2..=128")
            }
            ErrorKind::DuplicateField => f.write_str("given more than once"),
        }
    }
}

fn bytes(n: usize) -> &'static str {
    if n == 1 {
        "byte"
    } else {
        "bytes"
    }
}

/// A codec error: where, at which byte offset, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub location: Location,
    /// Byte offset in the message (decode) or in the output built so far (encode).
    pub offset: usize,
    pub kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(location: Location, offset: usize, kind: ErrorKind) -> Self {
        Error {
            location,
            offset,
            kind,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at offset {}",
            self.location, self.kind, self.offset
        )
    }
}

impl std::error::Error for Error {}

/// A spec that cannot be compiled (bad combination of type, encoding and length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_only_when_needed() {
        let one = ErrorKind::TrailingData { count: 1 };
        assert_eq!(one.to_string(), "1 byte of trailing data");
        let two = ErrorKind::Truncated {
            needed: 2,
            available: 1,
        };
        assert_eq!(two.to_string(), "truncated: needs 2 bytes, only 1 left");
    }

    #[test]
    fn message_names_field_offset_and_problem() {
        let e = Error::new(
            Location::Field(35),
            87,
            ErrorKind::LengthExceedsMax {
                length: 41,
                max: 37,
            },
        );
        assert_eq!(
            e.to_string(),
            "field 35: length 41 exceeds max 37 at offset 87"
        );
        assert_eq!(e.location.field(), Some(35));
        assert_eq!(Location::Mti.field(), None);
    }
}
