//! The listening socket: bound with a wide backlog, the open-file limit raised and the
//! connection cap fitted to it, and closed for good when shutdown begins.

use std::net::{SocketAddr, TcpListener};

use anyhow::Context;
use slog::{Logger, info, warn};

use crate::config::{HttpSettings, Settings};

/// The HTTP settings with the connection cap fitted to the open-file limit, and the number of
/// workers (default: one per core).
pub(super) fn limits(settings: &Settings, logger: &Logger) -> (HttpSettings, usize) {
    let mut limits = settings.http.clone();
    let workers = limits
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    limits.max_connections = connection_cap(logger, limits.max_connections, workers);
    (limits, workers)
}

/// Binds `addr` and widens its backlog; returns the listener (for actix), the same socket
/// kept to close it at shutdown, and the address bound (port 0 picks one).
pub(super) fn bind(
    log: &Logger,
    addr: SocketAddr,
) -> anyhow::Result<(TcpListener, TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    widen_backlog(log, &listener);
    let listening = listener
        .try_clone()
        .context("keeping the listening socket")?;
    Ok((listener, listening, bound))
}

/// File descriptors kept free for everything but client connections: the listener, the audit
/// database and its WAL (several connections), the log file, sqlx's and the runtime's own.
const RESERVED_FDS: u64 = 64;

/// Raises the open-file limit to what the system allows, and cuts the per-worker connection
/// cap to what that limit can hold: with 2 workers × 10,000 connections against the usual
/// 1,024 files, new connections would fail in `accept` and requests time out instead of
/// waiting in the backlog. Logs what it chose.
fn connection_cap(logger: &Logger, wanted: usize, workers: usize) -> usize {
    /// Connections per worker below which a lowered cap is a warning.
    const LOW_CONNECTION_CAP: usize = 1024;
    let Some((before, limit, hard)) = raise_open_files_limit() else {
        warn!(logger, "could not read the open-file limit; connection cap as configured";
            "max_connections_per_worker" => wanted);
        return wanted;
    };
    // Two descriptors per connection: its socket, and the duplicate kept to close it at
    // shutdown (see `http::connections`).
    let fit = (limit.saturating_sub(RESERVED_FDS) / (2 * workers.max(1) as u64)).max(1) as usize;
    let cap = wanted.min(fit);
    if cap < wanted {
        // Lowered from a high default on a normal machine, it still serves thousands of
        // connections: worth a line, not a warning. A cap this low is one.
        let reason = "each connection takes two descriptors; 64 are kept for the store and logs";
        if cap < LOW_CONNECTION_CAP {
            warn!(logger, "connection cap lowered to fit the open-file limit";
                "reason" => reason,
                "max_connections_per_worker" => cap, "configured" => wanted, "workers" => workers,
                "open_files_limit" => limit, "raised_from" => before, "hard_limit" => hard);
        } else {
            info!(logger, "connection cap lowered to fit the open-file limit";
                "reason" => reason,
                "max_connections_per_worker" => cap, "configured" => wanted, "workers" => workers,
                "open_files_limit" => limit, "raised_from" => before, "hard_limit" => hard);
        }
    } else {
        info!(logger, "open-file limit";
            "max_connections_per_worker" => cap, "workers" => workers,
            "open_files_limit" => limit, "raised_from" => before, "hard_limit" => hard);
    }
    cap
}

/// Sets the soft limit of open files to the hard limit; returns (soft before, soft now, hard).
fn raise_open_files_limit() -> Option<(u64, u64, u64)> {
    use rlimit::Resource;
    let (before, hard) = rlimit::getrlimit(Resource::NOFILE).ok()?;
    // An unlimited hard limit still cannot be the soft limit of open files: the kernel caps
    // it (nr_open, 1,048,576 by default).
    let target = hard.min(1 << 20);
    let mut soft = before;
    if soft < target && rlimit::setrlimit(Resource::NOFILE, target, hard).is_ok() {
        soft = target;
    }
    Some((before, soft, hard))
}

/// Connections the kernel may hold for the listener before it is accepted (capped by
/// `net.core.somaxconn`, 4,096 on current kernels).
const LISTEN_BACKLOG: i32 = 4096;

/// Raises the listen backlog from the standard library's 128: a burst of connections (a
/// reconnecting fleet, or a flood of idle ones) would overflow it, and every client whose SYN is
/// dropped waits a second for its retry (measured: a health probe at 1,005 ms while 2,000
/// connections opened at once).
fn widen_backlog(log: &Logger, listener: &TcpListener) {
    // listen(2) again on a listening socket: Linux changes its backlog in place.
    if let Err(e) = socket2::SockRef::from(listener).listen(LISTEN_BACKLOG) {
        warn!(log, "could not raise the listen backlog"; "error" => %e);
    }
}

/// Closes the listening socket for good: connections waiting in its backlog and new ones are
/// refused (they were never read, so nothing is lost), instead of hanging until the exit.
pub(super) fn close_listener(log: &Logger, listening: &TcpListener) {
    crate::telemetry::listener_closed();
    if let Err(e) = socket2::SockRef::from(listening).shutdown(std::net::Shutdown::Both) {
        warn!(log, "could not close the listening socket"; "error" => %e);
    }
}
