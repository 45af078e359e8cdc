//! Random traffic with a fixed seed: older rows for a spill file to replay, live requests
//! over HTTP, and feedback on some of the answered rows.

use std::collections::HashMap;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// xorshift64*: a fixed seed, so a failure can be replayed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(super) fn pick<'a, T>(&mut self, list: &'a [T]) -> &'a T {
        &list[self.below(list.len() as u64) as usize]
    }
}

pub(super) const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// Spill-file lines for `requests` requests spread over the three hours before `now` less
/// five minutes: models (one not served, some none), batches, rejections of several codes,
/// latencies from 0 µs to seconds, outliers.
pub(super) fn older_rows(
    rng: &mut Rng,
    requests: usize,
    now: DateTime<Utc>,
    iris: &str,
) -> Vec<Value> {
    let mut lines = Vec::new();
    for n in 0..requests {
        let at = now - Span::seconds(300 + rng.below(3 * 3600) as i64);
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let model = *rng.pick(&[Some("iris"), Some("iris"), Some("o'th\\er"), None]);
        let rejected = rng.below(4) == 0 || model.is_none();
        let rows = if rejected {
            1
        } else {
            1 + rng.below(4) as usize
        };
        // A request's rows share its latency, as the service writes them.
        let latency = match rng.below(3) {
            0 => rng.below(3) as i64,
            1 => rng.below(5_000) as i64,
            _ => 10i64.pow(3 + rng.below(4) as u32) + rng.below(9_000) as i64,
        };
        for item in 0..rows {
            let (status, code) = if rejected {
                *rng.pick(&[
                    (422, "invalid_feature"),
                    (400, "malformed_json"),
                    (404, "unknown_model"),
                    (422, "wrong_feature_count"),
                ])
            } else {
                (200, "")
            };
            let outliers = match rng.below(6) {
                0 if !rejected => json!(["petal_width"]),
                1 if !rejected => json!(["sepal_length", "petal_width"]),
                _ => Value::Null,
            };
            let class = rng.below(3) as usize;
            lines.push(json!({
                "request_id": format!("older-{n}"),
                "item": item,
                "received_at": at,
                "model": model,
                "model_version": model.map(|m| if m == "iris" { iris } else { "v1" }),
                "features": if rejected {
                    Value::Null
                } else {
                    json!([
                        4.0 + rng.below(40) as f64 / 10.0,
                        2.0 + rng.below(25) as f64 / 10.0,
                        1.0 + rng.below(60) as f64 / 10.0,
                        rng.below(25) as f64 / 10.0
                    ])
                },
                "prediction": if rejected { Value::Null } else { json!(class) },
                "label": if rejected { Value::Null } else { json!(LABELS[class]) },
                "status": status,
                "error_code": if rejected { json!(code) } else { Value::Null },
                "latency_us": latency,
                "client_addr": "10.0.0.1",
                "raw_body": if rejected { json!("{}") } else { Value::Null },
                "outliers": outliers,
                "client_request_id": Value::Null,
            }));
        }
    }
    lines
}

/// Live traffic over HTTP: single rows, batches, outliers and rejections; the rows it leaves.
pub(super) fn live_traffic(app: &TestApp, rng: &mut Rng, requests: usize) -> usize {
    let mut rows = 0;
    for _ in 0..requests {
        let kind = rng.below(6);
        rows += if kind == 2 { 2 } else { 1 };
        let res = match kind {
            0 => app.post_predict(r#"{"features": [5.8, "x", 5.1, 1.9]}"#),
            1 => app.post_predict(r#"{"features": [1, 2]}"#),
            2 => app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 9.5], [6.3, 3.3, 6.0, 2.5]]}"#),
            3 => app.post_json("/models/nope/predict", r#"{"features": [1, 2, 3, 4]}"#),
            _ => app.post_predict(&format!(
                r#"{{"features": [{}.{}, 3.0, {}.1, 1.3]}}"#,
                4 + rng.below(4),
                rng.below(10),
                1 + rng.below(5)
            )),
        };
        assert!(res.status < 500, "{}", res.text());
    }
    rows
}

/// Sends feedback on about a third of the answered rows among `rows` (a sixth of those
/// twice, the second replacing the first); the latest true label of each.
pub(super) fn random_feedback(
    app: &TestApp,
    rng: &mut Rng,
    rows: &[&Value],
) -> HashMap<(String, i64), String> {
    let mut truth = HashMap::new();
    for r in rows.iter().filter(|r| r["status"] == 200) {
        if rng.below(3) != 0 {
            continue;
        }
        let key = (
            r["request_id"].as_str().unwrap().to_string(),
            r["item"].as_i64().unwrap(),
        );
        for _ in 0..(1 + usize::from(rng.below(6) == 0)) {
            let label = *rng.pick(&LABELS);
            let res = app.post_json(
                "/feedback",
                &json!({"request_id": key.0, "item": key.1, "label": label}).to_string(),
            );
            assert_eq!(res.status, 201, "{}", res.text());
            truth.insert(key.clone(), label.to_string());
        }
    }
    assert!(truth.len() > 20, "{} rows labelled", truth.len());
    truth
}
