//! [`StoreFault`]: what went wrong with the audit store, as a typed class of fault that the
//! writer, readiness and the HTTP layer act on, plus the whole error chain for the log.
//!
//! Each backend classifies its own errors (SQLite by result code, for example) where they
//! arise; nothing above the backend inspects error codes or matches message text.

use std::sync::Arc;

/// The class of a store fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Another process holds the write lock past the busy timeout.
    LockedByOther,
    /// A lock inside this process's own connection (SQLite's `SQLITE_LOCKED`).
    Locked,
    ReadOnly,
    Io,
    /// The database or its disk is full (or at its configured size limit).
    Full,
    CannotOpen,
    /// A database server cannot be reached (down, restarting, network).
    Unreachable,
    /// The database refused the write for another reason (a constraint, a schema mismatch).
    Refused,
    /// The database file was deleted or replaced under the running service; the backend has
    /// opened a new one and the rows are written there on the next attempt.
    Replaced,
    /// A read ran past its time limit (`INFERLOG_AUDIT_READ_TIMEOUT_MS`) and was stopped.
    ReadTooLong,
    Other,
}

impl FaultKind {
    /// The fault in words fit for clients and probes: no paths, no SQL.
    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::LockedByOther => "the audit database is locked by another process",
            FaultKind::Locked => "the audit database is locked",
            FaultKind::ReadOnly => "the audit database is read-only",
            FaultKind::Io => "an I/O error in the audit database",
            FaultKind::Full => "the audit database or its disk is full",
            FaultKind::CannotOpen => "the audit database cannot be opened",
            FaultKind::Unreachable => "the audit database server cannot be reached",
            FaultKind::Refused => "the audit database refused the write",
            FaultKind::Replaced => {
                "the audit database file was deleted or replaced; writing to a new one"
            }
            FaultKind::ReadTooLong => {
                "the read of the audit rows ran past INFERLOG_AUDIT_READ_TIMEOUT_MS and was stopped (long reads keep the store from checkpointing); narrow the filter, or analyse a copy: inferlog audit snapshot"
            }
            FaultKind::Other => "the audit store failed",
        }
    }
}

/// A failed store call: its class and the whole error chain (for the log only).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .detail)]
pub struct StoreFault {
    pub kind: FaultKind,
    detail: Arc<str>,
}

impl StoreFault {
    /// A fault of `kind` caused by `error` (kept, with its context, for the log).
    pub fn new(kind: FaultKind, error: &anyhow::Error) -> StoreFault {
        StoreFault {
            kind,
            detail: format!("{error:#}").into(),
        }
    }

    /// The class of fault in words fit for clients (see [`FaultKind::describe`]).
    pub fn cause(&self) -> &'static str {
        self.kind.describe()
    }

    /// The whole error chain, for the log.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}
