//! Key hygiene helpers: key check values, DES odd parity, constant-time comparison, AES-CMAC.
use aes::{Aes128, Aes192, Aes256};
use cmac::{Cmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::block::BlockCipher;
use crate::error::{bad, Result};

/// KCV: the first `length` bytes of E(key, 0…0) for DES/3DES keys (X9.24-1 legacy method) or of
/// AES-CMAC(key, 0…0) for AES keys (X9.24-1:2017 method).
pub fn key_check_value(key: &[u8], algorithm: &str, length: usize) -> Result<Vec<u8>> {
    let full: Vec<u8> = match algorithm {
        "des" | "DES" | "tdes" | "TDES" => {
            let c = BlockCipher::des("key", key)?;
            let mut z = [0u8; 8];
            c.encrypt_block(&mut z);
            z.to_vec()
        }
        "aes" | "AES" => aes_cmac("key", key, &[0u8; 16])?.to_vec(),
        other => {
            return Err(bad(
                "algorithm",
                format!("{other:?} is not \"des\" or \"aes\""),
            ))
        }
    };
    if length == 0 || length > full.len() {
        return Err(bad(
            "length",
            format!("{length} is not between 1 and {}", full.len()),
        ));
    }
    Ok(full[..length].to_vec())
}

fn check_des_key_len(key: &[u8]) -> Result<()> {
    match key.len() {
        8 | 16 | 24 => Ok(()),
        n => Err(bad("key", format!("length {n} is not 8, 16 or 24"))),
    }
}

/// Sets the low bit of each byte so every byte has an odd number of one bits (DES key parity).
pub fn adjust_key_parity(key: &[u8]) -> Result<Vec<u8>> {
    check_des_key_len(key)?;
    Ok(key.iter().map(|&b| odd_parity_byte(b)).collect())
}

pub(crate) fn odd_parity_byte(b: u8) -> u8 {
    let high = b & 0xFE;
    if high.count_ones().is_multiple_of(2) {
        high | 1
    } else {
        high
    }
}

/// True when every byte of the key has odd parity.
pub fn key_parity_is_odd(key: &[u8]) -> Result<bool> {
    check_des_key_len(key)?;
    Ok(key.iter().all(|b| b.count_ones() % 2 == 1))
}

/// Constant-time equality (time depends only on the lengths, which are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// AES-CMAC (NIST SP 800-38B) with a 128/192/256-bit key.
pub fn aes_cmac(field: &'static str, key: &[u8], data: &[u8]) -> Result<[u8; 16]> {
    fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> [u8; 16] {
        // Length was checked by the caller, so the key is always accepted.
        let mut m = <M as KeyInit>::new_from_slice(key).expect("checked key length");
        m.update(data);
        let tag = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag);
        out
    }
    match key.len() {
        16 => Ok(run::<Cmac<Aes128>>(key, data)),
        24 => Ok(run::<Cmac<Aes192>>(key, data)),
        32 => Ok(run::<Cmac<Aes256>>(key, data)),
        n => Err(bad(field, format!("length {n} is not 16, 24 or 32"))),
    }
}
