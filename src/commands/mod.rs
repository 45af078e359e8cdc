//! The subcommands of the `inferlog` binary, one file each: [`serve`] (the default),
//! [`train`], [`audit`] and [`drift`]. Each takes its parsed arguments and does the whole job.

pub mod audit;
pub mod drift;
pub mod serve;
pub mod train;

use crate::cli::{Cli, Command};

/// Runs the command the command line asks for.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Train(args)) => train::run(&args),
        Some(Command::Serve(args)) => serve::run(&args),
        Some(Command::Audit(args)) => audit::run(&args),
        Some(Command::Drift(args)) => drift::run(&args),
        None => serve::run(&cli.serve),
    }
}

/// A single-threaded runtime for the commands that read the store.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
