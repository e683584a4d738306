//! `cargohold`: the command-line front end. Each subcommand lives in `cmd/`,
//! parses its arguments, calls a library and renders the result.

mod cli;
mod cmd;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
