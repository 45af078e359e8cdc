//! Summaries and time series made from rollup counts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::keys::{add_to_error_sums, bucket_value, kind};
use super::range::{RollupRange, RollupRow};
use super::read::{PackedRow, for_each};
use crate::audit::filter::{Count, LatencySummary, Summary, SummarySource};
use crate::stats::{ErrorSums, nearest_rank};

/// Nearest-rank percentiles and the largest latency of a histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: Vec<(i64, i64)>,
    max: Option<i64>,
}

impl Histogram {
    pub fn add(&mut self, bucket: i64, count: i64) {
        self.buckets.push((bucket, count));
    }

    pub fn see_max(&mut self, max: i64) {
        self.max = Some(self.max.map_or(max, |m| m.max(max)));
    }

    fn rows(&self) -> i64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// p50, p90, p95, p99 and the largest latency.
    pub fn summary(&mut self) -> LatencySummary {
        LatencySummary {
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: self.max(),
        }
    }

    /// The `p` quantile (0 < p ≤ 1) by nearest rank, read as its bucket's value, never above
    /// the largest latency; `None` when empty.
    pub fn quantile(&mut self, p: f64) -> Option<i64> {
        let rows = self.rows();
        if rows == 0 {
            return None;
        }
        self.buckets.sort_unstable();
        let rank = ((p * rows as f64).ceil() as i64).clamp(1, rows);
        if rank == rows && self.max.is_some() {
            return self.max;
        }
        let Some(bucket) = nearest_rank(&self.buckets, p) else {
            return self.max;
        };
        let v = bucket_value(bucket);
        Some(self.max.map_or(v, |m| v.min(m)))
    }

    pub fn max(&self) -> Option<i64> {
        self.max
    }
}

fn key_of(key: &str) -> Option<String> {
    (!key.is_empty()).then(|| key.to_string())
}

/// Counts by key, largest first (ties by key, no key first), as the row queries give them.
fn counts(map: HashMap<Option<String>, i64>) -> Vec<Count> {
    let mut list: Vec<Count> = map
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    list
}

/// `/audit/summary` from rollup rows (all of one bucket).
pub fn summary(rows: &[RollupRow]) -> Summary {
    let mut total = 0;
    let mut requests = 0;
    let mut by_model = HashMap::new();
    let mut by_label = HashMap::new();
    let mut by_status = HashMap::new();
    let mut by_error = HashMap::new();
    let mut latency = Histogram::default();
    for r in rows {
        match r.kind.as_str() {
            kind::ROWS => {
                total += r.count;
                *by_model.entry(key_of(&r.model)).or_insert(0) += r.count;
            }
            kind::REQUESTS => requests += r.count,
            kind::LABEL => *by_label.entry(key_of(&r.key)).or_insert(0) += r.count,
            kind::STATUS => *by_status.entry(key_of(&r.key)).or_insert(0) += r.count,
            kind::ERROR => *by_error.entry(key_of(&r.key)).or_insert(0) += r.count,
            kind::LATENCY => latency.add(r.key.parse().unwrap_or(0), r.count),
            kind::LATENCY_MAX => latency.see_max(r.count),
            _ => {}
        }
    }
    Summary {
        rows: total,
        requests,
        by_model: counts(by_model),
        by_label: counts(by_label),
        by_status: counts(by_status),
        by_error_code: counts(by_error),
        latency_us: latency.summary(),
        source: SummarySource::Rollups,
    }
}

/// One bucket of `/audit/timeseries`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TimeBucket {
    /// Start of the bucket (RFC 3339, UTC).
    pub start: String,
    pub requests: i64,
    /// Requests answered with a prediction (status 200).
    pub served: i64,
    /// Requests refused (every other status; one row each).
    pub rejected: i64,
    pub rows: i64,
    /// Rejected rows by error code.
    pub rejects_by_code: Vec<Count>,
    /// Latency percentiles per request (from the histogram: within 4%) and the exact maximum.
    pub latency_us: LatencySummary,
    /// Served rows by predicted label.
    pub labels: Vec<Count>,
    /// Rows with at least one feature flagged as an outlier, and their share of served rows.
    pub outlier_rows: i64,
    pub outlier_rate: Option<f64>,
    /// Rows flagging each feature.
    pub outliers_by_feature: Vec<Count>,
    /// How sure the model was of the rows it answered (classifiers).
    pub confidence: ConfidenceSummary,
    /// A regression model's answered rows by the bin of its training output (key: the bin's
    /// index, as in `/monitor/drift`'s `prediction.bin_edges`); absent for classifiers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Count>,
    /// A regression model's errors over the rows of the bucket with a true value (feedback);
    /// absent without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BucketErrors>,
}

/// The errors of a bucket's rows with a true value, from the rollups' sums.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BucketErrors {
    /// Rows in the sums (a pair too large to square is left out, as `/monitor/performance`
    /// counts in `unscored`).
    pub labelled: i64,
    pub mae: f64,
    pub rmse: f64,
    pub mean_error: f64,
}

/// The confidence (the served class's probability) of a bucket's answered rows, from counts
/// by hundredth: quantiles are the lower edge of their hundredth.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ConfidenceSummary {
    /// Answered rows with class probabilities.
    pub rows: i64,
    /// Of them, rows below the low-confidence threshold (`INFERLOG_LOW_CONFIDENCE`), and
    /// their share.
    pub low: i64,
    pub low_rate: Option<f64>,
    pub p10: Option<f64>,
    pub p50: Option<f64>,
}

impl ConfidenceSummary {
    /// From counts by hundredth, with rows below `threshold` counted as low (a hundredth
    /// counts as low when all of it is below the threshold).
    fn of(buckets: &mut [(i64, i64)], threshold: f64) -> ConfidenceSummary {
        buckets.sort_unstable();
        let rows: i64 = buckets.iter().map(|(_, n)| n).sum();
        let low = buckets
            .iter()
            .filter(|(b, _)| (*b + 1) as f64 / 100.0 <= threshold)
            .map(|(_, n)| n)
            .sum();
        let quantile = |p: f64| nearest_rank(buckets, p).map(|b| b as f64 / 100.0);
        ConfidenceSummary {
            rows,
            low,
            low_rate: (rows > 0).then(|| low as f64 / rows as f64),
            p10: quantile(0.1),
            p50: quantile(0.5),
        }
    }
}

/// Adds `n` under `key` without allocating when the key is there.
fn add_to(map: &mut HashMap<String, i64>, key: &str, n: i64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_string(), n);
        }
    }
}

/// Counts by key (`""` for none), largest first, as [`counts`] lists them.
fn keyed(map: HashMap<String, i64>) -> Vec<Count> {
    counts(map.into_iter().map(|(k, n)| (key_of(&k), n)).collect())
}

/// The buckets from `since` (a minute, aligned to the bucket) to `until` (exclusive), every
/// one present, empty ones with zeros, from rollup rows read for `range`; answers with a
/// confidence under `low_confidence` count as low.
pub fn timeseries(
    rows: &[PackedRow],
    range: &RollupRange,
    (since, until): (i64, i64),
    bucket_minutes: i64,
    low_confidence: f64,
) -> anyhow::Result<Vec<TimeBucket>> {
    #[derive(Default)]
    struct Acc {
        requests: i64,
        rows: i64,
        rejected: i64,
        rejects: HashMap<String, i64>,
        labels: HashMap<String, i64>,
        outlier_rows: i64,
        outliers: HashMap<String, i64>,
        latency: Histogram,
        confidence: Vec<(i64, i64)>,
        outputs: HashMap<String, i64>,
        errors: ErrorSums,
    }
    let mut accs: HashMap<i64, Acc> = HashMap::new();
    for_each(rows, range, bucket_minutes, |e| {
        let a = accs.entry(e.start).or_default();
        match e.kind {
            kind::ROWS => a.rows += e.count,
            kind::REQUESTS => a.requests += e.count,
            kind::STATUS if e.key != "200" => a.rejected += e.count,
            kind::ERROR if !e.key.is_empty() => add_to(&mut a.rejects, e.key, e.count),
            kind::LABEL if !e.key.is_empty() => add_to(&mut a.labels, e.key, e.count),
            kind::LATENCY => a.latency.add(e.key.parse().unwrap_or(0), e.count),
            kind::LATENCY_MAX => a.latency.see_max(e.count),
            kind::OUTLIER_ROWS => a.outlier_rows += e.count,
            kind::OUTLIER => add_to(&mut a.outliers, e.key, e.count),
            kind::CONFIDENCE => a.confidence.push((e.key.parse().unwrap_or(0), e.count)),
            kind::OUTPUT_BIN => add_to(&mut a.outputs, e.key, e.count),
            _ => {
                add_to_error_sums(&mut a.errors, e.kind, e.key, e.count, e.amount);
            }
        }
    })?;
    let mut out = Vec::new();
    let mut start = since;
    while start < until {
        let mut a = accs.remove(&start).unwrap_or_default();
        let served_rows = a.rows - a.rejected;
        out.push(TimeBucket {
            start: DateTime::<Utc>::from_timestamp(start * 60, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            requests: a.requests,
            served: a.requests - a.rejected,
            rejected: a.rejected,
            rows: a.rows,
            rejects_by_code: keyed(a.rejects),
            latency_us: a.latency.summary(),
            labels: keyed(a.labels),
            outlier_rows: a.outlier_rows,
            outlier_rate: (served_rows > 0).then(|| a.outlier_rows as f64 / served_rows as f64),
            outliers_by_feature: keyed(a.outliers),
            confidence: ConfidenceSummary::of(&mut a.confidence, low_confidence),
            outputs: keyed(a.outputs),
            errors: a.errors.errors().map(|e| BucketErrors {
                labelled: a.errors.n,
                mae: e.mae,
                rmse: e.rmse,
                mean_error: e.mean_error,
            }),
        });
        start += bucket_minutes;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::keys::latency_bucket;
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_and_never_above_the_max() {
        let mut h = Histogram::default();
        for v in [10, 20, 30, 40, 1000] {
            h.add(latency_bucket(v), 1);
        }
        h.see_max(1000);
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 30).abs() <= 2, "{p50}");
        assert_eq!(h.quantile(1.0), Some(1000));
        assert_eq!(h.max(), Some(1000));
    }
}
