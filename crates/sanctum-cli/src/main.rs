//! `sanctum`: the command line over sanctum-storage.
//!
//! `sanctum [--config FILE] [--home DIR] [--tenant ID] [--actor ID] [--json] <command>`; see
//! `sanctum --help`. Results go to stdout (one JSON document with `--json`), errors to stderr as
//! `error[<code>]: <message>` (or `{"error": {"code", "message"}}` with `--json`), and the exit
//! status names the error code: see [`exit`].

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod exit;
mod output;
mod progress;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    // Parse before anything else: clap prints usage errors and exits 2 (0 for --help/--version).
    let cli = Cli::parse();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = anyhow::Error::new(e).context("cannot start the async runtime");
            return ExitCode::from(output::report_error(&err, json));
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // A blocking read of stdin that was never needed must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(err) => ExitCode::from(output::report_error(&err, json)),
    }
}
