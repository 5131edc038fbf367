//! `caracal`: the operators' CLI. Parses arguments (usage errors exit 2)
//! and hands them to the library, which picks the exit code.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    caracal_cli::main(caracal_cli::Cli::parse())
}
