//! `keyturn-operator`: wiring only. Commands live in their own modules.
#![forbid(unsafe_code)]

mod cli;
mod explain;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Crd => {
            print!("{}", keyturn_crds::crd_yaml()?);
            Ok(())
        }
        cli::Command::Explain(args) => explain::run(&args),
    }
}
