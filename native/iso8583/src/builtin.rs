//! The two shipped specs, `ascii87` and `binary87`, derived from one ISO 8583:1987 field
//! layout. The Python package ships the same specs as TOML files (the form operators edit);
//! a Python test checks that the files and these tables describe the same spec.
//!
//! Where pyiso8583's `default_ascii` and jPOS `ISO87APackager` disagree, `ascii87` follows
//! pyiso8583 (the oracle the tests run against): field 54 max 240 (jPOS 120), field 55 is
//! LLL with up to 510 hex characters (jPOS: LLLCHAR 999), field 93 is 5 characters (jPOS 6),
//! field 96 is 8 bytes as 16 hex characters (jPOS 16 bytes as 32), field 65 (tertiary
//! bitmap in pyiso8583, 1-byte binary in jPOS) is not defined. Numeric fields are stricter
//! than both: digits only. `binary87` has no pyiso8583 counterpart and follows jPOS
//! `ISO87BPackager` field by field (`switch/iso8583/specs/README.md` lists the one
//! difference kept: field 55 is binary, where jPOS reads the same bytes as text).
use crate::spec::{
    BitmapEncoding, Encoding, FieldSpec, Kind, LengthType, MtiEncoding, Pad, PrefixEncoding, Spec,
};

/// (field, kind, prefix digits (0 = fixed), max length in digits/characters/bytes).
type Layout = (u8, Kind, u8, usize);

const N: Kind = Kind::Numeric;
const Z: Kind = Kind::Track;
const T: Kind = Kind::Text;
const B: Kind = Kind::Binary;
const X: Kind = Kind::Amount;

/// ISO 8583:1987 data elements, lengths as in pyiso8583 `default_ascii` (binary fields in
/// bytes). Amounts of type x+n (28-31, 97) hold the sign letter in the value: `ascii87`
/// writes them as plain text (as pyiso8583), `binary87` as jPOS `IFB_AMOUNT`.
const LAYOUT_1987: &[Layout] = &[
    (2, N, 2, 19),
    (3, N, 0, 6),
    (4, N, 0, 12),
    (5, N, 0, 12),
    (6, N, 0, 12),
    (7, N, 0, 10),
    (8, N, 0, 8),
    (9, N, 0, 8),
    (10, N, 0, 8),
    (11, N, 0, 6),
    (12, N, 0, 6),
    (13, N, 0, 4),
    (14, N, 0, 4),
    (15, N, 0, 4),
    (16, N, 0, 4),
    (17, N, 0, 4),
    (18, N, 0, 4),
    (19, N, 0, 3),
    (20, N, 0, 3),
    (21, N, 0, 3),
    (22, N, 0, 3),
    (23, N, 0, 3),
    (24, N, 0, 3),
    (25, N, 0, 2),
    (26, N, 0, 2),
    (27, N, 0, 1),
    (28, X, 0, 9),
    (29, X, 0, 9),
    (30, X, 0, 9),
    (31, X, 0, 9),
    (32, N, 2, 11),
    (33, N, 2, 11),
    (34, T, 2, 28),
    (35, Z, 2, 37),
    (36, T, 3, 104),
    (37, T, 0, 12),
    (38, T, 0, 6),
    (39, T, 0, 2),
    (40, T, 0, 3),
    (41, T, 0, 8),
    (42, T, 0, 15),
    (43, T, 0, 40),
    (44, T, 2, 25),
    (45, T, 2, 76),
    (46, T, 3, 999),
    (47, T, 3, 999),
    (48, T, 3, 999),
    (49, T, 0, 3),
    (50, T, 0, 3),
    (51, T, 0, 3),
    (52, B, 0, 8),
    (53, N, 0, 16),
    (54, T, 3, 240),
    (55, B, 3, 255),
    (56, T, 3, 999),
    (57, T, 3, 999),
    (58, T, 3, 999),
    (59, T, 3, 999),
    (60, T, 3, 999),
    (61, T, 3, 999),
    (62, T, 3, 999),
    (63, T, 3, 999),
    (64, B, 0, 8),
    (66, N, 0, 1),
    (67, N, 0, 2),
    (68, N, 0, 3),
    (69, N, 0, 3),
    (70, N, 0, 3),
    (71, N, 0, 4),
    (72, N, 0, 4),
    (73, N, 0, 6),
    (74, N, 0, 10),
    (75, N, 0, 10),
    (76, N, 0, 10),
    (77, N, 0, 10),
    (78, N, 0, 10),
    (79, N, 0, 10),
    (80, N, 0, 10),
    (81, N, 0, 10),
    (82, N, 0, 12),
    (83, N, 0, 12),
    (84, N, 0, 12),
    (85, N, 0, 12),
    (86, N, 0, 16),
    (87, N, 0, 16),
    (88, N, 0, 16),
    (89, N, 0, 16),
    (90, N, 0, 42),
    (91, T, 0, 1),
    (92, T, 0, 2),
    (93, T, 0, 5),
    (94, T, 0, 7),
    (95, T, 0, 42),
    (96, B, 0, 8),
    (97, X, 0, 17),
    (98, T, 0, 25),
    (99, N, 2, 11),
    (100, N, 2, 11),
    (101, T, 2, 17),
    (102, T, 2, 28),
    (103, T, 2, 28),
    (104, T, 3, 100),
    (105, T, 3, 999),
    (106, T, 3, 999),
    (107, T, 3, 999),
    (108, T, 3, 999),
    (109, T, 3, 999),
    (110, T, 3, 999),
    (111, T, 3, 999),
    (112, T, 3, 999),
    (113, T, 3, 999),
    (114, T, 3, 999),
    (115, T, 3, 999),
    (116, T, 3, 999),
    (117, T, 3, 999),
    (118, T, 3, 999),
    (119, T, 3, 999),
    (120, T, 3, 999),
    (121, T, 3, 999),
    (122, T, 3, 999),
    (123, T, 3, 999),
    (124, T, 3, 999),
    (125, T, 3, 999),
    (126, T, 3, 999),
    (127, T, 3, 999),
    (128, B, 0, 8),
];

fn length(digits: u8) -> LengthType {
    if digits == 0 {
        LengthType::Fixed
    } else {
        LengthType::Prefixed(digits)
    }
}

/// `ascii87`: ASCII MTI, numerics, text and length prefixes; hex-ASCII bitmaps and binary
/// fields (byte-compatible with pyiso8583 `default_ascii`, jPOS `ISO87APackager`).
pub fn ascii87() -> Spec {
    let fields = LAYOUT_1987.iter().map(|&(n, kind, digits, max)| {
        let (encoding, max) = match kind {
            Kind::Binary => (Encoding::Hex, max * 2),
            _ => (Encoding::Ascii, max),
        };
        // pyiso8583 and jPOS IFA_AMOUNT read x+n as any 9 (17) characters: keep that.
        let kind = if kind == Kind::Amount {
            Kind::Text
        } else {
            kind
        };
        let f = FieldSpec::new(
            kind,
            encoding,
            length(digits),
            PrefixEncoding::Ascii,
            max,
            Pad::Left,
        )
        .expect("built-in ascii87 layout is valid");
        (n, f)
    });
    Spec::new("ascii87", MtiEncoding::Ascii, BitmapEncoding::Hex, fields)
        .expect("built-in ascii87 spec is valid")
}

/// Where `binary87` follows jPOS `ISO87BPackager` rather than the shared 1987 layout (which
/// carries pyiso8583's lengths): (field, max length).
const BINARY87_MAX: &[(u8, usize)] = &[(54, 120), (55, 999), (93, 6), (96, 16)];

/// Field 65 of ISO 8583:1987 (bitmap, extended: b 1), which `ascii87` leaves undefined
/// (pyiso8583 reads a tertiary bitmap there) and jPOS `ISO87BPackager` defines as
/// `IFB_BINARY(1)`.
const BINARY87_EXTRA: &[Layout] = &[(65, B, 0, 1)];

/// `binary87`: jPOS `ISO87BPackager`. BCD MTI, numerics and length prefixes; binary bitmaps
/// and binary fields; ASCII text; fixed numerics left-padded, LL numerics right-padded with a
/// 0 nibble when their length is odd; x+n amounts as a sign byte then BCD digits.
pub fn binary87() -> Spec {
    let mut layout: Vec<Layout> = LAYOUT_1987.iter().chain(BINARY87_EXTRA).copied().collect();
    layout.sort_unstable_by_key(|&(n, ..)| n);
    let fields = layout.into_iter().map(|(n, kind, digits, max)| {
        let encoding = match kind {
            Kind::Binary => Encoding::Binary,
            Kind::Numeric | Kind::Track | Kind::Amount => Encoding::Bcd,
            Kind::Text => Encoding::Ascii,
        };
        let max = BINARY87_MAX
            .iter()
            .find(|&&(f, _)| f == n)
            .map_or(max, |&(_, m)| m);
        // Pad only matters for odd-length BCD; other fields keep the spec-file default
        // (left). The x+n amounts have an even digit count (8, 16).
        let pad = if digits != 0 && encoding == Encoding::Bcd {
            Pad::Right
        } else {
            Pad::Left
        };
        let f = FieldSpec::new(
            kind,
            encoding,
            length(digits),
            PrefixEncoding::Bcd,
            max,
            pad,
        )
        .expect("built-in binary87 layout is valid");
        (n, f)
    });
    Spec::new("binary87", MtiEncoding::Bcd, BitmapEncoding::Binary, fields)
        .expect("built-in binary87 spec is valid")
}

/// A built-in spec by name.
pub fn builtin(name: &str) -> Option<Spec> {
    match name {
        "ascii87" => Some(ascii87()),
        "binary87" => Some(binary87()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_sorted_and_unique() {
        for w in LAYOUT_1987.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
        assert_eq!(ascii87().fields().count(), 126);
        assert_eq!(binary87().fields().count(), 127);
        assert!(ascii87().field(65).is_none());
        assert_eq!(binary87().field(65).map(|f| f.max_len), Some(1));
        assert_eq!(ascii87().field(28).map(|f| f.kind), Some(Kind::Text));
        assert_eq!(binary87().field(28).map(|f| f.kind), Some(Kind::Amount));
        assert!(builtin("nope").is_none());
    }

    #[test]
    fn pin_block_is_16_hex_characters_in_ascii87_and_8_bytes_in_binary87() {
        let a = ascii87();
        let f = a.field(52).unwrap();
        assert_eq!((f.encoding, f.max_len), (Encoding::Hex, 16));
        let b = binary87();
        let f = b.field(52).unwrap();
        assert_eq!((f.encoding, f.max_len), (Encoding::Binary, 8));
    }
}
