//! `cargohold completions` and `cargohold man`, generated from the clap definitions.

use std::fs;
use std::io;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs, Shell};

pub fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut cmd = Cli::command();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "cargohold", &mut io::stdout());
    Ok(())
}

pub fn man(args: &ManArgs) -> Result<()> {
    let cmd = Cli::command();
    let Some(dir) = &args.out else {
        return clap_mangen::Man::new(cmd).render(&mut io::stdout()).context("could not write the man page");
    };
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let write = |name: String, cmd: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).context("could not render a man page")?;
        fs::write(&path, buf).with_context(|| format!("could not write {}", path.display()))
    };
    for sub in cmd.get_subcommands() {
        let name = format!("cargohold-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name))?;
    }
    write("cargohold".into(), cmd)
}
