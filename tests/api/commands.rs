//! The commands' output as Unix tools treat it: a reader that goes away (`| head`) ends a
//! command quietly with status 0; output that cannot be written (a full disk) is one error
//! line and status 1, never a panic.

use std::process::Stdio;

use crate::helpers::{shipped_model, spawn_app};
use crate::shutdown::binary;

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_one_error_line() {
    let app = spawn_app();
    for _ in 0..3 {
        app.predict_ok(r#"{"features": [[5.1, 3.5, 1.4, 0.2], [5.8, 2.7, 5.1, 1.9]]}"#);
    }
    app.wait_for_rows(6);
    let db = app.db_path.display().to_string();
    let models = shipped_model().parent().unwrap().to_path_buf();
    let commands: [&[&str]; 5] = [
        &["drift", "--database-url", &db],
        &["audit", "--database-url", &db],
        &["audit", "--database-url", &db, "--format", "csv"],
        &["audit", "--database-url", &db, "--format", "jsonl"],
        &["audit", "--database-url", &db, "--summary"],
    ];
    for args in commands {
        // A pipe whose reading end is closed before the command writes a byte.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = binary()
            .args(args)
            .env("INFERLOG_MODELS", &models)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} into a closed pipe: {stderr}"
        );
        assert_eq!(stderr, "", "{args:?} into a closed pipe");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = binary()
            .args(args)
            .env("INFERLOG_MODELS", &models)
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} into /dev/full: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("No space left on device"),
            "{args:?}: {stderr}"
        );
    }
}
