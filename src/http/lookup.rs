//! Finding the request an id names. The server's ids are unique; a client's `X-Request-Id` is
//! not (clients reuse theirs), so an id that is not the server's is looked up among the
//! clients' ids: one request is the answer, several are a 409 that lists them.

use crate::audit::Store;
use crate::text::escape_controls;

use super::error::{ApiError, MAX_CANDIDATES};

/// The server's id of the one request whose client sent `client_id`; `None` if no request
/// did; [`ApiError::AmbiguousRequestId`] if several did.
pub async fn by_client_id(store: &Store, client_id: &str) -> Result<Option<String>, ApiError> {
    let mut candidates = store
        .client_requests(client_id, MAX_CANDIDATES)
        .await
        .map_err(|e| ApiError::store("the request could not be looked up", &e))?;
    match candidates.len() {
        0 => Ok(None),
        1 => Ok(candidates.pop().map(|c| c.request_id)),
        _ => Err(ApiError::AmbiguousRequestId {
            id: escape_controls(client_id).into_owned(),
            candidates,
        }),
    }
}
