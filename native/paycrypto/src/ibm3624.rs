//! IBM 3624 PIN offset: the natural PIN is the validation data encrypted under the PVK and
//! decimalised with a table; the offset is what turns it into the customer's PIN (digit-wise,
//! modulo 10). Verification compares the leftmost `check_length` digits.
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::block::BlockCipher;
use crate::digits::{check_digits, hex_val, pack_hex};
use crate::error::{bad, Result};
use crate::pinblock::{self, Format, Pin};

/// The 16 natural PIN digits (decimalised encryption of the F-padded validation data).
fn natural_digits(
    pvk: &BlockCipher,
    validation_data: &str,
    decimalisation_table: &str,
) -> Result<[u8; 16]> {
    let vd = validation_data.as_bytes();
    if vd.is_empty() || vd.len() > 16 || !vd.iter().all(|c| hex_val(*c).is_some()) {
        return Err(bad("validation_data", "must be 1-16 hex digits"));
    }
    check_digits("decimalisation_table", decimalisation_table, 16, 16)?;
    let mut text = [b'F'; 16];
    text[..vd.len()].copy_from_slice(vd);
    let mut block = [0u8; 8];
    pack_hex("validation_data", &text, &mut block)?;
    pvk.encrypt_block(&mut block);
    let table = decimalisation_table.as_bytes();
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let n = crate::digits::nibble(&block, i) as usize;
        *o = table[n] - b'0';
    }
    block.zeroize();
    Ok(out)
}

fn check_check_length(check_length: i64, pin_len: usize) -> Result<usize> {
    if (4..=12).contains(&check_length) && check_length as usize <= pin_len {
        Ok(check_length as usize)
    } else {
        Err(bad(
            "check_length",
            format!("{check_length} is not 4-12 and at most the PIN length"),
        ))
    }
}

/// Offset (as many digits as the PIN) for a clear PIN.
pub fn offset_generate(
    pvk: &[u8],
    pin: &str,
    validation_data: &str,
    decimalisation_table: &str,
    check_length: i64,
) -> Result<String> {
    let cipher = BlockCipher::des("pvk", pvk)?;
    let pin = Pin::parse(pin)?;
    check_check_length(check_length, pin.len())?;
    let mut natural = natural_digits(&cipher, validation_data, decimalisation_table)?;
    let offset = pin
        .digits()
        .iter()
        .zip(natural.iter())
        .map(|(p, n)| (b'0' + (10 + p - n) % 10) as char)
        .collect();
    natural.zeroize();
    Ok(offset)
}

/// Decrypts the PIN block and checks its leftmost `check_length` digits against natural PIN +
/// offset, in constant time. `offset` may be right-padded with F (payShield style).
#[allow(clippy::too_many_arguments)]
pub fn verify(
    pin_key: &[u8],
    fmt: Format,
    block: &[u8],
    pan: &str,
    pvk: &[u8],
    offset: &str,
    validation_data: &str,
    decimalisation_table: &str,
    check_length: i64,
) -> Result<bool> {
    let cipher = BlockCipher::des("pvk", pvk)?;
    let off = offset.trim_end_matches(['F', 'f']);
    check_digits("offset", off, 4, 12)?;
    if !(4..=12).contains(&check_length) || check_length as usize > off.len() {
        return Err(bad(
            "check_length",
            format!("{check_length} is not 4-12 and at most the offset length"),
        ));
    }
    let mut natural = natural_digits(&cipher, validation_data, decimalisation_table)?;
    let pin = pinblock::decrypt("pin_key", pin_key, fmt, block, pan)?;
    let n = check_length as usize;
    let mut expected = [0u8; 12];
    for (i, e) in expected.iter_mut().enumerate().take(n) {
        *e = (natural[i] + (off.as_bytes()[i] - b'0')) % 10;
    }
    let ok = pin.len() >= n && bool::from(expected[..n].ct_eq(&pin.digits()[..n.min(pin.len())]));
    natural.zeroize();
    expected.zeroize();
    Ok(ok)
}
