//! Embedding the registry client in an async program: the async client for
//! requests, and the blocking pull run from the program's own runtime.
//!
//! ```sh
//! cargo run -p cargohold-registry --example embed -- localhost:5000/team/app:1 /tmp/store
//! ```

#![allow(clippy::print_stdout, reason = "an example program prints its results")]

use cargohold_image_core::{CopyOptions, NoProgress, Reference, Store};
use cargohold_registry::{ClientOptions, Registry, RegistryClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(image), Some(store)) = (args.next(), args.next()) else {
        return Err("usage: embed REGISTRY/REPOSITORY:TAG STORE-DIR".into());
    };
    let r: Reference = image.parse()?;

    // Async: the client runs on this program's runtime.
    let client = RegistryClient::new(ClientOptions::default())?;
    let tags = client.tags(r.registry(), r.repository()).await?;
    let manifest = client.get_manifest(&r).await?;
    println!("{}: tags {tags:?}, manifest {}", r.name(), manifest.digest);

    // Blocking facade from async code: it runs on its own runtime (a helper
    // thread when called on one of ours), so this does not panic; in a
    // server, prefer `spawn_blocking`.
    let reg = Registry::new(ClientOptions::default())?;
    let store = Store::open(&store)?;
    let report = cargohold_registry::pull(&reg, &r, &store, &CopyOptions::default(), 4, &NoProgress)?;
    println!("pulled {} ({} blobs fetched)", report.manifest.digest, report.blobs_copied);
    Ok(())
}
