//! Reading the rows back over `GET /audit`: pages and tails without gaps or repeats, filters,
//! one request, refused parameters, the token, and the time limit of a read of the rows.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, on_both_stores, spawn_app, spawn_app_with};

/// Walks every page both ways, then tails: oldest first, the last page still gives a cursor,
/// and following it later returns exactly the rows written since.
fn pages_without_gaps_or_repeats_and_a_tail(app: TestApp) {
    let sent: Vec<String> = (0..25)
        .map(|_| app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#))
        .collect();
    // Walks until a short page; oldest first, until `expect` rows are seen (on PostgreSQL a
    // row appears to the tail once every older transaction on the server has ended, and other
    // tests share that server), for up to 10 s.
    let walk = |order: &str, mut cursor: Option<String>, expect: usize| {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut query = format!("limit=7&order={order}&status=ok");
            if let Some(c) = &cursor {
                query += &format!("&cursor={c}");
            }
            let page = app.audit_page(&query);
            assert!(page.records.len() <= 7);
            seen.extend(page.request_ids());
            let full = page.records.len() == 7;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => {
                    assert_eq!(order, "desc", "oldest first, every page has a cursor");
                    break;
                }
            }
            if !full && (seen.len() >= expect || std::time::Instant::now() > deadline) {
                break;
            }
            if !full {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        (seen, cursor)
    };
    let (newest_first, _) = walk("desc", None, 0);
    let mut expected = sent.clone();
    expected.reverse();
    assert_eq!(newest_first, expected);
    let (oldest_first, tail) = walk("asc", None, sent.len());
    assert_eq!(oldest_first, sent);
    // Tailing: rows written after the last page come from its cursor, once.
    let later: Vec<String> = (0..3)
        .map(|_| app.predict_ok(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#))
        .collect();
    let (tailed, end) = walk("asc", tail.clone(), later.len());
    assert_eq!(tailed, later);
    let (nothing_new, same) = walk("asc", end.clone(), 0);
    assert!(nothing_new.is_empty());
    assert_eq!(same, end, "an empty tail keeps its place");
}

#[test]
fn audit_lists_newest_first_and_pages_without_gaps_or_repeats() {
    pages_without_gaps_or_repeats_and_a_tail(spawn_app());
}

#[test]
fn audit_pages_and_tails_the_same_on_postgres() {
    let Some(url) = crate::pg::database() else {
        return;
    };
    pages_without_gaps_or_repeats_and_a_tail(spawn_app_with(|s| {
        s.database_url = url.parse().unwrap()
    }));
}

on_both_stores!(fn audit_filters_by_model_label_status_and_time(app) {
    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    app.post_predict(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#); // setosa
    app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#); // virginica
    app.post_predict(r#"{"features": [5.8]}"#); // rejected
    app.wait_for_rows(3);
    let count = |q: &str| app.audit_page(q).records.len();
    assert_eq!(count(""), 3);
    assert_eq!(count("label=setosa"), 1);
    assert_eq!(count("status=ok"), 2);
    assert_eq!(count("status=rejected"), 1);
    assert_eq!(count("model=iris&status=all"), 3);
    assert_eq!(count("model=other"), 0);
    assert_eq!(count(&format!("since={}", before.replace('+', "%2B"))), 3);
    assert_eq!(count(&format!("until={}", before.replace('+', "%2B"))), 0);
    assert_eq!(count("min_latency_us=100000000"), 0);
});

on_both_stores!(fn audit_of_one_request_and_unknown_request(app) {
    let res = app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 0.2], [5.8, 2.7, 5.1, 1.9]]}"#);
    let id = res.header("x-request-id").unwrap();
    let got = app.get(&format!("/audit/{id}"));
    assert_eq!(got.status, 200);
    let body = got.json();
    assert_eq!(body["request_id"], id);
    assert_eq!(body["records"].as_array().unwrap().len(), 2);
    assert_eq!(body["records"][1]["label"], "virginica");
    let missing = app.get("/audit/no-such-request");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "not_found");
});

on_both_stores!(fn audit_rejects_bad_parameters_naming_them(app) {
    for (q, name) in [
        ("since=yesterday", "since"),
        ("limit=5000", "limit"),
        ("status=maybe", "status"),
        ("cursor=zzz", "cursor"),
        ("order=sideways", "order"),
        ("format=xml", "format"),
        ("min_latency_us=abc", "min_latency_us"),
        ("colour=red", "colour"),
        ("model=x%27%20OR%20%271%27%3D%271&model=y", "model"),
    ] {
        let res = app.get(&format!("/audit?{q}"));
        assert_eq!(res.status, 400, "{q}: {}", res.text());
        assert_eq!(res.error_code(), "invalid_parameter");
        assert!(res.text().contains(name), "{q}: {}", res.text());
    }
    // An injection attempt is only a value that matches nothing.
    let res = app.get("/audit?model=x%27%20OR%20%271%27%3D%271");
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["records"], json!([]));
});

on_both_stores!(fn audit_token_is_required_when_set(app) with |s| s.audit.token = Some("s3cret-token".into()), {
    let res = app.get("/audit");
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "unauthorized");
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    let res = app.request("GET", "/audit", &[("Authorization", "Bearer wrong")], b"");
    assert_eq!(res.status, 401);
    let res = app.request(
        "GET",
        "/audit/summary",
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let res = app.request(
        "GET",
        "/audit",
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    );
    assert_eq!(res.status, 200);
    // The token never reaches the log.
    let res = app.request(
        "GET",
        "/audit",
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    );
    app.wait_for_log_line(&[res.header("x-request-id").unwrap()]);
    assert!(!app.log_text().contains("s3cret-token"));
});

/// A summary the rollups cannot answer reads the rows; past `INFERLOG_AUDIT_READ_TIMEOUT_MS`
/// the read is stopped and answered 503 naming `inferlog audit snapshot`, so that no HTTP read
/// holds a snapshot (and the WAL's checkpoints) for long. Predictions go on meanwhile, and a
/// summary the rollups answer is not affected.
#[test]
fn a_read_of_the_rows_past_its_time_limit_is_stopped_with_a_503() {
    let app = spawn_app_with(|s| s.audit.read_timeout = Duration::from_millis(1));
    // 300,000 rows written by another connection, so a scan of them takes far past 1 ms.
    crate::helpers::db_exec(
        &app.db_path,
        "with recursive n(i) as (select 1 union all select i + 1 from n limit 300000) \
         insert into prediction (request_id, item, received_at, status, latency_us) \
         select 'bulk-' || i, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 422, 10 from n",
    );
    let res = app.get("/audit/summary?status=rejected");
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.error_code(), "audit_unavailable");
    let message = res.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("INFERLOG_AUDIT_READ_TIMEOUT_MS")
            && message.contains("inferlog audit snapshot"),
        "{message}"
    );
    // The store is not failing: readiness holds, predictions are served and audited, and the
    // next read on the same pooled connection is not stopped by the old limit.
    assert_eq!(app.get("/health/ready").status, 200);
    let id = app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(app.rows_of(&id).len(), 1);
    let s = app.get("/audit/summary");
    assert_eq!(s.status, 200, "{}", s.text());
    assert_eq!(s.json()["source"], "rollups");
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/audit/{id}")).status, 200);
    }
}
