//! Logging: slog set up for people (slog-term) or machines (slog-json), always through
//! slog-async so that formatting and writing never happen on a request thread.
//!
//! The chain is `LevelFilter → CountingAsync → AsyncCore → format → sink`: records below the
//! configured level are dropped before they cost a queue slot; the queue is sized for the real
//! request rate (slog-async's default of 128 drops most lines under load); when it is full anyway
//! the record is dropped and counted, and the count is reported in the stream as soon as there is
//! room. Logs may drop under overload; the audit store is the record of truth and never does.
//! [`Telemetry`] owns the async guard: dropping it (at the very end of `main`) flushes the queue.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use slog::{Drain, Level, Logger, OwnedKVList, Record, o};
use slog_async::{AsyncCore, AsyncGuard};

use crate::cli::LogFormat;
use crate::config::LogSettings;
use crate::text::escape_controls;

/// The process's root logger and what keeps it flowing.
pub struct Telemetry {
    pub logger: Logger,
    /// Records dropped because the queue was full, since start.
    pub dropped: Arc<AtomicU64>,
    /// Joins the writer thread when dropped, after it has written every queued record.
    /// (Fields drop in order: the queue is drained before the file's last flush below.)
    _guard: AsyncGuard,
    /// Flushes the log file's buffer periodically, and a last time when dropped.
    _flusher: Option<Flusher>,
    /// The log file, to reopen on SIGHUP (`logrotate` without `copytruncate`); `None` when
    /// logging to stderr.
    pub log_file: Option<LogFile>,
}

/// A handle on the log file that reopens it by its path: after `logrotate` has renamed it,
/// the next lines go to a new file under the old name.
#[derive(Clone)]
pub struct LogFile {
    path: std::path::PathBuf,
    out: BatchedFile,
}

impl LogFile {
    /// Opens the path again (creating the file) and writes there from now on; what was
    /// buffered for the old file is written to it first. On failure the old file stays.
    pub fn reopen(&self) -> anyhow::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("reopening log file {}", self.path.display()))?;
        let mut w = self
            .out
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("log file lock poisoned"))?;
        // A failed flush of the old file loses nothing the new one could take: the lines
        // were for the old file.
        let _ = w.flush();
        *w = BufWriter::with_capacity(LOG_BUFFER, file);
        Ok(())
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Builds the logger described by `settings`.
pub fn init(settings: &LogSettings) -> anyhow::Result<Telemetry> {
    let args = settings;
    let mut flusher = None;
    let mut log_file = None;
    let (core, guard) = match (&args.file, args.format) {
        (Some(path), format) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            let out = BatchedFile::new(file);
            flusher = Some(Flusher::start(out.clone()));
            log_file = Some(LogFile {
                path: path.clone(),
                out: out.clone(),
            });
            let line = LineBuffered {
                line: Vec::with_capacity(512),
                out,
            };
            match format {
                LogFormat::Term => async_core(term_plain(line), args.queue_size),
                LogFormat::Json => async_core(json(line, true), args.queue_size),
            }
        }
        (None, LogFormat::Term) => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let drain = slog_term::FullFormat::new(decorator)
                .use_utc_timestamp()
                .build()
                .ignore_res();
            async_core(drain, args.queue_size)
        }
        (None, LogFormat::Json) => async_core(json(std::io::stderr(), false), args.queue_size),
    };
    let dropped = Arc::new(AtomicU64::new(0));
    let drain = CountingAsync {
        core,
        dropped: Arc::clone(&dropped),
        unreported: AtomicU64::new(0),
    };
    let drain = slog::LevelFilter::new(drain, args.level).ignore_res();
    let logger = Logger::root(drain, o!());
    Ok(Telemetry {
        logger,
        dropped,
        _guard: guard,
        _flusher: flusher,
        log_file,
    })
}

/// How often buffered log lines reach the file.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// The log file's buffer.
const LOG_BUFFER: usize = 256 * 1024;

/// A log file written through a shared buffer: the formatters' per-record `flush` is a no-op,
/// and a [`Flusher`] thread writes the buffer out every [`FLUSH_EVERY`] (and when it fills).
/// Under load that is one `write` per few hundred lines instead of one per line; idle, a line
/// reaches the file within 50 ms.
#[derive(Clone)]
struct BatchedFile(Arc<Mutex<BufWriter<File>>>);

impl BatchedFile {
    fn new(file: File) -> BatchedFile {
        BatchedFile(Arc::new(Mutex::new(BufWriter::with_capacity(
            LOG_BUFFER, file,
        ))))
    }

    fn flush_now(&self) {
        if let Ok(mut w) = self.0.lock() {
            let _ = w.flush();
        }
    }
}

impl Write for BatchedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut w) => w.write(buf),
            Err(_) => Err(std::io::Error::other("log file lock poisoned")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log thread's end of a [`BatchedFile`]: the formatter writes a record in many small
/// pieces, which gather here without a lock, and its per-record `flush` hands the whole line to
/// the shared buffer under one lock.
struct LineBuffered {
    line: Vec<u8>,
    out: BatchedFile,
}

impl Write for LineBuffered {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let result = self.out.write_all(&self.line);
            self.line.clear();
            result?;
        }
        Ok(())
    }
}

impl Drop for LineBuffered {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

struct Flusher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(file: BatchedFile) -> Flusher {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("inferlog-logflush".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::park_timeout(FLUSH_EVERY);
                    file.flush_now();
                }
                file.flush_now();
            })
            .ok();
        Flusher { stop, thread }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn term_plain<W: Write + Send + 'static>(out: W) -> impl Drain<Ok = (), Err = slog::Never> {
    let decorator = slog_term::PlainDecorator::new(out);
    slog_term::FullFormat::new(decorator)
        .use_utc_timestamp()
        .build()
        .ignore_res()
}

/// `flush`: call the writer's `flush` after each record (a [`LineBuffered`] writes the line
/// then).
fn json<W: Write + Send + 'static>(out: W, flush: bool) -> impl Drain<Ok = (), Err = slog::Never> {
    slog_json::Json::new(out)
        .set_newlines(true)
        .set_flush(flush)
        .add_default_keys()
        .build()
        .ignore_res()
}

fn async_core<D>(drain: D, queue: usize) -> (AsyncCore, AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    slog_async::AsyncCore::custom(drain)
        .chan_size(queue.max(1))
        .thread_name("inferlog-log".to_string())
        .build_with_guard()
}

/// Drops and counts records when the queue is full instead of blocking the request, and reports
/// the count in the log stream once the queue has room again.
struct CountingAsync {
    core: AsyncCore,
    dropped: Arc<AtomicU64>,
    unreported: AtomicU64,
}

impl Drain for CountingAsync {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let unreported = self.unreported.swap(0, Ordering::Relaxed);
        if unreported > 0 {
            let report = self.core.log(
                &slog::record!(
                    Level::Warning,
                    "",
                    &format_args!("log records dropped: queue full"),
                    slog::b!("count" => unreported)
                ),
                values,
            );
            if report.is_err() {
                self.unreported.fetch_add(unreported, Ordering::Relaxed);
            }
        }
        if self.core.log(record, values).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.unreported.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Set once shutdown has closed the listening socket on purpose.
static LISTENER_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the listening socket as closed on purpose (at shutdown): actix's accept thread may
/// still report the closed socket, and those lines are then information, not errors.
pub fn listener_closed() {
    LISTENER_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Sends the `log` crate's records (actix-web, sqlx) into slog, so the process has one stream.
/// Only the first call in a process takes effect.
pub fn bridge_log_crate(logger: &Logger, level: Level) {
    let max = match level {
        Level::Trace => log::LevelFilter::Trace,
        Level::Debug => log::LevelFilter::Debug,
        Level::Info => log::LevelFilter::Info,
        Level::Warning => log::LevelFilter::Warn,
        Level::Error | Level::Critical => log::LevelFilter::Error,
    };
    let bridge = LogBridge {
        logger: logger.new(o!("component" => "lib")),
    };
    if log::set_boxed_logger(Box::new(bridge)).is_ok() {
        log::set_max_level(max);
    }
}

struct LogBridge {
    logger: Logger,
}

impl log::Log for LogBridge {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, r: &log::Record) {
        let msg = r.args().to_string();
        let msg = escape_controls(&msg);
        let target = r.target();
        // actix reports a client's malformed HTTP ("stream error: request parse error: …") as
        // an ERROR; it is the client's fault, answered 400, and any client could fill the log
        // with ERROR lines. Its HTTP/1 dispatcher's errors are logged as warnings.
        // Once shutdown has closed the listening socket, the accept thread may still wake on
        // it ("error accepting connection: Invalid argument", "can not deregister server
        // socket"): expected, so information.
        let level = match r.level() {
            log::Level::Error if target.starts_with("actix_http::h1") => log::Level::Warn,
            log::Level::Error
                if target.starts_with("actix_server::accept")
                    && LISTENER_CLOSED.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                log::Level::Info
            }
            level => level,
        };
        match level {
            log::Level::Error => slog::error!(self.logger, "{}", msg; "target" => target),
            log::Level::Warn => slog::warn!(self.logger, "{}", msg; "target" => target),
            log::Level::Info => slog::info!(self.logger, "{}", msg; "target" => target),
            log::Level::Debug => slog::debug!(self.logger, "{}", msg; "target" => target),
            log::Level::Trace => slog::trace!(self.logger, "{}", msg; "target" => target),
        }
    }

    fn flush(&self) {}
}
