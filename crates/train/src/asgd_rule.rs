//! The staleness rule on a model: the decision and the adaptation of
//! [`stagewise_core::theory::staleness_rule`], with h_max estimated on the initial model when
//! it is not given. `stagewise asgd`, `ps serve` and `ps worker` call [`apply_asgd_rule`] the
//! same way, so that one set of options gives every process the same plan.
//!
//! ```no_run
//! use stagewise_core::optim::OptimizerKind;
//! use stagewise_core::schedule::{Recipe, RecipeParams};
//! use stagewise_core::theory::{AsgdRule, AsgdRun, AsgdUpdate, RuleOutcome};
//! use stagewise_train::asgd_rule::{apply_asgd_rule, InitialModel};
//! use stagewise_train::model::ModelKind;
//! use stagewise_train::{DataConfig, DatasetKind};
//!
//! let data = DataConfig { dataset: DatasetKind::Synthetic, ..DataConfig::default() };
//! let splits = data.load(0)?;
//! let model = InitialModel { kind: ModelKind::Mlp, seed: 0, train: &splits.train, data: &data };
//! let run = AsgdRun { workers: 4, update: AsgdUpdate::PerPush, optimizer: OptimizerKind::Qhm };
//! let params = RecipeParams::default();
//! let outcome = apply_asgd_rule(
//!     AsgdRule::Theory, Some((Recipe::Stagewise, &params)), &run, None, &model, || {},
//! )?;
//! if let RuleOutcome::Applied(a) = outcome {
//!     println!("h_max {} at initialization: b0 {} → {}", a.h_max, a.before.batch, a.params.batch);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use stagewise_core::schedule::{Recipe, RecipeParams};
use stagewise_core::theory::{
    adapt_recipe, recipe_to_adapt, AdviceError, AsgdRule, AsgdRun, HMaxSource, RuleOutcome,
};
use stagewise_data::Dataset;

use crate::asgd::initial_params;
use crate::data::DataConfig;
use crate::model::ModelKind;
use crate::spectrum::{estimate_spectrum, ModelPoint, SpectrumConfig};
use crate::trainer::TrainError;

/// Errors of [`apply_asgd_rule`].
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The spectrum estimate of the initial model failed.
    #[error("estimating h_max of the initial model")]
    Estimate(#[source] TrainError),
    /// The estimate's largest curvature is not a positive number.
    #[error("the initial model's largest curvature is {0}, not a positive number")]
    NotPositive(f64),
    /// The rule refused the recipe (see [`AdviceError::hints`] for what helps).
    #[error(transparent)]
    Adapt(#[from] AdviceError),
}

/// The model whose initialization gives h_max: its architecture, seed and training data.
#[derive(Debug, Clone, Copy)]
pub struct InitialModel<'a> {
    /// The architecture.
    pub kind: ModelKind,
    /// The seed of the initial parameters (and of the estimator).
    pub seed: u64,
    /// The training set (the whole set, not a worker's shard, so that every process agrees).
    pub train: &'a Dataset,
    /// Its normalization (augmentation is turned off for the estimate).
    pub data: &'a DataConfig,
}

/// Estimator settings for h_max at initialization: one Lanczos pair from 12 Gauss-Newton
/// products on the estimator's default 2048 examples (so `plan spectrum MODEL --lanczos-steps
/// 12` gives the same h_max); no trace and a token noise pass (neither is used).
pub fn h_max_config(seed: u64) -> SpectrumConfig {
    SpectrumConfig {
        top: 1,
        lanczos_steps: 12,
        trace_probes: 0,
        noise_batch: 16,
        noise_batches: 2,
        seed,
        ..SpectrumConfig::default()
    }
}

/// The largest Gauss-Newton eigenvalue of `model` at its initialization (seconds for the mlp,
/// about two minutes for the cnn on 2 cores).
///
/// # Errors
/// [`RuleError::Estimate`] when the estimate fails, [`RuleError::NotPositive`] when its largest
/// eigenvalue is not a positive number.
pub fn initial_h_max(model: &InitialModel<'_>) -> Result<f64, RuleError> {
    let point = ModelPoint::new(model.kind, initial_params(model.kind, model.seed), vec![])
        .map_err(RuleError::Estimate)?;
    let mut data = model.data.clone();
    data.augment = false;
    let est = estimate_spectrum(&point, model.train, &data, &h_max_config(model.seed))
        .map_err(RuleError::Estimate)?;
    let h = est.h.first().copied().unwrap_or(f64::NAN);
    if h.is_finite() && h > 0.0 {
        Ok(h)
    } else {
        Err(RuleError::NotPositive(h))
    }
}

/// Applies `rule` to a run's plan: skipped (with the reason) for a plan file (`recipe` is
/// `None`) and for runs the rule does not cover ([`recipe_to_adapt`]); otherwise the recipe
/// adapted with `h_max`, or with h_max estimated on `model` at its initialization, after
/// calling `before_estimate` (to tell the user it takes a while).
///
/// # Errors
/// [`RuleError`]: the estimate failed, or the rule refused the recipe.
pub fn apply_asgd_rule(
    rule: AsgdRule,
    recipe: Option<(Recipe, &RecipeParams)>,
    run: &AsgdRun,
    h_max: Option<f64>,
    model: &InitialModel<'_>,
    before_estimate: impl FnOnce(),
) -> Result<RuleOutcome, RuleError> {
    let (recipe, params) = match recipe_to_adapt(rule, recipe, run) {
        Ok(r) => r,
        Err(reason) => return Ok(RuleOutcome::Skipped { reason }),
    };
    let (h_max, source) = match h_max {
        Some(h) => (h, HMaxSource::Given),
        None => {
            before_estimate();
            (initial_h_max(model)?, HMaxSource::InitialModel)
        }
    };
    Ok(RuleOutcome::Applied(adapt_recipe(
        recipe,
        params,
        run.workers,
        h_max,
        source,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatasetKind;
    use stagewise_core::optim::OptimizerKind;
    use stagewise_core::theory::{AsgdUpdate, SkipReason};

    #[test]
    fn skipped_runs_estimate_nothing_and_given_h_max_is_used_as_is() {
        let data = DataConfig {
            dataset: DatasetKind::Synthetic,
            train_subset: Some(200),
            test_subset: Some(100),
            ..DataConfig::default()
        };
        let splits = data.load(0).unwrap();
        let model = InitialModel {
            kind: ModelKind::Mlp,
            seed: 0,
            train: &splits.train,
            data: &data,
        };
        let params = RecipeParams::default();
        let recipe = Some((Recipe::Stagewise, &params));
        let run = AsgdRun {
            workers: 1,
            update: AsgdUpdate::PerPush,
            optimizer: OptimizerKind::Qhm,
        };
        let never = || panic!("nothing to estimate");
        let o = apply_asgd_rule(AsgdRule::Theory, recipe, &run, None, &model, never).unwrap();
        assert_eq!(
            o,
            RuleOutcome::Skipped {
                reason: SkipReason::OneWorker
            }
        );
        let run = AsgdRun { workers: 4, ..run };
        let o = apply_asgd_rule(AsgdRule::Theory, recipe, &run, Some(2.97), &model, never);
        let RuleOutcome::Applied(a) = o.unwrap() else {
            panic!("the rule applies to 4 per-push QHM workers");
        };
        assert_eq!((a.h_max, a.h_max_source), (2.97, HMaxSource::Given));
        assert_eq!(a.params.batch, 38);
        // The same as the core rule on its own.
        let core = adapt_recipe(Recipe::Stagewise, &params, 4, 2.97, HMaxSource::Given).unwrap();
        assert_eq!(a, core);
    }
}
