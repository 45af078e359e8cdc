//! `GET /audit`, `GET /audit/summary`, `GET /audit/timeseries` and `GET /audit/{request_id}`:
//! the audit trail over HTTP.
//! Audit data holds users' inputs, so every route here takes [`AuditAccess`].

use actix_web::get;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use futures_util::stream;
use serde::Serialize;

use crate::audit::StoredRecord;
use crate::audit::export::{SageMaker, Walk, csv_chunk, jsonl_chunk};
use crate::audit::filter::{Cursor, Order};
use crate::audit::filter::{FilterArgs, Summary};
use crate::audit::rollup::TimeBucket;
use crate::audit::rollup::{self, RollupRange};
use crate::http::access::AuditAccess;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::lookup::by_client_id;
use crate::http::params::{
    Format, PageParams, TimeseriesParams, encode_cursor, parse_query, parse_timeseries,
};
use crate::http::state::AppState;
use crate::text::quote;

/// Rows fetched per step of an export stream: memory stays bounded whatever the range.
const EXPORT_PAGE: usize = 1000;

/// One page of records and where the next one starts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageBody {
    records: Vec<StoredRecord>,
    /// Where the next page starts (oldest first, the last page's too: poll it for rows
    /// written later); `null` when there is no more.
    next_cursor: Option<String>,
}

/// `/audit/timeseries`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeseries {
    bucket: String,
    since: Option<String>,
    until: Option<String>,
    model: Option<String>,
    model_version: Option<String>,
    /// `rollups`.
    source: &'static str,
    /// The largest relative error of a latency percentile.
    latency_relative_error: f64,
    buckets: Vec<TimeBucket>,
}

/// `/audit/{request_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestRecords {
    request_id: String,
    client_request_id: Option<String>,
    records: Vec<StoredRecord>,
}

/// The audit trail: a page of rows, or the whole filtered range as CSV, JSON lines or
/// SageMaker Data Capture lines.
#[utoipa::path(get, path = "/audit", tag = "audit", operation_id = "list_audit_rows", params(FilterArgs, PageParams),
    responses(
        (status = 200, description = "A page (`format=json`), or the range streamed", content(
            (PageBody = "application/json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "A parameter is unknown, repeated or malformed (`invalid_parameter`)", body = ErrorBody),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a loopback client and no token set (`forbidden`)", body = ErrorBody),
        (status = 503, description = "The store could not be read (`audit_unavailable`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[get("/audit", name = "/audit")]
pub async fn list(
    _access: AuditAccess,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let q = parse_query(&params, false)?;
    match q.format {
        Format::Json => {
            let mut page = state
                .store
                .page(&q.filter, q.cursor, q.limit + 1)
                .await
                .map_err(|e| ApiError::store("the audit records could not be read", &e))?;
            let more = page.len() > q.limit;
            page.truncate(q.limit);
            let last = page.positions.last().copied();
            let next_cursor = match (more, q.filter.order) {
                (true, _) => last,
                // Oldest first, the last page still says where to resume: a reader polls it
                // for rows written later (tailing), an export picks up where it stopped.
                (false, Order::Asc) => last.or(q.cursor).or(Some(Cursor::START)),
                (false, Order::Desc) => None,
            };
            Ok(HttpResponse::Ok().json(PageBody {
                records: page.records,
                next_cursor: next_cursor.map(encode_cursor),
            }))
        }
        Format::Csv => Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ))
            .streaming(export(
                Walk::new(state.store.clone(), q.filter, q.cursor),
                Format::Csv,
            ))),
        Format::Jsonl | Format::Sagemaker => Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .streaming(export(
                Walk::new(state.store.clone(), q.filter, q.cursor),
                q.format,
            ))),
    }
}

/// The whole walk as a stream of text chunks, one per page (the CSV header with the first).
fn export(
    walk: Walk,
    format: Format,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> + 'static {
    stream::unfold(
        Some((walk, true, SageMaker::default())),
        move |state| async move {
            let (mut walk, first, mut sagemaker) = state?;
            // The status line is gone already when a page fails; ending the stream with an error
            // truncates the chunked body, which clients see as an incomplete transfer.
            let failed =
                |e: String| Some((Err(actix_web::error::ErrorInternalServerError(e)), None));
            let records = match walk.next_page(EXPORT_PAGE).await {
                Ok(Some(records)) => records,
                // The last request of a Data Capture export waits for the end.
                Ok(None) if format == Format::Sagemaker => {
                    return match sagemaker.finish() {
                        Ok(c) if c.is_empty() => None,
                        Ok(c) => Some((Ok(web::Bytes::from(c)), None)),
                        Err(e) => failed(format!("{e:#}")),
                    };
                }
                Ok(None) => return None,
                Err(e) => return failed(e.to_string()),
            };
            if records.is_empty() && !first && format != Format::Sagemaker {
                return None;
            }
            let chunk = match format {
                Format::Csv => csv_chunk(&records, first),
                Format::Sagemaker => sagemaker.chunk(records),
                _ => jsonl_chunk(&records),
            };
            match chunk {
                Ok(c) => Some((Ok(web::Bytes::from(c)), Some((walk, false, sagemaker)))),
                Err(e) => failed(format!("{e:#}")),
            }
        },
    )
}

/// Counts per model, label, status and error code, and latency percentiles (p50, p90, p95,
/// p99, max) over the rows a filter selects (from the rollups when the filter allows:
/// `source`). Percentiles are per request: one latency per request id, so a batch of 400 rows
/// counts once.
#[utoipa::path(get, path = "/audit/summary", tag = "audit", params(FilterArgs),
    responses(
        (status = 200, description = "The summary", body = Summary),
        (status = 400, description = "A parameter is unknown, repeated or malformed (`invalid_parameter`)", body = ErrorBody),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a loopback client and no token set (`forbidden`)", body = ErrorBody),
        (status = 503, description = "The store could not be read (`audit_unavailable`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[get("/audit/summary", name = "/audit/summary")]
pub async fn summary(
    _access: AuditAccess,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let q = parse_query(&params, true)?;
    let summary = state
        .store
        .summary(&q.filter)
        .await
        .map_err(|e| ApiError::store("the audit summary could not be read", &e))?;
    Ok(HttpResponse::Ok().json(summary))
}

/// `GET /audit/timeseries`: requests, rejects by code, latency percentiles (p50, p90, p95, p99,
/// max; per request, a batch counting once), the label mix and outliers per bucket, from the
/// rollups (a few rows per minute, whatever the traffic).
#[utoipa::path(get, path = "/audit/timeseries", tag = "audit", params(TimeseriesParams),
    responses(
        (status = 200, description = "Every bucket of the range", body = Timeseries),
        (status = 400, description = "A parameter is unknown, repeated or malformed (`invalid_parameter`)", body = ErrorBody),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a loopback client and no token set (`forbidden`)", body = ErrorBody),
        (status = 503, description = "The store could not be read (`audit_unavailable`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[get("/audit/timeseries", name = "/audit/timeseries")]
pub async fn timeseries(
    _access: AuditAccess,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let q = parse_timeseries(&params, chrono::Utc::now())?;
    let range = RollupRange {
        since: Some(q.since),
        until: Some(q.until),
        model: q.model.clone(),
        model_version: q.model_version.clone(),
    };
    let rows = state
        .store
        .rollup_rows(&range, q.bucket_minutes)
        .await
        .map_err(|e| ApiError::store("the audit time series could not be read", &e))?;
    let buckets = rollup::timeseries(
        &rows,
        &range,
        (q.since, q.until),
        q.bucket_minutes,
        state.low_confidence,
    )
    .map_err(|e| ApiError::Internal(e.context("reading the audit time series")))?;
    let time = |m: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(m * 60, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    Ok(HttpResponse::Ok().json(Timeseries {
        bucket: q.bucket.to_string(),
        since: time(q.since),
        until: time(q.until),
        model: q.model,
        model_version: q.model_version,
        source: "rollups",
        latency_relative_error: rollup::LATENCY_RELATIVE_ERROR,
        buckets,
    }))
}

/// Every row of one request, by the server's id or a client's id that names one request.
#[utoipa::path(get, path = "/audit/{request_id}", tag = "audit",
    params(("request_id" = String, Path, description = "The server's id of the request, or a client's")),
    responses(
        (status = 200, description = "The request's rows", body = RequestRecords),
        (status = 404, description = "No such request (`not_found`)", body = ErrorBody),
        (status = 409, description = "A client's id that names several requests (`ambiguous_request_id`)", body = ErrorBody),
        (status = 400, description = "A parameter is unknown, repeated or malformed (`invalid_parameter`)", body = ErrorBody),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a loopback client and no token set (`forbidden`)", body = ErrorBody),
        (status = 503, description = "The store could not be read (`audit_unavailable`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[get("/audit/{request_id}", name = "/audit/{request_id}")]
pub async fn by_request(
    _access: AuditAccess,
    state: web::Data<AppState>,
    request_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let read = |id: String| {
        let store = state.store.clone();
        async move {
            store
                .request(&id)
                .await
                .map_err(|e| ApiError::store("the request's audit records could not be read", &e))
        }
    };
    // The server's id first; else a client's id, if exactly one request sent it.
    let mut records = read(request_id.clone()).await?;
    if records.is_empty()
        && let Some(server_id) = by_client_id(&state.store, &request_id).await?
    {
        records = read(server_id).await?;
    }
    let Some(first) = records.first() else {
        return Err(ApiError::NotFound(format!(
            "no audit records for request {}",
            quote(&request_id)
        )));
    };
    Ok(HttpResponse::Ok().json(RequestRecords {
        request_id: first.request_id.clone(),
        client_request_id: first.client_request_id.clone(),
        records,
    }))
}
