//! Copies an image between any two locations the library knows (the store,
//! `oci:DIR:TAG`, `oci-archive:FILE`, `docker-archive:FILE`), verifying
//! every blob on the way.
//!
//! ```sh
//! cargo run -p cargohold-image-core --example copy_image -- /tmp/store oci:/tmp/layout:1 myimage:1
//! ```

#![allow(clippy::print_stdout, reason = "an example program prints its results")]

use cargohold_image_core::{CopyOptions, ImageLocation, NoProgress, Store, copy, open_dest, open_source};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, from, to] = args.as_slice() else {
        return Err("usage: copy_image STORE-DIR SOURCE DESTINATION".into());
    };
    let store = Store::open(store)?;
    let mut src = open_source(&ImageLocation::parse(from)?, &store)?;
    let mut dst = open_dest(&ImageLocation::parse(to)?, &store, None)?;
    let report = copy(src.as_mut(), dst.as_mut(), &CopyOptions::default(), &NoProgress)?;
    println!("{to}: {} ({} blobs copied)", report.manifest.digest, report.blobs_copied);
    Ok(())
}
