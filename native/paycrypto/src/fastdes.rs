//! Table-driven DES (FIPS 46-3) for the hot PIN path.
//!
//! Why not only the `des` crate: its bit-permutation design costs ~300 ns per DES block on the
//! target machine, so one format-0 PIN translation (two 3DES blocks and two key schedules)
//! took ~3 µs, over the HSM's ~1-2 µs budget. This implementation folds the P permutation into
//! the S-box lookups (SP tables), does IP/FP and the key-schedule permutations with byte-indexed
//! tables, and runs IP/FP once per 3DES block (they cancel between stages). All tables are
//! built at compile time from the FIPS tables below. The `des` crate stays the reference: the
//! tests compare both on random keys and blocks.
//!
//! Like the `des` crate, it indexes tables with secret-dependent values (cache timing); it is
//! meant for the HSM process, not for shared hosts with hostile co-tenants.
use zeroize::Zeroize;

// ---- FIPS 46-3 tables (1-indexed bit positions, MSB first) -----------------------------------

const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6,
    64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61,
    53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];

const FP: [u8; 64] = [
    40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30,
    37, 5, 45, 13, 53, 21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
    34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25,
];

const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60,
    52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29,
    21, 13, 5, 28, 20, 12, 4,
];

const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, 41, 52,
    31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19,
    13, 30, 6, 22, 11, 4, 25,
];

const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// S-boxes in the published layout: `S[i][row][column]`, row = b1 b6, column = b2 b3 b4 b5.
#[rustfmt::skip]
const S: [[[u8; 16]; 4]; 8] = [
    [[14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7],
     [0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8],
     [4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0],
     [15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13]],
    [[15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10],
     [3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5],
     [0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15],
     [13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9]],
    [[10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8],
     [13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1],
     [13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7],
     [1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12]],
    [[7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15],
     [13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9],
     [10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4],
     [3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14]],
    [[2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9],
     [14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6],
     [4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14],
     [11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3]],
    [[12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11],
     [10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8],
     [9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6],
     [4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13]],
    [[4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1],
     [13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6],
     [1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2],
     [6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12]],
    [[13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7],
     [1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2],
     [7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8],
     [2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11]],
];

// ---- compile-time table construction ---------------------------------------------------------

/// Byte-indexed tables for a bit permutation: `out = OR_t table[t][byte t of input]`, where the
/// input is `in_bits` wide (MSB = bit 1) and output bit j (MSB = bit 1) takes input bit perm[j].
const fn perm_tables<const N: usize>(perm: &[u8; N], in_bits: usize) -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut byte = 0;
    while byte < in_bits / 8 {
        let mut v = 0;
        while v < 256 {
            let mut out = 0u64;
            let mut j = 0;
            while j < N {
                let src = perm[j] as usize - 1;
                if src / 8 == byte && (v >> (7 - src % 8)) & 1 == 1 {
                    out |= 1 << (N - 1 - j);
                }
                j += 1;
            }
            t[byte][v] = out;
            v += 1;
        }
        byte += 1;
    }
    t
}

/// SP[i][x]: S-box i applied to the 6-bit input x, placed in its nibble and permuted by P.
const fn sp_tables() -> [[u32; 64]; 8] {
    let mut sp = [[0u32; 64]; 8];
    let mut i = 0;
    while i < 8 {
        let mut x = 0;
        while x < 64 {
            let row = ((x >> 4) & 2) | (x & 1);
            let col = (x >> 1) & 0xF;
            let pre = (S[i][row][col] as u32) << (28 - 4 * i);
            let mut out = 0u32;
            let mut j = 0;
            while j < 32 {
                let src = P[j] as u32 - 1;
                if (pre >> (31 - src)) & 1 == 1 {
                    out |= 1 << (31 - j);
                }
                j += 1;
            }
            sp[i][x] = out;
            x += 1;
        }
        i += 1;
    }
    sp
}

static IP_T: [[u64; 256]; 8] = perm_tables(&IP, 64);
static FP_T: [[u64; 256]; 8] = perm_tables(&FP, 64);
static PC1_T: [[u64; 256]; 8] = perm_tables(&PC1, 64);
static PC2_T: [[u64; 256]; 8] = perm_tables(&PC2, 56);
static SP: [[u32; 64]; 8] = sp_tables();

#[inline(always)]
fn apply(t: &[[u64; 256]; 8], x: u64, in_bytes: usize) -> u64 {
    let mut out = 0;
    for (i, row) in t.iter().enumerate().take(in_bytes) {
        out |= row[((x >> (8 * (in_bytes - 1 - i))) & 0xFF) as usize];
    }
    out
}

// ---- the cipher --------------------------------------------------------------------------------

/// Sixteen round keys, each "cooked" into two words: the 6-bit chunks for S-boxes 1, 3, 5, 7
/// and for 2, 4, 6, 8, one per byte, lined up with the rotated R words built in [`feistel`].
#[derive(Clone)]
struct Schedule([[u32; 2]; 16]);

impl Drop for Schedule {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Schedule {
    fn new(key: [u8; 8]) -> Self {
        let cd = apply(&PC1_T, u64::from_be_bytes(key), 8);
        let mut c = (cd >> 28) as u32 & 0x0FFF_FFFF;
        let mut d = cd as u32 & 0x0FFF_FFFF;
        let mut ks = [[0u32; 2]; 16];
        for (n, k) in ks.iter_mut().enumerate() {
            let s = SHIFTS[n];
            c = ((c << s) | (c >> (28 - s))) & 0x0FFF_FFFF;
            d = ((d << s) | (d >> (28 - s))) & 0x0FFF_FFFF;
            let k48 = apply(&PC2_T, ((c as u64) << 28) | d as u64, 7);
            let chunk = |i: usize| ((k48 >> (42 - 6 * i)) & 0x3F) as u32;
            k[0] = (chunk(0) << 24) | (chunk(2) << 16) | (chunk(4) << 8) | chunk(6);
            k[1] = (chunk(1) << 24) | (chunk(3) << 16) | (chunk(5) << 8) | chunk(7);
        }
        Self(ks)
    }
}

/// The DES round function. S-box i reads R bits 4i .. 4i+5 (1-indexed, MSB first, cyclic):
/// rotating R right by 3 puts the inputs of S-boxes 1, 3, 5, 7 at bits 24, 16, 8, 0 and
/// rotating it left by 1 does the same for S-boxes 2, 4, 6, 8.
#[inline(always)]
fn feistel(r: u32, k: &[u32; 2]) -> u32 {
    let e = r.rotate_right(3) ^ k[0];
    let o = r.rotate_left(1) ^ k[1];
    SP[0][(e >> 24) as usize & 0x3F]
        ^ SP[2][(e >> 16) as usize & 0x3F]
        ^ SP[4][(e >> 8) as usize & 0x3F]
        ^ SP[6][e as usize & 0x3F]
        ^ SP[1][(o >> 24) as usize & 0x3F]
        ^ SP[3][(o >> 16) as usize & 0x3F]
        ^ SP[5][(o >> 8) as usize & 0x3F]
        ^ SP[7][o as usize & 0x3F]
}

/// Sixteen rounds on (L, R); returns the pre-output (R16, L16) as the next (L, R).
#[inline(always)]
fn rounds(mut l: u32, mut r: u32, ks: &Schedule, decrypt: bool) -> (u32, u32) {
    for n in 0..16 {
        let k = if decrypt { &ks.0[15 - n] } else { &ks.0[n] };
        let t = r;
        r = l ^ feistel(r, k);
        l = t;
    }
    (r, l)
}

fn split(block: &[u8]) -> (u32, u32) {
    let mut b = [0u8; 8];
    b.copy_from_slice(block);
    let x = apply(&IP_T, u64::from_be_bytes(b), 8);
    ((x >> 32) as u32, x as u32)
}

fn join(l: u32, r: u32, out: &mut [u8]) {
    let x = apply(&FP_T, ((l as u64) << 32) | r as u64, 8);
    out.copy_from_slice(&x.to_be_bytes());
}

/// Single DES.
#[derive(Clone)]
pub struct FastDes(Schedule);

impl FastDes {
    pub fn new(key: [u8; 8]) -> Self {
        Self(Schedule::new(key))
    }

    pub fn encrypt_block(&self, block: &mut [u8]) {
        let (l, r) = split(block);
        let (l, r) = rounds(l, r, &self.0, false);
        join(l, r, block);
    }

    pub fn decrypt_block(&self, block: &mut [u8]) {
        let (l, r) = split(block);
        let (l, r) = rounds(l, r, &self.0, true);
        join(l, r, block);
    }
}

/// Three-key 3DES EDE (two-key keys are expanded to K1 K2 K1 by the caller).
#[derive(Clone)]
pub struct FastTdes(Schedule, Schedule, Schedule);

impl FastTdes {
    pub fn new(k1: [u8; 8], k2: [u8; 8], k3: [u8; 8]) -> Self {
        Self(Schedule::new(k1), Schedule::new(k2), Schedule::new(k3))
    }

    /// Two-key 3DES (K1 K2 K1): the K1 schedule is computed once.
    pub fn new_two_key(k1: [u8; 8], k2: [u8; 8]) -> Self {
        let s1 = Schedule::new(k1);
        Self(s1.clone(), Schedule::new(k2), s1)
    }

    pub fn encrypt_block(&self, block: &mut [u8]) {
        let (l, r) = split(block);
        let (l, r) = rounds(l, r, &self.0, false);
        let (l, r) = rounds(l, r, &self.1, true);
        let (l, r) = rounds(l, r, &self.2, false);
        join(l, r, block);
    }

    pub fn decrypt_block(&self, block: &mut [u8]) {
        let (l, r) = split(block);
        let (l, r) = rounds(l, r, &self.2, true);
        let (l, r) = rounds(l, r, &self.1, false);
        let (l, r) = rounds(l, r, &self.0, true);
        join(l, r, block);
    }
}
