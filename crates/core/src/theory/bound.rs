//! PAC-Bayes bound proxy of a multistage QHM plan (docs/theory.md §3.1, §3.3, §3.4).
//!
//! Per eigen-direction j (curvature h_j, per-example gradient-noise variance c_j) and stage i
//! (α_i, β_i, ν_i, b_i, T_i):
//!
//! 1. the stage's stationary variance σ²_ij is the **exact** QHM value
//!    [`stationary_variance`] with noise σ² = c_j/b_i; it
//!    equals the §3.3 expression (α_i c_j/(2 b_i h_j))·ψ·[stability factor] exactly, because
//!    ψ·factor is just a rearrangement of the exact formula of §3.2;
//! 2. the variance carried from stage to stage relaxes towards σ²_ij with the SDE factor
//!    e^{−2 h_j α_i T_i} ([`CarryOver::Sde`], docs/theory.md §3.3), or is propagated exactly
//!    through the (θ, d) covariance recursion ([`CarryOver::ExactDiscrete`]);
//! 3. KL = ½ Σ_j [σ²_j/λ₀ − 1 − ln(σ²_j/λ₀)] against the prior N(θ*, λ₀ I) and the
//!    McAllester gap sqrt((KL + ln(1/δ) + ln N + 2)/(2N − 1))  [R, He–Liu–Tao 2019].
//!
//! A stage whose hyperparameters vary within (a within-stage schedule) is a list of constant
//! pieces, runs of steps with one (α, β); [`plan_bound_pieces`] carries the variance through
//! every piece, so the SDE time of a stage is its integral Σ_t α_t and each piece relaxes
//! towards its own stationary variance. For stages of one piece it is [`plan_bound`].
//!
//! Accuracy of the SDE carry-over (measured in `tests/theory_bound.rs`): within about 3% of a
//! Monte Carlo when α h/(1−β) ≲ 0.1 in the short stage; it underestimates the carried variance
//! by ~15% when a short stage has α h/(1−β) ≈ 0.2 (β = 0.9), because momentum delays the start
//! of the relaxation. Use [`CarryOver::ExactDiscrete`] for short stages with heavy momentum.

use serde::{Deserialize, Serialize};

use super::error::{self, Result, TheoryError};
use super::invariants::StageHyper;
use super::qhm::{propagate_covariance, stationary_covariance, stationary_variance, Mat2};

/// Co-diagonal curvature and gradient-noise eigenvalues of a loss near its minimum.
///
/// `h[j] > 0` is the j-th Hessian eigenvalue and `c[j] > 0` the per-example gradient-noise
/// variance along the same eigenvector (the noise of a size-b batch is c/b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    /// Hessian eigenvalues h_j (> 0).
    pub h: Vec<f64>,
    /// Per-example gradient-noise eigenvalues c_j (> 0).
    pub c: Vec<f64>,
}

impl Spectrum {
    /// d identical directions (h, c).
    ///
    /// ```
    /// use stagewise_core::theory::Spectrum;
    /// let s = Spectrum::isotropic(10, 1.0, 0.5).unwrap();
    /// assert_eq!(s.dim(), 10);
    /// assert!(Spectrum::isotropic(0, 1.0, 0.5).is_err());
    /// ```
    pub fn isotropic(d: usize, h: f64, c: f64) -> Result<Self> {
        Self::from_lists(vec![h; d], vec![c; d])
    }

    /// From explicit lists (same length, not empty, all entries finite and > 0).
    pub fn from_lists(h: Vec<f64>, c: Vec<f64>) -> Result<Self> {
        let s = Self { h, c };
        s.validate()?;
        Ok(s)
    }

    /// Number of directions d.
    pub fn dim(&self) -> usize {
        self.h.len()
    }

    /// The largest curvature h_max = max_j h_j, if positive (`None` for an empty spectrum).
    /// `explain` and `recommend` take it as the default h_max of a spectrum.
    ///
    /// ```
    /// use stagewise_core::theory::Spectrum;
    /// let s = Spectrum::from_lists(vec![0.5, 40.0, 2.0], vec![1.0; 3]).unwrap();
    /// assert_eq!(s.h_max(), Some(40.0));
    /// ```
    pub fn h_max(&self) -> Option<f64> {
        self.h
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, h| Some(m.map_or(h, |m| m.max(h))))
            .filter(|h| *h > 0.0)
    }

    /// Checks non-empty, equal lengths, and positivity of every entry.
    pub fn validate(&self) -> Result<()> {
        if self.h.is_empty() {
            return Err(TheoryError::Empty {
                field: "spectrum.h",
            });
        }
        if self.h.len() != self.c.len() {
            return Err(TheoryError::LengthMismatch {
                field_a: "spectrum.h",
                len_a: self.h.len(),
                field_b: "spectrum.c",
                len_b: self.c.len(),
            });
        }
        for (j, (&h, &c)) in self.h.iter().zip(&self.c).enumerate() {
            error::positive(&format!("spectrum.h[{j}]"), h)?;
            error::positive(&format!("spectrum.c[{j}]"), c)?;
        }
        Ok(())
    }
}

/// How the variance is carried from one stage to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CarryOver {
    /// docs/theory.md §3.3 \[D\]: v ← σ²_i + e^{−2 h α_i T_i}(v − σ²_i) at the end of stage i.
    #[default]
    Sde,
    /// Exact second-moment recursion of the discrete QHM iteration on (θ, d), buffers carried
    /// across stage boundaries [D, exact].
    ExactDiscrete,
}

/// State at the start of the first stage.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum InitialState {
    /// Stage 1 has reached its stationary distribution (the §3.3 formula's assumption).
    #[default]
    Stationary,
    /// θ₀ − θ* has this variance per direction, buffer d₀ = 0 (e.g. 0 for a fixed start, λ₀ for
    /// a start drawn from the prior).
    Variance(f64),
}

/// Options of [`plan_bound`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundOptions {
    /// Prior variance λ₀ (> 0; He–Liu–Tao use 1).
    pub prior_var: f64,
    /// Confidence δ ∈ (0, 1).
    pub delta: f64,
    /// Training-set size N (≥ 1).
    pub n_samples: f64,
    /// Stage-to-stage carry-over model.
    pub carry_over: CarryOver,
    /// State at the start of stage 1.
    pub initial: InitialState,
}

impl Default for BoundOptions {
    fn default() -> Self {
        Self {
            prior_var: 1.0,
            delta: 0.05,
            n_samples: 50_000.0,
            carry_over: CarryOver::Sde,
            initial: InitialState::Stationary,
        }
    }
}

/// Output of [`plan_bound`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundReport {
    /// σ²_ij: `stage_variances[i][j]`, the exact stationary variance of stage i, direction j.
    pub stage_variances: Vec<Vec<f64>>,
    /// σ²_j at the end of the plan.
    pub final_variances: Vec<f64>,
    /// KL(Q‖P) of the final Gaussian against the prior.
    pub kl: f64,
    /// The bound gap sqrt((KL + ln(1/δ) + ln N + 2)/(2N − 1)).
    pub gap: f64,
    /// Empirical risk inflation ½ Σ_j h_j σ²_j (R̂(Q) − L̂(θ*) for a quadratic).
    pub risk_inflation: f64,
}

/// Exact stationary variance of stage `index` along one direction: V(α, β, ν, h, c/b)
/// [D, docs/theory.md §3.2–3.3].
pub fn stage_variance(stage: &StageHyper, index: usize, h: f64, c: f64) -> Result<f64> {
    stage.validate(index)?;
    stationary_variance(&stage.qhm(), h, c / stage.batch_size)
}

/// Variance at the end of the plan along one direction (curvature `h`, noise `c`), with the
/// chosen carry-over model.
///
/// With [`CarryOver::Sde`] and [`InitialState::Stationary`] this is docs/theory.md §3.3 \[D\]:
///
/// ```text
/// σ²_final = σ²_n + Σ_{i<n} e^{−2h Σ_{l>i} α_l T_l} (σ²_i − σ²_{i+1})
/// ```
///
/// computed forward as v ← σ²_i + e^{−2hα_iT_i}(v − σ²_i). `InitialState::Variance(v₀)` adds
/// e^{−2h Σ_l α_l T_l}(v₀ − σ²_1).
///
/// ```
/// use stagewise_core::theory::{final_variance, CarryOver, InitialState, StageHyper};
/// let s1 = StageHyper { lr: 0.1, beta: 0.0, nu: 0.0, batch_size: 1.0, length_steps: 10_000 };
/// let s2 = StageHyper { lr: 0.01, length_steps: 100_000, ..s1 };
/// // a long second stage forgets stage 1: σ² → α₂c/(h(2 − α₂h))
/// let v = final_variance(&[s1, s2], 1.0, 1.0, CarryOver::Sde, InitialState::Stationary).unwrap();
/// assert!((v - 0.01 / 1.99).abs() < 1e-9);
/// ```
pub fn final_variance(
    stages: &[StageHyper],
    h: f64,
    c: f64,
    carry: CarryOver,
    initial: InitialState,
) -> Result<f64> {
    if stages.is_empty() {
        return Err(TheoryError::Empty { field: "stages" });
    }
    error::positive("h", h)?;
    error::positive("c", c)?;
    if let InitialState::Variance(v0) = initial {
        error::non_negative("initial variance", v0)?;
    }
    match carry {
        CarryOver::Sde => final_variance_sde(stages, h, c, initial),
        CarryOver::ExactDiscrete => final_variance_exact(stages, h, c, initial),
    }
}

fn final_variance_sde(stages: &[StageHyper], h: f64, c: f64, initial: InitialState) -> Result<f64> {
    let first = stage_variance(&stages[0], 0, h, c)?;
    let mut v = match initial {
        InitialState::Stationary => first,
        InitialState::Variance(v0) => v0,
    };
    for (i, s) in stages.iter().enumerate() {
        let target = stage_variance(s, i, h, c)?;
        let decay = (-2.0 * h * s.lr * s.length_steps as f64).exp();
        v = target + decay * (v - target);
    }
    Ok(v)
}

fn final_variance_exact(
    stages: &[StageHyper],
    h: f64,
    c: f64,
    initial: InitialState,
) -> Result<f64> {
    let mut cov: Mat2 = match initial {
        InitialState::Stationary => {
            stages[0].validate(0)?;
            stationary_covariance(&stages[0].qhm(), h, c / stages[0].batch_size)?
        }
        InitialState::Variance(v0) => [[v0, 0.0], [0.0, 0.0]],
    };
    for (i, s) in stages.iter().enumerate() {
        s.validate(i)?;
        cov = propagate_covariance(&s.qhm(), h, c / s.batch_size, &cov, s.length_steps)?;
    }
    Ok(cov[0][0])
}

/// KL(N(0, diag σ²) ‖ N(0, λ₀ I)) = ½ Σ_j [σ²_j/λ₀ − 1 − ln(σ²_j/λ₀)]
/// [R, docs/theory.md §3.1/§3.3].
///
/// ```
/// use stagewise_core::theory::gaussian_kl;
/// assert_eq!(gaussian_kl(&[1.0, 1.0], 1.0).unwrap(), 0.0);
/// ```
pub fn gaussian_kl(variances: &[f64], prior_var: f64) -> Result<f64> {
    if variances.is_empty() {
        return Err(TheoryError::Empty { field: "variances" });
    }
    error::positive("prior_var", prior_var)?;
    let mut kl = 0.0;
    for (j, &v) in variances.iter().enumerate() {
        error::positive(&format!("variances[{j}]"), v)?;
        let r = v / prior_var;
        kl += 0.5 * (r - 1.0 - r.ln());
    }
    Ok(kl)
}

/// McAllester bound gap sqrt((KL + ln(1/δ) + ln N + 2)/(2N − 1))  [R, He–Liu–Tao 2019 as
/// rewritten in docs/theory.md §3.1].
pub fn pac_bayes_gap(kl: f64, delta: f64, n_samples: f64) -> Result<f64> {
    error::non_negative("kl", kl)?;
    error::unit_open("delta", delta)?;
    if !(n_samples.is_finite() && n_samples >= 1.0) {
        return Err(error::out_of_range(
            "n_samples",
            n_samples,
            "finite and >= 1",
        ));
    }
    Ok(((kl + (1.0 / delta).ln() + n_samples.ln() + 2.0) / (2.0 * n_samples - 1.0)).sqrt())
}

/// Empirical risk inflation ½ Σ_j h_j σ²_j of the posterior on a quadratic  [D, §4.2].
pub fn risk_inflation(h: &[f64], variances: &[f64]) -> Result<f64> {
    if h.len() != variances.len() {
        return Err(TheoryError::LengthMismatch {
            field_a: "h",
            len_a: h.len(),
            field_b: "variances",
            len_b: variances.len(),
        });
    }
    Ok(0.5 * h.iter().zip(variances).map(|(h, v)| h * v).sum::<f64>())
}

/// The PAC-Bayes proxy of docs/theory.md §3.3 for a whole multistage plan \[D\].
///
/// Errors if the plan or spectrum is invalid, or if any stage is unstable on some direction
/// (α_i ≥ the QHM divergence threshold at h_j).
///
/// ```
/// use stagewise_core::theory::{plan_bound, BoundOptions, Spectrum, StageHyper};
/// let spec = Spectrum::isotropic(100, 1.0, 1e-2).unwrap();
/// let s1 = StageHyper { lr: 0.1, beta: 0.9, nu: 0.5, batch_size: 128.0, length_steps: 5_000 };
/// let joint = StageHyper { lr: 0.05, beta: 18.0 / 19.0, batch_size: 64.0,
///                          length_steps: 10_000, ..s1 };
/// let lr_only = StageHyper { lr: 0.05, length_steps: 10_000, ..s1 };
/// let opts = BoundOptions::default();
/// let a = plan_bound(&[s1, joint], &spec, &opts).unwrap();
/// let b = plan_bound(&[s1, lr_only], &spec, &opts).unwrap();
/// assert!(a.kl < b.kl && a.gap < b.gap);
/// ```
pub fn plan_bound(
    stages: &[StageHyper],
    spectrum: &Spectrum,
    opts: &BoundOptions,
) -> Result<BoundReport> {
    if stages.is_empty() {
        return Err(TheoryError::Empty { field: "stages" });
    }
    spectrum.validate()?;
    let stage_variances = stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            spectrum
                .h
                .iter()
                .zip(&spectrum.c)
                .map(|(&h, &c)| stage_variance(s, i, h, c))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let final_variances = spectrum
        .h
        .iter()
        .zip(&spectrum.c)
        .map(|(&h, &c)| final_variance(stages, h, c, opts.carry_over, opts.initial))
        .collect::<Result<Vec<_>>>()?;
    let kl = gaussian_kl(&final_variances, opts.prior_var)?;
    let gap = pac_bayes_gap(kl, opts.delta, opts.n_samples)?;
    let risk_inflation = risk_inflation(&spectrum.h, &final_variances)?;
    Ok(BoundReport {
        stage_variances,
        final_variances,
        kl,
        gap,
        risk_inflation,
    })
}

/// The bound proxy at the end of one stage ([`plan_bound_pieces`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageBound {
    /// KL(Q‖P) of the Gaussian at the end of the stage against the prior.
    pub kl: f64,
    /// The bound gap sqrt((KL + ln(1/δ) + ln N + 2)/(2N − 1)).
    pub gap: f64,
    /// Empirical risk inflation ½ Σ_j h_j σ²_j.
    pub risk_inflation: f64,
}

/// The variance along one direction at the end of each stage of a plan whose stage i is the
/// list of constant pieces `stages[i]` (runs of steps with one (α, β, ν, b), `length_steps`
/// the run's length) [D, docs/theory.md §3.3].
///
/// With [`CarryOver::Sde`] every piece relaxes the variance towards its own stationary value,
/// v ← σ²_p + e^{−2hα_pT_p}(v − σ²_p), so a stage moves the variance over its SDE time
/// Σ_p α_p·T_p = Σ_t α_t; [`CarryOver::ExactDiscrete`] propagates the (θ, d) covariance through
/// every piece. [`InitialState::Stationary`] is the stationary state of the first piece.
/// Pieces with α = 0 are skipped: θ does not move (exact for the SDE model; the exact
/// recursion then ignores what the momentum buffer gathers during those steps). With one piece
/// per stage this is [`final_variance`] after each prefix of the plan, to the last bit.
///
/// ```
/// use stagewise_core::theory::{final_variance, variances_after_stages, CarryOver, InitialState, StageHyper};
/// let s1 = StageHyper { lr: 0.1, beta: 0.9, nu: 0.5, batch_size: 8.0, length_steps: 100 };
/// let s2 = StageHyper { lr: 0.05, length_steps: 300, ..s1 };
/// let (carry, init) = (CarryOver::Sde, InitialState::Stationary);
/// let v = variances_after_stages(&[vec![s1], vec![s2]], 1.0, 1.0, carry, init).unwrap();
/// assert_eq!(v[1], final_variance(&[s1, s2], 1.0, 1.0, carry, init).unwrap());
/// // Splitting a stage into pieces of the same (α, β) changes nothing (up to rounding).
/// let halves = vec![StageHyper { length_steps: 150, ..s2 }; 2];
/// let w = variances_after_stages(&[vec![s1], halves], 1.0, 1.0, carry, init).unwrap();
/// assert!((w[1] - v[1]).abs() < 1e-15);
/// ```
///
/// # Errors
/// Invalid h, c or initial variance, a plan without any piece with α ≠ 0, an invalid or
/// unstable piece (named by its stage).
pub fn variances_after_stages(
    stages: &[Vec<StageHyper>],
    h: f64,
    c: f64,
    carry: CarryOver,
    initial: InitialState,
) -> Result<Vec<f64>> {
    error::positive("h", h)?;
    error::positive("c", c)?;
    if let InitialState::Variance(v0) = initial {
        error::non_negative("initial variance", v0)?;
    }
    let moves = |p: &&StageHyper| p.lr != 0.0;
    let Some((i0, first)) = stages
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.iter().find(moves).map(|s| (i, s)))
    else {
        return Err(TheoryError::Empty { field: "stages" });
    };
    let mut out = Vec::with_capacity(stages.len());
    match carry {
        CarryOver::Sde => {
            let mut v = match initial {
                InitialState::Stationary => stage_variance(first, i0, h, c)?,
                InitialState::Variance(v0) => v0,
            };
            for (i, pieces) in stages.iter().enumerate() {
                for p in pieces.iter().filter(moves) {
                    let target = stage_variance(p, i, h, c)?;
                    let decay = (-2.0 * h * p.lr * p.length_steps as f64).exp();
                    v = target + decay * (v - target);
                }
                out.push(v);
            }
        }
        CarryOver::ExactDiscrete => {
            let mut cov: Mat2 = match initial {
                InitialState::Stationary => {
                    first.validate(i0)?;
                    stationary_covariance(&first.qhm(), h, c / first.batch_size)?
                }
                InitialState::Variance(v0) => [[v0, 0.0], [0.0, 0.0]],
            };
            for (i, pieces) in stages.iter().enumerate() {
                for p in pieces.iter().filter(moves) {
                    // As plan_bound: an unstable piece is an error, not a diverging variance.
                    stage_variance(p, i, h, c)?;
                    cov =
                        propagate_covariance(&p.qhm(), h, c / p.batch_size, &cov, p.length_steps)?;
                }
                out.push(cov[0][0]);
            }
        }
    }
    Ok(out)
}

/// The PAC-Bayes proxy of docs/theory.md §3.3 at the end of every stage of a plan whose stages
/// may vary within (`stages[i]`: stage i's constant pieces, as in [`variances_after_stages`])
/// \[D\]. The last entry is the whole plan's; with one piece per stage it equals
/// [`plan_bound`] on each prefix of the plan.
///
/// Directions with the same (h_j, c_j) are computed once, so a long scheduled stage costs its
/// number of pieces times the number of *distinct* directions.
///
/// # Errors
/// As [`plan_bound`]: an invalid spectrum or options, an invalid or unstable piece.
pub fn plan_bound_pieces(
    stages: &[Vec<StageHyper>],
    spectrum: &Spectrum,
    opts: &BoundOptions,
) -> Result<Vec<StageBound>> {
    if stages.is_empty() {
        return Err(TheoryError::Empty { field: "stages" });
    }
    spectrum.validate()?;
    let mut index = std::collections::HashMap::new();
    let mut trajectories: Vec<Vec<f64>> = Vec::new();
    let mut which = Vec::with_capacity(spectrum.dim());
    for (&h, &c) in spectrum.h.iter().zip(&spectrum.c) {
        let k = match index.entry((h.to_bits(), c.to_bits())) {
            std::collections::hash_map::Entry::Occupied(e) => *e.get(),
            std::collections::hash_map::Entry::Vacant(e) => {
                trajectories.push(variances_after_stages(
                    stages,
                    h,
                    c,
                    opts.carry_over,
                    opts.initial,
                )?);
                *e.insert(trajectories.len() - 1)
            }
        };
        which.push(k);
    }
    (0..stages.len())
        .map(|i| {
            let v: Vec<f64> = which.iter().map(|&k| trajectories[k][i]).collect();
            let kl = gaussian_kl(&v, opts.prior_var)?;
            Ok(StageBound {
                kl,
                gap: pac_bayes_gap(kl, opts.delta, opts.n_samples)?,
                risk_inflation: risk_inflation(&spectrum.h, &v)?,
            })
        })
        .collect()
}
