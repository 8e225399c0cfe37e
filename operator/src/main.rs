//! `keyturn-operator`: wiring only. Commands live in the library's modules.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use keyturn_operator::{cli, explain};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Crd(args) if args.reference => keyturn_crds::reference::reference_markdown()
            .map(|page| print!("{page}"))
            .map_err(anyhow::Error::from),
        cli::Command::Crd(_) => keyturn_crds::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        cli::Command::Explain(args) => explain::run(&args),
        cli::Command::Run(args) => keyturn_operator::run::run(*args),
        cli::Command::Audit(command) => match keyturn_operator::audit_command::run(command) {
            // A bad record was named on standard output: exit 1 without a second message.
            Ok(false) => return ExitCode::FAILURE,
            Ok(true) => Ok(()),
            // 2, not 1: "could not check" must not read as "found tampering" in scripts.
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the cause chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
