//! Any bytes: TLV parse is an error or objects whose build is canonical (BER allows longer
//! length forms than needed, so the bytes may change once, then never again).
#![no_main]
use libfuzzer_sys::fuzz_target;
use switch_iso8583::tlv::{build, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(nodes) = parse(data) {
        let once = build(&nodes).expect("parsed objects build");
        let reparsed = parse(&once).expect("and parse again");
        assert_eq!(build(&reparsed).expect("and build again"), once);
        assert_eq!(reparsed.len(), nodes.len());
    }
});
