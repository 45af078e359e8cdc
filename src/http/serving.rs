//! Serving a prediction, whatever protocol the request speaks (`/predict`'s JSON, the Open
//! Inference Protocol): the body is read ([`crate::http::body`]), parsed and validated by the
//! protocol into a [`PredictInput`], the model answers and a [`Prediction`] is made
//! ([`crate::prediction`]), its audit rows are handed to the writer ([`crate::audit::AuditSink`]),
//! the metrics and drift window see it, and the protocol builds the response from the same
//! `Prediction`; the middleware writes the log line from it ([`crate::http::middleware`]).
//!
//! In durable audit mode the answer waits for the rows' commit; a request that cannot be
//! audited is answered 503 and its prediction is not served. Rejected requests are audited
//! too (status, error code, client address and the start of the body).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use slog::warn;

use crate::audit::AuditRecord;
use crate::http::body::{check_content_type, read_body};
use crate::http::error::ApiError;
use crate::http::request::{RequestId, RequestMeta};
use crate::http::state::AppState;
use crate::input::{InputError, PredictInput};
use crate::model::{Answers, Model};
use crate::prediction::{Answer, Prediction};

/// Batches with more rows than this are predicted on the blocking pool, so a large batch does
/// not stall the other requests of its worker.
const INLINE_ROWS: usize = 64;

/// How one protocol reads a request and writes its answer.
pub trait Protocol {
    /// What the protocol keeps from the request for its answer.
    type Parsed;

    /// Checks made before the body is read.
    fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        check_content_type(req)
    }

    /// Parses and validates a body for `model`.
    fn parse(
        &self,
        body: &[u8],
        model: &Model,
        max_batch: usize,
    ) -> Result<(PredictInput, Self::Parsed), InputError>;

    /// The client's id of the request carried in the body, if the protocol has one (it
    /// takes the place of an `X-Request-Id` header).
    fn client_id(&self, _parsed: &Self::Parsed) -> Option<RequestId> {
        None
    }

    /// The answer.
    fn respond(
        &self,
        prediction: &Prediction,
        meta: &RequestMeta,
        parsed: Self::Parsed,
    ) -> HttpResponse;
}

/// A failed attempt, with whatever of the body was read (for the audit row).
struct Failure {
    error: ApiError,
    body: Option<web::BytesMut>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure { error, body: None }
    }
}

/// Serves the request. This is the one place a request's audit rows are handed to the
/// writer, whatever the outcome: an answer's rows (in durable mode the answer waits for their
/// commit, and is a 503 without it), or a rejection's one row (queued before the rejection is
/// answered, never waited for). `model_name` is the name the client asked for (escaped and
/// cut), for a rejection's row.
pub async fn audited<P: Protocol>(
    protocol: &P,
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: &RequestMeta,
    model_name: Arc<str>,
    model: Result<Arc<Model>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let served = serve(protocol, req, payload, state, meta, model).await;
    // After the body was read: a protocol's own client id (OIP's `id`) is known by then.
    let origin = meta.origin(&state.instance);
    let Failure { error, body } = match served {
        Ok((prediction, parsed)) => {
            let latency_us = state
                .audit
                .submit(prediction.audit_records(&origin), meta.clock)
                .await
                .map_err(ApiError::NotAudited)?;
            meta.answered(latency_us);
            return Ok(answer(protocol, state, meta, prediction, parsed));
        }
        Err(f) => f,
    };
    let version = state
        .models
        .current()
        .get(&model_name)
        .map(|m| Arc::clone(&m.shared.version));
    let record = AuditRecord::rejected(
        &origin,
        Some(model_name),
        version,
        error.status_code().as_u16(),
        error.code().into(),
        body.as_deref(),
    );
    match state.audit.submit_rejected(record, meta.clock).await {
        Ok(latency_us) => meta.answered(latency_us),
        Err(e) => warn!(state.logger, "audit row of a rejected request not queued";
            "error" => %e, "request_id" => %meta.id),
    }
    Err(error)
}

/// An audited prediction's answer: the metrics and the drift window see it, the protocol
/// answers, and the middleware finds it for the log line.
fn answer<P: Protocol>(
    protocol: &P,
    state: &AppState,
    meta: &RequestMeta,
    prediction: Prediction,
    parsed: P::Parsed,
) -> HttpResponse {
    state.metrics.record_prediction(&prediction);
    // A regressor's answers enter the window as the bins of its output baseline.
    let bins: Vec<u32>;
    let answers = match &prediction.answer {
        Answer::Classes { classes, .. } => classes.as_slice(),
        Answer::Values(values) => {
            let baseline = &prediction.model.artifact.baseline;
            bins = values.iter().map(|&v| baseline.answer_bin(v)).collect();
            &bins
        }
    };
    state
        .drift_windows
        .record(&prediction.model, prediction.input.values(), answers);
    let mut res = protocol.respond(&prediction, meta, parsed);
    res.extensions_mut().insert(prediction);
    res
}

/// The prediction for a request, or why there is none (with whatever of the body was read).
async fn serve<P: Protocol>(
    protocol: &P,
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: &RequestMeta,
    model: Result<Arc<Model>, ApiError>,
) -> Result<(Prediction, P::Parsed), Failure> {
    let limits = &state.limits;
    let model = match model {
        Ok(model) => model,
        // An unknown model's request keeps its body for the audit row, as other rejections
        // do (read within the same limits; if it cannot be read, the row has none).
        Err(error) => {
            let body = read_body(
                req,
                payload,
                limits.max_body_bytes,
                &state.body_budget,
                limits.body_timeout,
            )
            .await
            .ok()
            .map(|(body, _permit)| body);
            return Err(Failure { error, body });
        }
    };
    protocol.check(req)?;
    // The permit keeps the body's share of the body budget until the body is dropped.
    let (body, permit) = read_body(
        req,
        payload,
        limits.max_body_bytes,
        &state.body_budget,
        limits.body_timeout,
    )
    .await?;
    let (input, parsed) = match protocol.parse(&body, &model, limits.max_batch) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Err(Failure {
                error: e.into(),
                body: Some(body),
            });
        }
    };
    drop(body);
    drop(permit);
    if let Some(id) = protocol.client_id(&parsed) {
        meta.set_client_id(id);
    }
    let (input, answers) = predict(&model, input).await?;
    let prediction = Prediction::new(model, input, answers, &state.outlier_rule);
    Ok((prediction, parsed))
}

/// The model's answers for `input` (which is handed back, to become part of the prediction).
async fn predict(
    model: &Arc<Model>,
    input: PredictInput,
) -> Result<(PredictInput, Answers), ApiError> {
    if input.rows <= INLINE_ROWS {
        let answers = model
            .predict_rows(input.matrix(), input.values())
            .map_err(ApiError::from)?;
        return Ok((input, answers));
    }
    let m = Arc::clone(model);
    let (input, scores) = web::block(move || {
        let scores = m.predict_rows(input.matrix(), input.values());
        (input, scores)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("prediction task failed: {e}")))?;
    Ok((input, scores.map_err(ApiError::from)?))
}
