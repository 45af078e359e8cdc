//! What a read asks of the rollups: the range they answer ([`RollupRange`]), the split of a
//! range with bounds inside minutes ([`EdgeSplit`]) and the rows read for it ([`ReadPlan`]).

use chrono::{DateTime, Timelike, Utc};

use super::keys::{HOUR, minute_of};
use crate::audit::filter::{AuditFilter, StatusFilter};

/// One rollup count as read back, summed over the minutes of a bucket (`start`, a minute).
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub start: i64,
    pub model: String,
    pub kind: String,
    pub key: String,
    /// The count, for every kind but `error_sum`.
    pub count: i64,
    /// The count as stored: the sum, for `error_sum`.
    pub amount: f64,
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
}
