//! The `inferlog` binary: loads `.env`, parses the command line and hands over to
//! [`inferlog::commands`]. The serve command keeps its telemetry guard to its very end, so the
//! last log lines are flushed.

use std::process::ExitCode;

use clap::Parser;
use inferlog::cli::Cli;

/// mimalloc instead of glibc's malloc: requests allocate on the HTTP workers and their log
/// records and audit rows are freed on the log and writer threads, the case glibc's arenas
/// handle worst (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: ignoring .env: {e}");
    }
    match inferlog::commands::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if inferlog::commands::ends_in_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
