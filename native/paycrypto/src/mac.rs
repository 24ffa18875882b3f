//! ISO/IEC 9797-1 MAC algorithms 1 (CBC-MAC) and 3 (retail MAC) over DES/3DES, with padding
//! methods 1 (zeros), 2 (0x80 then zeros) and 3 (bit-length block first).
use crate::block::{xor_into, BlockCipher};
use crate::error::{bad, Result};

/// Applies ISO 9797-1 padding method 1, 2 or 3 for an 8-byte block cipher.
pub fn pad(data: &[u8], method: u8) -> Result<Vec<u8>> {
    const BS: usize = 8;
    let mut out = Vec::with_capacity(data.len() + 2 * BS);
    match method {
        1 => {
            out.extend_from_slice(data);
            // An empty message still gets one block (ISO 9797-1 6.1.1).
            let target = if data.is_empty() {
                BS
            } else {
                data.len().div_ceil(BS) * BS
            };
            out.resize(target, 0);
        }
        2 => {
            out.extend_from_slice(data);
            out.push(0x80);
            out.resize(out.len().div_ceil(BS) * BS, 0);
        }
        3 => {
            let bits = (data.len() as u64) * 8;
            out.extend_from_slice(&bits.to_be_bytes());
            out.extend_from_slice(data);
            let target = out.len().div_ceil(BS).max(2) * BS;
            out.resize(target, 0);
        }
        m => return Err(bad("padding", format!("{m} is not 1, 2 or 3"))),
    }
    Ok(out)
}

/// CBC over whole blocks with a zero IV; returns the last cipher block.
fn cbc_last(cipher: &BlockCipher, padded: &[u8]) -> [u8; 8] {
    let mut chain = [0u8; 8];
    for block in padded.chunks_exact(8) {
        xor_into(&mut chain, block);
        cipher.encrypt_block(&mut chain);
    }
    chain
}

/// MAC algorithm 1: plain CBC-MAC under the whole DES/3DES key. Returns 8 bytes.
pub fn mac_alg1(key: &[u8], data: &[u8], padding: u8) -> Result<[u8; 8]> {
    let cipher = BlockCipher::des("key", key)?;
    let padded = pad(data, padding)?;
    Ok(cbc_last(&cipher, &padded))
}

/// MAC algorithm 3 (ANSI X9.19 retail MAC): CBC under single DES K, then the last block is
/// decrypted under K' and encrypted under K again. `key` is K || K' (16 bytes).
pub fn mac_alg3(key: &[u8], data: &[u8], padding: u8) -> Result<[u8; 8]> {
    if key.len() != 16 {
        return Err(bad("key", format!("length {} is not 16", key.len())));
    }
    let k1 = BlockCipher::des("key", &key[..8])?;
    let k2 = BlockCipher::des("key", &key[8..])?;
    let padded = pad(data, padding)?;
    Ok(retail_mac_padded(&k1, &k2, &padded))
}

/// Retail MAC over already padded data with prepared single-DES halves.
pub(crate) fn retail_mac_padded(k1: &BlockCipher, k2: &BlockCipher, padded: &[u8]) -> [u8; 8] {
    let mut h = cbc_last(k1, padded);
    k2.decrypt_block(&mut h);
    k1.encrypt_block(&mut h);
    h
}
