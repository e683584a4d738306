//! Property: a digest that parses prints back as exactly its input, and its hex
//! part has the algorithm's length.
#![no_main]

use cargohold_image_core::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
        assert_eq!(Digest::parse(d.as_str()).expect("re-parses"), d);
    }
});
