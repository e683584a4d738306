//! Publishes the images of a DUCC wish list into a CernVM-FS style tree
//! (here a plain directory: the wish list's `cvmfs_repo` names it).
//!
//! ```sh
//! cargo run -p cargohold-publish --example publish_wishlist -- wishlist.yaml
//! ```

#![allow(clippy::print_stdout, reason = "an example program prints its results")]

use cargohold_publish::{PublishOptions, Publisher, parse_wishlist};
use cargohold_registry::{ClientOptions, Registry};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args().nth(1) else {
        return Err("usage: publish_wishlist WISHLIST.yaml".into());
    };
    let text = std::fs::read_to_string(&path)?;
    let wishes = parse_wishlist(&text, &path)?;
    let reg = Registry::new(ClientOptions::default())?;
    let publisher = Publisher::new(wishes.cvmfs_repo.as_ref(), &reg, PublishOptions::default(), None)?;
    for report in publisher.convert_wishlist(&wishes) {
        println!("{} {:?}", report.image, report.status);
    }
    Ok(())
}
