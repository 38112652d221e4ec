//! Conversions of other momentum methods to QHM (qhoptim's `param_conv`, docs/theory.md §1).
//!
//! Each returns the QHM [`QhmHyper`] (normalized α, β, ν) that reproduces the method, and refuses
//! parameters for which the result falls outside QHM's range (0 ≤ β < 1, 0 ≤ ν ≤ 1, α ≥ 0) with
//! an error naming the QHM field.
//!
//! ```
//! use stagewise_core::optim::convert::from_pid;
//! // k_P = −0.1, k_I = 0.1, k_D = 0.9: α = 0.1, β = 0.9/(0.9+0.1) = 0.9, ν = 0.01/0.09.
//! let h = from_pid(-0.1, 0.1, 0.9).unwrap();
//! assert!((h.qhm.beta - 0.9).abs() < 1e-12 && (h.qhm.nu - 1.0 / 9.0).abs() < 1e-12);
//! ```

use super::{check_range, OptimError, QhmHyper};

/// PID control optimizer (Recht 2018) with gains k_P, k_I, k_D:
/// α = k_I, ν = k_P²/(k_I·k_D), β = k_D/(k_D − k_P).
pub fn from_pid(k_p: f64, k_i: f64, k_d: f64) -> Result<QhmHyper, OptimError> {
    check_range(
        "k_i",
        k_i,
        0.0,
        false,
        f64::INFINITY,
        false,
        "0 < k_i < inf",
    )?;
    check_range(
        "k_d",
        k_d,
        0.0,
        false,
        f64::INFINITY,
        false,
        "0 < k_d < inf",
    )?;
    QhmHyper::checked(k_i, k_d / (k_d - k_p), k_p * k_p / (k_i * k_d))
}

/// Synthesized Nesterov variants (SNV) with α_s, β₁, β₂, i.e.
/// θ_{t+1} = θ_t + β₁(θ_t − θ_{t−1}) − α_s[g_t + β₂(g_t − g_{t−1})]:
/// α = α_s/(1−β₁), ν = 1 − β₂(1−β₁)/β₁, β = β₁.
pub fn from_snv(alpha_s: f64, beta1: f64, beta2: f64) -> Result<QhmHyper, OptimError> {
    check_range("beta1", beta1, 0.0, false, 1.0, false, "0 < beta1 < 1")?;
    QhmHyper::checked(
        alpha_s / (1.0 - beta1),
        beta1,
        1.0 - beta2 * (1.0 - beta1) / beta1,
    )
}

/// Robust Momentum (Cyrus et al.) for an L-smooth, condition number κ problem, robustness ρ:
/// α_s = κ(1−ρ)²(1+ρ)/L, β₁ = κρ³/(κ−1), β₂ = ρ³/((κ−1)(1−ρ)²(1+ρ)), then [`from_snv`].
pub fn from_robust_momentum(l: f64, kappa: f64, rho: f64) -> Result<QhmHyper, OptimError> {
    check_range("l", l, 0.0, false, f64::INFINITY, false, "0 < L < inf")?;
    check_range(
        "kappa",
        kappa,
        1.0,
        false,
        f64::INFINITY,
        false,
        "1 < kappa < inf",
    )?;
    check_range("rho", rho, 0.0, false, 1.0, false, "0 < rho < 1")?;
    let alpha_s = kappa * (1.0 - rho).powi(2) * (1.0 + rho) / l;
    let beta1 = kappa * rho.powi(3) / (kappa - 1.0);
    let beta2 = rho.powi(3) / ((kappa - 1.0) * (1.0 - rho).powi(2) * (1.0 + rho));
    from_snv(alpha_s, beta1, beta2)
}

/// Triple Momentum (Van Scoy et al.): Robust Momentum with ρ = 1 − 1/√κ.
pub fn from_triple_momentum(l: f64, kappa: f64) -> Result<QhmHyper, OptimError> {
    check_range(
        "kappa",
        kappa,
        1.0,
        false,
        f64::INFINITY,
        false,
        "1 < kappa < inf",
    )?;
    from_robust_momentum(l, kappa, 1.0 - 1.0 / kappa.sqrt())
}

/// AccSGD (Jain et al.; Kidambi et al.) with δ, κ, ξ and ε (0.7 in the reference code):
/// α = δε(1+ξ)/(1+ε), ν = (εξ−1)/(ε(1+ξ)), β = (κ − ε²ξ)/(κ + εξ).
pub fn from_accsgd(delta: f64, kappa: f64, xi: f64, eps: f64) -> Result<QhmHyper, OptimError> {
    check_range(
        "eps",
        eps,
        0.0,
        false,
        f64::INFINITY,
        false,
        "0 < eps < inf",
    )?;
    check_range("xi", xi, 0.0, true, f64::INFINITY, false, "0 <= xi < inf")?;
    QhmHyper::checked(
        delta * eps * (1.0 + xi) / (1.0 + eps),
        (kappa - eps * eps * xi) / (kappa + eps * xi),
        (eps * xi - 1.0) / (eps * (1.0 + xi)),
    )
}

/// Two-state optimization (TSO, Ghadimi et al. form) with parameters h, k, l, m, q, z:
/// φ = √((h−q)² + 4km), ψ = km − hq, ξ = (h−q−φ)(lm−hz) + 2m(lq−kz);
/// α = ξ/(2φψ), ν = 2m(lq−kz)/ξ, β = (h+q−φ)/2.
pub fn from_tso(h: f64, k: f64, l: f64, m: f64, q: f64, z: f64) -> Result<QhmHyper, OptimError> {
    let phi = ((h - q).powi(2) + 4.0 * k * m).sqrt();
    let psi = k * m - h * q;
    let xi = (h - q - phi) * (l * m - h * z) + 2.0 * m * (l * q - k * z);
    if !phi.is_finite() || phi == 0.0 || psi == 0.0 || xi == 0.0 {
        return Err(OptimError::InvalidSettings(format!(
            "TSO parameters give a degenerate conversion (phi = {phi}, psi = {psi}, xi = {xi})"
        )));
    }
    QhmHyper::checked(
        xi / (2.0 * phi * psi),
        (h + q - phi) / 2.0,
        2.0 * m * (l * q - k * z) / xi,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the SNV two-step recursion and QHM side by side on a deterministic quadratic and
    /// returns the largest difference. With θ_{−1} = θ_0 and g_{−1} = 0 the two-step form
    /// reproduces QHM's zero-buffer first step, so the runs agree from step 0.
    fn snv_vs_qhm(alpha_s: f64, b1: f64, b2: f64) -> f64 {
        use crate::optim::{Optimizer, Qhm};
        let h = from_snv(alpha_s, b1, b2).unwrap();
        let curv = [1.0, 0.3, 2.0];
        let mut qhm = Qhm::<f64>::new(3, h);
        let mut theta = vec![1.0, -1.0, 0.5];
        let mut x = theta.clone();
        let mut x_prev = theta.clone();
        let mut g_prev = vec![0.0; 3];
        let mut max_diff: f64 = 0.0;
        for _ in 0..200 {
            let g: Vec<f64> = (0..3).map(|i| curv[i] * x[i]).collect();
            let gq: Vec<f64> = (0..3).map(|i| curv[i] * theta[i]).collect();
            qhm.step(&mut theta, &gq).unwrap();
            let next: Vec<f64> = (0..3)
                .map(|i| {
                    x[i] + b1 * (x[i] - x_prev[i]) - alpha_s * (g[i] + b2 * (g[i] - g_prev[i]))
                })
                .collect();
            x_prev = std::mem::replace(&mut x, next);
            g_prev = g;
            for i in 0..3 {
                max_diff = max_diff.max((x[i] - theta[i]).abs());
            }
        }
        max_diff
    }

    #[test]
    fn snv_two_step_form_matches_qhm() {
        assert!(snv_vs_qhm(0.1, 0.8, 0.3) < 1e-12);
        assert!(snv_vs_qhm(0.05, 0.9, 1.0) < 1e-12);
    }

    #[test]
    fn pid_matches_its_formulas() {
        // β < 1 needs k_P < 0: k_P = −0.1, k_D = 0.9 gives β = 0.9, ν = 0.01/0.09.
        let h = from_pid(-0.1, 0.1, 0.9).unwrap();
        assert!((h.qhm.lr - 0.1).abs() < 1e-15);
        assert!((h.qhm.beta - 0.9).abs() < 1e-15);
        assert!((h.qhm.nu - 0.01 / 0.09).abs() < 1e-15);
    }

    #[test]
    fn out_of_range_results_are_refused() {
        // β = k_D/(k_D − k_P) ≥ 1 for 0 < k_P < k_D.
        let err = from_pid(0.5, 0.1, 1.0).unwrap_err();
        assert!(matches!(
            err,
            OptimError::InvalidHyper { field: "beta", .. }
        ));
        assert!(from_triple_momentum(1.0, 0.5).is_err());
    }

    #[test]
    fn triple_momentum_is_robust_momentum_at_its_rho() {
        let a = from_triple_momentum(2.0, 100.0).unwrap();
        let b = from_robust_momentum(2.0, 100.0, 0.9).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn accsgd_matches_its_formulas() {
        let h = from_accsgd(0.1, 1000.0, 10.0, 0.7).unwrap();
        assert!((h.qhm.lr - 0.1 * 0.7 * 11.0 / 1.7).abs() < 1e-15);
        assert!((h.qhm.nu - (7.0 - 1.0) / (0.7 * 11.0)).abs() < 1e-15);
        assert!((h.qhm.beta - (1000.0 - 0.49 * 10.0) / (1000.0 + 7.0)).abs() < 1e-15);
    }
}
