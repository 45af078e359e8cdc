//! `GET /audit`, `GET /audit/summary` and `GET /audit/{request_id}`: the audit trail over HTTP.
//!
//! Audit data holds users' inputs, so every route here checks access first: with `AUDIT_TOKEN`
//! set, a matching `Authorization: Bearer` header (compared in constant time); without it, only
//! clients on loopback.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::export::{csv_chunk, jsonl_chunk};
use crate::audit::query::{Format, Page, encode_cursor, parse_query};
use crate::audit::{AuditFilter, Store};
use crate::error::ApiError;
use crate::startup::AppState;

/// Rows fetched per step of an export stream: memory stays bounded whatever the range.
const EXPORT_PAGE: usize = 1000;

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let q = parse_query(&params, false)?;
    match q.format {
        Format::Json => {
            let mut records = state
                .store
                .page(&q.filter, q.cursor, q.limit + 1)
                .await
                .map_err(|e| ApiError::store("the audit records could not be read", &e))?;
            let more = records.len() > q.limit;
            records.truncate(q.limit);
            let next_cursor = if more {
                records.last().map(|r| encode_cursor(r.id))
            } else {
                None
            };
            Ok(HttpResponse::Ok().json(Page {
                records,
                next_cursor,
            }))
        }
        Format::Csv => Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ))
            .streaming(export(state.store.clone(), q.filter, q.cursor, Format::Csv))),
        Format::Jsonl => Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .streaming(export(
                state.store.clone(),
                q.filter,
                q.cursor,
                Format::Jsonl,
            ))),
    }
}

/// Walks the whole filtered range page by page, yielding one chunk of text per page.
fn export(
    store: Store,
    filter: AuditFilter,
    cursor: Option<i64>,
    format: Format,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> + 'static {
    struct Walk {
        store: Store,
        filter: AuditFilter,
        cursor: Option<i64>,
        first: bool,
    }
    let start = Walk {
        store,
        filter,
        cursor,
        first: true,
    };
    stream::unfold(Some(start), move |walk| async move {
        let mut walk = walk?;
        let records = match walk
            .store
            .page(&walk.filter, walk.cursor, EXPORT_PAGE)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // The status line is gone already; ending the stream early truncates the
                // chunked body, which clients see as an incomplete transfer.
                let err = actix_web::error::ErrorInternalServerError(format!("{e:#}"));
                return Some((Err(err), None));
            }
        };
        if records.is_empty() && !walk.first {
            return None;
        }
        let chunk = match format {
            Format::Csv => csv_chunk(&records, walk.first),
            _ => jsonl_chunk(&records),
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let err = actix_web::error::ErrorInternalServerError(format!("{e:#}"));
                return Some((Err(err), None));
            }
        };
        let done = records.len() < EXPORT_PAGE;
        walk.first = false;
        walk.cursor = records.last().map(|r| r.id).or(walk.cursor);
        Some((Ok(web::Bytes::from(chunk)), (!done).then_some(walk)))
    })
}

pub async fn summary(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let q = parse_query(&params, true)?;
    let summary = state
        .store
        .summary(&q.filter)
        .await
        .map_err(|e| ApiError::store("the audit summary could not be read", &e))?;
    Ok(HttpResponse::Ok().json(summary))
}

pub async fn by_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    request_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let records = state
        .store
        .request(&request_id)
        .await
        .map_err(|e| ApiError::store("the request's audit records could not be read", &e))?;
    if records.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no audit records for request {:?}",
            crate::error::escape_controls(&request_id)
        )));
    }
    Ok(HttpResponse::Ok().json(json!({
        "request_id": request_id.as_str(),
        "records": records,
    })))
}

/// The access rule of audit data (also for the feedback routes to come).
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    check_access(
        state.audit_token_digest.as_ref(),
        auth,
        req.peer_addr().map(|a| a.ip()),
    )
}

/// With a token configured: a matching `Bearer` token, else 401. Without: loopback peers
/// only, else 403.
pub fn check_access(
    token_digest: Option<&[u8; 32]>,
    authorization: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<(), ApiError> {
    let Some(expected) = token_digest else {
        return if peer.is_some_and(|ip| ip.is_loopback()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "audit data is served to loopback clients only unless AUDIT_TOKEN is set".into(),
            ))
        };
    };
    let given = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("send Authorization: Bearer <AUDIT_TOKEN>".into()))?;
    // Comparing fixed-size digests, every byte, keeps the time independent of how much of the
    // token a guess got right.
    let digest = Sha256::digest(given.trim().as_bytes());
    let diff = digest
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_token_only_loopback_peers_pass() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let remote: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(check_access(None, None, Some(v4)).is_ok());
        assert!(check_access(None, None, Some(v6)).is_ok());
        let err = check_access(None, None, Some(remote)).unwrap_err();
        assert_eq!(err.code(), "forbidden");
        assert!(check_access(None, None, None).is_err());
        // A bearer header does not open the door when no token is configured.
        assert!(check_access(None, Some("Bearer x"), Some(remote)).is_err());
    }

    #[test]
    fn with_token_the_peer_does_not_matter_only_the_token() {
        let digest: [u8; 32] = Sha256::digest(b"tok").into();
        let remote: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(check_access(Some(&digest), Some("Bearer tok"), Some(remote)).is_ok());
        for bad in [
            None,
            Some("Bearer tok2"),
            Some("Basic tok"),
            Some("Bearer "),
        ] {
            let err = check_access(Some(&digest), bad, Some(remote)).unwrap_err();
            assert_eq!(err.code(), "unauthorized", "{bad:?}");
        }
    }
}
