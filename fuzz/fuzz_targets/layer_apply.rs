//! Property: applying arbitrary bytes as a layer never creates, changes or
//! removes anything outside the root, and never panics. The root is seeded
//! with a symlink to the outside directory and to `/`, so a path that escaped
//! through them would show up as a change outside.
#![no_main]

use std::path::Path;

use cargohold_layerfs::{ApplyOptions, Limits, Root, apply_layer};
use libfuzzer_sys::fuzz_target;

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("outside dir")
        .map(|e| {
            let p = e.expect("entry").path();
            let data = std::fs::read(&p).unwrap_or_default();
            (p.display().to_string(), data)
        })
        .collect();
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().expect("tempdir");
    let (root, outside) = (t.path().join("root"), t.path().join("outside"));
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("victim"), "keep").expect("write");
    std::os::unix::fs::symlink(&outside, root.join("out")).expect("symlink");
    std::os::unix::fs::symlink("/", root.join("slash")).expect("symlink");
    let before = snapshot(&outside);
    let opts = ApplyOptions {
        limits: Limits { max_bytes: 1 << 20, max_entries: 10_000, max_depth: 64, max_path_len: 1024 },
        ..ApplyOptions::default()
    };
    let r = Root::open(&root).expect("root");
    let _ = apply_layer(&r, &mut &data[..], "fuzz", &opts);
    assert_eq!(snapshot(&outside), before, "the outside directory changed");
    let top: Vec<_> = std::fs::read_dir(t.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(top.len(), 2, "something appeared next to the root: {top:?}");
});
