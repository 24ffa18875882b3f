//! Any bytes, both shipped specs: decode is an error or a message that re-encodes and decodes
//! to itself. A panic, a hang or an out-of-memory is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switch_iso8583::builtin::{ascii87, binary87};
use switch_iso8583::{decode, encode, Spec};

static SPECS: OnceLock<[Spec; 2]> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let specs = SPECS.get_or_init(|| [ascii87(), binary87()]);
    for spec in specs {
        if let Ok(m) = decode(spec, data) {
            let again = encode(spec, &m).expect("a decoded message re-encodes");
            assert_eq!(decode(spec, &again).expect("and decodes again"), m);
        }
    }
});
