//! Per-minute and per-hour aggregates of the audit rows, kept beside them in the same
//! transaction, so summaries, time series, drift and performance read a few rows per minute
//! (or hour) instead of every row.
//!
//! Counts are `(kind, key) → count` per minute, model and model version:
//!
//! | kind | key | count |
//! |---|---|---|
//! | `rows` | `''` | audit rows |
//! | `requests` | `''` | requests (rows with item 0) |
//! | `status` | the HTTP status | rows |
//! | `error` | the error code, `''` for none | rows |
//! | `label` | the predicted label, `''` for none | rows |
//! | `latency` | the latency's bucket (see [`latency_bucket`]) | requests (rows with item 0: a batch's latency counts once) |
//! | `latency_max` | `''` | the largest latency, in µs (merged by max, not summed) |
//! | `outlier_rows` | `''` | rows with at least one feature flagged |
//! | `outlier` | a feature's name | rows flagging it |
//! | `bin` | `j:b`: feature `j` (model order) in training bin `b` | answered rows |
//! | `confusion` | `["predicted","true"]` (JSON) | answered rows whose latest feedback says `true` |
//!
//! `bin` counts use the bins of the row's own model version ([`Baselines`]); a version the
//! service never loaded gets none. `confusion` is counted when feedback arrives (at the
//! answered row's minute, model and version): +1 for the new true label, −1 for the one it
//! replaces.
//!
//! Each commit appends its counts as one *delta* ([`Delta::to_json`]); the store's
//! maintenance folds deltas ([`fold_deltas`]) into the `rollup` table, one row of packed
//! counts ([`Counts`]) per minute and per hour ([`with_hours`]). Readers take both tables in
//! one snapshot ([`collect`]). `minute` counts whole minutes since 1970-01-01 UTC; a row
//! without a model (or version) has `''`. Nothing here reads the rows back: retention may
//! drop rows and keep their rollups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Timelike, Utc};
use serde::Serialize;

use super::baselines::{Baselines, Edges};
use super::filter::{AuditFilter, Count, LatencySummary, StatusFilter, Summary, SummarySource};
use super::record::AuditRecord;

/// Largest relative error of a latency read from the histogram: a bucket holds latencies in
/// `(γ^(i-1), γ^i]` with `γ = (1 + α) / (1 − α)`, and is read as `2γ^i / (γ + 1)`, within `α`
/// of every latency in it.
pub const LATENCY_RELATIVE_ERROR: f64 = 0.04;

/// `ln γ`, for [`latency_bucket`]; PostgreSQL's trigger uses the same constant.
pub const LN_GAMMA: f64 = 0.080_042_707_673_536_56;

/// The histogram bucket of a latency in µs: `ceil(ln(v) / ln γ)` (so 0 for 1 µs), and -1
/// for 0 µs.
pub fn latency_bucket(micros: i64) -> i64 {
    if micros <= 0 {
        -1
    } else {
        ((micros as f64).ln() / LN_GAMMA).ceil() as i64
    }
}

/// The latency a bucket stands for (within [`LATENCY_RELATIVE_ERROR`] of each in it).
pub fn bucket_value(bucket: i64) -> i64 {
    if bucket < 0 {
        return 0;
    }
    if bucket == 0 {
        return 1;
    }
    let gamma = LN_GAMMA.exp();
    (2.0 * (bucket as f64 * LN_GAMMA).exp() / (gamma + 1.0)).round() as i64
}

/// Whole minutes since the Unix epoch.
pub fn minute_of(t: &DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

/// The kinds of counts (see the module's table).
pub mod kind {
    pub const ROWS: &str = "rows";
    pub const REQUESTS: &str = "requests";
    pub const STATUS: &str = "status";
    pub const ERROR: &str = "error";
    pub const LABEL: &str = "label";
    pub const LATENCY: &str = "latency";
    pub const LATENCY_MAX: &str = "latency_max";
    pub const OUTLIER_ROWS: &str = "outlier_rows";
    pub const OUTLIER: &str = "outlier";
    pub const BIN: &str = "bin";
    pub const CONFUSION: &str = "confusion";
}

/// The key of a `confusion` count.
pub fn confusion_key(predicted: &str, actual: &str) -> String {
    serde_json::to_string(&(predicted, actual)).unwrap_or_default()
}

/// The rows of one minute, model and version.
#[derive(Debug)]
struct Group {
    minute: i64,
    model: Option<Arc<str>>,
    model_version: Option<Arc<str>>,
    rows: i64,
    requests: i64,
    latency_max: i64,
    outlier_rows: i64,
    /// Small lists searched in order: a batch holds a few statuses, codes, labels and
    /// latency buckets, so this beats hashing and allocates nothing per row.
    status: Vec<(u16, i64)>,
    error: Vec<(Option<Arc<str>>, i64)>,
    label: Vec<(Option<Arc<str>>, i64)>,
    latency: Vec<(i64, i64)>,
    outliers: Vec<(String, i64)>,
    /// The bins of this model version, if known; counts keyed `feature << 16 | bin`.
    edges: Option<Edges>,
    bins: Vec<(u32, i64)>,
    /// `confusion` counts by key.
    confusion: Vec<(String, i64)>,
}

impl Group {
    fn new(minute: i64, model: Option<Arc<str>>, model_version: Option<Arc<str>>) -> Group {
        Group {
            minute,
            model,
            model_version,
            rows: 0,
            requests: 0,
            latency_max: 0,
            outlier_rows: 0,
            status: Vec::new(),
            error: Vec::new(),
            label: Vec::new(),
            latency: Vec::new(),
            outliers: Vec::new(),
            edges: None,
            bins: Vec::new(),
            confusion: Vec::new(),
        }
    }
}

fn bump<K: PartialEq>(list: &mut Vec<(K, i64)>, key: K) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => list.push((key, 1)),
    }
}

/// Same text, by pointer first (rows of a request share their `Arc`s).
fn same(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// What a set of rows adds to the rollups.
#[derive(Debug, Default)]
pub struct Delta(Vec<Group>);

impl Delta {
    /// The counts of `records`, written at `stored_at` (which fixes durable latencies), their
    /// features binned over their model version's bins in `baselines`.
    pub fn of<'a>(
        records: impl IntoIterator<Item = &'a AuditRecord>,
        stored_at: Instant,
        baselines: &Baselines,
    ) -> Delta {
        let mut groups: Vec<Group> = Vec::new();
        let mut last = 0;
        for r in records {
            let minute = minute_of(&r.received_at);
            let fits = |g: &Group| {
                g.minute == minute
                    && same(&g.model, &r.model)
                    && same(&g.model_version, &r.model_version)
            };
            if !groups.get(last).is_some_and(fits) {
                last = match groups.iter().position(fits) {
                    Some(i) => i,
                    None => {
                        let mut g = Group::new(minute, r.model.clone(), r.model_version.clone());
                        if let (Some(m), Some(v)) = (&r.model, &r.model_version) {
                            g.edges = baselines.edges(m, v);
                        }
                        groups.push(g);
                        groups.len() - 1
                    }
                };
            }
            let g = &mut groups[last];
            let latency = r.latency.micros(stored_at) as i64;
            g.rows += 1;
            g.requests += i64::from(r.item == 0);
            g.latency_max = g.latency_max.max(latency);
            bump(&mut g.status, r.status);
            match g.error.iter_mut().find(|(k, _)| same(k, &r.error_code)) {
                Some((_, n)) => *n += 1,
                None => g.error.push((r.error_code.clone(), 1)),
            }
            match g.label.iter_mut().find(|(k, _)| same(k, &r.label)) {
                Some((_, n)) => *n += 1,
                None => g.label.push((r.label.clone(), 1)),
            }
            // Latency is the request's: a batch of 400 rows is one answer, counted once.
            if r.item == 0 {
                bump(&mut g.latency, latency_bucket(latency));
            }
            if let Some(outliers) = &r.outliers {
                g.outlier_rows += 1;
                for name in serde_json::from_str::<Vec<String>>(outliers).unwrap_or_default() {
                    bump(&mut g.outliers, name);
                }
            }
            if let (200, Some(edges), Some(features)) = (r.status, &g.edges, &r.features) {
                if let Ok(values) = serde_json::from_str::<Vec<f64>>(features) {
                    if values.len() == edges.len() {
                        for (j, (edges, v)) in edges.iter().zip(values).enumerate() {
                            let b = crate::stats::bin_index(edges, v) as u32;
                            bump(&mut g.bins, (j as u32) << 16 | b);
                        }
                    }
                }
            }
        }
        Delta(groups)
    }

    /// What a true label adds for an answered row received at `received_at`: one row
    /// predicted `predicted` is now truly `actual`, and no longer `replaced` (the true label
    /// it had before, if any).
    pub fn feedback(
        received_at: &DateTime<Utc>,
        model: Option<&str>,
        model_version: Option<&str>,
        predicted: &str,
        actual: &str,
        replaced: Option<&str>,
    ) -> Delta {
        let mut g = Group::new(
            minute_of(received_at),
            model.map(Arc::from),
            model_version.map(Arc::from),
        );
        g.confusion.push((confusion_key(predicted, actual), 1));
        if let Some(old) = replaced {
            g.confusion.push((confusion_key(predicted, old), -1));
        }
        Delta(vec![g])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The counts as one delta: a JSON array of groups `[minute, model, model_version,
    /// [[kind, key, count], ...]]` (a group's fields are not repeated per count: a delta is
    /// written with every commit).
    pub fn to_json(&self) -> String {
        self.to_json_with(|s| std::borrow::Cow::Borrowed(s))
    }

    /// [`Delta::to_json`] with each text passed through `clean` first (PostgreSQL's text
    /// refuses NUL).
    pub fn to_json_with(&self, clean: impl Fn(&str) -> std::borrow::Cow<'_, str>) -> String {
        use std::fmt::Write;
        let json_text = |text: Option<&str>| json_text(Some(&clean(text.unwrap_or(""))));
        let mut out = String::with_capacity(256 * self.0.len());
        out.push('[');
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "[{},{},{},[",
                g.minute,
                json_text(g.model.as_deref()),
                json_text(g.model_version.as_deref())
            );
            let mut first = true;
            let mut count = |kind: &str, key: &str, n: i64| {
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, "[\"{kind}\",{},{n}]", json_text(Some(key)));
            };
            if g.rows > 0 {
                count(kind::ROWS, "", g.rows);
                count(kind::LATENCY_MAX, "", g.latency_max);
            }
            if g.requests > 0 {
                count(kind::REQUESTS, "", g.requests);
            }
            for (status, n) in &g.status {
                count(kind::STATUS, &status.to_string(), *n);
            }
            for (code, n) in &g.error {
                count(kind::ERROR, code.as_deref().unwrap_or(""), *n);
            }
            for (label, n) in &g.label {
                count(kind::LABEL, label.as_deref().unwrap_or(""), *n);
            }
            for (bucket, n) in &g.latency {
                count(kind::LATENCY, &bucket.to_string(), *n);
            }
            if g.outlier_rows > 0 {
                count(kind::OUTLIER_ROWS, "", g.outlier_rows);
            }
            for (name, n) in &g.outliers {
                count(kind::OUTLIER, name, *n);
            }
            for (key, n) in &g.bins {
                count(kind::BIN, &format!("{}:{}", key >> 16, key & 0xffff), *n);
            }
            for (key, n) in &g.confusion {
                count(kind::CONFUSION, key, *n);
            }
            out.push_str("]]");
        }
        out.push(']');
        out
    }
}

/// The counts of one minute (or hour), model and version: `kind → key → count`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts(BTreeMap<String, BTreeMap<String, i64>>);

impl Counts {
    /// Adds `n` (the larger of the two for `latency_max`).
    pub fn add(&mut self, kind: &str, key: &str, n: i64) {
        let keys = match self.0.get_mut(kind) {
            Some(keys) => keys,
            None => self.0.entry(kind.to_string()).or_default(),
        };
        match keys.get_mut(key) {
            Some(v) if kind == kind::LATENCY_MAX => *v = (*v).max(n),
            Some(v) => *v += n,
            None => {
                keys.insert(key.to_string(), n);
            }
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        for (kind, keys) in &other.0 {
            for (key, n) in keys {
                self.add(kind, key, *n);
            }
        }
    }

    /// Packed as stored: a JSON array of `[kind, key, count]`, sorted, counts that cancelled
    /// out (feedback replaced) left out.
    pub fn to_json(&self) -> String {
        let list: Vec<(&str, &str, i64)> = self
            .0
            .iter()
            .flat_map(|(kind, keys)| {
                keys.iter()
                    .map(move |(key, n)| (kind.as_str(), key.as_str(), *n))
            })
            .filter(|(kind, _, n)| *n != 0 || *kind == kind::LATENCY_MAX)
            .collect();
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
    }

    pub fn parse(json: &str) -> anyhow::Result<Counts> {
        let list: Vec<(String, String, i64)> = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("rollup counts are not valid: {e}"))?;
        let mut counts = Counts::default();
        for (kind, key, n) in list {
            counts.add(&kind, &key, n);
        }
        Ok(counts)
    }
}

/// Per (minute, model, model version): the counts of all `deltas` (each a [`Delta::to_json`]
/// array).
pub type Folded = BTreeMap<(i64, String, String), Counts>;

/// Deltas folded into one [`Counts`] per minute, model and version.
pub fn fold_deltas<'a>(deltas: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Folded> {
    type Group = (i64, String, String, Vec<(String, String, i64)>);
    let mut folded = Folded::new();
    for delta in deltas {
        let groups: Vec<Group> = serde_json::from_str(delta)
            .map_err(|e| anyhow::anyhow!("a rollup delta is not valid: {e}"))?;
        for (minute, model, version, counts) in groups {
            let slot = folded.entry((minute, model, version)).or_default();
            for (kind, key, n) in counts {
                slot.add(&kind, &key, n);
            }
        }
    }
    Ok(folded)
}

/// Minutes per hour row.
pub const HOUR: i64 = 60;

/// One row of the `rollup` table: `span` minutes (1 or [`HOUR`]) from `start`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanCounts {
    pub span: i64,
    pub start: i64,
    pub model: String,
    pub model_version: String,
    pub counts: Counts,
}

/// The rollup rows `folded` adds to: each minute's, and each hour's (its minutes summed).
pub fn with_hours(folded: Folded) -> Vec<SpanCounts> {
    let mut hours: BTreeMap<(i64, String, String), Counts> = BTreeMap::new();
    let mut out = Vec::with_capacity(folded.len() + 1);
    for ((minute, model, version), counts) in folded {
        hours
            .entry((
                minute.div_euclid(HOUR) * HOUR,
                model.clone(),
                version.clone(),
            ))
            .or_default()
            .merge(&counts);
        out.push(SpanCounts {
            span: 1,
            start: minute,
            model,
            model_version: version,
            counts,
        });
    }
    out.extend(
        hours
            .into_iter()
            .map(|((start, model, model_version), counts)| SpanCounts {
                span: HOUR,
                start,
                model,
                model_version,
                counts,
            }),
    );
    out
}

/// A JSON string of `text` (`""` for none).
fn json_text(text: Option<&str>) -> String {
    serde_json::to_string(text.unwrap_or("")).unwrap_or_else(|_| "\"\"".into())
}

/// One rollup count as read back, summed over the minutes of a bucket (`start`, a minute).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupRow {
    pub start: i64,
    pub model: String,
    pub kind: String,
    pub key: String,
    pub count: i64,
}

/// The part of a filter rollups can answer: whole minutes, a model, a version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupRange {
    /// First minute, inclusive.
    pub since: Option<i64>,
    /// Last minute, exclusive.
    pub until: Option<i64>,
    pub model: Option<String>,
    pub model_version: Option<String>,
}

/// No filter rollups cannot count by: the rows' label, status, ids or latency.
fn countable(filter: &AuditFilter) -> bool {
    filter.label.is_none()
        && filter.request_id.is_none()
        && filter.client_request_id.is_none()
        && filter.min_latency_us.is_none()
        && filter.status == StatusFilter::All
}

/// A time on a minute's boundary.
fn whole_minute(t: &DateTime<Utc>) -> bool {
    t.second() == 0 && t.nanosecond() == 0
}

impl RollupRange {
    /// The rollup range of `filter`, when rollups give its exact answer: no filter on the
    /// rows' label, status, ids or latency, and time bounds on whole minutes.
    pub fn of(filter: &AuditFilter) -> Option<RollupRange> {
        let plain = countable(filter)
            && filter.since.as_ref().is_none_or(whole_minute)
            && filter.until.as_ref().is_none_or(whole_minute);
        plain.then(|| RollupRange {
            since: filter.since.as_ref().map(minute_of),
            until: filter.until.as_ref().map(minute_of),
            model: filter.model.clone(),
            model_version: filter.model_version.clone(),
        })
    }
}

/// A filter rollups answer but for time bounds inside a minute: the whole minutes between
/// them, for the rollups, and the partial minutes at the edges (at most one each side), for
/// the rows. Counting the edges from their rows reads at most two minutes of rows, however
/// long the range.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSplit {
    /// The whole minutes, if there are any.
    pub whole: Option<RollupRange>,
    /// The filter's own, narrowed to each partial minute (or to the range itself when it
    /// holds no whole minute).
    pub edges: Vec<AuditFilter>,
}

impl EdgeSplit {
    /// The split of `filter`, when it is one rollups answer but for its time bounds.
    pub fn of(filter: &AuditFilter) -> Option<EdgeSplit> {
        let whole = whole_minute;
        let inside = filter.since.as_ref().is_some_and(|t| !whole(t))
            || filter.until.as_ref().is_some_and(|t| !whole(t));
        if !countable(filter) || !inside {
            return None;
        }
        let at = |minute: i64| DateTime::<Utc>::from_timestamp(minute * 60, 0);
        // The first whole minute at or after `since`, the last boundary at or before `until`.
        let first = filter.since.as_ref().map(|t| {
            let m = minute_of(t);
            if whole(t) { m } else { m + 1 }
        });
        let last = filter.until.as_ref().map(minute_of);
        let range = |since, until| RollupRange {
            since,
            until,
            model: filter.model.clone(),
            model_version: filter.model_version.clone(),
        };
        if let (Some(f), Some(l)) = (first, last)
            && f >= l
        {
            return Some(EdgeSplit {
                whole: None,
                edges: vec![filter.clone()],
            });
        }
        let mut edges = Vec::new();
        if let (Some(since), Some(f)) = (filter.since, first)
            && !whole(&since)
        {
            edges.push(AuditFilter {
                until: at(f),
                ..filter.clone()
            });
        }
        if let (Some(until), Some(l)) = (filter.until, last)
            && !whole(&until)
        {
            edges.push(AuditFilter {
                since: at(l),
                ..filter.clone()
            });
        }
        Some(EdgeSplit {
            whole: Some(range(first, last)),
            edges,
        })
    }
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

/// Which rollup rows a range reads: hours where whole hours fit (when the caller's buckets
/// are whole hours), minutes at the edges; each `(since, until)` in minutes, either open.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadPlan {
    pub hours: Option<(Option<i64>, Option<i64>)>,
    pub minutes: Vec<(Option<i64>, Option<i64>)>,
}

impl ReadPlan {
    /// `hours`: the caller sums into buckets of whole hours, so hour rows may stand for their
    /// minutes.
    pub fn of(range: &RollupRange, hours: bool) -> ReadPlan {
        let (since, until) = (range.since, range.until);
        if !hours {
            return ReadPlan {
                hours: None,
                minutes: vec![(since, until)],
            };
        }
        // Whole hours inside the range: from the first hour boundary at or after `since`
        // to the last at or before `until`.
        let first = since.map(|m| (m + HOUR - 1).div_euclid(HOUR) * HOUR);
        let last = until.map(|m| m.div_euclid(HOUR) * HOUR);
        if let (Some(f), Some(l)) = (first, last) {
            if f >= l {
                return ReadPlan {
                    hours: None,
                    minutes: vec![(since, until)],
                };
            }
        }
        let mut minutes = Vec::new();
        if let (Some(s), Some(f)) = (since, first) {
            if s < f {
                minutes.push((Some(s), Some(f)));
            }
        }
        if let (Some(l), Some(u)) = (last, until) {
            if l < u {
                minutes.push((Some(l), Some(u)));
            }
        }
        ReadPlan {
            hours: Some((first, last)),
            minutes,
        }
    }
}

/// A row as read for a [`ReadPlan`]: a `rollup` row (`span` ≥ 1), or a delta not merged yet
/// (`span` 0, `counts` a [`Delta::to_json`] array).
#[derive(Debug, Clone)]
pub struct PackedRow {
    pub span: i64,
    pub start: i64,
    pub model: String,
    pub counts: String,
}

/// `[kind, key, count]` as stored, borrowing the text where it has no escapes.
#[derive(serde::Deserialize)]
struct Triple<'a>(
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    i64,
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
    pub count: i64,
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
                    count: *count,
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
                        count: *count,
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
    let mut sums: HashMap<(i64, String, String, String), i64> = HashMap::new();
    for_each(rows, range, bucket_minutes, |e| {
        let slot = sums
            .entry((e.start, e.model.into(), e.kind.into(), e.key.into()))
            .or_insert(0);
        *slot = if e.kind == kind::LATENCY_MAX {
            (*slot).max(e.count)
        } else {
            *slot + e.count
        };
    })?;
    Ok(sums
        .into_iter()
        .filter(|((_, _, kind, _), n)| *n != 0 || kind == kind::LATENCY_MAX)
        .map(|((start, model, kind, key), count)| RollupRow {
            start,
            model,
            kind,
            key,
            count,
        })
        .collect())
}

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
        let mut seen = 0;
        for &(bucket, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let v = bucket_value(bucket);
                return Some(self.max.map_or(v, |m| v.min(m)));
            }
        }
        self.max
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
/// one present, empty ones with zeros, from rollup rows read for `range`.
pub fn timeseries(
    rows: &[PackedRow],
    range: &RollupRange,
    since: i64,
    until: i64,
    bucket_minutes: i64,
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
            _ => {}
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
        });
        start += bucket_minutes;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_inside_minutes_split_into_whole_minutes_and_their_edges() {
        let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        let filter = AuditFilter {
            since: t("2026-12-01T10:00:30Z"),
            until: t("2026-12-01T10:05:20Z"),
            model: Some("iris".into()),
            ..AuditFilter::default()
        };
        let split = EdgeSplit::of(&filter).unwrap();
        let minute = |s: &str| minute_of(&t(s).unwrap());
        let whole = split.whole.unwrap();
        assert_eq!(
            (whole.since, whole.until, whole.model.as_deref()),
            (
                Some(minute("2026-12-01T10:01:00Z")),
                Some(minute("2026-12-01T10:05:00Z")),
                Some("iris")
            )
        );
        let bounds: Vec<_> = split.edges.iter().map(|f| (f.since, f.until)).collect();
        assert_eq!(
            bounds,
            [
                (t("2026-12-01T10:00:30Z"), t("2026-12-01T10:01:00Z")),
                (t("2026-12-01T10:05:00Z"), t("2026-12-01T10:05:20Z")),
            ]
        );
        assert!(
            split
                .edges
                .iter()
                .all(|f| f.model.as_deref() == Some("iris"))
        );
        // Inside one minute: the rows alone.
        let within = AuditFilter {
            since: t("2026-12-01T10:00:10Z"),
            until: t("2026-12-01T10:00:50Z"),
            ..AuditFilter::default()
        };
        let split = EdgeSplit::of(&within).unwrap();
        assert_eq!((split.whole, split.edges), (None, vec![within]));
        // An open end: one edge, whole minutes to the end.
        let open = AuditFilter {
            since: t("2026-12-01T10:00:30Z"),
            ..AuditFilter::default()
        };
        let split = EdgeSplit::of(&open).unwrap();
        assert_eq!(split.whole.unwrap().until, None);
        assert_eq!(split.edges.len(), 1);
        // Whole minutes, or a filter rollups cannot answer: no split.
        let whole_minutes = AuditFilter {
            since: t("2026-12-01T10:00:00Z"),
            ..AuditFilter::default()
        };
        assert_eq!(EdgeSplit::of(&whole_minutes), None);
        let labelled = AuditFilter {
            label: Some("setosa".into()),
            ..filter
        };
        assert_eq!(EdgeSplit::of(&labelled), None);
    }

    #[test]
    fn every_latency_reads_back_within_the_stated_error() {
        for v in (0..200_000).chain((1..2000).map(|i| i * 104_729)) {
            let got = bucket_value(latency_bucket(v)) as f64;
            let want = v as f64;
            // Rounding to whole µs adds at most half a µs.
            assert!(
                (got - want).abs() <= want * LATENCY_RELATIVE_ERROR + 0.5,
                "{v}: read back as {got}"
            );
        }
    }

    #[test]
    fn ln_gamma_matches_the_stated_error() {
        let a = LATENCY_RELATIVE_ERROR;
        assert!((((1.0 + a) / (1.0 - a)).ln() - LN_GAMMA).abs() < 1e-15);
    }

    #[test]
    fn a_read_plan_takes_whole_hours_and_minutes_at_the_edges() {
        let range = |since, until| RollupRange {
            since,
            until,
            ..RollupRange::default()
        };
        // 10:30 to 13:15: minutes 10:30–11:00, hours 11:00–13:00, minutes 13:00–13:15.
        let plan = ReadPlan::of(&range(Some(630), Some(795)), true);
        assert_eq!(plan.hours, Some((Some(660), Some(780))));
        assert_eq!(
            plan.minutes,
            vec![(Some(630), Some(660)), (Some(780), Some(795))]
        );
        // Inside one hour: minutes only; buckets not in hours: minutes only.
        let plan = ReadPlan::of(&range(Some(630), Some(650)), true);
        assert_eq!(
            (plan.hours, plan.minutes),
            (None, vec![(Some(630), Some(650))])
        );
        let plan = ReadPlan::of(&range(Some(600), Some(720)), false);
        assert_eq!(
            (plan.hours, plan.minutes),
            (None, vec![(Some(600), Some(720))])
        );
        // Open ends and aligned bounds: hours only.
        let plan = ReadPlan::of(&range(None, None), true);
        assert_eq!((plan.hours, plan.minutes), (Some((None, None)), vec![]));
        let plan = ReadPlan::of(&range(Some(600), None), true);
        assert_eq!(
            (plan.hours, plan.minutes),
            (Some((Some(600), None)), vec![])
        );
    }

    #[test]
    fn counts_sum_keep_the_largest_maximum_and_drop_what_cancels() {
        let mut a = Counts::default();
        a.add(kind::ROWS, "", 2);
        a.add(kind::LATENCY_MAX, "", 70);
        a.add(kind::CONFUSION, &confusion_key("a", "b"), 1);
        let mut b = Counts::default();
        b.add(kind::ROWS, "", 3);
        b.add(kind::LATENCY_MAX, "", 50);
        b.add(kind::CONFUSION, &confusion_key("a", "b"), -1);
        a.merge(&b);
        assert_eq!(
            a.to_json(),
            r#"[["latency_max","",70],["rows","",5]]"#,
            "summed, the larger maximum, the cancelled count left out"
        );
        assert_eq!(Counts::parse(&a.to_json()).unwrap(), {
            let mut c = Counts::default();
            c.add(kind::LATENCY_MAX, "", 70);
            c.add(kind::ROWS, "", 5);
            c
        });
    }

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
