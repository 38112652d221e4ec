//! The staleness rule: a recipe tuned for one worker, adapted to M asynchronous workers
//! (docs/theory.md §4.2), the same rule as [`recommend`] with `workers = Some(M)`:
//!
//! - α0 is capped at ½ of the delayed-SGD stability limit 2 sin(π/(2(2τ+1)))/h_max for
//!   τ = M − 1;
//! - b0 falls with α0 so that α/b, the noise temperature, stays the recipe's
//!   ([`AsgdBatch::KeepRatio`]): an epoch is the same SDE time, in more, smaller updates;
//! - β0 is lowered so that it and asynchrony's implicit momentum 1 − 1/M give the recipe's β0.
//!
//! Only the recipe's α0, β0 and b0 change; its shape (stages, drops, epochs) is kept.
//!
//! [`recipe_to_adapt`] decides whether the rule applies to a run ([`SkipReason`] says why not);
//! [`adapt_recipe`] applies it for a known h_max. Estimating h_max on the initial model needs a
//! model, so that step lives in `stagewise-train` (`stagewise_train::asgd_rule`), which returns
//! the same [`RuleOutcome`].
//!
//! ```
//! use stagewise_core::schedule::{Recipe, RecipeParams};
//! use stagewise_core::theory::{adapt_recipe, HMaxSource};
//! let p = RecipeParams::default(); // α0 0.5, β0 0.9, ν 0.7, b0 256
//! let a = adapt_recipe(Recipe::Stagewise, &p, 4, 2.97, HMaxSource::Given).unwrap();
//! assert_eq!(a.params.batch, 38); // ⌊256 · 0.0749/0.5⌋
//! assert!((a.params.momentum - 0.6).abs() < 1e-12); // 1 − β = 4 · (1 − 0.9)
//! ```

use serde::{Deserialize, Serialize};

use super::advice::Note;
use super::asgd::AsgdUpdate;
use super::explain::AdviceError;
use super::recommend::{recommend, AsgdBatch, RecommendOptions, Setting};
use crate::optim::OptimizerKind;
use crate::schedule::{Recipe, RecipeParams};

/// Whether a recipe is adapted to asynchronous workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsgdRule {
    /// docs/theory.md §4.2: α0 capped for staleness, b0 lowered with it, β0 lowered (default).
    #[default]
    Theory,
    /// The recipe's α0, β0 and b0 as given (they may diverge with stale gradients).
    None,
}

/// How a run applies its workers' gradients: what decides whether the rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsgdRun {
    /// Number of workers M ≥ 1.
    pub workers: u32,
    /// Per-push (asynchronous) or averaged (synchronous) updates.
    pub update: AsgdUpdate,
    /// The server's optimizer; the rule applies to QHM, which reads the plan as (α, β, ν).
    pub optimizer: OptimizerKind,
}

/// Why the rule was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The rule was turned off ([`AsgdRule::None`]).
    Disabled,
    /// The plan comes from a file, which is used as given.
    PlanFile,
    /// One worker sees no staleness.
    OneWorker,
    /// Averaged (synchronous) updates see no staleness.
    Averaged,
    /// The server's optimizer is not QHM.
    NotQhm,
}

impl SkipReason {
    /// Why, in words.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Disabled => "the rule is turned off",
            SkipReason::PlanFile => "a plan file is used as given",
            SkipReason::OneWorker => "one worker has no staleness",
            SkipReason::Averaged => "the sync policy averages gradients without staleness",
            SkipReason::NotQhm => "it is stated for QHM, and the server's optimizer is not QHM",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Where the h_max of the cap comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HMaxSource {
    /// Given by the user.
    Given,
    /// Estimated on the model at its initialization.
    InitialModel,
}

/// A recipe adapted to M asynchronous workers, with the reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptedRecipe {
    /// The recipe.
    pub recipe: Recipe,
    /// Its parameters as given.
    pub before: RecipeParams,
    /// The parameters to build the plan with (α0, β0 and b0 changed).
    pub params: RecipeParams,
    /// Number of workers M.
    pub workers: u32,
    /// The largest curvature the cap used.
    pub h_max: f64,
    /// Where h_max comes from.
    pub h_max_source: HMaxSource,
    /// Why each number changed (the asynchronous-SGD reasons of [`recommend`]).
    pub reasons: Vec<Note>,
    /// Things to check.
    pub warnings: Vec<Note>,
}

/// What the rule did to a run's plan.
// Built once per run and matched by value in train and the CLI: boxing the adapted recipe
// (which grew with the warm-up and decay fields of RecipeParams) would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    /// The recipe was adapted.
    Applied(AdaptedRecipe),
    /// The plan is used as given.
    Skipped {
        /// Why.
        reason: SkipReason,
    },
}

/// The recipe the rule adapts for `run`, or why it does not apply: turned off, a plan file
/// (`recipe` is `None`), one worker, averaged updates or an optimizer other than QHM, checked in
/// that order.
///
/// ```
/// use stagewise_core::optim::OptimizerKind;
/// use stagewise_core::schedule::{Recipe, RecipeParams};
/// use stagewise_core::theory::{recipe_to_adapt, AsgdRule, AsgdRun, AsgdUpdate, SkipReason};
/// let p = RecipeParams::default();
/// let run = AsgdRun { workers: 4, update: AsgdUpdate::PerPush, optimizer: OptimizerKind::Qhm };
/// assert!(recipe_to_adapt(AsgdRule::Theory, Some((Recipe::Stagewise, &p)), &run).is_ok());
/// let one = AsgdRun { workers: 1, ..run };
/// let skip = recipe_to_adapt(AsgdRule::Theory, Some((Recipe::Stagewise, &p)), &one);
/// assert_eq!(skip.unwrap_err(), SkipReason::OneWorker);
/// assert_eq!(recipe_to_adapt(AsgdRule::Theory, None, &run).unwrap_err(), SkipReason::PlanFile);
/// ```
pub fn recipe_to_adapt<'a>(
    rule: AsgdRule,
    recipe: Option<(Recipe, &'a RecipeParams)>,
    run: &AsgdRun,
) -> Result<(Recipe, &'a RecipeParams), SkipReason> {
    if rule == AsgdRule::None {
        return Err(SkipReason::Disabled);
    }
    let Some(recipe) = recipe else {
        return Err(SkipReason::PlanFile);
    };
    if run.workers < 2 {
        return Err(SkipReason::OneWorker);
    }
    if run.update == AsgdUpdate::Averaged {
        return Err(SkipReason::Averaged);
    }
    if run.optimizer != OptimizerKind::Qhm {
        return Err(SkipReason::NotQhm);
    }
    Ok(recipe)
}

/// Applies docs/theory.md §4.2 to `params` for `workers` per-push workers and curvature
/// `h_max`: [`recommend`] from the recipe's (α0, β0, ν) as a QHM setting, with its plan shape
/// (stagewise halves b per stage; the other recipes keep b0 in every stage, so they count as
/// one stage here), [`AsgdBatch::KeepRatio`] and the default cap fraction ½.
///
/// # Errors
/// [`AdviceError::Plan`] for invalid recipe parameters, [`AdviceError::Invalid`] for `workers`
/// or `h_max` out of range, [`AdviceError::LoweredBatchTooSmall`] when b0 falls below what the
/// recipe's stages can halve (with hints).
pub fn adapt_recipe(
    recipe: Recipe,
    params: &RecipeParams,
    workers: u32,
    h_max: f64,
    h_max_source: HMaxSource,
) -> Result<AdaptedRecipe, AdviceError> {
    // The recipe's own check first, so that errors name its parameters (momentum, not beta).
    params.build(recipe)?;
    let mut o = RecommendOptions::new(Setting::Qhm {
        lr: params.lr,
        beta: params.momentum,
        nu: params.nu,
    });
    o.batch = params.batch;
    o.epochs = params.epochs;
    o.stages = if recipe == Recipe::Stagewise {
        params.stages
    } else {
        1
    };
    o.drop = params.drop;
    o.weight_decay = params.weight_decay;
    o.workers = Some(workers);
    o.h_max = Some(h_max);
    o.update = AsgdUpdate::PerPush;
    o.asgd_batch = AsgdBatch::KeepRatio;
    let rec = recommend(&o)?;
    Ok(AdaptedRecipe {
        recipe,
        before: params.clone(),
        params: RecipeParams {
            lr: rec.initial.lr,
            momentum: rec.initial.beta,
            batch: rec.recipe.batch,
            ..params.clone()
        },
        workers,
        h_max,
        h_max_source,
        reasons: rec
            .reasons
            .into_iter()
            .filter(|r| r.topic.is_asgd())
            .collect(),
        warnings: rec.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::{Hint, Topic};

    fn params() -> RecipeParams {
        RecipeParams {
            lr: 0.5,
            momentum: 0.9,
            nu: 0.7,
            batch: 256,
            epochs: 6,
            stages: 3,
            drop: 2.0,
            weight_decay: 5e-4,
            ..RecipeParams::default()
        }
    }

    #[test]
    fn the_rule_caps_alpha_keeps_alpha_over_b_and_lowers_beta() {
        let p = params();
        let a = adapt_recipe(Recipe::Stagewise, &p, 4, 2.97, HMaxSource::Given).unwrap();
        // ½ · 2 sin(π/14) / 2.97 = 0.07492 ⇒ b0 = ⌊256 · 0.07492 / 0.5⌋ = 38, α0 = 0.5 · 38/256.
        assert_eq!(a.params.batch, 38);
        assert!((a.params.lr - 0.5 * 38.0 / 256.0).abs() < 1e-15);
        assert!((a.params.momentum - 0.6).abs() < 1e-12); // 1 − β = 4 · (1 − 0.9)
        assert_eq!((a.params.epochs, a.params.stages), (6, 3));
        assert_eq!((a.before.clone(), a.workers, a.h_max), (p.clone(), 4, 2.97));
        // Only the asynchronous-SGD reasons, typed: no conversion or recipe reasons.
        let topics: Vec<Topic> = a.reasons.iter().map(|r| r.topic).collect();
        assert_eq!(
            topics,
            [
                Topic::Asynchrony,
                Topic::LearningRate,
                Topic::BatchSize,
                Topic::Momentum,
                Topic::StabilityCheck
            ]
        );
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        // A cosine recipe keeps b0 in its one stage, so b0 = 38 needs no halving.
        let c = adapt_recipe(Recipe::Cosine, &p, 4, 2.97, HMaxSource::Given).unwrap();
        assert_eq!((c.params.batch, c.params.stages), (38, 3));
        // 64 workers at a large curvature: b0 would fall below what 3 halvings allow.
        let e = adapt_recipe(Recipe::Stagewise, &p, 64, 30.0, HMaxSource::Given).unwrap_err();
        assert!(matches!(
            e,
            AdviceError::LoweredBatchTooSmall { requested: 256, .. }
        ));
        assert!(e.hints().contains(&Hint::FewerStages { current: 3 }), "{e}");
        // Recipe errors name the recipe's parameters.
        let bad = RecipeParams {
            momentum: 1.5,
            ..params()
        };
        let e = adapt_recipe(Recipe::Stagewise, &bad, 4, 2.97, HMaxSource::Given).unwrap_err();
        assert!(e.to_string().contains("'momentum'"), "{e}");
    }

    #[test]
    fn the_rule_applies_to_recipes_of_per_push_qhm_runs_with_several_workers() {
        let p = params();
        let r = Some((Recipe::Stagewise, &p));
        let run = AsgdRun {
            workers: 4,
            update: AsgdUpdate::PerPush,
            optimizer: OptimizerKind::Qhm,
        };
        assert!(recipe_to_adapt(AsgdRule::Theory, r, &run).is_ok());
        let skip = |rule, recipe, run: AsgdRun| recipe_to_adapt(rule, recipe, &run).unwrap_err();
        assert_eq!(skip(AsgdRule::None, r, run), SkipReason::Disabled);
        assert_eq!(skip(AsgdRule::Theory, None, run), SkipReason::PlanFile);
        let one = AsgdRun { workers: 1, ..run };
        assert_eq!(skip(AsgdRule::Theory, r, one), SkipReason::OneWorker);
        let sync = AsgdRun {
            update: AsgdUpdate::Averaged,
            ..run
        };
        assert_eq!(skip(AsgdRule::Theory, r, sync), SkipReason::Averaged);
        let sgd = AsgdRun {
            optimizer: OptimizerKind::Sgd,
            ..run
        };
        assert_eq!(skip(AsgdRule::Theory, r, sgd), SkipReason::NotQhm);
        assert_eq!(
            SkipReason::PlanFile.to_string(),
            "a plan file is used as given"
        );
    }
}
