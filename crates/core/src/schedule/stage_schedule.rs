//! Within-stage schedules: how lr (and optionally momentum) move inside one stage.

use serde::{Deserialize, Serialize};

use super::error::ScheduleError;
use super::onecycle::{OneCycle, OneCycleShape};
use super::schedules::Schedule;

/// How a [`StageSchedule::Custom`] schedule combines with the stage's constant value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// value = stage value × schedule(step).
    #[default]
    Multiply,
    /// value = schedule(step); the stage value is ignored.
    Replace,
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

/// A schedule in force inside one stage, indexed by the step *within* the stage.
///
/// The fitted kinds (`cosine`, `warmup`, `one_cycle`) adapt to the stage's length in steps,
/// which is known only once the dataset size is (see [`Plan::layout`]); `custom` takes explicit
/// step-indexed [`Schedule`]s.
///
/// ```toml
/// [stages.schedule]
/// kind = "one_cycle"       # max_lr = stage lr, total_steps = stage steps
/// pct_start = 0.25
/// ```
///
/// [`Plan::layout`]: super::Plan::layout
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StageSchedule {
    /// Cosine annealing of the lr over the stage (PyTorch `CosineAnnealingLR` with
    /// `T_max` = the stage's steps): `lr·(m + (1 − m)(1 + cos(π·t/T))/2)`, `m = min_factor`.
    Cosine {
        /// Final lr as a fraction of the stage lr, in `[0, 1]` (default 0).
        #[serde(default)]
        min_factor: f64,
    },
    /// Linear warm-up of the lr from `lr·start_factor` to `lr` over the first `fraction` of
    /// the stage's steps (at least one step), then constant.
    Warmup {
        /// Initial lr as a fraction of the stage lr, in `[0, 1]` (default 0).
        #[serde(default)]
        start_factor: f64,
        /// Fraction of the stage spent warming up, in `(0, 1]`.
        fraction: f64,
    },
    /// One-cycle over the stage: `max_lr` is the stage lr and `total_steps` the stage's steps.
    /// With `cycle_momentum` (the default) the cycled momentum *replaces* the stage's beta.
    OneCycle(OneCycleShape),
    /// Explicit step-indexed schedules (steps counted from the start of the stage).
    Custom {
        /// Multiply the stage values (default) or replace them.
        #[serde(default, skip_serializing_if = "is_default")]
        mode: Combine,
        /// Schedule for the lr; absent: the stage lr.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lr: Option<Schedule>,
        /// Schedule for the momentum β; absent: the stage beta.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        momentum: Option<Schedule>,
    },
}

impl StageSchedule {
    /// `(lr, beta)` at `step` of a stage of `total_steps` steps whose constants are `lr`, `beta`.
    pub fn apply(&self, lr: f64, beta: f64, step: u64, total_steps: u64) -> (f64, f64) {
        match self {
            StageSchedule::Cosine { min_factor } => {
                let s = Schedule::cosine(1.0, *min_factor, total_steps.max(1));
                (lr * s.value(step), beta)
            }
            StageSchedule::Warmup {
                start_factor,
                fraction,
            } => {
                let ramp = (fraction * total_steps as f64).ceil().max(1.0) as u64;
                let s = Schedule::LinearWarmup {
                    start: *start_factor,
                    end: 1.0,
                    steps: ramp,
                };
                (lr * s.value(step), beta)
            }
            StageSchedule::OneCycle(shape) => {
                let oc = OneCycle::new(lr, total_steps, shape.clone());
                (oc.lr(step), oc.momentum(step).unwrap_or(beta))
            }
            StageSchedule::Custom {
                mode,
                lr: lr_s,
                momentum,
            } => {
                let comb = |base: f64, s: &Option<Schedule>| match (s, mode) {
                    (None, _) => base,
                    (Some(s), Combine::Multiply) => base * s.value(step),
                    (Some(s), Combine::Replace) => s.value(step),
                };
                (comb(lr, lr_s), comb(beta, momentum))
            }
        }
    }

    /// Checks the parameters that do not depend on the stage length.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match self {
            StageSchedule::Cosine { min_factor } => {
                if !(0.0..=1.0).contains(min_factor) {
                    return Err(ScheduleError::new(
                        "min_factor",
                        min_factor,
                        "0 <= min_factor <= 1",
                    ));
                }
            }
            StageSchedule::Warmup {
                start_factor,
                fraction,
            } => {
                if !(0.0..=1.0).contains(start_factor) {
                    return Err(ScheduleError::new(
                        "start_factor",
                        start_factor,
                        "0 <= start_factor <= 1",
                    ));
                }
                if !(*fraction > 0.0 && *fraction <= 1.0) {
                    return Err(ScheduleError::new(
                        "fraction",
                        fraction,
                        "0 < fraction <= 1",
                    ));
                }
            }
            StageSchedule::OneCycle(shape) => shape.validate()?,
            StageSchedule::Custom { lr, momentum, .. } => {
                if let Some(s) = lr {
                    s.validate().map_err(|e| e.within("lr"))?;
                }
                if let Some(s) = momentum {
                    s.validate().map_err(|e| e.within("momentum"))?;
                }
            }
        }
        Ok(())
    }

    /// Checks the parameters once the stage length in steps is known (one-cycle needs every
    /// phase to be non-empty).
    pub fn validate_for_length(&self, lr: f64, total_steps: u64) -> Result<(), ScheduleError> {
        self.validate()?;
        if let StageSchedule::OneCycle(shape) = self {
            OneCycle::new(lr, total_steps, shape.clone()).validate()?;
        }
        Ok(())
    }

    /// A short label for tables, e.g. `cosine(min 0)` or `one_cycle(pct 0.3)`.
    pub fn summary(&self) -> String {
        match self {
            StageSchedule::Cosine { min_factor } => format!("cosine(min {min_factor})"),
            StageSchedule::Warmup {
                start_factor,
                fraction,
            } => {
                format!("warmup({start_factor}→1, {fraction})")
            }
            StageSchedule::OneCycle(s) => {
                let m = if s.cycle_momentum {
                    format!(", β {}↔{}", s.max_momentum, s.base_momentum)
                } else {
                    String::new()
                };
                format!("one_cycle(pct {}{m})", s.pct_start)
            }
            StageSchedule::Custom { mode, lr, momentum } => {
                let op = match mode {
                    Combine::Multiply => "×",
                    Combine::Replace => "=",
                };
                let mut parts = Vec::new();
                if let Some(s) = lr {
                    parts.push(format!("lr{op}{}", s.summary()));
                }
                if let Some(s) = momentum {
                    parts.push(format!("β{op}{}", s.summary()));
                }
                if parts.is_empty() {
                    "custom(none)".to_string()
                } else {
                    parts.join(", ")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_within_stage_scales_stage_lr() {
        let s = StageSchedule::Cosine { min_factor: 0.0 };
        assert_eq!(s.apply(0.2, 0.9, 0, 10), (0.2, 0.9));
        let (lr, _) = s.apply(0.2, 0.9, 5, 10);
        assert!((lr - 0.1).abs() < 1e-15);
    }

    #[test]
    fn warmup_ramps_over_fraction() {
        let s = StageSchedule::Warmup {
            start_factor: 0.0,
            fraction: 0.2,
        };
        // 0.2 · 20 = 4 ramp steps.
        assert_eq!(s.apply(1.0, 0.9, 2, 20).0, 0.5);
        assert_eq!(s.apply(1.0, 0.9, 4, 20).0, 1.0);
    }

    #[test]
    fn one_cycle_replaces_beta() {
        let s = StageSchedule::OneCycle(OneCycleShape::default());
        let (lr, beta) = s.apply(1.0, 0.5, 0, 100);
        assert!((lr - 0.04).abs() < 1e-15);
        assert_eq!(beta, 0.95);
        let off = StageSchedule::OneCycle(OneCycleShape {
            cycle_momentum: false,
            ..Default::default()
        });
        assert_eq!(off.apply(1.0, 0.5, 10, 100).1, 0.5);
    }

    #[test]
    fn custom_multiply_and_replace() {
        let pw = Schedule::PiecewiseConstant {
            boundaries: vec![2],
            values: vec![1.0, 0.5],
        };
        let mul = StageSchedule::Custom {
            mode: Combine::Multiply,
            lr: Some(pw.clone()),
            momentum: None,
        };
        assert_eq!(mul.apply(0.4, 0.9, 3, 10), (0.2, 0.9));
        let rep = StageSchedule::Custom {
            mode: Combine::Replace,
            lr: None,
            momentum: Some(pw),
        };
        assert_eq!(rep.apply(0.4, 0.9, 3, 10), (0.4, 0.5));
    }

    #[test]
    fn validation() {
        let e = StageSchedule::Warmup {
            start_factor: 0.0,
            fraction: 0.0,
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "fraction");
        let e = StageSchedule::Cosine { min_factor: 2.0 }
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "min_factor");
        let e = StageSchedule::Custom {
            mode: Combine::Multiply,
            lr: None,
            momentum: Some(Schedule::LinearWarmup {
                start: 0.0,
                end: 1.0,
                steps: 0,
            }),
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "momentum.steps");
        let oc = StageSchedule::OneCycle(OneCycleShape::default());
        assert!(oc.validate_for_length(1.0, 100).is_ok());
        assert_eq!(
            oc.validate_for_length(1.0, 3).unwrap_err().field,
            "pct_start"
        );
    }
}
