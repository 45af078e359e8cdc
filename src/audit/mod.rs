//! The audit store: a durable record of every prediction and every rejected request.
//!
//! - [`record`]: [`AuditRecord`] is one row: what came in, what the model answered, which model
//!   version, when, for whom and how long it took; [`StoredRecord`] is a row read back.
//! - [`columns`]: the table's columns, listed once for inserts, reads, exports and tests.
//! - [`filter`]: what readers ask for ([`AuditFilter`]) and the [`Summary`] they get.
//! - [`fault`]: [`StoreFault`], the typed failure of every store call.
//! - [`backend`]: `Backend`, what a backend is (its connections, its writes, how it
//!   classifies faults), with the reads provided once; [`Capabilities`].
//! - [`sql`]: the SQL both backends share, written once over a `Dialect`.
//! - [`store`]: [`Store`], the one interface over the backends: [`sqlite`] (one file, the
//!   default) and [`postgres`] (many replicas, one database).
//! - [`writer`]: the background task that owns all writes (group commit, durable and async
//!   modes, retries) and the handlers' [`AuditSink`].
//! - [`modes`]: the operator's choices of how rows are written ([`AuditMode`], [`SyncLevel`]).
//! - [`export`]: CSV and JSON-lines output and the page walk behind it.
//! - [`url`]: [`url::DatabaseUrl`], the store's URL parsed once into its backend's options and
//!   shown only without its passwords.
//! - [`spill`]: the file that keeps acknowledged rows the store could not take at shutdown,
//!   and their replay.
//!
//! Imports inside this module run one way: `modes`, `record`, `filter`, `fault`, `url` at the
//! bottom; `columns`, `rollup` and `sql` on them; `backend` on `sql`; the backends on
//! `backend`; `store` on the backends; `spill`, `writer` and `export` on `store` (`writer`
//! also on `spill`).

pub mod backend;
pub mod baselines;
pub mod columns;
pub mod export;
pub mod fault;
pub mod filter;
pub mod modes;
pub mod postgres;
pub mod record;
pub mod rollup;
pub mod spill;
pub mod sql;
pub mod sqlite;
pub mod store;
pub mod url;
pub mod writer;

pub use backend::Capabilities;
pub use baselines::Baselines;
pub use fault::{FaultKind, StoreFault};
pub use filter::{
    AuditFilter, ConfusionCell, Count, Cursor, DriftSample, LatencySummary, Order, Page, ServedRow,
    StatusFilter, Summary,
};
pub use modes::{AuditMode, StoreOptions, SyncLevel};
pub use record::{
    AuditRecord, Feedback, Latency, NumberList, Origin, RAW_BODY_LIMIT, RequestRef, StoredFeedback,
    StoredRecord, Truth, Written, cut_body, format_time, micros_between,
};
pub use store::{RowCounts, Store};
pub use writer::{AuditSink, StoreHealth, SubmitError, WriterHandle};
