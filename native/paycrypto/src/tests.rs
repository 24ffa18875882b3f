//! Published vectors (ISO 9564 / X9.24 / Visa / IBM / ISO 9797-1 / EMV / TR-31 / FIPS) and
//! round trips; the random cross-checks against psec and pyemv live in the Python tests.
use crate::block::BlockCipher;
use crate::digits::to_hex;
use crate::pinblock::{self, Format, Pin};
use crate::{cvv, emv, ibm3624, keys, mac, pvv, tr31};

fn h(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const K2: &str = "0123456789ABCDEFFEDCBA9876543210";

#[test]
fn des_and_aes_known_answers() {
    let des = BlockCipher::des("key", &h("133457799BBCDFF1")).unwrap();
    assert_eq!(
        to_hex(&des.encrypt_ecb(&h("0123456789ABCDEF")).unwrap()),
        "85E813540F0AB405"
    );
    let aes = BlockCipher::aes("key", &h("000102030405060708090a0b0c0d0e0f")).unwrap();
    let ct = aes
        .encrypt_ecb(&h("00112233445566778899aabbccddeeff"))
        .unwrap();
    assert_eq!(to_hex(&ct), "69C4E0D86A7B0430D8CDB78070B4C55A");
    assert_eq!(
        to_hex(&aes.decrypt_ecb(&ct).unwrap()),
        "00112233445566778899AABBCCDDEEFF"
    );
    // Two-key 3DES equals three-key K1 K2 K1.
    let k = h(K2);
    let k3 = [&k[..], &k[..8]].concat();
    let a = BlockCipher::des("key", &k)
        .unwrap()
        .encrypt_cbc(&[7; 8], &[1; 24])
        .unwrap();
    let b = BlockCipher::des("key", &k3)
        .unwrap()
        .encrypt_cbc(&[7; 8], &[1; 24])
        .unwrap();
    assert_eq!(a, b);
    let back = BlockCipher::des("key", &k)
        .unwrap()
        .decrypt_cbc(&[7; 8], &a)
        .unwrap();
    assert_eq!(back, vec![1; 24]);
}

#[test]
fn aes_cmac_rfc4493() {
    let k = h("2b7e151628aed2a6abf7158809cf4f3c");
    assert_eq!(
        to_hex(&keys::aes_cmac("key", &k, b"").unwrap()),
        "BB1D6929E95937287FA37D129B756746"
    );
    let m = h("6bc1bee22e409f96e93d7e117393172a");
    assert_eq!(
        to_hex(&keys::aes_cmac("key", &k, &m).unwrap()),
        "070A16B46B4D4144F79BDD9DD04A287C"
    );
}

#[test]
fn kcv_and_parity() {
    assert_eq!(
        to_hex(&keys::key_check_value(&h(K2), "des", 3).unwrap()),
        "08D7B4"
    );
    assert!(keys::key_parity_is_odd(&h(K2)).unwrap());
    assert!(!keys::key_parity_is_odd(&h("0123456789ABCDEE")).unwrap());
    let adj = keys::adjust_key_parity(&h("0000000000000000")).unwrap();
    assert_eq!(to_hex(&adj), "0101010101010101");
    assert!(keys::key_parity_is_odd(&adj).unwrap());
    assert_eq!(
        keys::adjust_key_parity(&[0; 10]).unwrap_err().to_string(),
        "key: length 10 is not 8, 16 or 24"
    );
    assert!(keys::key_check_value(&h(K2), "des", 9).is_err());
    assert!(keys::key_check_value(&h(K2), "rsa", 3).is_err());
}

#[test]
fn pin_block_format0_x9_24_vector() {
    let pin = Pin::parse("1234").unwrap();
    let b = pinblock::encode(Format::Iso0, &pin, "4012345678909").unwrap();
    assert_eq!(to_hex(b.as_bytes()), "041274EDCBA9876F");
    let back = pinblock::decode(Format::Iso0, b.as_bytes(), "4012345678909").unwrap();
    assert_eq!(back.to_ascii(), "1234");
}

#[test]
fn pin_block_round_trips_and_translate() {
    let pan = "4123456789012345678";
    let tpk = h(K2);
    let aes = h("000102030405060708090a0b0c0d0e0f");
    for (fmt, key) in [
        (Format::Iso0, &tpk),
        (Format::Iso1, &tpk),
        (Format::Iso3, &tpk),
        (Format::Iso4, &aes),
    ] {
        for pin in ["1234", "987654321012"] {
            let enc = pinblock::encrypt(key, fmt, pin, pan).unwrap();
            assert_eq!(enc.len(), fmt.block_len());
            let p = pinblock::decrypt("key", key, fmt, &enc, pan).unwrap();
            assert_eq!(p.to_ascii(), pin);
        }
    }
    let zpk = h("89ABCDEF01234567FEDCBA9876543210");
    let b0 = pinblock::encrypt(&tpk, Format::Iso0, "4321", pan).unwrap();
    let b3 = pinblock::translate(&tpk, Format::Iso0, &zpk, Format::Iso3, &b0, pan).unwrap();
    let b4 = pinblock::translate(&zpk, Format::Iso3, &aes, Format::Iso4, &b3, pan).unwrap();
    assert_eq!(
        pinblock::decrypt("k", &aes, Format::Iso4, &b4, pan)
            .unwrap()
            .to_ascii(),
        "4321"
    );
    let err = pinblock::translate(&tpk, Format::Iso0, &zpk, Format::Iso1, &b0, pan).unwrap_err();
    assert_eq!(err.field, "dst_fmt");
    // Wrong key: the layout check fails (or, rarely, a different PIN comes out).
    let wrong = pinblock::decrypt("key", &zpk, Format::Iso0, &b0, pan);
    assert!(wrong.map(|p| p.to_ascii() != "4321").unwrap_or(true));
}

#[test]
fn visa_pvv_and_cvv_vectors() {
    assert_eq!(
        pvv::generate(&h(K2), "1122334455667788", 3, "4524").unwrap(),
        "4021"
    );
    let cvk = h(K2);
    assert_eq!(
        cvv::generate(&cvk, "4123456789012345", "8701", "101").unwrap(),
        "561"
    );
    assert_eq!(
        cvv::generate(&cvk, "1234567890123456", "9912", "220").unwrap(),
        "170"
    );
    // PANs of 12 and 19 digits (payShield CW/CY: up to 19 N); values from psec.
    assert_eq!(
        cvv::generate(&cvk, "412345678901", "8701", "101").unwrap(),
        "411"
    );
    assert_eq!(
        cvv::generate(&cvk, "1234567890123456789", "9912", "220").unwrap(),
        "976"
    );
    assert!(cvv::generate(&cvk, "12345678901234567890", "9912", "220").is_err());
    assert!(cvv::generate(&cvk, "", "9912", "220").is_err());
    assert!(cvv::verify(&cvk, "4123456789012345", "8701", "101", "561").unwrap());
    assert!(!cvv::verify(&cvk, "4123456789012345", "8701", "101", "562").unwrap());
    let blk = pinblock::encrypt(&h(K2), Format::Iso0, "4524", "1122334455667788").unwrap();
    assert!(pvv::verify(
        &h(K2),
        Format::Iso0,
        &blk,
        "1122334455667788",
        &h(K2),
        3,
        "4021"
    )
    .unwrap());
    assert!(!pvv::verify(
        &h(K2),
        Format::Iso0,
        &blk,
        "1122334455667788",
        &h(K2),
        3,
        "4022"
    )
    .unwrap());
}

#[test]
fn ibm3624_vector() {
    let off = ibm3624::offset_generate(&h(K2), "1234", "1122334455667788", "1234567890123456", 4)
        .unwrap();
    assert_eq!(off, "7710");
    let nat = ibm3624::offset_generate(&h(K2), "4524", "1122334455667788", "1234567890123456", 4)
        .unwrap();
    assert_eq!(nat, "0000");
    let pan = "1122334455667788";
    let blk = pinblock::encrypt(&h(K2), Format::Iso0, "1234", pan).unwrap();
    let v = |o: &str| {
        ibm3624::verify(
            &h(K2),
            Format::Iso0,
            &blk,
            pan,
            &h(K2),
            o,
            pan,
            "1234567890123456",
            4,
        )
    };
    assert!(v("7710").unwrap());
    assert!(v("7710FFFFFFFF").unwrap());
    assert!(!v("7711").unwrap());
}

#[test]
fn retail_mac_annex_b() {
    let m = mac::mac_alg3(&h(K2), b"Now is the time for all ", 1).unwrap();
    assert!(to_hex(&m).starts_with("A1C72E74"));
    assert_eq!(mac::pad(&[0x12, 0x34], 2).unwrap(), h("1234800000000000"));
    assert_eq!(
        mac::pad(&[0x12, 0x34], 3).unwrap(),
        h("00000000000000101234000000000000")
    );
    assert!(mac::mac_alg1(&h(K2), b"x", 4).is_err());
}

#[test]
fn emv_pyemv_documented_examples() {
    let imk = h(K2);
    let mk = emv::derive_icc_master_key_option_a(&imk, "12345678901234567", "01").unwrap();
    assert_eq!(to_hex(&mk), "73AD54688CEF2934B0979857E3C719F1");
    let mk2 = emv::derive_icc_master_key_option_a(&imk, "99012345678901234", "45").unwrap();
    assert_eq!(to_hex(&mk2), "67F8292358083E5EA7AB7FDA58D53B6B");
    // pyemv's own test chain, checked by key check digits: ICC MK "0239", SK(R) "F088".
    let mk3 = emv::derive_icc_master_key_option_a(&imk, "1234567890123456", "01").unwrap();
    assert_eq!(
        to_hex(&keys::key_check_value(&mk3, "des", 2).unwrap()),
        "0239"
    );
    let sk3 = emv::derive_common_session_key(&mk3, &h("ABCDEF1234567890")).unwrap();
    assert_eq!(
        to_hex(&keys::key_check_value(&sk3, "des", 2).unwrap()),
        "F088"
    );
    let sk = emv::derive_common_session_key(&h(K2), &h("001C")).unwrap();
    assert_eq!(to_hex(&sk), "E9FB384AF807B940FEDCEA613461B0C4");
    let sk = h("29B33180E567CE38EA4CBC9D753B0E61");
    let ac = emv::generate_ac(&sk, &h("0123456789ABCDEF0123456789ABCDEF")).unwrap();
    assert_eq!(to_hex(&ac), "FA624250B008B59A");
    assert!(emv::verify_ac(&sk, &h("0123456789ABCDEF0123456789ABCDEF"), &ac).unwrap());
    assert_eq!(
        to_hex(&emv::arpc_method1(&sk, &ac, &h("0000")).unwrap()),
        "45D4255EEF10C920"
    );
    assert_eq!(
        to_hex(&emv::arpc_method2(&sk, &ac, &h("00000000"), b"").unwrap()),
        "CB56FA40"
    );
}

const TR31_KBPK: &str = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6";
const TR31_BLOCK: &str = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34";

#[test]
fn tr31_2018_a_7_4() {
    let kbpk = h(TR31_KBPK);
    let (header, key) = tr31::unwrap(&kbpk, TR31_BLOCK).unwrap();
    assert_eq!(header, "D0112P0AE00E0000");
    assert_eq!(to_hex(&key), "3F419E1CB7079442AA37474C2EFBF8B8");
    let fill = h("1C2965473CE206BB855B01533782");
    let block = tr31::wrap_with_fill(&kbpk, "D0000P0AE00E0000", &key, Some(16), |b| {
        b.copy_from_slice(&fill);
        Ok(())
    })
    .unwrap();
    assert_eq!(block, TR31_BLOCK);
    // Tampering anywhere is caught by the MAC.
    let mut bad = TR31_BLOCK.to_string();
    bad.replace_range(20..21, "0");
    assert!(tr31::unwrap(&kbpk, &bad).is_err());
    assert!(tr31::unwrap(&kbpk, &TR31_BLOCK.replace("P0AE", "P0AD")).is_err());
    // Random round trip with masking and optional blocks.
    let hdr = "D0000K0AB00E0100KS0C0123456789";
    assert!(tr31::wrap(&kbpk, hdr, &key).is_err()); // 28 chars: needs a PB block
    let hdr = "D0000K0AB00E0200KS0C01234567PB140000000000000000";
    let block = tr31::wrap(&h("000102030405060708090a0b0c0d0e0f"), hdr, &key).unwrap();
    let (hh, kk) = tr31::unwrap(&h("000102030405060708090a0b0c0d0e0f"), &block).unwrap();
    assert_eq!(kk, key);
    assert_eq!(&hh[5..], &hdr[5..]);
    // Masked to 32 bytes for algorithm A: 48 + (2 + 32 + 14) * 2 + 32 characters.
    assert_eq!(block.len(), 48 + 96 + 32);
}

#[test]
fn tr31_aes128_block_from_a_public_exercise() {
    // The exercise's block; the key agrees with psec 1.3.0's unwrap.
    let (h2, k) = tr31::unwrap(
        &h("A1A10101010101010101010101010102"),
        "D0144D0AB00S000042766B9265B2DF93AE6E29B58135B77A2F616C8D515ACDBE6A5626F79FA7B4071E9EE1423C6D7970FA2B965D18B23922B5B2E5657495E03CD857FD37018E111B",
    )
    .unwrap();
    assert_eq!(h2, "D0144D0AB00S0000");
    assert_eq!(to_hex(&k), "C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1");
}

#[test]
fn bad_inputs_never_panic() {
    for n in 0..40usize {
        let k = vec![0x11u8; n];
        let d = vec![0x22u8; n];
        let _ = BlockCipher::des("key", &k).and_then(|c| c.encrypt_ecb(&d));
        let _ = BlockCipher::aes("key", &k).and_then(|c| c.decrypt_cbc(&d[..n.min(16)], &d));
        let _ = keys::key_check_value(&k, "aes", n);
        let _ = mac::mac_alg3(&k, &d, 2);
        let _ = pinblock::decrypt("key", &k, Format::Iso0, &d, "4012345678909");
        let _ = pinblock::decrypt("key", &k, Format::Iso4, &d, "4012345678909");
        let _ = emv::derive_common_session_key(&k, &d);
        let _ = emv::arpc_method2(&k, &d, &d, &d);
        let s: String = "D0112P0AE00E0000"
            .chars()
            .chain("0".repeat(n).chars())
            .collect();
        let _ = tr31::unwrap(&k, &s);
        let _ = tr31::unwrap(&h(TR31_KBPK), &TR31_BLOCK[..n.min(TR31_BLOCK.len())]);
    }
    assert_eq!(
        crate::digits::check_pan("12ab").unwrap_err().to_string(),
        "pan: must be 13-19 digits"
    );
    assert!(pinblock::encrypt(&h(K2), Format::Iso0, "123", "4012345678909").is_err());
    assert!(tr31::unwrap(&h(TR31_KBPK), "D0112P0AE00E0000é").is_err());
    assert!(tr31::unwrap(&h(TR31_KBPK), "D0016P0AE00E9900").is_err());
}

#[test]
fn fast_des_agrees_with_the_des_crate() {
    use crate::fastdes::{FastDes, FastTdes};
    use cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
    // Small xorshift generator: deterministic, no extra dependency.
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..2000 {
        let (k1, k2, k3) = (
            next().to_be_bytes(),
            next().to_be_bytes(),
            next().to_be_bytes(),
        );
        let block = next().to_be_bytes();
        let reference = des::Des::new(&Array::from(k1));
        let mut want = Array::from(block);
        reference.encrypt_block(&mut want);
        let mut got = block;
        let fast = FastDes::new(k1);
        fast.encrypt_block(&mut got);
        assert_eq!(got[..], want[..]);
        fast.decrypt_block(&mut got);
        assert_eq!(got, block);
        reference.decrypt_block(&mut want);
        assert_eq!(want[..], block[..]);

        let key: Vec<u8> = [k1, k2, k3].concat();
        let reference = des::TdesEde3::new_from_slice(&key).unwrap();
        let mut want = Array::from(block);
        reference.encrypt_block(&mut want);
        let fast = FastTdes::new(k1, k2, k3);
        let mut got = block;
        fast.encrypt_block(&mut got);
        assert_eq!(got[..], want[..]);
        fast.decrypt_block(&mut got);
        assert_eq!(got, block);
    }
}

#[test]
fn key_cache_survives_evictions_and_threads() {
    use cipher::{Array, BlockCipherEncrypt, KeyInit};
    let work = |seed: u64| {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        // 300 distinct keys through a 64-slot cache, each used twice, so hits, misses and
        // overwritten slots all happen; every answer must equal the reference 3DES.
        let keys: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                let len = [8, 16, 24][i % 3];
                (0..len / 8).flat_map(|_| next().to_be_bytes()).collect()
            })
            .collect();
        for key in keys.iter().chain(keys.iter()) {
            let full: Vec<u8> = match key.len() {
                8 => [&key[..], &key[..], &key[..]].concat(),
                16 => [&key[..], &key[..8]].concat(),
                _ => key.clone(),
            };
            let reference = des::TdesEde3::new_from_slice(&full).unwrap();
            let block = next().to_be_bytes();
            let mut want = Array::from(block);
            reference.encrypt_block(&mut want);
            let got = BlockCipher::des("key", key)
                .unwrap()
                .encrypt_ecb(&block)
                .unwrap();
            assert_eq!(got[..], want[..]);
        }
    };
    let handles: Vec<_> = (1..=4u64)
        .map(|t| std::thread::spawn(move || work(t * 0x1234_5678_9ABC_DEF1)))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn random_pool_refills_and_fills_stay_valid() {
    let pan = "4012345678909";
    let pin = Pin::parse("123456").unwrap();
    let mut seen = std::collections::HashSet::new();
    // 16 bytes per block, 1024-byte pool: 2,000 blocks cross the refill many times.
    for fmt in [Format::Iso1, Format::Iso3, Format::Iso4] {
        for _ in 0..2000 {
            let b = pinblock::encode(fmt, &pin, pan).unwrap();
            assert_eq!(
                pinblock::decode(fmt, b.as_bytes(), pan).unwrap().to_ascii(),
                "123456"
            );
            seen.insert(b.as_bytes().to_vec());
        }
    }
    assert!(
        seen.len() > 5900,
        "random fill repeats too often: {}",
        seen.len()
    );
}

#[test]
fn key_cache_clear_keeps_results_correct() {
    let k = h(K2);
    let before = BlockCipher::des("key", &k)
        .unwrap()
        .encrypt_ecb(&[0; 8])
        .unwrap();
    crate::keycache::clear();
    let after = BlockCipher::des("key", &k)
        .unwrap()
        .encrypt_ecb(&[0; 8])
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(to_hex(&after[..3]), "08D7B4");
}
