//! `cargohold serve`: a registry over a directory.

use std::sync::Arc;

use anyhow::{Context, Result};
use cargohold_registry::server::{FsStorage, ServerOptions, router, serve};

use crate::cli::ServeArgs;
use crate::output;

pub fn run(args: &ServeArgs) -> Result<()> {
    let storage = FsStorage::open(&args.root)
        .with_context(|| format!("cannot use {} as the registry's storage", args.root.display()))?;
    let opts = ServerOptions { delete_enabled: !args.no_delete, ..ServerOptions::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr().context("the listening address")?;
        output::status(&format!("serving a registry on {addr} from {}", args.root.display()));
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM can be handled");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        serve(listener, router(Arc::new(storage), opts), shutdown).await.context("the server failed")
    })
}
