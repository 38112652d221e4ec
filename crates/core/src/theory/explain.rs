//! Explaining a [`Plan`] in the theory's terms: per-stage invariants, momentum statistics,
//! stability, the bound proxy, and plain-language warnings where a rule is broken.
//!
//! [`explain`] lays the plan out for a training-set size (via [`plan_stages`]) and computes,
//! per stage i:
//!
//! - α·T in **epochs** and in **iterations**. §2 condition 1 (the convergence theorem, \[D\])
//!   counts iterations; the paper's code (PC, \[C\]) keeps α·T constant in *epochs*. With a
//!   batch size that shrinks by r per stage, an epoch has r× more iterations, so the two
//!   disagree: the stagewise rule keeps α·T in epochs and makes it grow r× per stage in
//!   iterations. Both are reported; only a stage whose α·T in iterations *falls below* stage
//!   1's is a warning (it is too short for its learning rate), a growing one is a note;
//! - α/b, the noise temperature kept by the §3.4 rule \[D\];
//! - α·ν·β/(1−β), the offset of the z-sequence z = θ − (ανβ/(1−β))·d of §1 (§2 condition 2,
//!   \[D\]);
//! - κ = αhβ(1−ν)/(1−β) and ψ (§3.2, \[D\]) at a curvature h, and the exact stationary
//!   variance at h relative to stage 1 (V_i/V_1 with noise c/b_i; c cancels, \[D\]);
//! - α_max = 2(1+β)/(h_max(1+β(1−2ν))) and the stability margin 1 − α/α_max at h_max
//!   (Gitman et al., \[Q\] in docs/theory.md §1), and the local rate (largest root modulus);
//!
//! and, when a [`Spectrum`] is given, the PAC-Bayes proxy of §3.3 (\[D\]): KL of the final
//! Gaussian against the prior and the McAllester gap, also after each stage.
//!
//! A stage with a within-stage schedule (cosine, linear, wsd, warm-up, one-cycle, custom) is
//! not treated as constant: α·T is the exact sum Σ_t α_t over its steps, α/b and
//! α·ν·β/(1−β) are means over its steps, the stability columns and §2 condition 3 are those of
//! its worst step (the largest α for a schedule that moves α alone), and the bound proxy goes
//! through every run of steps of constant (α, β) ([`plan_bound_pieces`]). Only κ, ψ and V/V₁,
//! values at one point, use the base α, β written in the plan.
//!
//! ```
//! use stagewise_core::schedule::{Recipe, RecipeParams};
//! use stagewise_core::theory::{explain, ExplainOptions, WarningKind};
//! let plan = RecipeParams::default().build(Recipe::Step).unwrap();
//! let ex = explain(&plan, &ExplainOptions::default()).unwrap();
//! // The step recipe drops α but not b: α/b halves at every drop.
//! assert!(ex.warnings.iter().any(|w| w.kind == WarningKind::LrOverBatch));
//! println!("{}", ex.render());
//! ```

use serde::{Deserialize, Serialize};

use super::adapter::{plan_stages, TheoryStage};
use super::advice::Hint;
use super::bound::{plan_bound_pieces, BoundOptions, CarryOver, Spectrum};
use super::error::TheoryError;
use super::invariants::StageHyper;
use super::qhm::{
    convergence_rate, divergence_threshold, effective_temperature, kappa, stationary_variance,
};
use crate::optim::OptimError;
use crate::schedule::{fmt_num, Plan, PlanError};

/// Errors of the adapters ([`explain`], [`recommend`](super::recommend()),
/// [`parse_spectrum`](super::parse_spectrum)). Every message names the offending field and,
/// where relevant, its allowed range.
#[derive(Debug, thiserror::Error)]
pub enum AdviceError {
    /// The plan is invalid or cannot be laid out.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A theory calculator refused its input.
    #[error(transparent)]
    Theory(#[from] TheoryError),
    /// A conversion to QHM refused its input.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// An option is outside its allowed range.
    #[error("invalid {field} = {value}: allowed: {allowed}")]
    Invalid {
        /// The option, e.g. `n_train` or `spectrum.d`.
        field: String,
        /// The value given.
        value: String,
        /// The allowed values, in words.
        allowed: String,
    },
    /// The request has no sound answer (e.g. an Adam setting to convert to QHM).
    #[error("{0}")]
    Unsupported(String),
    /// A spectrum file cannot be read.
    #[error("cannot read spectrum file '{path}': {message}")]
    SpectrumFile {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// A spectrum file is malformed.
    #[error("spectrum '{source_name}': {message}")]
    SpectrumParse {
        /// The file (or input) name.
        source_name: String,
        /// What is wrong, with the line for CSV.
        message: String,
    },
    /// The keep-ratio batch rule lowered b0 so far that the stages cannot halve it.
    #[error(
        "b0 was lowered from {requested} to {lowered} per worker to keep α/b under the \
         staleness cap, so stage {stage} would have a batch size of {lowered} / {drop}^{power} \
         = {batch}, below 1"
    )]
    LoweredBatchTooSmall {
        /// b0 asked for.
        requested: u64,
        /// b0 after the batch rule.
        lowered: u64,
        /// 1-based stage whose batch size falls below 1.
        stage: usize,
        /// Drop factor r.
        drop: f64,
        /// Exponent i (0-based stage index).
        power: usize,
        /// The unrounded batch size lowered/rⁱ.
        batch: f64,
        /// What avoids it.
        hints: Vec<Hint>,
    },
}

impl AdviceError {
    /// An [`AdviceError::Invalid`] for `field`.
    pub fn invalid(field: &str, value: impl ToString, allowed: &str) -> Self {
        AdviceError::Invalid {
            field: field.to_string(),
            value: value.to_string(),
            allowed: allowed.to_string(),
        }
    }

    /// What the user can do about the error (empty for most errors).
    pub fn hints(&self) -> &[Hint] {
        match self {
            AdviceError::LoweredBatchTooSmall { hints, .. } => hints,
            _ => &[],
        }
    }
}

/// Options of [`explain`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainOptions {
    /// Training-set size used to count iterations per epoch (`ceil(n_train/b)`); default
    /// 60 000 (Fashion-MNIST). Also the N of the PAC-Bayes gap.
    pub n_train: u64,
    /// Curvature h at which κ, ψ and the relative stationary variance are reported (> 0,
    /// default 1).
    pub curvature: f64,
    /// Largest curvature λ_max for the stability columns (> 0). Default: the spectrum's
    /// largest h_j when a spectrum is given, otherwise `curvature`.
    pub h_max: Option<f64>,
    /// Eigenvalues (h_j, c_j) for the bound proxy; `None` skips the bound.
    pub spectrum: Option<Spectrum>,
    /// Prior variance λ₀ of the bound (> 0, default 1 as in He–Liu–Tao).
    pub prior_var: f64,
    /// Confidence δ of the bound, in (0, 1) (default 0.05).
    pub delta: f64,
    /// Stage-to-stage carry-over model of the bound (default [`CarryOver::Sde`]).
    pub carry_over: CarryOver,
    /// Smoothness L of the loss, if known: enables §2 condition 3, α ≤ (1−β)/L.
    pub smoothness: Option<f64>,
    /// Relative deviation from stage 1 below which an invariant counts as kept (≥ 0, default
    /// 0.01, so that β written to 3 digits or a batch rounded by one does not warn).
    pub rel_tol: f64,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            n_train: 60_000,
            curvature: 1.0,
            h_max: None,
            spectrum: None,
            prior_var: 1.0,
            delta: 0.05,
            carry_over: CarryOver::Sde,
            smoothness: None,
            rel_tol: 0.01,
        }
    }
}

/// A stability margin below this fraction gives a "close to the edge" note.
const EDGE_MARGIN: f64 = 0.1;

/// The theory's view of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageExplanation {
    /// Stage number, 1-based.
    pub stage: usize,
    /// Normalized learning rate α.
    pub lr: f64,
    /// Momentum β.
    pub beta: f64,
    /// Immediate discount ν.
    pub nu: f64,
    /// Batch size b.
    pub batch_size: u64,
    /// PyTorch-style (unnormalized) learning rate η = α(1−β) \[Q, §1\].
    pub unnormalized_lr: f64,
    /// Length in epochs (fractional for a stage given in steps that ends mid-epoch).
    pub length_epochs: f64,
    /// Length in optimizer iterations.
    pub length_steps: u64,
    /// Iterations per epoch, `ceil(n_train/b)`.
    pub steps_per_epoch: u64,
    /// Summary of the within-stage schedule, if any (`lr`, `beta` above are the base values
    /// written in the plan; the integrated ones are `lr_mean`, `lr_peak`, `lr_times_steps`).
    pub schedule: Option<String>,
    /// Mean α over the stage's steps (α without a within-stage schedule).
    pub lr_mean: f64,
    /// Largest α over the stage's steps (α without a within-stage schedule).
    pub lr_peak: f64,
    /// α·T with T in epochs (kept constant by PC's code, \[C\]): Σ_t α_t / steps per epoch.
    pub lr_times_epochs: f64,
    /// α·T with T in iterations (§2 condition 1 of the convergence theorem, \[D\]): the exact
    /// Σ_t α_t over the stage's steps.
    pub lr_times_steps: f64,
    /// α/b, the noise temperature (§3.4, \[D\]), with the mean α over the stage's steps.
    pub lr_over_batch: f64,
    /// α·ν·β/(1−β), the z-sequence offset (§2 condition 2, \[D\]), averaged over the stage's
    /// steps.
    pub momentum_offset: f64,
    /// The largest α/(1−β) over the stage's steps, for §2 condition 3.
    pub lr_over_one_minus_beta: f64,
    /// κ = αhβ(1−ν)/(1−β) at the reported curvature (§3.2, \[D\]).
    pub kappa: f64,
    /// Effective temperature ψ at the reported curvature (§3.2, \[D\]).
    pub psi: f64,
    /// Exact stationary variance at the reported curvature, relative to stage 1 (§3.2,
    /// \[D\]); `None` when this stage or stage 1 is unstable at that curvature.
    pub variance_rel: Option<f64>,
    /// Divergence threshold α_max at h_max (§1, \[Q\] Gitman et al.), with the β of the step
    /// of the smallest margin.
    pub lr_max: f64,
    /// α at the step of the smallest stability margin (α without a within-stage schedule; the
    /// largest α when the schedule leaves β alone).
    pub lr_at_edge: f64,
    /// Step within the stage (0-based) of the smallest stability margin.
    pub edge_step: u64,
    /// Smallest stability margin 1 − α_t/α_max(β_t) over the stage's steps, at h_max
    /// (negative: diverges).
    pub stability_margin: f64,
    /// `true` when α_t < α_max at h_max at every step of the stage.
    pub stable: bool,
    /// Local linear rate at h_max at the step of the smallest margin: the largest modulus of
    /// the characteristic roots (§1).
    pub rate_at_h_max: f64,
}

/// A rule that a plan keeps or breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// α·T constant with T in iterations: §2 condition 1, what the convergence theorem needs.
    LrTimesSteps,
    /// α·T constant with T in epochs: the paper code's convention.
    LrTimesEpochs,
    /// α·ν·β/(1−β) constant: §2 condition 2.
    MomentumOffset,
    /// α ≤ (1−β)/L: §2 condition 3 (only with a smoothness constant).
    LrBelowSmoothness,
    /// β non-decreasing: §2 condition 4.
    BetaNonDecreasing,
    /// α/b constant: the §3.4 generalization rule.
    LrOverBatch,
}

impl Rule {
    /// Short description and where the rule comes from.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::LrTimesSteps => {
                "α·T constant, T in iterations (§2 condition 1: what the convergence theorem needs)"
            }
            Rule::LrTimesEpochs => {
                "α·T constant, T in epochs (the paper's code; not what the theorem counts)"
            }
            Rule::MomentumOffset => "α·ν·β/(1−β) constant (§2 condition 2: z-sequence continuity)",
            Rule::LrBelowSmoothness => "α ≤ (1−β)/L (§2 condition 3)",
            Rule::BetaNonDecreasing => "β non-decreasing (§2 condition 4)",
            Rule::LrOverBatch => "α/b constant (§3.4: keeps the bound's KL at its stage-1 value)",
        }
    }
}

/// Whether a plan keeps one [`Rule`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// The rule.
    pub rule: Rule,
    /// `true` if every stage is within the tolerance.
    pub holds: bool,
    /// Largest relative deviation (for "constant" rules: max_i |x_i − x_1|/|x_1|; for β:
    /// the largest relative decrease; for smoothness: max_i (αL/(1−β) − 1)⁺).
    pub max_rel_deviation: f64,
    /// The stage (1-based) with the largest deviation, if any deviates.
    pub worst_stage: Option<usize>,
}

/// How serious a [`Warning`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A rule of the theory is broken or a stage is unstable.
    Warning,
    /// Worth knowing, not a broken rule.
    Note,
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// α·T in iterations differs from stage 1's.
    LrTimesSteps,
    /// α·T in epochs differs from stage 1's.
    LrTimesEpochs,
    /// α·ν·β/(1−β) differs from stage 1's.
    MomentumOffset,
    /// α above (1−β)/L.
    LrBelowSmoothness,
    /// β decreases between stages.
    BetaNonDecreasing,
    /// α/b differs from stage 1's.
    LrOverBatch,
    /// α ≥ α_max at h_max.
    Unstable,
    /// Stability margin below 10%.
    NearStabilityEdge,
    /// The stage has a within-stage schedule.
    WithinStageSchedule,
    /// The bound proxy could not be computed.
    BoundUnavailable,
}

/// A plain-language finding about the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// Warning or note.
    pub severity: Severity,
    /// What it is about.
    pub kind: WarningKind,
    /// The stage (1-based) it is about, if one.
    pub stage: Option<usize>,
    /// The explanation, for a user.
    pub message: String,
}

/// The PAC-Bayes proxy of the plan (§3.3, \[D\]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundSummary {
    /// Number of directions d of the spectrum.
    pub dim: usize,
    /// Prior variance λ₀.
    pub prior_var: f64,
    /// Confidence δ.
    pub delta: f64,
    /// N of the gap (= n_train).
    pub n_samples: f64,
    /// KL of the final Gaussian against the prior.
    pub kl: f64,
    /// McAllester gap sqrt((KL + ln(1/δ) + ln N + 2)/(2N − 1)).
    pub gap: f64,
    /// Empirical risk inflation ½ Σ_j h_j σ²_j.
    pub risk_inflation: f64,
    /// KL if the run stopped at the end of stage k (k = 1..n).
    pub kl_after_stage: Vec<f64>,
    /// Gap if the run stopped at the end of stage k.
    pub gap_after_stage: Vec<f64>,
}

/// The theory's explanation of a plan; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanExplanation {
    /// The plan's name, if any.
    pub name: Option<String>,
    /// Training-set size used for the layout.
    pub n_train: u64,
    /// Curvature h of the κ, ψ and variance columns.
    pub curvature: f64,
    /// Curvature λ_max of the stability columns.
    pub h_max: f64,
    /// Total optimizer iterations.
    pub total_steps: u64,
    /// Total epochs.
    pub total_epochs: f64,
    /// One entry per stage.
    pub stages: Vec<StageExplanation>,
    /// Every checked rule.
    pub rules: Vec<RuleStatus>,
    /// The bound proxy, when a spectrum was given and every stage is stable on it.
    pub bound: Option<BoundSummary>,
    /// Warnings and notes, in order of stage.
    pub warnings: Vec<Warning>,
}

impl PlanExplanation {
    /// The report on `rule`, if it was checked.
    pub fn rule(&self, rule: Rule) -> Option<&RuleStatus> {
        self.rules.iter().find(|r| r.rule == rule)
    }

    /// Findings of severity [`Severity::Warning`].
    pub fn warnings_only(&self) -> impl Iterator<Item = &Warning> {
        self.warnings
            .iter()
            .filter(|w| w.severity == Severity::Warning)
    }

    /// `true` if some finding of kind `kind` has severity [`Severity::Warning`].
    pub fn has_warning(&self, kind: WarningKind) -> bool {
        self.warnings_only().any(|w| w.kind == kind)
    }
}

fn check_options(opts: &ExplainOptions) -> Result<(), AdviceError> {
    if opts.n_train == 0 {
        return Err(AdviceError::invalid("n_train", 0, "an integer >= 1"));
    }
    let positive = |field: &str, x: f64| {
        if x.is_finite() && x > 0.0 {
            Ok(())
        } else {
            Err(AdviceError::invalid(field, x, "a finite number > 0"))
        }
    };
    positive("curvature", opts.curvature)?;
    if let Some(h) = opts.h_max {
        positive("h_max", h)?;
    }
    if let Some(l) = opts.smoothness {
        positive("smoothness", l)?;
    }
    positive("prior_var", opts.prior_var)?;
    if !(opts.delta > 0.0 && opts.delta < 1.0) {
        return Err(AdviceError::invalid("delta", opts.delta, "in (0, 1)"));
    }
    if !(opts.rel_tol.is_finite() && opts.rel_tol >= 0.0) {
        return Err(AdviceError::invalid(
            "rel_tol",
            opts.rel_tol,
            "a finite number >= 0",
        ));
    }
    if let Some(s) = &opts.spectrum {
        s.validate()?;
    }
    Ok(())
}

/// Signed relative deviation of `x` from the reference `r` (absolute when r = 0).
fn rel(x: f64, r: f64) -> f64 {
    if r == 0.0 {
        x
    } else {
        (x - r) / r.abs()
    }
}

fn pct(d: f64) -> String {
    format!("{:+.0}%", 100.0 * d)
}

/// Status of a "constant across stages" rule over `values`.
fn constant_status(rule: Rule, values: &[f64], tol: f64) -> RuleStatus {
    let (mut dev, mut at) = (0.0, None);
    for (i, &x) in values.iter().enumerate() {
        let d = rel(x, values[0]).abs();
        if d > dev {
            (dev, at) = (d, Some(i + 1));
        }
    }
    RuleStatus {
        rule,
        holds: dev <= tol,
        max_rel_deviation: dev,
        worst_stage: at,
    }
}

/// Explains `plan` in the theory's terms; see the [module documentation](self).
///
/// Each rule is checked by its own small function, which returns its verdict (the rules it
/// decides, and its warnings): the per-stage table (`explain_stage`), then α·T
/// (`lr_times_t`), α·ν·β/(1−β) (`momentum_offset`), α ≤ (1−β)/L (`lr_below_smoothness`, with
/// a smoothness constant), β non-decreasing (`beta_non_decreasing`), α/b (`lr_over_batch`),
/// stability at h_max (`stability`), within-stage schedules (`within_stage_schedules`) and the
/// bound (`bound_verdict`). The h_max of a spectrum is [`Spectrum::h_max`].
///
/// # Errors
/// [`AdviceError::Invalid`] for an option out of range, [`AdviceError::Plan`] for an invalid
/// plan (naming the stage and field) or one that cannot be laid out for `n_train`. An unstable
/// stage is *not* an error: it is reported as a warning (and the bound is then skipped).
pub fn explain(plan: &Plan, opts: &ExplainOptions) -> Result<PlanExplanation, AdviceError> {
    check_options(opts)?;
    let stages = plan_stages(plan, opts.n_train)?;
    let h = opts.curvature;
    let h_max = opts
        .h_max
        .or_else(|| opts.spectrum.as_ref().and_then(Spectrum::h_max))
        .unwrap_or(h);
    let first_var = stage_var(&stages[0].hyper, h);
    let explained = stages
        .iter()
        .enumerate()
        .map(|(i, s)| explain_stage(i, s, h, h_max, first_var))
        .collect::<Result<Vec<_>, AdviceError>>()?;

    let tol = opts.rel_tol;
    let mut verdicts = vec![
        lr_times_t(&explained, tol),
        momentum_offset(&explained, tol),
    ];
    if let Some(l) = opts.smoothness {
        verdicts.push(lr_below_smoothness(&explained, l, tol));
    }
    verdicts.extend([
        beta_non_decreasing(&explained, tol),
        lr_over_batch(&explained, tol),
        stability(&explained, h_max),
        within_stage_schedules(&explained),
    ]);
    let (bound, bound_warnings) = bound_verdict(&stages, opts);
    let mut rules = Vec::new();
    let mut warnings = Vec::new();
    for v in verdicts {
        rules.extend(v.rules);
        warnings.extend(v.warnings);
    }
    warnings.extend(bound_warnings);
    warnings.sort_by_key(|w| w.stage.unwrap_or(0));

    let total_steps = stages.iter().map(|t| t.hyper.length_steps).sum();
    let total_epochs = stages.iter().map(|t| t.length_epochs).sum();
    Ok(PlanExplanation {
        name: plan.name.clone(),
        n_train: opts.n_train,
        curvature: h,
        h_max,
        total_steps,
        total_epochs,
        stages: explained,
        rules,
        bound,
        warnings,
    })
}

/// What one rule check found: the rules it decides and its warnings and notes.
#[derive(Debug, Default)]
struct Verdict {
    rules: Vec<RuleStatus>,
    warnings: Vec<Warning>,
}

impl Verdict {
    fn warning(&mut self, severity: Severity, kind: WarningKind, stage: Option<usize>, m: String) {
        self.warnings.push(Warning {
            severity,
            kind,
            stage,
            message: m,
        });
    }
}

/// One column of the stage table.
fn column(explained: &[StageExplanation], f: fn(&StageExplanation) -> f64) -> Vec<f64> {
    explained.iter().map(f).collect()
}

/// §2 condition 1 and the paper code's convention: α·T constant in iterations and in epochs.
/// A stage shorter than the rule in iterations is a warning, a longer one a note.
fn lr_times_t(explained: &[StageExplanation], tol: f64) -> Verdict {
    let steps = column(explained, |s| s.lr_times_steps);
    let epochs = column(explained, |s| s.lr_times_epochs);
    let by_steps = constant_status(Rule::LrTimesSteps, &steps, tol);
    let by_epochs = constant_status(Rule::LrTimesEpochs, &epochs, tol);
    let mut v = Verdict::default();
    let first = &explained[0];
    for s in &explained[1..] {
        let d = rel(s.lr_times_steps, steps[0]);
        if d < -tol {
            let needed = (steps[0] / s.lr_mean).ceil();
            v.warning(
                Severity::Warning,
                WarningKind::LrTimesSteps,
                Some(s.stage),
                format!(
                    "stage {}: α·T = {} (T = {} iterations) is {} of stage 1's {}: the stage is \
                     too short for its learning rate; §2 condition 1 (which counts iterations) \
                     needs α·T constant, i.e. about {} iterations ({} epochs) for {}α = {}",
                    s.stage,
                    fmt_num(s.lr_times_steps),
                    s.length_steps,
                    pct(d),
                    fmt_num(steps[0]),
                    fmt_num(needed),
                    fmt_num(needed / s.steps_per_epoch as f64),
                    if s.schedule.is_some() { "a mean " } else { "" },
                    fmt_num(s.lr_mean)
                ),
            );
        }
    }
    let grows = explained[1..]
        .iter()
        .any(|s| rel(s.lr_times_steps, steps[0]) > tol);
    if grows {
        let last = &explained[explained.len() - 1];
        v.warning(
            Severity::Note,
            WarningKind::LrTimesSteps,
            None,
            format!(
                "α·T in iterations grows from {} (stage 1) to {} (stage {}){}. §2 condition 1 \
                 counts iterations, so it is not met literally; stages longer than the rule \
                 only re-weight the averaged gradient-norm bound towards them (weights α_i·T_i, \
                 [D]) and do not weaken the convergence guarantee the way a too-short stage does{}",
                fmt_num(steps[0]),
                fmt_num(last.lr_times_steps),
                last.stage,
                if first.batch_size != last.batch_size {
                    " because the batch shrinks, so an epoch has more iterations"
                } else {
                    ""
                },
                if by_epochs.holds {
                    "; α·T is constant in epochs, the paper code's convention"
                } else {
                    ""
                }
            ),
        );
    }
    if !by_epochs.holds && by_steps.holds {
        v.warning(
            Severity::Note,
            WarningKind::LrTimesEpochs,
            by_epochs.worst_stage,
            format!(
                "α·T is constant in iterations (what §2 condition 1 needs) but not in epochs \
                 (largest deviation {:.0}% at stage {}), the paper code's convention",
                100.0 * by_epochs.max_rel_deviation,
                by_epochs.worst_stage.unwrap_or(1)
            ),
        );
    }
    v.rules = vec![by_steps, by_epochs];
    v
}

/// §2 condition 2: α·ν·β/(1−β), the z-sequence offset, constant.
fn momentum_offset(explained: &[StageExplanation], tol: f64) -> Verdict {
    let offset = column(explained, |s| s.momentum_offset);
    let mut v = Verdict {
        rules: vec![constant_status(Rule::MomentumOffset, &offset, tol)],
        ..Verdict::default()
    };
    for s in &explained[1..] {
        let d = rel(s.momentum_offset, offset[0]);
        if d.abs() > tol {
            v.warning(
                Severity::Warning,
                WarningKind::MomentumOffset,
                Some(s.stage),
                format!(
                    "stage {}: α·ν·β/(1−β) = {} differs from stage 1's {} by {}: the z-sequence \
                     z = θ − α·ν·β/(1−β)·d of §2 is discontinuous at this switch (condition 2); \
                     when α drops by a factor r, grow β/(1−β) (or ν) by r",
                    s.stage,
                    fmt_num(s.momentum_offset),
                    fmt_num(offset[0]),
                    pct(d)
                ),
            );
        }
    }
    v
}

/// §2 condition 3 for a known smoothness `l`: α ≤ (1−β)/L.
fn lr_below_smoothness(explained: &[StageExplanation], l: f64, tol: f64) -> Verdict {
    let mut v = Verdict::default();
    let (mut dev, mut at) = (0.0, None);
    for s in explained {
        let d = (s.lr_over_one_minus_beta * l - 1.0).max(0.0);
        if d > dev {
            (dev, at) = (d, Some(s.stage));
        }
        if d > tol && s.schedule.is_some() {
            v.warning(
                Severity::Warning,
                WarningKind::LrBelowSmoothness,
                Some(s.stage),
                format!(
                    "stage {}: its within-stage schedule reaches α/(1−β) = {}, above 1/L = {} \
                     by {}: §2 condition 3 (α ≤ c·(1−β)/L with c = 1) fails at some step; lower \
                     the schedule's peak α or β",
                    s.stage,
                    fmt_num(s.lr_over_one_minus_beta),
                    fmt_num(1.0 / l),
                    pct(d)
                ),
            );
        } else if d > tol {
            v.warning(
                Severity::Warning,
                WarningKind::LrBelowSmoothness,
                Some(s.stage),
                format!(
                    "stage {}: α = {} exceeds (1−β)/L = {} (L = {}) by {}: §2 condition 3 \
                     (α ≤ c·(1−β)/L, here with c = 1 since the theorem's constant is not \
                     available); lower α or β",
                    s.stage,
                    fmt_num(s.lr),
                    fmt_num((1.0 - s.beta) / l),
                    fmt_num(l),
                    pct(d)
                ),
            );
        }
    }
    v.rules.push(RuleStatus {
        rule: Rule::LrBelowSmoothness,
        holds: dev <= tol,
        max_rel_deviation: dev,
        worst_stage: at,
    });
    v
}

/// §2 condition 4: β non-decreasing.
fn beta_non_decreasing(explained: &[StageExplanation], tol: f64) -> Verdict {
    let mut v = Verdict::default();
    let (mut dev, mut at) = (0.0, None);
    for w in explained.windows(2) {
        let (prev, cur) = (&w[0], &w[1]);
        if cur.beta < prev.beta {
            let d = (prev.beta - cur.beta) / prev.beta;
            if d > dev {
                (dev, at) = (d, Some(cur.stage));
            }
            if d > tol {
                v.warning(
                    Severity::Warning,
                    WarningKind::BetaNonDecreasing,
                    Some(cur.stage),
                    format!(
                        "stage {}: β drops from {} to {}: §2 condition 4 needs β non-decreasing",
                        cur.stage,
                        fmt_num(prev.beta),
                        fmt_num(cur.beta)
                    ),
                );
            }
        }
    }
    v.rules.push(RuleStatus {
        rule: Rule::BetaNonDecreasing,
        holds: dev <= tol,
        max_rel_deviation: dev,
        worst_stage: at,
    });
    v
}

/// §3.4: α/b, the noise temperature, constant.
fn lr_over_batch(explained: &[StageExplanation], tol: f64) -> Verdict {
    let temp = column(explained, |s| s.lr_over_batch);
    let mut v = Verdict {
        rules: vec![constant_status(Rule::LrOverBatch, &temp, tol)],
        ..Verdict::default()
    };
    for s in &explained[1..] {
        let d = rel(s.lr_over_batch, temp[0]);
        if d.abs() > tol {
            v.warning(
                Severity::Warning,
                WarningKind::LrOverBatch,
                Some(s.stage),
                format!(
                    "stage {}: α/b = {} differs from stage 1's {} by {}: the stationary variance \
                     (∝ α/b, §3.2) {} and the bound's KL moves away from its stage-1 value \
                     (§3.4); shrink the batch together with α (b → b/r when α → α/r)",
                    s.stage,
                    fmt_num(s.lr_over_batch),
                    fmt_num(temp[0]),
                    pct(d),
                    if d < 0.0 { "shrinks" } else { "grows" }
                ),
            );
        }
    }
    v
}

/// §1: each stage stable at h_max (a warning if not, a note within 10% of the edge).
fn stability(explained: &[StageExplanation], h_max: f64) -> Verdict {
    let mut v = Verdict::default();
    for s in explained {
        if !s.stable && s.schedule.is_some() {
            v.warning(
                Severity::Warning,
                WarningKind::Unstable,
                Some(s.stage),
                format!(
                    "stage {} is unstable for curvature {}: its within-stage schedule reaches \
                     α = {} ≥ α_max = {} at step {} of the stage (QHM diverges along that \
                     direction, §1; the mean α {} does not matter, the largest does); lower the \
                     schedule's peak α, or raise ν·β",
                    s.stage,
                    fmt_num(h_max),
                    fmt_num(s.lr_at_edge),
                    fmt_num(s.lr_max),
                    s.edge_step,
                    fmt_num(s.lr_mean)
                ),
            );
        } else if !s.stable {
            v.warning(
                Severity::Warning,
                WarningKind::Unstable,
                Some(s.stage),
                format!(
                    "stage {} is unstable for curvature {}: α = {} ≥ α_max = {} (QHM diverges \
                     along that direction, §1); lower α, or raise ν·β",
                    s.stage,
                    fmt_num(h_max),
                    fmt_num(s.lr),
                    fmt_num(s.lr_max)
                ),
            );
        } else if s.stability_margin < EDGE_MARGIN {
            v.warning(
                Severity::Note,
                WarningKind::NearStabilityEdge,
                Some(s.stage),
                format!(
                    "stage {}: α = {} is within {:.0}% of α_max = {} at curvature {}: the \
                     stationary variance is inflated by 1/margin = {}",
                    s.stage,
                    fmt_num(s.lr_at_edge),
                    100.0 * s.stability_margin,
                    fmt_num(s.lr_max),
                    fmt_num(h_max),
                    fmt_num(1.0 / s.stability_margin)
                ),
            );
        }
    }
    v
}

/// A note for each stage with a within-stage schedule: how the theory's numbers account for it.
fn within_stage_schedules(explained: &[StageExplanation]) -> Verdict {
    let mut v = Verdict::default();
    for s in explained {
        if let Some(sched) = &s.schedule {
            v.warning(
                Severity::Note,
                WarningKind::WithinStageSchedule,
                Some(s.stage),
                format!(
                    "stage {} has a within-stage schedule ({sched}): α·T is the sum of α over \
                     its {} steps ({}; mean α {}, largest {}), α/b and α·ν·β/(1−β) are means \
                     over the steps, stability is that of its worst step (step {}), and the \
                     bound proxy follows α step by step; only κ, ψ and V/V₁ use the base \
                     α = {}, β = {}",
                    s.stage,
                    s.length_steps,
                    fmt_num(s.lr_times_steps),
                    fmt_num(s.lr_mean),
                    fmt_num(s.lr_peak),
                    s.edge_step,
                    fmt_num(s.lr),
                    fmt_num(s.beta)
                ),
            );
        }
    }
    v
}

/// §3.3: the bound proxy when a spectrum is given, or a warning saying why it is missing.
fn bound_verdict(
    stages: &[TheoryStage],
    opts: &ExplainOptions,
) -> (Option<BoundSummary>, Vec<Warning>) {
    let Some(spec) = &opts.spectrum else {
        return (None, Vec::new());
    };
    match bound_summary(stages, spec, opts) {
        Ok(b) => (Some(b), Vec::new()),
        Err(e) => (
            None,
            vec![Warning {
                severity: Severity::Warning,
                kind: WarningKind::BoundUnavailable,
                stage: None,
                message: format!("bound proxy not computed: {e}"),
            }],
        ),
    }
}

/// Stationary variance with unit per-example noise (c = 1) at curvature h, `None` if unstable.
fn stage_var(s: &StageHyper, h: f64) -> Option<f64> {
    stationary_variance(&s.qhm(), h, 1.0 / s.batch_size).ok()
}

fn explain_stage(
    i: usize,
    s: &TheoryStage,
    h: f64,
    h_max: f64,
    first_var: Option<f64>,
) -> Result<StageExplanation, AdviceError> {
    let x = &s.hyper;
    x.validate(i)?;
    let p = x.qhm();
    let variance_rel = match (stage_var(x, h), first_var) {
        (Some(v), Some(v1)) if v1 > 0.0 => Some(v / v1),
        _ => None,
    };
    // The step of the smallest stability margin, over the runs of constant (α, β) (one run,
    // the stage itself, without a schedule). α = 0 runs are not pieces: they are stable.
    let base_max = divergence_threshold(x.beta, x.nu, h_max)?;
    let mut edge = (f64::NEG_INFINITY, 0u64, 0.0, base_max, p);
    let mut offset_sum = 0.0;
    let mut lr_over_one_minus_beta = 0.0f64;
    let mut step = 0u64;
    for piece in &s.pieces {
        let lr_max = divergence_threshold(piece.beta, piece.nu, h_max)?;
        let ratio = piece.lr / lr_max;
        if ratio > edge.0 {
            edge = (ratio, step, piece.lr, lr_max, piece.qhm());
        }
        offset_sum +=
            piece.lr * piece.nu * piece.beta / (1.0 - piece.beta) * piece.length_steps as f64;
        lr_over_one_minus_beta = lr_over_one_minus_beta.max(piece.lr / (1.0 - piece.beta));
        step += piece.length_steps;
    }
    let (_, edge_step, lr_at_edge, lr_max, edge_p) = edge;
    let scheduled = s.schedule.is_some();
    let t = x.length_steps as f64;
    let lr_mean = s.lr_mean();
    Ok(StageExplanation {
        stage: i + 1,
        lr: x.lr,
        beta: x.beta,
        nu: x.nu,
        batch_size: x.batch_size as u64,
        unnormalized_lr: x.lr * (1.0 - x.beta),
        length_epochs: s.length_epochs,
        length_steps: x.length_steps,
        steps_per_epoch: s.steps_per_epoch,
        schedule: s.schedule.clone(),
        lr_mean,
        lr_peak: s.lr_peak,
        lr_times_epochs: if scheduled {
            s.lr_sum / s.steps_per_epoch as f64
        } else {
            x.lr * s.length_epochs
        },
        lr_times_steps: s.lr_sum,
        lr_over_batch: lr_mean / x.batch_size,
        momentum_offset: if scheduled {
            offset_sum / t
        } else {
            x.lr * x.nu * x.beta / (1.0 - x.beta)
        },
        lr_over_one_minus_beta: if scheduled {
            lr_over_one_minus_beta
        } else {
            x.lr / (1.0 - x.beta)
        },
        kappa: kappa(&p, h)?,
        psi: effective_temperature(&p, h)?,
        variance_rel,
        lr_max,
        lr_at_edge,
        edge_step,
        stability_margin: 1.0 - lr_at_edge / lr_max,
        stable: lr_at_edge < lr_max,
        rate_at_h_max: convergence_rate(&edge_p, h_max)?,
    })
}

fn bound_summary(
    stages: &[TheoryStage],
    spec: &Spectrum,
    opts: &ExplainOptions,
) -> Result<BoundSummary, TheoryError> {
    let pieces: Vec<Vec<StageHyper>> = stages.iter().map(|s| s.pieces.clone()).collect();
    let bo = BoundOptions {
        prior_var: opts.prior_var,
        delta: opts.delta,
        n_samples: opts.n_train as f64,
        carry_over: opts.carry_over,
        ..BoundOptions::default()
    };
    let by_stage = plan_bound_pieces(&pieces, spec, &bo)?;
    let full = *by_stage
        .last()
        .ok_or(TheoryError::Empty { field: "stages" })?;
    Ok(BoundSummary {
        dim: spec.dim(),
        prior_var: bo.prior_var,
        delta: bo.delta,
        n_samples: bo.n_samples,
        kl: full.kl,
        gap: full.gap,
        risk_inflation: full.risk_inflation,
        kl_after_stage: by_stage.iter().map(|b| b.kl).collect(),
        gap_after_stage: by_stage.iter().map(|b| b.gap).collect(),
    })
}

/// Lays out rows as right-aligned columns under `headers`.
pub(crate) fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .chain(std::iter::once(headers[c].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{}{c}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = String::new();
    out += &line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out += &line(widths.iter().map(|&w| "-".repeat(w)).collect());
    out.push('\n');
    for r in rows {
        out += &line(r.clone());
        out.push('\n');
    }
    out
}

impl PlanExplanation {
    /// A plain-text report: the stage tables, the rules, the bound and the warnings.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(n) = &self.name {
            out += &format!("plan: {n}\n");
        }
        out += &format!(
            "{} stages, {} epochs, {} iterations for n_train = {}\n\n",
            self.stages.len(),
            fmt_num(self.total_epochs),
            self.total_steps,
            self.n_train
        );
        let rows: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| {
                vec![
                    s.stage.to_string(),
                    fmt_num(s.length_epochs),
                    s.length_steps.to_string(),
                    fmt_num(s.lr),
                    fmt_num(s.beta),
                    fmt_num(s.nu),
                    s.batch_size.to_string(),
                    fmt_num(s.unnormalized_lr),
                    fmt_num(s.lr_times_epochs),
                    fmt_num(s.lr_times_steps),
                    fmt_num(s.lr_over_batch),
                    fmt_num(s.momentum_offset),
                ]
            })
            .collect();
        out += &render_table(
            &[
                "stage",
                "epochs",
                "steps",
                "α",
                "β",
                "ν",
                "b",
                "η=α(1−β)",
                "α·T(ep)",
                "α·T(it)",
                "α/b",
                "α·ν·β/(1−β)",
            ],
            &rows,
        );
        out += &format!(
            "\nκ, ψ, V/V₁ at curvature h = {}; α_max, margin, rate at h_max = {}\n",
            fmt_num(self.curvature),
            fmt_num(self.h_max)
        );
        let rows: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| {
                vec![
                    s.stage.to_string(),
                    fmt_num(s.kappa),
                    fmt_num(s.psi),
                    s.variance_rel.map_or_else(|| "unstable".into(), fmt_num),
                    fmt_num(s.lr_max),
                    fmt_num(s.stability_margin),
                    fmt_num(s.rate_at_h_max),
                    if s.stable { "yes" } else { "NO" }.into(),
                ]
            })
            .collect();
        out += &render_table(
            &[
                "stage", "κ", "ψ", "V/V₁", "α_max", "margin", "rate", "stable",
            ],
            &rows,
        );
        out += "\nrules (§ numbers refer to docs/theory.md):\n";
        for r in &self.rules {
            let status = if r.holds { "ok    " } else { "BROKEN" };
            let dev = match (r.holds, r.worst_stage) {
                (false, Some(k)) => format!(
                    " (largest deviation {:.0}% at stage {k})",
                    100.0 * r.max_rel_deviation
                ),
                _ => String::new(),
            };
            out += &format!("  [{status}] {}{dev}\n", r.rule.describe());
        }
        if let Some(b) = &self.bound {
            out += &format!(
                "\nbound proxy (§3.3; d = {}, λ₀ = {}, δ = {}, N = {}): KL = {}, gap = {}, \
                 risk inflation = {}\n  KL after each stage: {}\n",
                b.dim,
                fmt_num(b.prior_var),
                fmt_num(b.delta),
                fmt_num(b.n_samples),
                fmt_num(b.kl),
                fmt_num(b.gap),
                fmt_num(b.risk_inflation),
                b.kl_after_stage
                    .iter()
                    .map(|x| fmt_num(*x))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let (warn, notes): (Vec<&Warning>, Vec<&Warning>) = self
            .warnings
            .iter()
            .partition(|w| w.severity == Severity::Warning);
        if warn.is_empty() {
            out += "\nno warnings\n";
        } else {
            out += "\nwarnings:\n";
            for w in warn {
                out += &format!("  - {}\n", w.message);
            }
        }
        if !notes.is_empty() {
            out += "notes:\n";
            for w in notes {
                out += &format!("  - {}\n", w.message);
            }
        }
        out
    }
}
