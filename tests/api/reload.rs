//! SIGHUP reloads the models folder in the real binary, while it serves: new, changed and
//! removed artifacts take effect, a broken artifact keeps the model it held, the default model
//! is never removed, and no request fails or loses its audit rows meanwhile.

use std::collections::HashSet;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{served_request_ids, try_send_raw, wait_for_line};
use crate::shutdown::{kill, serve_binary_in, wait_exit};

fn get(addr: &str, path: &str) -> crate::helpers::Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    try_send_raw(addr, raw.as_bytes()).expect("an answer")
}

fn predict(addr: &str, path: &str, id: &str) -> Option<u16> {
    let body = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    try_send_raw(addr, raw.as_bytes()).map(|r| r.status)
}

/// The shipped artifact with another name and version.
fn variant(models: &Path, name: &str, version: &str) -> String {
    let mut a: Value =
        serde_json::from_slice(&std::fs::read(models.join("iris.json")).unwrap()).unwrap();
    a["name"] = Value::from(name);
    a["version"] = Value::from(version);
    serde_json::to_string_pretty(&a).unwrap()
}

#[test]
fn sighup_reloads_the_models_folder_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_binary_in(dir.path(), "server.log", &["--audit-mode", "async"]);
    let models = dir.path().join("models");
    let original = variant(&models, "iris", "0000000000000000");
    let original_version = get(&addr, "/models/iris").json()["version"].clone();

    // Load on the default model the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Answers = Arc::default();
    let clients = load_the_default_model(&addr, &stop, &answers);
    // Some rows of the original version before it changes.
    wait_served(&answers, 5);

    reload_a_new_and_a_changed_artifact(&child, &addr, dir.path(), &original, &original_version);
    reload_a_broken_artifact(&child, &addr, dir.path());
    reload_without_removed_artifacts(&child, &addr, dir.path());

    wait_served(&answers, 25);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the process"
    );
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());

    let (acked, failed) = std::mem::take(&mut *answers.lock().unwrap());
    assert!(
        failed.is_empty(),
        "requests failed during reloads: {failed:?}"
    );
    assert!(acked.len() > 20, "only {} requests served", acked.len());
    let stored = served_request_ids(&dir.path().join("audit.db"));
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged without rows: {missing:?}");
    // The rows name the version that answered them.
    let versions = crate::helpers::db_json(
        &dir.path().join("audit.db"),
        "select json_object('v', model_version) from prediction where model = 'iris' group by model_version",
    );
    assert_eq!(versions.len(), 2, "{versions:?}");
}

/// What the clients were answered: the ids served 200, and a line for each other answer.
type Answers = Arc<Mutex<(HashSet<String>, Vec<String>)>>;

/// Two clients predicting on the default model, one request after another, until `stop`.
fn load_the_default_model(
    addr: &str,
    stop: &Arc<AtomicBool>,
    answers: &Answers,
) -> Vec<JoinHandle<()>> {
    (0..2)
        .map(|t| {
            let (addr, stop, answers) = (addr.to_string(), Arc::clone(stop), Arc::clone(answers));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("hup-{t}-{i}");
                    let status = predict(&addr, "/predict", &id);
                    let mut a = answers.lock().unwrap();
                    match status {
                        Some(200) => {
                            a.0.insert(id);
                        }
                        other => a.1.push(format!("{id}: {other:?}")),
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

/// Waits until the clients have had `n` answers in all (a loaded machine may take a while).
fn wait_served(answers: &Answers, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while answers.lock().unwrap().0.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} answers"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A new artifact and a changed one (the default model at version `original`), then SIGHUP:
/// both are served.
fn reload_a_new_and_a_changed_artifact(
    child: &Child,
    addr: &str,
    dir: &Path,
    original: &str,
    original_version: &Value,
) {
    let models = dir.join("models");
    std::fs::write(
        models.join("iris2.json"),
        variant(&models, "iris2", "2222222222222222"),
    )
    .unwrap();
    std::fs::write(models.join("iris.json"), original).unwrap();
    kill(child, "-HUP");
    wait_for_line(
        &dir.join("server.log"),
        &["models reloaded", "added: iris2", "changed: iris"],
    );
    assert_eq!(
        get(addr, "/models/iris").json()["version"],
        "0000000000000000"
    );
    assert_ne!(original_version, "0000000000000000");
    assert_eq!(
        predict(addr, "/models/iris2/predict", "to-iris2"),
        Some(200)
    );
}

/// A broken artifact keeps the model it held, and says why.
fn reload_a_broken_artifact(child: &Child, addr: &str, dir: &Path) {
    std::fs::write(
        dir.join("models/iris2.json"),
        b"{\"format_version\": 1, \"name\": ",
    )
    .unwrap();
    kill(child, "-HUP");
    let line = wait_for_line(
        &dir.join("server.log"),
        &["model artifact not reloaded", "model: iris2"],
    );
    assert!(line.contains("not a valid model artifact"), "{line}");
    assert_eq!(
        predict(addr, "/models/iris2/predict", "still-iris2"),
        Some(200)
    );
}

/// A removed artifact is no longer served; the default model never goes.
fn reload_without_removed_artifacts(child: &Child, addr: &str, dir: &Path) {
    let (models, log) = (dir.join("models"), dir.join("server.log"));
    std::fs::remove_file(models.join("iris2.json")).unwrap();
    std::fs::remove_file(models.join("iris.json")).unwrap();
    kill(child, "-HUP");
    wait_for_line(&log, &["models reloaded", "removed: iris2"]);
    wait_for_line(&log, &["stays served", "model: iris"]);
    assert_eq!(get(addr, "/models/iris2").status, 404);
    assert_eq!(get(addr, "/models/iris").status, 200);
}
