//! Property tests: the special cases of QHM equal each other under the documented conversions
//! (docs/theory.md §1), on noisy quadratics (gradients depend on the iterate), in f64.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stagewise_core::optim::conventions::{
    from_pytorch_sgd, from_sutskever_nag, heavy_ball, plain_sgd, to_pytorch_sgd,
};
use stagewise_core::optim::{Optimizer, Qhm, QhmHyper, QhmParams, Sgd, SgdHyper, WeightDecay};

const DIM: usize = 5;

/// Runs `opt` on a noisy quadratic and returns the iterates.
fn run_quadratic(opt: &mut dyn Optimizer<f64>, seed: u64, steps: usize) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let curv: Vec<f64> = (0..DIM).map(|_| rng.gen_range(0.1..2.0)).collect();
    let mut theta: Vec<f64> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut out = Vec::new();
    for _ in 0..steps {
        let g: Vec<f64> = (0..DIM)
            .map(|i| curv[i] * theta[i] + rng.gen_range(-0.5..0.5))
            .collect();
        opt.step(&mut theta, &g).unwrap();
        out.push(theta.clone());
    }
    out
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn random_settings(rng: &mut ChaCha8Rng) -> (f64, f64) {
    (rng.gen_range(0.001..0.2), rng.gen_range(0.0..0.99))
}

#[test]
fn pytorch_momentum_equals_qhm_nu_1() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for trial in 0..50 {
        let (lr, m) = random_settings(&mut rng);
        let wd = if trial % 2 == 0 { 0.0 } else { 0.01 };
        let mut sgd = Sgd::try_new(
            DIM,
            SgdHyper {
                lr,
                momentum: m,
                weight_decay: wd,
                ..Default::default()
            },
        )
        .unwrap();
        let mut h = from_pytorch_sgd(lr, m, false).unwrap();
        h.weight_decay = wd;
        let mut qhm = Qhm::new(DIM, h);
        let a = run_quadratic(&mut sgd, trial, 300);
        let b = run_quadratic(&mut qhm, trial, 300);
        assert!(
            max_diff(&a, &b) < 1e-9,
            "lr {lr} m {m}: {}",
            max_diff(&a, &b)
        );
    }
}

#[test]
fn pytorch_nesterov_equals_qhm_nu_beta() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for trial in 0..50 {
        let (lr, m) = random_settings(&mut rng);
        let m = m.max(0.01);
        let mut sgd = Sgd::try_new(
            DIM,
            SgdHyper {
                lr,
                momentum: m,
                nesterov: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut qhm = Qhm::new(DIM, from_pytorch_sgd(lr, m, true).unwrap());
        let a = run_quadratic(&mut sgd, trial, 300);
        let b = run_quadratic(&mut qhm, trial, 300);
        assert!(
            max_diff(&a, &b) < 1e-9,
            "lr {lr} m {m}: {}",
            max_diff(&a, &b)
        );
    }
}

#[test]
fn plain_sgd_is_qhm_nu_0_for_any_beta_and_qhm_beta_0_for_any_nu() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for trial in 0..30 {
        let (lr, beta) = random_settings(&mut rng);
        let nu = rng.gen_range(0.0..=1.0);
        let mut sgd = Sgd::try_new(
            DIM,
            SgdHyper {
                lr,
                ..Default::default()
            },
        )
        .unwrap();
        let reference = run_quadratic(&mut sgd, trial, 200);
        let mut nu0 = Qhm::new(
            DIM,
            QhmHyper {
                qhm: QhmParams {
                    beta,
                    ..plain_sgd(lr).unwrap().qhm
                },
                ..plain_sgd(lr).unwrap()
            },
        );
        let mut beta0 = Qhm::new(DIM, QhmHyper::checked(lr, 0.0, nu).unwrap());
        assert!(max_diff(&reference, &run_quadratic(&mut nu0, trial, 200)) < 1e-12);
        assert!(max_diff(&reference, &run_quadratic(&mut beta0, trial, 200)) < 1e-12);
    }
}

#[test]
fn normalized_heavy_ball_is_pytorch_sgd_with_dampening_after_the_first_step() {
    // PyTorch's dampening = m is normalized heavy ball except on step 1, where PyTorch skips
    // dampening (buffer = g, not (1−m)·g). Equal when the first gradient is zero.
    let (lr, m) = (0.05, 0.9);
    let mut hb = Qhm::new(1, heavy_ball(lr, m).unwrap());
    let mut sgd = Sgd::try_new(
        1,
        SgdHyper {
            lr,
            momentum: m,
            dampening: m,
            ..Default::default()
        },
    )
    .unwrap();
    let (mut a, mut b) = ([1.0_f64], [1.0_f64]);
    hb.step(&mut a, &[0.0]).unwrap();
    sgd.step(&mut b, &[0.0]).unwrap();
    for k in 0..100 {
        let g = [(k as f64 * 0.37).sin()];
        hb.step(&mut a, &g).unwrap();
        sgd.step(&mut b, &g).unwrap();
        assert!((a[0] - b[0]).abs() < 1e-13);
    }
    // With a non-zero first gradient they differ, as documented.
    let mut hb = Qhm::new(1, heavy_ball(lr, m).unwrap());
    let mut sgd = Sgd::try_new(1, *sgd.hyper()).unwrap();
    let (mut a, mut b) = ([1.0_f64], [1.0_f64]);
    hb.step(&mut a, &[1.0]).unwrap();
    sgd.step(&mut b, &[1.0]).unwrap();
    assert!((a[0] - b[0]).abs() > 1e-3);
}

#[test]
fn sutskever_nag_equals_qhm_on_the_extrapolated_point() {
    // v ← μv − ε∇f(θ+μv); θ ← θ+v. On φ = θ + μv this is QHM(α = ε/(1−μ), β = μ, ν = μ).
    let (eps, mu) = (0.05, 0.9);
    let curv = [0.5, 1.5, 1.0];
    let mut theta = [1.0, -0.5, 0.25];
    let mut v = [0.0; 3];
    let mut qhm = Qhm::new(3, from_sutskever_nag(eps, mu).unwrap());
    let mut phi = theta;
    for _ in 0..300 {
        for i in 0..3 {
            let look = theta[i] + mu * v[i];
            v[i] = mu * v[i] - eps * curv[i] * look;
            theta[i] += v[i];
        }
        let g: Vec<f64> = (0..3).map(|i| curv[i] * phi[i]).collect();
        qhm.step(&mut phi, &g).unwrap();
        for i in 0..3 {
            assert!((phi[i] - (theta[i] + mu * v[i])).abs() < 1e-12);
        }
    }
}

#[test]
fn conversions_round_trip() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..100 {
        let (lr, m) = random_settings(&mut rng);
        let m = m.max(0.01);
        for nesterov in [false, true] {
            let h = from_pytorch_sgd(lr, m, nesterov).unwrap();
            let (lr2, m2, n2) = to_pytorch_sgd(&h).unwrap();
            assert!((lr2 - lr).abs() < 1e-12 && m2 == m && n2 == nesterov);
        }
    }
    assert!(to_pytorch_sgd(&QhmHyper::checked(1.0, 0.9, 0.7).unwrap()).is_none());
}

#[test]
fn stage_switch_keeps_the_buffer() {
    // Switching α, β, ν between steps continues from the same buffer.
    let h1 = QhmHyper::checked(0.5, 0.9, 0.7).unwrap();
    let h2 = QhmHyper {
        weight_decay_type: WeightDecay::Direct,
        weight_decay: 0.1,
        ..QhmHyper::checked(0.25, 0.95, 0.7).unwrap()
    };
    let mut opt = Qhm::<f64>::new(1, h1);
    let mut theta = [1.0];
    opt.step(&mut theta, &[1.0]).unwrap();
    let d_before = opt.buffer()[0];
    let theta_before = theta[0];
    opt.set_hyper(h2).unwrap();
    opt.step(&mut theta, &[2.0]).unwrap();
    let d = 0.95 * d_before + 0.05 * 2.0;
    let expected = theta_before * (1.0 - 0.25 * 0.1) - 0.25 * 0.7 * d - 0.25 * 0.3 * 2.0;
    assert!((opt.buffer()[0] - d).abs() < 1e-15);
    assert!((theta[0] - expected).abs() < 1e-15);
    assert_eq!(opt.steps_taken(), 2);
}
