//! The server's hyperparameter schedule as a function of its update count (version).
//!
//! In asynchronous SGD every applied push is one optimizer step on one worker's mini-batch, so
//! the server's version plays the role of the global step of a centralized run: a core
//! [`Plan`] laid out for a dataset of `n_train` examples is read with
//! [`Layout::hyper_at_step`] at the version.

use stagewise_core::optim::QhmParams;
use stagewise_core::schedule::{Layout, Plan};

use crate::error::ConfigError;

/// Hyperparameters (α, β, ν) in force at a given server version.
pub trait HyperSchedule: Send + Sync {
    /// The scheduled triple for the update that takes the server from `version` to
    /// `version + 1`.
    fn at(&self, version: u64) -> QhmParams;

    /// Number of updates the schedule lasts, if it ends.
    fn total_updates(&self) -> Option<u64> {
        None
    }
}

/// A constant schedule.
impl HyperSchedule for QhmParams {
    fn at(&self, _version: u64) -> QhmParams {
        *self
    }
}

/// A multistage [`Plan`] read at the server version, holding the last step's values past its
/// end.
#[derive(Debug, Clone)]
pub struct PlanSchedule {
    layout: Layout,
    last: QhmParams,
}

impl PlanSchedule {
    /// Lays `plan` out for `n_train` examples per epoch (each update is one mini-batch).
    pub fn new(plan: &Plan, n_train: u64) -> Result<Self, ConfigError> {
        let layout = plan
            .layout(n_train)
            .map_err(|e| ConfigError::new("schedule.plan", e.to_string()))?;
        let last_step = layout.total_steps().saturating_sub(1);
        let last = layout
            .hyper_at_step(last_step)
            .map(|h| h.qhm)
            .ok_or_else(|| ConfigError::new("schedule.plan", "the plan has no steps"))?;
        Ok(Self { layout, last })
    }

    /// The laid-out plan.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

impl HyperSchedule for PlanSchedule {
    fn at(&self, version: u64) -> QhmParams {
        self.layout
            .hyper_at_step(version)
            .map(|h| h.qhm)
            .unwrap_or(self.last)
    }

    fn total_updates(&self) -> Option<u64> {
        Some(self.layout.total_steps())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::schedule::Stage;

    #[test]
    fn plan_is_read_at_the_version_and_held_past_its_end() {
        let plan = Plan::new(vec![
            Stage::for_steps(10, 0.1, 0.9, 0.7, 32),
            Stage::for_steps(5, 0.01, 0.99, 0.5, 32),
        ]);
        let s = PlanSchedule::new(&plan, 320).unwrap();
        assert_eq!(s.total_updates(), Some(15));
        assert_eq!(s.at(0).lr, 0.1);
        assert_eq!(s.at(9).beta, 0.9);
        assert_eq!(s.at(10).lr, 0.01);
        assert_eq!(s.at(1000).nu, 0.5);
    }
}
