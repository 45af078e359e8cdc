//! The monitoring reports read from the audit store: drift (`/monitor/drift`, `inferlog
//! drift`) and performance (`/monitor/performance`). Each reads the rollups when its range
//! allows (whole minutes), and the rows otherwise; the report says which.
//!
//! It sits above [`crate::audit`] and [`crate::monitor`], which do not know each other: the
//! store gives counts and rows, the monitor turns them into figures.

use crate::audit::rollup::{
    self, EdgeSplit, RollupRange, UNSCORED, abs_error_bucket, abs_error_value, add_to_error_sums,
    kind,
};
use std::sync::Arc;

use crate::audit::{
    AuditFilter, Baselines, ConfusionCell, DriftSample, FaultKind, Store, StoreFault,
};
use crate::model::{Model, Task};
use crate::monitor::drift::{self, DriftReport, DriftRule, LiveCounts, Source};
use crate::monitor::performance::{self, PerformanceReport, RegressionPerformance};
use crate::stats::ErrorSums;

/// Drift of `model`'s current version over the range of `filter`: PSI and class drift over
/// every answered row of that version from the rollups, Kolmogorov–Smirnov and live means over
/// the most recent `rule.sample_rows`. Time bounds inside a minute count the whole minutes
/// from the rollups and only the partial minutes at the edges from their rows
/// ([`EdgeSplit`]); a range rollups cannot count at all gives everything over the most recent
/// `rule.max_rows` rows.
pub async fn drift(
    store: &Store,
    model: &Arc<Model>,
    filter: &AuditFilter,
    rule: &DriftRule,
) -> Result<DriftReport, StoreFault> {
    let filter = AuditFilter {
        model_version: Some(model.artifact.version.clone()),
        ..filter.clone()
    };
    let n = model.n_features();
    let named = AuditFilter {
        model: Some(model.name().to_string()),
        ..filter.clone()
    };
    let (counts, source, cut) = if let Some(range) = RollupRange::of(&named) {
        let mut counts = empty_counts(model);
        for r in &store.rollup_totals(&range).await? {
            add_count(model, &mut counts, &r.kind, &r.key, r.count);
        }
        (counts, Source::Rollups, false)
    } else if let Some(split) = EdgeSplit::of(&named) {
        let mut counts = empty_counts(model);
        if let Some(range) = &split.whole {
            for r in &store.rollup_totals(range).await? {
                add_count(model, &mut counts, &r.kind, &r.key, r.count);
            }
        }
        // The edge minutes' rows are binned here, over the served version's bins; together
        // they read at most `max_rows` rows (the newest of each edge).
        let baselines = Baselines::default();
        baselines.register(model);
        let mut left = rule.max_rows;
        let mut cut = false;
        for edge in &split.edges {
            let edge = store.counts_of_rows(edge, &baselines, left).await?;
            for r in &edge.counts {
                add_count(model, &mut counts, &r.kind, &r.key, r.count);
                if r.kind == kind::ROWS {
                    left = left.saturating_sub(r.count.max(0) as usize);
                }
            }
            cut |= edge.truncated;
        }
        (counts, Source::RollupsAndEdgeRows, cut)
    } else {
        let sample = store
            .drift_rows(model.name(), n, &filter, rule.max_rows)
            .await?;
        let (model, rule) = (Arc::clone(model), *rule);
        return off_thread(move || {
            drift::report(
                &model,
                &sample.values,
                &answer_classes(&model, &sample),
                &sample.answers,
                &rule,
                sample.truncated,
            )
        })
        .await;
    };
    let sample = store
        .drift_rows(model.name(), n, &filter, rule.sample_rows)
        .await?;
    let (model, rule) = (Arc::clone(model), *rule);
    off_thread(move || {
        let rows = sample.rows();
        let mut report = drift::report_counts(
            &model,
            &counts,
            &sample.values,
            &sample.answers,
            rows,
            &rule,
            source,
        );
        report.truncated |= cut;
        report
    })
    .await
}

/// Runs the statistics (sorting up to `max_rows` values per feature) off the async threads.
async fn off_thread(
    work: impl FnOnce() -> DriftReport + Send + 'static,
) -> Result<DriftReport, StoreFault> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        StoreFault::new(
            FaultKind::Other,
            &anyhow::anyhow!("the drift statistics failed: {e}"),
        )
    })
}

/// Counts of the answered rows of `model`'s current version in the most recent whole minutes
/// of the last 24 hours, newest first, as many minutes as hold at most `most_rows` rows in all:
/// what the drift gauges start from. The current minute is included (its rows so far).
pub async fn recent_counts(
    store: &Store,
    model: &Model,
    most_rows: usize,
) -> Result<LiveCounts, StoreFault> {
    let now = chrono::Utc::now().timestamp().div_euclid(60);
    let range = RollupRange {
        since: Some(now - 24 * 60),
        until: Some(now + 1),
        model: Some(model.name().to_string()),
        model_version: Some(model.artifact.version.clone()),
    };
    let rows = store.rollup_rows(&range, 1).await?;
    let mut by_minute: std::collections::BTreeMap<i64, LiveCounts> = Default::default();
    rollup::for_each(&rows, &range, 1, |e| {
        let counts = by_minute
            .entry(e.start)
            .or_insert_with(|| empty_counts(model));
        add_count(model, counts, e.kind, e.key, e.count);
    })
    .map_err(|e| StoreFault::new(FaultKind::Other, &e))?;
    let mut total = empty_counts(model);
    for minute in by_minute.values().rev() {
        if total.rows + minute.rows > most_rows {
            break;
        }
        total.rows += minute.rows;
        for (t, m) in total.classes.iter_mut().zip(&minute.classes) {
            *t += m;
        }
        for (t, m) in total.confidence.iter_mut().zip(&minute.confidence) {
            *t += m;
        }
        for (t, m) in total.bins.iter_mut().zip(&minute.bins) {
            for (t, m) in t.iter_mut().zip(m) {
                *t += m;
            }
        }
    }
    Ok(total)
}

/// The "classes" drift compares: a classifier's predicted classes, or the bins of a
/// regression model's answers.
fn answer_classes(model: &Model, sample: &DriftSample) -> Vec<u32> {
    if sample.answers.is_empty() {
        return sample.classes.clone();
    }
    let baseline = &model.artifact.baseline;
    sample
        .answers
        .iter()
        .map(|&v| baseline.answer_bin(v))
        .collect()
}

fn empty_counts(model: &Model) -> LiveCounts {
    LiveCounts {
        rows: 0,
        bins: model
            .artifact
            .baseline
            .features
            .iter()
            .map(|f| vec![0; f.bin_edges.len() + 1])
            .collect(),
        classes: vec![0; model.artifact.baseline.answer_proportions().len()],
        confidence: vec![0; 10],
    }
}

/// Adds a label (class), output bin or feature bin count of the rollups to `counts`; other
/// kinds are not drift's.
fn add_count(model: &Model, counts: &mut LiveCounts, kind: &str, key: &str, n: i64) {
    let n = n.max(0) as u64;
    match kind {
        kind::LABEL => {
            if let Some(c) = model.artifact.class_names.iter().position(|c| c == key) {
                counts.classes[c] += n;
                counts.rows += n as usize;
            }
        }
        kind::CONFIDENCE => {
            let hundredth = key.parse::<i64>().unwrap_or(0);
            counts.confidence[crate::stats::tenth(hundredth)] += n;
        }
        kind::OUTPUT_BIN => {
            if let Some(slot) = key
                .parse::<usize>()
                .ok()
                .and_then(|b| counts.classes.get_mut(b))
            {
                *slot += n;
                counts.rows += n as usize;
            }
        }
        kind::BIN => {
            let slot = key.split_once(':').and_then(|(j, b)| {
                let (j, b) = (j.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                counts.bins.get_mut(j)?.get_mut(b)
            });
            if let Some(slot) = slot {
                *slot += n;
            }
        }
        _ => {}
    }
}

/// How a range is read: the rollups' range for its whole minutes (if any), the partial
/// minutes at its edges to join from rows, and the source that makes; `None` for a range
/// rollups cannot count at all.
fn split(
    model: &Model,
    filter: &AuditFilter,
) -> Option<(Option<RollupRange>, Vec<AuditFilter>, Source)> {
    let named = AuditFilter {
        model: Some(model.name().to_string()),
        ..filter.clone()
    };
    if let Some(range) = RollupRange::of(&named) {
        Some((Some(range), Vec::new(), Source::Rollups))
    } else {
        EdgeSplit::of(&named).map(|s| (s.whole, s.edges, Source::RollupsAndEdgeRows))
    }
}

/// The performance of `model` (all its versions) over the predictions made in the range of
/// `filter` that have feedback: from the rollups' counts (kept as feedback arrives) for whole
/// minutes, joined from the rows for the partial minutes at the edges of a range
/// ([`EdgeSplit`]), or for a range rollups cannot count at all. A classifier's accuracy,
/// per-class scores and confusion matrix; a regressor's errors.
pub async fn performance(
    store: &Store,
    model: &Model,
    filter: &AuditFilter,
) -> Result<PerformanceReport, StoreFault> {
    Ok(match model.artifact.task() {
        Task::Classification => {
            PerformanceReport::Classification(scores(store, model, filter).await?)
        }
        Task::Regression => PerformanceReport::Regression(errors(store, model, filter).await?),
    })
}

/// A regressor's errors: from the rollups' sums and histogram of absolute errors, with the
/// edges' pairs added to both; exact from the rows for a range without a whole minute (or
/// one rollups cannot count).
async fn errors(
    store: &Store,
    model: &Model,
    filter: &AuditFilter,
) -> Result<RegressionPerformance, StoreFault> {
    let (whole, edges, source) = match split(model, filter) {
        Some((Some(whole), edges, source)) => (whole, edges, source),
        // No whole minute: the pairs, read, give the exact figures.
        _ => {
            let pairs = store.regression_pairs(model.name(), filter).await?;
            return Ok(performance::regression_errors(
                model.name(),
                &pairs,
                Source::Rows,
            ));
        }
    };
    let (mut sums, mut unscored) = (ErrorSums::default(), 0);
    let mut buckets: Vec<(String, i64)> = Vec::new();
    for r in store.rollup_totals(&whole).await? {
        if add_to_error_sums(&mut sums, &r.kind, &r.key, r.count, r.amount) {
            continue;
        }
        match r.kind.as_str() {
            kind::ERRORS if r.key == UNSCORED => unscored += r.count,
            kind::ABS_ERROR => buckets.push((r.key, r.count)),
            _ => {}
        }
    }
    for edge in &edges {
        for (answer, truth) in store.regression_pairs(model.name(), edge).await? {
            if ErrorSums::terms(answer, truth).is_none() {
                unscored += 1;
                continue;
            }
            sums.add(answer, truth);
            buckets.push((abs_error_bucket((answer - truth).abs()), 1));
        }
    }
    let mut histogram: Vec<(f64, i64)> = buckets
        .iter()
        .map(|(key, n)| (abs_error_value(key), *n))
        .collect();
    Ok(performance::regression_errors_of_sums(
        model.name(),
        &sums,
        &mut histogram,
        unscored,
        source,
    ))
}

/// A classifier's accuracy, per-class scores and confusion matrix.
async fn scores(
    store: &Store,
    model: &Model,
    filter: &AuditFilter,
) -> Result<performance::Performance, StoreFault> {
    let classes = &model.artifact.class_names;
    let Some((whole, edges, source)) = split(model, filter) else {
        let cells = store.confusion(model.name(), filter).await?;
        return Ok(performance::score(
            model.name(),
            classes,
            cells.iter().map(cell),
            Source::Rows,
        ));
    };
    let mut cells: Vec<ConfusionCell> = match &whole {
        Some(range) => store
            .rollup_totals(range)
            .await?
            .into_iter()
            .filter(|r| r.kind == kind::CONFUSION && r.count != 0)
            .filter_map(|r| {
                let (predicted, actual): (String, String) = serde_json::from_str(&r.key).ok()?;
                Some(ConfusionCell {
                    predicted,
                    actual,
                    count: r.count,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    for edge in &edges {
        cells.extend(store.confusion(model.name(), edge).await?);
    }
    Ok(performance::score(
        model.name(),
        classes,
        cells.iter().map(cell),
        source,
    ))
}

/// A confusion cell as the scoring takes it.
fn cell(c: &ConfusionCell) -> (&str, &str, i64) {
    (&c.predicted, &c.actual, c.count)
}
