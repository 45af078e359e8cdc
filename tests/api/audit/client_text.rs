//! Text a client controls, stored and echoed: NUL characters that neither block the store nor
//! fail reads, and huge model names and request ids cut in the answer, the row and the log.

use crate::helpers::{on_both_stores, spawn_app};

// A NUL character cannot be stored in PostgreSQL's text: one in a rejected body once made
// every later commit fail (the whole batch refused, at every retry), so no durable prediction
// could be answered again.
on_both_stores!(fn nul_characters_from_clients_neither_block_the_store_nor_fail_reads(app) {
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/json")],
        b"{\"features\": [1,\x00 2]}",
    );
    assert_eq!(res.status, 400, "{}", res.text());
    let body_id = res.header("x-request-id").unwrap().to_string();
    // A model name with a control character is refused, naming the parameter; its refusal is
    // audited with the name escaped.
    let res = app.post_json("/models/a%00b/predict", r#"{"features": [1, 2, 3, 4]}"#);
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.error_code(), "invalid_parameter");
    assert!(res.text().contains("control character"), "{}", res.text());
    let name_id = res.header("x-request-id").unwrap().to_string();
    let res = app.request("POST", "/v2/models/a%01b/infer", &[], br#"{"inputs": []}"#);
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.json()["error"].as_str().unwrap().contains("control character"), "{}", res.text());
    // Durable predictions are still answered, with their rows.
    for _ in 0..3 {
        let id = app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
        assert_eq!(app.rows_of(&id).len(), 1);
    }
    app.wait_for_rows(6);
    assert_eq!(app.rows_of(&name_id)[0]["model"], "a\\u{0}b");
    let raw = app.rows_of(&body_id)[0]["raw_body"].as_str().unwrap().to_string();
    let kept = if app.database_url.starts_with("postgres") { '\u{FFFD}' } else { '\0' };
    assert_eq!(raw, format!("{{\"features\": [1,{kept} 2]}}"));
    // Reads naming a NUL: nothing matches, or the parameter is refused; never a 5xx.
    let res = app.get("/audit/a%00b");
    assert_eq!(res.status, 404, "{}", res.text());
    let res = app.get("/audit?model=a%00b");
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("model"), "{}", res.text());
    let res = app.post_json(
        "/feedback",
        r#"{"request_id": "a\u0000b", "item": 0, "label": "setosa"}"#,
    );
    assert_eq!(res.status, 404, "{}", res.text());
});

on_both_stores!(fn a_huge_unknown_model_name_is_cut_in_the_answer_the_audit_row_and_the_log(app) {
    let name = "m".repeat(60_000);
    let res = app.post_json(&format!("/models/{name}/predict"), "{}");
    assert_eq!(
        res.status,
        404,
        "{}",
        &res.text()[..200.min(res.text().len())]
    );
    assert_eq!(res.error_code(), "unknown_model");
    assert!(res.body.len() < 1000, "answer of {} bytes", res.body.len());
    let id = res.header("x-request-id").unwrap().to_string();
    app.wait_for_rows(1);
    let model = app.rows_of(&id)[0]["model"].as_str().unwrap().to_string();
    assert!(
        model.len() <= 256 + '…'.len_utf8(),
        "stored {} bytes",
        model.len()
    );
    assert!(model.starts_with("mmm") && model.ends_with('…'));
    let line = app.wait_for_log_line(&[&id, "request rejected"]);
    assert!(line.len() < 2000, "log line of {} bytes", line.len());
});

/// A client's id echoed in a 404 (`/audit/{id}`, `/feedback`) is cut and escaped in the answer
/// and in the log line, as a model name is: a 60 KB id cannot bloat either.
#[test]
fn a_huge_unknown_request_id_is_cut_in_the_answer_and_the_log() {
    let app = spawn_app();
    let id = |n: usize| format!("{}\u{1b}[2J", "r".repeat(n));
    let path = format!(
        "/audit/{}",
        id(60_000).replace('\u{1b}', "%1B").replace('[', "%5B")
    );
    // Within the feedback body's limit of 16 KB.
    let fb = serde_json::json!({"request_id": id(15_000), "item": 0, "label": "setosa"});
    let fb = fb.to_string();
    for res in [app.get(&path), app.post_json("/feedback", &fb)] {
        assert_eq!(
            res.status,
            404,
            "{}",
            &res.text()[..200.min(res.text().len())]
        );
        assert_eq!(res.error_code(), "not_found");
        assert!(res.body.len() < 1000, "answer of {} bytes", res.body.len());
        let message = res.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("rrrr") && message.contains('…'),
            "{message}"
        );
        let server_id = res.header("x-request-id").unwrap().to_string();
        let line = app.wait_for_log_line(&[&server_id, "no "]);
        assert!(line.len() < 2000, "log line of {} bytes", line.len());
        assert!(!line.contains('\u{1b}'), "{line}");
    }
}
