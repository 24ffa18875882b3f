//! Block ciphers behind one type: single DES, two- and three-key 3DES (EDE) and AES-128/192/256,
//! plus the ECB and CBC modes the payment standards use (no padding: callers pass whole blocks).
//!
//! The key schedule runs once per [`BlockCipher`]; round keys are zeroized on drop. AES is the
//! RustCrypto `aes` crate; DES/3DES is [`crate::fastdes`] (checked against the `des` crate).
use aes::{Aes128, Aes192, Aes256};
use cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

use crate::error::{bad, Result};
use crate::fastdes::{FastDes, FastTdes};
use crate::keycache::{des_schedule, DesSchedule};

/// Which family a key belongs to; decides the accepted key lengths and the block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Des,
    Aes,
}

/// A keyed block cipher ready to use.
// Boxing the larger variant would add a heap allocation on every PIN operation.
#[allow(clippy::large_enum_variant)]
pub enum BlockCipher {
    Des(FastDes),
    Tdes(FastTdes),
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

impl BlockCipher {
    /// DES (8 bytes), two-key 3DES (16, used as K1 K2 K1) or three-key 3DES (24).
    pub fn des(field: &'static str, key: &[u8]) -> Result<Self> {
        match key.len() {
            8 | 16 | 24 => Ok(match des_schedule(key) {
                DesSchedule::Single(c) => Self::Des(c),
                DesSchedule::Triple(c) => Self::Tdes(c),
            }),
            n => Err(bad(field, format!("length {n} is not 8, 16 or 24"))),
        }
    }

    /// Double or triple length 3DES only (what PIN, CVV and EMV keys must be).
    pub fn tdes(field: &'static str, key: &[u8]) -> Result<Self> {
        match key.len() {
            16 | 24 => Self::des(field, key),
            n => Err(bad(field, format!("length {n} is not 16 or 24"))),
        }
    }

    /// AES-128, AES-192 or AES-256.
    pub fn aes(field: &'static str, key: &[u8]) -> Result<Self> {
        match key.len() {
            16 => Ok(Self::Aes128(keyed(field, key)?)),
            24 => Ok(Self::Aes192(keyed(field, key)?)),
            32 => Ok(Self::Aes256(keyed(field, key)?)),
            n => Err(bad(field, format!("length {n} is not 16, 24 or 32"))),
        }
    }

    pub fn new(family: Family, field: &'static str, key: &[u8]) -> Result<Self> {
        match family {
            Family::Des => Self::des(field, key),
            Family::Aes => Self::aes(field, key),
        }
    }

    pub fn block_size(&self) -> usize {
        match self {
            Self::Des(_) | Self::Tdes(_) => 8,
            _ => 16,
        }
    }

    /// Encrypts one block in place; `block.len()` must equal [`Self::block_size`].
    pub fn encrypt_block(&self, block: &mut [u8]) {
        match self {
            Self::Des(c) => c.encrypt_block(block),
            Self::Tdes(c) => c.encrypt_block(block),
            Self::Aes128(c) => c.encrypt_block(blk(block)),
            Self::Aes192(c) => c.encrypt_block(blk(block)),
            Self::Aes256(c) => c.encrypt_block(blk(block)),
        }
    }

    /// Decrypts one block in place; `block.len()` must equal [`Self::block_size`].
    pub fn decrypt_block(&self, block: &mut [u8]) {
        match self {
            Self::Des(c) => c.decrypt_block(block),
            Self::Tdes(c) => c.decrypt_block(block),
            Self::Aes128(c) => c.decrypt_block(blk(block)),
            Self::Aes192(c) => c.decrypt_block(blk(block)),
            Self::Aes256(c) => c.decrypt_block(blk(block)),
        }
    }

    fn check_data(&self, data: &[u8]) -> Result<()> {
        let bs = self.block_size();
        if data.is_empty() || !data.len().is_multiple_of(bs) {
            return Err(bad(
                "data",
                format!("length {} is not a positive multiple of {bs}", data.len()),
            ));
        }
        Ok(())
    }

    fn check_iv(&self, iv: &[u8]) -> Result<()> {
        if iv.len() != self.block_size() {
            return Err(bad(
                "iv",
                format!("length {} is not {}", iv.len(), self.block_size()),
            ));
        }
        Ok(())
    }

    pub fn encrypt_ecb(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.check_data(data)?;
        let mut out = data.to_vec();
        for chunk in out.chunks_exact_mut(self.block_size()) {
            self.encrypt_block(chunk);
        }
        Ok(out)
    }

    pub fn decrypt_ecb(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.check_data(data)?;
        let mut out = data.to_vec();
        for chunk in out.chunks_exact_mut(self.block_size()) {
            self.decrypt_block(chunk);
        }
        Ok(out)
    }

    pub fn encrypt_cbc(&self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        self.check_iv(iv)?;
        self.check_data(data)?;
        let bs = self.block_size();
        let mut out = data.to_vec();
        let mut prev = [0u8; 16];
        prev[..bs].copy_from_slice(iv);
        for chunk in out.chunks_exact_mut(bs) {
            xor_into(chunk, &prev[..bs]);
            self.encrypt_block(chunk);
            prev[..bs].copy_from_slice(chunk);
        }
        Ok(out)
    }

    pub fn decrypt_cbc(&self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        self.check_iv(iv)?;
        self.check_data(data)?;
        let bs = self.block_size();
        let mut out = data.to_vec();
        let mut prev = [0u8; 16];
        prev[..bs].copy_from_slice(iv);
        for (chunk, cipher_block) in out.chunks_exact_mut(bs).zip(data.chunks_exact(bs)) {
            self.decrypt_block(chunk);
            xor_into(chunk, &prev[..bs]);
            prev[..bs].copy_from_slice(cipher_block);
        }
        Ok(out)
    }
}

/// Keys a cipher from a slice whose length the caller has already matched to the cipher.
fn keyed<C: KeyInit>(field: &'static str, key: &[u8]) -> Result<C> {
    C::new_from_slice(key).map_err(|_| bad(field, format!("length {} is not valid", key.len())))
}

/// Views a block-sized slice as a cipher block. Every caller in this crate passes exactly
/// `block_size()` bytes (an internal invariant, not an input check).
fn blk<N: cipher::array::ArraySize>(block: &mut [u8]) -> &mut Array<u8, N> {
    debug_assert_eq!(block.len(), N::USIZE);
    <&mut Array<u8, N>>::try_from(block).expect("internal: block length matches the cipher")
}

/// `dst ^= src` over the shorter of the two.
pub fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// Encrypts one 8-byte block under a DES/3DES key (convenience for the card algorithms).
pub fn des_encrypt8(cipher: &BlockCipher, block: [u8; 8]) -> [u8; 8] {
    let mut b = block;
    cipher.encrypt_block(&mut b);
    b
}
