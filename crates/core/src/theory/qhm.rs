//! QHM on a quadratic: stationary variance, effective temperature, stability
//! (docs/theory.md §1, §3.2).
//!
//! Setting: f(θ) = h θ²/2 per eigen-direction (a diagonal quadratic is a set of independent scalar
//! problems), stochastic gradient g = hθ + ξ with E ξ = 0, Var ξ = σ² (= c/b for per-example
//! noise c and batch size b), and normalized QHM
//!
//! ```text
//! d_{t+1} = β d_t + (1−β) g_t
//! θ_{t+1} = θ_t − α [ (1−ν) g_t + ν d_{t+1} ]
//! ```
//!
//! All formulas here were checked against a Monte Carlo of exactly this recursion in
//! `tests/theory_qhm.rs`.

use serde::{Deserialize, Serialize};

use super::error::{self, Result, TheoryError};

/// A 2×2 matrix, row-major; used for the (θ, d) state of QHM.
pub type Mat2 = [[f64; 2]; 2];

pub use crate::optim::QhmParams;

/// The theory's view of the triple: valid ranges are `lr > 0`, `beta ∈ [0, 1)`, `nu ∈ [0, 1]`
/// (every function of this module validates its inputs).
impl QhmParams {
    /// Validated constructor.
    ///
    /// ```
    /// use stagewise_core::theory::QhmParams;
    /// assert!(QhmParams::new(0.5, 0.99, 0.7).is_ok());
    /// assert!(QhmParams::new(0.5, 1.0, 0.7).is_err()); // β must be < 1
    /// ```
    pub fn new(lr: f64, beta: f64, nu: f64) -> Result<Self> {
        let p = Self { lr, beta, nu };
        p.validate()?;
        Ok(p)
    }

    /// Checks `lr > 0`, `beta ∈ [0, 1)`, `nu ∈ [0, 1]`.
    pub fn validate(&self) -> Result<()> {
        error::positive("lr", self.lr)?;
        error::momentum("beta", self.beta)?;
        error::unit_closed("nu", self.nu)?;
        Ok(())
    }
}

/// κ = α h β (1−ν) / (1−β)  [D, docs/theory.md §3.2].
///
/// The ratio that decides how much momentum lowers the stationary variance; κ ≪ 1 is the regime
/// where the small-α expansion [`stationary_variance_series`] is accurate.
pub fn kappa(p: &QhmParams, h: f64) -> Result<f64> {
    p.validate()?;
    error::positive("h", h)?;
    Ok(p.lr * h * p.beta * (1.0 - p.nu) / (1.0 - p.beta))
}

/// Exact stationary variance of θ  [D, docs/theory.md §3.2; checked by Monte Carlo in the tests]:
///
/// ```text
/// V = (α σ²/h) · [(1+β) + κ(1+β(1−2ν))] / ( (1+κ) · [2(1+β) − α h (1+β(1−2ν))] )
/// ```
///
/// Special cases: ν = 0 gives α σ²/(h(2 − αh)); ν = 1 gives
/// α σ² (1+β)/(h(2(1+β) − αh(1−β))).
///
/// Errors: invalid parameters, `h ≤ 0`, `noise_var < 0`, or α at/above the divergence threshold
/// ([`divergence_threshold`]), where no stationary distribution exists.
///
/// ```
/// use stagewise_core::theory::{stationary_variance, QhmParams};
/// let p = QhmParams::new(0.5, 0.99, 0.7).unwrap();
/// let v = stationary_variance(&p, 1.0, 1.0).unwrap();
/// assert!((v - 0.0940).abs() < 1e-4);
/// ```
pub fn stationary_variance(p: &QhmParams, h: f64, noise_var: f64) -> Result<f64> {
    error::non_negative("noise_var", noise_var)?;
    let k = kappa(p, h)?;
    let limit = divergence_threshold(p.beta, p.nu, h)?;
    if p.lr >= limit {
        return Err(TheoryError::Unstable {
            what: "QHM stationary variance",
            lr: p.lr,
            limit,
        });
    }
    let (a, b) = (p.lr, p.beta);
    let s = 1.0 + b * (1.0 - 2.0 * p.nu);
    let num = (1.0 + b) + k * s;
    let den = (1.0 + k) * (2.0 * (1.0 + b) - a * h * s);
    Ok(a * noise_var / h * num / den)
}

/// Effective temperature ψ  [D, docs/theory.md §3.2]:
///
/// ```text
/// ψ = [1 + κ(1 − 2βν/(1+β))] / (1+κ) ∈ [1 − 2βν/(1+β), 1]
/// ```
///
/// so that V ≈ (α/(2h))·σ²·ψ once the O(αh) stability factor is dropped.
pub fn effective_temperature(p: &QhmParams, h: f64) -> Result<f64> {
    let k = kappa(p, h)?;
    let floor = 1.0 - 2.0 * p.beta * p.nu / (1.0 + p.beta);
    Ok((1.0 + k * floor) / (1.0 + k))
}

/// Stability factor [1 − αh(1+β(1−2ν))/(2(1+β))]⁻¹ of docs/theory.md §3.3  \[D\].
///
/// Exact identity: [`stationary_variance`] = (ασ²/(2h)) · ψ · this factor. It is ≥ 1 and
/// blows up at the divergence threshold. Errors like [`stationary_variance`] when unstable.
pub fn stability_factor(p: &QhmParams, h: f64) -> Result<f64> {
    p.validate()?;
    let limit = divergence_threshold(p.beta, p.nu, h)?;
    if p.lr >= limit {
        return Err(TheoryError::Unstable {
            what: "QHM stability factor",
            lr: p.lr,
            limit,
        });
    }
    Ok(1.0 / (1.0 - p.lr / limit))
}

/// Temperature approximation V ≈ (α σ²/(2h)) · ψ  [D, docs/theory.md §3.2] (drops the stability
/// factor; accurate when α is well below the divergence threshold).
pub fn stationary_variance_psi(p: &QhmParams, h: f64, noise_var: f64) -> Result<f64> {
    error::non_negative("noise_var", noise_var)?;
    let psi = effective_temperature(p, h)?;
    Ok(p.lr * noise_var / (2.0 * h) * psi)
}

/// Small-α expansion to second order  [D, docs/theory.md §3.2]:
///
/// ```text
/// V = α σ²/(2h) + (α² σ²/4) · [1 + (2νβ/(1−β)) (2νβ/(1+β) − 1)] + O(α³)
/// ```
///
/// The α² coefficient carries a 1/(1−β): the expansion is only useful when κ and
/// αh/(1−β) are small (e.g. it is meaningless at α = 0.5, β = 0.99).
pub fn stationary_variance_series(p: &QhmParams, h: f64, noise_var: f64) -> Result<f64> {
    p.validate()?;
    error::positive("h", h)?;
    error::non_negative("noise_var", noise_var)?;
    let (a, b, n) = (p.lr, p.beta, p.nu);
    let second = 1.0 + (2.0 * n * b / (1.0 - b)) * (2.0 * n * b / (1.0 + b) - 1.0);
    Ok(a * noise_var / (2.0 * h) + a * a * noise_var / 4.0 * second)
}

/// Coefficients (c₁, c₂) of the characteristic polynomial z² − c₁ z + c₂ of QHM on the
/// eigenvalue λ  [Q, docs/theory.md §1, Gitman et al.; re-derived as trace/determinant of
/// [`transition_matrix`]]:
///
/// ```text
/// c₁ = 1 + β − αλ(1−νβ),   c₂ = β(1 − αλ(1−ν))
/// ```
pub fn characteristic_coefficients(p: &QhmParams, lambda: f64) -> Result<(f64, f64)> {
    p.validate()?;
    error::non_negative("lambda", lambda)?;
    let (a, b, n) = (p.lr, p.beta, p.nu);
    let c1 = 1.0 + b - a * lambda * (1.0 - n * b);
    let c2 = b * (1.0 - a * lambda * (1.0 - n));
    Ok((c1, c2))
}

/// Roots of z² − c₁ z + c₂.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Roots {
    /// Two real roots (possibly equal).
    Real(f64, f64),
    /// A complex-conjugate pair re ± i·im (im > 0): damped oscillation.
    Complex {
        /// Real part.
        re: f64,
        /// Imaginary part (positive).
        im: f64,
    },
}

impl Roots {
    /// Largest root modulus.
    pub fn max_modulus(&self) -> f64 {
        match *self {
            Roots::Real(a, b) => a.abs().max(b.abs()),
            Roots::Complex { re, im } => re.hypot(im),
        }
    }
}

/// Roots of the QHM characteristic polynomial on eigenvalue λ (see
/// [`characteristic_coefficients`]).
pub fn characteristic_roots(p: &QhmParams, lambda: f64) -> Result<Roots> {
    let (c1, c2) = characteristic_coefficients(p, lambda)?;
    let disc = c1 * c1 - 4.0 * c2;
    if disc >= 0.0 {
        let s = disc.sqrt();
        Ok(Roots::Real((c1 + s) / 2.0, (c1 - s) / 2.0))
    } else {
        Ok(Roots::Complex {
            re: c1 / 2.0,
            im: (-disc).sqrt() / 2.0,
        })
    }
}

/// Local convergence rate on eigenvalue λ: the largest root modulus ρ of z² − c₁z + c₂
/// [Q, docs/theory.md §1]. The noiseless error contracts like ρᵗ (ρ < 1 ⇔ stable; ρ = 1 at λ = 0).
///
/// For ν = 0 the roots are β and 1 − αλ; the root β is the buffer's own decay and does not
/// show in θ (plain SGD), yet it is counted here because the buffer is part of the state.
///
/// ```
/// use stagewise_core::theory::{convergence_rate, QhmParams};
/// // ν = 0 (plain SGD in θ): roots β and 1 − αλ.
/// let p = QhmParams::new(0.3, 0.5, 0.0).unwrap();
/// assert!((convergence_rate(&p, 3.0).unwrap() - 0.5).abs() < 1e-12);
/// let p = QhmParams::new(0.3, 0.2, 0.0).unwrap();
/// assert!((convergence_rate(&p, 3.0).unwrap() - 0.2).abs() < 1e-12); // max(β, |1 − αλ|)
/// ```
pub fn convergence_rate(p: &QhmParams, lambda: f64) -> Result<f64> {
    Ok(characteristic_roots(p, lambda)?.max_modulus())
}

/// Largest convergence rate over a spectrum (the slowest or the divergent direction decides).
pub fn convergence_rate_spectrum(p: &QhmParams, lambdas: &[f64]) -> Result<f64> {
    if lambdas.is_empty() {
        return Err(TheoryError::Empty { field: "lambdas" });
    }
    lambdas
        .iter()
        .try_fold(0.0_f64, |acc, &l| Ok(acc.max(convergence_rate(p, l)?)))
}

/// Divergence threshold  [Q, docs/theory.md §1, Gitman et al.; re-derived from the Jury
/// conditions]:
///
/// ```text
/// α_max = 2(1+β) / (λ(1 + β(1−2ν)))
/// ```
///
/// QHM on eigenvalue λ converges iff α < α_max (for β ∈ [0, 1), ν ∈ [0, 1] the other Jury
/// conditions hold automatically). Returns `f64::INFINITY` for λ = 0.
///
/// ```
/// use stagewise_core::theory::divergence_threshold;
/// assert_eq!(divergence_threshold(0.0, 0.0, 1.0).unwrap(), 2.0); // plain GD: α < 2/λ
/// ```
pub fn divergence_threshold(beta: f64, nu: f64, lambda: f64) -> Result<f64> {
    error::momentum("beta", beta)?;
    error::unit_closed("nu", nu)?;
    error::non_negative("lambda", lambda)?;
    if lambda == 0.0 {
        return Ok(f64::INFINITY);
    }
    Ok(2.0 * (1.0 + beta) / (lambda * (1.0 + beta * (1.0 - 2.0 * nu))))
}

/// Stability margin 1 − α/α_max on eigenvalue λ: 1 at α → 0, 0 at the divergence threshold,
/// negative beyond it. For a whole spectrum pass λ_max.
pub fn stability_margin(p: &QhmParams, lambda: f64) -> Result<f64> {
    p.validate()?;
    let limit = divergence_threshold(p.beta, p.nu, lambda)?;
    Ok(1.0 - p.lr / limit)
}

/// Transition matrix A of the noiseless recursion on the state (θ, d), curvature h:
/// (θ, d)_{t+1} = A (θ, d)_t + b ξ_t with b = (−α(1−νβ), 1−β)  [D, exact algebra of §1].
pub fn transition_matrix(p: &QhmParams, h: f64) -> Mat2 {
    let (a, b, n) = (p.lr, p.beta, p.nu);
    [
        [1.0 - a * (1.0 - n * b) * h, -a * n * b],
        [(1.0 - b) * h, b],
    ]
}

/// Noise covariance Q = σ² b bᵀ per step (see [`transition_matrix`]).
fn noise_matrix(p: &QhmParams, noise_var: f64) -> Mat2 {
    let u = -p.lr * (1.0 - p.nu * p.beta);
    let v = 1.0 - p.beta;
    [
        [noise_var * u * u, noise_var * u * v],
        [noise_var * u * v, noise_var * v * v],
    ]
}

fn mat_mul(x: &Mat2, y: &Mat2) -> Mat2 {
    let mut r = [[0.0; 2]; 2];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = x[i][0] * y[0][j] + x[i][1] * y[1][j];
        }
    }
    r
}

fn transpose(x: &Mat2) -> Mat2 {
    [[x[0][0], x[1][0]], [x[0][1], x[1][1]]]
}

fn mat_add(x: &Mat2, y: &Mat2) -> Mat2 {
    [
        [x[0][0] + y[0][0], x[0][1] + y[0][1]],
        [x[1][0] + y[1][0], x[1][1] + y[1][1]],
    ]
}

/// A·P·Aᵀ.
fn congruence(a: &Mat2, p: &Mat2) -> Mat2 {
    mat_mul(&mat_mul(a, p), &transpose(a))
}

/// Exact stationary covariance of (θ, d): the solution of P = A P Aᵀ + Q  [D, exact; its (0,0)
/// entry equals [`stationary_variance`]]. Errors when unstable.
pub fn stationary_covariance(p: &QhmParams, h: f64, noise_var: f64) -> Result<Mat2> {
    // Validates everything and rejects unstable settings.
    stationary_variance(p, h, noise_var)?;
    let a = transition_matrix(p, h);
    let q = noise_matrix(p, noise_var);
    // Unknowns x = (p11, p12, p22); equations x − M x = q.
    let (a11, a12, a21, a22) = (a[0][0], a[0][1], a[1][0], a[1][1]);
    let m = [
        [a11 * a11, 2.0 * a11 * a12, a12 * a12],
        [a11 * a21, a11 * a22 + a12 * a21, a12 * a22],
        [a21 * a21, 2.0 * a21 * a22, a22 * a22],
    ];
    let mut lhs = [[0.0; 3]; 3];
    for (i, row) in lhs.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = f64::from(u8::from(i == j)) - m[i][j];
        }
    }
    let x = solve3(lhs, [q[0][0], q[0][1], q[1][1]]);
    Ok([[x[0], x[1]], [x[1], x[2]]])
}

/// Gaussian elimination with partial pivoting for a non-singular 3×3 system.
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> [f64; 3] {
    for col in 0..3 {
        let piv = (col..3)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot_row = a[col];
        for row in col + 1..3 {
            let f = a[row][col] / pivot_row[col];
            for (cell, &pv) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *cell -= f * pv;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let s: f64 = (row + 1..3).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// Exact covariance of (θ, d) after `steps` QHM steps from covariance `cov`
/// [D, exact moment recursion P ← A P Aᵀ + Q, applied by repeated squaring, so `steps` may be
/// large; valid also for unstable settings].
pub fn propagate_covariance(
    p: &QhmParams,
    h: f64,
    noise_var: f64,
    cov: &Mat2,
    steps: u64,
) -> Result<Mat2> {
    p.validate()?;
    error::positive("h", h)?;
    error::non_negative("noise_var", noise_var)?;
    // The affine map P ↦ A P Aᵀ + Q is represented by (A, Q); composition
    // (A₂, Q₂)∘(A₁, Q₁) = (A₂A₁, A₂Q₁A₂ᵀ + Q₂).
    let mut base = (transition_matrix(p, h), noise_matrix(p, noise_var));
    let mut acc: (Mat2, Mat2) = ([[1.0, 0.0], [0.0, 1.0]], [[0.0; 2]; 2]);
    let mut n = steps;
    while n > 0 {
        if n & 1 == 1 {
            acc = (
                mat_mul(&base.0, &acc.0),
                mat_add(&congruence(&base.0, &acc.1), &base.1),
            );
        }
        base = (
            mat_mul(&base.0, &base.0),
            mat_add(&congruence(&base.0, &base.1), &base.1),
        );
        n >>= 1;
    }
    Ok(mat_add(&congruence(&acc.0, cov), &acc.1))
}
