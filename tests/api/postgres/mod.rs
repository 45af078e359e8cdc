//! The PostgreSQL backend through the real HTTP interface, on a throwaway server
//! ([`crate::pg`]). Skipped, with one line saying so, where PostgreSQL is not installed.
//!
//! [`serving`]: predictions stored and read back, and a server that cannot be reached;
//! [`outages`]: PostgreSQL restarted under load and without traffic; [`tails`]: oldest-first
//! reads while transactions are open, and two replicas on one store; [`copy`]: `inferlog
//! audit copy` from SQLite.

mod copy;
mod outages;
mod serving;
mod tails;
