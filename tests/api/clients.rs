//! Clients of other ecosystems against the real server: Triton's Python client
//! (`tritonclient[http]`) over the Open Inference Protocol.
//!
//! They need a Python with those packages: `INFERLOG_PYTHON`, else the venv `.ci/run` makes
//! (`target/ci-venv`). Without one the tests are skipped with one line on stderr;
//! `INFERLOG_TEST_PYTHON=require` (set by `.ci/run`) turns a missing one into a failure.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::spawn_app;

/// A Python that can import `module`, or `None` (with one line on stderr) when the tests are
/// skipped.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os("INFERLOG_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python")]);
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    let required = std::env::var("INFERLOG_TEST_PYTHON").is_ok_and(|v| v == "require");
    assert!(
        !required,
        "INFERLOG_TEST_PYTHON=require but no Python with {module} (INFERLOG_PYTHON or target/ci-venv)"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "Python client tests SKIPPED: no Python with {module}. `.ci/run` makes one (target/ci-venv); or set INFERLOG_PYTHON."
    );
    None
}

/// Runs a script of `tests/python/` with `args`; its output on failure.
pub(crate) fn run_script(python: &PathBuf, script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(python).arg(path).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

#[test]
fn tritonclient_checks_health_metadata_and_inference() {
    let Some(python) = python_with("tritonclient.http") else {
        return;
    };
    let app = spawn_app();
    let out = run_script(&python, "tritonclient_check.py", &[&app.addr()]);
    assert!(out.contains("all checks passed"), "{out}");
    // The rows of the client's requests are on record under its ids, with the answers it got.
    app.wait_for_rows(8);
    let rows = app.stored_rows("where client_request_id = 'tc-batch' order by item");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["status"] == 200 && r["model"] == "iris")
    );
    let refused = app.stored_rows("where error_code = 'binary_data_unsupported'");
    assert_eq!(
        refused.len(),
        1,
        "the binary request is on record as refused"
    );
}
