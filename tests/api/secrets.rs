//! No password of a database URL is ever shown: not in the log (either format), not on stderr,
//! not in an error body, not in what the commands print — at start-up, while serving, when the
//! store fails, and in `audit copy`, `audit replay` and the other commands.

use std::path::Path;
use std::process::Command;

use crate::helpers::{Response, send_raw};
use crate::pg::database_name;
use crate::shutdown::{binary, kill, serve_in, wait_exit};

/// The password, in the URL's user part and as a `password=` parameter (the throwaway server
/// trusts local connections, so it is accepted whatever it is).
const SECRET: &str = "pw-Zq81xK";

fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{SECRET}@"), 1) + &format!("&password={SECRET}")
}

fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the password shows in {what}:\n{text}"
    );
}

/// Runs a command; everything it printed (stdout and stderr), and its exit status.
fn run(cmd: &mut Command) -> (String, Option<i32>) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.code())
}

/// Requests that succeed and requests that fail in every way a client can make them fail.
fn requests(addr: &str) -> Vec<Response> {
    let post = |path: &str, ct: &str, body: &str| {
        send_raw(
            addr,
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let get = |path: &str| {
        send_raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let json = "application/json";
    vec![
        post("/predict", json, r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#),
        post("/predict", json, r#"{"features": [5.8, 2.7"#),
        post("/predict", json, r#"{"features": [1, 2]}"#),
        post("/predict", "text/plain", "x"),
        post(
            "/models/nope/predict",
            json,
            r#"{"features": [1, 2, 3, 4]}"#,
        ),
        post(
            "/feedback",
            json,
            r#"{"request_id": "none", "label": "setosa"}"#,
        ),
        post("/v2/models/iris/infer", json, "{}"),
        get("/audit?limit=5"),
        get("/audit?since=yesterday"),
        get("/audit/summary"),
        get("/monitor/drift"),
        get("/no/such/route"),
        get("/v2/models/iris/config"),
        get("/health/ready"),
    ]
}

#[test]
fn the_database_password_is_never_shown() {
    let Some(server) = crate::pg::shared() else {
        return;
    };
    for format in ["term", "json"] {
        let url = with_password(&server.fresh_database());
        let dir = tempfile::tempdir().unwrap();
        let stderr_file = dir.path().join("stderr.txt");
        let mut cmd = binary();
        cmd.stderr(std::fs::File::create(&stderr_file).unwrap());
        let extra = [
            "--log-format",
            format,
            "--log-level",
            "debug",
            "--shutdown-timeout",
            "2",
        ];
        let (mut child, addr) = serve_in(cmd, dir.path(), "server.log", &url, &extra);
        let mut bodies: Vec<String> = requests(&addr).iter().map(Response::text).collect();

        // The commands, on the same store while it serves.
        let mut printed = commands_that_succeed(&url, dir.path());
        printed.extend(commands_that_fail(&url, dir.path()));

        // A fault while serving: the database is dropped under the server.
        if format == "term" {
            server.psql(
                "postgres",
                &format!("drop database {} with (force)", database_name(&url)),
            );
            for _ in 0..3 {
                let res = requests(&addr).remove(0);
                assert_eq!(res.status, 503, "{}", res.text());
                bodies.push(res.text());
            }
        }
        kill(&child, "-TERM");
        wait_exit(&mut child);

        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
        let stderr = std::fs::read_to_string(&stderr_file).unwrap();
        assert!(log.contains("audit store open"), "{log}");
        assert!(log.contains(":***@"), "the URL is logged, redacted: {log}");
        assert_hidden(&format!("the {format} log"), &log);
        assert_hidden("the server's stderr", &stderr);
        for body in &bodies {
            assert_hidden("an HTTP answer", body);
        }
        for text in &printed {
            assert_hidden("a command's output", text);
        }
        if format == "term" {
            assert!(log.contains(" ERRO "), "the fault was logged: {log}");
        }
    }
}

/// Every command that takes a database URL, run on `url` while the server serves it (what
/// they write goes into `dir`); each must succeed. What each printed.
fn commands_that_succeed(url: &str, dir: &Path) -> Vec<String> {
    let sqlite_copy = dir.join("copy.db");
    let spill = dir.join("moved-spill.jsonl");
    std::fs::write(&spill, "").unwrap();
    let models = dir.join("models");
    let mut printed = Vec::new();
    for args in [
        vec!["audit", "--database-url", url],
        vec!["audit", "--database-url", url, "--format", "jsonl"],
        vec!["audit", "--database-url", url, "--summary"],
        vec![
            "audit",
            "copy",
            "--from",
            url,
            "--to",
            sqlite_copy.to_str().unwrap(),
        ],
        vec![
            "audit",
            "copy",
            "--from",
            sqlite_copy.to_str().unwrap(),
            "--to",
            url,
        ],
        vec![
            "audit",
            "replay",
            spill.to_str().unwrap(),
            "--database-url",
            url,
        ],
        vec!["audit", "rebuild-rollups", "--database-url", url],
        vec!["drift", "--database-url", url],
    ] {
        let (text, status) = run(binary().args(&args).env("INFERLOG_MODELS", &models));
        assert_eq!(status, Some(0), "{args:?}: {text}");
        printed.push(text);
    }
    printed
}

/// Failures: the commands and `serve` on a server that is not there and on a URL that does
/// not parse, both made from `url`; each must fail. What each printed.
fn commands_that_fail(url: &str, dir: &Path) -> Vec<String> {
    let models = dir.join("models");
    let mut printed = Vec::new();
    let gone = url.replace("?host=", "?host=/nonexistent");
    let bad_port = url.replace("@localhost/", "@localhost:99999999/");
    for bad in [&gone, &bad_port] {
        for args in [
            vec!["audit", "--database-url", bad.as_str()],
            vec!["drift", "--database-url", bad.as_str()],
            vec!["audit", "copy", "--from", bad.as_str(), "--to", url],
            vec!["audit", "copy", "--from", url, "--to", bad.as_str()],
        ] {
            let (text, status) = run(binary().args(&args).env("INFERLOG_MODELS", &models));
            assert_eq!(status, Some(1), "{args:?}: {text}");
            assert!(text.starts_with("error: "), "{args:?}: {text}");
            printed.push(text);
        }
        let (text, status) = run(binary()
            .current_dir(dir)
            .args(["serve", "--bind", "127.0.0.1:0", "--database-url", bad])
            .env("INFERLOG_MODELS", &models));
        assert_eq!(status, Some(1), "serve on {bad}: {text}");
        printed.push(text);
    }
    printed
}

/// The cause of a failed connection is the one PostgreSQL's client saw, not the pool's
/// timeout.
#[test]
fn an_unreachable_server_is_reported_by_its_real_cause() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://inferlog:{SECRET}@127.0.0.1:{port}/audit");
    let (text, status) = run(binary().args(["audit", "--database-url", &url]));
    assert_eq!(status, Some(1), "{text}");
    assert!(
        text.contains("connection refused") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!text.contains("timed out"), "{text}");
    assert_hidden("the error", &text);
}
