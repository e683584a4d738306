//! Property: whatever parses re-parses from its canonical and pull forms to the
//! same reference, and the pull form has exactly one of tag or digest.
#![no_main]

use cargohold_image_core::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.canonical()).expect("canonical form re-parses");
        assert_eq!(again, r, "canonical round trip of {s:?}");
        assert!(r.repository().len() <= 255);
        let pull = r.pull_reference();
        assert!(pull.tag().is_some() != pull.digest().is_some());
        assert_eq!(Reference::parse(&pull.canonical()).expect("pull form re-parses"), pull);
    }
});
