//! Visa PIN Verification Value (PVV): a 4-digit value derived from the PAN, the PVK index and the
//! first four PIN digits under the PVK.
use subtle::ConstantTimeEq;

use crate::block::BlockCipher;
use crate::digits::{check_digits, check_pan, visa_decimalise};
use crate::error::{bad, Result};
use crate::pinblock::{self, Format, Pin};

fn check_pvki(pvki: i64) -> Result<u8> {
    if (0..=9).contains(&pvki) {
        Ok(pvki as u8)
    } else {
        Err(bad("pvki", format!("{pvki} is not 0-9")))
    }
}

/// PVV from a parsed PIN: TSP = 11 PAN digits before the check digit || PVKI || 4 PIN digits,
/// encrypted under the PVK and decimalised (digits first, then A-F as 0-5).
pub(crate) fn pvv_for(pvk: &BlockCipher, pan: &str, pvki: u8, pin: &Pin) -> [u8; 4] {
    let p = pan.as_bytes();
    let mut tsp = [0u8; 8];
    let mut nibbles = [0u8; 16];
    for (i, c) in p[p.len() - 12..p.len() - 1].iter().enumerate() {
        nibbles[i] = c - b'0';
    }
    nibbles[11] = pvki;
    nibbles[12..16].copy_from_slice(&pin.digits()[..4]);
    for i in 0..8 {
        tsp[i] = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
    }
    pvk.encrypt_block(&mut tsp);
    let digits = visa_decimalise(&tsp, 4);
    let mut out = [0u8; 4];
    out.copy_from_slice(digits.as_bytes());
    zeroize::Zeroize::zeroize(&mut nibbles);
    out
}

/// PVV for a clear PIN (PIN issuance inside the HSM).
pub fn generate(pvk: &[u8], pan: &str, pvki: i64, pin: &str) -> Result<String> {
    let cipher = BlockCipher::des("pvk", pvk)?;
    check_pan(pan)?;
    let pvki = check_pvki(pvki)?;
    let pin = Pin::parse(pin)?;
    let pvv = pvv_for(&cipher, pan, pvki, &pin);
    Ok(String::from_utf8_lossy(&pvv).into_owned())
}

/// Decrypts the PIN block under the PIN key and compares its PVV in constant time.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    pin_key: &[u8],
    fmt: Format,
    block: &[u8],
    pan: &str,
    pvk: &[u8],
    pvki: i64,
    pvv: &str,
) -> Result<bool> {
    check_pan(pan)?;
    let pvk = BlockCipher::des("pvk", pvk)?;
    let pvki = check_pvki(pvki)?;
    check_digits("pvv", pvv, 4, 4)?;
    let pin = pinblock::decrypt("pin_key", pin_key, fmt, block, pan)?;
    let expected = pvv_for(&pvk, pan, pvki, &pin);
    Ok(expected.ct_eq(pvv.as_bytes()).into())
}
