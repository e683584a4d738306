//! Subcommands: parse -> call a library -> render.

mod archive;
mod copy;
mod docs;
mod images;
mod inspect;
mod layers;
mod mount;
mod reference;
mod unpack;

use anyhow::{Context, Result};
use cargohold_image_core::{Platform, Store};

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx { store_path: cli.store.clone(), quiet: cli.quiet };
    match cli.command {
        Command::Ref(a) => reference::run(&a),
        Command::Inspect(a) => inspect::run(&ctx, &a),
        Command::Copy(a) => copy::run(&ctx, &a),
        Command::Load(a) => archive::load(&ctx, &a),
        Command::Save(a) => archive::save(&ctx, &a),
        Command::Images(a) => images::list(&ctx, &a),
        Command::Unpack(a) => unpack::run(&ctx, &a),
        Command::Export(a) => layers::export(&ctx, &a),
        Command::Import(a) => layers::import(&ctx, &a),
        Command::Diff(a) => layers::diff(&a),
        Command::Commit(a) => layers::commit(&ctx, &a),
        Command::Mount(a) => mount::mount(&ctx, &a),
        Command::Umount(a) => mount::umount(&a),
        Command::Tag(a) => images::tag(&ctx, &a),
        Command::Rmi(a) => images::rmi(&ctx, &a),
        Command::Prune(a) => images::prune(&ctx, &a),
        Command::Completions(a) => docs::completions(&a),
        Command::Man(a) => docs::man(&a),
    }
}

/// What every command may need.
pub struct Ctx {
    store_path: Option<std::path::PathBuf>,
    #[allow(dead_code, reason = "progress output arrives with the registry commands")]
    quiet: bool,
}

impl Ctx {
    /// Opens (creating if needed) the local store.
    pub fn store(&self) -> Result<Store> {
        let path = self.store_path.clone().unwrap_or_else(Store::default_path);
        Store::open(&path).with_context(|| format!("could not open the image store at {}", path.display()))
    }
}

/// Parses a `--platform` value.
pub fn platform(p: Option<&str>) -> Result<Option<Platform>> {
    p.map(|s| s.parse::<Platform>().map_err(anyhow::Error::from)).transpose()
}
