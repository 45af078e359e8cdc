//! The log: one readable line per request carrying its id, inputs and answer; nothing a client
//! sends can forge a line.

use inferlog::cli::LogFormat;

use std::time::Duration;

use crate::helpers::{StoreLock, send_raw, spawn_app, spawn_app_with, wait_for_line};
use crate::shutdown::{binary, kill, serve_in, wait_exit};

#[test]
fn served_request_leaves_one_line_with_id_features_and_prediction() {
    let app = spawn_app();
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(res.status, 200);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id]);
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("prediction served"), "{line}");
    assert!(line.contains("features: [5.8,2.7,5.1,1.9]"), "{line}");
    assert!(line.contains("prediction: [2]"), "{line}");
    assert!(line.contains(r#"labels: ["virginica"]"#), "{line}");
    assert!(line.contains("model: iris"), "{line}");
    assert!(line.contains("latency_us: "), "{line}");
    let lines_with_id = app.log_text().lines().filter(|l| l.contains(&id)).count();
    assert_eq!(lines_with_id, 1, "one line per request");
}

#[test]
fn rejected_request_is_logged_at_warn_with_reason() {
    let app = spawn_app();
    let res = app.post_predict(r#"{"features": [5.8, 2.7]}"#);
    assert_eq!(res.status, 422);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id]);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("request rejected"), "{line}");
    assert!(line.contains("code: wrong_feature_count"), "{line}");
    assert!(line.contains("got 2"), "{line}");
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let app = spawn_app_with(|s| s.log.format = LogFormat::Json);
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id]);
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["msg"], "prediction served");
    assert_eq!(v["request_id"], id);
    // Data values are JSON data, not text: arrays of numbers and strings.
    assert_eq!(v["features"], serde_json::json!([5.8, 2.7, 5.1, 1.9]));
    assert_eq!(v["prediction"], serde_json::json!([2]));
    assert_eq!(v["labels"], serde_json::json!(["virginica"]));
    assert_eq!(v["level"], "INFO");
    // A batch is an array of rows; a path is a plain string, without term-style quotes.
    let res = app.post_predict(r#"{"features": [[5.8, 2.7, 5.1, 1.9], [5.1, 3.5, 1.4, 0.2]]}"#);
    let id = res.header("x-request-id").unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&app.wait_for_log_line(&[&id])).unwrap();
    assert_eq!(
        v["features"],
        serde_json::json!([[5.8, 2.7, 5.1, 1.9], [5.1, 3.5, 1.4, 0.2]])
    );
    assert_eq!(v["labels"], serde_json::json!(["virginica", "setosa"]));
    let res = app.get("/models");
    let id = res.header("x-request-id").unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&app.wait_for_log_line(&[&id])).unwrap();
    assert_eq!(v["path"], "/models");
}

#[test]
fn header_with_newline_cannot_forge_a_log_line() {
    let app = spawn_app();
    for sep in ["\n", "\r", "\r\n "] {
        let raw = format!(
            "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc{sep}INFO forged line, request_id: evil\r\nContent-Type: application/json\r\nContent-Length: 35\r\nConnection: close\r\n\r\n{{\"features\": [5.8, 2.7, 5.1, 1.9]}}"
        );
        let res = app.raw(raw.as_bytes());
        assert!(
            res.status == 200 || res.status == 400,
            "{sep:?}: {}",
            res.status
        );
        if let Some(id) = res.header("x-request-id") {
            assert!(!id.contains("forged"), "{sep:?}: id {id:?} echoed");
        }
    }
    // Make sure everything so far is flushed before reading the log.
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    app.wait_for_log_line(&[res.header("x-request-id").unwrap()]);
    for line in app.log_text().lines() {
        assert!(
            !line.starts_with("INFO forged") && !line.contains("request_id: evil"),
            "forged log line: {line}"
        );
    }
}

#[test]
fn malformed_http_is_a_warning_not_an_error() {
    // actix reports parse errors through the `log` crate, which only the binary bridges.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_in(binary(), dir.path(), "server.log", "sqlite://audit.db", &[]);
    for _ in 0..5 {
        let res = send_raw(
            &addr,
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        );
        assert_eq!(res.status, 400);
    }
    let log = dir.path().join("server.log");
    let line = wait_for_line(&log, &["request parse error"]);
    assert!(line.contains(" WARN "), "{line}");
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.lines().any(|l| l.contains(" ERRO ")), "{text}");
}

#[test]
fn a_failing_store_logs_its_error_once_per_interval_not_per_request() {
    let app = spawn_app_with(|s| s.audit.busy_timeout = Duration::from_millis(20));
    let lock = StoreLock::take(&app.db_path);
    let refused: Vec<String> = (0..20)
        .map(|_| {
            let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
            assert_eq!(res.status, 503, "{}", res.text());
            res.header("x-request-id").unwrap().to_string()
        })
        .collect();
    lock.release();
    // Every refused request still has its line; the first carries the ERROR and the cause.
    for id in &refused {
        app.wait_for_log_line(&[id, "request failed"]);
    }
    let text = app.log_text();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(" ERRO ")).collect();
    let request_errors = errors
        .iter()
        .filter(|l| l.contains("request failed"))
        .count();
    let commit_errors = errors
        .iter()
        .filter(|l| l.contains("audit commit failed"))
        .count();
    assert_eq!(request_errors, 1, "{text}");
    assert_eq!(commit_errors, 1, "{text}");
    assert!(app.wait_for_log_line(&[&refused[0]]).contains("cause"));
}

/// The README's logrotate stanza, run by `logrotate -f`: the service reopens its log file on
/// the SIGHUP of `postrotate`, so the lines before the rotation are in the renamed file, the
/// ones after in a new file under the old name, and none is lost.
#[test]
fn the_readmes_logrotate_stanza_rotates_the_log_file() {
    let Some(logrotate) = crate::helpers::tool("logrotate") else {
        return;
    };
    let stanza = readme_logrotate_stanza();
    assert!(stanza.contains("pkill -HUP -x inferlog"), "{stanza}");

    let dir = tempfile::tempdir().unwrap();
    // A process name of its own (a link to the binary), so the stanza's pkill signals this
    // server only, not others the tests run at the same time.
    let name = format!("inflr{}", std::process::id() % 1_000_000);
    let link = dir.path().join(&name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_inferlog"), &link).unwrap();
    let (mut child, addr) = serve_in(
        crate::shutdown::binary_at(&link),
        dir.path(),
        "inferlog.log",
        "sqlite://audit.db",
        &[],
    );
    let log = dir.path().join("inferlog.log");
    predict_as(&addr, "before-rotation");
    wait_for_line(&log, &["prediction served", "before-rotation"]);

    let config = dir.path().join("logrotate.conf");
    let stanza = stanza
        .replace("/var/log/inferlog/inferlog.log", &log.display().to_string())
        .replace("pkill -HUP -x inferlog", &format!("pkill -HUP -x {name}"));
    std::fs::write(&config, stanza).unwrap();
    let out = std::process::Command::new(logrotate)
        .arg("-f")
        .arg("-s")
        .arg(dir.path().join("logrotate.state"))
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "logrotate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = dir.path().join("inferlog.log.1");
    // The new file appears when the service has reopened it.
    wait_for_line(&log, &["log file reopened"]);
    predict_as(&addr, "after-rotation");
    wait_for_line(&log, &["prediction served", "after-rotation"]);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());

    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(
        old.contains("before-rotation") && !old.contains("after-rotation"),
        "{old}"
    );
    assert!(
        new.contains("after-rotation") && !new.contains("before-rotation"),
        "{new}"
    );
    assert!(
        new.contains("shutdown complete"),
        "the last lines go to the new file: {new}"
    );
}

/// The logrotate stanza of the README, between its marker and the end of its code block.
fn readme_logrotate_stanza() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .split("<!-- logrotate stanza: run by tests/api/logging.rs -->\n```\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README has the logrotate stanza")
        .to_string()
}

/// A prediction sent as request `id`, which must be answered 200.
fn predict_as(addr: &str, id: &str) {
    let body = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
    let res = send_raw(
        addr,
        format!(
            "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(res.status, 200, "{}", res.text());
}

/// A start with the defaults (loopback address, no token, this machine's open-file limit)
/// says nothing to be warned about: a WARN at every start teaches operators to ignore them.
#[test]
fn a_default_start_prints_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _addr) = serve_in(binary(), dir.path(), "server.log", "sqlite://audit.db", &[]);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("audit store open"), "{log}");
    // A machine whose hard open-file limit leaves fewer than 1,024 connections per worker (2
    // here) is worth that one warning.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let low_limit = (lim.rlim_max.saturating_sub(64) / 4) < 1024;
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERRO ") || l.contains(" CRIT "))
        .filter(|l| !(low_limit && l.contains("connection cap lowered")))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
