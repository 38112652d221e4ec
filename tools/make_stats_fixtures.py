#!/usr/bin/env python3
"""Generate the fixtures of stagewise_report::stats with scipy and statsmodels, in float64:

    pip install scipy numpy statsmodels
    python3 tools/make_stats_fixtures.py   # writes tests/fixtures/stats/*.json

Files, each {"generator": ..., "cases": [...]} with a "name" per case:
- t_intervals.json: `values`, `level`; expected `mean`, `std` (ddof 1), `quantile`
  (scipy.stats.t.ppf((1 + level) / 2, n - 1)) and `low`, `high`
  (scipy.stats.t.interval(level, n - 1, loc=mean, scale=std / sqrt(n))), for n = 2..30;
- paired_t.json: `a`, `b`; expected `statistic`, `p_value` of scipy.stats.ttest_rel;
- wilcoxon.json: `a`, `b`; expected `statistic`, `p_value` of scipy.stats.wilcoxon with its
  defaults, and `method`, the p-value scipy's "auto" used ("exact", "permutation" or
  "asymptotic", recomputed here with that method to check the rule). Cases scipy cannot
  test (a single pair) carry `error` instead: stagewise refuses fewer than 2 pairs;
- holm.json: `p_values`; expected `adjusted` of
  statsmodels.stats.multitest.multipletests(method="holm").

crates/report/tests/stats_fixtures.rs reads every case and requires agreement within 1e-12
relative.
"""
import json
import pathlib
import warnings

import numpy as np
import scipy
import statsmodels
from scipy import stats
from statsmodels.stats.multitest import multipletests

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "stats"
GENERATOR = (f"tools/make_stats_fixtures.py, scipy {scipy.__version__}, "
             f"statsmodels {statsmodels.__version__}, numpy {np.__version__}")


def floats(xs):
    return [float(x) for x in xs]


def t_intervals(rng):
    cases = []
    for n in range(2, 31):
        for level in (0.95, 0.9, 0.99):
            values = rng.normal(0.9, 0.01 * (1 + n % 4), size=n)
            mean = float(np.mean(values))
            std = float(np.std(values, ddof=1))
            low, high = stats.t.interval(level, n - 1, loc=mean, scale=std / np.sqrt(n))
            cases.append({
                "name": f"n{n}_level{level}", "values": floats(values), "level": level,
                "mean": mean, "std": std,
                "quantile": float(stats.t.ppf((1 + level) / 2, n - 1)),
                "low": float(low), "high": float(high),
            })
    return cases


def paired_t(rng):
    pairs = []
    for n in (2, 3, 5, 6, 10, 30):
        a = rng.normal(0.9, 0.01, size=n)
        pairs.append((f"n{n}_a_higher", a, a - 0.004 + rng.normal(0, 0.003, size=n)))
        pairs.append((f"n{n}_a_lower", a, a + 0.004 + rng.normal(0, 0.003, size=n)))
        pairs.append((f"n{n}_no_effect", a, a + rng.normal(0, 0.003, size=n)))
    pairs.append(("mixed_sign_differences", [0.91, 0.88, 0.90, 0.93, 0.89, 0.92],
                  [0.90, 0.90, 0.89, 0.91, 0.91, 0.90]))
    pairs.append(("strong_effect", [1.0, 2.0, 3.0, 4.0, 5.0], [0.1, 1.12, 2.09, 3.11, 4.1]))
    cases = []
    for name, a, b in pairs:
        r = stats.ttest_rel(a, b)
        cases.append({"name": name, "a": floats(a), "b": floats(b),
                      "statistic": float(r.statistic), "p_value": float(r.pvalue)})
    return cases


def wilcoxon_method(d):
    """The p-value method scipy's "auto" takes (scipy/stats/_wilcoxon.py, scipy >= 1.15)."""
    absd = np.abs(d[d != 0])
    ties = len(np.unique(absd)) < len(absd)
    zeros = bool(np.any(d == 0))
    if not (ties or zeros) and len(d) <= 50:
        return "exact"
    if len(d) <= 13:
        return "permutation"
    return "asymptotic"


def wilcoxon(rng):
    pairs = []
    for n in range(1, 11):
        # Distinct magnitudes, no zeros: the exact distribution.
        a = rng.normal(0.9, 0.01, size=n)
        pairs.append((f"exact_n{n}_all_positive", a + rng.uniform(0.001, 0.01, size=n), a))
        pairs.append((f"exact_n{n}_all_negative", a - rng.uniform(0.001, 0.01, size=n), a))
        if n >= 2:
            pairs.append((f"exact_n{n}_mixed", a + rng.normal(0.002, 0.005, size=n), a))
    pairs.append(("exact_n20", rng.normal(0.0, 1.0, size=20), rng.normal(0.3, 1.0, size=20)))
    pairs.append(("exact_n50", rng.normal(0.0, 1.0, size=50), rng.normal(0.2, 1.0, size=50)))
    pairs.append(("asymptotic_n60_no_ties", rng.normal(0.0, 1.0, size=60),
                  rng.normal(0.2, 1.0, size=60)))
    # Zeros and ties: exhaustive permutation up to 13 pairs, the normal approximation above.
    pairs.append(("zero_n4", [1.0, 2.0, 3.0, 4.0], [1.0, 1.5, 2.25, 2.875]))
    pairs.append(("ties_n5", [3.0, 1.0, 4.0, 2.0, 6.0], [1.0, 2.0, 2.0, 1.0, 5.0]))
    pairs.append(("zeros_and_ties_n8", [5, 3, 4, 4, 2, 6, 1, 3], [4, 3, 2, 5, 2, 4, 2, 1]))
    pairs.append(("ties_n13", list(range(13)), [0, 3, 1, 1, 5, 3, 7, 5, 6, 11, 8, 12, 13]))
    pairs.append(("zeros_n14", list(range(14)), [0, 0, 1, 4, 2, 5, 5, 9, 6, 8, 12, 9, 13, 11]))
    pairs.append(("ties_n25", rng.integers(0, 6, size=25), rng.integers(1, 7, size=25)))
    pairs.append(("zeros_ties_n40", rng.integers(0, 4, size=40), rng.integers(0, 4, size=40)))
    pairs.append(("accuracies_with_ties_n16",
                  np.round(rng.normal(0.90, 0.004, size=16), 3),
                  np.round(rng.normal(0.899, 0.004, size=16), 3)))
    cases = []
    for name, a, b in pairs:
        a = np.asarray(a, dtype=float)
        b = np.asarray(b, dtype=float)
        d = a - b
        if len(d) < 2:
            r = stats.wilcoxon(a, b)
            cases.append({"name": name, "a": floats(a), "b": floats(b),
                          "error": "2 pairs needed, 1 given",
                          "scipy_p_value": float(r.pvalue)})
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = stats.wilcoxon(a, b)
            method = wilcoxon_method(d)
            check = stats.wilcoxon(a, b, method=stats.PermutationMethod()
                                   if method == "permutation" else method)
        assert check.pvalue == r.pvalue, (name, method, check.pvalue, r.pvalue)
        cases.append({"name": name, "a": floats(a), "b": floats(b), "method": method,
                      "statistic": float(r.statistic), "p_value": float(r.pvalue)})
    return cases


def holm(rng):
    inputs = [
        ("single", [0.03]),
        ("two", [0.04, 0.01]),
        ("sorted", [0.001, 0.01, 0.02, 0.04, 0.2]),
        ("unsorted", [0.2, 0.001, 0.04, 0.01, 0.02]),
        ("ties", [0.02, 0.01, 0.02, 0.02, 0.5]),
        ("all_equal", [0.3, 0.3, 0.3]),
        ("near_one", [0.9999, 0.98, 0.6, 0.999999]),
        ("capped", [0.4, 0.5, 0.35, 0.45]),
        ("with_zero_and_one", [0.0, 1.0, 0.02, 0.0]),
        ("tiny", [1e-12, 3e-10, 2e-8]),
        ("random_12", rng.uniform(0.0, 0.2, size=12)),
    ]
    cases = []
    for name, p in inputs:
        _, adjusted, _, _ = multipletests(p, method="holm")
        cases.append({"name": name, "p_values": floats(p), "adjusted": floats(adjusted)})
    return cases


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    makers = [("t_intervals", t_intervals), ("paired_t", paired_t), ("wilcoxon", wilcoxon),
              ("holm", holm)]
    for seed, (name, make) in enumerate(makers, start=1400):
        cases = make(np.random.default_rng(seed))
        fixture = {"generator": f"{GENERATOR}, seed {seed}", "cases": cases}
        (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=1) + "\n")
        print(f"wrote {name}.json ({len(cases)} cases)")


if __name__ == "__main__":
    main()
