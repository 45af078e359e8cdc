//! `POST /predict` (the default model) and `POST /models/{name}/predict`.
//!
//! The body is read under the size limit, parsed and validated once into a [`PredictInput`],
//! the model answers, and the same values feed the audit rows, the response and the request's
//! log line. In durable audit mode the answer waits for the rows' commit; a request that cannot
//! be audited is answered 503 and its prediction is not served. Rejected requests are audited
//! too (status, error code, client address and the start of the body).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use serde::Serialize;
use slog::warn;

use crate::audit::{AuditRecord, cut_body};
use crate::error::ApiError;
use crate::input::{PredictInput, parse_predict_body};
use crate::metrics::{FeatureLabels, PredictionLabels};
use crate::middleware::{PredictionLog, RequestId, RequestStart};
use crate::model::Model;
use crate::startup::AppState;

/// Batches with more rows than this are predicted on the blocking pool, so a large batch does
/// not stall the other requests of its worker.
const INLINE_ROWS: usize = 64;

pub async fn predict_default(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: RequestId,
    start: RequestStart,
) -> Result<HttpResponse, ApiError> {
    let model = Arc::clone(state.models.default_model());
    let name = model.shared.name.clone();
    audited(
        &req,
        &state,
        &id,
        start,
        name,
        serve(&req, body, &state, &id, start, Ok(model)),
    )
    .await
}

pub async fn predict_named(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: RequestId,
    start: RequestStart,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let model = state
        .models
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(name.to_string()));
    let name: Arc<str> = crate::error::escape_controls(&name).into();
    audited(
        &req,
        &state,
        &id,
        start,
        name,
        serve(&req, body, &state, &id, start, model),
    )
    .await
}

/// A failed attempt, with whatever of the body was read (for the audit row).
struct Failure {
    error: ApiError,
    body: Option<web::BytesMut>,
}

/// Runs `attempt`; a rejection is queued for the audit trail before it is answered.
async fn audited(
    req: &HttpRequest,
    state: &AppState,
    id: &RequestId,
    start: RequestStart,
    model_name: Arc<str>,
    attempt: impl Future<Output = Result<HttpResponse, Failure>>,
) -> Result<HttpResponse, ApiError> {
    let Failure { error, body } = match attempt.await {
        Ok(res) => return Ok(res),
        Err(f) => f,
    };
    // An audit failure cannot itself be audited.
    if matches!(error, ApiError::Unavailable { .. }) {
        return Err(error);
    }
    let version = state
        .models
        .get(&model_name)
        .map(|m| m.shared.version.clone());
    let record = AuditRecord {
        request_id: id.0.clone(),
        item: 0,
        received_at: start.received_at,
        model: Some(model_name),
        model_version: version,
        features: None,
        prediction: None,
        label: None,
        status: error.status_code().as_u16(),
        error_code: Some(error.code().into()),
        latency_us: start.instant.elapsed().as_micros() as u64,
        client_addr: client_addr(req),
        raw_body: body.map(|b| cut_body(&b)),
        outliers: None,
    };
    if let Err(e) = state.audit.submit_rejected(record).await {
        warn!(state.logger, "audit row of a rejected request not queued";
            "error" => %e, "request_id" => %id);
    }
    Err(error)
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    prediction: &'a [u32],
    labels: Vec<&'a str>,
    model: &'a str,
    model_version: &'a str,
    request_id: &'a str,
    /// Rows with features outside the training range or spread (empty when none).
    outliers: Vec<OutlierEntry<'a>>,
}

#[derive(Serialize)]
struct OutlierEntry<'a> {
    item: usize,
    features: Vec<&'a str>,
}

async fn serve(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    id: &RequestId,
    start: RequestStart,
    model: Result<Arc<Model>, ApiError>,
) -> Result<HttpResponse, Failure> {
    let fail = |error| Failure { error, body: None };
    let model = model.map_err(fail)?;
    check_content_type(req).map_err(fail)?;
    let body = read_body(req, payload, state.max_body_bytes, state.body_timeout)
        .await
        .map_err(fail)?;
    let input = match parse_predict_body(&body, &model, state.max_batch) {
        Ok(input) => Arc::new(input),
        Err(error) => {
            return Err(Failure {
                error,
                body: Some(body),
            });
        }
    };
    drop(body);

    let classes: Arc<[u32]> = predict(&model, &input).await.map_err(fail)?.into();
    let stats = &model.artifact.baseline.features;
    let outliers: Vec<(usize, Vec<usize>)> = (0..input.rows)
        .filter_map(|i| {
            let flagged = state.outlier_rule.flag_row(stats, input.row(i));
            (!flagged.is_empty()).then_some((i, flagged))
        })
        .collect();
    let records = audit_records(req, id, start, &model, &input, &classes, &outliers);
    state.audit.submit(records).await.map_err(|e| {
        fail(ApiError::Unavailable {
            code: "audit_unavailable",
            message: format!("the prediction was not served because it could not be audited: {e}"),
        })
    })?;
    count(state, &model, &input, &classes, &outliers);

    let names = &model.artifact.feature_names;
    let mut res = HttpResponse::Ok().json(PredictResponse {
        prediction: &classes,
        labels: classes.iter().map(|&c| model.label(c)).collect(),
        model: model.name(),
        model_version: &model.artifact.version,
        request_id: id.as_str(),
        outliers: outliers
            .iter()
            .map(|(item, fs)| OutlierEntry {
                item: *item,
                features: fs.iter().map(|&j| names[j].as_str()).collect(),
            })
            .collect(),
    });
    res.extensions_mut().insert(PredictionLog {
        model,
        input,
        classes,
        outliers,
    });
    Ok(res)
}

async fn predict(model: &Arc<Model>, input: &Arc<PredictInput>) -> Result<Vec<u32>, ApiError> {
    if input.rows <= INLINE_ROWS {
        return model
            .predict(input.rows, &input.values)
            .map_err(|e| ApiError::Internal(e.into()));
    }
    let (m, i) = (Arc::clone(model), Arc::clone(input));
    web::block(move || m.predict(i.rows, &i.values))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("prediction task failed: {e}")))?
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Metrics and the drift window, for rows that were answered.
fn count(
    state: &AppState,
    model: &Model,
    input: &PredictInput,
    classes: &[u32],
    outliers: &[(usize, Vec<usize>)],
) {
    state.drift_windows.record(model, &input.values, classes);
    let mut per_class = vec![0u64; model.shared.labels.len()];
    for &c in classes {
        per_class[c as usize] += 1;
    }
    for (c, &n) in per_class.iter().enumerate().filter(|(_, n)| **n > 0) {
        state
            .metrics
            .predictions
            .get_or_create(&PredictionLabels {
                model: model.shared.name.clone(),
                label: model.shared.labels[c].clone(),
            })
            .inc_by(n);
    }
    for (_, features) in outliers {
        for &j in features {
            state
                .metrics
                .outliers
                .get_or_create(&FeatureLabels {
                    model: model.shared.name.clone(),
                    feature: model.artifact.feature_names[j].as_str().into(),
                })
                .inc();
        }
    }
}

/// One row per input row, built from the values that are returned and logged.
fn audit_records(
    req: &HttpRequest,
    id: &RequestId,
    start: RequestStart,
    model: &Model,
    input: &PredictInput,
    classes: &[u32],
    outliers: &[(usize, Vec<usize>)],
) -> Vec<AuditRecord> {
    let latency_us = start.instant.elapsed().as_micros() as u64;
    let client = client_addr(req);
    let names = &model.artifact.feature_names;
    let mut flagged = outliers.iter().peekable();
    classes
        .iter()
        .enumerate()
        .map(|(i, &class)| AuditRecord {
            request_id: id.0.clone(),
            item: i as u32,
            received_at: start.received_at,
            model: Some(model.shared.name.clone()),
            model_version: Some(model.shared.version.clone()),
            // Serialising a slice of finite f64 cannot fail.
            features: Some(serde_json::to_string(input.row(i)).unwrap_or_default()),
            prediction: Some(class),
            label: Some(model.shared.labels[class as usize].clone()),
            status: 200,
            error_code: None,
            latency_us,
            client_addr: client.clone(),
            raw_body: None,
            outliers: flagged.next_if(|(row, _)| *row == i).map(|(_, fs)| {
                let list: Vec<&str> = fs.iter().map(|&j| names[j].as_str()).collect();
                serde_json::to_string(&list).unwrap_or_default()
            }),
        })
        .collect()
}

fn client_addr(req: &HttpRequest) -> Option<Arc<str>> {
    req.peer_addr().map(|a| a.ip().to_string().into())
}

/// JSON is expected. A request without a Content-Type is read as JSON too (the tutorial's
/// clients and plain `curl --data` users get an answer, not a 415); any other type is a 415.
pub(crate) fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = value.to_str().unwrap_or("").trim();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "Content-Type must be application/json, got {}",
        crate::error::escape_controls(&format!("{ct:?}"))
    )))
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    // A client that trickles its body (a byte a second) gets a 408 instead of holding the
    // request, its connection and the shutdown drain for as long as it likes.
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(256).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::MalformedJson(format!("could not read the request body: {e}"))
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    actix_web::rt::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout { after: timeout })?
}
