//! Training: every algorithm round-trips through its artifact; runs are reproducible; CSV input
//! works and bad CSV is reported by line.

use inferlog::model::data::Dataset;
use inferlog::model::data::{load_csv, load_dataset};
use inferlog::model::train::{TrainOptions, train};
use inferlog::model::{Algorithm, Artifact, Matrix, Model, Task};

use crate::helpers::shipped_model;

/// The creation time the shipped model was made with (see the README).
const SHIPPED_EPOCH: &str = "1795737600";

fn options(algorithm: Algorithm) -> TrainOptions {
    TrainOptions {
        name: "iris".into(),
        algorithm,
        seed: 42,
        test_size: 0.2,
        created_at: "2026-11-27T00:00:00Z".into(),
    }
}

#[test]
fn every_algorithm_round_trips_with_identical_predictions() {
    let data = load_dataset(Dataset::Iris);
    let dir = tempfile::tempdir().unwrap();
    for algorithm in [
        Algorithm::RandomForest,
        Algorithm::LogisticRegression,
        Algorithm::DecisionTree,
        Algorithm::Knn,
    ] {
        let artifact = train(&data, &options(algorithm)).unwrap();
        assert_eq!(artifact.algorithm, algorithm);
        let acc = artifact.training.held_out_accuracy.unwrap();
        assert!(acc > 0.8, "{algorithm}: held-out accuracy {acc}");
        if algorithm == Algorithm::RandomForest {
            assert!(acc >= 0.9, "random forest held-out accuracy {acc}");
        }
        let path = dir.path().join(format!("{algorithm}.json"));
        artifact.save(&path).unwrap();
        let before = Model::new(artifact, path.clone());
        let after = Model::new(Artifact::load(&path).unwrap(), path.clone());
        assert_eq!(after.artifact.version, before.artifact.version);
        assert_eq!(
            after.artifact.content_version().unwrap(),
            after.artifact.version
        );
        let x = Matrix::new(
            data.target.rows(),
            data.feature_names.len(),
            data.x.clone(),
            false,
        )
        .unwrap();
        let p1 = before.predict(&x).unwrap();
        let p2 = after.predict(&x).unwrap();
        assert_eq!(p1, p2, "{algorithm}: predictions changed after reload");
        // And saving the reloaded model gives the same bytes (bit-identical floats).
        let again = dir.path().join(format!("{algorithm}-again.json"));
        after.artifact.save(&again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }
}

#[test]
fn baseline_describes_the_training_rows() {
    let data = load_dataset(Dataset::Iris);
    let a = train(&data, &options(Algorithm::DecisionTree)).unwrap();
    assert_eq!(a.baseline.features.len(), 4);
    for f in &a.baseline.features {
        assert!(f.min <= f.mean && f.mean <= f.max, "{f:?}");
        assert!(f.std > 0.0);
        assert_eq!(f.bin_proportions.len(), f.bin_edges.len() + 1);
        assert!((f.bin_proportions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    assert!((a.baseline.class_proportions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert_eq!(a.training.train_rows + a.training.test_rows, 150);
}

fn train_cli(out: &std::path::Path, epoch: Option<&str>) -> std::process::Output {
    let mut cmd = crate::shutdown::binary();
    cmd.args([
        "train",
        "--dataset",
        "iris",
        "--algorithm",
        "random-forest",
        "--out",
    ])
    .arg(out);
    match epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn same_command_writes_the_shipped_model_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("iris.json");
    let printed = train_cli(&out, Some(SHIPPED_EPOCH));
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(stdout.contains("held-out accuracy"), "{stdout}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(shipped_model()).unwrap(),
        "models/iris.json is not what the documented command makes"
    );
}

#[test]
fn retraining_without_fixed_time_keeps_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    train_cli(&a, None);
    train_cli(&b, Some("0"));
    let a = Artifact::load(&a).unwrap();
    let b = Artifact::load(&b).unwrap();
    assert_eq!(a.version, b.version);
    assert_eq!(b.created_at, "1970-01-01T00:00:00Z");
}

#[test]
fn trains_from_csv_with_string_labels() {
    let iris = load_dataset(Dataset::Iris);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("flowers.csv");
    let mut text = String::from("a,b,species,c,d\n");
    let (names, ys) = iris.target.classes().unwrap();
    for (i, &y) in ys.iter().enumerate() {
        let r = &iris.x[i * 4..i * 4 + 4];
        text += &format!(
            "{},{},{},{},{}\n",
            r[0], r[1], names[y as usize], r[2], r[3]
        );
    }
    std::fs::write(&csv, text).unwrap();
    let data = load_csv(&csv, "species", Task::Classification).unwrap();
    assert_eq!(data.feature_names, ["a", "b", "c", "d"]);
    assert_eq!(
        data.target.classes().unwrap().0,
        ["setosa", "versicolor", "virginica"]
    );
    assert_eq!(data.source, "csv:flowers.csv");
    let mut opts = options(Algorithm::LogisticRegression);
    opts.name = data.name.clone();
    let a = train(&data, &opts).unwrap();
    assert_eq!(a.name, "flowers");
    assert!(a.training.held_out_accuracy.unwrap() > 0.8);
}

#[test]
fn integer_labels_sort_numerically() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("n.csv");
    let mut text = String::from("x,label\n");
    for i in 0..30 {
        text += &format!("{},{}\n", i, [10, 2, 1][i % 3]);
    }
    std::fs::write(&csv, text).unwrap();
    let data = load_csv(&csv, "label", Task::Classification).unwrap();
    assert_eq!(data.target.classes().unwrap().0, ["1", "2", "10"]);
}

#[test]
fn bad_csv_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "x,y,label\n1,2,a\n3,oops,b\n").unwrap();
    let err = format!(
        "{:#}",
        load_csv(&csv, "label", Task::Classification).unwrap_err()
    );
    assert!(err.contains("line 3") && err.contains("\"oops\""), "{err}");

    std::fs::write(&csv, "x,y,label\n1,2,a\n3,4\n").unwrap();
    let err = format!(
        "{:#}",
        load_csv(&csv, "label", Task::Classification).unwrap_err()
    );
    assert!(err.contains("line 3"), "{err}");

    let err = format!(
        "{:#}",
        load_csv(&csv, "nope", Task::Classification).unwrap_err()
    );
    assert!(err.contains("no column named \"nope\""), "{err}");
}

#[test]
fn a_numeric_target_of_quantities_is_refused_as_regression() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("prices.csv");
    let mut text = String::from("rooms,price\n");
    for i in 0..40 {
        text += &format!("{},{}.5\n", i % 5, 100 + i * 7);
    }
    std::fs::write(&csv, &text).unwrap();
    let err = format!(
        "{:#}",
        load_csv(&csv, "price", Task::Classification).unwrap_err()
    );
    assert!(err.contains("--task regression"), "{err}");
    // With --task regression the same column is a number per row.
    let data = load_csv(&csv, "price", Task::Regression).unwrap();
    assert_eq!(data.target.task(), Task::Regression);
    assert_eq!(data.target.rows(), 40);
    let a = train(&data, &options(Algorithm::Ridge)).unwrap();
    assert!(a.training.held_out_errors.is_some());

    // Many distinct whole numbers too (a count, an id): not classes.
    let mut text = String::from("rooms,visitors\n");
    for i in 0..200 {
        text += &format!("{},{}\n", i % 5, i * 3);
    }
    std::fs::write(&csv, &text).unwrap();
    let err = format!(
        "{:#}",
        load_csv(&csv, "visitors", Task::Classification).unwrap_err()
    );
    assert!(err.contains("200 distinct numbers"), "{err}");
}
