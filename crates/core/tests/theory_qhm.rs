//! QHM on a noisy scalar quadratic: exact stationary variance, rate and divergence threshold
//! against simulations of the actual recursion (docs/theory.md §1, §3.2).

mod theory_common;

use stagewise_core::theory::{
    characteristic_roots, convergence_rate, divergence_threshold, effective_temperature,
    propagate_covariance, stability_factor, stability_margin, stationary_covariance,
    stationary_variance, stationary_variance_psi, stationary_variance_series, QhmParams, Roots,
    TheoryError,
};
use theory_common::{BatchMeans, Gauss};

/// Normalized QHM step on f = hθ²/2 with gradient g = hθ + σ·z, exactly as in docs/theory.md §1.
fn qhm_step(p: &QhmParams, h: f64, theta: &mut f64, d: &mut f64, noise: f64) {
    let g = h * *theta + noise;
    *d = p.beta * *d + (1.0 - p.beta) * g;
    *theta -= p.lr * ((1.0 - p.nu) * g + p.nu * *d);
}

/// Time-averaged θ² of one long chain (mean is 0), with batch-means standard error.
fn mc_variance(p: &QhmParams, h: f64, sigma2: f64, steps: usize, seed: u64) -> (f64, f64) {
    let mut rng = Gauss::new(seed);
    let sigma = sigma2.sqrt();
    let (mut theta, mut d) = (0.0, 0.0);
    // Burn-in: many relaxation times of the slowest mode.
    let rho = convergence_rate(p, h).unwrap();
    let burn = ((30.0 / (1.0 - rho)) as usize).max(1000);
    for _ in 0..burn {
        qhm_step(p, h, &mut theta, &mut d, sigma * rng.next());
    }
    let mut bm = BatchMeans::new(steps / 200);
    for _ in 0..steps {
        qhm_step(p, h, &mut theta, &mut d, sigma * rng.next());
        bm.push(theta * theta);
    }
    bm.estimate()
}

#[test]
fn stationary_variance_matches_monte_carlo() {
    // (α, β, ν, h, σ²); the first point is the one quoted in docs/theory.md §3.2.
    let cases = [
        (0.5, 0.99, 0.7, 1.0, 1.0),
        (0.1, 0.9, 0.5, 2.0, 1.0),
        (0.3, 0.5, 0.0, 1.0, 1.0),
        (0.3, 0.5, 1.0, 1.0, 1.0),
        (1.5, 0.9, 0.2, 1.0, 0.5),
        (0.05, 0.99, 0.9, 4.0, 2.0),
    ];
    for (k, &(a, b, n, h, s2)) in cases.iter().enumerate() {
        let p = QhmParams::new(a, b, n).unwrap();
        let exact = stationary_variance(&p, h, s2).unwrap();
        let (mc, se) = mc_variance(&p, h, s2, 3_000_000, 100 + k as u64);
        let psi = stationary_variance_psi(&p, h, s2).unwrap();
        eprintln!(
            "QHM V  α={a} β={b} ν={n} h={h} σ²={s2}: MC {mc:.5} ± {se:.5}, exact {exact:.5}, \
             ψ-approx {psi:.5}, z = {:.2}",
            (mc - exact) / se
        );
        assert!(
            se / exact < 0.02,
            "MC too noisy to test: rel SE {}",
            se / exact
        );
        assert!(
            (mc - exact).abs() < 4.0 * se,
            "case {k}: MC {mc} ± {se} vs exact {exact}"
        );
    }
}

#[test]
fn monte_carlo_rejects_the_approximations_far_from_small_alpha() {
    // At α = 1.5 (61% of the divergence threshold) the ψ-approximation and the naive ασ²/(2h)
    // are far off; the simulation must be able to tell.
    let (p, h, s2) = (QhmParams::new(1.5, 0.9, 0.2).unwrap(), 1.0, 0.5);
    let (mc, se) = mc_variance(&p, h, s2, 1_000_000, 7);
    let psi = stationary_variance_psi(&p, h, s2).unwrap();
    let naive = p.lr * s2 / (2.0 * h);
    assert!(
        (mc - psi).abs() > 20.0 * se,
        "MC {mc} should differ from ψ-approx {psi}"
    );
    assert!((mc - naive).abs() > 20.0 * se);
}

#[test]
fn exact_formula_special_cases_and_identities() {
    let (h, s2) = (1.7, 0.3);
    // ν = 0: V = ασ²/(h(2 − αh)), independent of β.
    for b in [0.0, 0.5, 0.99] {
        let p = QhmParams::new(0.4, b, 0.0).unwrap();
        let v = stationary_variance(&p, h, s2).unwrap();
        let want = 0.4 * s2 / (h * (2.0 - 0.4 * h));
        assert!((v - want).abs() < 1e-12 * want);
    }
    // ν = 1: V = ασ²(1+β)/(h(2(1+β) − αh(1−β))).
    let p = QhmParams::new(0.4, 0.8, 1.0).unwrap();
    let want = 0.4 * s2 * 1.8 / (h * (2.0 * 1.8 - 0.4 * h * 0.2));
    assert!((stationary_variance(&p, h, s2).unwrap() - want).abs() < 1e-12 * want);
    // β → 1: V → α(1−ν)σ²/(h(2 − αh(1−ν))).
    let p = QhmParams::new(0.4, 1.0 - 1e-9, 0.3).unwrap();
    let want = 0.4 * 0.7 * s2 / (h * (2.0 - 0.4 * h * 0.7));
    assert!((stationary_variance(&p, h, s2).unwrap() - want).abs() < 1e-6 * want);
    // V = (ασ²/(2h))·ψ·factor exactly; the Lyapunov solution agrees; ψ in its range.
    for &(a, b, n) in &[(0.5, 0.99, 0.7), (0.1, 0.3, 0.9), (1.0, 0.9, 0.5)] {
        let p = QhmParams::new(a, b, n).unwrap();
        let v = stationary_variance(&p, h, s2).unwrap();
        let psi = effective_temperature(&p, h).unwrap();
        let f = stability_factor(&p, h).unwrap();
        assert!((v - a * s2 / (2.0 * h) * psi * f).abs() < 1e-12 * v);
        let cov = stationary_covariance(&p, h, s2).unwrap();
        assert!((cov[0][0] - v).abs() < 1e-10 * v);
        let lo = 1.0 - 2.0 * b * n / (1.0 + b);
        assert!(psi >= lo - 1e-15 && psi <= 1.0 + 1e-15);
        // Propagating the stationary covariance leaves it unchanged.
        let next = propagate_covariance(&p, h, s2, &cov, 12_345).unwrap();
        assert!((next[0][0] - v).abs() < 1e-9 * v);
        // From zero, propagation converges to the stationary covariance.
        let far = propagate_covariance(&p, h, s2, &[[0.0; 2]; 2], 1 << 20).unwrap();
        assert!((far[0][0] - v).abs() < 1e-9 * v);
    }
}

#[test]
fn small_alpha_series_is_second_order() {
    // The error of the α² expansion must shrink like α³ (ratio ≈ 8 when α halves).
    let (b, n, h, s2) = (0.6, 0.7, 1.0, 1.0);
    let err = |a: f64| {
        let p = QhmParams::new(a, b, n).unwrap();
        (stationary_variance(&p, h, s2).unwrap() - stationary_variance_series(&p, h, s2).unwrap())
            .abs()
    };
    let ratio = err(0.004) / err(0.002);
    assert!((ratio - 8.0).abs() < 0.2, "error ratio {ratio}");
}

/// Empirical decay rate of the noiseless recursion: (window max of |θ| at t₁ / at t₀)^(1/(t₁−t₀)).
fn empirical_rate(p: &QhmParams, h: f64, t0: usize, t1: usize, window: usize) -> f64 {
    let (mut theta, mut d) = (1.0, 0.0);
    let mut max0: f64 = 0.0;
    let mut max1: f64 = 0.0;
    for t in 0..t1 + window {
        qhm_step(p, h, &mut theta, &mut d, 0.0);
        if (t0..t0 + window).contains(&t) {
            max0 = max0.max(theta.abs());
        }
        if t >= t1 {
            max1 = max1.max(theta.abs());
        }
    }
    (max1 / max0).powf(1.0 / (t1 - t0) as f64)
}

#[test]
fn convergence_rate_matches_noiseless_decay() {
    // Real roots, complex roots (β large), heavy ball, and near the threshold.
    let cases = [
        (0.1, 0.5, 0.7, 1.0),
        (0.5, 0.9, 0.7, 1.0),
        (1.0, 0.9, 1.0, 1.0),
        (0.3, 0.95, 0.5, 3.0),
        (1.8, 0.5, 0.5, 1.0),
    ];
    for &(a, b, n, h) in &cases {
        let p = QhmParams::new(a, b, n).unwrap();
        let rho = convergence_rate(&p, h).unwrap();
        let kind = match characteristic_roots(&p, h).unwrap() {
            Roots::Real(..) => "real",
            Roots::Complex { .. } => "complex",
        };
        // The window must cover an oscillation period (≤ 40 steps here) and the span must keep
        // ρ^t far above underflow; fast cases get a short window so the envelope is sampled.
        let window = if rho < 0.6 { 16 } else { 64 };
        let t1 = ((-280.0 / rho.ln()) as usize - window).min(4000);
        let t0 = if rho < 0.6 { 5 } else { t1 / 3 };
        let emp = empirical_rate(&p, h, t0, t1, window);
        eprintln!(
            "QHM rate α={a} β={b} ν={n} h={h} ({kind}): formula {rho:.5}, empirical {emp:.5}"
        );
        assert!((emp - rho).abs() < 2e-3, "rate {emp} vs {rho}");
    }
}

#[test]
fn divergence_threshold_separates_convergence_from_divergence() {
    for &(b, n, h) in &[
        (0.0, 0.0, 1.0),
        (0.9, 0.7, 1.0),
        (0.5, 1.0, 2.0),
        (0.99, 0.3, 0.5),
    ] {
        let amax = divergence_threshold(b, n, h).unwrap();
        for (f, converges) in [(0.97, true), (1.03, false)] {
            let p = QhmParams::new(f * amax, b, n).unwrap();
            let (mut theta, mut d) = (1.0, 0.0);
            for _ in 0..20_000 {
                qhm_step(&p, h, &mut theta, &mut d, 0.0);
                if theta.abs() > 1e6 {
                    break; // diverged; stop before overflow to inf/NaN
                }
            }
            assert_eq!(theta.abs() < 1e-3, converges, "β={b} ν={n} α={}", f * amax);
            assert_eq!(theta.abs() > 1e3, !converges, "β={b} ν={n} α={}", f * amax);
            assert_eq!(convergence_rate(&p, h).unwrap() < 1.0, converges);
            assert_eq!(stability_margin(&p, h).unwrap() > 0.0, converges);
        }
    }
}

#[test]
fn invalid_inputs_are_errors_not_panics() {
    assert!(matches!(
        QhmParams::new(0.1, 1.0, 0.5),
        Err(TheoryError::OutOfRange { ref field, .. }) if field == "beta"
    ));
    assert!(QhmParams::new(0.0, 0.5, 0.5).is_err());
    assert!(QhmParams::new(f64::NAN, 0.5, 0.5).is_err());
    assert!(QhmParams::new(0.1, 0.5, 1.5).is_err());
    let p = QhmParams::new(0.1, 0.5, 0.5).unwrap();
    assert!(stationary_variance(&p, -1.0, 1.0).is_err());
    assert!(stationary_variance(&p, 1.0, -1.0).is_err());
    let bad = QhmParams {
        lr: 0.1,
        beta: -0.1,
        nu: 0.5,
    };
    assert!(convergence_rate(&bad, 1.0).is_err());
    // Unstable: no stationary variance.
    let p = QhmParams::new(3.0, 0.0, 0.0).unwrap();
    let e = stationary_variance(&p, 1.0, 1.0).unwrap_err();
    assert!(matches!(e, TheoryError::Unstable { limit, .. } if (limit - 2.0).abs() < 1e-12));
    assert!(e.to_string().contains("stability limit"));
}
