//! From a [`Plan`] to the theory's stage list (docs/theory.md §2: stages of constant (α, β, ν, b)
//! lasting T iterations).
//!
//! The theory calculators ([`check_plan`](super::check_plan), [`plan_bound`](super::plan_bound))
//! take [`StageHyper`]s whose length is counted in **optimizer iterations**. A [`Plan`] counts
//! stages in epochs or steps, and an epoch has `ceil(n_train / b)` iterations, so the adapter
//! needs the training-set size: it lays the plan out with [`Plan::layout`] and reads each
//! stage's step count from there.
//!
//! A stage with a within-stage schedule (cosine, linear, wsd, warm-up, one-cycle) is not
//! constant. Its [`StageHyper`] keeps the base (α, β) written in the plan, and the adapter also
//! walks every step of the stage: [`TheoryStage::lr_sum`] is the exact Σ_t α_t over the
//! stage's steps (the integral of α that §2 condition 1 and the SDE time of §3.3 count),
//! [`TheoryStage::lr_peak`] the largest α_t, and [`TheoryStage::pieces`] the stage as runs of
//! steps with constant (α, β), which the bound proxy and the stability check go through.
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
use crate::schedule::{Plan, PlanError, Stage};

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
    /// Summary of the stage's within-stage schedule, if any.
    pub schedule: Option<String>,
    /// Σ_t α_t over the stage's steps: α·T without a within-stage schedule (computed as that
    /// product), the exact sum of the scheduled α over every step otherwise.
    pub lr_sum: f64,
    /// The largest α_t over the stage's steps (α without a schedule).
    pub lr_peak: f64,
    /// The stage as consecutive runs of steps with constant (α, β): each piece is a
    /// [`StageHyper`] whose `length_steps` is the run's length, covering every step in order.
    /// One piece, `hyper`, without a schedule. A run may have α = 0 (the first step of a
    /// warm-up from 0), which [`StageHyper::validate`] refuses: the bound skips such runs
    /// ([`variances_after_stages`](super::variances_after_stages)). Not serialized.
    #[serde(skip)]
    pub pieces: Vec<StageHyper>,
}

impl TheoryStage {
    /// Mean α over the stage's steps, `lr_sum / T` (α without a schedule).
    pub fn lr_mean(&self) -> f64 {
        if self.schedule.is_none() {
            self.hyper.lr
        } else {
            self.lr_sum / self.hyper.length_steps as f64
        }
    }
}

/// Runs of equal (α, β) over the `total` steps of `stage`, as `(α, β, steps)`, with Σα and the
/// largest α.
fn stage_runs(stage: &Stage, total: u64) -> (Vec<(f64, f64, u64)>, f64, f64) {
    let mut runs: Vec<(f64, f64, u64)> = Vec::new();
    let (mut sum, mut peak) = (0.0, f64::NEG_INFINITY);
    for (lr, beta) in stage.lr_beta_steps(total) {
        sum += lr;
        peak = peak.max(lr);
        match runs.last_mut() {
            Some(r) if r.0 == lr && r.1 == beta => r.2 += 1,
            _ => runs.push((lr, beta, 1)),
        }
    }
    (runs, sum, peak)
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
        .map(|(stage, span)| {
            let hyper = StageHyper {
                lr: stage.lr,
                beta: stage.beta,
                nu: stage.nu,
                batch_size: stage.batch_size as f64,
                length_steps: span.total_steps,
            };
            let (lr_sum, lr_peak, pieces) = if stage.schedule.is_none() {
                (stage.lr * span.total_steps as f64, stage.lr, vec![hyper])
            } else {
                let (runs, sum, peak) = stage_runs(stage, span.total_steps);
                let pieces = runs
                    .into_iter()
                    .map(|(lr, beta, steps)| StageHyper {
                        lr,
                        beta,
                        length_steps: steps,
                        ..hyper
                    })
                    .collect();
                (sum, peak, pieces)
            };
            TheoryStage {
                hyper,
                steps_per_epoch: span.steps_per_epoch,
                length_epochs: span.total_steps as f64 / span.steps_per_epoch as f64,
                schedule: stage.schedule.as_ref().map(|s| s.summary()),
                lr_sum,
                lr_peak,
                pieces,
            }
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
