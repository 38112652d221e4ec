//! Replays the fixtures of `tools/make_stats_fixtures.py` (scipy and statsmodels, float64) and
//! requires agreement within 1e-12 relative: Student-t quantiles and intervals, the paired t
//! test, the Wilcoxon signed-rank test (exact, exhaustive over tied ranks, and normal) and
//! Holm's adjusted p-values.

use serde::Deserialize;
use stagewise_report::stats::{
    holm, paired_t, summarize, t_interval, wilcoxon_signed_rank, PairedTest,
};
use std::path::PathBuf;

const TOLERANCE: f64 = 1e-12;

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    #[derive(Deserialize)]
    struct File<T> {
        cases: Vec<T>,
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/stats")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run tools/make_stats_fixtures.py)", path.display()));
    let file: File<T> = serde_json::from_str(&text).unwrap();
    assert!(!file.cases.is_empty(), "{name} has no cases");
    file.cases
}

fn assert_close(case: &str, what: &str, got: f64, want: f64) {
    let scale = want.abs().max(f64::MIN_POSITIVE);
    assert!(
        got == want || (got - want).abs() <= TOLERANCE * scale,
        "{case}: {what} = {got:e}, scipy/statsmodels {want:e} (relative error {:e})",
        (got - want).abs() / scale
    );
}

#[derive(Deserialize)]
struct IntervalCase {
    name: String,
    values: Vec<f64>,
    level: f64,
    mean: f64,
    std: f64,
    quantile: f64,
    low: f64,
    high: f64,
}

#[test]
fn t_intervals_match_scipy_for_2_to_30_values() {
    let cases: Vec<IntervalCase> = load("t_intervals.json");
    let sizes: Vec<usize> = cases.iter().map(|c| c.values.len()).collect();
    assert!((2..=30).all(|n| sizes.contains(&n)));
    for c in &cases {
        let s = summarize(&c.values).unwrap();
        assert_eq!(s.n, c.values.len());
        assert_close(&c.name, "mean", s.mean, c.mean);
        assert_close(&c.name, "std", s.std, c.std);
        let (low, high) = t_interval(&c.values, c.level).unwrap();
        assert_close(&c.name, "low", low, c.low);
        assert_close(&c.name, "high", high, c.high);
        // The quantile itself, recovered from the interval's half width.
        let half = (high - low) / 2.0 / (s.std / (c.values.len() as f64).sqrt());
        assert_close(&c.name, "quantile", half, c.quantile);
        if c.level == 0.95 {
            let (lo95, hi95) = s.ci95.unwrap();
            assert_close(&c.name, "ci95 low", lo95, c.low);
            assert_close(&c.name, "ci95 high", hi95, c.high);
        }
    }
}

#[derive(Deserialize)]
struct PairedCase {
    name: String,
    a: Vec<f64>,
    b: Vec<f64>,
    statistic: Option<f64>,
    p_value: Option<f64>,
    method: Option<String>,
    error: Option<String>,
}

#[test]
fn paired_t_matches_scipy_ttest_rel() {
    let cases: Vec<PairedCase> = load("paired_t.json");
    assert!(cases.iter().any(|c| c.statistic.unwrap() < 0.0));
    assert!(cases.iter().any(|c| c.statistic.unwrap() > 0.0));
    for c in &cases {
        let r = paired_t(&c.a, &c.b).unwrap();
        assert_eq!((r.test, r.n), (PairedTest::PairedT, c.a.len()));
        assert_close(&c.name, "t", r.statistic, c.statistic.unwrap());
        assert_close(&c.name, "p", r.p_value, c.p_value.unwrap());
    }
}

#[test]
fn wilcoxon_matches_scipy_with_its_default_method() {
    let cases: Vec<PairedCase> = load("wilcoxon.json");
    let mut methods = std::collections::BTreeSet::new();
    for c in &cases {
        let got = wilcoxon_signed_rank(&c.a, &c.b);
        if let Some(error) = &c.error {
            // scipy gives p = 1 for one pair; stagewise refuses fewer than 2.
            assert_eq!(got.unwrap_err().to_string(), *error, "{}", c.name);
            continue;
        }
        let r = got.unwrap();
        assert_eq!((r.test, r.n), (PairedTest::Wilcoxon, c.a.len()));
        assert_close(&c.name, "statistic", r.statistic, c.statistic.unwrap());
        assert_close(&c.name, "p", r.p_value, c.p_value.unwrap());
        methods.insert(c.method.clone().unwrap());
    }
    let want: std::collections::BTreeSet<String> = ["asymptotic", "exact", "permutation"]
        .map(String::from)
        .into();
    assert_eq!(methods, want, "every branch of scipy's rule is exercised");
}

#[test]
fn wilcoxon_exact_minimum_p_is_two_over_two_to_the_n() {
    let cases: Vec<PairedCase> = load("wilcoxon.json");
    for n in 2..=10usize {
        let name = format!("exact_n{n}_all_positive");
        let c = cases.iter().find(|c| c.name == name).unwrap();
        let want = 2.0 / 2f64.powi(n as i32);
        assert_eq!(c.p_value, Some(want), "{name}: the fixture itself");
        assert_eq!(wilcoxon_signed_rank(&c.a, &c.b).unwrap().p_value, want);
    }
}

#[derive(Deserialize)]
struct HolmCase {
    name: String,
    p_values: Vec<f64>,
    adjusted: Vec<f64>,
}

#[test]
fn holm_matches_statsmodels_multipletests() {
    for c in load::<HolmCase>("holm.json") {
        let got = holm(&c.p_values).unwrap();
        assert_eq!(got.len(), c.adjusted.len(), "{}", c.name);
        for (i, (&g, &w)) in got.iter().zip(&c.adjusted).enumerate() {
            assert_close(&c.name, &format!("adjusted[{i}]"), g, w);
        }
    }
}
