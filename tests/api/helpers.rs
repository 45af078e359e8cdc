//! Test harness: a real inferlog server on a free port, with its own temporary folder (models,
//! log file), and a small HTTP/1.1 client that can also send malformed bytes on purpose.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use inferlog::config::Settings;
use inferlog::startup::Application;
use inferlog::telemetry;
use tempfile::TempDir;

/// The shipped iris model.
pub fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json")
}

pub struct TestApp {
    pub port: u16,
    /// The store the server writes to (`sqlite://…` by default).
    pub database_url: String,
    /// The admin address's port, when the settings gave one.
    pub admin_port: Option<u16>,
    pub dir: TempDir,
    pub log_path: PathBuf,
    pub db_path: PathBuf,
    /// Resolves the server's shutdown future: the same drain SIGTERM starts.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One test body run on each audit backend: `on_both_stores!(fn name(app) { … })` makes a
/// module `name` with the tests `sqlite` and `postgres` (the second skipped, with the one line
/// of [`crate::pg`], where PostgreSQL is not installed). `on_both_stores!(fn name(app) with
/// |s| …, { … })` changes the settings first.
macro_rules! on_both_stores {
    (fn $name:ident($app:ident) $body:block) => {
        on_both_stores!(fn $name($app) with |_s| {}, $body);
    };
    (fn $name:ident($app:ident) with |$s:ident| $adjust:expr, $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($app: crate::helpers::TestApp) $body

            fn adjust($s: &mut inferlog::config::Settings) {
                $adjust;
            }

            #[test]
            fn sqlite() {
                run(crate::helpers::spawn_app_with(adjust));
            }

            #[test]
            fn postgres() {
                let Some(url) = crate::pg::database() else {
                    return;
                };
                run(crate::helpers::spawn_app_with(move |s| {
                    adjust(s);
                    s.database_url = url.parse().unwrap();
                }));
            }
        }
    };
}
pub(crate) use on_both_stores;

/// Starts a server on port 0 serving the shipped iris model, logging to a file in its folder.
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// Like [`spawn_app`], with settings changed by `adjust` (`|s| s.http.max_batch = 5`). The
/// settings are built here, not from the command line or the environment, so a developer's
/// `AUDIT_TOKEN` or `LOG_FORMAT` changes nothing.
pub fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(shipped_model(), models.join("iris.json")).unwrap();
    let log_path = dir.path().join("inferlog.log");
    let db_path = dir.path().join("audit.db");
    let mut settings = Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        models,
        default_model: "iris".into(),
        database_url: inferlog::audit::url::DatabaseUrl::sqlite_file(&db_path),
        ..Settings::default()
    };
    settings.http.workers = Some(1);
    settings.log.file = Some(log_path.clone());
    settings.log.level = slog::Level::Info;
    adjust(&mut settings);
    let database_url = settings.database_url.expose_secret().to_string();

    let (tx, rx) = std::sync::mpsc::channel();
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let telemetry = telemetry::init(&settings.log).expect("logger");
        let logger = telemetry.logger.clone();
        let dropped = std::sync::Arc::clone(&telemetry.dropped);
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build(settings, logger, dropped)
                .await
                .expect("app builds");
            tx.send((app.port(), app.admin_port())).unwrap();
            app.run(async move {
                let _ = stop.await;
                "test stop"
            })
            .await
            .expect("server runs");
        });
        drop(telemetry);
    });
    let (port, admin_port) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server started");
    TestApp {
        port,
        admin_port,
        database_url,
        dir,
        log_path,
        db_path,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

impl TestApp {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn post_predict(&self, body: &str) -> Response {
        self.post_json("/predict", body)
    }

    /// A `/predict` that must be answered 200; returns its request id.
    pub fn predict_ok(&self, body: &str) -> String {
        let res = self.post_predict(body);
        assert_eq!(res.status, 200, "{}", res.text());
        res.header("x-request-id")
            .expect("every answer carries its request id")
            .to_string()
    }

    /// One JSON page of `GET /audit?{query}`, which must be answered 200.
    pub fn audit_page(&self, query: &str) -> AuditPage {
        let res = self.get(&format!("/audit?{query}"));
        assert_eq!(res.status, 200, "/audit?{query}: {}", res.text());
        let body = res.json();
        AuditPage {
            records: body["records"].as_array().expect("records").clone(),
            next_cursor: body["next_cursor"].as_str().map(str::to_string),
        }
    }

    pub fn post_json(&self, path: &str, body: &str) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// A well-formed request with the given headers; Content-Length is added.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr()).into_bytes();
        for (k, v) in headers {
            raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        raw.extend_from_slice(
            format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        raw.extend_from_slice(body);
        self.raw(&raw)
    }

    /// Sends bytes exactly as given and reads the response until the server closes.
    pub fn raw(&self, bytes: &[u8]) -> Response {
        send_raw(&self.addr(), bytes)
    }

    /// Waits until the log file has a line containing every one of `needles`, and returns it.
    pub fn wait_for_log_line(&self, needles: &[&str]) -> String {
        wait_for_line(&self.log_path, needles)
    }

    /// Polls `/health/ready` (no other traffic) until it answers `status`.
    pub fn wait_ready(&self, status: u16) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let res = self.get("/health/ready");
            if res.status == status {
                return res.json();
            }
            assert!(
                Instant::now() < deadline,
                "/health/ready stayed {}: {}",
                res.status,
                res.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl TestApp {
    /// Stops the server through the drain SIGTERM starts (stop accepting, finish in-flight
    /// requests, commit the audit queue) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Waits until the audit table holds at least `n` rows (rejected requests are queued
    /// without waiting for their commit).
    pub fn wait_for_rows(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.stored_count("");
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "audit table has {got} rows, expected {n}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `sql` on the audit database file; it must return one column of JSON text per row
    /// (build it with `json_object(...)`).
    pub fn db_json(&self, sql: &str) -> Vec<serde_json::Value> {
        db_json(&self.db_path, sql)
    }

    fn on_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }

    /// Runs `select <expr> from <rest>` on the server's store, SQLite or PostgreSQL, where
    /// `json` is the expression giving one JSON object per row in each dialect.
    pub fn store_json(&self, json: [&str; 2], rest: &str) -> Vec<serde_json::Value> {
        if self.on_postgres() {
            crate::pg::shared()
                .expect("a PostgreSQL server")
                .psql(
                    crate::pg::database_name(&self.database_url),
                    &format!("select {} from {rest}", json[1]),
                )
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON row"))
                .collect()
        } else {
            self.db_json(&format!("select {} from {rest}", json[0]))
        }
    }

    /// Whole audit rows (every column, JSON columns as JSON, times as the RFC 3339 text the
    /// store keeps) from either store: `stored_rows("where request_id = 'x' order by item")`.
    /// The clause must be plain SQL both dialects read.
    pub fn stored_rows(&self, clause: &str) -> Vec<serde_json::Value> {
        self.store_json(
            [
                &inferlog::audit::columns::row_json_sql(),
                &inferlog::audit::columns::pg_row_json_sql(),
            ],
            &format!("prediction {clause}"),
        )
    }

    /// The rows of one request, in item order.
    pub fn rows_of(&self, request_id: &str) -> Vec<serde_json::Value> {
        self.stored_rows(&format!(
            "where request_id = '{}' order by item",
            request_id.replace('\'', "''")
        ))
    }

    /// How many audit rows match `clause` (`""` for all), in either store.
    pub fn stored_count(&self, clause: &str) -> i64 {
        self.store_json(
            [
                "json_object('n', count(*))",
                "json_build_object('n', count(*))",
            ],
            &format!("prediction {clause}"),
        )[0]["n"]
            .as_i64()
            .unwrap()
    }

    /// Request ids with an answered row, as [`served_request_ids`] reads them, in either store.
    pub fn served_request_ids(&self) -> std::collections::HashSet<String> {
        self.store_json(
            [
                "json_object('r', coalesce(client_request_id, request_id))",
                "json_build_object('r', coalesce(client_request_id, request_id))",
            ],
            "prediction where status = 200",
        )
        .iter()
        .map(|v| v["r"].as_str().unwrap().to_string())
        .collect()
    }
}

/// Another connection holding SQLite's write lock on an audit file, as a second writer (a long
/// `sqlite3` transaction, a backup) would: commits fail once the busy timeout passes.
pub struct StoreLock {
    rt: tokio::runtime::Runtime,
    conn: Option<sqlx::SqliteConnection>,
}

impl StoreLock {
    ///
    /// SQLite's busy handler sleeps up to 100 ms between tries and a writer under load leaves
    /// the lock free only for moments between its commits, so a plain `begin exclusive` can
    /// starve past any busy timeout. The lock is asked for again every fraction of a
    /// millisecond instead, for up to a minute.
    pub fn take(db: &Path) -> StoreLock {
        use sqlx::ConnectOptions;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .busy_timeout(Duration::ZERO);
        let conn = rt.block_on(async {
            let mut c = options.connect().await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match sqlx::query("begin exclusive").execute(&mut c).await {
                    Ok(_) => break,
                    Err(sqlx::Error::Database(e))
                        if e.code().as_deref() == Some("5") && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    Err(e) => panic!("cannot take the write lock of {}: {e}", db.display()),
                }
            }
            c
        });
        StoreLock {
            rt,
            conn: Some(conn),
        }
    }

    /// A read transaction kept open: it holds an old snapshot, as a long `sqlite3` session
    /// does, so checkpoints cannot copy what is written after it.
    pub fn read_snapshot(db: &Path) -> StoreLock {
        StoreLock::open(db, &["begin", "select count(*) from prediction"])
    }

    /// A connection of its own that has run `statements` and keeps its transaction open.
    fn open(db: &Path, statements: &[&str]) -> StoreLock {
        use sqlx::Connection;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("sqlite://{}", db.display());
        let conn = rt.block_on(async {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            for sql in statements {
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            c
        });
        StoreLock {
            rt,
            conn: Some(conn),
        }
    }

    pub fn release(mut self) {
        if let Some(mut c) = self.conn.take() {
            self.rt.block_on(async {
                sqlx::query("rollback").execute(&mut c).await.unwrap();
            });
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `work` on a connection of its own to an SQLite file, as another process would.
fn on_db<T>(path: &Path, work: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> T) -> T {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open audit db");
        let out = work(&mut conn).await;
        conn.close().await.unwrap();
        out
    })
}

/// Creates an SQLite file migrated with the project's migrations up to number `upto` only: a
/// store as an older release left it.
pub fn db_at_migration(path: &Path, upto: u32) {
    let dir = tempfile::tempdir().unwrap();
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite")).unwrap()
    {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let number: u32 = name[..4].parse().unwrap();
        if number <= upto {
            std::fs::copy(entry.path(), dir.path().join(&name)).unwrap();
        }
    }
    std::fs::File::create(path).unwrap();
    on_db(path, async |conn| {
        let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
        migrator.run(conn).await.unwrap();
    })
}

/// A child process killed when this value is dropped, also when a test panics (a server left
/// running would hold the test runner's output pipes open).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs statements on an SQLite file.
pub fn db_exec(path: &Path, sql: &str) {
    on_db(path, async |conn| {
        sqlx::raw_sql(sql).execute(conn).await.expect(sql);
    })
}

/// Runs `sql` (one JSON text column) on an SQLite file.
pub fn db_json(path: &Path, sql: &str) -> Vec<serde_json::Value> {
    use sqlx::Row;
    on_db(path, async |conn| {
        let rows = sqlx::query(sql).fetch_all(conn).await.expect(sql);
        rows.iter()
            .map(|r| {
                let text: String = r.get(0);
                serde_json::from_str(&text).expect("a JSON column")
            })
            .collect()
    })
}

/// Request ids with an answered (status 200) row in the audit file: the client's id where
/// the client sent one (load tests name their requests), else the server's.
pub fn served_request_ids(db: &Path) -> std::collections::HashSet<String> {
    db_json(
        db,
        "select json_object('r', coalesce(client_request_id, request_id)) from prediction \
         where status = 200",
    )
    .iter()
    .map(|v| v["r"].as_str().unwrap().to_string())
    .collect()
}

pub fn wait_for_line(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`send_raw`], but `None` when the connection fails or no full response comes back.
pub fn try_send_raw(addr: &str, bytes: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    stream.write_all(bytes).ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    buf.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| Response::parse(&buf))
}

pub fn send_raw(addr: &str, bytes: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer (413, 400) and close before it has read everything we send.
    let _ = stream.write_all(bytes);
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    Response::parse(&buf)
}

/// A page of `GET /audit`.
#[derive(Debug)]
pub struct AuditPage {
    pub records: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}

impl AuditPage {
    /// The request ids of the records, in page order.
    pub fn request_ids(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn parse(buf: &[u8]) -> Response {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response in {:?}", String::from_utf8_lossy(buf)));
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = buf[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        if chunked {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts this is an error response in the service's JSON shape and returns its code.
    pub fn error_code(&self) -> String {
        let body = self.json();
        let err = &body["error"];
        let code = err["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in {body}"));
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no error.message in {body}"
        );
        assert_eq!(
            err["request_id"].as_str(),
            self.header("x-request-id"),
            "error body and header disagree on the request id"
        );
        code.to_string()
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// The model version of the shipped artifact, read once.
pub fn shipped_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let a: serde_json::Value =
            serde_json::from_slice(&std::fs::read(shipped_model()).unwrap()).unwrap();
        a["version"].as_str().unwrap().to_string()
    })
}

/// The value of an unlabelled sample in a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
