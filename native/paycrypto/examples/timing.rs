//! Quick timing of the PIN translation path (run: cargo run --release --example timing).
use std::hint::black_box;
use std::time::Instant;
use switch_paycrypto::block::BlockCipher;
use switch_paycrypto::pinblock::{self, Format};

fn main() {
    let k: Vec<u8> = (0u8..16).collect();
    let z: Vec<u8> = (16u8..32).collect();
    let pan = "4012345678909";
    let b = pinblock::encrypt(&k, Format::Iso0, "1234", pan).unwrap();
    let n = 1_000_000;
    let t = Instant::now();
    for _ in 0..n {
        black_box(BlockCipher::des("k", black_box(&k)).unwrap());
    }
    println!(
        "3DES key schedule: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let c = BlockCipher::des("k", &k).unwrap();
    let t = Instant::now();
    let mut blk = [0u8; 8];
    for _ in 0..n {
        c.encrypt_block(black_box(&mut blk));
    }
    println!(
        "3DES block: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let a = BlockCipher::aes("k", &k).unwrap();
    let mut ab = [0u8; 16];
    let t = Instant::now();
    for _ in 0..n {
        a.encrypt_block(black_box(&mut ab));
    }
    println!(
        "AES-128 block: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        black_box(pinblock::translate(&k, Format::Iso0, &z, Format::Iso0, &b, pan).unwrap());
    }
    println!(
        "translate 0->0: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        black_box(pinblock::translate(&k, Format::Iso0, &z, Format::Iso3, &b, pan).unwrap());
    }
    println!(
        "translate 0->3: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
