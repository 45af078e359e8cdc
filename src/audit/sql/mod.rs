//! SQL written once for both backends over [`Dialect`] (what differs: bound times' casts,
//! the select forms of columns, row locks, text PostgreSQL refuses):
//!
//! - [`dialect`]: the trait, its two implementations and the typed rows ([`Decoded`]).
//! - [`clause`]: the filter as a WHERE clause and the other shared pieces of queries.
//! - [`decode`]: rows read back as the store's types.
//! - [`reads`]: the reads (pages, requests, summaries, drift, confusion, rollups, feedback).
//! - [`writes`]: feedback and rollup merges, inside the backend's transaction.
//!
//! Imports run one way: `dialect` at the bottom, `clause` and `decode` on it, `reads` and
//! `writes` on those.

pub mod clause;
pub mod decode;
pub mod dialect;
pub mod reads;
pub mod writes;

pub(crate) use decode::decode_row;
pub(crate) use dialect::Dialect;
