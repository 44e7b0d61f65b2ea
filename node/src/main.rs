//! `flotilla`: one binary for the server, the client commands and the demo.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match flotilla_node::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // A bad command line exits 1 like any other failure: 2, 3 and 4 say what a command
            // found (clap's own code for it is 2).
            error.print().ok();
            return if error.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    match flotilla_node::cli::run(cli) {
        Ok(finished) => std::process::ExitCode::from(finished.exit_code()),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(error.exit_code())
        }
    }
}
