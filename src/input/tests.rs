use super::*;
use crate::model::Artifact;

#[test]
fn keeps_duplicate_keys() {
    let n: Node = serde_json::from_str(r#"{"a": 1, "a": [true, null, "x"]}"#).unwrap();
    assert_eq!(
        n,
        Node::Obj(vec![
            ("a".into(), Node::Num(1.0)),
            (
                "a".into(),
                Node::Arr(vec![Node::Bool, Node::Null, Node::Str])
            ),
        ])
    );
}

fn iris() -> &'static Model {
    static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
        Model::new(Artifact::load(&path).unwrap(), path)
    })
}

#[test]
fn parses_single_rows_batches_and_named_features() {
    let single = parse_predict_body(br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#, iris(), 10);
    let single = single.unwrap();
    assert_eq!((single.shape, single.rows), (Shape::Single, 1));
    assert_eq!(single.values(), [5.8, 2.7, 5.1, 1.9]);
    let named = br#"{"features": [{"petal_width": 1.9, "petal_length": 5.1, "sepal_width": 2.7, "sepal_length": 5.8}, [1, 2, 3, 4]]}"#;
    let batch = parse_predict_body(named, iris(), 10).unwrap();
    assert_eq!((batch.shape, batch.rows), (Shape::Batch, 2));
    assert_eq!(batch.row(0), [5.8, 2.7, 5.1, 1.9]);
    assert_eq!(batch.row(1), [1.0, 2.0, 3.0, 4.0]);
}

/// What a refused body is: not JSON (400), JSON but invalid (422, with its code), or a
/// batch over the limit (413). The HTTP layer maps these kinds to those statuses.
fn kind_and_code(e: &InputError) -> (u16, &'static str) {
    match e {
        InputError::MalformedJson(_) => (400, "malformed_json"),
        InputError::Invalid { code, .. } => (422, code.as_str()),
        InputError::BatchTooLarge { .. } => (413, "batch_too_large"),
    }
}

/// Parses `body` for the iris model and checks the kind, the code and a message fragment.
fn check(body: &[u8], status: u16, code: &str, message_part: &str) {
    let e = parse_predict_body(body, iris(), 1000).expect_err("the body must be refused");
    assert_eq!(
        kind_and_code(&e),
        (status, code),
        "body {:?}: {e}",
        String::from_utf8_lossy(body)
    );
    let message = e.to_string();
    assert!(
        message.contains(message_part),
        "message {message:?} lacks {message_part:?}"
    );
}

macro_rules! rejects {
    ($($name:ident: $body:expr => $status:expr, $code:expr, $part:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check($body.as_ref(), $status, $code, $part);
            }
        )*
    };
}

rejects! {
    rejects_too_few_features_with_422: br#"{"features": [5.8, 2.7]}"#
        => 422, "wrong_feature_count",
        "expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 2";
    rejects_too_many_features_with_422: br#"{"features": [5.8, 2.7, 1, 2, 3]}"#
        => 422, "wrong_feature_count", "got 5";
    rejects_empty_feature_list_with_422: br#"{"features": []}"#
        => 422, "empty_features", "expected 4 features";
    rejects_empty_row_in_batch_with_422: br#"{"features": [[]]}"#
        => 422, "empty_features", "features[0]";
    rejects_ragged_batch_with_422: br#"{"features": [[5.8, 2.7, 5.1, 1.9], [5.8, 2.7, 5.1]]}"#
        => 422, "ragged_batch", "features[1] has 3 values";
    rejects_string_feature_with_422: br#"{"features": [5.8, "2.7", 5.1, 1.9]}"#
        => 422, "invalid_feature", "features[1] (sepal_width) must be a number, got a string";
    rejects_boolean_feature_with_422: br#"{"features": [true, 2.7, 5.1, 1.9]}"#
        => 422, "invalid_feature", "got a boolean";
    rejects_null_feature_with_422: br#"{"features": [5.8, 2.7, null, 1.9]}"#
        => 422, "invalid_feature", "got null";
    rejects_nested_object_feature_with_422: br#"{"features": [5.8, 2.7, {"a": 1}, 1.9]}"#
        => 422, "invalid_feature", "got an object";
    rejects_null_features_with_422: br#"{"features": null}"#
        => 422, "invalid_features", "is null";
    rejects_number_as_features_with_422: br#"{"features": 5.8}"#
        => 422, "invalid_features", "is a number";
    rejects_nan_token_with_422: br#"{"features": [5.8, NaN, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "NaN or Infinity";
    rejects_infinity_token_with_422: br#"{"features": [5.8, Infinity, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "NaN or Infinity";
    rejects_negative_infinity_token_with_422: br#"{"features": [-Infinity, 2.7, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "NaN or Infinity";
    rejects_number_overflowing_f64_with_422: br#"{"features": [5.8, 1e400, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "too large";
    rejects_negative_overflow_with_422: br#"{"features": [5.8, -1e309, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "too large";
    rejects_unknown_named_feature_with_422:
        br#"{"features": {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9, "colour": 1}}"#
        => 422, "unknown_feature", "unknown feature \"colour\"";
    rejects_missing_named_feature_with_422:
        br#"{"features": {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1}}"#
        => 422, "missing_feature", "lacks petal_width";
    rejects_duplicate_named_feature_with_422:
        br#"{"features": {"sepal_length": 5.8, "sepal_length": 2.7, "petal_length": 5.1, "petal_width": 1.9}}"#
        => 422, "duplicate_feature", "sepal_length twice";
    rejects_duplicate_features_field_with_422:
        br#"{"features": [5.8, 2.7, 5.1, 1.9], "features": [1, 2, 3, 4]}"#
        => 422, "invalid_body", "appears twice";
    rejects_unknown_top_level_field_with_422: br#"{"features": [5.8, 2.7, 5.1, 1.9], "feature": 1}"#
        => 422, "invalid_body", "unknown field \"feature\"";
    rejects_missing_features_field_with_422: br#"{}"#
        => 422, "missing_features", "no \"features\" field";
    rejects_array_body_with_422: br#"[5.8, 2.7, 5.1, 1.9]"#
        => 422, "invalid_body", "must be a JSON object";
    rejects_malformed_json_with_400: br#"{"features": [5.8, 2.7,, 5.1]}"#
        => 400, "malformed_json", "not valid JSON";
    rejects_truncated_json_with_400: br#"{"features": [5.8, 2.7, 5.1"#
        => 400, "malformed_json", "not valid JSON";
    rejects_trailing_garbage_with_400: br#"{"features": [5.8, 2.7, 5.1, 1.9]} xyz"#
        => 400, "malformed_json", "not valid JSON";
    rejects_empty_body_with_400: b"" => 400, "malformed_json", "empty";
    rejects_invalid_utf8_with_400: b"{\"features\": [5.8, 2.7, 5.1, 1.9], \"\xff\xfe\": 1}"
        => 400, "malformed_json", "not valid JSON";
    rejects_deep_nesting_with_400: {
        let mut b = b"{\"features\": ".to_vec();
        b.extend(std::iter::repeat_n(b'[', 100_000));
        b.extend(std::iter::repeat_n(b']', 100_000));
        b.push(b'}');
        b
    } => 400, "malformed_json", "recursion limit";
}

#[test]
fn a_batch_over_the_limit_is_refused_before_its_rows_are_read() {
    let rows = ["[1, 2, 3, 4]"; 6].join(",");
    let e = parse_predict_body(format!(r#"{{"features": [{rows}]}}"#).as_bytes(), iris(), 5)
        .unwrap_err();
    assert_eq!(e, InputError::BatchTooLarge { max: 5 });
    assert!(e.to_string().contains("more than 5 rows"));
}

#[test]
fn parsing_stops_at_the_first_row_over_the_limit() {
    // Six rows, then a body that is not JSON at all: the limit is found before the tail
    // is read (a body parsed completely would be a 400 for the tail instead).
    let rows = ["[1, 2, 3, 4]"; 6].join(",");
    let body = format!(r#"{{"features": [{rows}, [1, 2, oops"#);
    let e = parse_predict_body(body.as_bytes(), iris(), 5).unwrap_err();
    assert_eq!(e, InputError::BatchTooLarge { max: 5 });
    // A long list of numbers is one row, not a batch: its length is checked as a row.
    let long = vec!["1"; 20].join(",");
    let e = parse_predict_body(format!(r#"{{"features": [{long}]}}"#).as_bytes(), iris(), 5)
        .unwrap_err();
    assert_eq!(kind_and_code(&e), (422, "wrong_feature_count"));
    assert!(e.to_string().contains("got 20"), "{e}");
}

#[test]
fn a_huge_row_is_refused_once_past_its_bound_before_the_rest_is_read() {
    // 500,000 numbers, then a tail that is not JSON: refused as too long a row, not as
    // bad JSON, so the parse stopped before the tail. Flat, as a row of a batch, and as
    // an object row.
    let numbers = vec!["1.5"; 500_000].join(",");
    let bodies = [
        (format!(r#"{{"features": [{numbers}, oops"#), "features: "),
        (
            format!(r#"{{"features": [[1, 2, 3, 4], [{numbers}, oops"#),
            "features[1]: ",
        ),
    ];
    for (body, at) in &bodies {
        let e = parse_predict_body(body.as_bytes(), iris(), 100).unwrap_err();
        assert_eq!(kind_and_code(&e), (422, "wrong_feature_count"), "{e}");
        assert!(
            e.to_string().starts_with(at) && e.to_string().contains("got more than 24"),
            "{e}"
        );
    }
    let keys: Vec<String> = (0..1000).map(|i| format!(r#""k{i}": 1"#)).collect();
    let body = format!(r#"{{"features": {{{}, oops"#, keys.join(","));
    let e = parse_predict_body(body.as_bytes(), iris(), 100).unwrap_err();
    assert_eq!(kind_and_code(&e), (422, "wrong_feature_count"), "{e}");
}
