//! The audit store over HTTP and in the real SQLite file: every answered prediction has its
//! rows with exactly what was returned, rejected requests are recorded, durable rows are
//! readable when the answer arrives, async rows are all there after shutdown, and `/audit`
//! filters, pages and exports them.

mod client_text;
mod exports;
mod prune;
mod reads;
mod rows;
mod store_faults;
mod summary;
