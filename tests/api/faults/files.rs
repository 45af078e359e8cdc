//! The database file under a running server: made read-only with its folder, or replaced by a
//! backup moved over it. No acknowledged row is lost, and none of the old file's log is mixed
//! in.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{ONE_ROW, batch, post, wrapped_binary};
use crate::helpers::{db_exec, db_json, served_request_ids, spawn_app};
use crate::shutdown::{binary, kill, serve_in, wait_exit};

/// The binary, run so that file permissions bind it: as root it would write through them, so
/// it runs without the capabilities that override them (`setpriv`, util-linux).
fn binary_bound_by_permissions() -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return binary();
    }
    wrapped_binary(
        "setpriv",
        &["--bounding-set=-dac_override,-dac_read_search,-fowner"],
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn read_only_database_loses_no_acknowledged_row_and_refuses_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("audit.db");
    let url = "sqlite://data/audit.db";
    let (mut child, addr) = serve_in(binary_bound_by_permissions(), dir.path(), "a.log", url, &[]);

    let mut acked = Vec::new();
    let load = |acked: &mut Vec<String>| {
        for _ in 0..20 {
            let res = post(&addr, ONE_ROW).expect("an answer");
            match res.status {
                200 => acked.push(res.header("x-request-id").unwrap().to_string()),
                503 => assert_eq!(res.error_code(), "audit_unavailable"),
                other => panic!("unexpected {other}: {}", res.text()),
            }
        }
    };
    load(&mut acked);
    assert_eq!(acked.len(), 20);

    // The file and its folder become read-only while serving. SQLite keeps the file open, and
    // permissions are checked when a file is opened, so the open connection goes on writing:
    // what it acknowledges must still be in the file.
    chmod(&db, 0o444);
    chmod(&data, 0o555);
    load(&mut acked);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());

    // A fresh start on the read-only file fails at once, naming it (SQLite would otherwise open
    // it read-only without a word and fail every commit).
    let out = binary_bound_by_permissions()
        .current_dir(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--models", "models"])
        .args(["--database-url", url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on a read-only database");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("audit.db") && stderr.contains("not writable"),
        "{stderr}"
    );

    // Writable again: it starts, and every acknowledged row is there.
    chmod(&data, 0o755);
    chmod(&db, 0o644);
    let (mut child, addr) = serve_in(binary_bound_by_permissions(), dir.path(), "b.log", url, &[]);
    assert_eq!(post(&addr, ONE_ROW).unwrap().status, 200);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    let stored = served_request_ids(&db);
    for id in &acked {
        assert!(stored.contains(id), "acknowledged {id} has no row");
    }
    eprintln!("read-only: {} acknowledged, all stored", acked.len());
}

#[test]
fn a_backup_moved_over_the_live_file_is_served_intact() {
    let app = spawn_app();
    let mut before_backup = Vec::new();
    for _ in 0..20 {
        let res = app.post_predict(ONE_ROW);
        assert_eq!(res.status, 200);
        before_backup.push(res.header("x-request-id").unwrap().to_string());
    }
    // A consistent copy, taken while the server runs.
    let backup = app.dir.path().join("backup.db");
    db_exec(&app.db_path, &format!("vacuum into '{}'", backup.display()));
    let mut after_backup = Vec::new();
    for _ in 0..20 {
        let res = app.post_predict(&batch(3));
        assert_eq!(res.status, 200);
        after_backup.push(res.header("x-request-id").unwrap().to_string());
    }

    // The operator restores the backup by moving it over the live file. The live file's
    // write-ahead log and shared-memory files stay where they were: replayed into the backup
    // they would mix the two databases' pages.
    std::fs::rename(&backup, &app.db_path).unwrap();
    assert!(db_path_sidecar_exists(&app.db_path, "-wal"));
    let mut after_restore = Vec::new();
    for _ in 0..20 {
        let res = app.post_predict(ONE_ROW);
        match res.status {
            200 => after_restore.push(res.header("x-request-id").unwrap().to_string()),
            503 => assert_eq!(res.error_code(), "audit_unavailable"),
            other => panic!("unexpected {other}: {}", res.text()),
        }
    }
    assert!(
        after_restore.len() >= 18,
        "{} of 20 served",
        after_restore.len()
    );

    let mut app = app;
    app.stop();
    let check = db_json(
        &app.db_path,
        "select json_object('ok', integrity_check) from pragma_integrity_check",
    );
    assert_eq!(check[0]["ok"], "ok", "{check:?}");
    let stored = served_request_ids(&app.db_path);
    for id in before_backup.iter().chain(&after_restore) {
        assert!(stored.contains(id), "{id} is not in the restored database");
    }
    for id in &after_backup {
        assert!(
            !stored.contains(id),
            "{id} came from the replaced file's log"
        );
    }
}

fn db_path_sidecar_exists(db: &Path, suffix: &str) -> bool {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    Path::new(&name).exists()
}
