//! The failure paths of the writer's steps, on a real SQLite file that another connection
//! locks, as a second writer would. Each runs in milliseconds: the store's busy timeout
//! and the writer's backoff are a few milliseconds here.

use std::time::Duration;

use sqlx::Connection;
use tokio::sync::oneshot;

use super::*;
use crate::audit::fault::FaultKind;
use crate::audit::modes::AuditMode;
use crate::audit::modes::StoreOptions;
use crate::audit::record::Latency;

struct Setup {
    dir: tempfile::TempDir,
    url: String,
    writer: Writer,
    tx: Queue,
    health: Arc<StoreHealth>,
    stop: watch::Sender<Option<Instant>>,
}

/// The handlers' end of the queue, as the sink holds it.
struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    rows: Arc<tokio::sync::Semaphore>,
}

impl Queue {
    fn send(&self, records: Vec<AuditRecord>, ack: Option<Ack>) {
        let permit = Arc::clone(&self.rows)
            .try_acquire_many_owned(records.len() as u32)
            .expect("room in the queue");
        self.tx
            .send(Job {
                records,
                ack,
                permit,
            })
            .ok()
            .unwrap();
    }
}

async fn setup() -> Setup {
    setup_waiting(Duration::from_millis(5)).await
}

/// A writer whose commits wait up to `busy_timeout` for a lock.
async fn setup_waiting(busy_timeout: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let opts = StoreOptions {
        busy_timeout,
        ..StoreOptions::writable()
    };
    let store = Store::open(&url.parse().unwrap(), &opts).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(None);
    let health = Arc::new(StoreHealth::default());
    let log = Logger::root(slog::Discard, slog::o!());
    let writer_opts = WriterOptions {
        writers: 1,
        mode: AuditMode::Durable,
        queue_rows: 16,
        queue_timeout: Duration::from_millis(10),
        commit_timeout: Duration::from_secs(1),
        max_backoff: Duration::from_millis(60),
        metrics: WriterMetrics::default(),
        spill: Some(dir.path().join("audit.db-spill.jsonl")),
    };
    let shared = Shared::start(&store, 1, &log);
    let writer = Writer::new(
        store,
        rx,
        stop_rx,
        log,
        Arc::clone(&health),
        shared,
        &writer_opts,
    );
    Setup {
        dir,
        url,
        writer,
        tx: Queue {
            tx,
            rows: Arc::new(tokio::sync::Semaphore::new(16)),
        },
        health,
        stop,
    }
}

fn row(request_id: &str) -> AuditRecord {
    AuditRecord {
        request_id: request_id.into(),
        client_request_id: None,
        item: 0,
        received_at: chrono::Utc::now(),
        model: Some("iris".into()),
        model_version: None,
        features: Some("[1,2,3,4]".into()),
        prediction: Some(0),
        label: Some("setosa".into()),
        status: 200,
        error_code: None,
        latency: Latency::Answered(7),
        client_addr: None,
        raw_body: None,
        outliers: None,
        writer: None,
        probabilities: None,
        value: None,
    }
}

/// Another connection holding the write lock.
async fn lock(url: &str) -> sqlx::SqliteConnection {
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("begin exclusive")
        .execute(&mut c)
        .await
        .unwrap();
    c
}

async fn request_ids(url: &str) -> Vec<String> {
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query_scalar("select request_id from prediction order by id")
        .fetch_all(&mut c)
        .await
        .unwrap()
}

fn durable(tx: &Queue, id: &str) -> oneshot::Receiver<Result<Instant, StoreFault>> {
    let (ack, done) = oneshot::channel();
    tx.send(vec![row(id)], Some(ack));
    done
}

fn owed(tx: &Queue, id: &str) {
    tx.send(vec![row(id)], None);
}

#[tokio::test]
async fn a_failed_commit_refuses_durable_jobs_and_retries_owed_rows_once() {
    let mut s = setup().await;
    let mut other = lock(&s.url).await;
    let refused = durable(&s.tx, "durable");
    owed(&s.tx, "owed");
    s.writer.collect_round().await;
    let fault = s.writer.commit_round().await.unwrap_err();
    assert_eq!(fault.kind, FaultKind::LockedByOther);
    assert_eq!(
        refused.await.unwrap().unwrap_err().kind,
        FaultKind::LockedByOther
    );
    assert!(
        s.health
            .problem()
            .unwrap()
            .contains("locked by another process")
    );

    sqlx::query("rollback").execute(&mut other).await.unwrap();
    s.writer.wait_while_failing().await;
    // Owed rows are retried without waiting for new work.
    s.writer.collect_round().await;
    assert_eq!(s.writer.commit_round().await.unwrap(), 1);
    assert_eq!(request_ids(&s.url).await, ["owed"]);
    assert!(s.health.problem().is_none());
}

#[tokio::test]
async fn a_durable_job_whose_handler_gave_up_is_not_written() {
    let mut s = setup().await;
    let gave_up = durable(&s.tx, "gave-up");
    drop(gave_up);
    let kept = durable(&s.tx, "kept");
    s.writer.collect_round().await;
    assert_eq!(s.writer.commit_round().await.unwrap(), 1);
    assert!(kept.await.unwrap().is_ok());
    assert_eq!(request_ids(&s.url).await, ["kept"]);
}

#[tokio::test]
async fn durable_rows_carry_the_latency_of_the_moment_they_were_written() {
    let mut s = setup().await;
    let arrived = Instant::now() - Duration::from_millis(250);
    let (ack, done) = oneshot::channel();
    let mut r = row("slow");
    r.latency = Latency::UntilStored(arrived);
    s.tx.send(vec![r], Some(ack));
    s.writer.collect_round().await;
    s.writer.commit_round().await.unwrap();
    let stored_at = done.await.unwrap().unwrap();
    let mut c = sqlx::SqliteConnection::connect(&s.url).await.unwrap();
    let latency: i64 = sqlx::query_scalar("select latency_us from prediction")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(
        latency as u64,
        crate::audit::micros_between(arrived, stored_at)
    );
    assert!(latency >= 250_000, "{latency}");
}

#[tokio::test]
async fn readiness_recovers_by_probing_without_traffic() {
    let mut s = setup().await;
    let mut other = lock(&s.url).await;
    s.health.set_failed("locked".into());
    // Nothing is queued: collecting waits out the backoff, then probes the store.
    s.writer.collect_round().await;
    assert!(
        s.health
            .problem()
            .unwrap()
            .contains("locked by another process")
    );
    sqlx::query("rollback").execute(&mut other).await.unwrap();
    s.writer.collect_round().await;
    assert!(s.health.problem().is_none());
    // The probe wrote nothing.
    assert!(request_ids(&s.url).await.is_empty());
}

#[tokio::test]
async fn shutdown_with_a_failing_store_spills_every_row_held_by_the_deadline() {
    let mut s = setup().await;
    let _other = lock(&s.url).await;
    // The queue is full (16 rows): ten owed from a failed round, six still queued.
    for i in 0..10 {
        owed(&s.tx, &format!("never-{i}"));
    }
    s.writer.collect_round().await;
    assert!(s.writer.commit_round().await.is_err());
    for i in 10..16 {
        owed(&s.tx, &format!("never-{i}"));
    }
    assert_eq!(
        s.tx.rows.available_permits(),
        0,
        "the rows hold their places"
    );
    let deadline = Instant::now() + Duration::from_millis(300);
    s.stop.send(Some(deadline)).unwrap();
    let spill = s.dir.path().join("audit.db-spill.jsonl");
    tokio::time::timeout(Duration::from_secs(5), s.writer.run())
        .await
        .expect("the drain ended");
    // Near its deadline, not after a backoff (seconds): the slack is for a loaded machine.
    assert!(
        Instant::now() < deadline + Duration::from_millis(1000),
        "late"
    );
    drop(_other);
    assert!(request_ids(&s.url).await.is_empty());
    let lines = std::fs::read_to_string(&spill).unwrap();
    let mut spilled: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    spilled.sort();
    let mut expected: Vec<String> = (0..16).map(|i| format!("never-{i}")).collect();
    expected.sort();
    assert_eq!(spilled, expected);
    assert_eq!(s.tx.rows.available_permits(), 16, "places given back");
}

/// A commit already waiting for a lock (a busy timeout of 20 s) when shutdown begins is
/// cut off at the moment rows must be spilled, and its rows are spilled: the drain ends
/// by its deadline, not when the busy timeout runs out.
#[tokio::test]
async fn a_commit_waiting_for_a_lock_when_shutdown_begins_is_cut_off_and_spilled() {
    let s = setup_waiting(Duration::from_secs(20)).await;
    let other = lock(&s.url).await;
    for i in 0..8 {
        owed(&s.tx, &format!("waiting-{i}"));
    }
    let stop = s.stop.clone();
    let began = Instant::now();
    let deadline = began + Duration::from_millis(600);
    tokio::spawn(async move {
        // Once the commit is waiting for the lock.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(Some(deadline)).unwrap();
    });
    tokio::time::timeout(Duration::from_secs(10), s.writer.run())
        .await
        .expect("the drain ended");
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(600 + 1000),
        "the drain took {took:?} with its deadline at 600 ms"
    );
    drop(other);
    assert!(request_ids(&s.url).await.is_empty());
    let spill = s.dir.path().join("audit.db-spill.jsonl");
    let text = std::fs::read_to_string(&spill).unwrap();
    assert_eq!(text.lines().count(), 8, "{text}");
    assert_eq!(s.tx.rows.available_permits(), 16, "places given back");
}

#[tokio::test]
async fn every_row_a_sender_got_in_before_the_writer_stopped_is_written() {
    let s = setup().await;
    let Setup {
        dir: _dir,
        url,
        writer,
        tx,
        stop,
        ..
    } = s;
    let queue = Queue {
        tx: tx.tx.clone(),
        rows: Arc::new(tokio::sync::Semaphore::new(1_000_000)),
    };
    drop(tx);
    let run = tokio::spawn(writer.run());
    // A handler still running on a worker that has not stopped: it keeps sending until
    // the queue refuses, and counts what was taken.
    let sender = tokio::spawn(async move {
        let mut taken = 0;
        loop {
            let permit = Arc::clone(&queue.rows).try_acquire_owned().unwrap();
            let job = Job {
                records: vec![row(&format!("late-{taken}"))],
                ack: None,
                permit,
            };
            if queue.tx.send(job).is_err() {
                return taken;
            }
            taken += 1;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.send(Some(Instant::now() + Duration::from_secs(5)))
        .unwrap();
    run.await.unwrap();
    let taken = sender.await.unwrap();
    assert!(taken > 0);
    assert_eq!(
        request_ids(&url).await.len(),
        taken,
        "rows taken but not written"
    );
}

#[tokio::test]
async fn a_shutdown_is_seen_while_the_writer_backs_off() {
    let mut s = setup().await;
    let _other = lock(&s.url).await;
    owed(&s.tx, "owed");
    s.writer.collect_round().await;
    assert!(s.writer.commit_round().await.is_err());
    s.writer.backoff = Duration::from_secs(60);
    s.stop
        .send(Some(Instant::now() + Duration::from_millis(300)))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), s.writer.wait_while_failing())
        .await
        .expect("the backoff ended with the shutdown");
    assert!(s.writer.draining.is_some());
}
