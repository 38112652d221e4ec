//! From a familiar optimizer setting to a multistage QHM plan, with the reasons.
//!
//! [`recommend`] converts the user's setting to normalized QHM (docs/theory.md §1), optionally
//! adjusts it for asynchronous SGD with M workers (§4), and builds the plan with the
//! `stagewise` recipe (§3.4, \[C\] PC's rule): at each of the n − 1 drops α/r, b/r,
//! β/(1−β)·r and stage length ·r, ν fixed.
//!
//! Conversions (stage 1 of the plan is then the same optimizer as the user's setting):
//!
//! | `--from` | α0 | β0 | ν | source |
//! |---|---|---|---|---|
//! | `pytorch-sgd` (lr η, momentum m) | η/(1−m) | m | 1 | \[Q\] qhoptim `test_momentum_equiv` |
//! | `pytorch-nesterov` (lr η, momentum m) | η/(1−m) | m | m | \[Q\] qhoptim `test_nesterov_equiv` |
//! | `qhm` (α, β, ν) | α | β | ν | — |
//! | `adam` | refused | | | no exact conversion (see [`Setting::Adam`]) |
//!
//! **Asynchronous SGD** (`workers = Some(M)`), docs/theory.md §4 \[D/R\]:
//!
//! - per-push updates ([`AsgdUpdate::PerPush`], the default: the server applies each push):
//!   staleness τ ≈ M − 1 (round-robin homogeneous workers); the learning rate comes from
//!   [`recommend_lr`]: the user's α0 (tuned with one worker at the same batch per worker) is
//!   **not** scaled by M, since each push is still one update of b examples, and is capped at
//!   `cap_fraction` (½ by default) of the constant-delay stability limit
//!   2 sin(π/(2(2τ+1)))/h_max when h_max is known. Without h_max there is no cap, and a
//!   warning says so. When the cap binds, the batch
//!   size falls with α ([`AsgdBatch::KeepRatio`], the default): b0' = ⌊b0·α_cap/α0⌋ and
//!   α0' = α0·b0'/b0, so α/b, the noise temperature of docs/theory.md §3.4, stays the user's and
//!   an epoch is the same SDE time α·n/b (§4.1: t = α·k), made of more, smaller updates. The
//!   staleness then costs less of that time: a delay of τ updates is α·τ in SDE time.
//!   [`AsgdBatch::KeepBatch`] keeps b and lowers α/b instead (fewer, slower-moving updates);
//! - averaged updates ([`AsgdUpdate::Averaged`], the `sync` policy): one update per M
//!   gradients of M·b examples, no staleness: linear scaling α0·M (PC's SGP rule
//!   α_ref·b·M/256 \[C\]), capped at `cap_fraction` · 2/h_max, β kept. The momentum bullet
//!   below applies to per-push updates only;
//! - asynchrony acts as an implicit momentum 1 − 1/M ([`implicit_momentum`]), so the explicit
//!   β0 is reduced to the value that, combined with the asynchrony, gives the converted β0
//!   back ([`explicit_momentum_for_target`], default rule [`MomentumMatch::DcGain`]:
//!   1 − β0_explicit = M(1 − β0)). When asynchrony alone exceeds β0 the exact answer is a
//!   negative momentum, which plans do not allow: β0 is then 0, with a warning.
//!
//! Reasons and warnings are typed [`Note`]s: a [`Topic`], plain words that name no command-line
//! option, and [`Hint`]s (what the user can do, with values) that each front end spells with its
//! own options. Every α, β and ν of the result is rounded to [`RECOMMEND_DIGITS`] significant
//! digits, so that a conversion's float noise does not reach the plan file.
//!
//! ```
//! use stagewise_core::theory::{recommend, RecommendOptions, Setting};
//! let r = recommend(&RecommendOptions::new(Setting::PytorchSgd { lr: 0.1, momentum: 0.9 }))
//!     .unwrap();
//! assert_eq!(r.plan.stages[0].lr, 1.0); // α0 = 0.1/(1 − 0.9), without its float noise
//! assert_eq!(r.plan.stages[0].nu, 1.0);
//! assert_eq!(r.plan.stages.len(), 3); // the preset's plan shape (RecipeParams::default)
//! ```

use serde::{Deserialize, Serialize};

use super::advice::{Hint, Note, Topic};
use super::asgd::{
    compose_momentum, explicit_momentum_for_target, implicit_momentum, recommend_lr, AsgdLrOptions,
    AsgdUpdate, LrRecommendation, MomentumMatch, MAX_WORKERS,
};
use super::explain::AdviceError;
use super::qhm::QhmParams;
use crate::choice::Choice;
use crate::optim::conventions::{from_pytorch_sgd, rule_of_thumb};
use crate::optim::QhmHyper;
use crate::schedule::{fmt_num, Plan, PlanError, Recipe, RecipeParams};

/// The optimizer setting a user starts from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum Setting {
    /// PyTorch `SGD(lr, momentum, dampening=0)`: QHM α = lr/(1−m), β = m, ν = 1 \[Q\].
    PytorchSgd {
        /// Unnormalized learning rate η (> 0).
        lr: f64,
        /// Momentum m ∈ [0, 1).
        momentum: f64,
    },
    /// PyTorch `SGD(lr, momentum, nesterov=True)`: α = lr/(1−m), β = m, ν = m \[Q\].
    PytorchNesterov {
        /// Unnormalized learning rate η (> 0).
        lr: f64,
        /// Momentum m ∈ [0, 1).
        momentum: f64,
    },
    /// Normalized QHM (α, β, ν), used as is.
    Qhm {
        /// α (> 0).
        lr: f64,
        /// β ∈ [0, 1).
        beta: f64,
        /// ν ∈ [0, 1].
        nu: f64,
    },
    /// Adam(lr, β₁, β₂). **Refused**: Adam divides each coordinate by √v̂, so its learning
    /// rate has no QHM equivalent and docs/theory.md §1 gives no conversion. qhoptim's rule of
    /// thumb moves Adam to QHAdam (ν₁ = 0.7, β₁ = 0.995, ν₂ = 1, same lr) \[Q\], which is not a
    /// QHM plan; the error says so and suggests a QHM starting point.
    Adam {
        /// Learning rate.
        lr: f64,
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
    },
}

impl Setting {
    /// The method's name as the CLI spells it (`pytorch-sgd`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Setting::PytorchSgd { .. } => "pytorch-sgd",
            Setting::PytorchNesterov { .. } => "pytorch-nesterov",
            Setting::Qhm { .. } => "qhm",
            Setting::Adam { .. } => "adam",
        }
    }

    /// The exact QHM form of the setting and the reason, in words.
    ///
    /// # Errors
    /// [`AdviceError::Optim`] naming the field out of range, or [`AdviceError::Unsupported`]
    /// for [`Setting::Adam`].
    pub fn to_qhm(&self) -> Result<(QhmHyper, String), AdviceError> {
        match *self {
            Setting::PytorchSgd { lr, momentum } | Setting::PytorchNesterov { lr, momentum } => {
                let nesterov = matches!(self, Setting::PytorchNesterov { .. });
                let h = from_pytorch_sgd(lr, momentum, nesterov)?;
                let why = format!(
                    "{} lr {}, momentum {} is exactly QHM with α = lr/(1−m) = {}, β = m = {}, \
                     ν = {} (docs/theory.md §1, [Q] qhoptim {})",
                    self.name(),
                    fmt_num(lr),
                    fmt_num(momentum),
                    fmt_num(h.qhm.lr),
                    fmt_num(h.qhm.beta),
                    if nesterov { "m" } else { "1" },
                    if nesterov {
                        "test_nesterov_equiv"
                    } else {
                        "test_momentum_equiv"
                    }
                );
                Ok((h, why))
            }
            Setting::Qhm { lr, beta, nu } => {
                let h = QhmHyper::checked(lr, beta, nu)?;
                if lr == 0.0 {
                    return Err(AdviceError::invalid("lr", lr, "a finite number > 0"));
                }
                Ok((
                    h,
                    format!(
                        "QHM α = {}, β = {}, ν = {} is used as is",
                        fmt_num(lr),
                        fmt_num(beta),
                        fmt_num(nu)
                    ),
                ))
            }
            Setting::Adam { lr, beta1, .. } => {
                let tip = rule_of_thumb(0.1, 0.9).map_or(String::new(), |h| {
                    format!(
                        " A common QHM starting point is PyTorch SGD lr 0.1, momentum 0.9 \
                         (α = {}, β = 0.9, ν = 1; qhoptim's rule of thumb would use ν = {}, \
                         β = {}).",
                        fmt_num(h.qhm.lr),
                        fmt_num(h.qhm.nu),
                        fmt_num(h.qhm.beta)
                    )
                });
                Err(AdviceError::Unsupported(format!(
                    "adam (lr {}, beta1 {}) has no exact QHM conversion: Adam divides each \
                     coordinate by sqrt(v̂), so its lr is not comparable to a QHM α \
                     (docs/theory.md §1). qhoptim's rule of thumb moves Adam to QHAdam with \
                     nu1 = 0.7, beta1 = 0.995, nu2 = 1 and the same lr, but a stagewise plan \
                     schedules QHM's α, β, ν. Tune a QHM or SGD learning rate and start from a \
                     qhm or pytorch-sgd setting.{tip}",
                    fmt_num(lr),
                    fmt_num(beta1)
                )))
            }
        }
    }
}

/// Options of [`recommend`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendOptions {
    /// The user's optimizer setting.
    pub setting: Setting,
    /// Initial batch size b0 (per worker with `workers`), ≥ 1.
    pub batch: u64,
    /// Total epochs, ≥ `stages`.
    pub epochs: u64,
    /// Number of stages n ≥ 1.
    pub stages: usize,
    /// Drop factor r ≥ 1.
    pub drop: f64,
    /// Coupled weight decay of the recommended plan, finite and ≥ 0.
    pub weight_decay: f64,
    /// ν of the plan instead of the converted one (stage 1 then differs from the setting).
    pub nu: Option<f64>,
    /// Number of asynchronous workers M ≥ 1 (ASGD), if any.
    pub workers: Option<u32>,
    /// Largest Hessian eigenvalue, if known: caps the ASGD learning rate.
    pub h_max: Option<f64>,
    /// How explicit and implicit momentum are combined (ASGD only).
    pub momentum_match: MomentumMatch,
    /// Per-push (asynchronous, default) or averaged (synchronous) updates (with `workers`).
    pub update: AsgdUpdate,
    /// What happens to b0 when the staleness cap lowers α (per-push ASGD).
    pub asgd_batch: AsgdBatch,
    /// Fraction of the stability limit α may reach, in (0, 1] (default 0.5).
    pub cap_fraction: f64,
}

/// What a per-push ASGD plan does with the batch size when the staleness cap lowers α.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsgdBatch {
    /// Lower b0 with α (b0' = ⌊b0·α_cap/α0⌋ ≥ 1, α0' = α0·b0'/b0 ≤ α_cap): α/b is kept, so
    /// the noise temperature and the SDE time per epoch are the user's; an epoch takes
    /// α0/α0' times more updates, each staler by only α0'·τ in SDE time. Linear scaling
    /// (α ∝ b, docs/theory.md §4.2) read backwards, and the paper's own α/r, b/r step.
    #[default]
    KeepRatio,
    /// Keep b0: α/b falls by the cap's factor, with the same number of updates per epoch.
    KeepBatch,
}

impl Choice for AsgdBatch {
    const WHAT: &'static str = "batch rule";
    const ALL: &'static [Self] = &[AsgdBatch::KeepRatio, AsgdBatch::KeepBatch];

    fn name(self) -> &'static str {
        match self {
            AsgdBatch::KeepRatio => "keep-ratio",
            AsgdBatch::KeepBatch => "keep-batch",
        }
    }

    fn help(self) -> &'static str {
        match self {
            AsgdBatch::KeepRatio => "lower b0 with α: α/b kept",
            AsgdBatch::KeepBatch => "keep b0: α/b falls with the cap",
        }
    }
}

crate::display_and_parse_by_choice!(AsgdBatch);

impl RecommendOptions {
    /// Options for `setting` with the plan shape of the one preset ([`RecipeParams::default`]:
    /// batch 256, 15 epochs, 3 stages, drop 2, weight decay 5e-4) and no ASGD.
    pub fn new(setting: Setting) -> Self {
        let d = RecipeParams::default();
        Self {
            setting,
            batch: d.batch,
            epochs: d.epochs,
            stages: d.stages,
            drop: d.drop,
            weight_decay: d.weight_decay,
            nu: None,
            workers: None,
            h_max: None,
            momentum_match: MomentumMatch::DcGain,
            update: AsgdUpdate::PerPush,
            asgd_batch: AsgdBatch::KeepRatio,
            cap_fraction: 0.5,
        }
    }
}

/// The asynchronous-SGD part of a [`Recommendation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsgdAdvice {
    /// Number of workers M.
    pub workers: u32,
    /// Per-push or averaged updates.
    pub update: AsgdUpdate,
    /// Staleness assumed: τ = M − 1 per push, 0 averaged.
    pub tau: u32,
    /// Implicit momentum of asynchrony: 1 − 1/M per push, 0 averaged.
    pub implicit_momentum: f64,
    /// The learning-rate recommendation of [`recommend_lr`].
    pub lr: LrRecommendation,
    /// The batch-size rule applied when the cap binds (per-push updates).
    pub batch_rule: AsgdBatch,
    /// α0 of the plan: `lr.lr`, or lower so that α0/b0 is exactly the user's (`KeepRatio`).
    pub plan_lr: f64,
    /// b0 per worker of the plan.
    pub plan_batch: u64,
    /// The converted β0 that the total momentum should match.
    pub target_momentum: f64,
    /// The rule used to combine momenta.
    pub momentum_match: MomentumMatch,
    /// Exact explicit momentum for the target (may be negative).
    pub explicit_momentum_exact: f64,
    /// The explicit β0 of the plan (the exact value, clamped at 0).
    pub explicit_momentum: f64,
    /// Total effective momentum of the plan's stage 1 with M workers.
    pub total_momentum: f64,
}

/// The output of [`recommend`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The user's setting.
    pub setting: Setting,
    /// Its exact QHM form.
    pub converted: QhmParams,
    /// (α0, β0, ν) given to the recipe (after the ASGD adjustments and `nu`).
    pub initial: QhmParams,
    /// The ASGD adjustments, when `workers` was given.
    pub asgd: Option<AsgdAdvice>,
    /// The recipe parameters used.
    pub recipe: RecipeParams,
    /// The plan (stagewise recipe).
    pub plan: Plan,
    /// Why each number is what it is.
    pub reasons: Vec<Note>,
    /// Things to check before using the plan.
    pub warnings: Vec<Note>,
}

/// Significant digits of every α, β and ν of a recommended plan.
///
/// Conversions carry float noise (α = η/(1−m) = 0.1/(1 − 0.9) is 1.0000000000000002 in
/// binary64), which would otherwise reach the plan file. Twelve digits are far below every
/// tolerance of the theory (1% by default, [`ExplainOptions::rel_tol`]) and above the float32
/// the optimizers step in (7 digits), so the rounding changes nothing but the noise.
///
/// [`ExplainOptions::rel_tol`]: super::ExplainOptions::rel_tol
pub const RECOMMEND_DIGITS: usize = 12;

/// `x` rounded to `digits` significant digits (`digits` ≥ 1; 0, infinities and NaN as is).
///
/// ```
/// use stagewise_core::theory::round_significant;
/// assert_eq!(round_significant(0.1 / (1.0 - 0.9), 12), 1.0);
/// assert_eq!(round_significant(0.123456789, 3), 0.123);
/// assert_eq!(round_significant(-2.6e-7, 1), -3e-7);
/// ```
pub fn round_significant(x: f64, digits: usize) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    // Formatting rounds the exact binary value to the nearest decimal of that many digits.
    format!("{x:.*e}", digits.max(1) - 1).parse().unwrap_or(x)
}

fn round(x: f64) -> f64 {
    round_significant(x, RECOMMEND_DIGITS)
}

/// Builds the stagewise plan for a user's setting; see the [module documentation](self).
///
/// Every α, β and ν of the result is rounded to [`RECOMMEND_DIGITS`] significant digits.
///
/// # Errors
/// [`AdviceError`] naming the field and allowed range for any invalid input (lr, momentum,
/// batch, epochs, stages, drop, nu, workers, h_max), [`AdviceError::Unsupported`] for Adam,
/// [`AdviceError::LoweredBatchTooSmall`] when the batch rule lowers b0 below what the
/// stages can halve.
pub fn recommend(opts: &RecommendOptions) -> Result<Recommendation, AdviceError> {
    let (h, why) = opts.setting.to_qhm()?;
    let h = QhmHyper {
        qhm: QhmParams {
            lr: round(h.qhm.lr),
            beta: round(h.qhm.beta),
            nu: round(h.qhm.nu),
        },
        ..h
    };
    let converted = QhmParams {
        lr: h.qhm.lr,
        beta: h.qhm.beta,
        nu: h.qhm.nu,
    };
    let mut reasons = vec![Note::new(Topic::Conversion, why)];
    let mut warnings = Vec::new();
    if let Some(x) = opts.h_max {
        if !(x.is_finite() && x > 0.0) {
            return Err(AdviceError::invalid("h_max", x, "a finite number > 0"));
        }
    }
    let nu = match opts.nu {
        Some(nu) => {
            if !(0.0..=1.0).contains(&nu) {
                return Err(AdviceError::invalid("nu", nu, "in [0, 1]"));
            }
            if nu != h.qhm.nu {
                reasons.push(Note::new(
                    Topic::NuOverride,
                    format!(
                        "ν = {} instead of the converted {}, as asked: stage 1 is no longer \
                         exactly your setting",
                        fmt_num(nu),
                        fmt_num(h.qhm.nu)
                    ),
                ));
            }
            nu
        }
        None => h.qhm.nu,
    };
    let (mut lr, mut beta, mut batch) = (h.qhm.lr, h.qhm.beta, opts.batch);

    let asgd = match opts.workers {
        None => None,
        Some(m) => {
            let advice = asgd_advice(opts, m, h, &mut reasons, &mut warnings)?;
            lr = advice.plan_lr;
            beta = advice.explicit_momentum;
            batch = advice.plan_batch;
            Some(advice)
        }
    };
    let (lr, beta, nu) = (round(lr), round(beta), round(nu));

    let recipe = RecipeParams {
        lr,
        momentum: beta,
        nu,
        batch,
        epochs: opts.epochs,
        stages: opts.stages,
        drop: opts.drop,
        weight_decay: opts.weight_decay,
        ..RecipeParams::default()
    };
    let plan = match recipe.build(Recipe::Stagewise) {
        Err(PlanError::BatchTooSmall {
            stage,
            drop,
            power,
            batch: exact,
            ..
        }) if batch < opts.batch => {
            let mut hints = vec![
                Hint::LargerBatch {
                    current: opts.batch,
                },
                Hint::FewerStages {
                    current: opts.stages,
                },
            ];
            if let Some(m) = opts.workers {
                hints.insert(
                    0,
                    Hint::UseBatchRule {
                        rule: AsgdBatch::KeepBatch,
                    },
                );
                hints.push(Hint::FewerWorkers { current: m });
            }
            return Err(AdviceError::LoweredBatchTooSmall {
                requested: opts.batch,
                lowered: batch,
                stage,
                drop,
                power,
                batch: exact,
                hints,
            });
        }
        built => built?,
    };
    let epochs: Vec<String> = plan
        .stages
        .iter()
        .map(|s| s.epochs.unwrap_or(0).to_string())
        .collect();
    if opts.stages > 1 {
        reasons.push(Note::new(
            Topic::Recipe,
            format!(
                "stagewise recipe (docs/theory.md §3.4, [C] PC's rule): {} stages, at each drop \
                 α/{r}, b/{r}, β/(1−β)·{r}, stage length ·{r}, ν fixed (epochs {}). This keeps \
                 α/b (the noise temperature, so the bound stays at its stage-1 value), \
                 α·ν·β/(1−β) (§2 condition 2) and α·T in epochs",
                opts.stages,
                epochs.join(", "),
                r = fmt_num(opts.drop)
            ),
        ));
    } else {
        reasons.push(Note::new(
            Topic::Recipe,
            "one stage: the plan is the converted setting, constant",
        ));
    }
    if h.qhm.nu == 1.0 && opts.nu.is_none() && beta > 0.0 {
        if let Ok(t) = rule_of_thumb(h.qhm.lr * (1.0 - h.qhm.beta), h.qhm.beta) {
            reasons.push(
                Note::new(
                    Topic::RuleOfThumb,
                    format!(
                        "tip: qhoptim's rule of thumb for momentum m is ν = max(0, 3m−2) = {}, \
                         β = max(0.999, m) = {} (docs/theory.md §1); ν = {} moves towards QHM",
                        fmt_num(t.qhm.nu),
                        fmt_num(t.qhm.beta),
                        fmt_num(t.qhm.nu)
                    ),
                )
                .hint(Hint::SetNu {
                    nu: round(t.qhm.nu),
                }),
            );
        }
    }
    Ok(Recommendation {
        setting: opts.setting,
        converted,
        initial: QhmParams { lr, beta, nu },
        asgd,
        recipe,
        plan,
        reasons,
        warnings,
    })
}

/// The ASGD adjustments of [`recommend`] for M workers, with their reasons and warnings.
fn asgd_advice(
    opts: &RecommendOptions,
    m: u32,
    h: QhmHyper,
    reasons: &mut Vec<Note>,
    warnings: &mut Vec<Note>,
) -> Result<AsgdAdvice, AdviceError> {
    if m == 0 || m as usize > MAX_WORKERS {
        return Err(AdviceError::invalid(
            "workers",
            m,
            &format!("1 ..= {MAX_WORKERS}"),
        ));
    }
    let q = implicit_momentum(m)?;
    if !(opts.cap_fraction > 0.0 && opts.cap_fraction <= 1.0) {
        return Err(AdviceError::invalid(
            "cap_fraction",
            opts.cap_fraction,
            "in (0, 1]",
        ));
    }
    let mut o = AsgdLrOptions::new(h.qhm.lr, opts.batch as f64, m);
    o.reference_batch = opts.batch as f64;
    o.lambda_max = opts.h_max;
    o.update = opts.update;
    o.safety = opts.cap_fraction;
    let rec = recommend_lr(&o)?;
    let h_max = fmt_num(opts.h_max.unwrap_or(f64::NAN));
    if opts.update == AsgdUpdate::Averaged {
        reasons.push(Note::new(
            Topic::Asynchrony,
            format!(
                "synchronous SGD with M = {m} workers (policy sync): each update averages M \
                 gradients, {} examples, and sees no staleness; the converted β = {} is kept",
                u64::from(m) * opts.batch,
                fmt_num(h.qhm.beta)
            ),
        ));
        reasons.push(Note::new(
            Topic::LearningRate,
            match rec.stability_limit {
                Some(limit) => format!(
                    "learning rate: linear scaling α0·M = {} (docs/theory.md §4.2, [C] PC's SGP \
                     code), {} {} of the stability limit 2/h_max = {} for h_max = {}: α0 = {}",
                    fmt_num(rec.linear_scaled),
                    if rec.capped { "capped at" } else { "below" },
                    fmt_num(opts.cap_fraction),
                    fmt_num(limit),
                    h_max,
                    fmt_num(rec.lr)
                ),
                None => format!(
                    "learning rate: linear scaling α0·M = {} (docs/theory.md §4.2, [C] PC's SGP \
                     code)",
                    fmt_num(rec.linear_scaled)
                ),
            },
        ));
        return Ok(AsgdAdvice {
            workers: m,
            update: opts.update,
            tau: 0,
            implicit_momentum: 0.0,
            batch_rule: opts.asgd_batch,
            plan_lr: rec.lr,
            plan_batch: opts.batch,
            lr: rec,
            target_momentum: h.qhm.beta,
            momentum_match: opts.momentum_match,
            explicit_momentum_exact: h.qhm.beta,
            explicit_momentum: h.qhm.beta,
            total_momentum: h.qhm.beta,
        });
    }
    let exact = explicit_momentum_for_target(h.qhm.beta, m, opts.momentum_match)?;
    let explicit = exact.max(0.0);
    let total = compose_momentum(explicit, m, opts.momentum_match)?;
    reasons.push(Note::new(
        Topic::Asynchrony,
        format!(
            "ASGD with M = {m} workers, every push applied when it arrives: staleness τ ≈ M − 1 \
             = {} (round-robin workers, docs/theory.md §4.1)",
            m - 1
        ),
    ));
    let kept = format!(
        "learning rate: α0 = {} is not scaled by M (each push is one update of b = {} \
         examples; linear scaling belongs to averaged updates)",
        fmt_num(rec.linear_scaled),
        opts.batch
    );
    let lr_note = |text: String| Note::new(Topic::LearningRate, text).hint(Hint::AverageUpdates);
    match (rec.stability_limit, rec.capped) {
        (Some(limit), true) => reasons.push(lr_note(format!(
            "{kept}, and is capped at {} of the delayed-SGD stability limit \
             2 sin(π/(2(2τ+1)))/h_max = {} for h_max = {} (docs/theory.md §4.2): α0 = {}",
            fmt_num(opts.cap_fraction),
            fmt_num(limit),
            h_max,
            fmt_num(rec.lr)
        ))),
        (Some(limit), false) => reasons.push(lr_note(format!(
            "{kept}; it is below {} of the delayed-SGD stability limit {} for h_max = {}",
            fmt_num(opts.cap_fraction),
            fmt_num(limit),
            h_max,
        ))),
        (None, _) => {
            reasons.push(lr_note(kept));
            if m > 1 {
                warnings.push(
                    Note::new(
                        Topic::NoCurvature,
                        format!(
                            "no h_max given: the staleness cap could not be applied. With τ = {} \
                             delayed SGD is stable only for α < 2 sin(π/(2(2τ+1)))/h_max = \
                             {}/h_max; α0 = {} needs h_max < {}",
                            m - 1,
                            fmt_num(super::staleness_stability_limit(m - 1)),
                            fmt_num(rec.lr),
                            fmt_num(super::staleness_stability_limit(m - 1) / rec.lr)
                        ),
                    )
                    .hint(Hint::GiveHMax),
                );
            }
        }
    }
    let (plan_lr, plan_batch) = batch_for_cap(opts, &rec, reasons, warnings);
    reasons.push(Note::new(
        Topic::Momentum,
        format!(
            "momentum: asynchrony adds an implicit momentum 1 − 1/M = {} (docs/theory.md §4.1, \
             [D]); to keep the total at the converted β = {} the explicit momentum becomes {} \
             ({} rule{})",
            fmt_num(q),
            fmt_num(h.qhm.beta),
            fmt_num(explicit),
            match opts.momentum_match {
                MomentumMatch::DcGain => "DC-gain: 1 − β_explicit = M(1 − β)",
                MomentumMatch::MeanLag => "mean-lag: β/(1−β) = β_e/(1−β_e) + (M − 1)",
            },
            if explicit != exact {
                format!(", clamped from {}", fmt_num(exact))
            } else {
                String::new()
            }
        ),
    ));
    if let Some(h_max) = opts.h_max {
        let nu = opts.nu.unwrap_or(h.qhm.nu);
        let limit = super::asgd::delayed_qhm_stability_limit(explicit, nu, m - 1)? / h_max;
        reasons.push(Note::new(
            Topic::StabilityCheck,
            format!(
                "check: QHM with the explicit β0 = {}, ν = {} and a constant delay τ = {} is \
                 stable up to α < {} for h_max = {} (exact, Schur–Cohn); α0 = {} is {} of it",
                fmt_num(explicit),
                fmt_num(nu),
                m - 1,
                fmt_num(limit),
                fmt_num(h_max),
                fmt_num(plan_lr),
                fmt_num(plan_lr / limit)
            ),
        ));
        if plan_lr >= limit {
            warnings.push(
                Note::new(
                    Topic::BeyondStabilityLimit,
                    format!(
                        "α0 = {} is at or beyond the exact delayed-QHM limit {} for β0 = {}, \
                         ν = {}, τ = {}",
                        fmt_num(plan_lr),
                        fmt_num(limit),
                        fmt_num(explicit),
                        fmt_num(nu),
                        m - 1
                    ),
                )
                .hint(Hint::LowerCapFraction {
                    current: opts.cap_fraction,
                }),
            );
        }
    }
    if exact < 0.0 {
        warnings.push(
            Note::new(
                Topic::NegativeMomentum,
                format!(
                    "asynchrony alone (implicit momentum {}) already exceeds the target β = {}: \
                     the exact explicit momentum would be negative ({}), which plans do not \
                     allow; β0 = 0 is used and the total momentum is {}",
                    fmt_num(q),
                    fmt_num(h.qhm.beta),
                    fmt_num(exact),
                    fmt_num(total)
                ),
            )
            .hint(Hint::FewerWorkers { current: m })
            .hint(Hint::LargerMomentum {
                current: h.qhm.beta,
            }),
        );
    }
    Ok(AsgdAdvice {
        workers: m,
        update: opts.update,
        tau: m - 1,
        implicit_momentum: q,
        batch_rule: opts.asgd_batch,
        plan_lr,
        plan_batch,
        lr: rec,
        target_momentum: h.qhm.beta,
        momentum_match: opts.momentum_match,
        explicit_momentum_exact: exact,
        explicit_momentum: explicit,
        total_momentum: total,
    })
}

/// α0 and b0 of a per-push ASGD plan under the batch rule, with the reason (or a warning when
/// α/b cannot be kept even at b0 = 1).
fn batch_for_cap(
    opts: &RecommendOptions,
    rec: &LrRecommendation,
    reasons: &mut Vec<Note>,
    warnings: &mut Vec<Note>,
) -> (f64, u64) {
    if !rec.capped || opts.asgd_batch == AsgdBatch::KeepBatch {
        if rec.capped {
            reasons.push(
                Note::new(
                    Topic::BatchSize,
                    format!(
                        "batch size: b0 = {} kept (the keep-batch rule), so α/b falls {}× with \
                         the cap and each epoch covers {}× less SDE time α·n/b; the keep-ratio \
                         rule would lower b0 with α instead",
                        opts.batch,
                        fmt_num(rec.linear_scaled / rec.lr),
                        fmt_num(rec.linear_scaled / rec.lr)
                    ),
                )
                .hint(Hint::UseBatchRule {
                    rule: AsgdBatch::KeepRatio,
                }),
            );
        }
        return (rec.lr, opts.batch);
    }
    let b0 = opts.batch as f64;
    let exact = b0 * rec.lr / rec.linear_scaled;
    if exact < 1.0 {
        warnings.push(
            Note::new(
                Topic::BatchFloor,
                format!(
                    "keeping α/b would need b0 = {} < 1 per worker: b0 = 1 with α0 = {}, so α/b \
                     is {}× below your setting",
                    fmt_num(exact),
                    fmt_num(rec.lr),
                    fmt_num(rec.linear_scaled / (rec.lr * b0))
                ),
            )
            .hint(Hint::FewerWorkers {
                current: opts.workers.unwrap_or(1),
            }),
        );
        return (rec.lr, 1);
    }
    // A hair of slack so that an exact product (32 · 0.05/0.1) is not floored to one less.
    let batch = (exact * (1.0 + 1e-12)).floor() as u64;
    let lr = rec.linear_scaled * batch as f64 / b0;
    reasons.push(
        Note::new(
            Topic::BatchSize,
            format!(
                "batch size: b0 = {} lowered with α to {} per worker and α0 = {}·{}/{} = {} \
                 (the keep-ratio rule), so α/b = {} stays yours: the same noise temperature \
                 (docs/theory.md §3.4) and the same SDE time α·n/b per epoch, in {}× more \
                 updates, each stale by only α·τ = {} of SDE time",
                opts.batch,
                batch,
                fmt_num(rec.linear_scaled),
                batch,
                opts.batch,
                fmt_num(lr),
                fmt_num(lr / batch as f64),
                fmt_num(b0 / batch as f64),
                fmt_num(lr * f64::from(rec.tau_used.unwrap_or(0)))
            ),
        )
        .hint(Hint::UseBatchRule {
            rule: AsgdBatch::KeepBatch,
        }),
    );
    (lr, batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_above_the_shared_cap_are_refused_at_once() {
        let mut o = RecommendOptions::new(Setting::PytorchSgd {
            lr: 0.1,
            momentum: 0.9,
        });
        o.h_max = Some(1.0);
        o.workers = Some(MAX_WORKERS as u32);
        let started = std::time::Instant::now();
        // 4096 workers get through the worker check (their lowered batch may fail later).
        if let Err(e) = recommend(&o) {
            assert!(!e.to_string().contains("1 ..= 4096"), "{e}");
        }
        for m in [0, MAX_WORKERS as u32 + 1, 1_000_000_000] {
            o.workers = Some(m);
            let e = recommend(&o).unwrap_err().to_string();
            assert!(e.contains("workers") && e.contains("1 ..= 4096"), "{e}");
        }
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }
}
