//! The access rule of audit data, as an extractor: a handler that takes [`AuditAccess`] runs
//! only for clients allowed to read users' inputs. With `AUDIT_TOKEN` set, a matching
//! `Authorization: Bearer` header (compared in constant time); without it, only clients on
//! loopback.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

/// Proof that the request may read audit data.
#[derive(Debug, Clone, Copy)]
pub struct AuditAccess;

impl FromRequest for AuditAccess {
    type Error = ApiError;
    type Future = Ready<Result<AuditAccess, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::Internal(anyhow::anyhow!(
                "the application state is missing"
            ))));
        };
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        ready(
            check_access(
                state.audit_token_digest.as_ref(),
                auth,
                req.peer_addr().map(|a| a.ip()),
            )
            .map(|()| AuditAccess),
        )
    }
}

/// Proof that the request may read `/metrics`: the token when one is configured (Prometheus
/// sends it with `authorization.credentials`), anyone otherwise, as scrapers expect.
#[derive(Debug, Clone, Copy)]
pub struct MetricsAccess;

impl FromRequest for MetricsAccess {
    type Error = ApiError;
    type Future = Ready<Result<MetricsAccess, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let digest = req
            .app_data::<web::Data<AppState>>()
            .and_then(|s| s.audit_token_digest);
        let Some(digest) = digest else {
            return ready(Ok(MetricsAccess));
        };
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        ready(
            check_access(Some(&digest), auth, req.peer_addr().map(|a| a.ip()))
                .map(|()| MetricsAccess),
        )
    }
}

/// The SHA-256 digest a configured token is compared through; `None` for an unset or blank
/// token.
pub fn token_digest(token: Option<&str>) -> Option<[u8; 32]> {
    token
        .filter(|t| !t.trim().is_empty())
        .map(|t| Sha256::digest(t.trim().as_bytes()).into())
}

/// Whether `ip` is this machine, also when an IPv4 client reaches a dual-stack (`[::]`)
/// listener and shows up as `::ffff:127.0.0.1`.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// The credentials of an `Authorization: Bearer <token>` header. The scheme is matched
/// case-insensitively, as HTTP says auth schemes are.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// With a token configured: a matching `Bearer` token, else 401. Without: loopback peers
/// only, else 403.
pub fn check_access(
    token_digest: Option<&[u8; 32]>,
    authorization: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<(), ApiError> {
    let Some(expected) = token_digest else {
        return if peer.is_some_and(is_loopback) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "audit data is served to loopback clients only unless AUDIT_TOKEN is set".into(),
            ))
        };
    };
    let given = authorization
        .and_then(bearer_token)
        .ok_or_else(|| ApiError::Unauthorized("send Authorization: Bearer <AUDIT_TOKEN>".into()))?;
    // Fixed-size digests compared in constant time: the time says nothing about how much of
    // the token a guess got right.
    let digest = Sha256::digest(given.trim().as_bytes());
    if bool::from(digest.as_slice().ct_eq(expected.as_slice())) {
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
        let digest = token_digest(Some("tok")).unwrap();
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
        assert!(token_digest(Some("  ")).is_none());
    }

    #[test]
    fn an_ipv4_client_on_a_dual_stack_listener_counts_as_loopback() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(check_access(None, None, Some(mapped)).is_ok());
        let mapped_remote: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert!(check_access(None, None, Some(mapped_remote)).is_err());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let digest = token_digest(Some("tok")).unwrap();
        let remote: IpAddr = "203.0.113.7".parse().unwrap();
        for ok in ["Bearer tok", "bearer tok", "BEARER tok"] {
            assert!(
                check_access(Some(&digest), Some(ok), Some(remote)).is_ok(),
                "{ok}"
            );
        }
        assert!(check_access(Some(&digest), Some("Bearertok"), Some(remote)).is_err());
    }
}
