//! The spectrum estimator on a real model: the Gauss-Newton product is a symmetric, positive
//! semi-definite linear operator that does not depend on the finite-difference step, Lanczos
//! finds true eigenpairs of it (checked with fresh products and against plain power
//! iteration), and the noise estimate is positive and consistent.

use stagewise_core::theory::estimate::{lanczos_top, LanczosOptions};

use stagewise_train::asgd::initial_params;
use stagewise_train::model::ModelKind;
use stagewise_train::spectrum::{
    estimate_spectrum, resolve_source, Curvature, HessianOperator, ModelPoint, SpectrumConfig,
};
use stagewise_train::{DataConfig, DatasetKind};

fn data() -> DataConfig {
    DataConfig {
        dataset: DatasetKind::Synthetic,
        train_subset: Some(600),
        test_subset: Some(100),
        ..DataConfig::default()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn unit_random(dim: usize, seed: u64) -> Vec<f64> {
    // A fixed pseudo-random vector (xorshift), normalized.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f64> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let n = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|y| *y /= n);
    v
}

#[test]
fn gauss_newton_products_are_symmetric_psd_and_lanczos_finds_true_eigenpairs() {
    let data = data();
    let splits = data.load(0).unwrap();
    let point = ModelPoint::new(ModelKind::Mlp, initial_params(ModelKind::Mlp, 0), vec![]).unwrap();
    let dim = point.params.len();
    let gn = |eps| {
        HessianOperator::new(
            Curvature::GaussNewton,
            &point,
            &splits.train,
            &data,
            128,
            128,
            eps,
            1,
        )
        .unwrap()
    };
    let mut h = gn(1e-3);
    assert_eq!(h.examples(), 128);

    // Symmetry: uᵀ H w = wᵀ H u, and linearity: H(3u) = 3 H u.
    let (u, w) = (unit_random(dim, 1), unit_random(dim, 2));
    let (mut hu, mut hw, mut h3u) = (vec![0.0; dim], vec![0.0; dim], vec![0.0; dim]);
    h.apply(&u, &mut hu).unwrap();
    h.apply(&w, &mut hw).unwrap();
    let three_u: Vec<f64> = u.iter().map(|x| 3.0 * x).collect();
    h.apply(&three_u, &mut h3u).unwrap();
    let (uhw, whu) = (dot(&u, &hw), dot(&w, &hu));
    let scale = dot(&hu, &hu).sqrt().max(dot(&hw, &hw).sqrt());
    assert!(
        (uhw - whu).abs() < 0.02 * scale,
        "uᵀHw = {uhw}, wᵀHu = {whu}, ‖Hu‖ = {scale}"
    );
    let lin_err = h3u
        .iter()
        .zip(&hu)
        .map(|(a, b)| (a - 3.0 * b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(lin_err < 1e-6 * scale.max(1.0), "linearity error {lin_err}");
    // Positive semi-definite, and the same operator for ε 100× larger (the logits are
    // continuous, unlike a ReLU network's gradient).
    assert!(dot(&u, &hu) >= 0.0 && dot(&w, &hw) >= 0.0);
    let mut hu_coarse = vec![0.0; dim];
    gn(1e-1).apply(&u, &mut hu_coarse).unwrap();
    let diff = hu
        .iter()
        .zip(&hu_coarse)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(diff < 0.02 * scale, "ε = 1e-3 vs 1e-1: {diff} of {scale}");

    // Lanczos's Ritz pairs are eigenpairs of fresh products.
    let pairs = {
        let mut op = |v: &[f64], o: &mut [f64]| h.apply(v, o);
        let opts = LanczosOptions {
            top: 2,
            steps: 16,
            seed: 4,
        };
        lanczos_top(dim, &opts, &mut op).unwrap()
    };
    let mut hv = vec![0.0; dim];
    for ((v, &theta), &bound) in pairs
        .vectors
        .iter()
        .zip(&pairs.values)
        .zip(&pairs.residuals)
    {
        h.apply(v, &mut hv).unwrap();
        let r = hv
            .iter()
            .zip(v)
            .map(|(a, b)| (a - theta * b).powi(2))
            .sum::<f64>()
            .sqrt();
        // The reported residual is the true one, up to the finite-difference error.
        assert!(
            theta > 0.0 && r < 0.05 * theta && (r - bound).abs() < 2e-3 * theta,
            "θ = {theta}, ‖Hv − θv‖ = {r}, reported {bound}"
        );
    }

    // Power iteration on the same operator, 40 steps.
    let mut v = unit_random(dim, 3);
    let mut hv = vec![0.0; dim];
    let mut power = 0.0;
    for _ in 0..40 {
        h.apply(&v, &mut hv).unwrap();
        power = dot(&v, &hv);
        let n = dot(&hv, &hv).sqrt();
        v.iter_mut().zip(&hv).for_each(|(a, b)| *a = b / n);
    }
    assert!(power > 0.0);

    // The estimator on the same examples (same seed).
    let cfg = SpectrumConfig {
        top: 2,
        lanczos_steps: 12,
        hessian_examples: 128,
        chunk: 128,
        trace_probes: 2,
        noise_batch: 32,
        noise_batches: 8,
        seed: 1,
        ..SpectrumConfig::default()
    };
    let est = estimate_spectrum(&point, &splits.train, &data, &cfg).unwrap();
    assert_eq!(est.dim, dim);
    assert_eq!(est.h.len(), 2);
    // Power iteration approaches the top eigenvalue from below (slowly: the top of the
    // spectrum is clustered); Lanczos gets there in fewer products.
    let top = est.h[0];
    assert!(
        (top - pairs.values[0]).abs() < 1e-3 * top,
        "{top} vs {}",
        pairs.values[0]
    );
    assert!(
        power <= 1.001 * top && power >= 0.9 * top,
        "Lanczos {top} vs power iteration {power}"
    );
    assert!(
        est.residuals[0] < 0.1 * top,
        "residual {}",
        est.residuals[0]
    );
    assert!(est.h[1] <= top);
    // Noise: positive along the top directions and no more than the total.
    assert!(est.c.iter().all(|&c| c > 0.0), "{:?}", est.c);
    assert!(
        est.c.iter().sum::<f64>() <= est.trace_c,
        "{:?} vs {}",
        est.c,
        est.trace_c
    );
    assert!(est
        .notes
        .iter()
        .any(|n| n.contains("128 training examples")));
    // The estimate gives a spectrum for the bound, through its JSON form.
    let json = serde_json::to_string(&est).unwrap();
    let spec = stagewise_core::theory::spectrum_from_json(&json, "est.json").unwrap();
    assert!(spec.h.contains(&top));
}

#[test]
fn bad_options_and_mismatched_points_are_refused() {
    let data = data();
    let splits = data.load(0).unwrap();
    assert!(ModelPoint::new(ModelKind::Mlp, vec![0.0; 10], vec![]).is_err());
    let point = ModelPoint::new(ModelKind::Mlp, initial_params(ModelKind::Mlp, 0), vec![]).unwrap();
    for (cfg, field) in [
        (
            SpectrumConfig {
                top: 0,
                ..SpectrumConfig::default()
            },
            "top",
        ),
        (
            SpectrumConfig {
                lanczos_steps: 3,
                top: 4,
                ..SpectrumConfig::default()
            },
            "lanczos_steps",
        ),
        (
            SpectrumConfig {
                fd_step: f64::NAN,
                ..SpectrumConfig::default()
            },
            "fd_step",
        ),
        (
            SpectrumConfig {
                noise_batches: 1,
                ..SpectrumConfig::default()
            },
            "noise_batches",
        ),
    ] {
        let e = estimate_spectrum(&point, &splits.train, &data, &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
    let mut h = HessianOperator::new(
        Curvature::FiniteDifferenceHessian,
        &point,
        &splits.train,
        &data,
        16,
        16,
        1e-3,
        0,
    )
    .unwrap();
    assert!(h.apply(&[1.0], &mut [0.0]).is_err());
}

#[test]
fn a_source_is_a_run_folder_or_a_model_name() {
    // A model name: its seeded initialization, on the default data.
    let (point, data) = resolve_source("mlp", 3).unwrap();
    assert_eq!(point.kind, ModelKind::Mlp);
    assert_eq!(point.params, initial_params(ModelKind::Mlp, 3));
    assert_eq!(data, DataConfig::default());
    // Neither a run folder nor a model name: the error says both.
    let dir = std::env::temp_dir().join(format!("stagewise-spectrum-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = resolve_source(dir.to_str().unwrap(), 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a run folder") && err.contains("not a model name"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn curvature_names_round_trip() {
    use stagewise_core::choice::Choice;
    for &c in Curvature::ALL {
        assert_eq!(c.to_string().parse::<Curvature>().unwrap(), c);
    }
    assert!("hessian"
        .parse::<Curvature>()
        .unwrap_err()
        .contains("gauss-newton, fd-hessian"));
}
