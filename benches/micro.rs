//! Microbenchmarks (criterion): request parsing and validation, model prediction for each
//! algorithm, and the audit store inserting batches into a file database.
//!
//!   cargo bench --bench micro

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use inferlog::audit::{AuditRecord, Latency, Store, StoreOptions};
use inferlog::input::parse_predict_body;
use inferlog::model::data::{Dataset, load_dataset};
use inferlog::model::train::{TrainOptions, train};
use inferlog::model::{Algorithm, Artifact, Matrix, Model};

fn shipped() -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
    Model::new(Artifact::load(&path).unwrap(), path)
}

fn batch_body(rows: usize) -> String {
    let rows: Vec<[f64; 4]> = (0..rows)
        .map(|i| {
            [
                4.5 + (i % 30) as f64 * 0.1,
                3.0,
                1.0 + (i % 50) as f64 * 0.1,
                1.3,
            ]
        })
        .collect();
    serde_json::json!({ "features": rows }).to_string()
}

fn parsing(c: &mut Criterion) {
    let model = shipped();
    let mut g = c.benchmark_group("parse_and_validate");
    let single = br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#.to_vec();
    let named = br#"{"features": {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9}}"#.to_vec();
    let batch = batch_body(100).into_bytes();
    g.throughput(Throughput::Elements(1));
    g.bench_function("single_row", |b| {
        b.iter(|| parse_predict_body(&single, &model, 1000).unwrap())
    });
    g.bench_function("named_row", |b| {
        b.iter(|| parse_predict_body(&named, &model, 1000).unwrap())
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_100_rows", |b| {
        b.iter(|| parse_predict_body(&batch, &model, 1000).unwrap())
    });
    g.finish();
}

fn predicting(c: &mut Criterion) {
    let data = load_dataset(Dataset::Iris);
    let mut g = c.benchmark_group("predict");
    for algorithm in [
        Algorithm::RandomForest,
        Algorithm::LogisticRegression,
        Algorithm::DecisionTree,
        Algorithm::Knn,
    ] {
        let artifact = train(
            &data,
            &TrainOptions {
                name: "iris".into(),
                algorithm,
                seed: 42,
                test_size: 0.2,
                created_at: "2026-11-27T00:00:00Z".into(),
            },
        )
        .unwrap();
        let model = Model::new(artifact, "bench".into());
        let one = Matrix::new(1, 4, vec![5.8, 2.7, 5.1, 1.9], false).unwrap();
        let hundred = Matrix::new(100, 4, data.x[..400].to_vec(), false).unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new(algorithm.to_string(), "1_row"),
            &one,
            |b, x| b.iter(|| model.predict(x).unwrap()),
        );
        g.throughput(Throughput::Elements(100));
        g.bench_with_input(
            BenchmarkId::new(algorithm.to_string(), "100_rows"),
            &hundred,
            |b, x| b.iter(|| model.predict(x).unwrap()),
        );
        if model.uses_compiled_trees() {
            // The same trees walked by smartcore, for comparison with the compiled walk.
            let name = format!("{algorithm}-smartcore");
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(BenchmarkId::new(&name, "1_row"), &one, |b, x| {
                b.iter(|| {
                    model
                        .artifact
                        .model
                        .classifier()
                        .unwrap()
                        .predict(x)
                        .unwrap()
                })
            });
            g.throughput(Throughput::Elements(100));
            g.bench_with_input(BenchmarkId::new(&name, "100_rows"), &hundred, |b, x| {
                b.iter(|| {
                    model
                        .artifact
                        .model
                        .classifier()
                        .unwrap()
                        .predict(x)
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

fn audit_writes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = inferlog::audit::url::DatabaseUrl::sqlite_file(&dir.path().join("bench.db"));
    let store = rt
        .block_on(Store::open(&url, &StoreOptions::writable()))
        .unwrap();
    // As in the service, a second connection checkpoints the WAL every 100 ms beside the
    // writer (on the same runtime); without it the WAL would only grow during the measurement.
    let maintenance = rt
        .block_on(async { store.spawn_maintenance(slog::Logger::root(slog::Discard, slog::o!())) });
    let (model, version, label, client): (Arc<str>, Arc<str>, Arc<str>, Arc<str>) = (
        "iris".into(),
        "98469e428bb454d9".into(),
        "virginica".into(),
        "127.0.0.1".into(),
    );
    // Fresh rows for every iteration, as the service makes them: a new time-ordered request
    // id per request of 10 rows and the current time, so index inserts land where they do in
    // production (reusing one id would pile duplicate keys into the middle of the index).
    let writer: Arc<str> = "bench@2026-12-06T00:00:00Z".into();
    let make = |rows: usize| -> Vec<AuditRecord> {
        let now = chrono::Utc::now();
        let mut id: Arc<str> = uuid::Uuid::now_v7().to_string().into();
        (0..rows)
            .map(|i| {
                if i % 10 == 0 {
                    id = uuid::Uuid::now_v7().to_string().into();
                }
                AuditRecord {
                    request_id: id.clone(),
                    client_request_id: None,
                    item: (i % 10) as u32,
                    received_at: now,
                    model: Some(model.clone()),
                    model_version: Some(version.clone()),
                    features: Some(inferlog::audit::NumberList::Values(vec![
                        5.8, 2.7, 5.1, 1.9,
                    ])),
                    prediction: Some(2),
                    label: Some(label.clone()),
                    status: 200,
                    error_code: None,
                    latency: Latency::Answered(120),
                    client_addr: Some(client.clone()),
                    raw_body: None,
                    outliers: None,
                    writer: Some(writer.clone()),
                    probabilities: Some(inferlog::audit::NumberList::Values(vec![0.0, 0.03, 0.97])),
                    value: None,
                }
            })
            .collect()
    };
    let mut g = c.benchmark_group("audit_write_batch");
    for rows in [1usize, 100, 1000, 10_000] {
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function(BenchmarkId::from_parameter(rows), |b| {
            b.iter_batched(
                || make(rows),
                |records| {
                    let refs: Vec<&AuditRecord> = records.iter().collect();
                    rt.block_on(store.write_batch(&refs)).unwrap()
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
    rt.block_on(maintenance.stop());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = parsing, predicting, audit_writes
}
criterion_main!(benches);
