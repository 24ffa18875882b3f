//! Specs as data: for each field number, what the value is (kind), how it is written
//! (encoding), how its length is told (fixed or an L..LLLL prefix and the prefix's encoding),
//! its maximum length and, for odd-length BCD, where the pad nibble goes.
//!
//! Lengths (`max_len` and what a prefix counts) are in *wire units*: digits for BCD, characters
//! for ASCII/EBCDIC and hex-ASCII, bytes for raw binary. That is what both pyiso8583 and jPOS
//! put in a length prefix, so the numbers in a spec file are the numbers on the wire.
use crate::error::SpecError;

/// What a field's value is. Decides the Python type (str or bytes) and which bytes are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Digits only (`n`). Value: str.
    Numeric,
    /// Track data (`z`): digits and the separator `=` (`D` is also read in text encodings;
    /// in BCD the separator is the nibble D and reads back as `=`). Value: str.
    Track,
    /// Text (`ans`): any ASCII character (any Latin-1 character in EBCDIC). Value: str.
    Text,
    /// Binary (`b`). Value: bytes.
    Binary,
    /// An amount of ISO 8583 type x+n (`x+n`, fields 28-31 and 97 of 1987): a sign character
    /// then digits, fixed length. The sign is `C` (credit) or `D` (debit); a digit is also
    /// read there, as an unsigned amount (jPOS's own ISO87 test message writes `0`). In BCD
    /// the sign stays one ASCII byte and only the digits are packed (jPOS `IFB_AMOUNT`).
    /// Value: str, the sign included, the same in every encoding.
    Amount,
}

/// How the field's data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Ascii,
    /// EBCDIC code page 500.
    Ebcdic,
    /// Two digits a byte; odd lengths get a pad nibble (see [`Pad`]).
    Bcd,
    /// Raw bytes.
    Binary,
    /// Each byte as two hex-ASCII characters (uppercase on encode, either case on decode).
    Hex,
}

/// How a length prefix is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixEncoding {
    Ascii,
    Ebcdic,
    Bcd,
    /// Big-endian unsigned: 1 byte for L and LL, 2 bytes for LLL and LLLL.
    Binary,
}

/// Where the pad nibble of an odd-length BCD value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    /// A leading 0 nibble (jPOS `IFB_NUMERIC`/`IFB_LLNUM` with pad=false, pyiso `left_pad="0"`).
    Left,
    /// A trailing 0 nibble.
    Right,
    /// A trailing F nibble (common for track 2 in BCD).
    RightF,
}

/// Fixed length, or a prefix of 1 to 4 decimal digits (L, LL, LLL, LLLL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthType {
    Fixed,
    Prefixed(u8),
}

/// One field's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub kind: Kind,
    pub encoding: Encoding,
    pub length: LengthType,
    pub prefix: PrefixEncoding,
    pub max_len: usize,
    pub pad: Pad,
}

impl FieldSpec {
    /// Check that kind, encoding, length and prefix make sense together.
    pub fn new(
        kind: Kind,
        encoding: Encoding,
        length: LengthType,
        prefix: PrefixEncoding,
        max_len: usize,
        pad: Pad,
    ) -> Result<Self, SpecError> {
        let ok = match kind {
            Kind::Numeric | Kind::Track => {
                matches!(encoding, Encoding::Ascii | Encoding::Ebcdic | Encoding::Bcd)
            }
            Kind::Text => matches!(encoding, Encoding::Ascii | Encoding::Ebcdic),
            Kind::Amount => {
                matches!(encoding, Encoding::Ascii | Encoding::Ebcdic | Encoding::Bcd)
            }
            Kind::Binary => matches!(encoding, Encoding::Binary | Encoding::Hex),
        };
        if !ok {
            return Err(SpecError(format!(
                "{} data cannot be {} encoded",
                kind_name(kind),
                encoding_name(encoding)
            )));
        }
        if max_len == 0 {
            return Err(SpecError("max length must be at least 1".into()));
        }
        if kind == Kind::Amount && (length != LengthType::Fixed || max_len < 2) {
            return Err(SpecError(
                "x+n data is fixed length, at least 2 (a sign and a digit)".into(),
            ));
        }
        if encoding == Encoding::Hex && length == LengthType::Fixed && max_len % 2 == 1 {
            return Err(SpecError(format!(
                "fixed hex field of {max_len} characters: hex needs an even count"
            )));
        }
        if let LengthType::Prefixed(digits) = length {
            if !(1..=4).contains(&digits) {
                return Err(SpecError(format!(
                    "length prefix of {digits} digits: use 1 to 4"
                )));
            }
            let capacity = prefix_capacity(digits, prefix);
            if max_len > capacity {
                return Err(SpecError(format!(
                    "max length {max_len} does not fit a {} prefix (at most {capacity})",
                    length_name(length)
                )));
            }
        }
        Ok(FieldSpec {
            kind,
            encoding,
            length,
            prefix,
            max_len,
            pad,
        })
    }

    /// Build from the names used in spec files (see [`parse_kind`] and friends).
    pub fn from_names(
        kind: &str,
        encoding: &str,
        length: &str,
        prefix: &str,
        max_len: usize,
        pad: &str,
    ) -> Result<Self, SpecError> {
        FieldSpec::new(
            parse_kind(kind)?,
            parse_encoding(encoding)?,
            parse_length(length)?,
            parse_prefix(prefix)?,
            max_len,
            parse_pad(pad)?,
        )
    }

    /// Bytes on the wire for a value of `units` wire units (digits, characters or bytes; for
    /// x+n, the sign and the digits).
    #[inline]
    pub(crate) fn wire_bytes(&self, units: usize) -> usize {
        match (self.encoding, self.kind) {
            (Encoding::Bcd, Kind::Amount) => 1 + (units - 1).div_ceil(2),
            (Encoding::Bcd, _) => units.div_ceil(2),
            _ => units,
        }
    }

    /// The names of this field's attributes, in spec-file form: (kind, encoding, length,
    /// prefix, max_len, pad).
    pub fn names(
        &self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        usize,
        &'static str,
    ) {
        (
            kind_name(self.kind),
            encoding_name(self.encoding),
            length_name(self.length),
            prefix_name(self.prefix),
            self.max_len,
            pad_name(self.pad),
        )
    }
}

/// The largest length a prefix can tell.
pub(crate) fn prefix_capacity(digits: u8, prefix: PrefixEncoding) -> usize {
    match prefix {
        PrefixEncoding::Binary => {
            if digits <= 2 {
                0xFF
            } else {
                0xFFFF
            }
        }
        _ => 10usize.pow(digits as u32) - 1,
    }
}

/// How the MTI is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtiEncoding {
    Ascii,
    Ebcdic,
    Bcd,
}

/// How bitmaps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitmapEncoding {
    /// 8 raw bytes per bitmap.
    Binary,
    /// 16 hex-ASCII characters per bitmap.
    Hex,
}

/// A compiled spec: MTI and bitmap encodings and the definitions of fields 2..=128.
/// Field 1 is always the secondary bitmap, present when any field above 64 is.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub mti: MtiEncoding,
    pub bitmap: BitmapEncoding,
    fields: Box<[Option<FieldSpec>; 129]>,
}

impl Spec {
    pub fn new(
        name: &str,
        mti: MtiEncoding,
        bitmap: BitmapEncoding,
        fields: impl IntoIterator<Item = (u8, FieldSpec)>,
    ) -> Result<Self, SpecError> {
        let mut table: Box<[Option<FieldSpec>; 129]> = Box::new([None; 129]);
        for (n, f) in fields {
            if !(2..=128).contains(&n) {
                return Err(SpecError(format!(
                    "field {n}: fields are numbered 2..=128 (1 is the secondary bitmap)"
                )));
            }
            if table[n as usize].is_some() {
                return Err(SpecError(format!("field {n}: defined twice")));
            }
            table[n as usize] = Some(f);
        }
        Ok(Spec {
            name: name.to_string(),
            mti,
            bitmap,
            fields: table,
        })
    }

    /// The definition of field `n`, if the spec has one.
    #[inline]
    pub fn field(&self, n: u8) -> Option<&FieldSpec> {
        self.fields.get(n as usize).and_then(|f| f.as_ref())
    }

    /// Defined fields in number order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &FieldSpec)> {
        self.fields
            .iter()
            .enumerate()
            .filter_map(|(n, f)| f.as_ref().map(|f| (n as u8, f)))
    }
}

pub fn parse_kind(s: &str) -> Result<Kind, SpecError> {
    match s {
        "n" => Ok(Kind::Numeric),
        "z" => Ok(Kind::Track),
        "ans" => Ok(Kind::Text),
        "b" => Ok(Kind::Binary),
        "x+n" => Ok(Kind::Amount),
        _ => Err(SpecError(format!(
            "unknown kind {s:?} (use n, z, ans, b or x+n)"
        ))),
    }
}

pub fn parse_encoding(s: &str) -> Result<Encoding, SpecError> {
    match s {
        "ascii" => Ok(Encoding::Ascii),
        "ebcdic" => Ok(Encoding::Ebcdic),
        "bcd" => Ok(Encoding::Bcd),
        "binary" => Ok(Encoding::Binary),
        "hex" => Ok(Encoding::Hex),
        _ => Err(SpecError(format!(
            "unknown encoding {s:?} (use ascii, ebcdic, bcd, binary or hex)"
        ))),
    }
}

pub fn parse_length(s: &str) -> Result<LengthType, SpecError> {
    match s {
        "fixed" => Ok(LengthType::Fixed),
        "L" => Ok(LengthType::Prefixed(1)),
        "LL" => Ok(LengthType::Prefixed(2)),
        "LLL" => Ok(LengthType::Prefixed(3)),
        "LLLL" => Ok(LengthType::Prefixed(4)),
        _ => Err(SpecError(format!(
            "unknown length {s:?} (use fixed, L, LL, LLL or LLLL)"
        ))),
    }
}

pub fn parse_prefix(s: &str) -> Result<PrefixEncoding, SpecError> {
    match s {
        "ascii" => Ok(PrefixEncoding::Ascii),
        "ebcdic" => Ok(PrefixEncoding::Ebcdic),
        "bcd" => Ok(PrefixEncoding::Bcd),
        "binary" => Ok(PrefixEncoding::Binary),
        _ => Err(SpecError(format!(
            "unknown length prefix encoding {s:?} (use ascii, ebcdic, bcd or binary)"
        ))),
    }
}

pub fn parse_pad(s: &str) -> Result<Pad, SpecError> {
    match s {
        "left" => Ok(Pad::Left),
        "right" => Ok(Pad::Right),
        "right_f" => Ok(Pad::RightF),
        _ => Err(SpecError(format!(
            "unknown pad {s:?} (use left, right or right_f)"
        ))),
    }
}

pub fn parse_mti(s: &str) -> Result<MtiEncoding, SpecError> {
    match s {
        "ascii" => Ok(MtiEncoding::Ascii),
        "ebcdic" => Ok(MtiEncoding::Ebcdic),
        "bcd" => Ok(MtiEncoding::Bcd),
        _ => Err(SpecError(format!(
            "unknown MTI encoding {s:?} (use ascii, ebcdic or bcd)"
        ))),
    }
}

pub fn parse_bitmap(s: &str) -> Result<BitmapEncoding, SpecError> {
    match s {
        "binary" => Ok(BitmapEncoding::Binary),
        "hex" => Ok(BitmapEncoding::Hex),
        _ => Err(SpecError(format!(
            "unknown bitmap encoding {s:?} (use binary or hex)"
        ))),
    }
}

pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Numeric => "n",
        Kind::Track => "z",
        Kind::Text => "ans",
        Kind::Binary => "b",
        Kind::Amount => "x+n",
    }
}

pub fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Ascii => "ascii",
        Encoding::Ebcdic => "ebcdic",
        Encoding::Bcd => "bcd",
        Encoding::Binary => "binary",
        Encoding::Hex => "hex",
    }
}

pub fn length_name(l: LengthType) -> &'static str {
    match l {
        LengthType::Fixed => "fixed",
        LengthType::Prefixed(1) => "L",
        LengthType::Prefixed(2) => "LL",
        LengthType::Prefixed(3) => "LLL",
        LengthType::Prefixed(_) => "LLLL",
    }
}

pub fn prefix_name(p: PrefixEncoding) -> &'static str {
    match p {
        PrefixEncoding::Ascii => "ascii",
        PrefixEncoding::Ebcdic => "ebcdic",
        PrefixEncoding::Bcd => "bcd",
        PrefixEncoding::Binary => "binary",
    }
}

pub fn pad_name(p: Pad) -> &'static str {
    match p {
        Pad::Left => "left",
        Pad::Right => "right",
        Pad::RightF => "right_f",
    }
}

pub fn mti_name(m: MtiEncoding) -> &'static str {
    match m {
        MtiEncoding::Ascii => "ascii",
        MtiEncoding::Ebcdic => "ebcdic",
        MtiEncoding::Bcd => "bcd",
    }
}

pub fn bitmap_name(b: BitmapEncoding) -> &'static str {
    match b {
        BitmapEncoding::Binary => "binary",
        BitmapEncoding::Hex => "hex",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_combinations() {
        assert!(FieldSpec::from_names("ans", "bcd", "fixed", "ascii", 4, "left").is_err());
        assert!(FieldSpec::from_names("b", "ascii", "fixed", "ascii", 4, "left").is_err());
        assert!(FieldSpec::from_names("n", "hex", "fixed", "ascii", 4, "left").is_err());
        assert!(FieldSpec::from_names("b", "hex", "fixed", "ascii", 15, "left").is_err());
        assert!(FieldSpec::from_names("n", "ascii", "LL", "ascii", 100, "left").is_err());
        assert!(FieldSpec::from_names("n", "ascii", "LL", "binary", 255, "left").is_ok());
        assert!(FieldSpec::from_names("n", "ascii", "LL", "binary", 256, "left").is_err());
        assert!(FieldSpec::from_names("n", "ascii", "LLLLL", "ascii", 5, "left").is_err());
        assert!(FieldSpec::from_names("n", "ascii", "fixed", "ascii", 0, "left").is_err());
        assert!(FieldSpec::from_names("q", "ascii", "fixed", "ascii", 1, "left").is_err());
        assert!(FieldSpec::from_names("x+n", "bcd", "fixed", "bcd", 9, "left").is_ok());
        assert!(FieldSpec::from_names("x+n", "binary", "fixed", "bcd", 9, "left").is_err());
        assert!(FieldSpec::from_names("x+n", "ascii", "LL", "ascii", 9, "left").is_err());
        assert!(FieldSpec::from_names("x+n", "ascii", "fixed", "ascii", 1, "left").is_err());
    }

    #[test]
    fn names_round_trip() {
        let f = FieldSpec::from_names("z", "bcd", "LL", "bcd", 37, "right_f").unwrap();
        assert_eq!(f.names(), ("z", "bcd", "LL", "bcd", 37, "right_f"));
    }

    #[test]
    fn spec_rejects_field_numbers_out_of_range_and_duplicates() {
        let f = FieldSpec::from_names("n", "ascii", "fixed", "ascii", 6, "left").unwrap();
        assert!(Spec::new("x", MtiEncoding::Ascii, BitmapEncoding::Hex, [(1, f)]).is_err());
        assert!(Spec::new("x", MtiEncoding::Ascii, BitmapEncoding::Hex, [(129, f)]).is_err());
        assert!(Spec::new(
            "x",
            MtiEncoding::Ascii,
            BitmapEncoding::Hex,
            [(3, f), (3, f)]
        )
        .is_err());
        let s = Spec::new("x", MtiEncoding::Ascii, BitmapEncoding::Hex, [(3, f)]).unwrap();
        assert!(s.field(3).is_some());
        assert!(s.field(4).is_none());
        assert_eq!(s.fields().count(), 1);
    }
}
