//! From a [`Plan`] to the theory's stage list (docs/theory.md §2: stages of constant (α, β, ν, b)
//! lasting T iterations).
//!
//! The theory calculators ([`check_plan`](super::check_plan), [`plan_bound`](super::plan_bound))
//! take [`StageHyper`]s whose length is counted in **optimizer iterations**. A [`Plan`] counts
//! stages in epochs or steps, and an epoch has `ceil(n_train / b)` iterations, so the adapter
//! needs the training-set size: it lays the plan out with [`Plan::layout`] and reads each
//! stage's step count from there.
//!
//! A stage with a within-stage schedule (cosine, warm-up, one-cycle) is not constant; the
//! adapter uses its base (α, β) and records the schedule so that an explanation can say so.
//!
//! ```
//! use stagewise_core::schedule::{Recipe, RecipeParams};
//! use stagewise_core::theory::plan_stages;
//! let plan = RecipeParams::default().build(Recipe::Stagewise).unwrap(); // 2, 4, 9 epochs
//! let stages = plan_stages(&plan, 60_000).unwrap();
//! // stage 2: b = 128, ceil(60000/128) = 469 steps per epoch, 4 epochs
//! assert_eq!(stages[1].hyper.length_steps, 4 * 469);
//! assert_eq!(stages[1].length_epochs, 4.0);
//! ```

use serde::{Deserialize, Serialize};

use super::invariants::StageHyper;
use crate::schedule::{Plan, PlanError};

/// One stage of a plan as the theory sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoryStage {
    /// (α, β, ν, b) of the stage and its length T in iterations.
    pub hyper: StageHyper,
    /// `ceil(n_train / b)`: iterations per epoch at this stage's batch size.
    pub steps_per_epoch: u64,
    /// Length in epochs, `T / steps_per_epoch` (fractional for a stage written in steps that
    /// does not fill its last epoch).
    pub length_epochs: f64,
    /// Summary of the stage's within-stage schedule, if any (the theory then sees only the
    /// base α, β).
    pub schedule: Option<String>,
}

/// Lays `plan` out for a training set of `n_train` examples and returns one [`TheoryStage`]
/// per stage, in order.
///
/// # Errors
/// The errors of [`Plan::layout`]: an invalid plan (naming the stage and field),
/// `n_train == 0`, a within-stage schedule too short for its stage, or a step-count overflow.
pub fn plan_stages(plan: &Plan, n_train: u64) -> Result<Vec<TheoryStage>, PlanError> {
    let layout = plan.layout(n_train)?;
    Ok(plan
        .stages
        .iter()
        .zip(layout.spans())
        .map(|(stage, span)| TheoryStage {
            hyper: StageHyper {
                lr: stage.lr,
                beta: stage.beta,
                nu: stage.nu,
                batch_size: stage.batch_size as f64,
                length_steps: span.total_steps,
            },
            steps_per_epoch: span.steps_per_epoch,
            length_epochs: span.total_steps as f64 / span.steps_per_epoch as f64,
            schedule: stage.schedule.as_ref().map(|s| s.summary()),
        })
        .collect())
}

/// The [`StageHyper`] list of `plan` (lengths in iterations for `n_train` examples), ready for
/// [`check_plan`](super::check_plan) and [`plan_bound`](super::plan_bound).
///
/// # Errors
/// As [`plan_stages`].
pub fn plan_stage_hypers(plan: &Plan, n_train: u64) -> Result<Vec<StageHyper>, PlanError> {
    Ok(plan_stages(plan, n_train)?
        .into_iter()
        .map(|s| s.hyper)
        .collect())
}
