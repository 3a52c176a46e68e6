//! The `clubdeploy` command: parses the command line and calls into the library.

use std::process::ExitCode;

use clap::Parser;

use clubdeploy::cli::{self, args::Cli};

fn main() -> ExitCode {
    // Nothing clubdeploy creates is for other local users unless it says so (releases are
    // opened up to Apache explicitly).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {}", cli::visible(&message));
            ExitCode::FAILURE
        }
    }
}
