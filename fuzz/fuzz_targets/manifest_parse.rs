//! Property: a manifest or index that parses survives serialize -> parse
//! unchanged, and its digest is the sha256 of the exact input bytes.
#![no_main]

use cargohold_image_core::{Digest, Manifest, RawManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = RawManifest::new(data.to_vec(), None) else { return };
    assert_eq!(raw.digest, Digest::sha256_of(data));
    let Ok(parsed) = raw.parse() else { return };
    let again = match &parsed {
        Manifest::Image(m) => RawManifest::from_value(m, &raw.media_type),
        Manifest::Index(i) => RawManifest::from_value(i, &raw.media_type),
    };
    assert_eq!(again.parse().expect("re-serialized manifest parses"), parsed);
});
