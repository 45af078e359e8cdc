//! Per-minute and per-hour aggregates of the audit rows, kept beside them in the same
//! transaction, so summaries, time series, drift and performance read a few rows per minute
//! (or hour) instead of every row.
//!
//! Counts are `(kind, key) → count` per minute, model and model version:
//!
//! | kind | key | count |
//! |---|---|---|
//! | `rows` | `''` | audit rows |
//! | `requests` | `''` | requests (rows with item 0) |
//! | `status` | the HTTP status | rows |
//! | `error` | the error code, `''` for none | rows |
//! | `label` | the predicted label, `''` for none | rows |
//! | `latency` | the latency's bucket (see [`latency_bucket`]) | requests (rows with item 0: a batch's latency counts once) |
//! | `latency_max` | `''` | the largest latency, in µs (merged by max, not summed) |
//! | `outlier_rows` | `''` | rows with at least one feature flagged |
//! | `outlier` | a feature's name | rows flagging it |
//! | `bin` | `j:b`: feature `j` (model order) in training bin `b` | answered rows |
//! | `output_bin` | `b`: a regression model's answer in bin `b` of its training output | answered rows |
//! | `confusion` | `["predicted","true"]` (JSON) | answered rows whose latest feedback says `true` |
//! | `confidence` | the served class's probability in hundredths (see [`confidence_bucket`]) | a classifier's answered rows |
//! | `errors` | `''`; `unscored` | a regressor's answered rows with a true value: in the sums; too large to square |
//! | `error_sum` | `error`, `abs_error`, `sq_error`, `truth`, `sq_truth` ([`ERROR_SUM_KEYS`]), each with its low part ([`LOW_PART`]) | compensated sums over those rows (the only counts that are not whole numbers) |
//! | `abs_error` | the absolute error's bucket (see [`abs_error_bucket`]), `''` for 0 | those rows |
//!
//! `bin` and `output_bin` counts use the bins of the row's own model version ([`Baselines`]); a version the
//! service never loaded gets none. `confusion` is counted when feedback arrives (at the
//! answered row's minute, model and version): +1 for the new true label, −1 for the one it
//! replaces; so are `errors`, `error_sum` and `abs_error` (−1 and the sums less the replaced
//! value's terms).
//!
//! Each commit appends its counts as one *delta* ([`Delta::to_json`]); the store's
//! maintenance folds deltas ([`fold_deltas`]) into the `rollup` table, one row of packed
//! counts ([`Counts`]) per minute and per hour ([`with_hours`]). Readers take both tables in
//! one snapshot ([`collect`]). `minute` counts whole minutes since 1970-01-01 UTC; a row
//! without a model (or version) has `''`. Nothing here reads the rows back: retention may
//! drop rows and keep their rollups.
//!
//! - [`keys`]: minutes, latency buckets and the kinds of count.
//! - [`delta`]: the counts one commit adds.
//! - [`counts`]: packed counts, folding deltas, hours from minutes.
//! - [`range`]: the ranges the rollups answer and the rows read for them.
//! - [`read`]: rows and deltas read back, summed per bucket.
//! - [`report`]: summaries and time series from the counts.

mod counts;
mod delta;
mod keys;
mod range;
mod read;
mod report;

pub use counts::*;
pub use delta::*;
pub use keys::*;
pub use range::*;
pub use read::*;
pub use report::*;
