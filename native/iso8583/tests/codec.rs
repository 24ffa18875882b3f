//! Codec tests: each field kind, encoding, prefix, the bitmaps, and each error class, on the
//! built-in specs and on small specs made for one feature.
use switch_iso8583::builtin::{ascii87, binary87};
use switch_iso8583::spec::{BitmapEncoding, MtiEncoding};
use switch_iso8583::{decode, encode, ErrorKind, FieldSpec, Location, Message, OwnedValue, Spec};

fn text(s: &str) -> OwnedValue {
    OwnedValue::Text(s.to_string())
}

fn bytes(b: &[u8]) -> OwnedValue {
    OwnedValue::Bytes(b.to_vec())
}

fn msg(mti: &str, fields: &[(u8, OwnedValue)]) -> Message {
    Message {
        mti: mti.to_string(),
        fields: fields.iter().cloned().collect(),
    }
}

/// A one-field spec (field 2) for testing a single field type.
fn one(kind: &str, enc: &str, len: &str, prefix: &str, max: usize, pad: &str) -> Spec {
    let f = FieldSpec::from_names(kind, enc, len, prefix, max, pad).unwrap();
    Spec::new("t", MtiEncoding::Ascii, BitmapEncoding::Binary, [(2, f)]).unwrap()
}

/// The encoded bytes of field 2 alone (after 4-byte MTI and 8-byte bitmap).
fn field2(spec: &Spec, v: OwnedValue) -> Vec<u8> {
    let out = encode(spec, &msg("0200", &[(2, v.clone())])).unwrap();
    assert_eq!(&out[..4], b"0200");
    assert_eq!(out[4], 0x40);
    let back = decode(spec, &out).unwrap();
    assert_eq!(back.fields[&2], v, "round trip");
    out[12..].to_vec()
}

fn field2_decode_err(spec: &Spec, body: &[u8]) -> switch_iso8583::Error {
    let mut data = b"0200\x40\0\0\0\0\0\0\0".to_vec();
    data.extend_from_slice(body);
    decode(spec, &data).unwrap_err()
}

fn typical_0200() -> Message {
    msg(
        "0200",
        &[
            (2, text("4761739001010119")),
            (3, text("011000")),
            (4, text("000000500000")),
            (7, text("1129034512")),
            (11, text("000123")),
            (12, text("044512")),
            (13, text("1129")),
            (14, text("2812")),
            (18, text("6011")),
            (22, text("051")),
            (25, text("00")),
            (32, text("00799")),
            (35, text("4761739001010119=28122011143857589")),
            (37, text("333303000123")),
            (41, text("ATM00001")),
            (42, text("POSTE0000000001")),
            (43, text(&format!("{:<38}DZ", "ALGERIE POSTE GAB 01 ALGER"))),
            (49, text("012")),
            (52, bytes(&[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0])),
        ],
    )
}

#[test]
fn ascii87_known_bytes() {
    let m = msg("0210", &[(3, text("111111")), (39, text("05"))]);
    let out = encode(&ascii87(), &m).unwrap();
    // Same bytes pyiso8583's documentation gives for this message with default_ascii.
    assert_eq!(out, b"0210200000000200000011111105".to_vec());
    assert_eq!(decode(&ascii87(), &out).unwrap(), m);
}

#[test]
fn typical_0200_round_trips_on_both_specs() {
    let m = typical_0200();
    for spec in [ascii87(), binary87()] {
        let out = encode(&spec, &m).unwrap();
        assert_eq!(decode(&spec, &out).unwrap(), m, "{}", spec.name);
    }
    let a = encode(&ascii87(), &m).unwrap();
    let b = encode(&binary87(), &m).unwrap();
    assert!(b.len() < a.len());
    assert_eq!(&b[..2], &[0x02, 0x00]);
}

#[test]
fn secondary_bitmap_appears_only_with_fields_above_64() {
    let m = msg(
        "0800",
        &[
            (7, text("1129034512")),
            (11, text("000001")),
            (70, text("301")),
        ],
    );
    let out = encode(&ascii87(), &m).unwrap();
    assert_eq!(&out[4..20], b"8220000000000000");
    assert_eq!(&out[20..36], b"0400000000000000");
    assert_eq!(decode(&ascii87(), &out).unwrap(), m);
    let out = encode(&binary87(), &m).unwrap();
    assert_eq!(&out[2..10], &[0x82, 0x20, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&out[10..18], &[0x04, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode(&binary87(), &out).unwrap(), m);
    // Field 128 is the last bit of the secondary bitmap.
    let m = msg("0200", &[(128, bytes(&[1; 8]))]);
    let out = encode(&binary87(), &m).unwrap();
    assert_eq!(
        &out[2..18],
        &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    assert_eq!(decode(&binary87(), &out).unwrap(), m);
}

#[test]
fn lowercase_hex_bitmap_is_accepted_and_non_hex_rejected() {
    let body = b"0110000000000001001129034512";
    for bitmap in [b"2a00000000000000", b"2A00000000000000"] {
        let mut d = b"0200".to_vec();
        d.extend_from_slice(bitmap);
        d.extend_from_slice(body);
        let m = decode(&ascii87(), &d).unwrap();
        assert_eq!(m.fields.keys().copied().collect::<Vec<_>>(), vec![3, 5, 7]);
    }
    let mut d = b"02002G00000000000000".to_vec();
    d.extend_from_slice(body);
    let e = decode(&ascii87(), &d).unwrap_err();
    assert_eq!((e.location, e.offset), (Location::Bitmap, 5));
    assert_eq!(e.kind, ErrorKind::BadHex { byte: b'G' });
}

#[test]
fn numeric_ascii_fixed_and_prefixed() {
    let s = one("n", "ascii", "fixed", "ascii", 6, "left");
    assert_eq!(field2(&s, text("012345")), b"012345");
    let s = one("n", "ascii", "LL", "ascii", 19, "left");
    assert_eq!(field2(&s, text("4761")), b"044761");
    let s = one("n", "ascii", "LLL", "ascii", 999, "left");
    assert_eq!(field2(&s, text("12")), b"00212");
    let s = one("n", "ascii", "LLLL", "ascii", 9999, "left");
    assert_eq!(field2(&s, text("1")), b"00011");
    let s = one("n", "ascii", "L", "ascii", 9, "left");
    assert_eq!(field2(&s, text("123")), b"3123");
    let s = one("n", "ascii", "LL", "ascii", 19, "left");
    assert_eq!(field2(&s, text("")), b"00");
}

#[test]
fn numeric_bcd_pads() {
    let s = one("n", "bcd", "fixed", "bcd", 3, "left");
    assert_eq!(field2(&s, text("051")), [0x00, 0x51]);
    let s = one("n", "bcd", "fixed", "bcd", 3, "right");
    assert_eq!(field2(&s, text("051")), [0x05, 0x10]);
    let s = one("n", "bcd", "fixed", "bcd", 3, "right_f");
    assert_eq!(field2(&s, text("051")), [0x05, 0x1F]);
    let s = one("n", "bcd", "LL", "bcd", 19, "left");
    assert_eq!(field2(&s, text("47617")), [0x05, 0x04, 0x76, 0x17]);
    let s = one("n", "bcd", "LLL", "bcd", 999, "left");
    assert_eq!(field2(&s, text("1234")), [0x00, 0x04, 0x12, 0x34]);
    let s = one("n", "bcd", "LLLL", "bcd", 9999, "left");
    assert_eq!(field2(&s, text("12")), [0x00, 0x02, 0x12]);
    let s = one("n", "bcd", "LL", "binary", 99, "left");
    assert_eq!(field2(&s, text("123")), [0x03, 0x01, 0x23]);
    let s = one("n", "bcd", "LLL", "binary", 999, "left");
    assert_eq!(field2(&s, text("12")), [0x00, 0x02, 0x12]);
}

#[test]
fn bcd_pad_nibble_is_checked() {
    let s = one("n", "bcd", "fixed", "bcd", 3, "left");
    let e = field2_decode_err(&s, &[0x10, 0x51]);
    assert_eq!(
        e.kind,
        ErrorKind::BadPad {
            nibble: 1,
            expected: 0
        }
    );
    assert_eq!((e.location, e.offset), (Location::Field(2), 12));
    let s = one("n", "bcd", "fixed", "bcd", 3, "right_f");
    let e = field2_decode_err(&s, &[0x05, 0x10]);
    assert_eq!(
        e.kind,
        ErrorKind::BadPad {
            nibble: 0,
            expected: 0xF
        }
    );
    assert_eq!(e.offset, 13);
    let s = one("n", "bcd", "fixed", "bcd", 4, "left");
    let e = field2_decode_err(&s, &[0x05, 0x1A]);
    assert_eq!(e.kind, ErrorKind::NonNumeric { byte: 0x1A });
    assert_eq!(e.offset, 13);
}

#[test]
fn track2_in_ascii_and_bcd() {
    let s = one("z", "ascii", "LL", "ascii", 37, "left");
    assert_eq!(field2(&s, text("4761=2812")), b"094761=2812");
    assert_eq!(field2(&s, text("4761D2812")), b"094761D2812");
    let s = one("z", "bcd", "LL", "bcd", 37, "left");
    assert_eq!(
        field2(&s, text("4761=2812")),
        [0x09, 0x04, 0x76, 0x1D, 0x28, 0x12]
    );
    let s = one("z", "bcd", "LL", "bcd", 37, "right_f");
    assert_eq!(
        field2(&s, text("4761=2812")),
        [0x09, 0x47, 0x61, 0xD2, 0x81, 0x2F]
    );
    let e = encode(&s, &msg("0200", &[(2, text("4761X2812"))])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonNumeric { byte: b'X' });
}

#[test]
fn text_ascii_and_ebcdic() {
    let s = one("ans", "ascii", "fixed", "ascii", 5, "left");
    assert_eq!(field2(&s, text("AB C~")), b"AB C~");
    let s = one("ans", "ebcdic", "LL", "ebcdic", 40, "left");
    assert_eq!(field2(&s, text("A1 ")), [0xF0, 0xF3, 0xC1, 0xF1, 0x40]);
    assert_eq!(field2(&s, text("é")), [0xF0, 0xF1, 0x51]);
    let e = encode(&s, &msg("0200", &[(2, text("€"))])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotEncodable { ch: '€' });
    let s = one("n", "ebcdic", "fixed", "ebcdic", 2, "left");
    assert_eq!(field2(&s, text("42")), [0xF4, 0xF2]);
    let e = field2_decode_err(&s, &[0xF4, 0xC1]);
    assert_eq!(e.kind, ErrorKind::NonNumeric { byte: 0xC1 });
}

#[test]
fn binary_raw_and_hex() {
    let s = one("b", "binary", "fixed", "ascii", 4, "left");
    assert_eq!(field2(&s, bytes(&[0, 0xFF, 1, 2])), [0, 0xFF, 1, 2]);
    let s = one("b", "binary", "LLL", "binary", 999, "left");
    assert_eq!(field2(&s, bytes(&[9])), [0, 1, 9]);
    let s = one("b", "hex", "fixed", "ascii", 4, "left");
    assert_eq!(field2(&s, bytes(&[0xAB, 0x01])), b"AB01");
    let s = one("b", "hex", "LL", "ascii", 20, "left");
    assert_eq!(field2(&s, bytes(&[0xAB])), b"02AB");
    let m = {
        let mut d = b"0200\x40\0\0\0\0\0\0\0".to_vec();
        d.extend_from_slice(b"02ab");
        decode(&s, &d).unwrap()
    };
    assert_eq!(m.fields[&2], bytes(&[0xAB]));
    let e = field2_decode_err(&s, b"03ABC");
    assert_eq!(e.kind, ErrorKind::OddHexLength { length: 3 });
    let e = field2_decode_err(&s, b"02AG");
    assert_eq!((e.kind, e.offset), (ErrorKind::BadHex { byte: b'G' }, 15));
}

#[test]
fn ebcdic_prefix_and_mti() {
    let f = FieldSpec::from_names("ans", "ebcdic", "LL", "ebcdic", 20, "left").unwrap();
    let s = Spec::new("e", MtiEncoding::Ebcdic, BitmapEncoding::Binary, [(2, f)]).unwrap();
    let m = msg("0200", &[(2, text("HI"))]);
    let out = encode(&s, &m).unwrap();
    assert_eq!(&out[..4], &[0xF0, 0xF2, 0xF0, 0xF0]);
    assert_eq!(&out[12..], &[0xF0, 0xF2, 0xC8, 0xC9]);
    assert_eq!(decode(&s, &out).unwrap(), m);
}

#[test]
fn error_length_exceeds_max_names_field_and_offset() {
    // Bump field 35 in with a 41-digit track.
    let m = msg("0200", &[(35, text("4761739001010119=28122011143857589"))]);
    let mut out = encode(&ascii87(), &m).unwrap();
    out[20] = b'4';
    out[21] = b'1';
    out.extend_from_slice(b"0000000");
    let e = decode(&ascii87(), &out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field 35: length 41 exceeds max 37 at offset 20"
    );
}

#[test]
fn error_truncated_everywhere() {
    let full = encode(&ascii87(), &typical_0200()).unwrap();
    for cut in 0..full.len() {
        let e = decode(&ascii87(), &full[..cut]).unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Truncated { .. }),
            "cut {cut}: {e}"
        );
    }
    let full = encode(&binary87(), &typical_0200()).unwrap();
    for cut in 0..full.len() {
        assert!(decode(&binary87(), &full[..cut]).is_err(), "cut {cut}");
    }
    let e = decode(&ascii87(), b"02").unwrap_err();
    assert_eq!(e.location, Location::Mti);
    let e = decode(&ascii87(), b"0200200000").unwrap_err();
    assert_eq!((e.location, e.offset), (Location::Bitmap, 4));
}

#[test]
fn error_trailing_data() {
    let mut out = encode(&ascii87(), &typical_0200()).unwrap();
    let n = out.len();
    out.extend_from_slice(b"XY");
    let e = decode(&ascii87(), &out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TrailingData { count: 2 });
    assert_eq!((e.location, e.offset), (Location::Message, n));
}

#[test]
fn error_non_numeric() {
    let e = decode(&ascii87(), b"02002000000000000000A11111").unwrap_err();
    assert_eq!(
        e.to_string(),
        "field 3: non-numeric data (byte 0x41) at offset 20"
    );
    let e = decode(&ascii87(), b"02X02000000000000000111111").unwrap_err();
    assert_eq!((e.location, e.offset), (Location::Mti, 2));
    let e = decode(&ascii87(), b"02004000000000000000A2").unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadLengthPrefix);
    let e = decode(&binary87(), &[0x02, 0x0A]).unwrap_err();
    assert_eq!(e.location, Location::Mti);
}

#[test]
fn error_non_ascii_text() {
    let e = decode(&ascii87(), b"0210000000000200000005\xC3").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TrailingData { .. }));
    let e = decode(&ascii87(), b"02100000000002000000\xC30").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotAscii { byte: 0xC3 });
    let e = encode(&ascii87(), &msg("0210", &[(39, text("é"))])).unwrap_err();
    assert_eq!(e.location, Location::Field(39));
}

#[test]
fn error_bad_bitmap_bit_for_undefined_field() {
    // Bit 1 (secondary) + bit 65 of the secondary: ascii87 has no field 65.
    let e = decode(&ascii87(), b"020080000000000000008000000000000000").unwrap_err();
    assert_eq!(e.location, Location::Field(65));
    assert_eq!(e.kind, ErrorKind::NoSuchField);
    assert_eq!(e.offset, 4);
    let s = one("n", "ascii", "fixed", "ascii", 2, "left");
    let e = decode(&s, b"0200\x20\0\0\0\0\0\0\0").unwrap_err();
    assert_eq!(e.location, Location::Field(3));
}

#[test]
fn encode_errors_name_the_field() {
    let s = ascii87();
    let e = encode(&s, &msg("0200", &[(3, text("12345"))])).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::WrongLength {
            length: 5,
            expected: 6
        }
    );
    assert_eq!(e.location, Location::Field(3));
    let e = encode(&s, &msg("0200", &[(2, text("12345678901234567890"))])).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::LengthExceedsMax {
            length: 20,
            max: 19
        }
    );
    let e = encode(&s, &msg("0200", &[(52, text("1234567890ABCDEF"))])).unwrap_err();
    assert_eq!(
        (e.location, e.kind),
        (Location::Field(52), ErrorKind::ExpectedBytes)
    );
    let e = encode(&s, &msg("0200", &[(39, bytes(b"00"))])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ExpectedText);
    let e = encode(&s, &msg("0200", &[(65, bytes(&[0; 8]))])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSuchField);
    let e = encode(&s, &msg("0200", &[(1, bytes(&[0; 8]))])).unwrap_err();
    assert!(matches!(
        e.kind,
        ErrorKind::FieldNumberOutOfRange { number: 1 }
    ));
    let e = encode(&s, &msg("020", &[])).unwrap_err();
    assert_eq!(e.location, Location::Mti);
    let e = encode(&s, &msg("02A0", &[])).unwrap_err();
    assert_eq!(e.location, Location::Mti);
    let e = encode(&s, &msg("0200", &[(4, text("00000000000A"))])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field 4: non-numeric data (byte 0x41) at offset 31"
    );
}

#[test]
fn encode_into_leaves_buffer_untouched_on_error() {
    use switch_iso8583::{encode_into, Value};
    let mut out = b"keep".to_vec();
    let mut fields = [(3u8, Value::Text("011000")), (4u8, Value::Text("x"))];
    assert!(encode_into(&ascii87(), "0200", &mut fields, &mut out).is_err());
    assert_eq!(out, b"keep");
    let mut fields = [(3u8, Value::Text("011000")), (3u8, Value::Text("011000"))];
    let e = encode_into(&ascii87(), "0200", &mut fields, &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DuplicateField);
}

/// xorshift64*: a tiny deterministic generator so the mutation run is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutation fuzzing that runs on stable `cargo test`: flip, insert, delete, duplicate and
/// splice bytes of valid messages; every result must be an error or a message that encodes
/// back to a message equal to itself. A panic fails the test; the loop is bounded.
#[test]
fn mutation_fuzz_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seeds = Vec::new();
    let mut base = typical_0200();
    base.fields
        .insert(55, bytes(&[0x9F, 0x26, 0x02, 0xAA, 0xBB, 0x95, 0x01, 0x00]));
    base.fields.insert(
        90,
        text(&format!("{:0<42}", "0200000123112903451200000799")),
    );
    base.fields.insert(102, text("0079912345678"));
    base.fields.insert(128, bytes(&[7; 8]));
    base.fields.insert(28, text("D00000150"));
    base.fields.insert(97, text("C0000000000012345"));
    for spec in [ascii87(), binary87()] {
        seeds.push((spec.clone(), encode(&spec, &base).unwrap()));
    }
    let mut decoded_ok = 0usize;
    for i in 0..60_000 {
        let (spec, seed) = &seeds[i % seeds.len()];
        let mut d = seed.clone();
        for _ in 0..=rng.below(4) {
            match rng.below(6) {
                0 if !d.is_empty() => {
                    let p = rng.below(d.len());
                    d[p] = rng.next() as u8;
                }
                1 if !d.is_empty() => {
                    let p = rng.below(d.len());
                    d[p] ^= 1 << rng.below(8);
                }
                2 => {
                    let p = rng.below(d.len() + 1);
                    d.insert(p, rng.next() as u8);
                }
                3 if !d.is_empty() => {
                    let p = rng.below(d.len());
                    d.remove(p);
                }
                4 => {
                    let p = rng.below(d.len() + 1);
                    d.truncate(p);
                }
                _ if !d.is_empty() => {
                    let p = rng.below(d.len());
                    let b = if rng.below(2) == 0 {
                        b'0' + rng.below(10) as u8
                    } else {
                        0
                    };
                    d[p] = b;
                }
                _ => {}
            }
        }
        let (partial, err) = switch_iso8583::decode_partial(spec, &d);
        if !partial.mti.is_empty() {
            // what a salvage keeps is valid: the listener echoes it in its format error
            encode(spec, &partial).expect("salvaged fields encode");
        }
        match decode(spec, &d) {
            Ok(m) => {
                decoded_ok += 1;
                assert_eq!((&partial, err), (&m, None));
                let again = encode(spec, &m).expect("a decoded message encodes");
                assert_eq!(decode(spec, &again).unwrap(), m);
            }
            Err(e) => assert_eq!(err, Some(e)),
        }
    }
    // The run must exercise both outcomes, or it tests nothing.
    assert!(decoded_ok > 100, "only {decoded_ok} mutants decoded");
}

#[test]
fn binary87_pads_like_jpos_iso87bpackager() {
    // Fixed numerics are left-padded (IFB_NUMERIC pad=true), LL numerics right-padded
    // (IFB_LLNUM pad=false): an odd 15-digit PAN ends in a 0 nibble; track 2's '=' is nibble D.
    let m = msg(
        "0200",
        &[
            (2, text("476173900101011")),
            (22, text("051")),
            (35, text("4761=281")),
        ],
    );
    let out = encode(&binary87(), &m).unwrap();
    assert_eq!(
        &out[10..19],
        &[0x15, 0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x01, 0x10]
    );
    assert_eq!(&out[19..21], &[0x00, 0x51]);
    assert_eq!(&out[21..], &[0x08, 0x47, 0x61, 0xD2, 0x81]);
    assert_eq!(decode(&binary87(), &out).unwrap(), m);
    let f = binary87();
    assert_eq!(f.field(54).unwrap().max_len, 120);
    assert_eq!(f.field(96).unwrap().max_len, 16);
}

#[test]
fn peek_mti_reads_only_the_mti() {
    use switch_iso8583::peek_mti;
    assert_eq!(peek_mti(&ascii87(), b"0200garbage").unwrap(), "0200");
    assert_eq!(peek_mti(&binary87(), &[0x04, 0x20, 0xFF]).unwrap(), "0420");
    assert_eq!(
        peek_mti(&ascii87(), b"02").unwrap_err().location,
        Location::Mti
    );
    assert!(peek_mti(&ascii87(), b"02X0").is_err());
}

/// jPOS's own packager test message (ISO87.xml) as `ISO87BPackager` packs it.
const JPOS_ISO87B: &[u8] = include_bytes!("vectors/jpos-ISO87BPackager.bin");
/// The same message without field 90 (so without a secondary bitmap).
const JPOS_ISO87B_F64: &[u8] = include_bytes!("vectors/jpos-ISO87B-Field64.bin");
/// The same message as `ISO87APackager` packs it.
const JPOS_ISO87A: &[u8] = include_bytes!("vectors/jpos-ISO87APackager.bin");

#[test]
fn jpos_iso87bpackager_test_message_decodes_and_reencodes_byte_for_byte() {
    for image in [JPOS_ISO87B, JPOS_ISO87B_F64] {
        let m = decode(&binary87(), image).unwrap();
        assert_eq!(m.mti, "0800");
        // Values as in jPOS's ISO87.xml.
        assert_eq!(m.fields[&2], text("1234567890123456789"));
        assert_eq!(m.fields[&27], text("1"));
        assert_eq!(m.fields[&28], text("000000100")); // IFB_AMOUNT: '0' then 00000100 in BCD
        assert_eq!(m.fields[&31], text("000000400"));
        assert_eq!(m.fields[&32], text("123456"));
        assert_eq!(m.fields[&35], text("1234567890123456=12345678901234567890"));
        assert_eq!(
            m.fields[&43],
            text("JPOS CARD ACCEPTOR / WWW.JPOS.ORG       ")
        );
        assert_eq!(m.fields[&52], bytes(&[0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(m.fields[&55], bytes(b"ABCD"));
        assert_eq!(
            m.fields[&64],
            bytes(&[0xCA, 0xFE, 0xBA, 0xBE, 0xCA, 0xFE, 0xBA, 0xBE])
        );
        assert_eq!(encode(&binary87(), &m).unwrap(), image);
    }
    let m = decode(&binary87(), JPOS_ISO87B).unwrap();
    assert_eq!(m.fields[&90], text(&"0".repeat(42)));
    assert_eq!(m.fields.len(), 64);
}

#[test]
fn jpos_iso87apackager_test_message_decodes_and_reencodes_byte_for_byte() {
    let m = decode(&ascii87(), JPOS_ISO87A).unwrap();
    assert_eq!(m.fields[&28], text("000000100"));
    // jPOS writes field 55 as text ("ABCD"); ascii87 reads those 4 characters as hex.
    assert_eq!(m.fields[&55], bytes(&[0xAB, 0xCD]));
    assert_eq!(encode(&ascii87(), &m).unwrap(), JPOS_ISO87A);
}

#[test]
fn binary87_amounts_are_jpos_ifb_amount() {
    // 'C' or 'D' as one ASCII byte, then 8 digits in BCD: 5 bytes (field 28, 29, 30, 31);
    // field 97 is the sign and 16 digits: 9 bytes.
    let m = msg(
        "0200",
        &[
            (28, text("D00001500")),
            (32, text("628058")),
            (97, text("C0000000000012345")),
        ],
    );
    let out = encode(&binary87(), &m).unwrap();
    // MTI 2 + primary 8 + secondary 8 bytes, then 28, then 32 (LL 06 + 3 bytes), then 97.
    assert_eq!(&out[18..23], &[b'D', 0x00, 0x00, 0x15, 0x00]);
    assert_eq!(&out[23..27], &[0x06, 0x62, 0x80, 0x58]);
    assert_eq!(
        &out[27..],
        &[b'C', 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x23, 0x45]
    );
    assert_eq!(decode(&binary87(), &out).unwrap(), m);
}

#[test]
fn binary87_amount_errors_name_the_amount_field() {
    let good = encode(
        &binary87(),
        &msg("0200", &[(28, text("C00001500")), (32, text("628058"))]),
    )
    .unwrap();
    // A sign that is neither C, D nor a digit.
    let mut bad = good.clone();
    bad[10] = b'X';
    let e = decode(&binary87(), &bad).unwrap_err();
    assert_eq!(e.location, Location::Field(28));
    assert_eq!(
        (e.offset, e.kind.clone()),
        (10, ErrorKind::BadSign { byte: b'X' })
    );
    // A nibble above 9 among the digits.
    let mut bad = good.clone();
    bad[12] = 0x1A;
    let e = decode(&binary87(), &bad).unwrap_err();
    assert_eq!((e.location, e.offset), (Location::Field(28), 12));
    // Truncated inside the amount.
    let e = decode(&binary87(), &good[..13]).unwrap_err();
    assert_eq!(e.location, Location::Field(28));
    // Encode: the sign and the digits are checked, the length is fixed.
    for v in ["X00001500", "C0000150A", "C0001500"] {
        let e = encode(&binary87(), &msg("0200", &[(28, text(v))])).unwrap_err();
        assert_eq!(e.location, Location::Field(28), "{v}");
    }
    // ASCII and EBCDIC x+n check the sign and the digits too.
    let spec = one("x+n", "ascii", "fixed", "ascii", 9, "left");
    assert_eq!(field2(&spec, text("C00001500")), b"C00001500");
    let e = field2_decode_err(&spec, b"C0000150 ");
    assert_eq!(e.kind, ErrorKind::NonNumeric { byte: b' ' });
    let e = field2_decode_err(&spec, b"+00001500");
    assert_eq!(e.kind, ErrorKind::BadSign { byte: b'+' });
    let spec = one("x+n", "ebcdic", "fixed", "ascii", 3, "left");
    assert_eq!(field2(&spec, text("D12")), vec![0xC4, 0xF1, 0xF2]);
    // An odd digit count is padded where the spec says.
    let spec = one("x+n", "bcd", "fixed", "ascii", 4, "left");
    assert_eq!(field2(&spec, text("C123")), vec![b'C', 0x01, 0x23]);
}

#[test]
fn decode_partial_keeps_the_fields_before_the_first_error() {
    use switch_iso8583::decode_partial;
    let good = encode(&ascii87(), &typical_0200()).unwrap();
    let (m, err) = decode_partial(&ascii87(), &good);
    assert_eq!((m, err), (typical_0200(), None));
    // A letter in field 35 (after 2..32): everything before it is kept, the error names 35.
    let mut bad = good.clone();
    let at = bad.windows(5).position(|w| w == b"=2812").unwrap();
    bad[at + 1] = b'X';
    let (m, err) = decode_partial(&ascii87(), &bad);
    let err = err.unwrap();
    assert_eq!(err.location, Location::Field(35));
    assert_eq!(m.mti, "0200");
    let kept: Vec<u8> = m.fields.keys().copied().collect();
    assert_eq!(kept, [2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 25, 32]);
    assert_eq!(m.fields[&11], text("000123"));
    // Trailing bytes: every field is kept, the error is about the message.
    let mut long = good.clone();
    long.push(b'0');
    let (m, err) = decode_partial(&ascii87(), &long);
    assert_eq!(m, typical_0200());
    assert_eq!(err.unwrap().location, Location::Message);
    // An unreadable MTI: nothing.
    let (m, err) = decode_partial(&ascii87(), b"02X0");
    assert_eq!((m.mti.as_str(), m.fields.len()), ("", 0));
    assert_eq!(err.unwrap().location, Location::Mti);
}
