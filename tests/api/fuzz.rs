//! Fuzzing of request parsing and validation with proptest: arbitrary bytes and arbitrary
//! JSON-like documents never panic, every rejection is a 4xx, whatever is accepted is a
//! well-formed matrix of finite numbers within the batch limit, and a body is accepted exactly
//! when [`reference::accepts`], a naive reading of the rules written here, says it is valid:
//! by the parser, and by the server over HTTP.
//!
//! `cargo test` runs a few hundred cases; `tests/fuzz.sh MINUTES` runs it for a set time with
//! many more (set `PROPTEST_CASES`).

use std::path::Path;

use actix_web::ResponseError;
use inferlog::http::ApiError;
use inferlog::input::parse_predict_body;
use inferlog::model::{Artifact, Model};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::helpers::spawn_app_with;

fn model() -> &'static Model {
    static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
        Model::new(Artifact::load(&path).unwrap(), path)
    })
}

const MAX_BATCH: usize = 8;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
        ..ProptestConfig::default()
    }
}

/// JSON-ish text: valid JSON values of every kind, numbers at the edges of f64, names of the
/// model's features, and tokens JSON does not allow.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("1e309".to_string()),
        Just("-1e309".to_string()),
        Just("NaN".to_string()),
        Just("Infinity".to_string()),
        Just("5.8".to_string()),
        "[a-z_]{0,12}".prop_map(|s| format!("{s:?}")),
        "\\PC{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(6, 64, 10, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..10)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("features".to_string()),
                        Just("sepal_length".to_string()),
                        Just("sepal_width".to_string()),
                        Just("petal_length".to_string()),
                        Just("petal_width".to_string()),
                        "[a-z]{0,5}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|v| format!(
                "{{{}}}",
                v.iter()
                    .map(|(k, x)| format!("{k:?}:{x}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        ]
    })
}

/// A document shaped like a request, mostly: `{"features": ...}` around arbitrary JSON.
fn request_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json_text().prop_map(|f| format!("{{\"features\": {f}}}")),
        1 => json_text(),
    ]
}

/// One cell of a row: mostly a finite number, sometimes a value no row may hold.
fn cell_text() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (-1e4..1e4f64).prop_map(|v| format!("{v:?}")),
        6 => any::<i32>().prop_map(|v| v.to_string()),
        3 => any::<f64>().prop_map(|v| format!("{v:?}")),
        1 => prop_oneof![
            Just("1e309"),
            Just("-1e309"),
            Just("NaN"),
            Just("null"),
            Just("true"),
            Just("\"5.8\""),
            Just("[5.8]"),
            Just("{}"),
        ]
        .prop_map(str::to_string),
    ]
}

/// A feature name as a JSON string; with `escape`, its first letter written as a `\u` escape
/// (the same key to a JSON reader).
fn key_text(name: &str, escape: bool) -> String {
    let quoted = serde_json::to_string(name).unwrap();
    match name.chars().next() {
        Some(c) if escape => format!("\"\\u{:04x}{}", c as u32, &quoted[1 + c.len_utf8()..]),
        _ => quoted,
    }
}

/// A row: a list of cells, mostly as many as the model has features, or an object of named
/// cells whose keys may be shuffled, missing, unknown, or given twice.
fn row_text() -> impl Strategy<Value = String> {
    let names = model().artifact.feature_names.clone();
    let n = names.len();
    let list = prop_oneof![12 => Just(n), 1 => 0..=n + 2]
        .prop_flat_map(|len| proptest::collection::vec(cell_text(), len))
        .prop_map(|cells| format!("[{}]", cells.join(", ")));
    let named = (
        Just(names).prop_shuffle(),
        proptest::collection::vec(cell_text(), n + 1),
        // 4: one left out; 5: an unknown one added; 6: one given twice; 7: one given twice,
        // once escaped; else the names as they are (the first escaped when it comes first).
        0..16u8,
        any::<prop::sample::Index>(),
    )
        .prop_map(|(names, cells, change, at)| {
            let i = at.index(names.len());
            let mut keys: Vec<String> = names.iter().map(|k| key_text(k, false)).collect();
            match change {
                4 => {
                    keys.remove(i);
                }
                5 => keys.insert(i, key_text("petal_size", false)),
                6 => keys.insert(i, key_text(&names[i], false)),
                7 => keys.insert(i, key_text(&names[i], true)),
                _ if i == 0 => keys[0] = key_text(&names[0], true),
                _ => {}
            }
            let entries: Vec<String> = keys
                .iter()
                .zip(&cells)
                .map(|(k, c)| format!("{k}: {c}"))
                .collect();
            format!("{{{}}}", entries.join(", "))
        });
    prop_oneof![list, named]
}

/// Texts built like requests, a third or so of them valid: one row, a batch of up to a little
/// past the limit, or an empty or scalar `features`, inside a body that now and then has
/// another field, `features` twice, or is not an object.
fn near_valid_text() -> impl Strategy<Value = String> {
    let features = prop_oneof![
        3 => row_text(),
        4 => proptest::collection::vec(row_text(), 1..=MAX_BATCH + 2)
            .prop_map(|rows| format!("[{}]", rows.join(", "))),
        1 => prop_oneof![Just("[]"), Just("[[]]"), Just("5.8"), Just("null")]
            .prop_map(str::to_string),
    ];
    (features, 0..16u8, row_text()).prop_map(|(f, shape, other)| match shape {
        0 => format!(r#"{{"features": {f}, "model": "iris"}}"#),
        1 => format!(r#"{{"features": {other}, "features": {f}}}"#),
        2 => format!(r#"{{"feature\u0073": {f}}}"#),
        3 => format!("[{f}]"),
        4 => format!(r#"{{"Features": {f}}}"#),
        _ => format!(r#"{{"features": {f}}}"#),
    })
}

/// The rules of a valid `/predict` body, read naively from `serde_json::Value`: no checks
/// shared with the parser of `src/input`, only the rules it documents.
mod reference {
    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    /// Whether `body` is a valid request for a model of the features `names` with batches of
    /// at most `max_batch` rows: a JSON object whose only key is `features`, holding one row
    /// or a list of 1 to `max_batch` rows (lists and objects mixed as one likes), where a row
    /// is a list of exactly one finite number per feature, in order, or an object with each
    /// feature's name once and a finite number for each. No object anywhere has a key twice
    /// (`serde_json::Value` would keep the last; the service refuses).
    pub fn accepts(body: &[u8], names: &[String], max_batch: usize) -> bool {
        if !matches!(
            serde_json::from_slice::<NoDuplicateKeys>(body),
            Ok(NoDuplicateKeys(true))
        ) {
            return false;
        }
        let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        let (Some(features), 1) = (root.get("features"), root.len()) else {
            return false;
        };
        let finite = |v: &Value| v.as_f64().is_some_and(f64::is_finite);
        let row = |r: &Value| match r {
            Value::Array(cells) => cells.len() == names.len() && cells.iter().all(finite),
            Value::Object(cells) => {
                cells.len() == names.len() && names.iter().all(|n| cells.get(n).is_some_and(finite))
            }
            _ => false,
        };
        match features {
            // A list whose first item is a list or an object is a batch; any other list is
            // one row.
            Value::Array(rows) if rows.first().is_some_and(|r| r.is_array() || r.is_object()) => {
                rows.len() <= max_batch && rows.iter().all(row)
            }
            one => row(one),
        }
    }

    /// A JSON document read only to see whether every object in it has distinct keys
    /// (compared once unescaped, as any JSON reader compares them).
    struct NoDuplicateKeys(bool);

    impl<'de> Deserialize<'de> for NoDuplicateKeys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Distinct)
        }
    }

    struct Distinct;

    impl<'de> Visitor<'de> for Distinct {
        type Value = NoDuplicateKeys;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys(true))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys(true))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys(true))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys(true))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys(true))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys(true))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut distinct = true;
            while let Some(NoDuplicateKeys(d)) = seq.next_element()? {
                distinct &= d;
            }
            Ok(NoDuplicateKeys(distinct))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut keys = HashSet::new();
            let mut distinct = true;
            while let Some((key, NoDuplicateKeys(d))) = map.next_entry::<String, _>()? {
                distinct &= d && keys.insert(key);
            }
            Ok(NoDuplicateKeys(distinct))
        }
    }

    #[test]
    fn the_reference_reads_the_rules() {
        let names: Vec<String> = ["a", "b"].map(String::from).into();
        let accepts = |body: &str| accepts(body.as_bytes(), &names, 2);
        for valid in [
            r#"{"features": [1, 2.5]}"#,
            r#"{"features": {"b": 2, "a": 1}}"#,
            r#"{"features": [[1, 2], {"a": 1, "b": -2e3}]}"#,
            r#"{"feature\u0073": [1, 2]}"#,
        ] {
            assert!(accepts(valid), "{valid}");
        }
        for invalid in [
            r#"{"features": [1, 2], "features": [1, 2]}"#,
            r#"{"features": {"a": 1, "b": 2, "a": 1}}"#,
            r#"{"features": {"a": 1, "\u0061": 1, "b": 2}}"#,
            r#"{"features": [1, 2], "x": 1}"#,
            r#"{"features": [[1, 2], [1, 2], [1, 2]]}"#,
            r#"{"features": [[1, 2], 3]}"#,
            r#"{"features": [1, [2]]}"#,
            r#"{"features": []}"#,
            r#"{"features": [1, 1e309]}"#,
            r#"{"features": [1, NaN]}"#,
            r#"{"features": {"a": 1}}"#,
            r#"{"features": {"a": 1, "c": 2}}"#,
            r#"[{"features": [1, 2]}]"#,
            r#"{"features": [1, 2]} x"#,
        ] {
            assert!(!accepts(invalid), "{invalid}");
        }
    }
}

/// What the parser makes of `body`: an accepted input is well formed and one the model can
/// answer, a refusal is a 4xx with a one-line message, and it accepts exactly the bodies
/// [`reference::accepts`] does.
fn check(body: &[u8], m: &Model) -> Result<(), TestCaseError> {
    let valid = reference::accepts(body, &m.artifact.feature_names, MAX_BATCH);
    match parse_predict_body(body, m, MAX_BATCH) {
        Ok(input) => {
            prop_assert!(
                valid,
                "accepted, but the reference says invalid: {:?}",
                String::from_utf8_lossy(body)
            );
            prop_assert!(input.rows >= 1 && input.rows <= MAX_BATCH);
            prop_assert_eq!(input.values().len(), input.rows * m.n_features());
            prop_assert!(input.values().iter().all(|v| v.is_finite()));
            // An accepted input is also one the model can answer.
            let scores = m.predict(input.matrix()).unwrap();
            prop_assert_eq!(scores.rows(), input.rows);
        }
        Err(e) => {
            prop_assert!(
                !valid,
                "refused ({}), but the reference says valid: {:?}",
                e,
                String::from_utf8_lossy(body)
            );
            let e = ApiError::from(e);
            let status = e.status_code().as_u16();
            prop_assert!(
                [400, 413, 422].contains(&status),
                "status {} for {:?}",
                status,
                String::from_utf8_lossy(body)
            );
            prop_assert!(!e.public_message().is_empty());
            prop_assert!(
                !e.public_message().contains('\n'),
                "unescaped newline in message"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&body, model())?;
    }

    #[test]
    fn fuzz_json_documents_are_accepted_only_when_valid(text in request_text()) {
        check(text.as_bytes(), model())?;
    }

    #[test]
    fn fuzz_near_valid_documents_are_accepted_only_when_valid(text in near_valid_text()) {
        check(text.as_bytes(), model())?;
    }

    #[test]
    fn fuzz_mutated_valid_requests(
        cut in 0usize..60,
        byte in any::<u8>(),
        pos in 0usize..60,
    ) {
        let mut body = br#"{"features": [[5.8, 2.7, 5.1, 1.9], [5.1, 3.5, 1.4, 0.2]]}"#.to_vec();
        let p = pos % body.len();
        body[p] = byte;
        body.truncate(body.len() - cut % body.len());
        check(&body, model())?;
    }
}

/// The same documents sent to a real server: `POST /predict` answers 200 exactly when the
/// reference says the body is valid, and otherwise a 4xx with the JSON error body, never a
/// 5xx.
#[test]
fn fuzz_documents_over_http_are_answered_as_the_reference_says() {
    let app = spawn_app_with(|s| s.http.max_batch = MAX_BATCH);
    let names = &model().artifact.feature_names;
    let texts = prop_oneof![near_valid_text(), request_text()];
    let result = TestRunner::new(config()).run(&texts, |text| {
        let res = app.post_predict(&text);
        if reference::accepts(text.as_bytes(), names, MAX_BATCH) {
            prop_assert_eq!(res.status, 200, "{:?}: {}", text, res.text());
        } else {
            prop_assert!(
                (400..500).contains(&res.status),
                "{} for {:?}: {}",
                res.status,
                text,
                res.text()
            );
            res.error_code();
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
