//! Step-indexed schedules: small pieces that compose (constant, piecewise constant, cosine,
//! linear ramp, 1−√ decay, one-cycle, join), in the style of optax's schedules.

use serde::{Deserialize, Serialize};

use super::error::ScheduleError;
use super::onecycle::OneCycle;

/// A scalar hyperparameter as a function of the (0-based) step.
///
/// Serialized with a `kind` tag, so a schedule can be written in TOML:
///
/// ```
/// use stagewise_core::schedule::Schedule;
/// let s: Schedule = toml::from_str(r#"
///     kind = "join"
///     boundaries = [5]
///     schedules = [
///         { kind = "linear_warmup", start = 0.0, end = 0.1, steps = 5 },
///         { kind = "cosine", base = 0.1, t_max = 10 },
///     ]
/// "#).unwrap();
/// s.validate().unwrap();
/// assert_eq!(s.value(0), 0.0);
/// assert!((s.value(5) - 0.1).abs() < 1e-12);   // the cosine sees step − 5 = 0
/// assert!(s.value(15).abs() < 1e-12);           // and is over at step 5 + 10
/// ```
///
/// [`Schedule::value`] never panics, even on a schedule that fails [`Schedule::validate`]
/// (it may then return NaN or a meaningless number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The same value at every step.
    Constant {
        /// The value.
        value: f64,
    },
    /// `values[i]` for `boundaries[i-1] <= step < boundaries[i]`: the value changes *at* each
    /// boundary (like PyTorch's `MultiStepLR` milestones). Needs
    /// `values.len() == boundaries.len() + 1` and strictly increasing boundaries.
    PiecewiseConstant {
        /// Steps at which the value changes, strictly increasing.
        boundaries: Vec<u64>,
        /// One more value than boundaries.
        values: Vec<f64>,
    },
    /// Cosine annealing from `base` to `eta_min` over `t_max` steps, PyTorch
    /// `CosineAnnealingLR` closed form `eta_min + (base − eta_min)(1 + cos(π·t/t_max))/2`.
    /// Without restarts the value stays at `eta_min` for `t >= t_max`; with `restarts = true`
    /// it restarts from `base` every `t_max` steps (SGDR with a fixed period).
    Cosine {
        /// Value at step 0.
        base: f64,
        /// Value reached at `t_max`.
        #[serde(default)]
        eta_min: f64,
        /// Annealing length (and restart period) in steps, `>= 1`.
        t_max: u64,
        /// Restart every `t_max` steps instead of staying at `eta_min`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        restarts: bool,
    },
    /// Linear ramp from `start` (step 0) to `end` (step `steps`), then `end` forever: optax
    /// `linear_schedule(start, end, steps)`, and PyTorch `LinearLR` (factors `start`, `end`,
    /// `total_iters = steps`) times the base value. A warm-up when `end > start`, a linear decay
    /// when `end < start`.
    LinearWarmup {
        /// Value at step 0.
        start: f64,
        /// Value from step `steps` on.
        end: f64,
        /// Length of the ramp, `>= 1`.
        steps: u64,
    },
    /// The "1−√" decay of Hägele et al. (2024): from `start` (step 0) to `end` (step `steps`)
    /// as `end + (start − end)·(1 − √(t/steps))`, then `end` forever. Used as the cooldown of a
    /// warmup-stable-decay schedule.
    SqrtDecay {
        /// Value at step 0.
        start: f64,
        /// Value from step `steps` on.
        end: f64,
        /// Length of the decay, `>= 1`.
        steps: u64,
    },
    /// The learning rate of a [`OneCycle`] policy.
    OneCycleLr(OneCycle),
    /// The momentum of a [`OneCycle`] policy (`max_momentum` when `cycle_momentum` is off).
    OneCycleMomentum(OneCycle),
    /// optax-style `join_schedules`: `schedules[i]` is in force from `boundaries[i-1]` on and
    /// sees the step *relative to that boundary* (`step − boundaries[i-1]`).
    Join {
        /// Steps at which the next schedule takes over, strictly increasing.
        boundaries: Vec<u64>,
        /// One more schedule than boundaries.
        schedules: Vec<Schedule>,
    },
}

/// Index of the piece in force at `step`, given sorted boundaries (change *at* a boundary).
fn piece(boundaries: &[u64], step: u64) -> usize {
    boundaries.partition_point(|&b| b <= step)
}

impl Schedule {
    /// Shorthand for [`Schedule::Constant`].
    pub fn constant(value: f64) -> Self {
        Schedule::Constant { value }
    }

    /// Shorthand for a [`Schedule::Cosine`] without restarts.
    pub fn cosine(base: f64, eta_min: f64, t_max: u64) -> Self {
        Schedule::Cosine {
            base,
            eta_min,
            t_max,
            restarts: false,
        }
    }

    /// The value at `step`.
    pub fn value(&self, step: u64) -> f64 {
        match self {
            Schedule::Constant { value } => *value,
            Schedule::PiecewiseConstant { boundaries, values } => {
                let i = piece(boundaries, step);
                values.get(i).or(values.last()).copied().unwrap_or(f64::NAN)
            }
            Schedule::Cosine {
                base,
                eta_min,
                t_max,
                restarts,
            } => {
                if *t_max == 0 {
                    return *eta_min;
                }
                let t = if *restarts {
                    step % t_max
                } else if step >= *t_max {
                    return *eta_min;
                } else {
                    step
                };
                let phase = std::f64::consts::PI * t as f64 / *t_max as f64;
                eta_min + (base - eta_min) * (1.0 + phase.cos()) / 2.0
            }
            Schedule::LinearWarmup { start, end, steps } => {
                if step >= *steps {
                    *end
                } else {
                    start + (end - start) * (step as f64 / *steps as f64)
                }
            }
            Schedule::SqrtDecay { start, end, steps } => {
                if step >= *steps {
                    *end
                } else {
                    end + (start - end) * (1.0 - (step as f64 / *steps as f64).sqrt())
                }
            }
            Schedule::OneCycleLr(oc) => oc.lr(step),
            Schedule::OneCycleMomentum(oc) => oc.momentum(step).unwrap_or(oc.max_momentum),
            Schedule::Join {
                boundaries,
                schedules,
            } => {
                let i = piece(boundaries, step);
                let offset = if i == 0 {
                    0
                } else {
                    boundaries.get(i - 1).copied().unwrap_or(0)
                };
                match schedules.get(i).or(schedules.last()) {
                    Some(s) => s.value(step.saturating_sub(offset)),
                    None => f64::NAN,
                }
            }
        }
    }

    /// Checks the parameters; the error names the (dotted) field and its allowed range.
    ///
    /// Values must be finite. Step counts that divide must be `>= 1`. Boundaries must be
    /// strictly increasing, with one more value (or schedule) than boundaries.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        fn finite(field: &str, x: f64) -> Result<(), ScheduleError> {
            if x.is_finite() {
                Ok(())
            } else {
                Err(ScheduleError::new(field, x, "a finite number"))
            }
        }
        fn increasing(boundaries: &[u64]) -> Result<(), ScheduleError> {
            match boundaries.windows(2).position(|w| w[0] >= w[1]) {
                None => Ok(()),
                Some(i) => Err(ScheduleError::new(
                    format!("boundaries[{}]", i + 1),
                    boundaries[i + 1],
                    format!("strictly increasing boundaries (> {})", boundaries[i]),
                )),
            }
        }
        match self {
            Schedule::Constant { value } => finite("value", *value),
            Schedule::PiecewiseConstant { boundaries, values } => {
                increasing(boundaries)?;
                if values.len() != boundaries.len() + 1 {
                    return Err(ScheduleError::new(
                        "values",
                        format!("{} values", values.len()),
                        format!(
                            "exactly boundaries.len() + 1 = {} values",
                            boundaries.len() + 1
                        ),
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    finite(&format!("values[{i}]"), *v)?;
                }
                Ok(())
            }
            Schedule::Cosine {
                base,
                eta_min,
                t_max,
                ..
            } => {
                finite("base", *base)?;
                finite("eta_min", *eta_min)?;
                if *t_max == 0 {
                    return Err(ScheduleError::new("t_max", t_max, "t_max >= 1"));
                }
                Ok(())
            }
            Schedule::LinearWarmup { start, end, steps }
            | Schedule::SqrtDecay { start, end, steps } => {
                finite("start", *start)?;
                finite("end", *end)?;
                if *steps == 0 {
                    return Err(ScheduleError::new("steps", steps, "steps >= 1"));
                }
                Ok(())
            }
            Schedule::OneCycleLr(oc) | Schedule::OneCycleMomentum(oc) => oc.validate(),
            Schedule::Join {
                boundaries,
                schedules,
            } => {
                increasing(boundaries)?;
                if schedules.len() != boundaries.len() + 1 {
                    return Err(ScheduleError::new(
                        "schedules",
                        format!("{} schedules", schedules.len()),
                        format!(
                            "exactly boundaries.len() + 1 = {} schedules",
                            boundaries.len() + 1
                        ),
                    ));
                }
                for (i, s) in schedules.iter().enumerate() {
                    s.validate()
                        .map_err(|e| e.within(&format!("schedules[{i}]")))?;
                }
                Ok(())
            }
        }
    }

    /// A short human-readable summary, e.g. `cosine(0.1→0, 100)`.
    pub fn summary(&self) -> String {
        match self {
            Schedule::Constant { value } => format!("constant({value})"),
            Schedule::PiecewiseConstant { boundaries, .. } => {
                format!("piecewise({} pieces)", boundaries.len() + 1)
            }
            Schedule::Cosine {
                base,
                eta_min,
                t_max,
                restarts,
            } => {
                let r = if *restarts { ", restarts" } else { "" };
                format!("cosine({base}→{eta_min}, {t_max}{r})")
            }
            Schedule::LinearWarmup { start, end, steps } => {
                if end < start {
                    format!("linear({start}→{end}, {steps})")
                } else {
                    format!("warmup({start}→{end}, {steps})")
                }
            }
            Schedule::SqrtDecay { start, end, steps } => {
                format!("1−sqrt({start}→{end}, {steps})")
            }
            Schedule::OneCycleLr(oc) => format!("one_cycle_lr({}, {})", oc.max_lr, oc.total_steps),
            Schedule::OneCycleMomentum(oc) => {
                format!("one_cycle_momentum({}, {})", oc.max_lr, oc.total_steps)
            }
            Schedule::Join { schedules, .. } => format!("join({} schedules)", schedules.len()),
        }
    }

    /// The steps at which a new monotone piece of the schedule starts, sorted, starting with 0.
    ///
    /// Between two consecutive breakpoints the value is monotone in the step (constant,
    /// linear, a half cosine, a square root, a one-cycle phase); from the last one on it is
    /// constant, or (cosine with restarts) repeats values taken after an earlier breakpoint.
    /// [`first_violation`] relies on this to check every step of a schedule by looking at the
    /// ends of each piece only.
    pub fn breakpoints(&self) -> Vec<u64> {
        let mut out = match self {
            Schedule::Constant { .. } => vec![0],
            Schedule::PiecewiseConstant { boundaries, .. } => std::iter::once(0)
                .chain(boundaries.iter().copied())
                .collect(),
            Schedule::Cosine { t_max, .. } => vec![0, *t_max],
            Schedule::LinearWarmup { steps, .. } | Schedule::SqrtDecay { steps, .. } => {
                vec![0, *steps]
            }
            Schedule::OneCycleLr(oc) | Schedule::OneCycleMomentum(oc) => oc.phase_starts(),
            Schedule::Join {
                boundaries,
                schedules,
            } => {
                let mut out = Vec::new();
                for (i, s) in schedules.iter().enumerate() {
                    let start = if i == 0 {
                        Some(0)
                    } else {
                        boundaries.get(i - 1).copied()
                    };
                    let Some(start) = start else { break };
                    let end = boundaries.get(i).copied().unwrap_or(u64::MAX);
                    out.extend(
                        s.breakpoints()
                            .into_iter()
                            .map(|b| start.saturating_add(b))
                            .take_while(|&b| b < end),
                    );
                }
                out
            }
        };
        out.sort_unstable();
        out.dedup();
        if out.first() != Some(&0) {
            out.insert(0, 0);
        }
        out
    }
}

/// The first step in `[0, horizon)` (every step when `horizon` is `None`) at which `ok` refuses
/// `f(step)`, with the refused value.
///
/// `breaks` are the [`Schedule::breakpoints`] of the schedule behind `f`, and `f` must be a
/// monotone function of that schedule's value (the stage value times it, or the value itself),
/// while `ok` accepts an interval of values (e.g. `0 <= β < 1`). Then on each piece the accepted
/// steps form a prefix, so the ends of the pieces and a bisection find the first refused step
/// without evaluating every step.
pub fn first_violation(
    breaks: &[u64],
    horizon: Option<u64>,
    f: impl Fn(u64) -> f64,
    ok: impl Fn(f64) -> bool,
) -> Option<(u64, f64)> {
    for (k, &a) in breaks.iter().enumerate() {
        if horizon.is_some_and(|h| a >= h) {
            break;
        }
        let fa = f(a);
        if !ok(fa) {
            return Some((a, fa));
        }
        // The last step of the piece: before the next breakpoint, or the horizon. Past the
        // last breakpoint without a horizon the schedule is constant (or repeats itself).
        let end = match (breaks.get(k + 1), horizon) {
            (Some(&b), Some(h)) => b.min(h),
            (Some(&b), None) => b,
            (None, Some(h)) => h,
            (None, None) => continue,
        };
        if end <= a + 1 {
            continue;
        }
        let last = end - 1;
        if ok(f(last)) {
            continue;
        }
        let (mut lo, mut hi) = (a, last);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if ok(f(mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return Some((hi, f(hi)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::OneCycleShape;

    #[test]
    fn piecewise_changes_at_boundaries() {
        let s = Schedule::PiecewiseConstant {
            boundaries: vec![3, 7],
            values: vec![1.0, 0.5, 0.25],
        };
        s.validate().unwrap();
        let got: Vec<f64> = (0..9).map(|t| s.value(t)).collect();
        assert_eq!(got, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]);
    }

    #[test]
    fn cosine_endpoints_midpoint_and_clamp() {
        let s = Schedule::cosine(0.1, 0.001, 100);
        assert_eq!(s.value(0), 0.1);
        assert!((s.value(50) - (0.001 + 0.099 / 2.0)).abs() < 1e-15);
        assert!((s.value(100) - 0.001).abs() < 1e-15);
        assert_eq!(s.value(10_000), 0.001);
        // PyTorch CosineAnnealingLR closed form at t = 30.
        let expect = 0.001 + 0.099 * (1.0 + (std::f64::consts::PI * 0.3).cos()) / 2.0;
        assert!((s.value(30) - expect).abs() < 1e-15);
    }

    #[test]
    fn cosine_restarts_periodically() {
        let s = Schedule::Cosine {
            base: 1.0,
            eta_min: 0.0,
            t_max: 10,
            restarts: true,
        };
        assert_eq!(s.value(10), 1.0);
        assert_eq!(s.value(23), s.value(3));
    }

    #[test]
    fn warmup_is_linear_then_flat() {
        let s = Schedule::LinearWarmup {
            start: 0.0,
            end: 1.0,
            steps: 4,
        };
        let got: Vec<f64> = (0..6).map(|t| s.value(t)).collect();
        assert_eq!(got, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
    }

    #[test]
    fn join_shifts_steps() {
        let s = Schedule::Join {
            boundaries: vec![2, 5],
            schedules: vec![
                Schedule::LinearWarmup {
                    start: 0.0,
                    end: 1.0,
                    steps: 2,
                },
                Schedule::LinearWarmup {
                    start: 10.0,
                    end: 13.0,
                    steps: 3,
                },
                Schedule::constant(7.0),
            ],
        };
        s.validate().unwrap();
        let got: Vec<f64> = (0..7).map(|t| s.value(t)).collect();
        assert_eq!(got, [0.0, 0.5, 10.0, 11.0, 12.0, 7.0, 7.0]);
    }

    #[test]
    fn one_cycle_variants_delegate() {
        let oc = OneCycle::new(1.0, 100, OneCycleShape::default());
        assert_eq!(Schedule::OneCycleLr(oc.clone()).value(29), oc.lr(29));
        assert_eq!(Schedule::OneCycleMomentum(oc.clone()).value(29), 0.85);
    }

    #[test]
    fn validation_names_nested_fields() {
        let s = Schedule::Join {
            boundaries: vec![5],
            schedules: vec![Schedule::constant(1.0), Schedule::cosine(1.0, 0.0, 0)],
        };
        assert_eq!(s.validate().unwrap_err().field, "schedules[1].t_max");
        let s = Schedule::PiecewiseConstant {
            boundaries: vec![5, 5],
            values: vec![1.0; 3],
        };
        assert_eq!(s.validate().unwrap_err().field, "boundaries[1]");
        let s = Schedule::PiecewiseConstant {
            boundaries: vec![5],
            values: vec![1.0],
        };
        assert_eq!(s.validate().unwrap_err().field, "values");
        let s = Schedule::constant(f64::INFINITY);
        assert_eq!(s.validate().unwrap_err().field, "value");
    }

    #[test]
    fn invalid_schedules_do_not_panic() {
        let s = Schedule::PiecewiseConstant {
            boundaries: vec![1, 2],
            values: vec![],
        };
        assert!(s.value(5).is_nan());
        let s = Schedule::Join {
            boundaries: vec![1],
            schedules: vec![],
        };
        assert!(s.value(5).is_nan());
        let s = Schedule::cosine(1.0, 0.0, 0);
        assert_eq!(s.value(0), 0.0);
    }

    #[test]
    fn toml_round_trip_and_unknown_key() {
        let s = Schedule::Join {
            boundaries: vec![3],
            schedules: vec![
                Schedule::constant(0.5),
                Schedule::OneCycleLr(OneCycle::new(1.0, 50, OneCycleShape::default())),
            ],
        };
        let text = toml::to_string(&s).unwrap();
        let back: Schedule = toml::from_str(&text).unwrap();
        assert_eq!(back, s);
        let err = toml::from_str::<Schedule>("kind = \"constant\"\nvalue = 1.0\nvalu = 2.0\n");
        assert!(err.unwrap_err().to_string().contains("valu"));
        let err = toml::from_str::<Schedule>(
            "kind = \"one_cycle_lr\"\nmax_lr = 1.0\ntotal_steps = 10\npct = 0.3\n",
        );
        assert!(err.unwrap_err().to_string().contains("pct"));
    }

    #[test]
    fn sqrt_decay_is_one_minus_sqrt() {
        let s = Schedule::SqrtDecay {
            start: 1.0,
            end: 0.2,
            steps: 16,
        };
        s.validate().unwrap();
        assert_eq!(s.value(0), 1.0);
        assert!((s.value(4) - (0.2 + 0.8 * 0.5)).abs() < 1e-15);
        assert_eq!((s.value(16), s.value(99)), (0.2, 0.2));
        assert_eq!(s.breakpoints(), [0, 16]);
        let e = Schedule::SqrtDecay {
            start: 1.0,
            end: 0.0,
            steps: 0,
        };
        assert_eq!(e.validate().unwrap_err().field, "steps");
    }

    /// `first_violation` finds the same step as a scan of every step.
    #[test]
    fn first_violation_agrees_with_a_scan() {
        let oc = OneCycle::new(1.3, 40, OneCycleShape::default());
        let schedules = [
            Schedule::cosine(1.2, 0.8, 30),
            Schedule::Cosine {
                base: 0.5,
                eta_min: 1.4,
                t_max: 9,
                restarts: true,
            },
            Schedule::LinearWarmup {
                start: 0.3,
                end: 1.7,
                steps: 50,
            },
            Schedule::SqrtDecay {
                start: 2.0,
                end: -0.5,
                steps: 33,
            },
            Schedule::PiecewiseConstant {
                boundaries: vec![0, 7, 20],
                values: vec![0.5, 0.9, 1.2, 0.1],
            },
            Schedule::OneCycleLr(oc.clone()),
            Schedule::Join {
                boundaries: vec![12, 30],
                schedules: vec![
                    Schedule::OneCycleLr(OneCycle::new(0.95, 20, OneCycleShape::default())),
                    Schedule::SqrtDecay {
                        start: -0.2,
                        end: 1.5,
                        steps: 25,
                    },
                    Schedule::constant(0.5),
                ],
            },
            Schedule::Join {
                boundaries: vec![5],
                schedules: vec![
                    Schedule::constant(0.2),
                    Schedule::Cosine {
                        base: 1.1,
                        eta_min: 0.0,
                        t_max: 6,
                        restarts: true,
                    },
                ],
            },
        ];
        let preds: [(f64, f64); 3] = [(0.0, 1.0), (0.25, 1.05), (-1.0, 1.5)];
        for s in &schedules {
            s.validate().unwrap();
            for &(lo, hi) in &preds {
                for scale in [1.0, 0.9] {
                    let f = |t: u64| scale * s.value(t);
                    let ok = |x: f64| x >= lo && x < hi;
                    for horizon in [Some(3), Some(17), Some(200), None] {
                        let scan_to = horizon.unwrap_or(400);
                        let want = (0..scan_to).find(|&t| !ok(f(t))).map(|t| (t, f(t)));
                        let got = first_violation(&s.breakpoints(), horizon, f, ok);
                        assert_eq!(got, want, "{s:?} [{lo}, {hi}) ×{scale} to {horizon:?}");
                    }
                }
            }
        }
    }
}
