//! [`Counts`]: the packed counts of one minute or hour, deltas folded into them, and the hour
//! rows made from minutes.

use std::collections::BTreeMap;

use super::keys::{HOUR, LOW_PART, kind};
use crate::stats::Sum;

/// The counts of one minute (or hour), model and version: `kind → key → count`. Counts are
/// whole numbers but for the `error_sum` kind's sums; all are kept as `f64`, exact for whole
/// numbers below 2^53.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts(BTreeMap<String, BTreeMap<String, f64>>);

/// A count as stored: a whole number, or a sum.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Stored {
    Count(i64),
    Sum(f64),
}

impl Counts {
    /// Adds `n` (the larger of the two for `latency_max`; to an `error_sum`, compensated: what
    /// the addition rounds away goes to the key's low part, [`LOW_PART`]).
    pub fn add(&mut self, kind: &str, key: &str, n: f64) {
        let keys = match self.0.get_mut(kind) {
            Some(keys) => keys,
            None => self.0.entry(kind.to_string()).or_default(),
        };
        if kind == kind::ERROR_SUM && !key.ends_with(LOW_PART) {
            let hi = match keys.get_mut(key) {
                Some(hi) => hi,
                None => keys.entry(key.to_string()).or_insert(0.0),
            };
            let mut sum = Sum { hi: *hi, lo: 0.0 };
            sum.add(n);
            *hi = sum.hi;
            if sum.lo != 0.0 {
                *keys.entry(format!("{key}{LOW_PART}")).or_insert(0.0) += sum.lo;
            }
            return;
        }
        match keys.get_mut(key) {
            Some(v) if kind == kind::LATENCY_MAX => *v = v.max(n),
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
        let list: Vec<(&str, &str, Stored)> = self
            .0
            .iter()
            .flat_map(|(kind, keys)| {
                keys.iter().map(move |(key, n)| {
                    let n = match kind.as_str() {
                        kind::ERROR_SUM => Stored::Sum(*n),
                        _ => Stored::Count(*n as i64),
                    };
                    (kind.as_str(), key.as_str(), n)
                })
            })
            .filter(|(kind, _, n)| match n {
                Stored::Count(n) => *n != 0 || *kind == kind::LATENCY_MAX,
                Stored::Sum(_) => true,
            })
            .collect();
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
    }

    pub fn parse(json: &str) -> anyhow::Result<Counts> {
        let list: Vec<(String, String, f64)> = serde_json::from_str(json)
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
    type Group = (i64, String, String, Vec<(String, String, f64)>);
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
pub(super) fn json_text(text: Option<&str>) -> String {
    serde_json::to_string(text.unwrap_or("")).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::super::keys::confusion_key;
    use super::*;

    #[test]
    fn counts_sum_keep_the_largest_maximum_and_drop_what_cancels() {
        let mut a = Counts::default();
        a.add(kind::ROWS, "", 2.0);
        a.add(kind::LATENCY_MAX, "", 70.0);
        a.add(kind::CONFUSION, &confusion_key("a", "b"), 1.0);
        let mut b = Counts::default();
        b.add(kind::ROWS, "", 3.0);
        b.add(kind::LATENCY_MAX, "", 50.0);
        b.add(kind::CONFUSION, &confusion_key("a", "b"), -1.0);
        a.merge(&b);
        assert_eq!(
            a.to_json(),
            r#"[["latency_max","",70],["rows","",5]]"#,
            "summed, the larger maximum, the cancelled count left out"
        );
        assert_eq!(Counts::parse(&a.to_json()).unwrap(), {
            let mut c = Counts::default();
            c.add(kind::LATENCY_MAX, "", 70.0);
            c.add(kind::ROWS, "", 5.0);
            c
        });
    }
}
