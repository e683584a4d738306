//! Embedding the registry client in an async program: the async client for
//! requests and `pull_async` for a transfer, on the program's own runtime.
//!
//! ```sh
//! cargo run -p cargohold-registry --example embed -- localhost:5000/team/app:1 /tmp/store
//! ```

#![allow(clippy::print_stdout, reason = "an example program prints its results")]

use cargohold_image_core::{CopyOptions, Reference, Store};
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

    // Transfers: awaited, with the streaming engine on a thread of its own.
    let reg = Registry::new(ClientOptions::default())?;
    let report = reg.pull_async(r.clone(), Store::open(&store)?, CopyOptions::default(), 4).await?;
    println!("pulled {} ({} blobs fetched)", report.manifest.digest, report.blobs_copied);
    Ok(())
}
