//! ISO 9564-1 PIN blocks: formats 0, 1 and 3 (8-byte blocks under DES/3DES) and format 4
//! (16-byte blocks under AES), clear encode/decode, encryption and translation.
//!
//! The clear PIN lives in a [`Pin`] that is wiped on drop; translation decrypts, re-formats and
//! re-encrypts without the PIN leaving this module.
use zeroize::Zeroize;

use crate::block::{xor_into, BlockCipher, Family};
use crate::digits::{check_pan, check_pin, nibble, set_nibble};
use crate::error::{bad, Result};

/// A clear PIN: 4 to 12 decimal digit values (not ASCII), wiped on drop.
pub struct Pin {
    digits: [u8; 12],
    len: usize,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.digits.zeroize();
    }
}

impl Pin {
    /// Parses and validates an ASCII PIN.
    pub fn parse(pin: &str) -> Result<Self> {
        check_pin(pin)?;
        let mut digits = [0u8; 12];
        for (d, c) in digits.iter_mut().zip(pin.bytes()) {
            *d = c - b'0';
        }
        Ok(Self {
            digits,
            len: pin.len(),
        })
    }

    /// The digit values (0-9), `len()` of them.
    pub fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// ASCII form: only for `pin_block_decode` (HSM authorised state) and the tests.
    pub fn to_ascii(&self) -> String {
        self.digits().iter().map(|d| (b'0' + d) as char).collect()
    }
}

/// ISO 9564-1 PIN block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Iso0,
    Iso1,
    Iso3,
    Iso4,
}

impl Format {
    pub fn from_int(field: &'static str, fmt: i64) -> Result<Self> {
        match fmt {
            0 => Ok(Self::Iso0),
            1 => Ok(Self::Iso1),
            3 => Ok(Self::Iso3),
            4 => Ok(Self::Iso4),
            n => Err(bad(field, format!("{n} is not 0, 1, 3 or 4"))),
        }
    }

    fn control(self) -> u8 {
        match self {
            Self::Iso0 => 0,
            Self::Iso1 => 1,
            Self::Iso3 => 3,
            Self::Iso4 => 4,
        }
    }

    /// Bytes in a block of this format.
    pub fn block_len(self) -> usize {
        if self == Self::Iso4 {
            16
        } else {
            8
        }
    }

    /// Cipher family of the key that protects this format.
    pub fn family(self) -> Family {
        if self == Self::Iso4 {
            Family::Aes
        } else {
            Family::Des
        }
    }

    /// Whether the block is bound to the PAN (format 1 is not).
    pub fn pan_bound(self) -> bool {
        self != Self::Iso1
    }
}

/// A clear PIN block (8 or 16 bytes), wiped on drop.
pub struct ClearBlock {
    bytes: [u8; 16],
    len: usize,
}

impl Drop for ClearBlock {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ClearBlock {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Bytes drawn from the OS RNG in one system call and handed out in order, each byte once.
/// Why: a `getrandom` call costs about 1 µs, as much as the whole PIN translation. The pool
/// remembers the process id and refills after a fork, so parent and child never share bytes.
struct RandomPool {
    bytes: [u8; 1024],
    used: usize,
    pid: u32,
}

impl Drop for RandomPool {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

thread_local! {
    static POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool { bytes: [0; 1024], used: 1024, pid: 0 })
    };
}

fn random_fill(buf: &mut [u8]) -> Result<()> {
    let os_fill = |b: &mut [u8]| {
        getrandom::fill(b).map_err(|e| bad("rng", format!("OS random source failed: {e}")))
    };
    let pooled = POOL.try_with(|p| -> Result<()> {
        let mut p = p.borrow_mut();
        let pid = std::process::id();
        if p.used + buf.len() > p.bytes.len() || p.pid != pid {
            os_fill(&mut p.bytes)?;
            p.used = 0;
            p.pid = pid;
        }
        let start = p.used;
        buf.copy_from_slice(&p.bytes[start..start + buf.len()]);
        p.bytes[start..start + buf.len()].zeroize();
        p.used += buf.len();
        Ok(())
    });
    match pooled {
        Ok(r) => r,
        // Thread teardown: no pool any more, go to the OS directly.
        Err(_) => os_fill(buf),
    }
}

/// PAN field for formats 0 and 3: 0000 followed by the 12 rightmost PAN digits excluding the
/// check digit.
fn pan_field_8(pan: &str) -> [u8; 8] {
    let p = pan.as_bytes();
    let twelve = &p[p.len() - 13..p.len() - 1];
    let mut out = [0u8; 8];
    for (i, c) in twelve.iter().enumerate() {
        set_nibble(&mut out, 4 + i, c - b'0');
    }
    out
}

/// PAN field for format 4: M (PAN length - 12), the PAN, zero padded to 32 nibbles.
fn pan_field_16(pan: &str) -> [u8; 16] {
    let p = pan.as_bytes();
    let mut out = [0u8; 16];
    set_nibble(&mut out, 0, (p.len() - 12) as u8);
    for (i, c) in p.iter().enumerate() {
        set_nibble(&mut out, 1 + i, c - b'0');
    }
    out
}

fn check_pan_for(fmt: Format, pan: &str) -> Result<()> {
    if fmt.pan_bound() {
        check_pan(pan)
    } else {
        Ok(())
    }
}

/// Builds the clear block. Formats 1, 3, 4 take their fill from the OS RNG. For format 4 the
/// "clear block" is the plain-text PIN field; the PAN is bound during encryption.
pub fn encode(fmt: Format, pin: &Pin, pan: &str) -> Result<ClearBlock> {
    check_pan_for(fmt, pan)?;
    let mut b = ClearBlock {
        bytes: [0u8; 16],
        len: fmt.block_len(),
    };
    let mut rnd = [0u8; 16];
    if fmt != Format::Iso0 {
        random_fill(&mut rnd)?;
    }
    set_nibble(&mut b.bytes, 0, fmt.control());
    set_nibble(&mut b.bytes, 1, pin.len() as u8);
    for (i, d) in pin.digits().iter().enumerate() {
        set_nibble(&mut b.bytes, 2 + i, *d);
    }
    for (i, r) in rnd.iter().enumerate().skip(2 + pin.len()) {
        let fill = match fmt {
            Format::Iso0 => 0xF,
            Format::Iso1 => r & 0x0F,
            // A-F; the modulo bias (4 in 256) is irrelevant for fill digits.
            Format::Iso3 => 0xA + r % 6,
            Format::Iso4 => 0xA,
        };
        set_nibble(&mut b.bytes, i, fill);
    }
    match fmt {
        Format::Iso0 | Format::Iso3 => xor_into(&mut b.bytes[..8], &pan_field_8(pan)),
        Format::Iso1 => {}
        Format::Iso4 => b.bytes[8..].copy_from_slice(&rnd[8..]),
    }
    rnd.zeroize();
    Ok(b)
}

/// Parses a clear block back into the PIN, checking the control field, length and fill.
pub fn decode(fmt: Format, block: &[u8], pan: &str) -> Result<Pin> {
    if block.len() != fmt.block_len() {
        return Err(bad(
            "block",
            format!("length {} is not {}", block.len(), fmt.block_len()),
        ));
    }
    check_pan_for(fmt, pan)?;
    let mut field = [0u8; 8];
    field.copy_from_slice(&block[..8]);
    if matches!(fmt, Format::Iso0 | Format::Iso3) {
        xor_into(&mut field, &pan_field_8(pan));
    }
    let result = parse_pin_field(fmt, &field);
    field.zeroize();
    result
}

fn parse_pin_field(fmt: Format, field: &[u8; 8]) -> Result<Pin> {
    if nibble(field, 0) != fmt.control() {
        return Err(bad("block", "control field does not match the format"));
    }
    let len = nibble(field, 1) as usize;
    if !(4..=12).contains(&len) {
        return Err(bad("block", "PIN length is not 4-12"));
    }
    let mut pin = Pin {
        digits: [0u8; 12],
        len,
    };
    for i in 0..len {
        let d = nibble(field, 2 + i);
        if d > 9 {
            return Err(bad("block", "PIN digit is not decimal"));
        }
        pin.digits[i] = d;
    }
    for i in 2 + len..16 {
        let f = nibble(field, i);
        let ok = match fmt {
            Format::Iso0 => f == 0xF,
            Format::Iso1 => true,
            Format::Iso3 => f >= 0xA,
            Format::Iso4 => f == 0xA,
        };
        if !ok {
            return Err(bad("block", "fill digits do not match the format"));
        }
    }
    Ok(pin)
}

/// Encrypts a PIN into a block of the given format under an already keyed cipher.
pub fn encrypt_with(cipher: &BlockCipher, fmt: Format, pin: &Pin, pan: &str) -> Result<Vec<u8>> {
    let mut out = [0u8; 16];
    let n = encrypt_into(cipher, fmt, pin, pan, &mut out)?;
    Ok(out[..n].to_vec())
}

/// Like [`encrypt_with`] but writes into `out` (no allocation); returns the block length.
pub fn encrypt_into(
    cipher: &BlockCipher,
    fmt: Format,
    pin: &Pin,
    pan: &str,
    out: &mut [u8; 16],
) -> Result<usize> {
    let clear = encode(fmt, pin, pan)?;
    let n = fmt.block_len();
    let b = &mut out[..n];
    b.copy_from_slice(clear.as_bytes());
    cipher.encrypt_block(b);
    if fmt == Format::Iso4 {
        xor_into(b, &pan_field_16(pan));
        cipher.encrypt_block(b);
    }
    Ok(n)
}

/// Decrypts an encrypted block and parses out the PIN.
pub fn decrypt_with(cipher: &BlockCipher, fmt: Format, block: &[u8], pan: &str) -> Result<Pin> {
    if block.len() != fmt.block_len() {
        return Err(bad(
            "block",
            format!("length {} is not {}", block.len(), fmt.block_len()),
        ));
    }
    check_pan_for(fmt, pan)?;
    let mut buf = [0u8; 16];
    let b = &mut buf[..block.len()];
    b.copy_from_slice(block);
    cipher.decrypt_block(b);
    if fmt == Format::Iso4 {
        xor_into(b, &pan_field_16(pan));
        cipher.decrypt_block(b);
    }
    let result = decode(fmt, b, pan);
    buf.zeroize();
    result
}

/// Builds and encrypts in one call.
pub fn encrypt(key: &[u8], fmt: Format, pin: &str, pan: &str) -> Result<Vec<u8>> {
    let cipher = BlockCipher::new(fmt.family(), "key", key)?;
    let pin = Pin::parse(pin)?;
    encrypt_with(&cipher, fmt, &pin, pan)
}

/// Decrypts under `key` and returns the PIN (kept inside Rust by the callers).
pub fn decrypt(
    key_field: &'static str,
    key: &[u8],
    fmt: Format,
    block: &[u8],
    pan: &str,
) -> Result<Pin> {
    let cipher = BlockCipher::new(fmt.family(), key_field, key)?;
    decrypt_with(&cipher, fmt, block, pan)
}

/// Decrypts under the source key, re-formats and re-encrypts under the destination key.
/// A PAN-bound block (format 0, 3 or 4) is never turned into format 1 (ISO 9564-1, PCI PIN).
pub fn translate(
    src_key: &[u8],
    src_fmt: Format,
    dst_key: &[u8],
    dst_fmt: Format,
    block: &[u8],
    pan: &str,
) -> Result<Vec<u8>> {
    let mut out = [0u8; 16];
    let n = translate_into(src_key, src_fmt, dst_key, dst_fmt, block, pan, &mut out)?;
    Ok(out[..n].to_vec())
}

/// [`translate`] writing into `out`; returns the block length.
pub fn translate_into(
    src_key: &[u8],
    src_fmt: Format,
    dst_key: &[u8],
    dst_fmt: Format,
    block: &[u8],
    pan: &str,
    out: &mut [u8; 16],
) -> Result<usize> {
    if src_fmt.pan_bound() && !dst_fmt.pan_bound() {
        return Err(bad(
            "dst_fmt",
            "a PAN-bound PIN block (format 0, 3 or 4) cannot become format 1",
        ));
    }
    let src = BlockCipher::new(src_fmt.family(), "src_key", src_key)?;
    let dst = BlockCipher::new(dst_fmt.family(), "dst_key", dst_key)?;
    let pin = decrypt_with(&src, src_fmt, block, pan)?;
    encrypt_into(&dst, dst_fmt, &pin, pan, out)
}
