//! The `inferlog` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use inferlog::cli::{AuditCliArgs, Cli, Command, DriftCliArgs, ServeArgs, TrainArgs};
use inferlog::model::train;
use inferlog::startup::Application;
use inferlog::telemetry;

fn main() -> ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: ignoring .env: {e}");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Train(args)) => run_train(&args),
        Some(Command::Serve(args)) => run_serve(&args),
        Some(Command::Audit(args)) => run_audit(&args),
        Some(Command::Drift(args)) => run_drift(&args),
        None => run_serve(&cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&args.log)?;
    telemetry::bridge_log_crate(&telemetry.logger, args.log.log_level);
    let logger = telemetry.logger.clone();
    let dropped = std::sync::Arc::clone(&telemetry.dropped);
    let result = actix_web::rt::System::new().block_on(async {
        let app = Application::build(args, logger.clone(), dropped).await?;
        app.run_until_stopped().await
    });
    match &result {
        Ok(()) => slog::info!(logger, "shutdown complete"),
        Err(e) => slog::crit!(logger, "start-up or serving failed"; "error" => format!("{e:#}")),
    }
    // Dropping the telemetry (last) flushes every queued log line.
    drop(logger);
    drop(telemetry);
    result
}

fn run_audit(args: &AuditCliArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    runtime.block_on(inferlog::audit::report::run(args, &mut out))?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

fn run_drift(args: &DriftCliArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(inferlog::monitor::drift::offline_report(args))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    let data = match (&args.dataset, &args.csv, &args.target) {
        (Some(ds), _, _) => train::load_dataset(*ds),
        (None, Some(csv), Some(target)) => train::load_csv(csv, target)?,
        _ => anyhow::bail!("give --dataset, or --csv with --target"),
    };
    let name = args.name.clone().unwrap_or_else(|| data.name.clone());
    let opts = train::TrainOptions {
        name: name.clone(),
        algorithm: args.algorithm,
        seed: args.seed,
        test_size: args.test_size,
        created_at: train::creation_time()?,
    };
    let artifact = train::train(&data, &opts)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::path::Path::new("models").join(format!("{name}.json")));
    artifact.save(&out).context("saving the model")?;
    println!(
        "trained {} ({}) on {} rows from {}: held-out accuracy {:.4} on {} rows; version {}; wrote {}",
        artifact.name,
        artifact.algorithm,
        artifact.training.train_rows,
        artifact.training.source,
        artifact.training.held_out_accuracy,
        artifact.training.test_rows,
        artifact.version,
        out.display()
    );
    Ok(())
}
