//! Statistics over seeds: summaries with Student-t intervals, paired tests by seed and Holm's
//! correction. The distributions come from [`statrs`]; the results agree with `scipy.stats`
//! and `statsmodels` (tests/fixtures/stats, made by tools/make_stats_fixtures.py).
//!
//! Degenerate inputs have defined answers instead of NaN: all differences zero give p = 1,
//! equal non-zero differences give p = 0 in the paired t test; fewer than 2 pairs, samples of
//! unequal length and non-finite values are errors ([`StatsError`]).
//!
//! ```
//! use stagewise_report::stats::{holm, paired_test, summarize, PairedTest};
//! let a = [0.91, 0.90, 0.92];
//! let b = [0.89, 0.88, 0.91];
//! let s = summarize(&a).unwrap();
//! assert!((s.mean - 0.91).abs() < 1e-12);
//! let t = paired_test(&a, &b).unwrap(); // 3 pairs: Wilcoxon signed-rank
//! assert_eq!(t.test, PairedTest::Wilcoxon);
//! assert_eq!(t.p_value, 0.25); // the smallest p possible with 3 pairs
//! assert_eq!(holm(&[0.01, 0.04]).unwrap(), vec![0.02, 0.04]);
//! ```

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};

/// Below this many pairs [`paired_test`] uses the Wilcoxon signed-rank test, from it on the
/// paired t test.
pub const WILCOXON_BELOW: usize = 6;

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A summary of nothing.
    #[error("no values given")]
    Empty,
    /// An interval needs at least two values.
    #[error("2 values needed for a confidence interval, {given} given")]
    TooFewValues {
        /// How many there were.
        given: usize,
    },
    /// A paired test needs at least two pairs.
    #[error("2 pairs needed, {given} given")]
    TooFewPairs {
        /// How many there were.
        given: usize,
    },
    /// The two samples of a paired test differ in length.
    #[error("paired samples differ in length: {a} and {b} values")]
    LengthMismatch {
        /// Length of the first sample.
        a: usize,
        /// Length of the second sample.
        b: usize,
    },
    /// A value is NaN or infinite.
    #[error("{what}[{index}] is {value}, not a finite number")]
    NonFinite {
        /// Which input (`values`, `a`, `b`, `p_values`).
        what: &'static str,
        /// Its position.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A p-value outside [0, 1].
    #[error("p_values[{index}] is {value}, not a probability in [0, 1]")]
    NotProbability {
        /// Its position.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A confidence level outside (0, 1).
    #[error("confidence level {0} is not strictly between 0 and 1")]
    Level(f64),
}

/// Mean, sample standard deviation and 95% Student-t interval of values over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); 0 for a single value.
    pub std: f64,
    /// `mean ± t(0.975, n − 1) · std / √n`; `None` for a single value.
    pub ci95: Option<(f64, f64)>,
}

/// Which paired test produced a [`TestResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairedTest {
    /// Student's paired t test (`scipy.stats.ttest_rel`).
    PairedT,
    /// The Wilcoxon signed-rank test (`scipy.stats.wilcoxon`).
    Wilcoxon,
}

impl PairedTest {
    /// The test's name in prose: "paired t" or "Wilcoxon signed-rank".
    ///
    /// ```
    /// assert_eq!(stagewise_report::stats::PairedTest::Wilcoxon.name(), "Wilcoxon signed-rank");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Self::PairedT => "paired t",
            Self::Wilcoxon => "Wilcoxon signed-rank",
        }
    }
}

/// The outcome of a two-sided paired test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The test.
    pub test: PairedTest,
    /// Pairs given (zero differences included).
    pub n: usize,
    /// t for the paired t test (±∞ for equal non-zero differences, serialized as null);
    /// min(W+, W−) for Wilcoxon, as scipy reports it.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Mean, sample standard deviation (ddof = 1) and 95% Student-t interval of `xs`.
///
/// ```
/// let s = stagewise_report::stats::summarize(&[1.0, 2.0, 3.0]).unwrap();
/// assert_eq!((s.n, s.mean, s.std), (3, 2.0, 1.0));
/// let (lo, hi) = s.ci95.unwrap();
/// assert!((hi - 2.0 - 4.302652729749464 / 3f64.sqrt()).abs() < 1e-12 && lo < 2.0);
/// assert_eq!(stagewise_report::stats::summarize(&[0.5]).unwrap().ci95, None);
/// ```
pub fn summarize(xs: &[f64]) -> Result<SampleSummary, StatsError> {
    check_finite("values", xs)?;
    if xs.is_empty() {
        return Err(StatsError::Empty);
    }
    let (mean, std) = mean_std(xs);
    let ci95 = if xs.len() < 2 {
        None
    } else {
        Some(interval(mean, std, xs.len(), 0.95))
    };
    Ok(SampleSummary {
        n: xs.len(),
        mean,
        std,
        ci95,
    })
}

/// The two-sided Student-t interval `mean ± t((1 + level)/2, n − 1) · std / √n` of `xs`.
///
/// ```
/// let (lo, hi) = stagewise_report::stats::t_interval(&[1.0, 3.0], 0.9).unwrap();
/// assert!((hi - 2.0 - 6.313751514675043).abs() < 1e-12); // t(0.95, 1) · √2 / √2
/// assert!((lo + hi - 4.0).abs() < 1e-12);
/// ```
pub fn t_interval(xs: &[f64], level: f64) -> Result<(f64, f64), StatsError> {
    check_finite("values", xs)?;
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::Level(level));
    }
    if xs.len() < 2 {
        return Err(StatsError::TooFewValues { given: xs.len() });
    }
    let (mean, std) = mean_std(xs);
    Ok(interval(mean, std, xs.len(), level))
}

/// Student's paired t test of `a` against `b`, two-sided (as `scipy.stats.ttest_rel`).
///
/// All differences zero give t = 0, p = 1; equal non-zero differences give t = ±∞, p = 0.
///
/// ```
/// use stagewise_report::stats::paired_t;
/// let r = paired_t(&[1.0, 2.0, 4.0], &[0.0, 0.0, 0.0]).unwrap();
/// assert!((r.statistic - 7f64.sqrt()).abs() < 1e-12); // mean 7/3, sd √(7/3), n = 3
/// assert_eq!(paired_t(&[1.0, 2.0], &[1.0, 2.0]).unwrap().p_value, 1.0);
/// assert_eq!(paired_t(&[2.0, 3.0], &[1.0, 2.0]).unwrap().p_value, 0.0);
/// assert!(paired_t(&[1.0], &[0.0]).unwrap_err().to_string().contains("2 pairs needed, 1 given"));
/// ```
pub fn paired_t(a: &[f64], b: &[f64]) -> Result<TestResult, StatsError> {
    let d = differences(a, b)?;
    let n = d.len();
    let result = |statistic, p_value| TestResult {
        test: PairedTest::PairedT,
        n,
        statistic,
        p_value,
    };
    if d.iter().all(|&x| x == 0.0) {
        return Ok(result(0.0, 1.0));
    }
    if d.iter().all(|&x| x == d[0]) {
        return Ok(result(f64::INFINITY.copysign(d[0]), 0.0));
    }
    let (mean, std) = mean_std(&d);
    let t = mean / (std / (n as f64).sqrt());
    let p = 2.0 * students_t(n - 1).sf(t.abs());
    Ok(result(t, p.min(1.0)))
}

/// The Wilcoxon signed-rank test of `a` against `b`, two-sided, as `scipy.stats.wilcoxon` with
/// its defaults (zero_method "wilcox", no continuity correction, method "auto").
///
/// Zero differences are dropped; the absolute differences left get average ranks. The p-value
/// is, like scipy's "auto":
/// - exact (the distribution of W+ over all 2ⁿ sign patterns) when there are no zero and no
///   tied differences and at most 50 pairs;
/// - exact over the 2ⁿ sign patterns of the tied ranks (scipy's permutation test, which is
///   exhaustive there) when there are zeros or ties and at most 13 pairs;
/// - otherwise the normal approximation with the tie correction of the variance.
///
/// All differences zero give p = 1. With n non-zero differences the smallest p is 2/2ⁿ
/// ([`wilcoxon_min_p`]).
///
/// ```
/// use stagewise_report::stats::wilcoxon_signed_rank;
/// let r = wilcoxon_signed_rank(&[3.0, 5.0, 4.0, 9.0], &[1.0, 2.0, 5.0, 1.0]).unwrap();
/// assert_eq!(r.statistic, 1.0); // the difference −1 has rank 1
/// assert_eq!(r.p_value, 0.25); // P(W+ ≥ 9) + P(W+ ≤ 1) = 4/16
/// ```
pub fn wilcoxon_signed_rank(a: &[f64], b: &[f64]) -> Result<TestResult, StatsError> {
    let d = differences(a, b)?;
    let pairs = d.len();
    let nonzero: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
    let result = |statistic, p_value| TestResult {
        test: PairedTest::Wilcoxon,
        n: pairs,
        statistic,
        p_value,
    };
    if nonzero.is_empty() {
        return Ok(result(0.0, 1.0));
    }
    let (doubled_ranks, tie_sizes) = doubled_average_ranks(&nonzero);
    let doubled_plus: u64 = nonzero
        .iter()
        .zip(&doubled_ranks)
        .filter(|(&x, _)| x > 0.0)
        .map(|(_, &r)| r)
        .sum();
    let doubled_total: u64 = doubled_ranks.iter().sum();
    let w_plus = doubled_plus as f64 / 2.0;
    let w_minus = (doubled_total - doubled_plus) as f64 / 2.0;
    let statistic = w_plus.min(w_minus);
    let has_ties = tie_sizes.iter().any(|&t| t > 1);
    let has_zeros = nonzero.len() < pairs;
    let exact = if has_ties || has_zeros {
        pairs <= 13
    } else {
        pairs <= 50
    };
    let p = if exact {
        exact_p(&doubled_ranks, doubled_plus)
    } else {
        let n = nonzero.len() as f64;
        let ties: f64 = tie_sizes.iter().map(|&t| (t * t * t - t) as f64).sum();
        let mean = n * (n + 1.0) / 4.0;
        let se = ((n * (n + 1.0) * (2.0 * n + 1.0) - ties / 2.0) / 24.0).sqrt();
        let z = (w_plus - mean) / se;
        // P(|Z| ≥ |z|) = P(χ²₁ ≥ z²): statrs' chi-squared tail is accurate to ~1e-15 here,
        // its normal tail (erfc) only to ~1e-10.
        chi_squared_1().sf(z * z)
    };
    Ok(result(statistic, p.min(1.0)))
}

/// The paired test of the issue's rule: Wilcoxon signed-rank below [`WILCOXON_BELOW`] (6)
/// pairs, the paired t test from there on.
///
/// ```
/// use stagewise_report::stats::{paired_test, PairedTest};
/// let a = [0.90, 0.91, 0.89, 0.92, 0.90, 0.91];
/// let b = [0.88, 0.90, 0.89, 0.90, 0.87, 0.90];
/// assert_eq!(paired_test(&a, &b).unwrap().test, PairedTest::PairedT);
/// assert_eq!(paired_test(&a[..5], &b[..5]).unwrap().test, PairedTest::Wilcoxon);
/// ```
pub fn paired_test(a: &[f64], b: &[f64]) -> Result<TestResult, StatsError> {
    if a.len() < WILCOXON_BELOW {
        wilcoxon_signed_rank(a, b)
    } else {
        paired_t(a, b)
    }
}

/// The smallest two-sided Wilcoxon p-value possible with `n` non-zero differences: 2/2ⁿ
/// (capped at 1), reached when all differences have the same sign.
///
/// ```
/// assert_eq!(stagewise_report::stats::wilcoxon_min_p(3), 0.25);
/// assert_eq!(stagewise_report::stats::wilcoxon_min_p(0), 1.0);
/// ```
pub fn wilcoxon_min_p(n: usize) -> f64 {
    let exponent = i32::try_from(n).unwrap_or(i32::MAX);
    (2.0 * 0.5f64.powi(exponent)).min(1.0)
}

/// Holm–Bonferroni adjusted p-values, in the input order: the i-th smallest of m is multiplied
/// by m − i (from 0), made non-decreasing in that order and capped at 1 (as `statsmodels`'
/// `multipletests(method="holm")`).
///
/// ```
/// let adjusted = stagewise_report::stats::holm(&[0.04, 0.01, 0.03]).unwrap();
/// assert_eq!(adjusted, vec![0.06, 0.03, 0.06]);
/// assert!(stagewise_report::stats::holm(&[1.5]).is_err());
/// ```
pub fn holm(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    check_finite("p_values", p_values)?;
    if let Some((index, &value)) = p_values
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(StatsError::NotProbability { index, value });
    }
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(p_values[i] * (m - rank) as f64);
        adjusted[i] = running.min(1.0);
    }
    Ok(adjusted)
}

fn check_finite(what: &'static str, xs: &[f64]) -> Result<(), StatsError> {
    match xs.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        Some((index, &value)) => Err(StatsError::NonFinite { what, index, value }),
        None => Ok(()),
    }
}

/// Mean and sample standard deviation (ddof = 1, 0 for one value) of finite, non-empty `xs`.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// `mean ± t((1 + level)/2, n − 1) · std / √n`, for n ≥ 2 and level in (0, 1).
fn interval(mean: f64, std: f64, n: usize, level: f64) -> (f64, f64) {
    let q = students_t(n - 1).inverse_cdf(0.5 + level / 2.0);
    let half = q * std / (n as f64).sqrt();
    (mean - half, mean + half)
}

fn students_t(df: usize) -> StudentsT {
    StudentsT::new(0.0, 1.0, df as f64).expect("df >= 1 is a valid Student-t parameter")
}

fn chi_squared_1() -> ChiSquared {
    ChiSquared::new(1.0).expect("1 degree of freedom is a valid chi-squared parameter")
}

/// `a − b`, checked: equal lengths, finite values, at least 2 pairs.
fn differences(a: &[f64], b: &[f64]) -> Result<Vec<f64>, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    check_finite("a", a)?;
    check_finite("b", b)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    check_finite("a - b", &d)?;
    if d.len() < 2 {
        return Err(StatsError::TooFewPairs { given: d.len() });
    }
    Ok(d)
}

/// Twice the average ranks of |x| (integers, so sums compare exactly), in the order of `xs`,
/// and the sizes of the groups of equal |x|.
fn doubled_average_ranks(xs: &[f64]) -> (Vec<u64>, Vec<u64>) {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&i, &j| xs[i].abs().total_cmp(&xs[j].abs()));
    let mut ranks = vec![0u64; xs.len()];
    let mut tie_sizes = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let value = xs[order[start]].abs();
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| xs[i].abs() == value)
                .count();
        // Ranks start + 1 ..= end; twice their mean is start + 1 + end.
        let doubled = (start + 1 + end) as u64;
        for &i in &order[start..end] {
            ranks[i] = doubled;
        }
        tie_sizes.push((end - start) as u64);
        start = end;
    }
    (ranks, tie_sizes)
}

/// Two-sided exact p of the doubled W+ `observed` over all sign patterns of `doubled_ranks`:
/// 2 · min(P(S ≤ observed), P(S ≥ observed)), capped at 1.
fn exact_p(doubled_ranks: &[u64], observed: u64) -> f64 {
    let total: u64 = doubled_ranks.iter().sum();
    let Ok(size) = usize::try_from(total + 1) else {
        return 1.0;
    };
    // counts[s]: sign patterns whose positive ranks sum to s (in f64: exact below 2^53, and
    // the callers keep n ≤ 50).
    let mut counts = vec![0.0f64; size];
    counts[0] = 1.0;
    let mut reach = 0usize;
    for &r in doubled_ranks {
        let r = r as usize;
        for s in (0..=reach).rev() {
            if counts[s] != 0.0 {
                counts[s + r] += counts[s];
            }
        }
        reach += r;
    }
    let observed = observed as usize;
    let below: f64 = counts[..=observed].iter().sum();
    let above: f64 = counts[observed..].iter().sum();
    let patterns = 2f64.powi(doubled_ranks.len() as i32);
    (2.0 * below.min(above) / patterns).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_of_one_value_have_no_interval() {
        let s = summarize(&[0.7]).unwrap();
        assert_eq!((s.n, s.mean, s.std, s.ci95), (1, 0.7, 0.0, None));
        assert_eq!(summarize(&[]), Err(StatsError::Empty));
        assert_eq!(
            t_interval(&[0.7], 0.95),
            Err(StatsError::TooFewValues { given: 1 })
        );
    }

    #[test]
    fn constant_values_have_a_zero_width_interval() {
        let s = summarize(&[0.5, 0.5, 0.5]).unwrap();
        assert_eq!(s.std, 0.0);
        assert_eq!(s.ci95, Some((0.5, 0.5)));
    }

    #[test]
    fn bad_inputs_are_errors_that_name_the_problem() {
        let nan = summarize(&[1.0, f64::NAN]).unwrap_err();
        assert_eq!(nan.to_string(), "values[1] is NaN, not a finite number");
        let inf = paired_t(&[1.0, 2.0], &[f64::INFINITY, 0.0]).unwrap_err();
        assert_eq!(inf.to_string(), "b[0] is inf, not a finite number");
        let len = wilcoxon_signed_rank(&[1.0, 2.0, 3.0], &[1.0, 2.0]).unwrap_err();
        assert_eq!(
            len.to_string(),
            "paired samples differ in length: 3 and 2 values"
        );
        let few = paired_test(&[1.0], &[2.0]).unwrap_err();
        assert_eq!(few.to_string(), "2 pairs needed, 1 given");
        assert_eq!(
            wilcoxon_signed_rank(&[], &[]),
            Err(StatsError::TooFewPairs { given: 0 })
        );
        for level in [0.0, 1.0, f64::NAN, -0.5] {
            assert!(matches!(
                t_interval(&[1.0, 2.0], level),
                Err(StatsError::Level(_))
            ));
        }
        assert_eq!(
            holm(&[0.5, -0.1]),
            Err(StatsError::NotProbability {
                index: 1,
                value: -0.1
            })
        );
        assert!(matches!(
            holm(&[f64::NAN]),
            Err(StatsError::NonFinite { index: 0, .. })
        ));
    }

    #[test]
    fn degenerate_differences_have_defined_p_values() {
        let same = [0.9, 0.8, 0.7];
        for r in [
            paired_t(&same, &same).unwrap(),
            wilcoxon_signed_rank(&same, &same).unwrap(),
        ] {
            assert_eq!((r.statistic, r.p_value, r.n), (0.0, 1.0, 3));
        }
        let lower = paired_t(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]).unwrap();
        assert_eq!((lower.statistic, lower.p_value), (f64::NEG_INFINITY, 0.0));
        // Wilcoxon has no such degenerate case: equal differences tie, p stays ≥ 2/2^n.
        let w = wilcoxon_signed_rank(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]).unwrap();
        assert_eq!(w.p_value, 0.25);
    }

    #[test]
    fn paired_test_switches_at_six_pairs() {
        let a: Vec<f64> = (0..6).map(|i| f64::from(i) * 1.5).collect();
        let b: Vec<f64> = (0..6).map(|i| f64::from(i * i) * 0.3).collect();
        assert_eq!(paired_test(&a, &b).unwrap(), paired_t(&a, &b).unwrap());
        assert_eq!(
            paired_test(&a[..5], &b[..5]).unwrap(),
            wilcoxon_signed_rank(&a[..5], &b[..5]).unwrap()
        );
    }

    #[test]
    fn doubled_ranks_average_ties() {
        let (ranks, ties) = doubled_average_ranks(&[-2.0, 1.0, 2.0, 5.0, -2.0]);
        assert_eq!(ranks, vec![6, 2, 6, 10, 6]);
        assert_eq!(ties, vec![1, 3, 1]);
    }

    #[test]
    fn holm_keeps_order_and_is_monotone() {
        assert_eq!(holm(&[]).unwrap(), Vec::<f64>::new());
        // sorted: 0.01·4, 0.02·3 = 0.06, 0.02·2 → 0.06 (monotone), 0.9·1 → 0.9
        assert_eq!(
            holm(&[0.9, 0.02, 0.01, 0.02]).unwrap(),
            vec![0.9, 0.06, 0.04, 0.06]
        );
        assert_eq!(holm(&[0.6, 0.7]).unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn min_p_is_reached_by_same_sign_differences() {
        for n in 2..=10 {
            let a: Vec<f64> = (0..n).map(|i| i as f64 + 1.0).collect();
            let b = vec![0.0; n];
            assert_eq!(
                wilcoxon_signed_rank(&a, &b).unwrap().p_value,
                wilcoxon_min_p(n)
            );
        }
        assert_eq!(wilcoxon_min_p(1), 1.0);
    }
}
