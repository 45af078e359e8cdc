//! Which file the connections have open. A database file deleted or replaced under a running
//! service would keep taking writes through the open handles (lost at exit), so the backend
//! compares the file at the path with the one it opened, by device and inode.

use std::path::{Path, PathBuf};

/// Device and inode of a file: what tells the file we opened from one now at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// Whether the file at `path` is no longer `opened`. A path that cannot be read for another
    /// reason than being gone counts as unchanged: failing a commit that may have worked
    /// would write its owed rows twice.
    pub(super) fn changed(path: &Path, opened: FileId) -> bool {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => (m.dev(), m.ino()) != (opened.dev, opened.ino),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    pub(super) fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// `audit.db` + `-wal`: the files SQLite keeps beside a database.
pub(super) fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The error of a write that found the database file deleted or replaced: classified as
/// [`crate::audit::FaultKind::Replaced`] by type, never by its text.
#[derive(Debug, thiserror::Error)]
#[error("the audit database {path} was deleted or replaced {when}")]
pub(super) struct FileReplaced {
    /// The database path, as text.
    pub path: String,
    /// What happened then: `during a commit`, `while serving; a new one was created …`.
    pub when: String,
}
