//! Connections of their own to an SQLite audit file, as another process would open one: statements
//! and JSON reads, a held write lock or read snapshot, and a file at an older migration.

use std::path::Path;
use std::time::{Duration, Instant};

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
