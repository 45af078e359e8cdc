use super::request::VALUES_LEFT;
use super::*;

fn iris() -> Model {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
    Model::new(crate::model::Artifact::load(&path).unwrap(), path)
}

fn parse(body: &str) -> Result<InferRequest, InputError> {
    parse_infer(body.as_bytes(), &iris(), 100)
}

fn code(r: Result<InferRequest, InputError>) -> String {
    match r.unwrap_err() {
        InputError::Invalid { code, .. } => code.as_str().to_string(),
        InputError::MalformedJson(_) => "malformed_json".into(),
        InputError::BatchTooLarge { .. } => "batch_too_large".into(),
    }
}

#[test]
fn one_matrix_tensor_flat_or_nested_gives_the_same_rows() {
    let flat = parse(
        r#"{"id": "a", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
            "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}"#,
    )
    .unwrap();
    let nested = parse(
        r#"{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
            "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}"#,
    )
    .unwrap();
    assert_eq!(flat.input, nested.input);
    assert_eq!(flat.input.rows, 2);
    assert_eq!(flat.id.as_deref(), Some("a"));
    assert_eq!(flat.outputs, Output::ALL.to_vec());
    assert_eq!(flat.input.row(1), &[6.7, 3.0, 5.2, 2.3]);
}

#[test]
fn one_tensor_per_feature_in_any_order() {
    let r = parse(
        r#"{"inputs": [
            {"name": "petal_width", "shape": [2], "datatype": "FP64", "data": [0.2, 2.3]},
            {"name": "sepal_length", "shape": [2], "datatype": "FP64", "data": [5.1, 6.7]},
            {"name": "petal_length", "shape": [2, 1], "datatype": "FP64", "data": [[1.4], [5.2]]},
            {"name": "sepal_width", "shape": [2], "datatype": "FP64", "data": [3.5, 3.0]}],
            "outputs": [{"name": "label", "parameters": {"binary_data": true}}]}"#,
    )
    .unwrap();
    assert_eq!(r.input.row(0), &[5.1, 3.5, 1.4, 0.2]);
    assert_eq!(r.input.row(1), &[6.7, 3.0, 5.2, 2.3]);
    assert_eq!(r.outputs, vec![Output::Label]);
}

#[test]
fn integer_and_half_precision_tensors_hold_the_same_rows() {
    let rows = |dtype: &str, data: &str| {
        parse(&format!(
            r#"{{"inputs": [{{"name": "x", "shape": [2, 4], "datatype": "{dtype}", "data": {data}}}]}}"#
        ))
        .unwrap_or_else(|e| panic!("{dtype}: {e}"))
        .input
    };
    let ints = "[[5, 3, 1, 0], [6, 3, 5, 2]]";
    let want = rows("FP64", ints);
    for dtype in ["INT32", "INT64", "UINT8", "FP16", "FP32"] {
        assert_eq!(rows(dtype, ints), want, "{dtype}");
    }
}

#[test]
fn data_past_what_the_model_could_take_is_refused_before_the_rest_is_read() {
    // 500,000 numbers and a tail that is not JSON: refused for the values, not the tail.
    let numbers = vec!["1.5"; 500_000].join(",");
    let body = format!(
        r#"{{"inputs": [{{"name": "x", "shape": [125000, 4], "datatype": "FP64", "data": [{numbers}, oops"#
    );
    let e = parse(&body).unwrap_err();
    assert_eq!(code(Err(e.clone())), "invalid_tensor");
    assert!(e.to_string().contains("more than 400 values"), "{e}");
    // The bound is the thread's only while parsing: the next request is not affected.
    let ok = parse(
        r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}"#,
    );
    assert!(ok.is_ok());
    assert!(VALUES_LEFT.with(|v| v.get()).is_none());
}

#[test]
fn a_wrong_shape_is_named_with_the_one_expected() {
    let e = parse(
        r#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("shape [1, 3]") && e.contains("[N, 4]"), "{e}");
}

#[test]
fn bad_requests_get_their_codes() {
    let t = |shape: &str, dtype: &str, data: &str| {
        format!(
            r#"{{"inputs": [{{"name": "x", "shape": {shape}, "datatype": "{dtype}", "data": {data}}}]}}"#
        )
    };
    assert_eq!(code(parse("{")), "malformed_json");
    assert_eq!(code(parse(r#"{"inputs": 3}"#)), "invalid_body");
    assert_eq!(code(parse(r#"{"inputs": []}"#)), "missing_features");
    assert_eq!(
        code(parse(&t("[1, 4]", "BOOL", "[true, false, true, true]"))),
        "unsupported_datatype"
    );
    assert_eq!(
        code(parse(&t("[1, 4]", "INT32", "[1, 2.5, 3, 4]"))),
        "invalid_feature"
    );
    assert_eq!(
        code(parse(&t("[1, 3]", "FP32", "[1, 2, 3]"))),
        "invalid_tensor"
    );
    assert_eq!(
        code(parse(&t("[1, 4]", "FP32", "[1, 2, 3]"))),
        "wrong_feature_count"
    );
    assert_eq!(
        code(parse(&t("[1, 4]", "FP32", "[1, 2, 3, 4, 5]"))),
        "wrong_feature_count"
    );
    assert_eq!(
        code(parse(&t("[1, 4]", "FP32", r#"[1, "2", 3, 4]"#))),
        "invalid_feature"
    );
    assert_eq!(code(parse(&t("[0, 4]", "FP32", "[]"))), "empty_features");
    assert_eq!(code(parse(&t("[101, 4]", "FP32", "[]"))), "batch_too_large");
    assert_eq!(
        code(parse(
            r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                "parameters": {"binary_data_size": 16}}]}"#
        )),
        "binary_data_unsupported"
    );
    assert_eq!(
        code(parse(&format!(
            r#"{{"outputs": [{{"name": "proba"}}], {}"#,
            &t("[1, 4]", "FP32", "[1, 2, 3, 4]")[1..]
        ))),
        "unknown_output"
    );
    assert_eq!(
        code(parse(
            r#"{"id": 7, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}"#
        )),
        "invalid_body"
    );
}
