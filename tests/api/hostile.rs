//! Hostile and malformed input: a corpus of bad requests, each with the status it must get.
//! Every one is answered with a 4xx — with the JSON error body wherever the application sees
//! the request — none with a 5xx; the server stays healthy; and no log line can be forged.

use crate::helpers::{Response, spawn_app_with};

/// How a case is sent.
enum Req {
    /// POST /predict with this body as application/json.
    Json(Vec<u8>),
    /// A request built from method, path, headers and body (Content-Length added).
    Http(&'static str, String, Vec<(&'static str, String)>, Vec<u8>),
    /// Bytes sent as they are.
    Raw(Vec<u8>),
}

/// Where the answer comes from: the application (JSON error body) or actix's HTTP parser,
/// which refuses malformed requests before any application code runs (bare 400).
#[derive(PartialEq)]
enum Layer {
    App,
    Protocol,
}

struct Case {
    name: &'static str,
    req: Req,
    status: u16,
    layer: Layer,
}

fn json(name: &'static str, body: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name,
        req: Req::Json(body.into()),
        status,
        layer: Layer::App,
    }
}

fn http(
    name: &'static str,
    method: &'static str,
    path: &str,
    headers: &[(&'static str, &str)],
    body: &[u8],
    status: u16,
) -> Case {
    Case {
        name,
        req: Req::Http(
            method,
            path.to_string(),
            headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            body.to_vec(),
        ),
        status,
        layer: Layer::App,
    }
}

fn raw(name: &'static str, bytes: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name,
        req: Req::Raw(bytes.into()),
        status,
        layer: Layer::Protocol,
    }
}

fn nested(open: &str, close: &str, depth: usize) -> Vec<u8> {
    let mut b = b"{\"features\": ".to_vec();
    b.extend(open.repeat(depth).bytes());
    b.extend(close.repeat(depth).bytes());
    b.push(b'}');
    b
}

fn rows(n: usize) -> Vec<u8> {
    let row = "[5.8, 2.7, 5.1, 1.9]";
    format!("{{\"features\": [{}]}}", vec![row; n].join(", ")).into_bytes()
}

const GOOD: &[u8] = br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

/// Every case, in the order they are sent. (The lists below keep one case a line, skipped
/// by rustfmt: a table reads better than a call spread over six lines.)
fn corpus() -> Vec<Case> {
    [
        json_syntax_cases(),
        json_value_cases(),
        http_cases(),
        protocol_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Bodies that are not JSON, and numbers JSON or f64 cannot hold.
#[rustfmt::skip]
fn json_syntax_cases() -> Vec<Case> {
    vec![
        // Broken JSON.
        json("truncated object", &b"{\"features\": [1, 2"[..], 400),
        json("truncated string", &b"{\"features"[..], 400),
        json("lone brace", &b"{"[..], 400),
        json("closing brace", &b"}"[..], 400),
        json("bracket mismatch", &b"{\"features\": ]}"[..], 400),
        json("missing colon", &b"{\"features\" [1, 2, 3, 4]}"[..], 400),
        json("double comma", &b"{\"features\": [1,, 2, 3, 4]}"[..], 400),
        json("trailing comma", &b"{\"features\": [1, 2, 3, 4,]}"[..], 400),
        json("single quotes", &b"{'features': [1, 2, 3, 4]}"[..], 400),
        json("unquoted key", &b"{features: [1, 2, 3, 4]}"[..], 400),
        json("trailing garbage", &b"{\"features\": [5.8, 2.7, 5.1, 1.9]} junk"[..], 400),
        json("two documents", &b"{\"features\": [5.8, 2.7, 5.1, 1.9]}{}"[..], 400),
        json("empty body", &b""[..], 400),
        json("whitespace body", &b"   \n\t "[..], 400),
        json("utf8 bom", &b"\xEF\xBB\xBF{\"features\": [5.8, 2.7, 5.1, 1.9]}"[..], 400),
        json("invalid utf8 in string", &b"{\"features\": [1, 2, 3, 4], \"\xC3\x28\": 1}"[..], 400),
        json("invalid utf8 bytes", &b"\xFF\xFE\xFD"[..], 400),
        json("raw control char in string", &b"{\"x\x01\": 1}"[..], 400),
        json("nested arrays 100k deep", nested("[", "]", 100_000), 400),
        json("nested objects 100k deep", nested("{\"a\":", "}", 100_000), 400),
        json("comment", &b"{\"features\": [1, 2, 3, 4] /* hi */}"[..], 400),
        // Numbers JSON cannot carry, or f64 cannot hold.
        json("NaN token", &b"{\"features\": [NaN, 2.7, 5.1, 1.9]}"[..], 422),
        json("nan token", &b"{\"features\": [nan, 2.7, 5.1, 1.9]}"[..], 422),
        json("Infinity token", &b"{\"features\": [Infinity, 2.7, 5.1, 1.9]}"[..], 422),
        json("-Infinity token", &b"{\"features\": [5.8, -Infinity, 5.1, 1.9]}"[..], 422),
        json("huge exponent", &b"{\"features\": [1e999999, 2.7, 5.1, 1.9]}"[..], 422),
        json("negative overflow", &b"{\"features\": [-1e309, 2.7, 5.1, 1.9]}"[..], 422),
        json("hex number", &b"{\"features\": [0x10, 2.7, 5.1, 1.9]}"[..], 400),
        json("leading zeros", &b"{\"features\": [007, 2.7, 5.1, 1.9]}"[..], 400),
        json("plus sign", &b"{\"features\": [+1, 2.7, 5.1, 1.9]}"[..], 400),
    ]
}

/// JSON of the wrong shape or type, and bodies past the size limits.
#[rustfmt::skip]
fn json_value_cases() -> Vec<Case> {
    let long = "k".repeat(10_000);
    vec![
        // Wrong types at every level.
        json("body null", &b"null"[..], 422),
        json("body array", &b"[5.8, 2.7, 5.1, 1.9]"[..], 422),
        json("body string", &b"\"features\""[..], 422),
        json("body number", &b"42"[..], 422),
        json("body true", &b"true"[..], 422),
        json("features null", &b"{\"features\": null}"[..], 422),
        json("features string", &b"{\"features\": \"5.8,2.7,5.1,1.9\"}"[..], 422),
        json("features number", &b"{\"features\": 5.8}"[..], 422),
        json("features bool", &b"{\"features\": false}"[..], 422),
        json("numbers as strings", &b"{\"features\": [\"5.8\", \"2.7\", \"5.1\", \"1.9\"]}"[..], 422),
        json("null in row", &b"{\"features\": [5.8, null, 5.1, 1.9]}"[..], 422),
        json("bool in row", &b"{\"features\": [5.8, true, 5.1, 1.9]}"[..], 422),
        json("array in row", &b"{\"features\": [5.8, [2.7], 5.1, 1.9]}"[..], 422),
        json("object in row", &b"{\"features\": [5.8, {}, 5.1, 1.9]}"[..], 422),
        json("scalar in batch", &b"{\"features\": [[5.8, 2.7, 5.1, 1.9], 5]}"[..], 422),
        json("string in batch row", &b"{\"features\": [[5.8, 2.7, 5.1, \"x\"]]}"[..], 422),
        json("named value array", &b"{\"features\": {\"sepal_length\": [5.8]}}"[..], 422),
        json("empty features", &b"{\"features\": []}"[..], 422),
        json("empty named", &b"{\"features\": {}}"[..], 422),
        json("empty row", &b"{\"features\": [[]]}"[..], 422),
        json("too few", &b"{\"features\": [5.8]}"[..], 422),
        json("too many", &b"{\"features\": [5.8, 2.7, 5.1, 1.9, 0.0]}"[..], 422),
        json("ragged batch", &b"{\"features\": [[5.8, 2.7, 5.1, 1.9], [1, 2]]}"[..], 422),
        json("duplicate features key", &b"{\"features\": [1, 2, 3, 4], \"features\": [1, 2, 3, 4]}"[..], 422),
        json("duplicate named feature", &b"{\"features\": {\"sepal_length\": 1, \"sepal_length\": 2, \"sepal_width\": 3, \"petal_length\": 4, \"petal_width\": 5}}"[..], 422),
        json("unknown named feature", &b"{\"features\": {\"sepal_length\": 1, \"sepal_width\": 3, \"petal_length\": 4, \"petal_width\": 5, \"x\": 1}}"[..], 422),
        json("unknown top-level field", &b"{\"features\": [5.8, 2.7, 5.1, 1.9], \"model\": \"other\"}"[..], 422),
        json("no features field", &b"{\"feature\": [5.8, 2.7, 5.1, 1.9]}"[..], 422),
        json("10k-char key", format!("{{\"{long}\": 1}}").into_bytes(), 422),
        json("newline and escape in key", &b"{\"features\": {\"a\\nINFO forged\\u001b[31m\": 1}}"[..], 422),
        json("nul in key", &b"{\"features\": {\"\\u0000\": 1}}"[..], 422),
        // Size limits.
        json("batch one over the limit", rows(11), 413),
        json("10 MB body", vec![b' '; 10 * 1024 * 1024], 413),
    ]
}

/// Well-formed HTTP the application refuses: content types, request ids, routes, methods and
/// the parameters of `/audit`, `/monitor` and `/feedback`.
#[rustfmt::skip]
fn http_cases() -> Vec<Case> {
    vec![
        // Content types.
        http("text/plain", "POST", "/predict", &[("Content-Type", "text/plain")], GOOD, 415),
        http("form", "POST", "/predict", &[("Content-Type", "application/x-www-form-urlencoded")], GOOD, 415),
        http("multipart", "POST", "/predict", &[("Content-Type", "multipart/form-data; boundary=x")], GOOD, 415),
        http("xml", "POST", "/predict", &[("Content-Type", "application/xml")], GOOD, 415),
        http("empty content type", "POST", "/predict", &[("Content-Type", "")], GOOD, 415),
        // Hostile request ids, on requests that are bad anyway.
        http("10 KB request id", "POST", "/predict", &[JSON_CT, ("X-Request-Id", &"r".repeat(10_000))], b"{}", 422),
        http("request id with quotes", "POST", "/predict", &[JSON_CT, ("X-Request-Id", "a\" b")], b"{}", 422),
        // Routes and methods.
        http("unknown route", "GET", "/nope", &[], b"", 404),
        http("unknown nested route", "GET", "/predict/extra", &[], b"", 404),
        http("encoded nul in path", "GET", "/%00", &[], b"", 404),
        http("dot segments", "GET", "/../../etc/passwd", &[], b"", 404),
        http("GET /predict", "GET", "/predict", &[], b"", 405),
        http("PUT /predict", "PUT", "/predict", &[JSON_CT], GOOD, 405),
        http("DELETE /predict", "DELETE", "/predict", &[], b"", 405),
        http("PATCH /models", "PATCH", "/models", &[], b"", 405),
        http("POST /health/live", "POST", "/health/live", &[], b"", 405),
        http("unknown model", "POST", "/models/nope/predict", &[JSON_CT], GOOD, 404),
        http("10k-char model name", "POST", &format!("/models/{}/predict", "m".repeat(10_000)), &[JSON_CT], GOOD, 404),
        // /audit parameters.
        http("audit injection in duplicate", "GET", "/audit?model=x%27%20OR%20%271%27%3D%271&model=y", &[], b"", 400),
        http("audit bad limit", "GET", "/audit?limit=-1", &[], b"", 400),
        http("audit huge limit", "GET", "/audit?limit=99999999999999999999", &[], b"", 400),
        http("audit bad time", "GET", "/audit?since=2026-13-45T99:00:00Z", &[], b"", 400),
        http("audit bad percent", "GET", "/audit?since=%ZZ", &[], b"", 400),
        http("audit forged cursor", "GET", "/audit?cursor=..%2F..%2F", &[], b"", 400),
        http("audit order injection", "GET", "/audit?order=asc;drop%20table%20prediction", &[], b"", 400),
        http("audit unknown parameter", "GET", "/audit?where=1", &[], b"", 400),
        http("audit format", "GET", "/audit?format=xlsx", &[], b"", 400),
        http("audit unknown request", "GET", "/audit/%27%20or%201%3D1", &[], b"", 404),
        http("drift bad parameter", "GET", "/monitor/drift?since=yesterday", &[], b"", 400),
        http("feedback not json", "POST", "/feedback", &[JSON_CT], b"label=x", 400),
        http("feedback wrong types", "POST", "/feedback", &[JSON_CT], b"{\"request_id\": 1, \"label\": true}", 422),
    ]
}

/// Malformed HTTP.
#[rustfmt::skip]
fn protocol_cases() -> Vec<Case> {
    vec![
        // Malformed HTTP: refused by actix's parser before the application.
        raw("garbage request line", &b"GARBAGE\r\n\r\n"[..], 400),
        raw("newline in header value", &b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\nINFO forged\r\nContent-Length: 0\r\n\r\n"[..], 400),
        raw("control char in header", &b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\x01b\r\n\r\n"[..], 400),
        raw("content-length and chunked", &b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..], 400),
        raw("bad chunk size", &b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"[..], 400),
        raw("two content lengths", &b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"[..], 400),
        raw("space in header name", &b"GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n"[..], 400),
    ]
}

fn send(app: &crate::helpers::TestApp, case: &Case) -> Response {
    match &case.req {
        // A body refused for its size may be answered before it is all written.
        Req::Json(body) if case.status == 413 => app.request_unread("/predict", &[JSON_CT], body),
        Req::Json(body) => app.request("POST", "/predict", &[JSON_CT], body),
        Req::Http(method, path, headers, body) => {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.request(method, path, &h, body)
        }
        Req::Raw(bytes) => {
            let mut with_close = bytes.clone();
            // Make the server close after answering, so the response can be read to EOF.
            if let Some(pos) = with_close.windows(2).position(|w| w == b"\r\n") {
                with_close.splice(pos + 2..pos + 2, b"Connection: close\r\n".iter().copied());
            }
            app.raw(&with_close)
        }
    }
}

#[test]
fn every_hostile_request_gets_its_4xx_and_the_server_stays_healthy() {
    let app = spawn_app_with(|s| s.http.max_batch = 10);
    let corpus = corpus();
    assert!(corpus.len() >= 60, "the corpus has {} cases", corpus.len());
    let mut failures = Vec::new();
    for case in &corpus {
        let res = send(&app, case);
        if res.status != case.status {
            failures.push(format!(
                "{}: expected {}, got {} {}",
                case.name,
                case.status,
                res.status,
                res.text().chars().take(200).collect::<String>()
            ));
            continue;
        }
        if case.layer == Layer::App {
            // The JSON error body, with the request id of the header.
            let code = res.error_code();
            assert!(!code.is_empty(), "{}", case.name);
        }
        // After each case the server still answers.
        assert_eq!(
            app.get("/health/live").status,
            200,
            "unhealthy after {}",
            case.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // No line of the log was started by client input: every line begins with a timestamp and
    // a level, and the forged text only appears escaped inside a line.
    let res = app.post_predict(std::str::from_utf8(GOOD).unwrap());
    app.wait_for_log_line(&[res.header("x-request-id").unwrap()]);
    let log = app.log_text();
    for line in log.lines() {
        let level = line.get(20..24).unwrap_or("");
        assert!(
            line.len() > 24
                && line.as_bytes()[3] == b' '
                && ["INFO", "WARN", "ERRO", "DEBG", "CRIT", "TRCE"].contains(&level),
            "a log line not written by the logger: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "raw escape character in the log: {line:?}"
        );
    }
    assert!(
        log.contains(r"a\nINFO forged\u{1b}[31m"),
        "escaped key not found in the log"
    );
}
