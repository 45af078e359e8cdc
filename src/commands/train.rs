//! `inferlog train`: a model artifact from a smartcore dataset or a CSV file.

use anyhow::Context;

use crate::cli::TrainArgs;
use crate::model::data::{load_csv, load_dataset};
use crate::model::train::{TrainOptions, creation_time, train};
use crate::model::{Artifact, Task};

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let data = match (&args.dataset, &args.csv, &args.target) {
        (Some(ds), _, _) => {
            if let Some(task) = args.task.filter(|&t| t != ds.task()) {
                anyhow::bail!("the {ds:?} dataset is for {}, not {task}", ds.task());
            }
            load_dataset(*ds)
        }
        (None, Some(csv), Some(target)) => {
            load_csv(csv, target, args.task.unwrap_or(Task::Classification))?
        }
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
        "trained {} ({}) on {} rows from {}: held-out {} on {} rows; version {}; wrote {}",
        artifact.name,
        artifact.algorithm,
        artifact.training.train_rows,
        artifact.training.source,
        held_out(&artifact),
        artifact.training.test_rows,
        artifact.version,
        out.display()
    )?;
    Ok(())
}

/// How well the model did on the rows it never saw.
fn held_out(artifact: &Artifact) -> String {
    let t = &artifact.training;
    match (t.held_out_accuracy, t.held_out_errors) {
        (Some(accuracy), _) => format!("accuracy {accuracy:.4}"),
        (None, Some(e)) => format!("MAE {:.4}, RMSE {:.4}, R² {:.4}", e.mae, e.rmse, e.r2),
        (None, None) => "figures missing".into(),
    }
}
