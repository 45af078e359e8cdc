//! `TestApp`'s reads of its own audit store, whichever backend it runs on: rows, counts and
//! JSON built by SQL in each dialect.

use std::time::{Duration, Instant};

use super::{TestApp, db_json};

impl TestApp {
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
