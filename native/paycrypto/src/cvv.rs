//! Visa CVV / CVV2 / iCVV (Mastercard CVC): three digits from the PAN, expiry and service code
//! under CVK A || CVK B. CVV2 uses service code 000, iCVV 999 (by convention).
use subtle::ConstantTimeEq;

use crate::block::{xor_into, BlockCipher};
use crate::digits::{check_digits, pack_hex, visa_decimalise};
use crate::error::{bad, Result};

fn compute(cvk: &[u8], pan: &str, expiry_yymm: &str, service_code: &str) -> Result<[u8; 3]> {
    if cvk.len() != 16 {
        return Err(bad("cvk", format!("length {} is not 16", cvk.len())));
    }
    // payShield's CW/CY take the PAN as "up to 19 N": 12-digit PANs (and shorter) exist, and
    // PAN || expiry || service code (at most 26 digits) always fits the 32-digit field.
    check_digits("pan", pan, 1, 19)?;
    check_digits("expiry_yymm", expiry_yymm, 4, 4)?;
    check_digits("service_code", service_code, 3, 3)?;
    let mut text = [b'0'; 32];
    let mut n = 0;
    for part in [pan, expiry_yymm, service_code] {
        text[n..n + part.len()].copy_from_slice(part.as_bytes());
        n += part.len();
    }
    let mut b1 = [0u8; 8];
    let mut b2 = [0u8; 8];
    pack_hex("pan", &text[..16], &mut b1)?;
    pack_hex("pan", &text[16..], &mut b2)?;
    let ka = BlockCipher::des("cvk", &cvk[..8])?;
    let k = BlockCipher::des("cvk", cvk)?;
    ka.encrypt_block(&mut b1);
    xor_into(&mut b1, &b2);
    k.encrypt_block(&mut b1);
    let digits = visa_decimalise(&b1, 3);
    let mut out = [0u8; 3];
    out.copy_from_slice(digits.as_bytes());
    Ok(out)
}

pub fn generate(cvk: &[u8], pan: &str, expiry_yymm: &str, service_code: &str) -> Result<String> {
    let v = compute(cvk, pan, expiry_yymm, service_code)?;
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// Constant-time check of a presented CVV/CVV2/iCVV.
pub fn verify(
    cvk: &[u8],
    pan: &str,
    expiry_yymm: &str,
    service_code: &str,
    cvv: &str,
) -> Result<bool> {
    check_digits("cvv", cvv, 3, 3)?;
    let v = compute(cvk, pan, expiry_yymm, service_code)?;
    Ok(v.ct_eq(cvv.as_bytes()).into())
}
