//! Laying a plan out in steps for a given dataset size.
//!
//! Steps per epoch depend on the stage's batch size: `steps_per_epoch = ceil(n_train / b)`
//! (the last, partial batch of an epoch is kept). A stage measured in epochs lasts
//! `epochs · steps_per_epoch` steps. A stage measured in steps occupies
//! `ceil(steps / steps_per_epoch)` epochs, the last one cut short when the stage ends:
//! **every stage starts at an epoch boundary**, so `(epoch, step_in_epoch)` positions and global
//! step counts map to each other one to one.

use serde::Serialize;

use super::error::PlanError;
use super::plan::{Hyper, Plan, StageLength};

/// Where one stage sits in the run, for a given dataset size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageSpan {
    /// Batch size of the stage.
    pub batch_size: u64,
    /// `ceil(n_train / batch_size)`.
    pub steps_per_epoch: u64,
    /// Number of optimizer steps in the stage.
    pub total_steps: u64,
    /// Number of epochs the stage occupies (the last may be partial for stages in steps).
    pub epochs: u64,
    /// Global step at which the stage starts.
    pub start_step: u64,
    /// Epoch at which the stage starts.
    pub start_epoch: u64,
}

impl StageSpan {
    /// Number of steps the stage runs in its `k`-th epoch (0-based), `None` past its end.
    pub fn steps_in_epoch(&self, k: u64) -> Option<u64> {
        if k >= self.epochs {
            return None;
        }
        let done = k * self.steps_per_epoch;
        Some((self.total_steps - done).min(self.steps_per_epoch))
    }
}

/// A validated plan laid out in steps for a dataset of `n_train` examples.
///
/// ```
/// use stagewise_core::schedule::{Plan, Stage};
/// let plan = Plan::new(vec![
///     Stage::for_epochs(2, 0.1, 0.9, 0.7, 100),
///     Stage::for_steps(25, 0.05, 0.95, 0.7, 50),
/// ]);
/// let layout = plan.layout(1000).unwrap();
/// let s = layout.spans();
/// assert_eq!((s[0].steps_per_epoch, s[0].total_steps), (10, 20));
/// assert_eq!((s[1].steps_per_epoch, s[1].total_steps, s[1].epochs), (20, 25, 2));
/// assert_eq!(layout.locate(22), Some((1, 2)));
/// assert_eq!(layout.position(3, 4), Some((1, 24)));   // epoch 3 = second epoch of stage 2
/// assert_eq!(layout.position(3, 5), None);             // that epoch has only 5 steps
/// assert_eq!(layout.hyper_at_step(22).unwrap().batch_size, 50);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    plan: Plan,
    n_train: u64,
    spans: Vec<StageSpan>,
}

impl Plan {
    /// Validates the plan and lays it out for a dataset of `n_train` examples: each stage's
    /// steps per epoch (`ceil(n_train / b)`), total steps, first step and first epoch.
    ///
    /// Also checks within-stage schedules that need the stage length (one-cycle phases, a
    /// warm-up in steps that must end inside its stage, the schedule after a warm-up).
    ///
    /// # Errors
    /// The errors of [`Plan::validate`]; [`PlanError::EmptyDataset`] when `n_train == 0`;
    /// [`PlanError::StageField`] for a within-stage schedule too short for its stage;
    /// [`PlanError::Overflow`] if a step count does not fit in a `u64`.
    pub fn layout(&self, n_train: u64) -> Result<Layout, PlanError> {
        self.validate()?;
        if n_train == 0 {
            return Err(PlanError::EmptyDataset);
        }
        let mut spans = Vec::with_capacity(self.stages.len());
        let (mut start_step, mut start_epoch) = (0u64, 0u64);
        for (i, s) in self.stages.iter().enumerate() {
            let overflow = || PlanError::Overflow { stage: i + 1 };
            let spe = n_train.div_ceil(s.batch_size);
            let (epochs, total_steps) = match s.length() {
                Some(StageLength::Epochs(e)) => (e, e.checked_mul(spe).ok_or_else(overflow)?),
                Some(StageLength::Steps(n)) => (n.div_ceil(spe), n),
                // Unreachable after `validate`, kept as an error rather than a panic.
                None => {
                    return Err(PlanError::StageLength {
                        stage: i + 1,
                        found: "invalid".into(),
                    })
                }
            };
            if let Some(sched) = &s.schedule {
                let in_schedule = |e| PlanError::in_stage_schedule(i + 1, e);
                sched
                    .validate_for_length(s.lr, total_steps)
                    .map_err(in_schedule)?;
                if let Some(StageLength::Epochs(e)) = s.length() {
                    sched
                        .validate_for_epochs(s.lr, e, Some(spe))
                        .map_err(in_schedule)?;
                }
            }
            spans.push(StageSpan {
                batch_size: s.batch_size,
                steps_per_epoch: spe,
                total_steps,
                epochs,
                start_step,
                start_epoch,
            });
            start_step = start_step.checked_add(total_steps).ok_or_else(overflow)?;
            start_epoch = start_epoch.checked_add(epochs).ok_or_else(overflow)?;
        }
        Ok(Layout {
            plan: self.clone(),
            n_train,
            spans,
        })
    }
}

impl Layout {
    /// The plan this layout was made from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The dataset size.
    pub fn n_train(&self) -> u64 {
        self.n_train
    }

    /// One span per stage, in order.
    pub fn spans(&self) -> &[StageSpan] {
        &self.spans
    }

    /// Total optimizer steps of the run.
    pub fn total_steps(&self) -> u64 {
        self.spans
            .last()
            .map_or(0, |s| s.start_step + s.total_steps)
    }

    /// Total epochs of the run (the last epoch of a stage in steps may be partial).
    pub fn total_epochs(&self) -> u64 {
        self.spans.last().map_or(0, |s| s.start_epoch + s.epochs)
    }

    /// `(stage index, step within stage)` of a global step, `None` past the end.
    pub fn locate(&self, global_step: u64) -> Option<(usize, u64)> {
        let i = self
            .spans
            .partition_point(|s| s.start_step <= global_step)
            .checked_sub(1)?;
        let s = &self.spans[i];
        let k = global_step - s.start_step;
        (k < s.total_steps).then_some((i, k))
    }

    /// Index of the stage in force during `epoch` (0-based), `None` past the end.
    pub fn stage_at_epoch(&self, epoch: u64) -> Option<usize> {
        let i = self
            .spans
            .partition_point(|s| s.start_epoch <= epoch)
            .checked_sub(1)?;
        (epoch - self.spans[i].start_epoch < self.spans[i].epochs).then_some(i)
    }

    /// Number of steps to run in `epoch` (short for the last epoch of a stage in steps).
    pub fn steps_in_epoch(&self, epoch: u64) -> Option<u64> {
        let i = self.stage_at_epoch(epoch)?;
        let s = &self.spans[i];
        s.steps_in_epoch(epoch - s.start_epoch)
    }

    /// `(stage index, step within stage)` at step `step_in_epoch` of `epoch`, `None` when the
    /// position is outside the run.
    pub fn position(&self, epoch: u64, step_in_epoch: u64) -> Option<(usize, u64)> {
        let i = self.stage_at_epoch(epoch)?;
        let s = &self.spans[i];
        let k = epoch - s.start_epoch;
        if step_in_epoch >= s.steps_in_epoch(k)? {
            return None;
        }
        Some((i, k * s.steps_per_epoch + step_in_epoch))
    }

    /// Global step at step `step_in_epoch` of `epoch`, `None` outside the run.
    pub fn global_step(&self, epoch: u64, step_in_epoch: u64) -> Option<u64> {
        let (i, k) = self.position(epoch, step_in_epoch)?;
        Some(self.spans[i].start_step + k)
    }

    /// The hyperparameters in force at a global step, `None` past the end.
    pub fn hyper_at_step(&self, global_step: u64) -> Option<Hyper> {
        let (i, k) = self.locate(global_step)?;
        self.plan.hyper_at(i, k, self.spans[i].total_steps)
    }

    /// The hyperparameters in force at step `step_in_epoch` of `epoch`, `None` outside the run.
    pub fn hyper_at_position(&self, epoch: u64, step_in_epoch: u64) -> Option<Hyper> {
        let (i, k) = self.position(epoch, step_in_epoch)?;
        self.plan.hyper_at(i, k, self.spans[i].total_steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{OneCycleShape, Stage, StageSchedule};

    #[test]
    fn steps_per_epoch_follow_batch_size() {
        let plan = Plan::new(vec![
            Stage::for_epochs(1, 0.1, 0.9, 0.7, 256),
            Stage::for_epochs(2, 0.05, 0.9, 0.7, 128),
        ]);
        let l = plan.layout(1000).unwrap();
        assert_eq!(l.spans()[0].steps_per_epoch, 4); // ceil(1000/256)
        assert_eq!(l.spans()[1].steps_per_epoch, 8);
        assert_eq!(l.total_steps(), 4 + 16);
        assert_eq!(l.total_epochs(), 3);
        assert_eq!(l.locate(3), Some((0, 3)));
        assert_eq!(l.locate(4), Some((1, 0)));
        assert_eq!(l.locate(20), None);
        assert_eq!(l.global_step(2, 7), Some(19));
        assert_eq!(l.position(2, 8), None);
        assert_eq!(l.steps_in_epoch(0), Some(4));
        assert_eq!(l.steps_in_epoch(3), None);
        // Every global step maps back to its position.
        let mut g = 0;
        for e in 0..l.total_epochs() {
            for k in 0..l.steps_in_epoch(e).unwrap() {
                assert_eq!(l.global_step(e, k), Some(g));
                assert_eq!(l.locate(g), l.position(e, k));
                g += 1;
            }
        }
        assert_eq!(g, l.total_steps());
    }

    #[test]
    fn layout_checks_length_dependent_schedule() {
        let plan = Plan::new(vec![Stage::for_epochs(1, 0.1, 0.9, 0.7, 100)
            .with_schedule(StageSchedule::OneCycle(OneCycleShape::default()))]);
        assert!(plan.layout(10_000).is_ok());
        let e = plan.layout(100).unwrap_err().to_string();
        assert!(
            e.starts_with("stage 1: field 'schedule.total_steps'"),
            "{e}"
        );
        assert!(matches!(plan.layout(0), Err(PlanError::EmptyDataset)));
    }

    #[test]
    fn overflow_is_an_error() {
        let plan = Plan::new(vec![Stage::for_epochs(u64::MAX, 0.1, 0.9, 0.7, 1)]);
        assert!(matches!(
            plan.layout(10),
            Err(PlanError::Overflow { stage: 1 })
        ));
    }
}
