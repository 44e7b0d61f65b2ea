//! `flotilla`: one binary for the server, the client commands and the demo.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = flotilla_node::cli::Cli::parse();
    match flotilla_node::cli::run(cli) {
        Ok(finished) => std::process::ExitCode::from(finished.exit_code()),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(error.exit_code())
        }
    }
}
