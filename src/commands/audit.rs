//! `inferlog audit`: the `/audit` queries run on the database file, printed as a table, CSV or
//! JSON lines. It opens the file read-only, so it is safe beside a running server.

use std::io::Write;
use std::path::Path;

use super::progress::Progress;
use crate::audit::export::{SageMaker, Walk, csv_chunk, jsonl_chunk};
use crate::audit::url::DatabaseUrl;
use crate::audit::{
    AuditFilter, AuditRecord, Order, Store, StoreFault, StoreOptions, StoredRecord, Summary, spill,
};
use crate::cli::{AuditAction, AuditCliArgs, OutputFormat};

const PAGE: usize = 1000;

pub fn run(args: &AuditCliArgs) -> anyhow::Result<()> {
    match &args.action {
        Some(AuditAction::Snapshot { file, store }) => {
            return snapshot(&store.database_url.parse()?, file);
        }
        Some(AuditAction::Replay {
            file,
            database_url,
            models,
            progress,
        }) => return replay(&database_url.parse()?, file, models, *progress),
        Some(AuditAction::Copy {
            from,
            to,
            models,
            progress,
        }) => return copy(&from.parse()?, &to.parse()?, models, *progress),
        Some(AuditAction::Prune {
            store,
            before,
            dry_run,
            batch_rows,
            progress,
        }) => {
            let url = store.database_url.parse()?;
            return prune(&url, before, *dry_run, *batch_rows as usize, *progress);
        }
        Some(AuditAction::RebuildRollups {
            store,
            models,
            progress,
        }) => return rebuild_rollups(&store.database_url.parse()?, models, *progress),
        None => {}
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    super::runtime()?.block_on(print(args, &mut out))?;
    out.flush()?;
    Ok(())
}

/// `inferlog audit snapshot FILE`: a consistent copy of the store, taken beside a running
/// server.
fn snapshot(database_url: &DatabaseUrl, file: &std::path::Path) -> anyhow::Result<()> {
    if file.exists() {
        anyhow::bail!("{} exists already; give a new file", file.display());
    }
    super::runtime()?.block_on(async {
        let store = Store::open(database_url, &StoreOptions::read_only()).await?;
        let result = store.snapshot(file).await;
        store.close().await;
        result.map_err(|e| anyhow::anyhow!("{}: {}", e.cause(), e.detail()))
    })?;
    super::outln!(
        "wrote a snapshot of the audit database to {}",
        file.display()
    )?;
    Ok(())
}

/// Options for a command that writes rows: the service's defaults, with the training bins of
/// every artifact in `models` that loads (a missing or unreadable folder leaves rows without
/// bin counts, as a version the service never served would).
fn writable_with(models: &Path) -> StoreOptions {
    let opts = StoreOptions::writable();
    let Ok(entries) = std::fs::read_dir(models) else {
        eprintln!(
            "note: no models folder at {}: rows get no drift bin counts",
            models.display()
        );
        return opts;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_some_and(|e| e == "json") {
            if let Ok(artifact) = crate::model::Artifact::load(&path) {
                opts.baselines
                    .register(&crate::model::Model::new(artifact, path));
            }
        }
    }
    opts
}

/// `inferlog audit prune --before TIME`: the rows received before `before` and their
/// feedback removed, `batch` rows per transaction (or, with `dry_run`, counted).
fn prune(
    database_url: &DatabaseUrl,
    before: &chrono::DateTime<chrono::Utc>,
    dry_run: bool,
    batch: usize,
    asked: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let shown = crate::audit::format_time(before);
    let fail = |e: StoreFault| anyhow::anyhow!("{}: {}", e.cause(), e.detail());
    let (pruned, dry) = super::runtime()?.block_on(async {
        let opts = if dry_run {
            StoreOptions::read_only()
        } else {
            StoreOptions::writable()
        };
        let store = Store::open(database_url, &opts).await?;
        let result: anyhow::Result<(u64, u64)> = async {
            let due = store.prunable(before).await.map_err(fail)?;
            if dry_run {
                return Ok((due.rows, due.feedback));
            }
            let progress = Progress::new("rows removed", Some(due.rows), asked);
            let (mut rows, mut feedback) = (0, 0);
            loop {
                let done = store.prune_batch(before, batch).await.map_err(fail)?;
                if done.rows == 0 {
                    break;
                }
                rows += done.rows;
                feedback += done.feedback;
                progress.update(rows);
            }
            progress.finish();
            Ok((rows, feedback))
        }
        .await;
        store.close().await;
        anyhow::Ok((result?, dry_run))
    })?;
    let (rows, feedback) = pruned;
    if dry {
        super::outln!(
            "would remove {rows} audit rows received before {shown} and {feedback} feedback on them"
        )?;
    } else {
        super::outln!(
            "removed {rows} audit rows received before {shown} and {feedback} feedback on them in {:.1} s",
            started.elapsed().as_secs_f64()
        )?;
    }
    Ok(())
}

/// `inferlog audit rebuild-rollups`: the rollups recomputed from the rows.
fn rebuild_rollups(database_url: &DatabaseUrl, models: &Path, asked: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let opts = writable_with(models);
    let rows = super::runtime()?.block_on(async {
        let store = Store::open(database_url, &opts).await?;
        let total = store
            .summary(&AuditFilter::default())
            .await
            .ok()
            .map(|s| s.rows as u64);
        let progress = Progress::new("rows counted", total, asked);
        let counted = std::sync::atomic::AtomicU64::new(0);
        let result = store
            .rebuild_rollups(&|n| {
                counted.store(n, std::sync::atomic::Ordering::Relaxed);
                progress.update(n);
            })
            .await;
        progress.finish();
        store.close().await;
        result.map_err(|e| anyhow::anyhow!("{}: {}", e.cause(), e.detail()))?;
        anyhow::Ok(counted.into_inner())
    })?;
    super::outln!(
        "rebuilt the audit rollups from {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// `inferlog audit replay FILE`: the rows of a spill file into the store, each at most once.
fn replay(
    database_url: &DatabaseUrl,
    file: &Path,
    models: &Path,
    asked: bool,
) -> anyhow::Result<()> {
    if !file.exists() {
        anyhow::bail!("no spill file at {}", file.display());
    }
    let started = std::time::Instant::now();
    let opts = writable_with(models);
    // One line a row: the total for the estimate.
    let total = std::fs::read(file)
        .ok()
        .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count() as u64);
    let done = super::runtime()?.block_on(async {
        let store = Store::open(database_url, &opts).await?;
        let progress = Progress::new("rows replayed", total, asked);
        let result = spill::replay(&store, file, spill::TornFile::Replace, &|n| {
            progress.update(n)
        })
        .await;
        progress.finish();
        store.close().await;
        result
    })?;
    super::outln!(
        "replayed {} rows from {}: {} written, {} already in the store, in {:.1} s",
        done.rows,
        file.display(),
        done.inserted,
        done.rows - done.inserted,
        started.elapsed().as_secs_f64()
    )?;
    if let Some(kept) = &done.torn_file {
        super::outln!(
            "{} torn pieces ({} bytes) were not whole rows and were skipped; kept in {}",
            done.torn_pieces,
            done.torn_bytes,
            kept.display()
        )?;
    }
    Ok(())
}

/// Rows read and written per transaction by `inferlog audit copy`.
const COPY_PAGE: usize = 4096;

/// `inferlog audit copy --from URL --to URL`: every row (oldest first) and every feedback,
/// each written once however often the copy runs.
fn copy(from: &DatabaseUrl, to: &DatabaseUrl, models: &Path, asked: bool) -> anyhow::Result<()> {
    let fail = |what: &str, e: StoreFault| anyhow::anyhow!("{what}: {}", e.detail());
    let started = std::time::Instant::now();
    let opts = writable_with(models);
    let (rows, written, feedback, feedback_new) = super::runtime()?.block_on(async {
        let source = Store::open(from, &StoreOptions::read_only()).await?;
        let target = Store::open(to, &opts).await?;
        let total = source
            .summary(&AuditFilter::default())
            .await
            .ok()
            .map(|s| s.rows as u64);
        let progress = Progress::new("rows copied", total, asked);
        let result: anyhow::Result<(u64, u64, u64, u64)> = async {
            let filter = AuditFilter {
                order: Order::Asc,
                ..AuditFilter::default()
            };
            let mut walk = Walk::new(source.clone(), filter, None);
            let (mut rows, mut written) = (0, 0);
            while let Some(page) = walk
                .next_page(COPY_PAGE)
                .await
                .map_err(|e| fail("reading", e))?
            {
                let batch = page
                    .into_iter()
                    .map(StoredRecord::into_record)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let refs: Vec<&AuditRecord> = batch.iter().collect();
                let done = target
                    .import_batch(&refs)
                    .await
                    .map_err(|e| fail("writing", e))?;
                rows += batch.len() as u64;
                written += done.inserted;
                progress.update(rows);
            }
            progress.finish();
            let (mut feedback, mut feedback_new, mut after) = (0, 0, 0);
            loop {
                let page = source
                    .feedback_after(after, COPY_PAGE)
                    .await
                    .map_err(|e| fail("reading feedback", e))?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for fb in page.iter().map(|f| &f.feedback) {
                    feedback += 1;
                    if target
                        .copy_feedback(fb)
                        .await
                        .map_err(|e| fail("writing feedback", e))?
                    {
                        feedback_new += 1;
                    }
                }
            }
            Ok((rows, written, feedback, feedback_new))
        }
        .await;
        source.close().await;
        target.close().await;
        result
    })?;
    super::outln!(
        "copied {rows} audit rows ({written} new, {} already there) and {feedback} feedback ({feedback_new} new) in {:.1} s",
        rows - written,
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// The summary as CSV: one `measure,key,value` line per figure (`rows,,42`,
/// `label,virginica,17`, `latency_us,p99,812`).
fn summary_csv(s: &Summary) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["measure", "key", "value"])?;
    w.write_record(["rows", "", &s.rows.to_string()])?;
    w.write_record(["requests", "", &s.requests.to_string()])?;
    for (measure, counts) in [
        ("model", &s.by_model),
        ("label", &s.by_label),
        ("status", &s.by_status),
        ("error_code", &s.by_error_code),
    ] {
        for c in counts {
            w.write_record([
                measure,
                c.key.as_deref().unwrap_or(""),
                &c.count.to_string(),
            ])?;
        }
    }
    let l = &s.latency_us;
    for (key, value) in [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p95", l.p95),
        ("p99", l.p99),
        ("max", l.max),
    ] {
        let value = value.map(|v| v.to_string()).unwrap_or_default();
        w.write_record(["latency_us", key, &value])?;
    }
    Ok(w.into_inner()?)
}

/// The filter the flags describe.
fn filter(args: &AuditCliArgs) -> anyhow::Result<AuditFilter> {
    args.filters
        .in_order(args.order)
        .map_err(|_| anyhow::anyhow!("--since is later than --until"))
}

async fn print(args: &AuditCliArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let filter = filter(args)?;
    let url: DatabaseUrl = args.store.database_url.parse()?;
    let store = Store::open(&url, &StoreOptions::read_only()).await?;
    let result = write_rows(args, filter, &store, out).await;
    store.close().await;
    result
}

async fn write_rows(
    args: &AuditCliArgs,
    filter: AuditFilter,
    store: &Store,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if args.summary {
        let summary = store.summary(&filter).await?;
        if args.format == OutputFormat::Csv {
            out.write_all(&summary_csv(&summary)?)?;
        } else {
            serde_json::to_writer_pretty(&mut *out, &summary)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let mut remaining = args.limit.unwrap_or(usize::MAX);
    let mut filter = filter;
    // Data Capture records gather the rows of a request, consecutive oldest first.
    if args.format == OutputFormat::Sagemaker {
        filter.order = crate::audit::Order::Asc;
    }
    let mut walk = Walk::new(store.clone(), filter, None);
    let mut first = true;
    let mut sagemaker = SageMaker::default();
    while remaining > 0 {
        let Some(records) = walk.next_page(PAGE.min(remaining)).await? else {
            break;
        };
        let n = records.len();
        match args.format {
            OutputFormat::Csv => out.write_all(&csv_chunk(&records, first)?)?,
            OutputFormat::Jsonl => out.write_all(&jsonl_chunk(&records)?)?,
            OutputFormat::Sagemaker => out.write_all(&sagemaker.chunk(records)?)?,
            OutputFormat::Table => {
                if first {
                    writeln!(
                        out,
                        "{:>8}  {:<27}  {:<36}  {:>4}  {:<10}  {:<12}  {:>6}  {:<20}  {:>10}  {:<20}  {:<16}  features",
                        "id",
                        "received_at",
                        "request_id",
                        "item",
                        "model",
                        "label",
                        "status",
                        "error_code",
                        "latency_us",
                        "client_request_id",
                        "outliers"
                    )?;
                }
                for r in &records {
                    writeln!(
                        out,
                        "{:>8}  {:<27}  {:<36}  {:>4}  {:<10}  {:<12}  {:>6}  {:<20}  {:>10}  {:<20}  {:<16}  {}",
                        r.id,
                        r.received_at,
                        r.request_id,
                        r.item,
                        r.model.as_deref().unwrap_or("-"),
                        r.label.as_deref().unwrap_or("-"),
                        r.status,
                        r.error_code.as_deref().unwrap_or("-"),
                        r.latency_us,
                        r.client_request_id.as_deref().unwrap_or("-"),
                        r.outliers.as_ref().map(|o| o.get()).unwrap_or("-"),
                        r.features.as_ref().map(|f| f.get()).unwrap_or("-"),
                    )?;
                }
            }
        }
        first = false;
        remaining = remaining.saturating_sub(n);
    }
    out.write_all(&sagemaker.finish()?)?;
    Ok(())
}
