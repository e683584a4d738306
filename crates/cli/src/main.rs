//! `cargohold`: the command-line front end. Each subcommand lives in `cmd/`,
//! parses its arguments, calls a library and renders the result.

mod cli;
mod cmd;
mod output;
mod template;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_buffers_mapped();
    let cli = cli::Cli::parse();
    // Helper programs (pasta, crun, runc, newuidmap...) are found as a shell would.
    let path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    cargohold_runtime::set_program_search_path(path);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) if err.is::<cmd::OutputClosed>() => ExitCode::from(141),
        Err(err) => {
            eprintln!("cargohold: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps the memory of freed transfer buffers in the process for the next
/// ones. glibc maps each allocation over 128 KiB afresh and gives back the
/// top of the heap once 128 KiB of it is free, so every receive buffer of
/// a pull or a push (hyper's, up to a few hundred KiB, and the batches
/// written from them) was new memory, faulted in page by page as the socket was read
/// into it: measured, 1,700 page faults and ~4% of `serve`'s CPU per push
/// of the reference image. Allocations up to 4 MiB now come from the heap,
/// which is trimmed only past 64 MiB free. A process-wide choice, so it is
/// the program's to make, not a library's.
#[allow(unsafe_code)]
fn keep_buffers_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
