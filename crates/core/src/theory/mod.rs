//! Theory calculators: QHM on quadratics, plan invariants, PAC-Bayes proxy, ASGD.
//!
//! Every formula carries the tag of `docs/theory.md`: **\[Q\]** quoted, **\[C\]** read from code,
//! **\[D\]** derived for this project, **\[R\]** standard literature result. Each \[D\]/\[R\] formula
//! used here is checked against a seeded Monte Carlo simulation on noisy quadratics in the
//! crate's `tests/theory_*.rs`.
//!
//! - [`qhm`]: exact stationary variance of QHM on a quadratic, effective temperature ψ,
//!   characteristic roots, convergence rate, divergence threshold (docs/theory.md §1, §3.2);
//! - [`invariants`]: per-stage α·T, α/b, α·ν·β/(1−β) and the convergence conditions of §2;
//! - [`bound`]: the PAC-Bayes bound proxy of a multistage plan (§3.3–3.4);
//! - [`asgd`]: staleness stability, variance under delay, implicit momentum, lr advice (§4);
//! - [`estimate`]: a spectrum estimated from a model (Lanczos on Hessian-vector products,
//!   Hutchinson's trace, minibatch gradient noise);
//! - [`adapter`], [`explain`](mod@explain), [`recommend`](mod@recommend), [`staleness_rule`],
//!   [`spectrum_input`]: the bridges to the rest of the crate: a
//!   [`schedule::Plan`](crate::schedule::Plan) as the theory's stage list, a plan's explanation
//!   with warnings, a stagewise plan recommended from a familiar optimizer setting, a recipe
//!   adapted to M asynchronous workers, and spectra read from a specification or a file;
//! - [`advice`]: the typed reasons, warnings and hints of `recommend` and the staleness rule
//!   ([`Note`]: a [`Topic`], plain words, [`Hint`]s that each front end names its own way).
//!
//! The calculators take plain numbers and their own small structs ([`StageHyper`],
//! [`Spectrum`]) and do not depend on `optim` or `schedule`; only the bridges do. No function
//! panics on user input: invalid values give a [`TheoryError`] (or, in the bridges, an
//! [`AdviceError`]) naming the field and its allowed range.
//!
//! ```
//! use stagewise_core::theory::{divergence_threshold, stationary_variance, QhmParams};
//! let p = QhmParams::new(0.5, 0.99, 0.7)?;
//! let v = stationary_variance(&p, 1.0, 1.0)?; // h = 1, σ² = 1
//! assert!((v - 0.0940).abs() < 1e-4);
//! assert!(p.lr < divergence_threshold(p.beta, p.nu, 1.0)?);
//! # Ok::<(), stagewise_core::theory::TheoryError>(())
//! ```

pub mod adapter;
pub mod advice;
pub mod asgd;
pub mod bound;
mod error;
pub mod estimate;
pub mod explain;
pub mod invariants;
pub mod qhm;
pub mod recommend;
pub mod spectrum_input;
pub mod staleness_rule;

pub use adapter::{plan_stage_hypers, plan_stages, TheoryStage};
pub use advice::{Hint, Note, Topic};
pub use asgd::{
    compose_momentum, delayed_qhm_stability_limit, delayed_variance_exact,
    delayed_variance_first_order, delayed_variance_sde, delayed_variance_second_order,
    explicit_momentum_for_target, implicit_momentum, max_stable_lr_delayed, recommend_lr,
    staleness_stability_limit, staleness_stability_limit_approx, AsgdLrOptions, AsgdUpdate,
    LrRecommendation, MomentumMatch, Staleness, MAX_WORKERS,
};
pub use bound::{
    final_variance, gaussian_kl, pac_bayes_gap, plan_bound, plan_bound_pieces, risk_inflation,
    stage_variance, variances_after_stages, BoundOptions, BoundReport, CarryOver, InitialState,
    Spectrum, StageBound,
};
pub use error::{Result, TheoryError};
pub use explain::{
    explain, AdviceError, BoundSummary, ExplainOptions, PlanExplanation, Rule, RuleStatus,
    Severity, StageExplanation, Warning, WarningKind,
};
pub use invariants::{
    check_plan, stage_invariants, CheckOptions, Condition, ConditionReport, PlanCheck, StageHyper,
    StageInvariants,
};
pub use qhm::{
    characteristic_coefficients, characteristic_roots, convergence_rate, convergence_rate_spectrum,
    divergence_threshold, effective_temperature, kappa, propagate_covariance, stability_factor,
    stability_margin, stationary_covariance, stationary_variance, stationary_variance_psi,
    stationary_variance_series, transition_matrix, Mat2, QhmParams, Roots,
};
pub use recommend::{
    recommend, round_significant, AsgdAdvice, AsgdBatch, RecommendOptions, Recommendation, Setting,
    RECOMMEND_DIGITS,
};
pub use spectrum_input::{
    load_spectrum, parse_spectrum, spectrum_from_csv, spectrum_from_json, MAX_ISOTROPIC_DIM,
};
pub use staleness_rule::{
    adapt_recipe, recipe_to_adapt, AdaptedRecipe, AsgdRule, AsgdRun, HMaxSource, RuleOutcome,
    SkipReason,
};
