//! The statistics behind the training baseline and drift monitoring, written once: decile bins
//! and counts over them, class counts, the population stability index (PSI), the two-sample
//! Kolmogorov–Smirnov test, and a regressor's errors (from sums, so that rows and rollups give
//! the same figures).
//!
//! It sits below [`crate::model`] (training computes the baseline's bins with it) and
//! [`crate::monitor`] (drift compares live counts with them), so both use the same definitions.

/// Proportions below this are raised to it, so empty bins do not make PSI infinite.
const PSI_FLOOR: f64 = 1e-4;

/// Index of the bin `value` falls in. `edges` are ascending interior cut points: bin 0 is
/// `(-inf, e0)`, bin i is `[e(i-1), e(i))`, the last bin is `[e(k-1), +inf)`, so every real
/// value falls in exactly one of `edges.len() + 1` bins.
pub fn bin_index(edges: &[f64], value: f64) -> usize {
    edges.partition_point(|&e| e <= value)
}

/// How many of `values` fall in each bin of `edges` (see [`bin_index`]).
pub fn bin_counts(edges: &[f64], values: impl IntoIterator<Item = f64>) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for v in values {
        counts[bin_index(edges, v)] += 1;
    }
    counts
}

/// How many of `classes` are each of `n_classes` classes; indices out of range are not counted.
pub fn class_counts(classes: impl IntoIterator<Item = u32>, n_classes: usize) -> Vec<u64> {
    let mut counts = vec![0u64; n_classes];
    for c in classes {
        if let Some(slot) = counts.get_mut(c as usize) {
            *slot += 1;
        }
    }
    counts
}

/// Each count as a share of their total (all zeros when the total is zero).
pub fn proportions(counts: &[u64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| if n > 0 { c as f64 / n as f64 } else { 0.0 })
        .collect()
}

/// The hundredth a probability falls in, `[k/100, (k+1)/100)` (1 in 100 of its own).
pub fn hundredth(p: f64) -> i64 {
    ((p * 100.0).floor() as i64).clamp(0, 100)
}

/// The tenth of a hundredth ([`hundredth`]), `[k/10, (k+1)/10)`, with 1 in the top one: the
/// bins confidence drift compares.
pub fn tenth(hundredth: i64) -> usize {
    (hundredth.clamp(0, 100) / 10).min(9) as usize
}

/// The key of the bucket holding the ⌈q·n⌉-th of the `n` values counted in `sorted` (buckets
/// sorted by key, `(key, count)`; a negative count counts as none): the nearest-rank
/// quantile of a histogram. `None` when it holds nothing.
pub fn nearest_rank<T: Copy>(sorted: &[(T, i64)], q: f64) -> Option<T> {
    let n: i64 = sorted.iter().map(|(_, c)| (*c).max(0)).sum();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as i64).clamp(1, n);
    let mut seen = 0;
    sorted
        .iter()
        .find(|(_, c)| {
            seen += (*c).max(0);
            seen >= rank
        })
        .map(|(k, _)| *k)
}

/// Linear-interpolated quantile of sorted values (numpy's default method).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// PSI = Σ (a − e) · ln(a / e) over bins, with `expected` proportions and `actual` counts.
pub fn psi(expected: &[f64], actual_counts: &[u64]) -> f64 {
    let n: u64 = actual_counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual_counts)
        .map(|(&e, &c)| {
            let a = (c as f64 / n as f64).max(PSI_FLOOR);
            let e = e.max(PSI_FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Two-sample Kolmogorov–Smirnov: the largest gap between the empirical CDFs of two sorted
/// samples, and its asymptotic p-value (Numerical Recipes' `probks` with the small-sample
/// correction of Stephens).
pub fn ks_two_sample(a_sorted: &[f64], b_sorted: &[f64]) -> (f64, f64) {
    let (n, m) = (a_sorted.len(), b_sorted.len());
    if n == 0 || m == 0 {
        return (0.0, 1.0);
    }
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < n && j < m {
        let x = a_sorted[i].min(b_sorted[j]);
        while i < n && a_sorted[i] <= x {
            i += 1;
        }
        while j < m && b_sorted[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
    }
    let en = ((n * m) as f64 / (n + m) as f64).sqrt();
    (d, kolmogorov_p((en + 0.12 + 0.11 / en) * d))
}

/// The Kolmogorov distribution's survival function Q_KS(λ) = P(K > λ), the asymptotic p-value
/// of a KS statistic scaled to λ. Two series, each where it converges fast (the split scipy's
/// `kolmogorov` uses too):
///
/// - λ ≥ 1: Q = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}, whose terms fall below 1e-16 by k = 5;
/// - λ < 1: Q = 1 − (√(2π)/λ) Σ_{k≥1} e^{−(2k−1)²π²/(8λ²)}, the same function in Jacobi's
///   theta form. The alternating series converges slowly here (below λ ≈ 0.03 it needs
///   thousands of terms), and cut short it gives a partial sum, not the p-value: near-identical
///   samples would look significant.
fn kolmogorov_p(lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    let sum: f64 = if lambda >= 1.0 {
        let a = -2.0 * lambda * lambda;
        2.0 * (1..=20)
            .map(|k| {
                let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
                sign * (a * (k * k) as f64).exp()
            })
            .sum::<f64>()
    } else {
        let a = -std::f64::consts::PI * std::f64::consts::PI / (8.0 * lambda * lambda);
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / lambda
            * (1..=20)
                .map(|k| {
                    let odd = (2 * k - 1) as f64;
                    (a * odd * odd).exp()
                })
                .sum::<f64>();
        1.0 - cdf
    };
    sum.clamp(0.0, 1.0)
}

/// How far a regressor's answers are from the truth, as scikit-learn's
/// `mean_absolute_error`, `mean_squared_error` (its root) and `r2_score` define them. The
/// error of a row is its answer minus the truth, so a positive `mean_error` (bias) means the
/// model answers too high.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RegressionErrors {
    pub mae: f64,
    pub rmse: f64,
    /// 1 − Σ(error²) / Σ(truth − mean truth)²; with every truth equal, 1 when every answer is
    /// right and 0 otherwise (scikit-learn's rule).
    pub r2: f64,
    pub mean_error: f64,
}

/// A sum kept with the rounding error of its additions (Neumaier's compensated summation):
/// a large term added and taken out again leaves the small ones as they were, where a plain
/// `f64` sum would have lost them to the large one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sum {
    pub hi: f64,
    /// What the additions to `hi` rounded away.
    pub lo: f64,
}

impl Sum {
    pub fn add(&mut self, x: f64) {
        let t = self.hi + x;
        self.lo += if self.hi.abs() >= x.abs() {
            (self.hi - t) + x
        } else {
            (x - t) + self.hi
        };
        self.hi = t;
    }

    pub fn merge(&mut self, other: &Sum) {
        self.add(other.hi);
        self.lo += other.lo;
    }

    pub fn value(&self) -> f64 {
        self.hi + self.lo
    }
}

/// The sums over (answer, truth) pairs that [`RegressionErrors`] follow from; they add up
/// across rows, minutes and hours, and a pair is taken out again by adding it with weight −1
/// (feedback that replaces a truth): compensated sums, so a mistaken truth far larger than
/// the others, once replaced, leaves the others' figures as they were.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorSums {
    pub n: i64,
    /// In the order of [`ErrorSums::terms`].
    pub sums: [Sum; 5],
}

impl ErrorSums {
    /// What one pair adds: its error (answer − truth), the error's absolute value and square,
    /// the truth and its square; `None` when a square passes [`ErrorSums::LARGEST_TERM`] (or
    /// is not finite), and such a pair is left out of every sum: sums of many stay finite.
    pub fn terms(answer: f64, truth: f64) -> Option<[f64; 5]> {
        let e = answer - truth;
        let terms = [e, e.abs(), e * e, truth, truth * truth];
        terms
            .iter()
            .all(|t| t.abs() <= Self::LARGEST_TERM)
            .then_some(terms)
    }

    /// The largest term a pair may add (about 1e140 squared).
    pub const LARGEST_TERM: f64 = 1e280;

    pub fn add(&mut self, answer: f64, truth: f64) {
        self.add_weighted(answer, truth, 1);
    }

    /// Adds the pair `weight` times (−1 takes it out).
    pub fn add_weighted(&mut self, answer: f64, truth: f64, weight: i64) {
        if let Some(terms) = Self::terms(answer, truth) {
            self.n += weight;
            for (sum, t) in self.sums.iter_mut().zip(terms) {
                sum.add(weight as f64 * t);
            }
        }
    }

    pub fn merge(&mut self, other: &ErrorSums) {
        self.n += other.n;
        for (sum, t) in self.sums.iter_mut().zip(&other.sums) {
            sum.merge(t);
        }
    }

    /// The errors, or `None` over no pairs.
    pub fn errors(&self) -> Option<RegressionErrors> {
        if self.n <= 0 {
            return None;
        }
        let n = self.n as f64;
        let [error, abs_error, sq_error, truth, sq_truth] = self.sums.map(|s| s.value());
        // Sums of magnitudes cannot be negative; rounding must not make them so.
        let (abs_error, sq_error, sq_truth) =
            (abs_error.max(0.0), sq_error.max(0.0), sq_truth.max(0.0));
        let total = (sq_truth - truth * truth / n).max(0.0);
        let r2 = if total > 0.0 {
            1.0 - sq_error / total
        } else if sq_error == 0.0 {
            1.0
        } else {
            0.0
        };
        Some(RegressionErrors {
            mae: abs_error / n,
            rmse: (sq_error / n).sqrt(),
            r2,
            mean_error: error / n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_index_is_left_closed() {
        let edges = [1.0, 2.0];
        assert_eq!(bin_index(&edges, 0.5), 0);
        assert_eq!(bin_index(&edges, 1.0), 1);
        assert_eq!(bin_index(&edges, 1.5), 1);
        assert_eq!(bin_index(&edges, 2.0), 2);
        assert_eq!(bin_index(&edges, 99.0), 2);
        assert_eq!(bin_counts(&edges, [0.0, 1.0, 1.5, 7.0]), vec![1, 2, 1]);
    }

    #[test]
    fn class_counts_skip_unknown_classes() {
        assert_eq!(class_counts([0, 2, 2, 9], 3), vec![1, 0, 2]);
        assert_eq!(proportions(&[1, 3]), vec![0.25, 0.75]);
        assert_eq!(proportions(&[0, 0]), vec![0.0, 0.0]);
    }

    #[test]
    fn psi_matches_a_hand_computed_value() {
        // expected 25% in each of 4 bins; actual counts 10, 20, 30, 40 of 100.
        // PSI = (0.1−0.25)ln(0.4) + (0.2−0.25)ln(0.8) + (0.3−0.25)ln(1.2) + (0.4−0.25)ln(1.6)
        //     = 0.137444 + 0.011157 + 0.009116 + 0.070500 = 0.228217
        let v = psi(&[0.25; 4], &[10, 20, 30, 40]);
        assert!((v - 0.228_217).abs() < 1e-5, "{v}");
        assert_eq!(psi(&[0.5, 0.5], &[7, 7]), 0.0);
    }

    #[test]
    fn ks_matches_a_hand_computed_value() {
        // a = 1..5, b = 3..7: the CDFs differ most at x = 2 (a: 2/5, b: 0) and x = 5/6;
        // D = 0.4. en = sqrt(25/10) = 1.5811; λ = (1.5811 + 0.12 + 0.0696) · 0.4 = 0.70828;
        // Q(λ) = 2(e^{−2λ²} − e^{−8λ²} + …) = 0.69740
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [3.0, 4.0, 5.0, 6.0, 7.0];
        let (d, p) = ks_two_sample(&a, &b);
        assert!((d - 0.4).abs() < 1e-12);
        assert!((p - 0.6974).abs() < 1e-4, "{p}");
        let (d, p) = ks_two_sample(&a, &a);
        assert_eq!(d, 0.0);
        assert_eq!(p, 1.0);
    }

    /// `scipy.stats.kstwobign.sf(λ)` (SciPy 1.17.1), the Kolmogorov distribution's survival
    /// function: `[(l, float(kstwobign.sf(l))) for l in (1e-4, 1e-3, …, 3.0)]`.
    const SCIPY_KSTWOBIGN_SF: [(f64, f64); 21] = [
        (0.0001, 1.0),
        (0.001, 1.0),
        (0.01, 1.0),
        (0.026, 1.0),
        (0.05, 1.0),
        (0.1, 1.0),
        (0.2, 0.999999999999495),
        (0.3, 0.9999906941986655),
        (0.4, 0.9971923267772983),
        (0.5, 0.9639452436648751),
        (0.6, 0.8642827790506042),
        (0.7, 0.7112351950296893),
        (0.8, 0.5441424115741981),
        (0.9, 0.3927307079406543),
        (1.0, 0.26999967167735456),
        (1.1, 0.1777181926064012),
        (1.2, 0.11224966667072497),
        (1.5, 0.022217962616525127),
        (2.0, 0.0006709252557796953),
        (2.5, 7.453306344157342e-06),
        (3.0, 3.045995948942526e-08),
    ];

    #[test]
    fn kolmogorov_p_matches_scipy() {
        for (lambda, want) in SCIPY_KSTWOBIGN_SF {
            let got = kolmogorov_p(lambda);
            let tolerance = 1e-12 + 1e-9 * want;
            assert!(
                (got - want).abs() <= tolerance,
                "λ = {lambda}: {got} against scipy's {want}"
            );
        }
        assert_eq!(kolmogorov_p(0.0), 1.0);
        assert_eq!(kolmogorov_p(f64::NAN), 1.0);
        assert_eq!(kolmogorov_p(f64::INFINITY), 0.0);
    }

    #[test]
    fn near_identical_samples_are_not_significant() {
        // Replaying the training rows: D is tiny (one value of 1000 differs), λ ≈ 0.023, where
        // the alternating series cut short gave p ≈ 0.02.
        let a: Vec<f64> = (0..1000).map(f64::from).collect();
        let mut b = a.clone();
        b[0] = 0.5;
        b.sort_by(f64::total_cmp);
        let (d, p) = ks_two_sample(&a, &b);
        assert!(d > 0.0 && d <= 0.001 + 1e-12, "{d}");
        assert_eq!(p, 1.0);
    }

    proptest::proptest! {
        /// Between two of scipy's values the p-value lies between them (the survival function
        /// falls), so no λ in 1e-4..3 strays from the reference.
        #[test]
        fn kolmogorov_p_stays_within_scipys_values(lambda in 1e-4f64..3.0) {
            let got = kolmogorov_p(lambda);
            let above = SCIPY_KSTWOBIGN_SF.iter().rev().find(|(l, _)| *l <= lambda).unwrap();
            let below = SCIPY_KSTWOBIGN_SF.iter().find(|(l, _)| *l >= lambda).unwrap();
            proptest::prop_assert!(got <= above.1 + 1e-12, "λ = {}: {} above {:?}", lambda, got, above);
            proptest::prop_assert!(got >= below.1 - 1e-12, "λ = {}: {} below {:?}", lambda, got, below);
        }
    }

    #[test]
    fn regression_errors_follow_scikit_learns_definitions() {
        // y_true = [3, -0.5, 2, 7], y_pred = [2.5, 0.0, 2, 8]: scikit-learn's own example
        // gives MAE 0.5, MSE 0.375 and R² 0.9486081370449679.
        let mut sums = ErrorSums::default();
        for (p, t) in [(2.5, 3.0), (0.0, -0.5), (2.0, 2.0), (8.0, 7.0)] {
            sums.add(p, t);
        }
        let e = sums.errors().unwrap();
        assert!((e.mae - 0.5).abs() < 1e-12);
        assert!((e.rmse - 0.375f64.sqrt()).abs() < 1e-12);
        assert!((e.r2 - 0.948_608_137_044_967_9).abs() < 1e-12, "{}", e.r2);
        assert!((e.mean_error - 0.25).abs() < 1e-12);
        let mut halves = ErrorSums::default();
        let mut other = ErrorSums::default();
        halves.add(2.5, 3.0);
        halves.add(0.0, -0.5);
        other.add(2.0, 2.0);
        other.add(8.0, 7.0);
        halves.merge(&other);
        assert_eq!(halves, sums);
        assert_eq!(ErrorSums::default().errors(), None);
        // A mistaken truth of 1e9, replaced: the other pairs' sums are as before.
        let mut fixed = sums;
        fixed.add(2.0, 1e9);
        fixed.add_weighted(2.0, 1e9, -1);
        assert_eq!(fixed.errors(), sums.errors());
        let mut flat = ErrorSums::default();
        flat.add(1.0, 1.0);
        assert_eq!(flat.errors().unwrap().r2, 1.0);
        flat.add(2.0, 1.0);
        assert_eq!(flat.errors().unwrap().r2, 0.0);
    }
}
