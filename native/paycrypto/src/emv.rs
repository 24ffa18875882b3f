//! EMV issuer-side cryptography (EMV 4.3 Book 2 Annex A): ICC master key derivation option A,
//! common session key derivation, application cryptograms and ARPC methods 1 and 2.
use subtle::ConstantTimeEq;

use crate::block::{xor_into, BlockCipher};
use crate::digits::{check_digits, pack_hex};
use crate::error::{bad, Result};
use crate::keys::odd_parity_byte;
use crate::mac::{pad, retail_mac_padded};

fn check_len(field: &'static str, v: &[u8], n: usize) -> Result<()> {
    if v.len() == n {
        Ok(())
    } else {
        Err(bad(field, format!("length {} is not {n}", v.len())))
    }
}

/// Option A: Y = rightmost 16 digits of PAN || PSN (zero padded on the left);
/// MK = 3DES(IMK, Y) || 3DES(IMK, Y xor FF..FF), odd parity.
pub fn derive_icc_master_key_option_a(
    imk: &[u8],
    pan: &str,
    pan_sequence: &str,
) -> Result<[u8; 16]> {
    let cipher = BlockCipher::tdes("imk", imk)?;
    check_digits("pan", pan, 12, 19)?;
    check_digits("pan_sequence", pan_sequence, 2, 2)?;
    let mut text = [b'0'; 16];
    let joined: Vec<u8> = pan.bytes().chain(pan_sequence.bytes()).collect();
    let take = joined.len().min(16);
    text[16 - take..].copy_from_slice(&joined[joined.len() - take..]);
    let mut y = [0u8; 8];
    pack_hex("pan", &text, &mut y)?;
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&y);
    for (o, b) in out[8..].iter_mut().zip(y) {
        *o = !b;
    }
    cipher.encrypt_block(&mut out[..8]);
    cipher.encrypt_block(&mut out[8..]);
    for b in out.iter_mut() {
        *b = odd_parity_byte(*b);
    }
    Ok(out)
}

/// Common session key: R = ATC || 00 00 00 00 00 00 (or an 8-byte R given whole);
/// SK = 3DES(MK, R with byte 2 = F0) || 3DES(MK, R with byte 2 = 0F), odd parity.
pub fn derive_common_session_key(icc_master_key: &[u8], atc: &[u8]) -> Result<[u8; 16]> {
    check_len("icc_master_key", icc_master_key, 16)?;
    let cipher = BlockCipher::tdes("icc_master_key", icc_master_key)?;
    let mut r = [0u8; 8];
    match atc.len() {
        2 => r[..2].copy_from_slice(atc),
        8 => r.copy_from_slice(atc),
        n => return Err(bad("atc", format!("length {n} is not 2 (ATC) or 8 (R)"))),
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&r);
    out[8..].copy_from_slice(&r);
    out[2] = 0xF0;
    out[10] = 0x0F;
    cipher.encrypt_block(&mut out[..8]);
    cipher.encrypt_block(&mut out[8..]);
    for b in out.iter_mut() {
        *b = odd_parity_byte(*b);
    }
    Ok(out)
}

fn session_halves(session_key: &[u8]) -> Result<(BlockCipher, BlockCipher)> {
    check_len("session_key", session_key, 16)?;
    Ok((
        BlockCipher::des("session_key", &session_key[..8])?,
        BlockCipher::des("session_key", &session_key[8..])?,
    ))
}

/// Application cryptogram (ARQC/TC/AAC): ISO 9797-1 MAC algorithm 3, padding method 2.
pub fn generate_ac(session_key: &[u8], data: &[u8]) -> Result<[u8; 8]> {
    let (k1, k2) = session_halves(session_key)?;
    Ok(retail_mac_padded(&k1, &k2, &pad(data, 2)?))
}

/// Constant-time check of a received cryptogram.
pub fn verify_ac(session_key: &[u8], data: &[u8], ac: &[u8]) -> Result<bool> {
    check_len("ac", ac, 8)?;
    let expected = generate_ac(session_key, data)?;
    Ok(expected.ct_eq(ac).into())
}

/// ARPC method 1: 3DES(SK, ARQC xor (ARC || 00..00)).
pub fn arpc_method1(session_key: &[u8], arqc: &[u8], arc: &[u8]) -> Result<[u8; 8]> {
    check_len("session_key", session_key, 16)?;
    check_len("arqc", arqc, 8)?;
    check_len("arc", arc, 2)?;
    let cipher = BlockCipher::tdes("session_key", session_key)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(arqc);
    xor_into(&mut b[..2], arc);
    cipher.encrypt_block(&mut b);
    Ok(b)
}

/// ARPC method 2: first 4 bytes of MAC algorithm 3 (padding 2) over ARQC || CSU || proprietary
/// authentication data (0-8 bytes).
pub fn arpc_method2(
    session_key: &[u8],
    arqc: &[u8],
    csu: &[u8],
    proprietary_auth_data: &[u8],
) -> Result<[u8; 4]> {
    let (k1, k2) = session_halves(session_key)?;
    check_len("arqc", arqc, 8)?;
    check_len("csu", csu, 4)?;
    if proprietary_auth_data.len() > 8 {
        return Err(bad(
            "proprietary_auth_data",
            format!("length {} is more than 8", proprietary_auth_data.len()),
        ));
    }
    let mut data = Vec::with_capacity(20);
    data.extend_from_slice(arqc);
    data.extend_from_slice(csu);
    data.extend_from_slice(proprietary_auth_data);
    let mac = retail_mac_padded(&k1, &k2, &pad(&data, 2)?);
    let mut out = [0u8; 4];
    out.copy_from_slice(&mac[..4]);
    Ok(out)
}
