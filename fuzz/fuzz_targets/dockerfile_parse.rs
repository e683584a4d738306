//! Properties: parsing never panics; an error names the file and a line
//! inside the text; every parsed instruction lies inside the text and reads
//! as its keyword; words and substitution never panic on any argument.
#![no_main]

use cargohold_builder::dockerfile::{parse, words};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.split('\n').count();
    match parse(text, "Dockerfile") {
        Err(e) => {
            assert!(e.to_string().starts_with("Dockerfile:"));
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        }
        Ok(d) => {
            let vars = |n: &str| (n.len() % 2 == 0).then(|| n.to_owned());
            for i in &d.instructions {
                assert!(i.line >= 1 && i.line <= lines);
                assert!(i.original.to_ascii_uppercase().starts_with(i.keyword.as_str()), "{:?}", i.original);
                let _ = words::words(&i.args, d.escape, &vars);
                let _ = words::key_values(&i.args, d.escape, &vars, true);
            }
        }
    }
});
