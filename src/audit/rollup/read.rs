//! Rollup rows and unmerged deltas read back and summed per bucket ([`collect`]).

use std::collections::HashMap;
use std::time::Instant;

use super::delta::Delta;
use super::keys::{HOUR, kind};
use super::range::{RollupRange, RollupRow};
use crate::audit::baselines::Baselines;
use crate::audit::record::AuditRecord;
use crate::stats::Sum;

/// A row as read for a [`ReadPlan`]: a `rollup` row (`span` ≥ 1), or a delta not merged yet
/// (`span` 0, `counts` a [`Delta::to_json`] array).
#[derive(Debug, Clone)]
pub struct PackedRow {
    pub span: i64,
    pub start: i64,
    pub model: String,
    pub counts: String,
}

/// `[kind, key, count]` as stored, borrowing the text where it has no escapes; the count
/// read as `f64` (whole counts are exact, and the `error_sum` kind's are sums).
#[derive(serde::Deserialize)]
struct Triple<'a>(
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    f64,
);

/// A delta's group, `[minute, model, model_version, [[kind, key, count], ...]]`.
#[derive(serde::Deserialize)]
struct DeltaGroup<'a>(
    i64,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] Vec<Triple<'a>>,
);

/// One count of a rollup row or pending delta, as [`for_each`] hands it out.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The bucket it falls in (a minute, a multiple of the bucket's length).
    pub start: i64,
    pub model: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
    /// The count, for every kind but `error_sum`.
    pub count: i64,
    /// The count as stored: the sum, for `error_sum`.
    pub amount: f64,
}

/// Calls `f` with every count of `rows` (read for `range`: deltas outside it are left out),
/// each in its bucket of `bucket_minutes` (buckets start at multiples of it since the epoch).
/// Counts of one bucket, model, kind and key come in several entries: `f` sums them (the
/// largest for `latency_max`).
pub fn for_each(
    rows: &[PackedRow],
    range: &RollupRange,
    bucket_minutes: i64,
    mut f: impl FnMut(Entry<'_>),
) -> anyhow::Result<()> {
    let bucket = |m: i64| m.div_euclid(bucket_minutes) * bucket_minutes;
    for row in rows {
        if row.span > 0 {
            let list: Vec<Triple<'_>> = serde_json::from_str(&row.counts)
                .map_err(|e| anyhow::anyhow!("rollup counts are not valid: {e}"))?;
            let start = bucket(row.start);
            for Triple(kind, key, count) in &list {
                f(Entry {
                    start,
                    model: &row.model,
                    kind,
                    key,
                    count: *count as i64,
                    amount: *count,
                });
            }
            continue;
        }
        let groups: Vec<DeltaGroup<'_>> = serde_json::from_str(&row.counts)
            .map_err(|e| anyhow::anyhow!("a rollup delta is not valid: {e}"))?;
        for DeltaGroup(minute, model, version, list) in &groups {
            let wanted = range.since.is_none_or(|s| *minute >= s)
                && range.until.is_none_or(|u| *minute < u)
                && range.model.as_deref().is_none_or(|m| m == model)
                && range.model_version.as_deref().is_none_or(|v| v == version);
            if wanted {
                for Triple(kind, key, count) in list {
                    f(Entry {
                        start: bucket(*minute),
                        model,
                        kind,
                        key,
                        count: *count as i64,
                        amount: *count,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The counts of `rows` (read for `range`) summed per bucket of `bucket_minutes`, model, kind
/// and key, the largest for `latency_max`.
pub fn collect(
    rows: &[PackedRow],
    range: &RollupRange,
    bucket_minutes: i64,
) -> anyhow::Result<Vec<RollupRow>> {
    // Compensated: the `error_sum` kind's sums of a minute come in parts that may cancel.
    let mut sums: HashMap<(i64, String, String, String), Sum> = HashMap::new();
    for_each(rows, range, bucket_minutes, |e| {
        let slot = sums
            .entry((e.start, e.model.into(), e.kind.into(), e.key.into()))
            .or_default();
        if e.kind == kind::LATENCY_MAX {
            slot.hi = slot.hi.max(e.amount);
        } else {
            slot.add(e.amount);
        }
    })?;
    Ok(sums
        .into_iter()
        .map(|(k, sum)| (k, sum.value()))
        .filter(|((_, _, kind, _), n)| *n != 0.0 || kind == kind::LATENCY_MAX)
        .map(|((start, model, kind, key), amount)| RollupRow {
            start,
            model,
            kind,
            key,
            count: amount as i64,
            amount,
        })
        .collect())
}

/// The counts of `records` as rollup rows, all in one bucket: what their rows would add to
/// the rollups, with drift bins for the model versions `baselines` knows.
pub fn counts_of(records: &[AuditRecord], baselines: &Baselines) -> anyhow::Result<Vec<RollupRow>> {
    let delta = Delta::of(records, Instant::now(), baselines);
    let packed = PackedRow {
        span: 0,
        start: 0,
        model: String::new(),
        counts: delta.to_json(),
    };
    collect(&[packed], &RollupRange::default(), HOUR << 40)
}
