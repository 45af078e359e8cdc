//! `inferlog audit prune --before TIME`: old rows and their feedback removed beside a running
//! server, in batches; newer rows, their feedback and the rollups' counts kept.

use serde_json::json;

use crate::helpers::on_both_stores;
use crate::rollups::{inferlog, store_arg};

on_both_stores!(fn prune_removes_old_rows_and_their_feedback_and_keeps_the_rest(app) {
    // Three older requests (four rows), then the cut, then two newer ones.
    let mut old = Vec::new();
    for body in [r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#, r#"{"features": [[6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]}"#, r#"{"features": [1, 2]}"#] {
        old.push(app.post_predict(body).header("x-request-id").unwrap().to_string());
    }
    app.wait_for_rows(4);
    let last_old = app.rows_of(&old[2])[0]["received_at"].as_str().unwrap().to_string();
    let cut = chrono::DateTime::parse_from_rfc3339(&last_old).unwrap().to_utc()
        + chrono::Duration::microseconds(1);
    let cut = cut.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let new: Vec<String> = (0..2)
        .map(|_| app.predict_ok(r#"{"features": [6.3, 3.3, 6.0, 2.5]}"#))
        .collect();
    app.wait_for_rows(6);
    for (id, label) in [(&old[0], "setosa"), (&old[1], "virginica"), (&new[0], "virginica")] {
        let body = json!({"request_id": id, "label": label}).to_string();
        assert_eq!(app.post_json("/feedback", &body).status, 201);
    }
    let summary_before = app.get("/audit/summary").json();

    let db = store_arg(&app);
    let dry = inferlog(&["audit", "prune", "--database-url", &db, "--before", &cut, "--dry-run"]);
    assert!(dry.contains("would remove 4 audit rows") && dry.contains(" and 2 feedback"), "{dry}");
    assert_eq!(app.stored_count(""), 6, "a dry run removes nothing");
    // Batches of one row: the server keeps serving between them.
    let out = inferlog(&["audit", "prune", "--database-url", &db, "--before", &cut, "--batch-rows", "1"]);
    assert!(out.contains("removed 4 audit rows") && out.contains(" and 2 feedback"), "{out}");
    assert_eq!(app.stored_count(""), 2);
    for id in &new {
        assert_eq!(app.rows_of(id).len(), 1, "{id} kept");
    }
    let feedback = app.store_json(
        ["json_object('id', request_id)", "json_build_object('id', request_id)"],
        "feedback",
    );
    assert_eq!(feedback, vec![json!({"id": new[0]})], "only the newer row's feedback is left");
    // The rollups keep every row's counts; the rows read back are the kept ones.
    assert_eq!(app.get("/audit/summary").json()["rows"], summary_before["rows"]);
    let page = app.audit_page("order=asc");
    assert_eq!(page.records.len(), 2, "{:?}", page.records);
    assert_eq!(app.predict_ok(r#"{"features": [5.0, 3.4, 1.5, 0.2]}"#).len(), 36, "still serving");
    let again = inferlog(&["audit", "prune", "--database-url", &db, "--before", &cut]);
    assert!(again.contains("removed 0 audit rows"), "{again}");
});
