//! Fuzzing of request parsing and validation with proptest: arbitrary bytes and arbitrary
//! JSON-like documents never panic, every rejection is a 4xx, and whatever is accepted is a
//! well-formed matrix of finite numbers within the batch limit.
//!
//! `cargo test` runs a few hundred cases; `tests/fuzz.sh MINUTES` runs it for a set time with
//! many more (set `PROPTEST_CASES`).

use std::path::Path;

use actix_web::ResponseError;
use inferlog::http::ApiError;
use inferlog::input::parse_predict_body;
use inferlog::model::{Artifact, Model};
use proptest::prelude::*;

fn model() -> &'static Model {
    static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
        Model::new(Artifact::load(&path).unwrap(), path)
    })
}

const MAX_BATCH: usize = 8;

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

fn check(body: &[u8], m: &Model) -> Result<(), TestCaseError> {
    match parse_predict_body(body, m, MAX_BATCH) {
        Ok(input) => {
            prop_assert!(input.rows >= 1 && input.rows <= MAX_BATCH);
            prop_assert_eq!(input.values().len(), input.rows * m.n_features());
            prop_assert!(input.values().iter().all(|v| v.is_finite()));
            // An accepted input is also one the model can answer.
            let classes = m.predict(input.matrix()).unwrap();
            prop_assert_eq!(classes.len(), input.rows);
        }
        Err(e) => {
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
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fuzz_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&body, model())?;
    }

    #[test]
    fn fuzz_json_documents_are_accepted_only_when_valid(text in request_text()) {
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
