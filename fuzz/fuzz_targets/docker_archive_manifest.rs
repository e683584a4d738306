//! Property: a docker-archive `manifest.json` that parses survives
//! serialize -> parse unchanged.
#![no_main]

use cargohold_image_core::DockerArchiveImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(images) = serde_json::from_slice::<Vec<DockerArchiveImage>>(data) else { return };
    let bytes = serde_json::to_vec(&images).expect("serializes");
    let again: Vec<DockerArchiveImage> = serde_json::from_slice(&bytes).expect("re-parses");
    assert_eq!(again, images);
});
