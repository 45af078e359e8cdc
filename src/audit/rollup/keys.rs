//! The keys of the counts: minutes since the epoch, the latency histogram's buckets and the
//! kinds of count.

use chrono::{DateTime, Utc};

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
    /// A regression model's answered rows by the bin of its output baseline.
    pub const OUTPUT_BIN: &str = "output_bin";
    pub const CONFUSION: &str = "confusion";
    /// Answered rows by their confidence (the served class's probability), in hundredths.
    pub const CONFIDENCE: &str = "confidence";
    /// A regressor's answered rows with a true value (feedback): key `""` for those in the
    /// sums, [`UNSCORED`](super::UNSCORED) for those too large to add to them.
    pub const ERRORS: &str = "errors";
    /// Sums over those rows (the only kind whose counts are not whole numbers): keys
    /// [`ERROR_SUM_KEYS`](super::ERROR_SUM_KEYS).
    pub const ERROR_SUM: &str = "error_sum";
    /// Those rows by the bucket of their absolute error ([`abs_error_bucket`](super::abs_error_bucket)).
    pub const ABS_ERROR: &str = "abs_error";
}

/// The key of the `errors` count of pairs left out of the sums.
pub const UNSCORED: &str = "unscored";

/// The keys of the `error_sum` counts, in the order of
/// [`ErrorSums::terms`](crate::stats::ErrorSums::terms): the sums of the error (answer −
/// truth), its absolute value and square, the truth and its square.
pub const ERROR_SUM_KEYS: [&str; 5] = ["error", "abs_error", "sq_error", "truth", "sq_truth"];

/// The suffix of the key that keeps what a sum's additions rounded away
/// ([`Sum::lo`](crate::stats::Sum)): `sq_error~lo` beside `sq_error`. The sum is the two
/// added.
pub const LOW_PART: &str = "~lo";

/// The place in [`ERROR_SUM_KEYS`] of an `error_sum` key or of its low part.
fn error_sum_index(key: &str) -> Option<usize> {
    let base = key.strip_suffix(LOW_PART).unwrap_or(key);
    ERROR_SUM_KEYS.iter().position(|k| *k == base)
}

/// Adds a count read back (`count`, or `amount` for a sum) to `sums` if it is one of theirs:
/// an `errors` count of pairs in the sums, or an `error_sum` (either part); whether it was.
pub fn add_to_error_sums(
    sums: &mut crate::stats::ErrorSums,
    kind: &str,
    key: &str,
    count: i64,
    amount: f64,
) -> bool {
    match kind {
        kind::ERRORS if key.is_empty() => sums.n += count,
        kind::ERROR_SUM => match error_sum_index(key) {
            Some(i) => sums.sums[i].add(amount),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// The key of an `abs_error` count: `""` for an exact answer, else the bucket of the
/// latency histogram's rule applied to the error, `ceil(ln(e) / ln γ)` (negative below 1),
/// read back within [`LATENCY_RELATIVE_ERROR`] by [`abs_error_value`].
pub fn abs_error_bucket(e: f64) -> String {
    if e == 0.0 {
        String::new()
    } else {
        ((e.ln() / LN_GAMMA).ceil() as i64).to_string()
    }
}

/// The absolute error an `abs_error` key stands for (0 for `""`, or a key that is not one).
pub fn abs_error_value(key: &str) -> f64 {
    let Ok(bucket) = key.parse::<i64>() else {
        return 0.0;
    };
    let gamma = LN_GAMMA.exp();
    2.0 * (bucket as f64 * LN_GAMMA).exp() / (gamma + 1.0)
}

/// The key of a `confidence` count: the hundredth the probability falls in, `[k/100,
/// (k+1)/100)` (1 in 100 of its own).
pub fn confidence_bucket(p: f64) -> i64 {
    crate::stats::hundredth(p)
}

/// The key of a `confusion` count.
pub fn confusion_key(predicted: &str, actual: &str) -> String {
    serde_json::to_string(&(predicted, actual)).unwrap_or_default()
}

/// Minutes per hour row.
pub const HOUR: i64 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absolute_error_reads_back_within_the_bound() {
        for e in [1e-9, 0.003, 0.5, 1.0, 2.5, 77.7, 1e6] {
            let back = abs_error_value(&abs_error_bucket(e));
            // The bound is met exactly at a bucket's upper edge (1 is one): allow rounding.
            assert!(
                (back - e).abs() <= LATENCY_RELATIVE_ERROR * e * (1.0 + 1e-12),
                "{e} read as {back}"
            );
        }
        assert_eq!(abs_error_bucket(0.0), "");
        assert_eq!(abs_error_value(""), 0.0);
    }

    #[test]
    fn a_confidence_falls_in_its_hundredth() {
        assert_eq!(confidence_bucket(0.0), 0);
        assert_eq!(confidence_bucket(0.009), 0);
        assert_eq!(confidence_bucket(0.5), 50);
        assert_eq!(confidence_bucket(0.999), 99);
        assert_eq!(confidence_bucket(1.0), 100);
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
}
