//! The async copy inside a program's own tokio runtime: any two locations
//! (the store, `oci:DIR:TAG`, `oci-archive:FILE`, `docker-archive:FILE`),
//! up to four layers at a time, every blob verified on the way, while the
//! program's other tasks keep running.
//!
//! ```sh
//! cargo run -p cargohold-image-core --example copy_async -- /tmp/store oci:/tmp/layout:1 myimage:1
//! ```

#![allow(clippy::print_stdout, reason = "an example program prints its results")]

use cargohold_image_core::{
    CopyOptions, ImageLocation, NoProgress, Store, copy_async, open_dest_async, open_source_async,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, from, to] = args.as_slice() else {
        return Err("usage: copy_async STORE-DIR SOURCE DESTINATION".into());
    };
    let store = Store::open(store)?;
    let src = open_source_async(&ImageLocation::parse(from)?, &store).await?;
    let dst = open_dest_async(&ImageLocation::parse(to)?, &store, src.name_hint().as_ref()).await?;
    let report = copy_async(src.as_ref(), dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await?;
    println!("{to}: {} ({} blobs copied)", report.manifest.digest, report.blobs_copied);
    Ok(())
}
