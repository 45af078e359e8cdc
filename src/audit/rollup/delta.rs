//! [`Delta`]: the counts one commit adds, grouped by minute, model and version.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::counts::json_text;
use super::keys::{
    ERROR_SUM_KEYS, LOW_PART, UNSCORED, abs_error_bucket, confidence_bucket, confusion_key, kind,
    latency_bucket, minute_of,
};
use crate::audit::baselines::{Baselines, Edges};
use crate::audit::record::{AuditRecord, Truth};
use crate::stats::ErrorSums;

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
    /// A regression model's answered rows by the bin of its output baseline.
    output_bins: Vec<(u32, i64)>,
    /// `confusion` counts by key.
    confusion: Vec<(String, i64)>,
    /// Answered rows by [`confidence_bucket`].
    confidence: Vec<(i64, i64)>,
    /// A regressor's answers against their true values, and their absolute errors by
    /// [`abs_error_bucket`].
    errors: ErrorSums,
    abs_errors: Vec<(String, i64)>,
    /// Pairs too large to add to the sums ([`ErrorSums::terms`]).
    unscored: i64,
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
            output_bins: Vec::new(),
            confusion: Vec::new(),
            confidence: Vec::new(),
            errors: ErrorSums::default(),
            abs_errors: Vec::new(),
            unscored: 0,
        }
    }

    /// Counts the pair (answer, truth) `weight` times (−1 takes it out).
    fn add_error(&mut self, answer: f64, truth: f64, weight: i64) {
        if ErrorSums::terms(answer, truth).is_none() {
            self.unscored += weight;
            return;
        }
        self.errors.add_weighted(answer, truth, weight);
        let key = abs_error_bucket((answer - truth).abs());
        match self.abs_errors.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += weight,
            None => self.abs_errors.push((key, weight)),
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
            if let (200, Some(probabilities)) = (r.status, &r.probabilities) {
                if let Some(p) = probabilities.values() {
                    let served = r.prediction.and_then(|c| p.get(c as usize).copied());
                    let confidence =
                        served.unwrap_or_else(|| p.iter().copied().fold(0.0, f64::max));
                    bump(&mut g.confidence, confidence_bucket(confidence));
                }
            }
            if let (200, Some(edges), Some(v)) = (r.status, &g.edges, r.value) {
                if let Some(output) = &edges.output {
                    bump(
                        &mut g.output_bins,
                        crate::stats::bin_index(output, v) as u32,
                    );
                }
            }
            if let (200, Some(edges), Some(features)) = (r.status, &g.edges, &r.features) {
                if let Some(values) = features.values() {
                    if values.len() == edges.features.len() {
                        for (j, (edges, v)) in edges
                            .features
                            .iter()
                            .zip(values.iter().copied())
                            .enumerate()
                        {
                            let b = crate::stats::bin_index(edges, v) as u32;
                            bump(&mut g.bins, (j as u32) << 16 | b);
                        }
                    }
                }
            }
        }
        Delta(groups)
    }

    /// What a feedback adds for an answered row received at `received_at` that answered
    /// `label` (a classifier) or `value` (a regressor): the row is now truly `truth`, and no
    /// longer `replaced` (the truth it had before, if any). A class truth counts in the
    /// confusion (`""` for a row without a label); a value truth in the errors, if the row
    /// answered a value.
    pub fn feedback(
        received_at: &DateTime<Utc>,
        model: Option<&str>,
        model_version: Option<&str>,
        (label, value): (Option<&str>, Option<f64>),
        truth: &Truth,
        replaced: Option<&Truth>,
    ) -> Delta {
        let mut g = Group::new(
            minute_of(received_at),
            model.map(Arc::from),
            model_version.map(Arc::from),
        );
        let predicted = label.unwrap_or("");
        match (truth, value) {
            (Truth::Label(actual), _) => g.confusion.push((confusion_key(predicted, actual), 1)),
            (Truth::Value(actual), Some(answer)) => g.add_error(answer, *actual, 1),
            (Truth::Value(_), None) => {}
        }
        match (replaced, value) {
            (Some(Truth::Label(old)), _) => g.confusion.push((confusion_key(predicted, old), -1)),
            (Some(Truth::Value(old)), Some(answer)) => g.add_error(answer, *old, -1),
            _ => {}
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
            let mut count = |kind: &str, key: &str, n: &dyn std::fmt::Display| {
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, "[\"{kind}\",{},{n}]", json_text(Some(key)));
            };
            if g.rows > 0 {
                count(kind::ROWS, "", &g.rows);
                count(kind::LATENCY_MAX, "", &g.latency_max);
            }
            if g.requests > 0 {
                count(kind::REQUESTS, "", &g.requests);
            }
            for (status, n) in &g.status {
                count(kind::STATUS, &status.to_string(), n);
            }
            for (code, n) in &g.error {
                count(kind::ERROR, code.as_deref().unwrap_or(""), n);
            }
            for (label, n) in &g.label {
                count(kind::LABEL, label.as_deref().unwrap_or(""), n);
            }
            for (bucket, n) in &g.latency {
                count(kind::LATENCY, &bucket.to_string(), n);
            }
            if g.outlier_rows > 0 {
                count(kind::OUTLIER_ROWS, "", &g.outlier_rows);
            }
            for (name, n) in &g.outliers {
                count(kind::OUTLIER, name, n);
            }
            for (key, n) in &g.bins {
                count(kind::BIN, &format!("{}:{}", key >> 16, key & 0xffff), n);
            }
            for (bin, n) in &g.output_bins {
                count(kind::OUTPUT_BIN, &bin.to_string(), n);
            }
            for (key, n) in &g.confusion {
                count(kind::CONFUSION, key, n);
            }
            for (bucket, n) in &g.confidence {
                count(kind::CONFIDENCE, &bucket.to_string(), n);
            }
            if g.errors.n != 0 {
                count(kind::ERRORS, "", &g.errors.n);
            }
            if g.unscored != 0 {
                count(kind::ERRORS, UNSCORED, &g.unscored);
            }
            for (key, n) in &g.abs_errors {
                count(kind::ABS_ERROR, key, n);
            }
            if g.errors != ErrorSums::default() {
                for (key, sum) in ERROR_SUM_KEYS.iter().zip(g.errors.sums) {
                    // `{:?}` is the shortest text that reads back as the same number.
                    count(kind::ERROR_SUM, key, &format_args!("{:?}", sum.hi));
                    if sum.lo != 0.0 {
                        let lo = format!("{key}{LOW_PART}");
                        count(kind::ERROR_SUM, &lo, &format_args!("{:?}", sum.lo));
                    }
                }
            }
            out.push_str("]]");
        }
        out.push(']');
        out
    }
}
