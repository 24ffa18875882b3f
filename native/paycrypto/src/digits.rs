//! Validation and packing of decimal/hex digit strings (PAN, PIN, expiry...).
use crate::error::{bad, Result};

/// Checks that `s` is `min..=max` ASCII decimal digits.
pub fn check_digits(field: &'static str, s: &str, min: usize, max: usize) -> Result<()> {
    let ok = s.len() >= min && s.len() <= max && s.bytes().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else if min == max {
        Err(bad(field, format!("must be {min} digits")))
    } else {
        Err(bad(field, format!("must be {min}-{max} digits")))
    }
}

/// A PAN as the PIN, PVV and CVV algorithms accept it: 13 to 19 digits.
pub fn check_pan(pan: &str) -> Result<()> {
    check_digits("pan", pan, 13, 19)
}

/// A clear PIN: 4 to 12 digits (ISO 9564-1).
pub fn check_pin(pin: &str) -> Result<()> {
    check_digits("pin", pin, 4, 12)
}

/// Value of one hex digit, upper or lower case.
pub fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Packs an even-length string of hex digits into bytes (caller has validated it).
pub fn pack_hex(field: &'static str, s: &[u8], out: &mut [u8]) -> Result<()> {
    if s.len() != out.len() * 2 {
        return Err(bad(field, format!("must be {} hex digits", out.len() * 2)));
    }
    for (i, o) in out.iter_mut().enumerate() {
        let hi = hex_val(s[2 * i]).ok_or_else(|| bad(field, "must be hex digits"))?;
        let lo = hex_val(s[2 * i + 1]).ok_or_else(|| bad(field, "must be hex digits"))?;
        *o = (hi << 4) | lo;
    }
    Ok(())
}

/// Upper-case hex nibble character.
pub fn hex_char(n: u8) -> u8 {
    b"0123456789ABCDEF"[(n & 0x0F) as usize]
}

/// Upper-case hex encoding.
pub fn to_hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(hex_char(b >> 4) as char);
        s.push(hex_char(*b) as char);
    }
    s
}

/// Nibble `i` (0 = high nibble of byte 0) of `data`.
pub fn nibble(data: &[u8], i: usize) -> u8 {
    let b = data[i / 2];
    if i.is_multiple_of(2) {
        b >> 4
    } else {
        b & 0x0F
    }
}

/// Sets nibble `i` of `data` to `v`.
pub fn set_nibble(data: &mut [u8], i: usize, v: u8) {
    let b = &mut data[i / 2];
    if i.is_multiple_of(2) {
        *b = (*b & 0x0F) | (v << 4);
    } else {
        *b = (*b & 0xF0) | (v & 0x0F);
    }
}

/// Decimalises the hex digits of `data` the Visa way: decimal digits first, in order; then, if
/// fewer than `n`, the letters A-F mapped to 0-5, in order. Used by PVV and CVV.
pub fn visa_decimalise(data: &[u8], n: usize) -> String {
    let mut out = String::with_capacity(n);
    for i in 0..data.len() * 2 {
        let v = nibble(data, i);
        if v < 10 && out.len() < n {
            out.push((b'0' + v) as char);
        }
    }
    for i in 0..data.len() * 2 {
        let v = nibble(data, i);
        if v >= 10 && out.len() < n {
            out.push((b'0' + v - 10) as char);
        }
    }
    out
}
