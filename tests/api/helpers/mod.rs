//! Test harness: a real inferlog server on a free port, with its own temporary folder (models,
//! log file), and a small HTTP/1.1 client that can also send malformed bytes on purpose.
//!
//! This file starts and stops a [`TestApp`] and runs one test on both stores
//! ([`on_both_stores!`]); the rest is split by what it serves, and re-exported here so that
//! every test names it `crate::helpers::X`:
//! - [`client`]: the HTTP client ([`Response`], raw bytes) and `TestApp`'s typed calls;
//! - [`store`]: `TestApp`'s reads of its own audit store, SQLite or PostgreSQL;
//! - [`sqlite`]: connections of their own to an SQLite file (statements, locks, old schemas);
//! - [`logs`]: waiting for log lines;
//! - [`tools`]: the external programs some tests run, skipped or required as a whole;
//! - [`wait`]: waiting for a state with a deadline.

mod client;
mod logs;
mod sqlite;
mod store;
mod tools;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use inferlog::config::Settings;
use inferlog::startup::Application;
use inferlog::telemetry;
use tempfile::TempDir;

pub use client::{AuditPage, Response, metric_value, read_response, send_raw, try_send_raw};
pub use logs::wait_for_line;
pub use sqlite::{StoreLock, db_at_migration, db_exec, db_json, served_request_ids};
pub use tools::tool;
pub use wait::wait_until;

/// The shipped iris model.
pub fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json")
}

/// A regressor trained once per test run (a random forest on smartcore's diabetes data, as
/// `inferlog train --dataset diabetes` makes it), in a folder that outlives the tests.
pub fn regression_model() -> &'static Path {
    static MODEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        use inferlog::model::data::{Dataset, load_dataset};
        use inferlog::model::train::{TrainOptions, train};
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("diabetes.json");
        let opts = TrainOptions {
            name: "diabetes".into(),
            algorithm: inferlog::model::Algorithm::RandomForest,
            seed: 42,
            test_size: 0.2,
            created_at: "2026-11-27T00:00:00Z".into(),
        };
        train(&load_dataset(Dataset::Diabetes), &opts)
            .unwrap()
            .save(&path)
            .unwrap();
        path
    })
}

/// Settings that serve [`regression_model`] (as `diabetes`) beside the shipped iris model.
pub fn with_regressor(s: &mut Settings) {
    std::fs::copy(regression_model(), s.models.join("diabetes.json")).unwrap();
}

pub struct TestApp {
    pub port: u16,
    /// The store the server writes to (`sqlite://…` by default).
    pub database_url: String,
    /// The admin address's port, when the settings gave one.
    pub admin_port: Option<u16>,
    pub dir: TempDir,
    pub log_path: PathBuf,
    pub db_path: PathBuf,
    /// Resolves the server's shutdown future: the same drain SIGTERM starts.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One test body run on each audit backend: `on_both_stores!(fn name(app) { … })` makes a
/// module `name` with the tests `sqlite` and `postgres` (the second skipped, with the one line
/// of [`crate::pg`], where PostgreSQL is not installed). `on_both_stores!(fn name(app) with
/// |s| …, { … })` changes the settings first.
macro_rules! on_both_stores {
    (fn $name:ident($app:ident) $body:block) => {
        on_both_stores!(fn $name($app) with |_s| {}, $body);
    };
    (fn $name:ident($app:ident) with |$s:ident| $adjust:expr, $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($app: crate::helpers::TestApp) $body

            fn adjust($s: &mut inferlog::config::Settings) {
                $adjust;
            }

            #[test]
            fn sqlite() {
                run(crate::helpers::spawn_app_with(adjust));
            }

            #[test]
            fn postgres() {
                let Some(url) = crate::pg::database() else {
                    return;
                };
                run(crate::helpers::spawn_app_with(move |s| {
                    adjust(s);
                    s.database_url = url.parse().unwrap();
                }));
            }
        }
    };
}
pub(crate) use on_both_stores;

/// Starts a server on port 0 serving the shipped iris model, logging to a file in its folder.
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// Like [`spawn_app`], with settings changed by `adjust` (`|s| s.http.max_batch = 5`). The
/// settings are built here, not from the command line or the environment, so a developer's
/// `AUDIT_TOKEN` or `LOG_FORMAT` changes nothing.
pub fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(shipped_model(), models.join("iris.json")).unwrap();
    let log_path = dir.path().join("inferlog.log");
    let db_path = dir.path().join("audit.db");
    let mut settings = Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        models,
        default_model: "iris".into(),
        database_url: inferlog::audit::url::DatabaseUrl::sqlite_file(&db_path),
        ..Settings::default()
    };
    settings.http.workers = Some(1);
    settings.log.file = Some(log_path.clone());
    settings.log.level = slog::Level::Info;
    adjust(&mut settings);
    let database_url = settings.database_url.expose_secret().to_string();

    let (tx, rx) = std::sync::mpsc::channel();
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let telemetry = telemetry::init(&settings.log).expect("logger");
        let logger = telemetry.logger.clone();
        let dropped = std::sync::Arc::clone(&telemetry.dropped);
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build(settings, logger, dropped)
                .await
                .expect("app builds");
            tx.send((app.port(), app.admin_port())).unwrap();
            app.run(async move {
                let _ = stop.await;
                "test stop"
            })
            .await
            .expect("server runs");
        });
        drop(telemetry);
    });
    let (port, admin_port) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server started");
    TestApp {
        port,
        admin_port,
        database_url,
        dir,
        log_path,
        db_path,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

impl TestApp {
    /// Stops the server through the drain SIGTERM starts (stop accepting, finish in-flight
    /// requests, commit the audit queue) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A child process killed when this value is dropped, also when a test panics (a server left
/// running would hold the test runner's output pipes open).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The model version of the shipped artifact, read once.
pub fn shipped_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let a: serde_json::Value =
            serde_json::from_slice(&std::fs::read(shipped_model()).unwrap()).unwrap();
        a["version"].as_str().unwrap().to_string()
    })
}
