//! `cargohold`: the command-line front end. Each subcommand lives in `cmd/`,
//! parses its arguments, calls a library and renders the result.

mod cli;
mod cmd;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cargohold: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
