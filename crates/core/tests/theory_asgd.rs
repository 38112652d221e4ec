//! ASGD (docs/theory.md §4): delayed-SGD variance and stability against simulation, the implicit
//! momentum of geometric staleness, staleness statistics and the lr recommendation.

mod theory_common;

use stagewise_core::theory::{
    compose_momentum, delayed_qhm_stability_limit, delayed_variance_exact,
    delayed_variance_first_order, delayed_variance_sde, delayed_variance_second_order,
    divergence_threshold, explicit_momentum_for_target, implicit_momentum, recommend_lr,
    staleness_stability_limit, staleness_stability_limit_approx, AsgdLrOptions, AsgdUpdate,
    MomentumMatch, Staleness, TheoryError,
};
use theory_common::{mean_se, BatchMeans, Gauss};

/// One long chain of w_{k+1} = w_k − α(h·w_{k−τ} + σ z_k); returns the time average of w²
/// with its batch-means SE.
fn mc_delayed(lr: f64, h: f64, sigma2: f64, tau: usize, steps: usize, seed: u64) -> (f64, f64) {
    let mut rng = Gauss::new(seed);
    let sigma = sigma2.sqrt();
    let lag = tau + 1;
    let mut hist = vec![0.0_f64; lag]; // hist[k % lag] = w_k
    let mut w = 0.0_f64;
    let burn = (40.0 / (lr * h)) as usize;
    let mut bm = BatchMeans::new(steps / 200);
    for k in 0..burn + steps {
        hist[k % lag] = w;
        let stale = hist[(k + 1) % lag]; // w_{k−τ} (0 before the start)
        w -= lr * (h * stale + sigma * rng.next());
        if k >= burn {
            bm.push(w * w);
        }
    }
    bm.estimate()
}

#[test]
fn delayed_variance_matches_monte_carlo() {
    // αh = 0.05: first-order inflation (τ+½)αh = 7.5–17.5%, second-order term ≤ 1.6%.
    let (lr, h, s2) = (0.05, 1.0, 1.0);
    for tau in 1..=3u32 {
        let (mc, se) = mc_delayed(lr, h, s2, tau as usize, 6_000_000, 40 + u64::from(tau));
        let first = delayed_variance_first_order(lr, h, s2, tau).unwrap();
        let second = delayed_variance_second_order(lr, h, s2, tau).unwrap();
        let exact = delayed_variance_exact(lr, h, s2, tau).unwrap();
        let sde = delayed_variance_sde(lr, h, s2, tau).unwrap();
        let base = lr * s2 / (2.0 * h);
        eprintln!(
            "delay τ={tau}: MC {mc:.6} ± {se:.6}; exact {exact:.6}; 1st-order {first:.6} \
             ({:+.2}%); 2nd-order {second:.6}; delay-SDE {sde:.6} ({:+.2}%); τ=0 value {base:.6}",
            100.0 * (first - mc) / mc,
            100.0 * (sde - mc) / mc
        );
        assert!(se / mc < 0.005, "MC too noisy: {}", se / mc);
        assert!(
            (mc - exact).abs() < 4.0 * se,
            "exact {exact} vs MC {mc} ± {se}"
        );
        assert!((mc - second).abs() < 4.0 * se + 0.5 * (exact - second).abs());
        // First order: tolerance 4 SE plus 1.5× the size of the O(α²) term.
        let o2 = second - first;
        assert!(
            (mc - first).abs() < 4.0 * se + 1.5 * o2,
            "first-order {first} vs MC {mc}"
        );
        // The staleness inflation itself is resolved by the simulation.
        assert!(mc - base > 20.0 * se);
    }
}

/// Noiseless delayed recursion from w ≡ 1; returns |w| after `steps` (stops early on blow-up).
fn run_delayed(a: f64, tau: usize, steps: usize) -> f64 {
    let lag = tau + 1;
    let mut hist = vec![1.0_f64; lag];
    let mut w = 1.0_f64;
    for k in 0..steps {
        hist[k % lag] = w;
        w -= a * hist[(k + 1) % lag];
        if w.abs() > 1e12 {
            break;
        }
    }
    w.abs()
}

#[test]
fn staleness_stability_threshold_by_simulation() {
    let expected = [2.0, 1.0, 0.618_034, 0.445_042];
    for tau in 0..=3u32 {
        let lim = staleness_stability_limit(tau);
        assert!(
            (lim - expected[tau as usize]).abs() < 1e-6,
            "τ={tau}: {lim}"
        );
        let below = run_delayed(0.97 * lim, tau as usize, 20_000);
        let above = run_delayed(1.03 * lim, tau as usize, 20_000);
        eprintln!("delay τ={tau}: limit {lim:.6}; |w| after 0.97× {below:.1e}, 1.03× {above:.1e}");
        assert!(
            below < 1e-6,
            "τ={tau} should converge below the limit: {below}"
        );
        assert!(
            above > 1e6,
            "τ={tau} should diverge above the limit: {above}"
        );
        // The π/(2τ+1) approximation of docs/theory.md overestimates the limit.
        assert!(staleness_stability_limit_approx(tau) > lim);
    }
    // At τ=0 the approximation π is far outside the stable range (diverges at 0.9·π).
    assert!(run_delayed(0.9 * staleness_stability_limit_approx(0), 0, 2_000) > 1e6);
}

/// Noiseless QHM(β, ν) with constant delay τ at x = α·h from w ≡ 1, d = 0; |w| + |d| after
/// `steps` (stops early on blow-up).
fn run_delayed_qhm(x: f64, beta: f64, nu: f64, tau: usize, steps: usize) -> f64 {
    let lag = tau + 1;
    let mut hist = vec![1.0_f64; lag];
    let (mut w, mut d) = (1.0_f64, 0.0_f64);
    for k in 0..steps {
        hist[k % lag] = w;
        let g = hist[(k + 1) % lag]; // h·w_{k−τ} with h = 1
        d = beta * d + (1.0 - beta) * g;
        w -= x * ((1.0 - nu) * g + nu * d);
        if w.abs() > 1e12 {
            break;
        }
    }
    w.abs() + d.abs()
}

#[test]
fn delayed_qhm_limit_matches_simulation_and_the_known_cases() {
    // β = ν = 0 is delayed SGD; τ = 0 is QHM's own threshold.
    for tau in 0..=7u32 {
        let lim = delayed_qhm_stability_limit(0.0, 0.0, tau).unwrap();
        assert!(
            (lim - staleness_stability_limit(tau)).abs() < 1e-8,
            "τ={tau}"
        );
    }
    for (beta, nu) in [(0.9, 0.7), (0.5, 1.0), (0.999, 0.7), (0.6, 0.0)] {
        let lim = delayed_qhm_stability_limit(beta, nu, 0).unwrap();
        let want = divergence_threshold(beta, nu, 1.0).unwrap();
        assert!(
            (lim / want - 1.0).abs() < 1e-8,
            "β={beta} ν={nu}: {lim} vs {want}"
        );
    }
    // Delay and momentum together: converges just below the limit, diverges just above.
    for (beta, nu, tau) in [(0.6, 0.7, 3), (0.9, 0.7, 3), (0.75, 0.7, 1), (0.9, 1.0, 7)] {
        let lim = delayed_qhm_stability_limit(beta, nu, tau).unwrap();
        let below = run_delayed_qhm(0.97 * lim, beta, nu, tau as usize, 40_000);
        let above = run_delayed_qhm(1.03 * lim, beta, nu, tau as usize, 40_000);
        eprintln!("β={beta} ν={nu} τ={tau}: limit {lim:.4}; 0.97× {below:.1e}, 1.03× {above:.1e}");
        assert!(below < 1e-3, "β={beta} ν={nu} τ={tau}: {below}");
        assert!(above > 1e3, "β={beta} ν={nu} τ={tau}: {above}");
    }
    // What the recommended ASGD plan for 4 workers runs at: within 5% of delayed SGD's limit.
    let qhm = delayed_qhm_stability_limit(0.6, 0.7, 3).unwrap();
    let sgd = staleness_stability_limit(3);
    assert!(qhm < sgd && qhm > 0.95 * sgd, "{qhm} vs {sgd}");
    assert!(delayed_qhm_stability_limit(1.0, 0.7, 3).is_err());
    assert!(delayed_qhm_stability_limit(0.5, 1.5, 3).is_err());
}

/// Random-delay ASGD with optional explicit heavy ball on f = h w²/2 (no gradient noise):
/// w_{k+1} − w_k = β_e (w_k − w_{k−1}) − α(1−β_e) h w_{k−τ_k}, τ_k ~ Geometric(1/M), delays
/// reaching before the start read w_0. Returns per-step (mean, SE) of w_k over chains.
fn mc_geometric(
    lr: f64,
    h: f64,
    m: u32,
    beta_e: f64,
    steps: usize,
    chains: usize,
    seed: u64,
) -> Vec<(f64, f64)> {
    let mut rng = Gauss::new(seed);
    let ln_q = (1.0 - 1.0 / f64::from(m)).ln();
    let mut samples = vec![Vec::with_capacity(chains); steps + 1];
    let mut w = vec![0.0_f64; steps + 1];
    for _ in 0..chains {
        w[0] = 1.0;
        let mut prev_step = 0.0;
        for k in 0..steps {
            // Inverse CDF of P(τ ≥ l) = q^l.
            let u = 1.0 - rng.uniform();
            let tau = (u.ln() / ln_q).floor() as usize;
            let stale = w[k.saturating_sub(tau)];
            let step = beta_e * prev_step - lr * (1.0 - beta_e) * h * stale;
            w[k + 1] = w[k] + step;
            prev_step = step;
        }
        for (k, &x) in w.iter().enumerate() {
            samples[k].push(x);
        }
    }
    samples.iter().map(|s| mean_se(s)).collect()
}

/// Mean trajectory from the recursion u_k = (β_e+q)u_{k−1} − β_e q u_{k−2} − α(1−β_e)(1−q) h m_k.
fn predicted_mean(lr: f64, h: f64, m: u32, beta_e: f64, steps: usize) -> Vec<f64> {
    let q = implicit_momentum(m).unwrap();
    let mut mean = vec![1.0, 1.0 - lr * (1.0 - beta_e) * h];
    let (mut u1, mut u2) = (mean[1] - mean[0], 0.0); // u_{k−1}, u_{k−2}
    for k in 1..steps {
        let u = (beta_e + q) * u1 - beta_e * q * u2 - lr * (1.0 - beta_e) * (1.0 - q) * h * mean[k];
        mean.push(mean[k] + u);
        u2 = u1;
        u1 = u;
    }
    mean
}

#[test]
fn geometric_staleness_acts_as_momentum() {
    let (lr, h, steps) = (0.3, 1.0, 60);
    for &(m, beta_e) in &[(4u32, 0.0), (8, 0.0), (4, 0.5)] {
        let mc = mc_geometric(lr, h, m, beta_e, steps, 40_000, 60 + u64::from(m));
        let pred = predicted_mean(lr, h, m, beta_e, steps);
        // Naive alternative without the implicit momentum: plain GD on the fresh gradient.
        let mut naive = vec![1.0_f64];
        for k in 0..steps {
            naive.push(naive[k] * (1.0 - lr * h));
        }
        let mut worst_z: f64 = 0.0;
        let mut naive_z: f64 = 0.0;
        for k in 2..=steps {
            let (mean, se) = mc[k];
            let se = se.max(1e-12);
            worst_z = worst_z.max((mean - pred[k]).abs() / se);
            naive_z = naive_z.max((mean - naive[k]).abs() / se);
        }
        eprintln!(
            "geometric staleness M={m} β_e={beta_e}: max |MC − recursion|/SE = {worst_z:.2} over \
             k=2..{steps}; without implicit momentum {naive_z:.0}"
        );
        assert!(worst_z < 4.5, "recursion off by {worst_z} SE");
        assert!(naive_z > 20.0);
    }
}

#[test]
fn momentum_composition_and_inverse() {
    for rule in [MomentumMatch::DcGain, MomentumMatch::MeanLag] {
        assert!((compose_momentum(0.0, 5, rule).unwrap() - 0.8).abs() < 1e-12);
        assert!((compose_momentum(0.7, 1, rule).unwrap() - 0.7).abs() < 1e-12);
        for &(be, m) in &[(0.5, 4u32), (0.9, 2)] {
            let total = compose_momentum(be, m, rule).unwrap();
            let back = explicit_momentum_for_target(total, m, rule).unwrap();
            assert!((back - be).abs() < 1e-9, "{rule:?}: {back} vs {be}");
        }
    }
    // Asynchrony alone exceeds a target of 0.9 with 16 workers: negative explicit momentum.
    assert!(explicit_momentum_for_target(0.9, 16, MomentumMatch::DcGain).unwrap() < 0.0);
    assert!(implicit_momentum(0).is_err());
    assert!(compose_momentum(1.0, 4, MomentumMatch::DcGain).is_err());
}

#[test]
fn staleness_statistics() {
    let rr = Staleness::RoundRobin { workers: 8 };
    assert_eq!(rr.mean().unwrap(), 7.0);
    assert_eq!(rr.quantile(0.99).unwrap(), 7);
    let g = Staleness::Geometric { workers: 4 };
    assert_eq!(g.mean().unwrap(), 3.0);
    // P(τ ≤ l) = 1 − 0.75^{l+1} ≥ 0.99  ⇒  l + 1 ≥ 16.008  ⇒  l = 16.
    assert_eq!(g.quantile(0.99).unwrap(), 16);
    assert_eq!(g.quantile(0.25).unwrap(), 0);
    // Empirical check of the geometric sampler's mean against E τ = M − 1.
    let mut rng = Gauss::new(5);
    let ln_q = 0.75_f64.ln();
    let taus: Vec<f64> = (0..200_000)
        .map(|_| ((1.0 - rng.uniform()).ln() / ln_q).floor())
        .collect();
    let (mean, se) = mean_se(&taus);
    assert!((mean - 3.0).abs() < 4.0 * se, "{mean} ± {se}");
    let hist = Staleness::Histogram(vec![10, 60, 20, 9, 1]);
    assert!((hist.mean().unwrap() - (60.0 + 40.0 + 27.0 + 4.0) / 100.0).abs() < 1e-12);
    assert_eq!(hist.quantile(0.5).unwrap(), 1);
    assert_eq!(hist.quantile(0.95).unwrap(), 3);
    assert_eq!(hist.quantile(0.995).unwrap(), 4);
    let lim = hist.stability_limit_at_quantile(0.95, 2.0).unwrap();
    assert!((lim - staleness_stability_limit(3) / 2.0).abs() < 1e-15);
    assert!(matches!(
        Staleness::Histogram(vec![0, 0]).mean(),
        Err(TheoryError::Empty { .. })
    ));
    assert!(hist.quantile(1.0).is_err());
}

#[test]
fn lr_recommendation() {
    let mut o = AsgdLrOptions::new(0.1, 128.0, 8);
    o.update = AsgdUpdate::Averaged;
    let r = recommend_lr(&o).unwrap();
    assert!((r.linear_scaled - 0.4).abs() < 1e-12 && !r.capped && r.stability_limit.is_none());
    o.lambda_max = Some(1.0); // averaged: no staleness, cap ½ · 2/λ = 1 is not binding
    let r = recommend_lr(&o).unwrap();
    assert!(r.tau_used == Some(0) && !r.capped && (r.lr - 0.4).abs() < 1e-12);
    o.update = AsgdUpdate::PerPush;
    o.lambda_max = None;
    let r = recommend_lr(&o).unwrap();
    assert!(
        (r.linear_scaled - 0.05).abs() < 1e-12,
        "per push: α_ref·b/256, no M"
    );
    o.lr_ref = 1.0;
    o.lambda_max = Some(1.0); // τ = 7: limit 2 sin(π/30) = 0.2091
    let r = recommend_lr(&o).unwrap();
    assert_eq!(r.tau_used, Some(7));
    assert!(r.capped && (r.lr - 0.5 * 2.0 * (std::f64::consts::PI / 30.0).sin()).abs() < 1e-12);
    o.staleness = Staleness::Geometric { workers: 8 };
    let g = recommend_lr(&o).unwrap();
    assert!(g.tau_used.unwrap() > 7 && g.lr < r.lr);
    o.safety = 0.0;
    assert!(recommend_lr(&o).is_err());
    let e = recommend_lr(&AsgdLrOptions::new(-1.0, 128.0, 8)).unwrap_err();
    assert!(e.to_string().contains("lr_ref"));
    assert!(delayed_variance_first_order(1.5, 1.0, 1.0, 1).is_err()); // above the τ=1 limit
    assert!(delayed_variance_sde(0.5, 1.0, 1.0, 2).is_err()); // ατh ≥ 1
}
