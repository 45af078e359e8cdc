//! `inferlog train`: a model artifact from a smartcore dataset or a CSV file.

use anyhow::Context;

use crate::cli::TrainArgs;
use crate::model::data::{load_csv, load_dataset};
use crate::model::train::{TrainOptions, creation_time, train};

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let data = match (&args.dataset, &args.csv, &args.target) {
        (Some(ds), _, _) => load_dataset(*ds),
        (None, Some(csv), Some(target)) => load_csv(csv, target)?,
        _ => anyhow::bail!("give --dataset, or --csv with --target"),
    };
    let name = args.name.clone().unwrap_or_else(|| data.name.clone());
    let opts = TrainOptions {
        name: name.clone(),
        algorithm: args.algorithm,
        seed: args.seed,
        test_size: args.test_size,
        created_at: creation_time()?,
    };
    let artifact = train(&data, &opts)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::path::Path::new("models").join(format!("{name}.json")));
    artifact.save(&out).context("saving the model")?;
    super::outln!(
        "trained {} ({}) on {} rows from {}: held-out accuracy {:.4} on {} rows; version {}; wrote {}",
        artifact.name,
        artifact.algorithm,
        artifact.training.train_rows,
        artifact.training.source,
        artifact.training.held_out_accuracy,
        artifact.training.test_rows,
        artifact.version,
        out.display()
    )?;
    Ok(())
}
