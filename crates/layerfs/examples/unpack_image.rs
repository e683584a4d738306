//! Unpacks a stored image into a directory, every layer applied safely
//! (paths resolved inside the target, whiteouts honoured).
//!
//! ```sh
//! cargo run -p cargohold-layerfs --example unpack_image -- /tmp/store busybox:latest /tmp/rootfs
//! ```

#![allow(clippy::print_stdout, reason = "an example program prints its results")]

use cargohold_image_core::{ImageLocation, Store, open_source};
use cargohold_layerfs::{UnpackOptions, unpack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, image, target] = args.as_slice() else {
        return Err("usage: unpack_image STORE-DIR IMAGE TARGET-DIR".into());
    };
    let store = Store::open(store)?;
    let mut src = open_source(&ImageLocation::parse(image)?, &store)?;
    let report = unpack(src.as_mut(), target.as_ref(), &UnpackOptions::default())?;
    println!("{} layers, {} entries", report.layers, report.entries);
    Ok(())
}
