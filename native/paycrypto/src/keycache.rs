//! A small per-thread cache of DES/3DES key schedules.
//!
//! Why: a 3DES key schedule costs about as much as encrypting a block (~0.2-0.5 µs here), and
//! the HSM's hot path (PIN translation, ~200,000/s) reuses the same few TPKs and ZPKs all day.
//! The cache is direct-mapped (64 slots per thread), holds the clear key only to confirm a hit
//! (compared in constant time) and wipes keys and round keys on eviction and at thread exit.
//! It lives inside the HSM process, which holds these clear keys in its key store anyway.
use std::cell::RefCell;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::fastdes::{FastDes, FastTdes};

const SLOTS: usize = 64;

/// A keyed DES or 3DES cipher as the cache stores it.
// Boxing the larger variant would add a heap allocation on every PIN operation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum DesSchedule {
    Single(FastDes),
    Triple(FastTdes),
}

struct Slot {
    key: [u8; 24],
    len: usize,
    cipher: DesSchedule,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

struct Cache {
    slots: Vec<Option<Slot>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        slots: (0..SLOTS).map(|_| None).collect(),
    });
}

fn part(key: &[u8], i: usize) -> [u8; 8] {
    let mut k = [0u8; 8];
    k.copy_from_slice(&key[8 * i..8 * i + 8]);
    k
}

fn build(key: &[u8]) -> DesSchedule {
    match key.len() {
        8 => DesSchedule::Single(FastDes::new(part(key, 0))),
        16 => DesSchedule::Triple(FastTdes::new_two_key(part(key, 0), part(key, 1))),
        _ => DesSchedule::Triple(FastTdes::new(part(key, 0), part(key, 1), part(key, 2))),
    }
}

fn slot_index(key: &[u8]) -> usize {
    let mut h = key.len() as u64;
    for chunk in key.chunks_exact(8) {
        h = (h ^ u64::from_le_bytes(part(chunk, 0))).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    (h >> 58) as usize % SLOTS
}

/// The schedule for an 8, 16 or 24-byte key (the caller has checked the length).
pub fn des_schedule(key: &[u8]) -> DesSchedule {
    let idx = slot_index(key);
    let hit = CACHE.try_with(|c| {
        let c = c.borrow();
        match &c.slots[idx] {
            Some(s) if s.len == key.len() && bool::from(s.key[..s.len].ct_eq(key)) => {
                Some(s.cipher.clone())
            }
            _ => None,
        }
    });
    if let Ok(Some(cipher)) = hit {
        return cipher;
    }
    let cipher = build(key);
    let mut stored = [0u8; 24];
    stored[..key.len()].copy_from_slice(key);
    let slot = Slot {
        key: stored,
        len: key.len(),
        cipher: cipher.clone(),
    };
    stored.zeroize();
    // During thread teardown the cache may be gone: then just skip caching.
    let _ = CACHE.try_with(|c| c.borrow_mut().slots[idx] = Some(slot));
    cipher
}

/// Wipes this thread's cached keys and schedules (e.g. when the HSM reloads its keys).
pub fn clear() {
    let _ = CACHE.try_with(|c| {
        for slot in c.borrow_mut().slots.iter_mut() {
            *slot = None;
        }
    });
}
