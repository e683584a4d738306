//! Property: any text either is refused with an error naming the file, or
//! parses into inputs and problems whose line numbers lie inside the text,
//! and every output template expands without panicking.
#![no_main]

use cargohold_publish::{expand_output, parse_wishlist};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_wishlist(text, "fuzz.yaml") {
        Err(e) => assert!(e.to_string().contains("fuzz.yaml")),
        Ok(w) => {
            let lines = text.lines().count().max(1);
            for i in &w.inputs {
                assert!(i.line >= 1 && i.line <= lines + 1, "line {} of {lines}", i.line);
                let _ = expand_output(&w.output_format, &i.url, i.url.tag.as_deref(), i.url.digest.as_ref());
            }
            for p in &w.problems {
                assert!(p.line >= 1 && p.line <= lines + 1, "line {} of {lines}", p.line);
            }
        }
    }
});
