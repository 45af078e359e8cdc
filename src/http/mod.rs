//! The HTTP layer: everything actix-specific. Handlers share what lives here, never each
//! other's code.
//!
//! - [`state`]: [`AppState`], what every handler shares.
//! - [`request`]: [`RequestMeta`], one request's id, arrival, client and clock.
//! - [`middleware`]: metrics, the JSON error body and the one log line of every request.
//! - [`error`]: [`ApiError`], status codes and the error body.
//! - [`log_values`]: the log line's data values, as JSON data or as text per format.
//! - [`connections`]: the open client connections, to close the idle ones at shutdown.
//! - [`body`]: content type, size limit, body deadline, JSON decoding.
//! - [`access`]: the access rule of audit data, as an extractor.
//! - [`lookup`]: the request an id names (the server's id, or a client's).
//! - [`params`]: query-string parsing.
//! - [`readiness`]: the store's answer to readiness probes.
//! - [`serving`]: a prediction served, audited and metered, whatever protocol it speaks.
//! - [`routes`]: one file per resource, and the route table.

pub mod access;
pub mod body;
pub mod connections;
pub mod error;
pub mod log_values;
pub mod lookup;
pub mod middleware;
pub mod params;
pub mod readiness;
pub mod request;
pub mod routes;
pub mod serving;
pub mod state;

pub use error::ApiError;
pub use request::RequestMeta;
pub use routes::{configure, configure_admin};
pub use state::AppState;
