//! The subcommands of the `inferlog` binary, one file each: [`serve`] (the default),
//! [`train`], [`audit`] and [`drift`]. Each takes its parsed arguments and does the whole job.

pub mod audit;
pub mod drift;
pub mod progress;
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

/// Writes one line to standard output and flushes it, returning the error `println!` would
/// panic on (a closed pipe, a full disk): [`ends_in_closed_pipe`] tells the first apart.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, $($arg)*).and_then(|()| out.flush())
    }};
}
pub(crate) use outln;

/// Whether a command failed only because its reader went away (`inferlog audit | head`): like
/// other Unix tools, it then ends quietly and successfully.
pub fn ends_in_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A single-threaded runtime for the commands that read the store.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
