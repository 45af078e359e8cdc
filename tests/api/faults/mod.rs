//! Storage faults while serving: a full database, a read-only file and folder, connection
//! limits, a full disk. (A locked store, a full queue and a deleted file are in
//! `audit/store_faults.rs`.)
//!
//! [`space`]: the store's size cap within one volume; [`files`]: the database file made
//! read-only or replaced; [`connections`]: open-file and connection limits; [`disk`]: a small
//! volume of its own that fills.

mod connections;
mod disk;
mod files;
mod space;

use std::process::Command;

use crate::helpers::try_send_raw;
use crate::shutdown::binary;

/// One row to predict.
pub(super) const ONE_ROW: &str = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;

/// A `/predict` body of `rows` rows.
pub(super) fn batch(rows: usize) -> String {
    let row = "[5.1, 3.5, 1.4, 0.2]";
    format!(r#"{{"features": [{}]}}"#, vec![row; rows].join(", "))
}

/// The binary run through `program args… --` (a wrapper such as `setpriv` or `prlimit`), with
/// the environment [`binary`] gives it.
pub(super) fn wrapped_binary(program: &str, args: &[&str]) -> Command {
    let plain = binary();
    let mut cmd = Command::new(program);
    cmd.env_clear();
    cmd.args(args).arg("--").arg(plain.get_program());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// `POST /predict` of `body` to `addr`; `None` when no full answer came back.
pub(super) fn post(addr: &str, body: &str) -> Option<crate::helpers::Response> {
    let raw = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    try_send_raw(addr, raw.as_bytes())
}
