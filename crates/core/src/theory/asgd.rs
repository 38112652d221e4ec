//! Asynchronous SGD: staleness stability, stationary variance under delay, implicit momentum,
//! learning-rate recommendation (docs/theory.md §4).
//!
//! Model: a parameter server applies w_{k+1} = w_k − α·g(w_{k−τ_k}) with gradient noise of
//! variance σ² = c/b per arrival; on a quadratic f = h w²/2 the per-direction problem is the
//! delay recursion w_{k+1} = w_k − αh·w_{k−τ} − α ξ_k.

use serde::{Deserialize, Serialize};

use crate::choice::Choice;

use super::error::{self, Result, TheoryError};

/// Stability limit of constant-delay gradient descent, in units of α·h  [R, Levin–May 1976;
/// docs/theory.md §4.1; checked by simulation in `tests/theory_asgd.rs`]:
///
/// ```text
/// w_{k+1} = w_k − αh·w_{k−τ} converges  ⇔  0 < αh < 2 sin(π / (2(2τ+1)))
/// ```
///
/// τ = 0, 1, 2, 3 give 2, 1, 0.618…, 0.445….
///
/// ```
/// use stagewise_core::theory::staleness_stability_limit;
/// assert!((staleness_stability_limit(1) - 1.0).abs() < 1e-12);
/// assert!((staleness_stability_limit(2) - 0.6180339887).abs() < 1e-9);
/// ```
pub fn staleness_stability_limit(tau: u32) -> f64 {
    let n = 2.0 * f64::from(tau) + 1.0;
    2.0 * (std::f64::consts::PI / (2.0 * n)).sin()
}

/// The approximation π/(2τ+1) of [`staleness_stability_limit`] used in docs/theory.md §4.2.
///
/// It is an **over-estimate** (sin x < x): by 57% at τ = 0 (π vs 2), 4.7% at τ = 1, 1.7% at
/// τ = 2; asymptotically exact. Prefer the exact limit for caps.
pub fn staleness_stability_limit_approx(tau: u32) -> f64 {
    std::f64::consts::PI / (2.0 * f64::from(tau) + 1.0)
}

/// Largest stable learning rate 2 sin(π/(2(2τ+1)))/λ_max for constant delay τ  \[R\].
pub fn max_stable_lr_delayed(tau: u32, lambda_max: f64) -> Result<f64> {
    error::positive("lambda_max", lambda_max)?;
    Ok(staleness_stability_limit(tau) / lambda_max)
}

/// True when every root of the real polynomial Σ a_k z^k (`coeffs[k]` = a_k, leading last,
/// non-zero) lies strictly inside the unit circle: the Schur–Cohn recursion, which replaces
/// p by (a_n·p(z) − a_0·z^n·p(1/z))/z while |a_0| < |a_n|.
fn schur_stable(coeffs: &[f64]) -> bool {
    let mut a = coeffs.to_vec();
    while a.len() > 1 {
        let n = a.len() - 1;
        let (a0, an) = (a[0], a[n]);
        // NaN coefficients compare as unordered: not stable.
        if a0.abs().partial_cmp(&an.abs()) != Some(std::cmp::Ordering::Less) {
            return false;
        }
        a = (0..n).map(|k| an * a[k + 1] - a0 * a[n - 1 - k]).collect();
    }
    true
}

/// The characteristic polynomial of QHM(β, ν) with a constant gradient delay τ on the
/// quadratic f = h w²/2, as a function of x = α·h (coefficients, leading last):
///
/// ```text
/// (z − 1)(z − β)·z^τ + x·[(1 − ν)(z − β) + ν(1 − β)·z]
/// ```
///
/// from d_{k+1} = β d_k + (1−β) h w_{k−τ}, w_{k+1} = w_k − α[(1−ν) h w_{k−τ} + ν d_{k+1}].
fn delayed_qhm_polynomial(beta: f64, nu: f64, tau: u32, x: f64) -> Vec<f64> {
    let n = tau as usize + 2;
    let mut c = vec![0.0; n + 1];
    c[n] += 1.0;
    c[n - 1] -= 1.0 + beta;
    c[n - 2] += beta;
    c[1] += x * (1.0 - nu * beta);
    c[0] -= x * (1.0 - nu) * beta;
    c
}

/// Stability limit of QHM(β, ν) with constant delay τ, in units of α·h: the smallest x = α·h
/// at which a root of [`delayed_qhm_polynomial`] reaches the unit circle  \[D: exact for the
/// linear recurrence, by the Schur–Cohn test and bisection to 1e-10\]. β = ν = 0 gives
/// [`staleness_stability_limit`]; τ = 0 gives QHM's own limit 2(1+β)/(1+β(1−2ν)) (see
/// [`super::divergence_threshold`]).
///
/// The cap of [`recommend_lr`] uses the delayed-**SGD** limit. With the explicit momentum that
/// `recommend` leaves for M = 4 workers (β = 0.6, ν = 0.7, τ = 3) this exact limit is 0.424,
/// 5% below SGD's 0.445, so a cap at half the SGD limit stays stable; a larger β widens it.
///
/// ```
/// use stagewise_core::theory::{delayed_qhm_stability_limit, staleness_stability_limit};
/// let sgd = delayed_qhm_stability_limit(0.0, 0.0, 3).unwrap();
/// assert!((sgd - staleness_stability_limit(3)).abs() < 1e-8);
/// let qhm = delayed_qhm_stability_limit(0.6, 0.7, 3).unwrap();
/// assert!((qhm - 0.4238).abs() < 1e-3);
/// ```
///
/// # Errors
/// β outside [0, 1), ν outside [0, 1].
pub fn delayed_qhm_stability_limit(beta: f64, nu: f64, tau: u32) -> Result<f64> {
    if !(0.0..1.0).contains(&beta) {
        return Err(error::out_of_range("beta", beta, "in [0, 1)"));
    }
    if !(0.0..=1.0).contains(&nu) {
        return Err(error::out_of_range("nu", nu, "in [0, 1]"));
    }
    let stable = |x: f64| schur_stable(&delayed_qhm_polynomial(beta, nu, tau, x));
    // Walk up from a tiny step until the first unstable x, then bisect.
    let (mut lo, mut hi) = (0.0, 1e-6);
    while stable(hi) {
        lo = hi;
        hi *= 1.25;
        if hi > 1e6 {
            return Ok(f64::INFINITY);
        }
    }
    while hi - lo > 1e-10 * hi {
        let mid = 0.5 * (lo + hi);
        if stable(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn check_delay_inputs(lr: f64, h: f64, noise_var: f64) -> Result<()> {
    error::positive("lr", lr)?;
    error::positive("h", h)?;
    error::non_negative("noise_var", noise_var)?;
    Ok(())
}

fn check_delay_stable(lr: f64, h: f64, tau: u32, what: &'static str) -> Result<()> {
    let limit = staleness_stability_limit(tau) / h;
    if lr >= limit {
        return Err(TheoryError::Unstable { what, lr, limit });
    }
    Ok(())
}

/// Stationary variance under constant delay τ, first order in α  [D, docs/theory.md §4.1; sympy for
/// τ ≤ 3, Monte Carlo in the tests]:
///
/// ```text
/// σ²_w = (α σ²/(2h)) · (1 + (τ + ½) αh) + O(α³)
/// ```
///
/// (σ² = c/b is the per-update gradient-noise variance.) Errors if unstable.
pub fn delayed_variance_first_order(lr: f64, h: f64, noise_var: f64, tau: u32) -> Result<f64> {
    check_delay_inputs(lr, h, noise_var)?;
    check_delay_stable(lr, h, tau, "delayed SGD variance")?;
    let t = f64::from(tau);
    Ok(lr * noise_var / (2.0 * h) * (1.0 + (t + 0.5) * lr * h))
}

/// Second-order version of [`delayed_variance_first_order`]  [D, this module; sympy expansion
/// of the exact Lyapunov solution for τ = 0…4]:
///
/// ```text
/// σ²_w = (α σ²/(2h)) · (1 + (τ + ½) αh + ½(τ² + τ + ½)(αh)²) + O(α⁴)
/// ```
pub fn delayed_variance_second_order(lr: f64, h: f64, noise_var: f64, tau: u32) -> Result<f64> {
    check_delay_inputs(lr, h, noise_var)?;
    check_delay_stable(lr, h, tau, "delayed SGD variance")?;
    let t = f64::from(tau);
    let a = lr * h;
    Ok(lr * noise_var / (2.0 * h) * (1.0 + (t + 0.5) * a + 0.5 * (t * t + t + 0.5) * a * a))
}

/// Delay-SDE form α σ²/(2h(1 − ατh))  [D, docs/theory.md §4.1].
///
/// It misses the ½αh discretization term of the discrete recursion (it is exact to first order
/// only in the SDE limit) and blows up at ατh = 1, well before the true stability limit
/// ≈ π/(2τ+1) of the discrete iteration. Errors when ατh ≥ 1.
pub fn delayed_variance_sde(lr: f64, h: f64, noise_var: f64, tau: u32) -> Result<f64> {
    check_delay_inputs(lr, h, noise_var)?;
    let t = f64::from(tau);
    if lr * t * h >= 1.0 {
        return Err(TheoryError::Unstable {
            what: "delay-SDE variance (needs α·τ·h < 1)",
            lr,
            limit: 1.0 / (t * h),
        });
    }
    Ok(lr * noise_var / (2.0 * h * (1.0 - lr * t * h)))
}

/// Exact stationary variance of w_{k+1} = w_k − αh·w_{k−τ} − αξ_k, computed numerically as
/// α²σ² Σ_n g_n² from the impulse response g (g_0 = 1, g_n = g_{n−1} − αh·g_{n−1−τ})
/// [D, exact up to a relative truncation of 1e-15].
///
/// Errors if unstable, if τ > 10⁶, or if the response needs more than 10⁹ terms (αh < ~1e-8).
pub fn delayed_variance_exact(lr: f64, h: f64, noise_var: f64, tau: u32) -> Result<f64> {
    check_delay_inputs(lr, h, noise_var)?;
    check_delay_stable(lr, h, tau, "delayed SGD variance")?;
    if tau > 1_000_000 {
        return Err(error::out_of_range("tau", f64::from(tau), "<= 1e6"));
    }
    let a = lr * h;
    let lag = tau as usize + 1;
    // Ring buffer of the last `lag` responses: hist[n % lag] = g_n.
    let mut hist = vec![0.0_f64; lag];
    let mut g = 1.0_f64;
    let mut sum = 0.0_f64;
    let mut recent = 0.0_f64; // Σ g² over the last `window` terms
    let window = 4 * lag;
    let mut tail = std::collections::VecDeque::with_capacity(window + 1);
    for n in 0..1_000_000_000_u64 {
        if n > 0 {
            // g_{n−1−τ} sits in the slot that g_n will overwrite.
            let old = if n as usize > tau as usize {
                hist[(n as usize) % lag]
            } else {
                0.0
            };
            g -= a * old;
        }
        hist[(n as usize) % lag] = g;
        sum += g * g;
        tail.push_back(g * g);
        recent += g * g;
        if tail.len() > window {
            recent -= tail.pop_front().unwrap_or(0.0);
        }
        if n as usize > window && recent <= 1e-15 * sum {
            return Ok(lr * lr * noise_var * sum);
        }
    }
    Err(error::out_of_range(
        "lr * h",
        a,
        "large enough for the impulse response to decay within 1e9 steps",
    ))
}

/// Most asynchronous workers M that the library plans for and the commands accept (a thread or
/// a process each): the staleness calculations grow quadratically with M.
pub const MAX_WORKERS: usize = 4096;

/// Implicit momentum 1 − 1/M of asynchrony with geometric staleness  [D, docs/theory.md §4.1;
/// checked by simulation]: with P(τ = l) = (1/M)(1 − 1/M)^l and a quadratic loss,
///
/// ```text
/// E[w_{k+1} − w_k] = (1 − 1/M) E[w_k − w_{k−1}] − (α/M) ∇f(E w_k)      (k ≥ 1)
/// ```
///
/// i.e. normalized heavy ball with the same α and β = 1 − 1/M.
pub fn implicit_momentum(workers: u32) -> Result<f64> {
    if workers == 0 {
        return Err(error::out_of_range("workers", 0.0, ">= 1"));
    }
    Ok(1.0 - 1.0 / f64::from(workers))
}

/// How an explicit momentum and the implicit momentum of asynchrony are summarized by one β.
///
/// With explicit heavy ball w_{k+1} − w_k = β_e(w_k − w_{k−1}) − α(1−β_e) g(w_{k−τ_k}) and
/// geometric staleness (q = 1 − 1/M), the mean step u_k obeys exactly  [D, derived here and
/// checked by simulation in `tests/theory_asgd.rs`]
///
/// ```text
/// u_k = (β_e + q) u_{k−1} − β_e q u_{k−2} − α(1−β_e)(1−q) ∇f(E w_k)
/// ```
///
/// a cascade of two momentum filters with poles β_e and q; no single β reproduces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MomentumMatch {
    /// Match the DC gain (the effective step on slow directions, normalized α unchanged):
    /// 1 − β = (1 − β_e)(1 − q) = (1 − β_e)/M.
    #[default]
    DcGain,
    /// Match the mean age of the gradients in the update:
    /// β/(1−β) = β_e/(1−β_e) + (M − 1).
    MeanLag,
}

impl Choice for MomentumMatch {
    const WHAT: &'static str = "momentum match";
    const ALL: &'static [Self] = &[MomentumMatch::DcGain, MomentumMatch::MeanLag];

    fn name(self) -> &'static str {
        match self {
            MomentumMatch::DcGain => "dc-gain",
            MomentumMatch::MeanLag => "mean-lag",
        }
    }

    fn help(self) -> &'static str {
        match self {
            MomentumMatch::DcGain => "match the DC gain: 1 − β_total = (1 − β_explicit)/M",
            MomentumMatch::MeanLag => {
                "match the mean gradient age: β/(1−β) = β_e/(1−β_e) + (M − 1)"
            }
        }
    }
}

crate::display_and_parse_by_choice!(MomentumMatch);

/// Total effective momentum of explicit β_e combined with M asynchronous workers  \[D\].
/// Both [`MomentumMatch`] rules give 1 − 1/M for β_e = 0 and β_e for M = 1.
///
/// ```
/// use stagewise_core::theory::{compose_momentum, MomentumMatch};
/// let dc = compose_momentum(0.9, 8, MomentumMatch::DcGain).unwrap();
/// assert!((dc - (1.0 - 0.1 / 8.0)).abs() < 1e-12);
/// let lag = compose_momentum(0.9, 8, MomentumMatch::MeanLag).unwrap();
/// assert!((lag / (1.0 - lag) - 16.0).abs() < 1e-9);
/// ```
pub fn compose_momentum(explicit_beta: f64, workers: u32, rule: MomentumMatch) -> Result<f64> {
    error::momentum("explicit_beta", explicit_beta)?;
    let q = implicit_momentum(workers)?;
    let m = f64::from(workers);
    Ok(match rule {
        MomentumMatch::DcGain => 1.0 - (1.0 - explicit_beta) / m,
        MomentumMatch::MeanLag => {
            let x = explicit_beta / (1.0 - explicit_beta) + q / (1.0 - q);
            x / (1.0 + x)
        }
    })
}

/// Explicit momentum that, combined with M asynchronous workers, gives the total `target_beta`
/// (the inverse of [`compose_momentum`])  \[D\].
///
/// The result may be **negative** (negative algorithmic momentum, cf. Mitliagkas et al.) when
/// asynchrony alone already exceeds the target; a value ≤ −1 means the target cannot be
/// reached with M workers (reduce M or raise the target).
pub fn explicit_momentum_for_target(
    target_beta: f64,
    workers: u32,
    rule: MomentumMatch,
) -> Result<f64> {
    error::momentum("target_beta", target_beta)?;
    let q = implicit_momentum(workers)?;
    let m = f64::from(workers);
    Ok(match rule {
        MomentumMatch::DcGain => 1.0 - m * (1.0 - target_beta),
        MomentumMatch::MeanLag => {
            let x = target_beta / (1.0 - target_beta) - q / (1.0 - q);
            if x <= -1.0 {
                -1.0
            } else {
                x / (1.0 + x)
            }
        }
    })
}

/// A staleness distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Staleness {
    /// τ ≡ the given delay.
    Constant(u32),
    /// Round-robin homogeneous workers: τ ≡ M − 1  [D/R, docs/theory.md §4.1].
    RoundRobin {
        /// Number of workers M ≥ 1.
        workers: u32,
    },
    /// Exponential compute times: P(τ = l) = (1/M)(1 − 1/M)^l, E τ = M − 1  [R, Mitliagkas et
    /// al. 2016].
    Geometric {
        /// Number of workers M ≥ 1.
        workers: u32,
    },
    /// A measured histogram: `counts[l]` gradients arrived with staleness l.
    Histogram(Vec<u64>),
}

impl Staleness {
    fn validate(&self) -> Result<()> {
        match self {
            Staleness::Constant(_) => Ok(()),
            Staleness::RoundRobin { workers } | Staleness::Geometric { workers } => {
                implicit_momentum(*workers).map(|_| ())
            }
            Staleness::Histogram(c) => {
                if c.iter().all(|&n| n == 0) {
                    Err(TheoryError::Empty {
                        field: "staleness histogram (all counts are 0)",
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Expected staleness E τ.
    ///
    /// ```
    /// use stagewise_core::theory::Staleness;
    /// assert_eq!(Staleness::Geometric { workers: 8 }.mean().unwrap(), 7.0);
    /// assert_eq!(Staleness::Histogram(vec![1, 0, 3]).mean().unwrap(), 1.5);
    /// ```
    pub fn mean(&self) -> Result<f64> {
        self.validate()?;
        Ok(match self {
            Staleness::Constant(t) => f64::from(*t),
            Staleness::RoundRobin { workers } | Staleness::Geometric { workers } => {
                f64::from(*workers) - 1.0
            }
            Staleness::Histogram(c) => {
                let total: f64 = c.iter().map(|&n| n as f64).sum();
                c.iter()
                    .enumerate()
                    .map(|(l, &n)| l as f64 * n as f64)
                    .sum::<f64>()
                    / total
            }
        })
    }

    /// Smallest l with P(τ ≤ l) ≥ p, for p ∈ (0, 1).
    pub fn quantile(&self, p: f64) -> Result<u32> {
        self.validate()?;
        error::unit_open("quantile", p)?;
        Ok(match self {
            Staleness::Constant(t) => *t,
            Staleness::RoundRobin { workers } => workers - 1,
            Staleness::Geometric { workers } => {
                if *workers == 1 {
                    0
                } else {
                    // P(τ ≤ l) = 1 − q^{l+1}.
                    let q = 1.0 - 1.0 / f64::from(*workers);
                    let l = ((1.0 - p).ln() / q.ln()).ceil() - 1.0;
                    l.max(0.0).min(f64::from(u32::MAX)) as u32
                }
            }
            Staleness::Histogram(c) => {
                let total: u64 = c.iter().sum();
                let mut acc = 0_u64;
                let mut found = c.len() - 1;
                for (l, &n) in c.iter().enumerate() {
                    acc += n;
                    if acc as f64 >= p * total as f64 {
                        found = l;
                        break;
                    }
                }
                u32::try_from(found).unwrap_or(u32::MAX)
            }
        })
    }

    /// Constant-delay stability limit evaluated at the p-quantile of τ:
    /// 2 sin(π/(2(2τ_p+1)))/λ_max  [R for constant delay; for random delays a heuristic that
    /// treats the p-quantile as the worst sustained delay].
    pub fn stability_limit_at_quantile(&self, p: f64, lambda_max: f64) -> Result<f64> {
        max_stable_lr_delayed(self.quantile(p)?, lambda_max)
    }
}

/// How a parameter server turns the workers' gradients into updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsgdUpdate {
    /// Asynchronous: every push is applied when it arrives (stagewise's `asgd` and `ps`
    /// policies other than `sync`). Each update still sees one worker's batch b, so the
    /// learning rate is **not** scaled by M; staleness τ ≈ M − 1 caps it instead.
    #[default]
    PerPush,
    /// Synchronous: M gradients are averaged into one update (policy `sync`, and what PC's
    /// "ASGD" code really ran). The update sees M·b examples: linear scaling α·M applies, and
    /// there is no staleness.
    Averaged,
}

impl Choice for AsgdUpdate {
    const WHAT: &'static str = "update rule";
    const ALL: &'static [Self] = &[AsgdUpdate::PerPush, AsgdUpdate::Averaged];

    fn name(self) -> &'static str {
        match self {
            AsgdUpdate::PerPush => "per-push",
            AsgdUpdate::Averaged => "averaged",
        }
    }

    fn help(self) -> &'static str {
        match self {
            AsgdUpdate::PerPush => "every push is applied when it arrives (asynchronous)",
            AsgdUpdate::Averaged => "M gradients are averaged into one update (synchronous)",
        }
    }
}

crate::display_and_parse_by_choice!(AsgdUpdate);

/// Options of [`recommend_lr`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsgdLrOptions {
    /// Reference learning rate α_ref (tuned at batch `reference_batch`, one worker).
    pub lr_ref: f64,
    /// Batch size b per worker.
    pub batch_per_worker: f64,
    /// Number of workers M.
    pub workers: u32,
    /// Batch size at which α_ref was tuned (256 in PC's SGP code).
    pub reference_batch: f64,
    /// Largest Hessian eigenvalue, if known (enables the staleness cap).
    pub lambda_max: Option<f64>,
    /// Staleness distribution (default: round-robin, τ ≡ M − 1).
    pub staleness: Staleness,
    /// Quantile of τ used for the cap (default 0.99; irrelevant for constant delays).
    pub quantile: f64,
    /// Fraction of the stability limit allowed (default 0.5).
    pub safety: f64,
    /// Per-push (asynchronous, default) or averaged (synchronous) updates.
    pub update: AsgdUpdate,
}

impl AsgdLrOptions {
    /// Defaults: reference batch 256, no λ_max, round-robin staleness, quantile 0.99, safety 0.5.
    pub fn new(lr_ref: f64, batch_per_worker: f64, workers: u32) -> Self {
        Self {
            lr_ref,
            batch_per_worker,
            workers,
            reference_batch: 256.0,
            lambda_max: None,
            staleness: Staleness::RoundRobin { workers },
            quantile: 0.99,
            safety: 0.5,
            update: AsgdUpdate::PerPush,
        }
    }
}

/// Output of [`recommend_lr`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrRecommendation {
    /// α_ref · b / reference_batch, times M for averaged updates (the learning rate before
    /// the stability cap).
    pub linear_scaled: f64,
    /// Staleness used for the cap (the chosen quantile), if a cap was computed.
    pub tau_used: Option<u32>,
    /// Stability limit 2 sin(π/(2(2τ+1)))/λ_max, if λ_max was given.
    pub stability_limit: Option<f64>,
    /// The recommended learning rate: min(linear_scaled, safety · stability_limit).
    pub lr: f64,
    /// `true` if the cap was binding.
    pub capped: bool,
}

/// Recommended learning rate for M workers  [C: linear scaling from PC's SGP code, which
/// averaged; D/R: staleness cap, docs/theory.md §4.2]:
///
/// ```text
/// per-push (asynchronous):  α = min( α_ref · b / b_ref,      safety · 2 sin(π/(2(2τ_p+1))) / λ_max )
/// averaged (synchronous):   α = min( α_ref · b · M / b_ref,  safety · 2 / λ_max )
/// ```
///
/// Linear scaling belongs to averaged updates only: an asynchronous server applies each
/// worker's gradient of b examples as one update, so M workers give M times more updates,
/// not larger ones, and scaling α by M would multiply the step while staleness already
/// shrinks the stable range. The cap uses the exact constant-delay limit, not the looser
/// π/((2τ+1)λ_max) of docs/theory.md (see [`staleness_stability_limit_approx`]).
///
/// ```
/// use stagewise_core::theory::{recommend_lr, AsgdLrOptions, AsgdUpdate};
/// let mut o = AsgdLrOptions::new(0.1, 256.0, 4);
/// assert!((recommend_lr(&o).unwrap().lr - 0.1).abs() < 1e-12); // per push: not scaled
/// o.lambda_max = Some(10.0); // τ = 3: limit 0.0445, half of it 0.0223
/// let r = recommend_lr(&o).unwrap();
/// assert!(r.capped && (r.lr - 0.5 * 0.4450418679 / 10.0).abs() < 1e-9);
/// o.update = AsgdUpdate::Averaged; // synchronous: α·M = 0.4, capped at ½ · 2/λ_max = 0.1
/// let r = recommend_lr(&o).unwrap();
/// assert!((r.linear_scaled - 0.4).abs() < 1e-12 && (r.lr - 0.1).abs() < 1e-12);
/// assert_eq!(r.tau_used, Some(0));
/// ```
pub fn recommend_lr(opts: &AsgdLrOptions) -> Result<LrRecommendation> {
    error::positive("lr_ref", opts.lr_ref)?;
    error::positive("batch_per_worker", opts.batch_per_worker)?;
    error::positive("reference_batch", opts.reference_batch)?;
    implicit_momentum(opts.workers)?;
    error::unit_open("quantile", opts.quantile)?;
    if !(opts.safety > 0.0 && opts.safety <= 1.0) {
        return Err(error::out_of_range("safety", opts.safety, "in (0, 1]"));
    }
    let workers_factor = match opts.update {
        AsgdUpdate::PerPush => 1.0,
        AsgdUpdate::Averaged => f64::from(opts.workers),
    };
    let linear_scaled = opts.lr_ref * opts.batch_per_worker * workers_factor / opts.reference_batch;
    let (tau_used, stability_limit) = match opts.lambda_max {
        Some(l) => {
            let tau = match opts.update {
                AsgdUpdate::PerPush => opts.staleness.quantile(opts.quantile)?,
                AsgdUpdate::Averaged => 0,
            };
            (Some(tau), Some(max_stable_lr_delayed(tau, l)?))
        }
        None => {
            opts.staleness.validate()?;
            (None, None)
        }
    };
    let cap = stability_limit.map(|s| opts.safety * s);
    let lr = cap.map_or(linear_scaled, |c| c.min(linear_scaled));
    Ok(LrRecommendation {
        linear_scaled,
        tau_used,
        stability_limit,
        lr,
        capped: cap.is_some_and(|c| c < linear_scaled),
    })
}
