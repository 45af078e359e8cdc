//! Property test of the audit queries: random records, random filters, every page walked, all
//! compared with a plain in-memory filter written here independently of the SQL.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use inferlog::audit::{
    AuditFilter, AuditRecord, Latency, Order, StatusFilter, Store, StoreOptions, format_time,
};
use proptest::prelude::*;

const MODELS: [Option<&str>; 3] = [Some("iris"), Some("wine"), None];
const VERSIONS: [&str; 2] = ["v1", "v2"];
const LABELS: [Option<&str>; 4] = [Some("a"), Some("b"), Some("c"), None];
const STATUSES: [u16; 3] = [200, 422, 404];
const REQUESTS: [&str; 5] = ["r0", "r1", "r2", "r3", "r4"];
const CLIENT_IDS: [Option<&str>; 3] = [Some("c0"), Some("c1"), None];

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

fn time(offset_us: i64) -> DateTime<Utc> {
    base() + chrono::Duration::microseconds(offset_us)
}

#[derive(Debug, Clone)]
struct Spec {
    request: usize,
    at_us: i64,
    model: usize,
    version: usize,
    label: usize,
    status: usize,
    latency: u64,
    client: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..5usize,
        0..3_600_000_000i64,
        0..3usize,
        0..2usize,
        0..4usize,
        0..3usize,
        0..500u64,
        0..3usize,
    )
        .prop_map(
            |(request, at_us, model, version, label, status, latency, client)| Spec {
                request,
                at_us,
                model,
                version,
                label,
                status,
                latency,
                client,
            },
        )
}

fn record(s: &Spec, item: u32) -> AuditRecord {
    AuditRecord {
        request_id: REQUESTS[s.request].into(),
        client_request_id: CLIENT_IDS[s.client].map(Arc::from),
        item,
        received_at: time(s.at_us),
        model: MODELS[s.model].map(Arc::from),
        model_version: Some(VERSIONS[s.version].into()),
        features: Some(format!("[{},{}]", s.at_us % 97, item).into()),
        prediction: LABELS[s.label].map(|_| s.label as u32),
        label: LABELS[s.label].map(Arc::from),
        status: STATUSES[s.status],
        error_code: (STATUSES[s.status] != 200).then(|| Arc::from("invalid_feature")),
        latency: Latency::Answered(s.latency),
        client_addr: Some("127.0.0.1".into()),
        raw_body: None,
        outliers: None,
        writer: Some("props@2026-11-27T00:00:00Z".into()),
        probabilities: LABELS[s.label].map(|_| "[0.25,0.75]".into()),
        value: None,
    }
}

#[derive(Debug, Clone)]
struct FilterSpec {
    since: Option<i64>,
    until: Option<i64>,
    model: Option<usize>,
    version: Option<usize>,
    label: Option<usize>,
    status: usize,
    request: Option<usize>,
    client: Option<usize>,
    min_latency: Option<i64>,
    asc: bool,
    limit: usize,
}

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    (
        proptest::option::of(0..3_600_000_000i64),
        proptest::option::of(0..3_600_000_000i64),
        proptest::option::of(0..2usize),
        proptest::option::of(0..2usize),
        proptest::option::of(0..3usize),
        0..3usize,
        proptest::option::of(0..5usize),
        proptest::option::of(0..2usize),
        proptest::option::of(0..500i64),
        any::<bool>(),
        1..25usize,
    )
        .prop_map(
            |(
                since,
                until,
                model,
                version,
                label,
                status,
                request,
                client,
                min_latency,
                asc,
                limit,
            )| {
                FilterSpec {
                    since,
                    until,
                    model,
                    version,
                    label,
                    status,
                    request,
                    client,
                    min_latency,
                    asc,
                    limit,
                }
            },
        )
}

impl FilterSpec {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            since: self.since.map(time),
            until: self.until.map(time),
            model: self.model.map(|m| MODELS[m].unwrap().to_string()),
            model_version: self.version.map(|v| VERSIONS[v].to_string()),
            label: self.label.map(|l| LABELS[l].unwrap().to_string()),
            status: [StatusFilter::Ok, StatusFilter::Rejected, StatusFilter::All][self.status],
            request_id: self.request.map(|r| REQUESTS[r].to_string()),
            client_request_id: self.client.map(|c| CLIENT_IDS[c].unwrap().to_string()),
            min_latency_us: self.min_latency,
            order: if self.asc { Order::Asc } else { Order::Desc },
        }
    }

    /// The reference: a plain reading of each filter on the records as written.
    fn keeps(&self, s: &Spec) -> bool {
        self.since.is_none_or(|t| s.at_us >= t)
            && self.until.is_none_or(|t| s.at_us < t)
            && self.model.is_none_or(|m| s.model == m)
            && self.version.is_none_or(|v| s.version == v)
            && self.label.is_none_or(|l| s.label == l)
            && match self.status {
                0 => STATUSES[s.status] == 200,
                1 => STATUSES[s.status] != 200,
                _ => true,
            }
            && self.request.is_none_or(|r| s.request == r)
            && self.client.is_none_or(|c| s.client == c)
            && self.min_latency.is_none_or(|l| s.latency as i64 >= l)
    }
}

/// Writes the records in batches of `batch`, then walks every filter page by page and checks
/// the rows, their order and the summary's count against the reference.
async fn walks_match(
    store: &Store,
    specs: &[Spec],
    batch: usize,
    filters: &[FilterSpec],
) -> Result<(), TestCaseError> {
    let records: Vec<AuditRecord> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| record(s, i as u32))
        .collect();
    for chunk in records.chunks(batch) {
        let refs: Vec<&AuditRecord> = chunk.iter().collect();
        store.write_batch(&refs).await.unwrap();
    }
    for f in filters {
        // Row ids are 1.. in insertion order.
        let mut expected: Vec<i64> = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| f.keeps(s))
            .map(|(i, _)| i as i64 + 1)
            .collect();
        if !f.asc {
            // Newest first: by arrival, then id.
            expected.sort_by_key(|id| std::cmp::Reverse((specs[(*id - 1) as usize].at_us, *id)));
        }
        let filter = f.filter();
        let mut walked = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.page(&filter, cursor, f.limit).await.unwrap();
            prop_assert!(page.len() <= f.limit);
            for r in &page.records {
                let s = &specs[(r.id - 1) as usize];
                prop_assert_eq!(&r.received_at, &format_time(&time(s.at_us)));
                prop_assert_eq!(r.request_id.as_str(), REQUESTS[s.request]);
                prop_assert_eq!(r.client_request_id.as_deref(), CLIENT_IDS[s.client]);
                prop_assert_eq!(r.status, i64::from(STATUSES[s.status]));
            }
            walked.extend(page.records.iter().map(|r| r.id));
            if page.len() < f.limit {
                break;
            }
            cursor = page.positions.last().copied();
        }
        prop_assert_eq!(&walked, &expected, "filter {:?}", f);

        let summary = store.summary(&filter).await.unwrap();
        prop_assert_eq!(summary.rows, expected.len() as i64);
    }
    Ok(())
}

/// A PostgreSQL server of this test's own (the horizon that oldest-first pages follow is the
/// whole server's: other tests' open transactions would hold it back) and the URL of its
/// database, migrated.
fn own_postgres() -> Option<&'static (&'static crate::pg::PgServer, String)> {
    static DB: std::sync::OnceLock<Option<(&'static crate::pg::PgServer, String)>> =
        std::sync::OnceLock::new();
    DB.get_or_init(|| {
        crate::pg::shared()?;
        let server = crate::pg::start_server().expect("a second PostgreSQL server");
        let url = server.fresh_database();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Store::open(&url.parse().unwrap(), &StoreOptions::writable())
                .await
                .unwrap();
            store.close().await;
        });
        Some((server, url))
    })
    .as_ref()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn every_filter_and_page_walk_matches_the_reference(
        specs in proptest::collection::vec(spec(), 0..120),
        batch in 1..40usize,
        filters in proptest::collection::vec(filter_spec(), 1..8),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        rt.block_on(async {
            let store = Store::open(&url.parse().unwrap(), &StoreOptions::writable()).await.unwrap();
            let outcome = walks_match(&store, &specs, batch, &filters).await;
            store.close().await;
            outcome
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(50))]

    #[test]
    fn every_filter_and_page_walk_matches_the_reference_on_postgres(
        specs in proptest::collection::vec(spec(), 0..120),
        batch in 1..40usize,
        filters in proptest::collection::vec(filter_spec(), 1..8),
    ) {
        let Some((server, url)) = own_postgres() else {
            return Ok(());
        };
        server.psql(
            crate::pg::database_name(url),
            "truncate prediction, feedback, rollup, rollup_delta restart identity",
        );
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Store::open(&url.parse().unwrap(), &StoreOptions::writable()).await.unwrap();
            let outcome = walks_match(&store, &specs, batch, &filters).await;
            store.close().await;
            outcome
        })?;
    }
}
