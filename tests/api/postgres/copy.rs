//! `inferlog audit copy`: a SQLite history (and its feedback) moved into PostgreSQL once.

use std::path::Path;

/// `inferlog audit copy` moves a 100,000-row SQLite history (and its feedback) into
/// PostgreSQL; counts and sampled rows match, and a second run copies nothing new.
#[test]
fn audit_copy_moves_a_sqlite_history_into_postgres_once() {
    let Some(url) = crate::pg::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    write_a_history_from_before_rollups(&db);
    copy_once_with_progress(&db, &url);
    let server = crate::pg::shared().unwrap();
    let name = crate::pg::database_name(&url);
    let errors_before = server
        .log_of(name)
        .iter()
        .filter(|l| l.contains("ERROR"))
        .count();
    copy_again_without_progress(&db, &url);
    // Rows already there are skipped without a failed statement in the server's log.
    let errors: Vec<String> = server
        .log_of(name)
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), errors_before, "{errors:#?}");
    assert_eq!(errors_before, 0, "{errors:#?}");
    assert_eq!(
        server.psql(name, "select count(*) from prediction").trim(),
        "100000"
    );
    assert_eq!(
        server.psql(name, "select count(*) from feedback").trim(),
        "100"
    );
    assert_sampled_requests_read_the_same(&db, &url);
}

/// An SQLite store at migration 5 (before rollups) holding 100,000 rows (two to most
/// requests), a tenth of them rejected, and feedback on 100 answered rows.
fn write_a_history_from_before_rollups(db: &Path) {
    crate::helpers::db_at_migration(db, 5);
    crate::helpers::db_exec(
        db,
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 100000)
         insert into prediction (request_id, item, received_at, model, model_version, features,
                                 prediction, label, status, error_code, latency_us, client_addr,
                                 raw_body, outliers, client_request_id)
         select 'req-' || (i / 2), i % 2,
                strftime('%Y-%m-%dT%H:%M:%f000Z', '2026-11-01', '+' || (i / 2) || ' seconds'),
                'iris', 'v1', '[' || (i % 7) || '.5,2.5,1.5,0.5]',
                case when i % 10 = 0 then null else i % 3 end,
                case when i % 10 = 0 then null else 'label' || (i % 3) end,
                case when i % 10 = 0 then 422 else 200 end,
                case when i % 10 = 0 then 'wrong_feature_count' end,
                i, '10.0.0.' || (i % 250), case when i % 10 = 0 then '{\"x\": 1}' end,
                case when i % 97 = 0 then '[\"petal_width\"]' end,
                case when i % 5 = 0 then 'client-' || i end
         from n;
         insert into feedback (request_id, item, label, received_at)
         select request_id, item, 'label1', '2026-11-02T00:00:00.000000Z' from prediction
         where status = 200 and id % 1000 = 1;",
    );
}

/// The first copy with --progress: lines on stderr (no terminal here), the summary on
/// stdout.
fn copy_once_with_progress(db: &Path, url: &str) {
    let out = crate::shutdown::binary()
        .args(["audit", "copy", "--progress", "--from"])
        .arg(db)
        .args(["--to", url])
        .output()
        .unwrap();
    let (first, progress) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{progress}");
    assert!(
        first.contains(
            "copied 100000 audit rows (100000 new, 0 already there) and 100 feedback (100 new) in "
        ),
        "{first}"
    );
    // (The source, from before rollups, cannot tell its total: no estimate of time left.)
    assert!(
        progress.contains("rows copied, ") && progress.contains(" rows/s"),
        "{progress}"
    );
}

/// A second copy, without --progress and no terminal: no progress lines, and nothing new.
fn copy_again_without_progress(db: &Path, url: &str) {
    let out = crate::shutdown::binary()
        .args(["audit", "copy", "--from"])
        .arg(db)
        .args(["--to", url])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let again = String::from_utf8_lossy(&out.stdout);
    assert!(
        again.contains("(0 new, 100000 already there) and 100 feedback (0 new)"),
        "{again}"
    );
}

/// Sampled requests read the same from both stores, but for their ids, and feedback joins the
/// same rows.
fn assert_sampled_requests_read_the_same(db: &Path, url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use inferlog::audit::{Store, StoreOptions};
        let old = Store::open(
            &inferlog::audit::url::DatabaseUrl::sqlite_file(db),
            &StoreOptions::read_only(),
        )
        .await
        .unwrap();
        let new = Store::open(&url.parse().unwrap(), &StoreOptions::read_only())
            .await
            .unwrap();
        for request in ["req-0", "req-5", "req-12345", "req-49999", "req-50000"] {
            let strip = |rows: Vec<inferlog::audit::StoredRecord>| {
                rows.into_iter()
                    .map(|mut r| {
                        r.id = 0;
                        serde_json::to_value(r).unwrap()
                    })
                    .collect::<Vec<_>>()
            };
            let a = strip(old.request(request).await.unwrap());
            let b = strip(new.request(request).await.unwrap());
            assert!(!a.is_empty());
            assert_eq!(a, b, "{request}");
        }
        let perf_old = old.confusion("iris", &Default::default()).await.unwrap();
        let mut perf_new = new.confusion("iris", &Default::default()).await.unwrap();
        let mut perf_old = perf_old;
        perf_old.sort();
        perf_new.sort();
        assert_eq!(perf_old, perf_new, "feedback joins the same rows");
        old.close().await;
        new.close().await;
    });
}
