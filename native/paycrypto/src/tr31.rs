//! TR-31 (ANSI X9.143) key blocks, version D: AES key block protection key. KBEK and KBAK are
//! derived from the KBPK with AES-CMAC (NIST SP 800-108 counter mode), the MAC is AES-CMAC over
//! header || clear key data, and the key data is AES-CBC encrypted with the MAC as IV.
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::block::BlockCipher;
use crate::digits::{hex_val, to_hex};
use crate::error::{bad, Result};
use crate::keys::aes_cmac;

const MAC_LEN: usize = 16;

/// Length in characters of the header (mandatory 16 + optional blocks) at the start of `s`.
fn header_len(field: &'static str, s: &str) -> Result<usize> {
    let b = s.as_bytes();
    if b.len() < 16 {
        return Err(bad(field, "header is shorter than 16 characters"));
    }
    if !b[..16].iter().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad(field, "header must be ASCII letters and digits"));
    }
    if b[0] != b'D' {
        return Err(bad(field, "only key block version D (AES) is supported"));
    }
    let count = parse_dec(&b[12..14])
        .ok_or_else(|| bad(field, "number of optional blocks is not 2 digits"))?;
    let mut pos = 16;
    for _ in 0..count {
        if b.len() < pos + 4 {
            return Err(bad(field, "optional block is truncated"));
        }
        if !b[pos..pos + 2].iter().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(field, "optional block ID is not alphanumeric"));
        }
        let short = parse_hex(&b[pos + 2..pos + 4])
            .ok_or_else(|| bad(field, "optional block length is not hex"))?;
        let len = if short != 0 {
            short
        } else {
            // Extended length: 2 hex chars giving the length of the length, then the length.
            let ll = b
                .get(pos + 4..pos + 6)
                .and_then(parse_hex)
                .ok_or_else(|| bad(field, "optional block extended length is malformed"))?;
            if ll == 0 || ll > 4 {
                return Err(bad(field, "optional block extended length is malformed"));
            }
            b.get(pos + 6..pos + 6 + 2 * ll)
                .and_then(parse_hex)
                .ok_or_else(|| bad(field, "optional block extended length is malformed"))?
        };
        if len < 4 || b.len() < pos + len {
            return Err(bad(field, "optional block is truncated"));
        }
        if !b[pos..pos + len].iter().all(|c| (0x20..0x7F).contains(c)) {
            return Err(bad(field, "optional block is not printable ASCII"));
        }
        pos += len;
    }
    Ok(pos)
}

fn parse_dec(s: &[u8]) -> Option<usize> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0usize, |a, c| a * 10 + (c - b'0') as usize))
}

fn parse_hex(s: &[u8]) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    s.iter()
        .try_fold(0usize, |a, c| hex_val(*c).map(|v| a * 16 + v as usize))
}

fn unhex(field: &'static str, s: &[u8]) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(bad(field, "odd number of hex characters"));
    }
    s.chunks_exact(2)
        .map(|p| match (hex_val(p[0]), hex_val(p[1])) {
            (Some(h), Some(l)) => Ok((h << 4) | l),
            _ => Err(bad(field, "key data is not hex")),
        })
        .collect()
}

/// KBEK and KBAK, each as long as the KBPK.
/// A derived key, wiped on drop.
type SecretBytes = Zeroizing<Vec<u8>>;

fn derive(kbpk: &[u8]) -> Result<(SecretBytes, SecretBytes)> {
    let (alg, bits, calls): (u8, u16, u8) = match kbpk.len() {
        16 => (2, 128, 1),
        24 => (3, 192, 2),
        32 => (4, 256, 2),
        n => return Err(bad("kbpk", format!("length {n} is not 16, 24 or 32"))),
    };
    let mut kbek = Zeroizing::new(Vec::with_capacity(32));
    let mut kbak = Zeroizing::new(Vec::with_capacity(32));
    for counter in 1..=calls {
        for (usage, out) in [(0u8, &mut kbek), (1u8, &mut kbak)] {
            let [bh, bl] = bits.to_be_bytes();
            let input = [counter, 0, usage, 0, 0, alg, bh, bl];
            out.extend_from_slice(&aes_cmac("kbpk", kbpk, &input)?);
        }
    }
    kbek.truncate(kbpk.len());
    kbak.truncate(kbpk.len());
    Ok((kbek, kbak))
}

fn mac(kbak: &[u8], header: &str, clear: &[u8]) -> Result<[u8; 16]> {
    let mut data = Zeroizing::new(Vec::with_capacity(header.len() + clear.len()));
    data.extend_from_slice(header.as_bytes());
    data.extend_from_slice(clear);
    aes_cmac("kbpk", kbak, &data)
}

/// Wraps `key` under `kbpk`. The header's length field (characters 2-5) is filled in; the
/// header (16 characters plus optional blocks) must be a multiple of 16 characters long. The
/// key length is masked up to the algorithm's largest key (24 bytes for T/D, 32 for A).
pub fn wrap(kbpk: &[u8], header: &str, key: &[u8]) -> Result<String> {
    wrap_with_fill(kbpk, header, key, None, |buf| {
        getrandom::fill(buf).map_err(|e| bad("rng", format!("OS random source failed: {e}")))
    })
}

/// [`wrap`] with the key length masked to `masked_len` (default: by algorithm) and the padding
/// produced by `fill` (the OS RNG in production; fixed bytes to reproduce published examples).
pub fn wrap_with_fill(
    kbpk: &[u8],
    header: &str,
    key: &[u8],
    masked_len: Option<usize>,
    fill: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<String> {
    let hlen = header_len("header", header)?;
    if hlen != header.len() {
        return Err(bad("header", "has characters after the optional blocks"));
    }
    if hlen % 16 != 0 {
        return Err(bad(
            "header",
            "length with optional blocks is not a multiple of 16 (add a PB block)",
        ));
    }
    if key.is_empty() || key.len() > 64 {
        return Err(bad("key", format!("length {} is not 1-64", key.len())));
    }
    let (kbek, kbak) = derive(kbpk)?;
    let masked = masked_len
        .unwrap_or(match header.as_bytes()[7] {
            b'T' | b'D' => 24,
            b'A' => 32,
            _ => key.len(),
        })
        .max(key.len());
    let pad = (16 - (2 + masked) % 16) % 16 + (masked - key.len());
    let mut clear = Zeroizing::new(Vec::with_capacity(2 + key.len() + pad));
    clear.extend_from_slice(&((key.len() * 8) as u16).to_be_bytes());
    clear.extend_from_slice(key);
    let mut rnd = vec![0u8; pad];
    fill(&mut rnd)?;
    clear.extend_from_slice(&rnd);
    let total = hlen + clear.len() * 2 + MAC_LEN * 2;
    if total > 9999 {
        return Err(bad("key", "key block would be longer than 9999 characters"));
    }
    let mut full_header = String::with_capacity(hlen);
    full_header.push('D');
    full_header.push_str(&format!("{total:04}"));
    full_header.push_str(&header[5..]);
    let tag = mac(&kbak, &full_header, &clear)?;
    let enc = BlockCipher::aes("kbpk", &kbek)?.encrypt_cbc(&tag, &clear)?;
    let mut out = full_header;
    out.push_str(&to_hex(&enc));
    out.push_str(&to_hex(&tag));
    Ok(out)
}

/// Unwraps a version D key block: checks layout and MAC (constant time) and returns
/// (header, key).
pub fn unwrap(kbpk: &[u8], key_block: &str) -> Result<(String, Vec<u8>)> {
    const F: &str = "key_block";
    if !key_block.is_ascii() {
        return Err(bad(F, "is not ASCII"));
    }
    let hlen = header_len(F, key_block)?;
    let b = key_block.as_bytes();
    let declared = parse_dec(&b[1..5]).ok_or_else(|| bad(F, "length field is not 4 digits"))?;
    if declared != b.len() {
        return Err(bad(
            F,
            format!(
                "length field {declared} does not match the length {}",
                b.len()
            ),
        ));
    }
    if !b.len().is_multiple_of(16) {
        return Err(bad(F, "length is not a multiple of 16"));
    }
    let body = &b[hlen..];
    if body.len() < 2 * (16 + MAC_LEN) {
        return Err(bad(F, "key data is too short"));
    }
    let (data_hex, mac_hex) = body.split_at(body.len() - 2 * MAC_LEN);
    let enc = unhex(F, data_hex)?;
    if enc.len() % 16 != 0 {
        return Err(bad(F, "key data is not whole AES blocks"));
    }
    let received = unhex(F, mac_hex)?;
    let (kbek, kbak) = derive(kbpk)?;
    let header = &key_block[..hlen];
    let clear = Zeroizing::new(BlockCipher::aes("kbpk", &kbek)?.decrypt_cbc(&received, &enc)?);
    let mut expected = mac(&kbak, header, &clear)?;
    let ok: bool = expected.ct_eq(&received[..]).into();
    expected.zeroize();
    if !ok {
        return Err(bad(F, "MAC does not match (wrong KBPK or altered block)"));
    }
    let bits = u16::from_be_bytes([clear[0], clear[1]]) as usize;
    if !bits.is_multiple_of(8) || bits == 0 || bits / 8 > clear.len() - 2 {
        return Err(bad(F, "decrypted key length is invalid"));
    }
    Ok((header.to_string(), clear[2..2 + bits / 8].to_vec()))
}
