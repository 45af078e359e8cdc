//! Every bad input gets a 4xx with the JSON error body naming what was wrong — never a 5xx,
//! never a 200.

use std::time::Duration;

use crate::helpers::{spawn_app, spawn_app_with};

// The parser's own cases (wrong counts, types, names, NaN, bad JSON…) are unit tests of
// `inferlog::input`; the HTTP layer's mapping of them to 400/413/422 is a unit test of
// `inferlog::http::error`. These two run the whole path once for each status class.

/// Posts `body` as JSON to `/predict` and checks status, error code and a message fragment.
fn check(body: &[u8], status: u16, code: &str, message_part: &str) {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.error_code(), code, "{}", res.text());
    let message = res.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(message_part),
        "message {message:?} lacks {message_part:?}"
    );
    // The server is still fine afterwards.
    assert_eq!(app.get("/health/live").status, 200);
}

#[test]
fn rejects_too_few_features_with_422_over_http() {
    check(
        br#"{"features": [5.8, 2.7]}"#,
        422,
        "wrong_feature_count",
        "expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 2",
    );
}

#[test]
fn rejects_malformed_json_with_400_over_http() {
    check(
        br#"{"features": [5.8, 2.7,, 5.1]}"#,
        400,
        "malformed_json",
        "not valid JSON",
    );
}

#[test]
fn newline_in_unknown_feature_name_is_escaped_in_message_and_log() {
    let app = spawn_app();
    let res = app.post_predict(
        "{\"features\": {\"x\\nINFO forged line\": 1, \"sepal_length\": 5.8, \"sepal_width\": 2.7, \"petal_length\": 5.1, \"petal_width\": 1.9}}",
    );
    assert_eq!(res.status, 422);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id, "unknown_feature"]);
    assert!(line.contains(r"x\nINFO forged line"), "{line}");
    assert!(
        !app.log_text().lines().any(|l| l.starts_with("INFO forged")),
        "a forged line reached the log"
    );
}

#[test]
fn rejects_text_plain_with_415() {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "text/plain")],
        br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 415);
    assert_eq!(res.error_code(), "unsupported_media_type");
}

#[test]
fn rejects_form_encoding_with_415() {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"features=1",
    );
    assert_eq!(res.status, 415);
    assert!(res.text().contains("application/json"));
}

#[test]
fn rejects_body_over_limit_with_413() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 1024);
    let rows: Vec<[f64; 4]> = (0..100).map(|_| [5.8, 2.7, 5.1, 1.9]).collect();
    let body = serde_json::json!({ "features": rows }).to_string();
    assert!(body.len() > 1024);
    let res = app.post_predict(&body);
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.error_code(), "body_too_large");
    assert!(res.text().contains("1024 bytes"));
}

#[test]
fn rejects_chunked_body_over_limit_with_413() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 1024);
    let mut raw = format!(
        "POST /predict HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr()
    )
    .into_bytes();
    for _ in 0..4 {
        raw.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, " ".repeat(600)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let res = app.raw(&raw);
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.error_code(), "body_too_large");
}

#[test]
fn rejects_batch_over_maximum_with_413() {
    let app = spawn_app_with(|s| s.http.max_batch = 5);
    let ok: Vec<[f64; 4]> = (0..5).map(|_| [5.8, 2.7, 5.1, 1.9]).collect();
    assert_eq!(
        app.post_predict(&serde_json::json!({ "features": ok }).to_string())
            .status,
        200
    );
    let over: Vec<[f64; 4]> = (0..6).map(|_| [5.8, 2.7, 5.1, 1.9]).collect();
    let res = app.post_predict(&serde_json::json!({ "features": over }).to_string());
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.error_code(), "batch_too_large");
    assert!(res.text().contains("more than 5 rows"));
}

#[test]
fn wrong_method_is_405_with_json_body() {
    let app = spawn_app();
    let res = app.get("/predict");
    assert_eq!(res.status, 405);
    assert_eq!(res.error_code(), "method_not_allowed");
    assert_eq!(res.header("allow"), Some("POST"));
    let res = app.request("POST", "/health/live", &[], b"");
    assert_eq!(res.status, 405);
    assert_eq!(res.header("allow"), Some("GET, HEAD"));
    // Counted under the route whose path it was, not as unmatched.
    let metrics = app.get("/metrics").text();
    assert!(
        metrics.contains(r#"route="/predict",method="GET",status="405"} 1"#),
        "{metrics}"
    );
}

#[test]
fn unknown_route_is_404_with_json_body() {
    let app = spawn_app();
    let res = app.get("/no/such/route");
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "not_found");
}

#[test]
fn a_body_trickling_in_gets_408_without_holding_up_others() {
    use std::io::Write;
    let app = spawn_app_with(|s| s.http.body_timeout = Duration::from_millis(3000));
    let mut slow = std::net::TcpStream::connect(app.addr()).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        slow,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 35\r\nConnection: close\r\n\r\n{{\"fea"
    )
    .unwrap();
    // Others are served meanwhile, by the same single worker: long before the slow request's
    // deadline, not after it.
    let started = std::time::Instant::now();
    assert_eq!(
        app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#)
            .status,
        200
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let res = crate::helpers::read_response(&mut slow);
    assert_eq!(res.status, 408, "{}", res.text());
    assert_eq!(res.error_code(), "body_timeout");
    app.wait_for_rows(2);
    let row = app.db_json(
        "select json_object('s', status, 'c', error_code) from prediction where status <> 200",
    );
    assert_eq!(row[0]["s"], 408);
    assert_eq!(row[0]["c"], "body_timeout");
}

#[test]
fn the_body_budget_counts_bytes_held_not_bytes_announced() {
    use std::io::{Read, Write};
    let app = spawn_app_with(|s| {
        s.http.body_budget_bytes = 64 * 1024;
        // Every client here has one address: the whole budget is theirs.
        s.http.body_budget_per_client_bytes = Some(64 * 1024);
        s.http.body_timeout = Duration::from_secs(5);
    });
    // Three clients announce 1 MiB bodies and trickle: they hold what they sent (a first
    // buffer of 16 KiB each), not what they promised.
    let mut slow: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(app.addr()).unwrap();
            write!(
                s,
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n{{\"features\": ["
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(res.status, 200, "{}", res.text());
    for s in &mut slow {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let pending =
            matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(
            pending,
            "a trickling client was answered (refused?) at once"
        );
    }
    // A body that really passes the budget is refused.
    let row = "[5.8, 2.7, 5.1, 1.9]";
    let big = format!(r#"{{"features": [{}]}}"#, vec![row; 4000].join(","));
    for _ in 0..3 {
        let res = app.post_predict(&big);
        assert_eq!(res.status, 503, "{}", res.text());
        assert_eq!(res.error_code(), "overloaded");
    }
    // Load shedding is a warning, logged once per interval however often clients cause it.
    app.wait_for_log_line(&["request refused: the server holds its budget"]);
    let log = app.log_text();
    assert_eq!(
        log.matches("request refused: the server holds its budget")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains(" ERRO "), "{log}");
}

#[test]
fn bodies_being_read_share_a_budget_and_past_it_get_503() {
    use std::io::Write;
    let app = spawn_app_with(|s| {
        s.http.body_budget_bytes = 3000;
        s.http.body_budget_per_client_bytes = Some(3000);
        s.http.body_timeout = Duration::from_secs(5);
    });
    // Two clients declare 1,500-byte bodies and send only their start: they hold the budget.
    let mut slow: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(app.addr()).unwrap();
            write!(
                s,
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1500\r\nConnection: close\r\n\r\n{{\"fea"
            )
            .unwrap();
            s
        })
        .collect();
    // Their headers are read before the next request: wait until both show as in progress.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
        if res.status == 503 {
            break res;
        }
        assert_eq!(res.status, 200, "{}", res.text());
        assert!(
            std::time::Instant::now() < deadline,
            "the budget was never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused.error_code(), "overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.text().contains("3000 bytes"), "{}", refused.text());
    // Once they are gone, the budget is back.
    for s in &mut slow {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    drop(slow);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
        if res.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the budget never came back: {}",
            res.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A connection to `addr` from the loopback address `from` (127.0.0.x: another client, as the
/// server sees it).
fn connect_from(from: &str, addr: &str) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr.parse().unwrap()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// One client address floods the server with unfinished chunked bodies: it gets 503
/// `overloaded` for its own share once it holds a quarter of the budget, and every other
/// client is served meanwhile.
#[test]
fn one_client_cannot_take_the_body_budget_from_the_others() {
    use std::io::{Read, Write};
    let app = spawn_app_with(|s| {
        s.http.body_budget_bytes = 1 << 20;
        s.http.body_timeout = Duration::from_secs(10);
    });
    let addr = app.addr();
    let chunk = format!("[{}],", vec!["5.8, 2.7, 5.1, 1.9"; 800].join("], ["));
    // 120 bodies of 16 KiB and more each, never finished: far past the budget's 1 MiB.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..120 {
        let mut s = connect_from("127.0.0.2", &addr);
        write!(
            s,
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{{\"features\": [{chunk}\r\n",
            chunk.len() + 14
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // An answer now is a refusal (the server closes after it); none is a body held.
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        if answer.is_empty() {
            flood.push(s);
        } else {
            let text = String::from_utf8_lossy(&answer).to_string();
            assert!(text.starts_with("HTTP/1.1 503"), "{text}");
            assert!(text.contains("this client address"), "{text}");
            refused += 1;
        }
    }
    assert!(refused > 0, "the flooding client was never refused");
    assert!(!flood.is_empty(), "the flooding client held nothing");
    // Every other client is served while the flood holds its share.
    for i in 0..20 {
        let mut s = connect_from("127.0.0.1", &addr);
        let body = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
        write!(
            s,
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "probe {i}: {answer}");
    }
    eprintln!(
        "one client's flood: {} bodies held, {refused} refused for its share, 20 of 20 other requests served",
        flood.len()
    );
}
