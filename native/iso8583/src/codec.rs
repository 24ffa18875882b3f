//! Message encode and decode: MTI, primary (and secondary) bitmap, then each field the bitmap
//! announces, driven entirely by a [`Spec`].
//!
//! Decoding streams each field to a [`Sink`] as a borrowed [`Value`] (a slice of the input when
//! no conversion is needed), so a caller such as the Python binding builds its own objects
//! directly with no intermediate allocation. Every malformed input is an [`Error`]; nothing here
//! panics on input, loops on input or returns part of a message.
use std::collections::BTreeMap;

use crate::ebcdic;
use crate::error::{Error, ErrorKind, Location};
use crate::spec::{
    BitmapEncoding, Encoding, FieldSpec, Kind, LengthType, MtiEncoding, Pad, PrefixEncoding, Spec,
};

/// A field value: text (numeric, track and text fields) or bytes (binary fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// Receives a decoded message piece by piece.
pub trait Sink {
    type Error: From<Error>;
    fn mti(&mut self, mti: &str) -> Result<(), Self::Error>;
    /// Called once the bitmaps are read, with the number of fields that follow (lets a sink
    /// size its container once).
    fn begin_fields(&mut self, _count: usize) -> Result<(), Self::Error> {
        Ok(())
    }
    fn field(&mut self, number: u8, value: Value<'_>) -> Result<(), Self::Error>;
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize, loc: Location) -> Result<&'a [u8], Error> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(Error::new(
                loc,
                self.pos,
                ErrorKind::Truncated {
                    needed: n,
                    available,
                },
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

/// Reusable conversion buffers, so converted values (BCD, EBCDIC, hex) need no allocation
/// per field.
#[derive(Default)]
struct Scratch {
    text: String,
    bytes: Vec<u8>,
}

/// Decode one message, streaming its parts to `sink`. The whole input must be one message:
/// bytes after the last field are an error.
pub fn decode_into<S: Sink>(spec: &Spec, data: &[u8], sink: &mut S) -> Result<(), S::Error> {
    let mut r = Reader { data, pos: 0 };
    let mut mti = [0u8; 4];
    read_mti(spec.mti, &mut r, &mut mti)?;
    // The MTI holds four ASCII digits by construction.
    sink.mti(std::str::from_utf8(&mti).unwrap_or("0000"))?;

    let bitmap_at = r.pos;
    let primary = read_bitmap(spec.bitmap, &mut r)?;
    let secondary = if primary & (1 << 63) != 0 {
        read_bitmap(spec.bitmap, &mut r)?
    } else {
        0
    };

    sink.begin_fields(((primary & !(1u64 << 63)).count_ones() + secondary.count_ones()) as usize)?;
    let mut scratch = Scratch::default();
    for (half, base) in [(primary & !(1u64 << 63), 1u32), (secondary, 65u32)] {
        let mut bits = half;
        while bits != 0 {
            let lz = bits.leading_zeros();
            bits &= !(1u64 << (63 - lz));
            let n = (base + lz) as u8;
            let f = spec
                .field(n)
                .ok_or_else(|| Error::new(Location::Field(n), bitmap_at, ErrorKind::NoSuchField))?;
            decode_field(f, n, &mut r, &mut scratch, sink)?;
        }
    }

    if r.pos != data.len() {
        return Err(Error::new(
            Location::Message,
            r.pos,
            ErrorKind::TrailingData {
                count: data.len() - r.pos,
            },
        )
        .into());
    }
    Ok(())
}

/// Decode as far as the first error: the message with the MTI (empty if even that could not
/// be read) and every field decoded before the error, and the error itself (None when the
/// whole message decodes). For answering a malformed request with the fields an acquirer
/// matches answers on (STAN, terminal): they usually precede the bad field.
pub fn decode_partial(spec: &Spec, data: &[u8]) -> (Message, Option<Error>) {
    let mut m = Message::default();
    let err = decode_into(spec, data, &mut m).err();
    (m, err)
}

/// Read only the MTI at the start of `data`, e.g. to answer a message that does not decode
/// with a format error of the right message class.
pub fn peek_mti(spec: &Spec, data: &[u8]) -> Result<String, Error> {
    let mut r = Reader { data, pos: 0 };
    let mut mti = [0u8; 4];
    read_mti(spec.mti, &mut r, &mut mti)?;
    Ok(mti.iter().map(|&b| b as char).collect())
}

fn read_mti(enc: MtiEncoding, r: &mut Reader<'_>, out: &mut [u8; 4]) -> Result<(), Error> {
    let at = r.pos;
    match enc {
        MtiEncoding::Ascii => {
            let b = r.take(4, Location::Mti)?;
            for (i, &c) in b.iter().enumerate() {
                if !c.is_ascii_digit() {
                    return Err(Error::new(
                        Location::Mti,
                        at + i,
                        ErrorKind::NonNumeric { byte: c },
                    ));
                }
                out[i] = c;
            }
        }
        MtiEncoding::Ebcdic => {
            let b = r.take(4, Location::Mti)?;
            for (i, &c) in b.iter().enumerate() {
                if !(0xF0..=0xF9).contains(&c) {
                    return Err(Error::new(
                        Location::Mti,
                        at + i,
                        ErrorKind::NonNumeric { byte: c },
                    ));
                }
                out[i] = c - 0xF0 + b'0';
            }
        }
        MtiEncoding::Bcd => {
            let b = r.take(2, Location::Mti)?;
            for (i, &c) in b.iter().enumerate() {
                let (hi, lo) = (c >> 4, c & 0x0F);
                if hi > 9 || lo > 9 {
                    return Err(Error::new(
                        Location::Mti,
                        at + i,
                        ErrorKind::NonNumeric { byte: c },
                    ));
                }
                out[2 * i] = b'0' + hi;
                out[2 * i + 1] = b'0' + lo;
            }
        }
    }
    Ok(())
}

#[inline]
fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn read_bitmap(enc: BitmapEncoding, r: &mut Reader<'_>) -> Result<u64, Error> {
    let at = r.pos;
    match enc {
        BitmapEncoding::Binary => {
            let b = r.take(8, Location::Bitmap)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_be_bytes(a))
        }
        BitmapEncoding::Hex => {
            let b = r.take(16, Location::Bitmap)?;
            let mut v = 0u64;
            for (i, &c) in b.iter().enumerate() {
                let d = hex_nibble(c).ok_or(Error::new(
                    Location::Bitmap,
                    at + i,
                    ErrorKind::BadHex { byte: c },
                ))?;
                v = (v << 4) | d as u64;
            }
            Ok(v)
        }
    }
}

fn read_prefix(
    digits: u8,
    enc: PrefixEncoding,
    r: &mut Reader<'_>,
    loc: Location,
) -> Result<usize, Error> {
    let at = r.pos;
    let bad = || Error::new(loc, at, ErrorKind::BadLengthPrefix);
    let mut v = 0usize;
    match enc {
        PrefixEncoding::Ascii => {
            for &c in r.take(digits as usize, loc)? {
                if !c.is_ascii_digit() {
                    return Err(bad());
                }
                v = v * 10 + (c - b'0') as usize;
            }
        }
        PrefixEncoding::Ebcdic => {
            for &c in r.take(digits as usize, loc)? {
                if !(0xF0..=0xF9).contains(&c) {
                    return Err(bad());
                }
                v = v * 10 + (c - 0xF0) as usize;
            }
        }
        PrefixEncoding::Bcd => {
            for &c in r.take((digits as usize).div_ceil(2), loc)? {
                let (hi, lo) = (c >> 4, c & 0x0F);
                if hi > 9 || lo > 9 {
                    return Err(bad());
                }
                v = v * 100 + (hi * 10 + lo) as usize;
            }
        }
        PrefixEncoding::Binary => {
            for &c in r.take(if digits <= 2 { 1 } else { 2 }, loc)? {
                v = (v << 8) | c as usize;
            }
        }
    }
    Ok(v)
}

/// View bytes already checked to be ASCII as `str` without a second validation pass (the
/// check is the caller's: `digit_ok` accepts only bytes below 0x80, and the BCD path writes
/// only digits and '='). A debug build re-checks.
#[inline]
fn ascii_str(b: &[u8]) -> &str {
    debug_assert!(b.is_ascii());
    // SAFETY: every byte is below 0x80 (see above), and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(b) }
}

/// The sign of an x+n amount: C (credit), D (debit), or a digit for an unsigned amount.
#[inline]
fn sign_ok(c: u8) -> bool {
    c == b'C' || c == b'D' || c.is_ascii_digit()
}

/// Whether character `c` may stand at position `i` of a value of `kind` (text encodings).
#[inline]
fn char_ok(kind: Kind, i: usize, c: u8) -> bool {
    match kind {
        Kind::Numeric => c.is_ascii_digit(),
        Kind::Track => c.is_ascii_digit() || c == b'=' || c == b'D',
        Kind::Amount if i == 0 => sign_ok(c),
        Kind::Amount => c.is_ascii_digit(),
        _ => c < 0x80,
    }
}

/// The first character of `b` that `kind` does not allow where it stands.
#[inline]
fn first_bad(kind: Kind, b: &[u8]) -> Option<usize> {
    b.iter()
        .enumerate()
        .position(|(i, &c)| !char_ok(kind, i, c))
}

/// The error for `byte`, found at position `i` of a value of `kind`.
fn content_error(kind: Kind, i: usize, loc: Location, at: usize, byte: u8) -> Error {
    let k = match kind {
        Kind::Text => ErrorKind::NotAscii { byte },
        Kind::Amount if i == 0 => ErrorKind::BadSign { byte },
        _ => ErrorKind::NonNumeric { byte },
    };
    Error::new(loc, at, k)
}

/// Unpack `units` BCD digits from `body` into `buf` (the pad nibble of an odd count where
/// `pad` says, checked); in track data the nibble D reads as '='. `at` is `body`'s offset.
fn unpack_bcd(
    body: &[u8],
    units: usize,
    pad: Pad,
    kind: Kind,
    loc: Location,
    at: usize,
    buf: &mut Vec<u8>,
) -> Result<(), Error> {
    buf.reserve(units);
    let odd = units % 2 == 1;
    let expected = if pad == Pad::RightF { 0x0F } else { 0 };
    let last = body.len().wrapping_sub(1);
    for (i, &byte) in body.iter().enumerate() {
        let pad_hi = odd && i == 0 && pad == Pad::Left;
        let pad_lo = odd && i == last && pad != Pad::Left;
        for (nibble, is_pad) in [(byte >> 4, pad_hi), (byte & 0x0F, pad_lo)] {
            if is_pad {
                if nibble != expected {
                    let e = ErrorKind::BadPad { nibble, expected };
                    return Err(Error::new(loc, at + i, e));
                }
            } else if nibble <= 9 {
                buf.push(b'0' + nibble);
            } else if nibble == 0x0D && kind == Kind::Track {
                buf.push(b'=');
            } else {
                return Err(Error::new(loc, at + i, ErrorKind::NonNumeric { byte }));
            }
        }
    }
    Ok(())
}

/// Pack the digits `b` (track data: '=' as the nibble D) as BCD into `out`, the pad nibble
/// of an odd count where `pad` says. `at` is the output offset, for errors.
fn pack_bcd(
    b: &[u8],
    pad: Pad,
    kind: Kind,
    loc: Location,
    at: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let nibble = |i: usize, c: u8| -> Result<u8, Error> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'=' if kind == Kind::Track => Ok(0x0D),
            _ => Err(Error::new(
                loc,
                at + i / 2,
                ErrorKind::NonNumeric { byte: c },
            )),
        }
    };
    let odd = b.len() % 2 == 1;
    let mut i = 0;
    if odd && pad == Pad::Left {
        out.push(nibble(0, b[0])?);
        i = 1;
    }
    while i + 1 < b.len() {
        let hi = nibble(i, b[i])?;
        let lo = nibble(i + 1, b[i + 1])?;
        out.push((hi << 4) | lo);
        i += 2;
    }
    if i < b.len() {
        let p = if pad == Pad::RightF { 0x0F } else { 0 };
        out.push((nibble(i, b[i])? << 4) | p);
    }
    Ok(())
}

fn decode_field<S: Sink>(
    f: &FieldSpec,
    n: u8,
    r: &mut Reader<'_>,
    scratch: &mut Scratch,
    sink: &mut S,
) -> Result<(), S::Error> {
    let loc = Location::Field(n);
    let start = r.pos;
    let units = match f.length {
        LengthType::Fixed => f.max_len,
        LengthType::Prefixed(d) => {
            let units = read_prefix(d, f.prefix, r, loc)?;
            if units > f.max_len {
                return Err(Error::new(
                    loc,
                    start,
                    ErrorKind::LengthExceedsMax {
                        length: units,
                        max: f.max_len,
                    },
                )
                .into());
            }
            if f.encoding == Encoding::Hex && units % 2 == 1 {
                return Err(
                    Error::new(loc, start, ErrorKind::OddHexLength { length: units }).into(),
                );
            }
            units
        }
    };
    let at = r.pos;
    let body = r.take(f.wire_bytes(units), loc)?;
    match (f.kind, f.encoding) {
        (Kind::Binary, Encoding::Binary) => sink.field(n, Value::Bytes(body)),
        (Kind::Binary, _) => {
            scratch.bytes.clear();
            for (i, pair) in body.chunks_exact(2).enumerate() {
                let hi = hex_nibble(pair[0]);
                let lo = hex_nibble(pair[1]);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => scratch.bytes.push((hi << 4) | lo),
                    (None, _) => {
                        let e = ErrorKind::BadHex { byte: pair[0] };
                        return Err(Error::new(loc, at + 2 * i, e).into());
                    }
                    (_, None) => {
                        let e = ErrorKind::BadHex { byte: pair[1] };
                        return Err(Error::new(loc, at + 2 * i + 1, e).into());
                    }
                }
            }
            sink.field(n, Value::Bytes(&scratch.bytes))
        }
        (kind, Encoding::Ascii) => {
            if let Some(i) = first_bad(kind, body) {
                return Err(content_error(kind, i, loc, at + i, body[i]).into());
            }
            sink.field(n, Value::Text(ascii_str(body)))
        }
        (kind, Encoding::Ebcdic) => {
            scratch.text.clear();
            for (i, &b) in body.iter().enumerate() {
                let c = ebcdic::to_latin1(b);
                if kind != Kind::Text && !char_ok(kind, i, c) {
                    return Err(content_error(kind, i, loc, at + i, b).into());
                }
                scratch.text.push(c as char);
            }
            sink.field(n, Value::Text(&scratch.text))
        }
        (Kind::Amount, _) => {
            // BCD x+n (jPOS IFB_AMOUNT): the sign as one ASCII byte, then the digits in BCD.
            let buf = &mut scratch.bytes;
            buf.clear();
            if !sign_ok(body[0]) {
                let e = ErrorKind::BadSign { byte: body[0] };
                return Err(Error::new(loc, at, e).into());
            }
            buf.push(body[0]);
            unpack_bcd(
                &body[1..],
                units - 1,
                f.pad,
                Kind::Numeric,
                loc,
                at + 1,
                buf,
            )?;
            sink.field(n, Value::Text(ascii_str(buf)))
        }
        (kind, _) => {
            // BCD numeric or track: two digits a byte, one pad nibble when the length is odd.
            let buf = &mut scratch.bytes;
            buf.clear();
            unpack_bcd(body, units, f.pad, kind, loc, at, buf)?;
            sink.field(n, Value::Text(ascii_str(buf)))
        }
    }
}

/// Encode one message into `out` (appended). On error `out` is left as it was.
///
/// `fields` is sorted in place by field number; numbers must be 2..=128 and defined by the
/// spec. The bitmaps are computed from the fields given (a secondary bitmap exactly when a
/// field above 64 is present).
pub fn encode_into(
    spec: &Spec,
    mti: &str,
    fields: &mut [(u8, Value<'_>)],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let base = out.len();
    let r = encode_inner(spec, mti, fields, out, base);
    if r.is_err() {
        out.truncate(base);
    }
    r
}

fn encode_inner(
    spec: &Spec,
    mti: &str,
    fields: &mut [(u8, Value<'_>)],
    out: &mut Vec<u8>,
    base: usize,
) -> Result<(), Error> {
    write_mti(spec.mti, mti, out, base)?;
    fields.sort_unstable_by_key(|&(n, _)| n);

    let mut primary = 0u64;
    let mut secondary = 0u64;
    let mut prev = 0u8;
    for &(n, _) in fields.iter() {
        let loc = Location::Field(n);
        let at = out.len() - base;
        if !(2..=128).contains(&n) {
            let e = ErrorKind::FieldNumberOutOfRange { number: n as i64 };
            return Err(Error::new(loc, at, e));
        }
        if n == prev {
            return Err(Error::new(loc, at, ErrorKind::DuplicateField));
        }
        prev = n;
        if spec.field(n).is_none() {
            return Err(Error::new(loc, at, ErrorKind::NoSuchField));
        }
        if n <= 64 {
            primary |= 1 << (64 - n);
        } else {
            secondary |= 1 << (128 - n);
        }
    }
    if secondary != 0 {
        primary |= 1 << 63;
    }
    write_bitmap(spec.bitmap, primary, out);
    if secondary != 0 {
        write_bitmap(spec.bitmap, secondary, out);
    }
    for &(n, v) in fields.iter() {
        // Checked above: every number has a definition.
        if let Some(f) = spec.field(n) {
            encode_field(f, n, v, out, base)?;
        }
    }
    Ok(())
}

fn write_mti(enc: MtiEncoding, mti: &str, out: &mut Vec<u8>, base: usize) -> Result<(), Error> {
    let b = mti.as_bytes();
    if b.len() != 4 {
        let e = ErrorKind::WrongLength {
            length: mti.chars().count(),
            expected: 4,
        };
        return Err(Error::new(Location::Mti, out.len() - base, e));
    }
    if let Some(i) = b.iter().position(|c| !c.is_ascii_digit()) {
        let e = ErrorKind::NonNumeric { byte: b[i] };
        return Err(Error::new(Location::Mti, out.len() - base + i, e));
    }
    match enc {
        MtiEncoding::Ascii => out.extend_from_slice(b),
        MtiEncoding::Ebcdic => out.extend(b.iter().map(|c| c - b'0' + 0xF0)),
        MtiEncoding::Bcd => {
            out.push(((b[0] - b'0') << 4) | (b[1] - b'0'));
            out.push(((b[2] - b'0') << 4) | (b[3] - b'0'));
        }
    }
    Ok(())
}

fn write_bitmap(enc: BitmapEncoding, bits: u64, out: &mut Vec<u8>) {
    match enc {
        BitmapEncoding::Binary => out.extend_from_slice(&bits.to_be_bytes()),
        BitmapEncoding::Hex => {
            for b in bits.to_be_bytes() {
                out.push(HEX_UPPER[(b >> 4) as usize]);
                out.push(HEX_UPPER[(b & 0x0F) as usize]);
            }
        }
    }
}

fn write_prefix(digits: u8, enc: PrefixEncoding, units: usize, out: &mut Vec<u8>) {
    match enc {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let zero = if enc == PrefixEncoding::Ascii {
                b'0'
            } else {
                0xF0
            };
            let mut div = 10usize.pow(digits as u32 - 1);
            for _ in 0..digits {
                out.push(zero + ((units / div) % 10) as u8);
                div /= 10;
            }
        }
        PrefixEncoding::Bcd => {
            let nbytes = (digits as usize).div_ceil(2);
            let mut div = 10usize.pow(2 * nbytes as u32 - 2);
            for _ in 0..nbytes {
                let two = (units / div) % 100;
                out.push((((two / 10) << 4) | (two % 10)) as u8);
                div /= 100;
            }
        }
        PrefixEncoding::Binary => {
            if digits <= 2 {
                out.push(units as u8);
            } else {
                out.extend_from_slice(&(units as u16).to_be_bytes());
            }
        }
    }
}

fn encode_field(
    f: &FieldSpec,
    n: u8,
    v: Value<'_>,
    out: &mut Vec<u8>,
    base: usize,
) -> Result<(), Error> {
    let loc = Location::Field(n);
    let start = out.len() - base;
    let units = match (f.kind, v) {
        (Kind::Binary, Value::Bytes(b)) => match f.encoding {
            Encoding::Hex => b.len() * 2,
            _ => b.len(),
        },
        (Kind::Binary, Value::Text(_)) => {
            return Err(Error::new(loc, start, ErrorKind::ExpectedBytes))
        }
        (_, Value::Bytes(_)) => return Err(Error::new(loc, start, ErrorKind::ExpectedText)),
        (_, Value::Text(s)) => {
            if f.encoding == Encoding::Ebcdic && !s.is_ascii() {
                s.chars().count()
            } else {
                s.len()
            }
        }
    };
    match f.length {
        LengthType::Fixed => {
            if units != f.max_len {
                let e = ErrorKind::WrongLength {
                    length: units,
                    expected: f.max_len,
                };
                return Err(Error::new(loc, start, e));
            }
        }
        LengthType::Prefixed(d) => {
            if units > f.max_len {
                let e = ErrorKind::LengthExceedsMax {
                    length: units,
                    max: f.max_len,
                };
                return Err(Error::new(loc, start, e));
            }
            write_prefix(d, f.prefix, units, out);
        }
    }
    let at = out.len() - base;
    match (f.kind, f.encoding, v) {
        (_, Encoding::Binary, Value::Bytes(b)) => out.extend_from_slice(b),
        (_, Encoding::Hex, Value::Bytes(b)) => {
            out.reserve(b.len() * 2);
            for &c in b {
                out.push(HEX_UPPER[(c >> 4) as usize]);
                out.push(HEX_UPPER[(c & 0x0F) as usize]);
            }
        }
        (kind, Encoding::Ascii, Value::Text(s)) => {
            let b = s.as_bytes();
            if let Some(i) = first_bad(kind, b) {
                return Err(content_error(kind, i, loc, at + i, b[i]));
            }
            out.extend_from_slice(b);
        }
        (kind, Encoding::Ebcdic, Value::Text(s)) => {
            for (i, ch) in s.chars().enumerate() {
                let code = ch as u32;
                if code > 0xFF {
                    return Err(Error::new(loc, at + i, ErrorKind::NotEncodable { ch }));
                }
                let c = code as u8;
                if kind != Kind::Text && !char_ok(kind, i, c) {
                    return Err(content_error(kind, i, loc, at + i, c));
                }
                out.push(ebcdic::from_latin1(c));
            }
        }
        (Kind::Amount, _, Value::Text(s)) => {
            // BCD x+n: the sign as one ASCII byte, then the digits in BCD. The length was
            // checked above (fixed, at least 2), so there is a sign.
            let b = s.as_bytes();
            if !sign_ok(b[0]) {
                return Err(Error::new(loc, at, ErrorKind::BadSign { byte: b[0] }));
            }
            out.push(b[0]);
            pack_bcd(&b[1..], f.pad, Kind::Numeric, loc, at + 1, out)?;
        }
        (kind, _, Value::Text(s)) => pack_bcd(s.as_bytes(), f.pad, kind, loc, at, out)?,
        // Kind/value agreement was checked above.
        _ => return Err(Error::new(loc, start, ErrorKind::ExpectedText)),
    }
    Ok(())
}

/// An owned field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    Text(String),
    Bytes(Vec<u8>),
}

impl OwnedValue {
    pub fn as_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Text(s) => Value::Text(s),
            OwnedValue::Bytes(b) => Value::Bytes(b),
        }
    }
}

/// An owned message: the convenient (allocating) form for Rust callers and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub mti: String,
    pub fields: BTreeMap<u8, OwnedValue>,
}

impl Sink for Message {
    type Error = Error;
    fn mti(&mut self, mti: &str) -> Result<(), Error> {
        self.mti = mti.to_string();
        Ok(())
    }
    fn field(&mut self, number: u8, value: Value<'_>) -> Result<(), Error> {
        let v = match value {
            Value::Text(s) => OwnedValue::Text(s.to_string()),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
        };
        self.fields.insert(number, v);
        Ok(())
    }
}

/// Decode one message into an owned [`Message`].
pub fn decode(spec: &Spec, data: &[u8]) -> Result<Message, Error> {
    let mut m = Message::default();
    decode_into(spec, data, &mut m)?;
    Ok(m)
}

/// Encode an owned [`Message`].
pub fn encode(spec: &Spec, msg: &Message) -> Result<Vec<u8>, Error> {
    let mut fields: Vec<(u8, Value<'_>)> =
        msg.fields.iter().map(|(&n, v)| (n, v.as_value())).collect();
    let mut out = Vec::with_capacity(256);
    encode_into(spec, &msg.mti, &mut fields, &mut out)?;
    Ok(out)
}
