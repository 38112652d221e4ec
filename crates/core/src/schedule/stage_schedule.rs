//! Within-stage schedules: how lr (and optionally momentum) move inside one stage.
//!
//! Each kind is built from the step-indexed pieces of [`Schedule`] (optax style): a stage's lr
//! at step t is `scale × schedule(t)`, where `scale` is the stage lr for the kinds that scale
//! it (cosine, linear, warmup, wsd, custom `multiply`) and 1 for those that set it (one-cycle,
//! custom `replace`). `warmup_then` joins a linear warm-up and another kind with optax
//! `join_schedules` semantics.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::ScheduleError;
use super::onecycle::{OneCycle, OneCycleShape};
use super::schedules::{first_violation, Schedule};

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

/// The shape of a warmup-stable-decay cooldown ([`StageSchedule::Wsd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CooldownShape {
    /// Linear to the floor: `1 − s/T_c` of the way from the floor to the stage lr.
    Linear,
    /// Hägele et al. (2024)'s "1−√": `1 − √(s/T_c)` of the way, their best-performing shape.
    #[default]
    Sqrt,
}

impl CooldownShape {
    /// Every shape.
    pub const ALL: [CooldownShape; 2] = [CooldownShape::Linear, CooldownShape::Sqrt];

    /// The shape's name as accepted by [`FromStr`] and serde: `linear`, `sqrt`.
    pub fn name(self) -> &'static str {
        match self {
            CooldownShape::Linear => "linear",
            CooldownShape::Sqrt => "sqrt",
        }
    }

    /// The decay from `start` (step 0) to `end` (step `steps`) with this shape.
    pub fn decay(self, start: f64, end: f64, steps: u64) -> Schedule {
        match self {
            CooldownShape::Linear => Schedule::LinearWarmup { start, end, steps },
            CooldownShape::Sqrt => Schedule::SqrtDecay { start, end, steps },
        }
    }
}

impl fmt::Display for CooldownShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CooldownShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CooldownShape::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown cooldown shape '{s}'; allowed: linear, sqrt"))
    }
}

fn default_cooldown_fraction() -> f64 {
    0.2
}

/// A schedule in force inside one stage, indexed by the step *within* the stage.
///
/// The fitted kinds (`cosine`, `linear`, `warmup`, `wsd`, `one_cycle`, `warmup_then`) adapt to
/// the stage's length in steps, which is known only once the dataset size is (see
/// [`Plan::layout`]); `custom` takes explicit step-indexed [`Schedule`]s.
///
/// ```toml
/// [stages.schedule]
/// kind = "one_cycle"       # max_lr = stage lr, total_steps = stage steps
/// pct_start = 0.25
/// ```
///
/// A warm-up before another kind (here 500 steps from 0 to the stage lr, then a
/// warmup-stable-decay over the remaining steps):
///
/// ```toml
/// [stages.schedule]
/// kind = "warmup_then"
/// warmup_steps = 500
/// [stages.schedule.then]
/// kind = "wsd"
/// cooldown_fraction = 0.2
/// shape = "sqrt"
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
    /// Linear decay of the lr over the stage, `lr·(1 + (m − 1)·t/T)` with `T` the stage's
    /// steps and `m = min_factor`: PyTorch `LinearLR(start_factor=1, end_factor=m,
    /// total_iters=T)`, optax `linear_schedule(lr, m·lr, T)`. With `m = 0` it is the linear
    /// decay to zero of Defazio et al. (2023).
    Linear {
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
    /// The stable and decay phases of warmup-stable-decay (Hägele et al. 2024): the stage lr,
    /// then over the last `T_c = round(cooldown_fraction·T)` steps (at least 1) a decay of
    /// `shape` towards `lr·min_factor`: at step `T − T_c + s`,
    /// `lr·(m + (1 − m)·(1 − s/T_c))` (`linear`) or `lr·(m + (1 − m)·(1 − √(s/T_c)))`
    /// (`sqrt`). Put it in a `warmup_then` for the warm-up.
    Wsd {
        /// Fraction of the stage's steps spent cooling down, in `(0, 1]` (default 0.2).
        #[serde(default = "default_cooldown_fraction")]
        cooldown_fraction: f64,
        /// Shape of the cooldown (default `sqrt`).
        #[serde(default)]
        shape: CooldownShape,
        /// Final lr as a fraction of the stage lr, in `[0, 1]` (default 0).
        #[serde(default)]
        min_factor: f64,
    },
    /// One-cycle over the stage: `max_lr` is the stage lr and `total_steps` the stage's steps.
    /// With `cycle_momentum` (the default) the cycled momentum *replaces* the stage's beta.
    OneCycle(OneCycleShape),
    /// A linear warm-up over the first `W` steps of the stage (`warmup_steps`, or
    /// `warmup_epochs` epochs of a stage given in epochs), from `lr·start_factor` to the stage
    /// lr, then `then` over the remaining `T − W` steps, counted from 0 again (constant
    /// without `then`). These are the semantics of optax `join_schedules([linear_schedule(…),
    /// then], [W])` and of PyTorch `SequentialLR([LinearLR(…, total_iters=W), then],
    /// milestones=[W])`: the second schedule starts at step W and is fitted to the steps left.
    /// β is the stage's during the warm-up.
    WarmupThen {
        /// Initial lr as a fraction of the stage lr, in `[0, 1]` (default 0).
        #[serde(default)]
        start_factor: f64,
        /// Length of the warm-up in steps, `>= 1` and below the stage's steps (exclusive with
        /// `warmup_epochs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_steps: Option<u64>,
        /// Length of the warm-up in epochs, `>= 1` and below the stage's epochs (exclusive with
        /// `warmup_steps`; only in a stage given in epochs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_epochs: Option<u64>,
        /// The schedule after the warm-up (any kind but `warmup_then`); absent: constant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        then: Option<Box<StageSchedule>>,
    },
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

/// One hyperparameter over a stage: `scale × schedule(step)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Multiplies the schedule's value (the stage value, or 1).
    pub scale: f64,
    /// The step-indexed schedule.
    pub schedule: Schedule,
}

impl Curve {
    fn new(scale: f64, schedule: Schedule) -> Self {
        Self { scale, schedule }
    }

    /// The value at `step`.
    pub fn value(&self, step: u64) -> f64 {
        self.scale * self.schedule.value(step)
    }
}

/// The lr and momentum of a stage as step-indexed [`Curve`]s: what a [`StageSchedule`] does to
/// a stage of known length ([`StageSchedule::curves`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StageCurves {
    /// The lr.
    pub lr: Curve,
    /// The momentum β; `None`: the stage's β at every step.
    pub momentum: Option<Curve>,
}

impl StageCurves {
    /// `(lr, beta)` at `step`, with `beta` the stage's β where the schedule leaves it alone.
    pub fn at(&self, step: u64, beta: f64) -> (f64, f64) {
        (
            self.lr.value(step),
            self.momentum.as_ref().map_or(beta, |m| m.value(step)),
        )
    }
}

/// `steps = round(fraction·total)`, at least 1 and at most `total` (for `total >= 1`).
fn fraction_of(fraction: f64, total: u64) -> u64 {
    ((fraction * total as f64).round() as u64).clamp(1, total.max(1))
}

/// A warm-up of `warmup` steps in front of `curve`, with optax `join_schedules` semantics. The
/// warm-up piece is written in the curve's scale: in factors of the stage value when the curve
/// scales it, in absolute values otherwise.
fn join_after(warmup: Schedule, stage_value: f64, warmup_steps: u64, curve: Curve) -> Curve {
    let rescale = |x: f64| {
        if curve.scale == stage_value {
            x
        } else {
            x * stage_value / curve.scale
        }
    };
    let first = match warmup {
        Schedule::LinearWarmup { start, end, steps } => Schedule::LinearWarmup {
            start: rescale(start),
            end: rescale(end),
            steps,
        },
        Schedule::Constant { value } => Schedule::constant(rescale(value)),
        other => other,
    };
    Curve::new(
        curve.scale,
        Schedule::Join {
            boundaries: vec![warmup_steps],
            schedules: vec![first, curve.schedule],
        },
    )
}

/// Where a within-stage schedule leaves its allowed range ([`StageSchedule::check_values`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueViolation {
    /// Dotted path of the schedule inside the stage's schedule, e.g. `lr` or `then.momentum`.
    pub field: String,
    /// What it sets: `lr` or `beta`.
    pub quantity: &'static str,
    /// The offending value.
    pub value: f64,
    /// The step, counted from the start of the stage, or from the end of the warm-up when
    /// `after_warmup` is set (a warm-up in epochs, whose length in steps is not known yet).
    pub step: u64,
    /// Whether `step` counts from the end of the warm-up.
    pub after_warmup: bool,
    /// The allowed range.
    pub allowed: &'static str,
}

impl StageSchedule {
    /// `(lr, beta)` at `step` of a stage of `total_steps` steps whose constants are `lr`, `beta`.
    ///
    /// A `warmup_then` with `warmup_epochs` needs the stage's steps per epoch: use
    /// [`apply_in`](Self::apply_in) (or [`Stage::hyper_at`](super::Stage::hyper_at)); here the
    /// warm-up is then taken as `warmup_epochs` steps.
    pub fn apply(&self, lr: f64, beta: f64, step: u64, total_steps: u64) -> (f64, f64) {
        self.apply_in(lr, beta, step, total_steps, None)
    }

    /// As [`apply`](Self::apply), for a stage of `steps_per_epoch` steps per epoch (`None` for
    /// a stage given in steps).
    pub fn apply_in(
        &self,
        lr: f64,
        beta: f64,
        step: u64,
        total_steps: u64,
        steps_per_epoch: Option<u64>,
    ) -> (f64, f64) {
        self.curves(lr, beta, total_steps, steps_per_epoch)
            .at(step, beta)
    }

    /// The warm-up length in steps of a `warmup_then` (0 for the other kinds).
    pub fn warmup_len(&self, steps_per_epoch: Option<u64>) -> u64 {
        match self {
            StageSchedule::WarmupThen {
                warmup_steps,
                warmup_epochs,
                ..
            } => match (warmup_steps, warmup_epochs) {
                (Some(s), _) => *s,
                (None, Some(e)) => e.saturating_mul(steps_per_epoch.unwrap_or(1)),
                (None, None) => 0,
            },
            _ => 0,
        }
    }

    /// The stage's lr and momentum as step-indexed curves, for a stage of `total_steps` steps
    /// (`steps_per_epoch` as in [`apply_in`](Self::apply_in)) whose constants are `lr`, `beta`.
    ///
    /// ```
    /// use stagewise_core::schedule::{CooldownShape, StageSchedule};
    /// let wsd = StageSchedule::Wsd { cooldown_fraction: 0.2, shape: CooldownShape::Linear, min_factor: 0.0 };
    /// let c = wsd.curves(0.5, 0.9, 100, None);
    /// assert_eq!(c.at(79, 0.9), (0.5, 0.9));                    // stable: the stage lr
    /// assert_eq!(c.lr.value(90), 0.25);                          // half-way through the cooldown
    /// ```
    pub fn curves(
        &self,
        lr: f64,
        beta: f64,
        total_steps: u64,
        steps_per_epoch: Option<u64>,
    ) -> StageCurves {
        let scaled = |schedule| StageCurves {
            lr: Curve::new(lr, schedule),
            momentum: None,
        };
        match self {
            StageSchedule::Cosine { min_factor } => {
                scaled(Schedule::cosine(1.0, *min_factor, total_steps.max(1)))
            }
            StageSchedule::Linear { min_factor } => scaled(Schedule::LinearWarmup {
                start: 1.0,
                end: *min_factor,
                steps: total_steps.max(1),
            }),
            StageSchedule::Warmup {
                start_factor,
                fraction,
            } => {
                let ramp = (fraction * total_steps as f64).ceil().max(1.0) as u64;
                scaled(Schedule::LinearWarmup {
                    start: *start_factor,
                    end: 1.0,
                    steps: ramp,
                })
            }
            StageSchedule::Wsd {
                cooldown_fraction,
                shape,
                min_factor,
            } => {
                let total = total_steps.max(1);
                let cooldown = fraction_of(*cooldown_fraction, total);
                scaled(Schedule::Join {
                    boundaries: vec![total - cooldown],
                    schedules: vec![
                        Schedule::constant(1.0),
                        shape.decay(1.0, *min_factor, cooldown),
                    ],
                })
            }
            StageSchedule::OneCycle(shape) => {
                let oc = OneCycle::new(lr, total_steps, shape.clone());
                StageCurves {
                    momentum: shape
                        .cycle_momentum
                        .then(|| Curve::new(1.0, Schedule::OneCycleMomentum(oc.clone()))),
                    lr: Curve::new(1.0, Schedule::OneCycleLr(oc)),
                }
            }
            StageSchedule::WarmupThen {
                start_factor, then, ..
            } => {
                let w = self.warmup_len(steps_per_epoch);
                let rest = total_steps.saturating_sub(w);
                let inner = match then {
                    Some(t) => t.curves(lr, beta, rest, steps_per_epoch),
                    None => scaled(Schedule::constant(1.0)),
                };
                let ramp = Schedule::LinearWarmup {
                    start: *start_factor,
                    end: 1.0,
                    steps: w.max(1),
                };
                StageCurves {
                    lr: join_after(ramp, lr, w, inner.lr),
                    momentum: inner
                        .momentum
                        .map(|m| join_after(Schedule::constant(1.0), beta, w, m)),
                }
            }
            StageSchedule::Custom {
                mode,
                lr: lr_s,
                momentum,
            } => {
                let curve = |base: f64, s: &Option<Schedule>| match (s, mode) {
                    (None, _) => Curve::new(base, Schedule::constant(1.0)),
                    (Some(s), Combine::Multiply) => Curve::new(base, s.clone()),
                    (Some(s), Combine::Replace) => Curve::new(1.0, s.clone()),
                };
                StageCurves {
                    lr: curve(lr, lr_s),
                    momentum: momentum.as_ref().map(|_| curve(beta, momentum)),
                }
            }
        }
    }

    /// Checks the parameters that do not depend on the stage length.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let factor = |name: &str, x: f64| {
            if (0.0..=1.0).contains(&x) {
                Ok(())
            } else {
                Err(ScheduleError::new(name, x, format!("0 <= {name} <= 1")))
            }
        };
        match self {
            StageSchedule::Cosine { min_factor } | StageSchedule::Linear { min_factor } => {
                factor("min_factor", *min_factor)?;
            }
            StageSchedule::Warmup {
                start_factor,
                fraction,
            } => {
                factor("start_factor", *start_factor)?;
                if !(*fraction > 0.0 && *fraction <= 1.0) {
                    return Err(ScheduleError::new(
                        "fraction",
                        fraction,
                        "0 < fraction <= 1",
                    ));
                }
            }
            StageSchedule::Wsd {
                cooldown_fraction,
                min_factor,
                ..
            } => {
                if !(*cooldown_fraction > 0.0 && *cooldown_fraction <= 1.0) {
                    return Err(ScheduleError::new(
                        "cooldown_fraction",
                        cooldown_fraction,
                        "0 < cooldown_fraction <= 1",
                    ));
                }
                factor("min_factor", *min_factor)?;
            }
            StageSchedule::OneCycle(shape) => shape.validate()?,
            StageSchedule::WarmupThen {
                start_factor,
                warmup_steps,
                warmup_epochs,
                then,
            } => {
                factor("start_factor", *start_factor)?;
                match (warmup_steps, warmup_epochs) {
                    (Some(_), Some(e)) => {
                        return Err(ScheduleError::new(
                            "warmup_epochs",
                            e,
                            "exactly one of warmup_steps and warmup_epochs (both were given)",
                        ))
                    }
                    (None, None) => {
                        return Err(ScheduleError::new(
                            "warmup_steps",
                            "none",
                            "exactly one of warmup_steps and warmup_epochs (neither was given)",
                        ))
                    }
                    (Some(0), None) => {
                        return Err(ScheduleError::new("warmup_steps", 0, "warmup_steps >= 1"))
                    }
                    (None, Some(0)) => {
                        return Err(ScheduleError::new("warmup_epochs", 0, "warmup_epochs >= 1"))
                    }
                    _ => {}
                }
                if let Some(t) = then {
                    if matches!(**t, StageSchedule::WarmupThen { .. }) {
                        return Err(ScheduleError::new(
                            "then.kind",
                            "warmup_then",
                            "any kind but warmup_then (one warm-up per stage)",
                        ));
                    }
                    t.validate().map_err(|e| e.within("then"))?;
                }
            }
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

    /// Checks the parameters once the stage length in steps is known: one-cycle needs every
    /// phase to be non-empty, a warm-up must end before the stage does.
    pub fn validate_for_length(&self, lr: f64, total_steps: u64) -> Result<(), ScheduleError> {
        self.validate()?;
        match self {
            StageSchedule::OneCycle(shape) => {
                OneCycle::new(lr, total_steps, shape.clone()).validate()?;
            }
            StageSchedule::WarmupThen {
                warmup_steps: Some(w),
                then,
                ..
            } => {
                if *w >= total_steps {
                    return Err(ScheduleError::new(
                        "warmup_steps",
                        w,
                        format!(
                            "warmup_steps < {total_steps}, the stage's length in steps: the \
                             warm-up must end inside the stage"
                        ),
                    ));
                }
                if let Some(t) = then {
                    t.validate_for_length(lr, total_steps - w)
                        .map_err(|e| e.within("then"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks a `warmup_then` in epochs against a stage of `epochs` epochs and
    /// `steps_per_epoch` steps per epoch (what [`validate_for_length`](Self::validate_for_length)
    /// cannot see).
    pub fn validate_for_epochs(
        &self,
        lr: f64,
        epochs: u64,
        steps_per_epoch: Option<u64>,
    ) -> Result<(), ScheduleError> {
        if let StageSchedule::WarmupThen {
            warmup_epochs: Some(w),
            then,
            ..
        } = self
        {
            if *w >= epochs {
                return Err(ScheduleError::new(
                    "warmup_epochs",
                    w,
                    format!(
                        "warmup_epochs < {epochs}, the stage's length in epochs: the warm-up \
                         must end inside the stage"
                    ),
                ));
            }
            if let (Some(t), Some(spe)) = (then, steps_per_epoch) {
                t.validate_for_length(lr, (epochs - w).saturating_mul(spe))
                    .map_err(|e| e.within("then"))?;
            }
        }
        Ok(())
    }

    /// Checks every step of the `custom` schedules (also after a warm-up): the lr must be
    /// finite and `>= 0`, β finite with `0 <= β < 1`. `horizon` is the stage's length in steps
    /// when known; without it every step the schedule defines is checked (it is constant, or
    /// repeats itself, after its last breakpoint). The fitted kinds cannot leave these ranges
    /// once [`validate`](Self::validate) accepts them.
    ///
    /// Exact and cheap: each piece of a schedule is monotone, so only the ends of the pieces
    /// (and a bisection in a piece that leaves the range) are evaluated.
    pub fn check_values(
        &self,
        lr: f64,
        beta: f64,
        horizon: Option<u64>,
    ) -> Result<(), ValueViolation> {
        match self {
            StageSchedule::Custom {
                mode,
                lr: lr_s,
                momentum,
            } => {
                let comb = |base: f64, s: &Schedule, t: u64| match mode {
                    Combine::Multiply => base * s.value(t),
                    Combine::Replace => s.value(t),
                };
                if let Some(s) = lr_s {
                    let ok = |x: f64| x.is_finite() && x >= 0.0;
                    if let Some((step, value)) =
                        first_violation(&s.breakpoints(), horizon, |t| comb(lr, s, t), ok)
                    {
                        return Err(ValueViolation {
                            field: "lr".into(),
                            quantity: "lr",
                            value,
                            step,
                            after_warmup: false,
                            allowed: "a finite lr >= 0 at every step",
                        });
                    }
                }
                if let Some(s) = momentum {
                    let ok = |x: f64| (0.0..1.0).contains(&x);
                    if let Some((step, value)) =
                        first_violation(&s.breakpoints(), horizon, |t| comb(beta, s, t), ok)
                    {
                        return Err(ValueViolation {
                            field: "momentum".into(),
                            quantity: "beta",
                            value,
                            step,
                            after_warmup: false,
                            allowed: "0 <= beta < 1 at every step",
                        });
                    }
                }
                Ok(())
            }
            StageSchedule::WarmupThen {
                warmup_steps, then, ..
            } => {
                let Some(t) = then else { return Ok(()) };
                let offset = *warmup_steps;
                let inner = horizon.zip(offset).map(|(h, w)| h.saturating_sub(w));
                t.check_values(lr, beta, inner).map_err(|mut v| {
                    v.field = format!("then.{}", v.field);
                    match offset {
                        Some(w) => v.step += w,
                        None => v.after_warmup = true,
                    }
                    v
                })
            }
            _ => Ok(()),
        }
    }

    /// A short label for tables, e.g. `cosine(min 0)` or `one_cycle(pct 0.3)`.
    pub fn summary(&self) -> String {
        match self {
            StageSchedule::Cosine { min_factor } => format!("cosine(min {min_factor})"),
            StageSchedule::Linear { min_factor } => format!("linear(min {min_factor})"),
            StageSchedule::Warmup {
                start_factor,
                fraction,
            } => {
                format!("warmup({start_factor}→1, {fraction})")
            }
            StageSchedule::Wsd {
                cooldown_fraction,
                shape,
                min_factor,
            } => format!("wsd(cooldown {cooldown_fraction} {shape}, min {min_factor})"),
            StageSchedule::OneCycle(s) => {
                let m = if s.cycle_momentum {
                    format!(", β {}↔{}", s.max_momentum, s.base_momentum)
                } else {
                    String::new()
                };
                format!("one_cycle(pct {}{m})", s.pct_start)
            }
            StageSchedule::WarmupThen {
                start_factor,
                warmup_steps,
                warmup_epochs,
                then,
            } => {
                let len = match (warmup_steps, warmup_epochs) {
                    (Some(s), _) => format!("{s} st"),
                    (None, Some(e)) => format!("{e} ep"),
                    (None, None) => "?".into(),
                };
                let warm = format!("warmup({start_factor}→1, {len})");
                match then {
                    Some(t) => format!("{warm} then {}", t.summary()),
                    None => warm,
                }
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

    #[test]
    fn linear_and_wsd_within_a_stage() {
        let lin = StageSchedule::Linear { min_factor: 0.0 };
        assert_eq!(lin.apply(0.4, 0.9, 0, 10), (0.4, 0.9));
        assert!((lin.apply(0.4, 0.9, 5, 10).0 - 0.2).abs() < 1e-15);
        let wsd = StageSchedule::Wsd {
            cooldown_fraction: 0.25,
            shape: CooldownShape::Sqrt,
            min_factor: 0.5,
        };
        // T = 16: 4 cooldown steps from step 12.
        assert_eq!(wsd.apply(1.0, 0.9, 11, 16).0, 1.0);
        assert_eq!(wsd.apply(1.0, 0.9, 12, 16).0, 1.0);
        assert!((wsd.apply(1.0, 0.9, 13, 16).0 - (0.5 + 0.5 * 0.5)).abs() < 1e-15);
        // A cooldown of the whole stage, or of a 1-step stage.
        let all = StageSchedule::Wsd {
            cooldown_fraction: 1.0,
            shape: CooldownShape::Linear,
            min_factor: 0.0,
        };
        assert_eq!(all.apply(1.0, 0.9, 3, 4).0, lin.apply(1.0, 0.9, 3, 4).0);
        assert_eq!(all.apply(1.0, 0.9, 0, 1).0, 1.0);
    }

    #[test]
    fn warm_up_then_restarts_the_schedule_after_it() {
        let cos = StageSchedule::Cosine { min_factor: 0.0 };
        let warm = StageSchedule::WarmupThen {
            start_factor: 0.0,
            warmup_steps: Some(4),
            warmup_epochs: None,
            then: Some(Box::new(cos.clone())),
        };
        assert_eq!(warm.apply(1.0, 0.9, 0, 20), (0.0, 0.9));
        assert_eq!(warm.apply(1.0, 0.9, 2, 20), (0.5, 0.9));
        for t in 4..20 {
            assert_eq!(warm.apply(1.0, 0.9, t, 20), cos.apply(1.0, 0.9, t - 4, 16));
        }
        // In epochs: W = epochs × steps per epoch.
        let ep = StageSchedule::WarmupThen {
            start_factor: 0.5,
            warmup_steps: None,
            warmup_epochs: Some(2),
            then: None,
        };
        assert_eq!(ep.warmup_len(Some(3)), 6);
        assert_eq!(ep.apply_in(1.0, 0.9, 3, 30, Some(3)).0, 0.75);
        assert_eq!(ep.apply_in(1.0, 0.9, 6, 30, Some(3)).0, 1.0);
        // Before one-cycle (which sets lr and β rather than scaling them): the warm-up ramps to
        // the stage lr with the stage β, then one-cycle starts at max_lr/div_factor and 0.95.
        let oc = StageSchedule::WarmupThen {
            start_factor: 0.0,
            warmup_steps: Some(10),
            warmup_epochs: None,
            then: Some(Box::new(StageSchedule::OneCycle(OneCycleShape::default()))),
        };
        let (lr, beta) = oc.apply(2.0, 0.5, 5, 110);
        assert_eq!((lr, beta), (1.0, 0.5));
        let (lr, beta) = oc.apply(2.0, 0.5, 10, 110);
        assert!((lr - 2.0 / 25.0).abs() < 1e-15 && beta == 0.95);
        assert!(oc
            .summary()
            .starts_with("warmup(0→1, 10 st) then one_cycle"));
    }

    #[test]
    fn value_checks_only_look_at_custom_schedules() {
        let ok = StageSchedule::Cosine { min_factor: 0.0 };
        assert!(ok.check_values(0.1, 0.9, None).is_ok());
        let bad = StageSchedule::Custom {
            mode: Combine::Replace,
            lr: Some(Schedule::LinearWarmup {
                start: 0.1,
                end: -0.1,
                steps: 10,
            }),
            momentum: None,
        };
        let v = bad.check_values(0.1, 0.9, None).unwrap_err();
        assert_eq!((v.field.as_str(), v.step, v.after_warmup), ("lr", 6, false));
        assert!(bad.check_values(0.1, 0.9, Some(6)).is_ok());
    }
}
