//! Property: an image config that parses survives serialize -> parse unchanged
//! (unknown fields included).
#![no_main]

use cargohold_image_core::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = ImageConfig::from_slice(data, "fuzz input") else { return };
    let again = ImageConfig::from_slice(&c.to_vec(), "re-serialized").expect("re-serialized config parses");
    assert_eq!(again, c);
});
