//! Multistage plans: stages of constant (α, β, ν, b), TOML input/output and validation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::PlanError;
use super::stage_schedule::{StageCurves, StageSchedule};
use crate::optim::{QhmParams, WeightDecay};

/// The hyperparameters in force at one step: the (α, β, ν) the optimizer takes and the batch
/// size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// α, β, ν (normalized QHM convention).
    #[serde(flatten)]
    pub qhm: QhmParams,
    /// Batch size b.
    pub batch_size: u64,
}

/// The length of a stage, in epochs or in optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageLength {
    /// A number of passes over the training set.
    Epochs(u64),
    /// A number of optimizer steps (mini-batches).
    Steps(u64),
}

/// One stage: constant hyperparameters for a number of epochs or steps, optionally modulated
/// by a within-stage [`StageSchedule`].
///
/// In TOML exactly one of `epochs` and `steps` is given:
///
/// ```toml
/// [[stages]]
/// epochs = 10
/// lr = 0.1
/// beta = 0.9
/// nu = 0.7
/// batch_size = 128
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Length in epochs (exclusive with `steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Length in optimizer steps (exclusive with `epochs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Learning rate α (normalized QHM), finite and `> 0`.
    pub lr: f64,
    /// Momentum β, `0 <= β < 1`.
    pub beta: f64,
    /// Immediate discount ν, `0 <= ν <= 1`.
    pub nu: f64,
    /// Batch size b, `>= 1`.
    pub batch_size: u64,
    /// Optional within-stage schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<StageSchedule>,
}

impl Stage {
    /// A stage lasting `epochs` epochs, without a within-stage schedule.
    pub fn for_epochs(epochs: u64, lr: f64, beta: f64, nu: f64, batch_size: u64) -> Self {
        Self {
            epochs: Some(epochs),
            steps: None,
            lr,
            beta,
            nu,
            batch_size,
            schedule: None,
        }
    }

    /// A stage lasting `steps` optimizer steps, without a within-stage schedule.
    pub fn for_steps(steps: u64, lr: f64, beta: f64, nu: f64, batch_size: u64) -> Self {
        Self {
            epochs: None,
            steps: Some(steps),
            lr,
            beta,
            nu,
            batch_size,
            schedule: None,
        }
    }

    /// The same stage with a within-stage schedule.
    pub fn with_schedule(mut self, schedule: StageSchedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// The stage length, or `None` when not exactly one of `epochs`/`steps` is set.
    pub fn length(&self) -> Option<StageLength> {
        match (self.epochs, self.steps) {
            (Some(e), None) => Some(StageLength::Epochs(e)),
            (None, Some(s)) => Some(StageLength::Steps(s)),
            _ => None,
        }
    }

    /// The length as written (epochs or steps), `0` when invalid.
    pub fn length_value(&self) -> u64 {
        match self.length() {
            Some(StageLength::Epochs(n) | StageLength::Steps(n)) => n,
            None => 0,
        }
    }

    /// Steps per epoch of a stage given in epochs that lasts `total_steps` steps
    /// (`total_steps / epochs`, at least 1); `None` for a stage given in steps.
    fn steps_per_epoch(&self, total_steps: u64) -> Option<u64> {
        match self.length()? {
            StageLength::Epochs(e) if e > 0 => Some((total_steps / e).max(1)),
            _ => None,
        }
    }

    /// The hyperparameters at `step` (counted from the start of the stage) of a stage lasting
    /// `total_steps` steps. Without a within-stage schedule they are the stage constants.
    pub fn hyper_at(&self, step: u64, total_steps: u64) -> Hyper {
        let (lr, beta) = match &self.schedule {
            None => (self.lr, self.beta),
            Some(s) => s.apply_in(
                self.lr,
                self.beta,
                step,
                total_steps,
                self.steps_per_epoch(total_steps),
            ),
        };
        Hyper {
            qhm: QhmParams {
                lr,
                beta,
                nu: self.nu,
            },
            batch_size: self.batch_size,
        }
    }

    /// The stage's lr and momentum as step-indexed curves for a stage lasting `total_steps`
    /// steps, `None` without a within-stage schedule (the constants then hold at every step).
    /// Built once, they give [`hyper_at`](Self::hyper_at)'s values at every step without
    /// rebuilding the schedule.
    pub fn curves(&self, total_steps: u64) -> Option<StageCurves> {
        self.schedule.as_ref().map(|s| {
            s.curves(
                self.lr,
                self.beta,
                total_steps,
                self.steps_per_epoch(total_steps),
            )
        })
    }

    /// `(lr, beta)` at every step of a stage lasting `total_steps` steps, in order.
    pub fn lr_beta_steps(&self, total_steps: u64) -> impl Iterator<Item = (f64, f64)> + '_ {
        let curves = self.curves(total_steps);
        let (lr, beta) = (self.lr, self.beta);
        (0..total_steps).map(move |t| match &curves {
            None => (lr, beta),
            Some(c) => c.at(t, beta),
        })
    }

    /// Checks every field; `number` is the 1-based stage number used in the error.
    pub fn validate(&self, number: usize) -> Result<(), PlanError> {
        let field = |field: &str, value: String, allowed: &str| PlanError::StageField {
            stage: number,
            field: field.to_string(),
            value,
            allowed: allowed.to_string(),
        };
        match (self.epochs, self.steps) {
            (Some(_), Some(_)) => {
                return Err(PlanError::StageLength {
                    stage: number,
                    found: "both were given".into(),
                })
            }
            (None, None) => {
                return Err(PlanError::StageLength {
                    stage: number,
                    found: "neither was given".into(),
                })
            }
            (Some(0), None) => return Err(field("epochs", "0".into(), "epochs >= 1")),
            (None, Some(0)) => return Err(field("steps", "0".into(), "steps >= 1")),
            _ => {}
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(field("lr", self.lr.to_string(), "finite lr > 0"));
        }
        if !(self.beta >= 0.0 && self.beta < 1.0) {
            return Err(field("beta", self.beta.to_string(), "0 <= beta < 1"));
        }
        if !(0.0..=1.0).contains(&self.nu) {
            return Err(field("nu", self.nu.to_string(), "0 <= nu <= 1"));
        }
        if self.batch_size == 0 {
            return Err(field("batch_size", "0".into(), "integer batch_size >= 1"));
        }
        if let Some(s) = &self.schedule {
            let in_schedule = |e| PlanError::in_stage_schedule(number, e);
            s.validate().map_err(in_schedule)?;
            match self.length() {
                // A stage given in steps has a known length: check length-dependent
                // parameters now.
                Some(StageLength::Steps(steps)) => {
                    if let StageSchedule::WarmupThen {
                        warmup_epochs: Some(w),
                        ..
                    } = s
                    {
                        return Err(field(
                            "schedule.warmup_epochs",
                            w.to_string(),
                            "warmup_epochs only in a stage given in epochs; give the warm-up \
                             as warmup_steps",
                        ));
                    }
                    s.validate_for_length(self.lr, steps).map_err(in_schedule)?;
                }
                Some(StageLength::Epochs(epochs)) => {
                    s.validate_for_epochs(self.lr, epochs, None)
                        .map_err(in_schedule)?;
                }
                None => {}
            }
            // Every step of a custom schedule: α finite and >= 0, 0 <= β < 1. The length of a
            // stage in epochs is not known without the dataset: every step is checked then.
            s.check_values(self.lr, self.beta, self.steps)
                .map_err(|v| PlanError::ScheduleValue {
                    stage: number,
                    field: format!("schedule.{}", v.field),
                    quantity: v.quantity.to_string(),
                    value: v.value.to_string(),
                    step: v.step,
                    after_warmup: v.after_warmup,
                    allowed: v.allowed.to_string(),
                })?;
        }
        Ok(())
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_default_wd(x: &WeightDecay) -> bool {
    *x == WeightDecay::default()
}

/// A multistage training plan: a list of [`Stage`]s plus plan-wide settings.
///
/// ```
/// use stagewise_core::schedule::Plan;
/// let plan = Plan::from_toml_str(r#"
///     name = "two stages"
///     [[stages]]
///     epochs = 5
///     lr = 0.1
///     beta = 0.9
///     nu = 0.7
///     batch_size = 128
///     [[stages]]
///     epochs = 10
///     lr = 0.05
///     beta = 0.947
///     nu = 0.7
///     batch_size = 64
/// "#).unwrap();
/// assert_eq!(plan.total_epochs(), Some(15));
/// assert_eq!(plan.stage_at_epoch(7).map(|(i, s)| (i, s.batch_size)), Some((1, 64)));
/// let h = plan.hyper_at(1, 0, 100).unwrap();
/// assert_eq!((h.qhm.lr, h.batch_size), (0.05, 64));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Optional short name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Optional free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Weight decay coefficient, finite and `>= 0` (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_decay: f64,
    /// How weight decay is applied: `"grad"` (coupled, default) or `"direct"` (decoupled).
    #[serde(default, skip_serializing_if = "is_default_wd")]
    pub weight_decay_type: WeightDecay,
    /// The stages, run in order (at least one).
    pub stages: Vec<Stage>,
}

impl Plan {
    /// A plan made of `stages`, with no name and no weight decay.
    pub fn new(stages: Vec<Stage>) -> Self {
        Self {
            name: None,
            description: None,
            weight_decay: 0.0,
            weight_decay_type: WeightDecay::Grad,
            stages,
        }
    }

    /// Checks the whole plan; the first error names the stage (1-based) and the field.
    ///
    /// # Errors
    /// [`PlanError::NoStages`], [`PlanError::PlanField`], [`PlanError::StageLength`] or
    /// [`PlanError::StageField`] for the first invalid value found.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.stages.is_empty() {
            return Err(PlanError::NoStages);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(PlanError::PlanField {
                field: "weight_decay".into(),
                value: self.weight_decay.to_string(),
                allowed: "finite weight_decay >= 0".into(),
            });
        }
        for (i, s) in self.stages.iter().enumerate() {
            s.validate(i + 1)?;
        }
        Ok(())
    }

    /// Parses and validates a plan from TOML text. Unknown keys are errors; parse errors keep
    /// the TOML line and column.
    ///
    /// # Errors
    /// [`PlanError::TomlParse`] for malformed TOML, unknown keys or wrong types; otherwise
    /// the errors of [`Plan::validate`].
    pub fn from_toml_str(text: &str) -> Result<Self, PlanError> {
        let plan: Plan = toml::from_str(text)?;
        plan.validate()?;
        Ok(plan)
    }

    /// Writes the plan as TOML (stages as `[[stages]]` tables).
    ///
    /// # Errors
    /// [`PlanError::TomlWrite`] if a value cannot be represented in TOML.
    pub fn to_toml_string(&self) -> Result<String, PlanError> {
        Ok(toml::to_string(self)?)
    }

    /// Reads and validates a plan file.
    ///
    /// # Errors
    /// [`PlanError::Io`] if the file cannot be read; otherwise as [`Plan::from_toml_str`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PlanError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| PlanError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml_str(&text)
    }

    /// Validates the plan, then writes it to a TOML file.
    ///
    /// # Errors
    /// The errors of [`Plan::validate`], or [`PlanError::Io`] if the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PlanError> {
        self.validate()?;
        let path = path.as_ref();
        crate::files::write_atomic(path, self.to_toml_string()?.as_bytes()).map_err(|error| {
            PlanError::Io {
                path: path.to_path_buf(),
                error,
            }
        })
    }

    /// Total number of epochs, or `None` when some stage is measured in steps (its epoch count
    /// then depends on the dataset size: see [`Plan::layout`]).
    pub fn total_epochs(&self) -> Option<u64> {
        self.stages
            .iter()
            .try_fold(0u64, |acc, s| match s.length()? {
                StageLength::Epochs(e) => acc.checked_add(e),
                StageLength::Steps(_) => None,
            })
    }

    /// The stage in force during `epoch` (0-based) and its index, for plans whose stages
    /// before it are measured in epochs. `None` past the end, or when a stage measured in steps
    /// comes first (use [`Layout::stage_at_epoch`](super::Layout::stage_at_epoch) then).
    pub fn stage_at_epoch(&self, epoch: u64) -> Option<(usize, &Stage)> {
        let mut start = 0u64;
        for (i, s) in self.stages.iter().enumerate() {
            match s.length()? {
                StageLength::Epochs(e) => {
                    let end = start.checked_add(e)?;
                    if epoch < end {
                        return Some((i, s));
                    }
                    start = end;
                }
                StageLength::Steps(_) => return None,
            }
        }
        None
    }

    /// The hyperparameters at `step_in_stage` of stage `stage_idx` (0-based), whose total
    /// length is `stage_total_steps` steps (see [`Plan::layout`]). `None` if there is no such
    /// stage.
    pub fn hyper_at(
        &self,
        stage_idx: usize,
        step_in_stage: u64,
        stage_total_steps: u64,
    ) -> Option<Hyper> {
        self.stages
            .get(stage_idx)
            .map(|s| s.hyper_at(step_in_stage, stage_total_steps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Plan {
        Plan::new(vec![
            Stage::for_epochs(2, 0.1, 0.9, 0.7, 128),
            Stage::for_epochs(4, 0.05, 0.95, 0.7, 64),
        ])
    }

    #[test]
    fn epochs_and_lookup() {
        let p = two();
        p.validate().unwrap();
        assert_eq!(p.total_epochs(), Some(6));
        let idx: Vec<Option<usize>> = (0..7).map(|e| p.stage_at_epoch(e).map(|x| x.0)).collect();
        assert_eq!(
            idx,
            [Some(0), Some(0), Some(1), Some(1), Some(1), Some(1), None]
        );
        assert_eq!(p.hyper_at(2, 0, 1), None);
        let h = p.hyper_at(0, 3, 10).unwrap();
        assert_eq!(
            h,
            Hyper {
                qhm: QhmParams {
                    lr: 0.1,
                    beta: 0.9,
                    nu: 0.7
                },
                batch_size: 128
            }
        );
    }

    #[test]
    fn steps_stage_hides_epochs() {
        let mut p = two();
        p.stages
            .insert(1, Stage::for_steps(100, 0.1, 0.9, 0.7, 128));
        assert_eq!(p.total_epochs(), None);
        assert_eq!(p.stage_at_epoch(1).map(|x| x.0), Some(0));
        assert_eq!(p.stage_at_epoch(2), None);
    }

    #[test]
    fn toml_round_trip() {
        let mut p = two();
        p.name = Some("t".into());
        p.weight_decay = 5e-4;
        p.weight_decay_type = WeightDecay::Direct;
        p.stages[1].schedule = Some(StageSchedule::Cosine { min_factor: 0.1 });
        let text = p.to_toml_string().unwrap();
        assert_eq!(Plan::from_toml_str(&text).unwrap(), p);
    }
}
