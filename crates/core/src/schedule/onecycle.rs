//! The one-cycle policy (Smith & Topin), with the exact semantics of PyTorch's `OneCycleLR`.
//!
//! Two phases by default (three with `three_phase = true`). With `T = total_steps` and
//! `p = pct_start`, PyTorch places the phase ends at (floating-point) steps
//!
//! - two phases: `e1 = p·T − 1`, `e2 = T − 1`;
//! - three phases: `e1 = p·T − 1`, `e2 = 2·p·T − 2`, `e3 = T − 1`,
//!
//! and inside the phase `[s, e]` (with `s` the previous phase's end, `0` for the first) it
//! interpolates with `pct = (step − s) / (e − s)`. The learning rate goes
//! `max_lr/div_factor → max_lr → (max_lr/div_factor)/final_div_factor`; with `cycle_momentum`
//! the momentum goes `max_momentum → base_momentum` while the learning rate rises and back to
//! `max_momentum` while it falls (three phases: it stays at `max_momentum` in the last phase).
//!
//! PyTorch raises an error past `total_steps`; here every step `>= total_steps − 1` gives the
//! final value (so the function is total).

use serde::{Deserialize, Serialize};

use super::error::ScheduleError;

/// How a phase interpolates between its start and end values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anneal {
    /// Cosine: `end + (start − end)·(1 + cos(π·pct))/2` (PyTorch `anneal_strategy="cos"`).
    #[default]
    #[serde(alias = "cosine")]
    Cos,
    /// Linear: `start + (end − start)·pct` (PyTorch `anneal_strategy="linear"`).
    Linear,
}

impl Anneal {
    /// Interpolates from `start` (at `pct = 0`) to `end` (at `pct = 1`).
    pub fn interpolate(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

fn default_pct_start() -> f64 {
    0.3
}
fn default_div_factor() -> f64 {
    25.0
}
fn default_final_div_factor() -> f64 {
    1e4
}
fn default_true() -> bool {
    true
}
fn default_base_momentum() -> f64 {
    0.85
}
fn default_max_momentum() -> f64 {
    0.95
}

/// The shape of a one-cycle policy: everything but `max_lr` and `total_steps`.
///
/// Defaults are PyTorch's: `pct_start = 0.3`, cosine annealing, `div_factor = 25`,
/// `final_div_factor = 1e4`, two phases, momentum cycled between 0.85 and 0.95.
/// Used as a within-stage schedule, where the stage supplies `max_lr` (its `lr`) and
/// `total_steps` (its length in steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneCycleShape {
    /// Fraction of the steps spent raising the learning rate, in `(0, 1)`.
    #[serde(default = "default_pct_start")]
    pub pct_start: f64,
    /// Interpolation inside each phase.
    #[serde(default)]
    pub anneal_strategy: Anneal,
    /// Initial learning rate is `max_lr / div_factor` (`>= 1`).
    #[serde(default = "default_div_factor")]
    pub div_factor: f64,
    /// Final learning rate is `initial_lr / final_div_factor` (`>= 1`).
    #[serde(default = "default_final_div_factor")]
    pub final_div_factor: f64,
    /// Use PyTorch's three-phase variant (up, symmetric down, final annihilation).
    #[serde(default)]
    pub three_phase: bool,
    /// Cycle the momentum inversely to the learning rate.
    #[serde(default = "default_true")]
    pub cycle_momentum: bool,
    /// Lowest momentum (reached at the learning-rate peak), in `[0, 1)`.
    #[serde(default = "default_base_momentum")]
    pub base_momentum: f64,
    /// Highest momentum (at the start and end), in `[base_momentum, 1)`.
    #[serde(default = "default_max_momentum")]
    pub max_momentum: f64,
}

impl Default for OneCycleShape {
    fn default() -> Self {
        Self {
            pct_start: default_pct_start(),
            anneal_strategy: Anneal::Cos,
            div_factor: default_div_factor(),
            final_div_factor: default_final_div_factor(),
            three_phase: false,
            cycle_momentum: true,
            base_momentum: default_base_momentum(),
            max_momentum: default_max_momentum(),
        }
    }
}

/// A complete one-cycle policy: a [`OneCycleShape`] with its peak learning rate and length.
///
/// ```
/// use stagewise_core::schedule::{OneCycle, OneCycleShape};
/// let oc = OneCycle::new(1.0, 100, OneCycleShape::default());
/// assert!((oc.lr(0) - 0.04).abs() < 1e-12);          // max_lr / div_factor
/// assert!((oc.lr(29) - 1.0).abs() < 1e-12);          // peak at pct_start·T − 1
/// assert_eq!(oc.momentum(29), Some(0.85));            // momentum bottoms out at the peak
/// assert!((oc.lr(99) - 0.04 / 1e4).abs() < 1e-15);    // final value
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneCycle {
    /// Peak learning rate (`> 0`).
    pub max_lr: f64,
    /// Number of steps in the cycle (`>= 2`, and long enough for each phase to be non-empty).
    pub total_steps: u64,
    /// Fraction of the steps spent raising the learning rate, in `(0, 1)`.
    #[serde(default = "default_pct_start")]
    pub pct_start: f64,
    /// Interpolation inside each phase.
    #[serde(default)]
    pub anneal_strategy: Anneal,
    /// Initial learning rate is `max_lr / div_factor` (`>= 1`).
    #[serde(default = "default_div_factor")]
    pub div_factor: f64,
    /// Final learning rate is `initial_lr / final_div_factor` (`>= 1`).
    #[serde(default = "default_final_div_factor")]
    pub final_div_factor: f64,
    /// Use PyTorch's three-phase variant.
    #[serde(default)]
    pub three_phase: bool,
    /// Cycle the momentum inversely to the learning rate.
    #[serde(default = "default_true")]
    pub cycle_momentum: bool,
    /// Lowest momentum, in `[0, 1)`.
    #[serde(default = "default_base_momentum")]
    pub base_momentum: f64,
    /// Highest momentum, in `[base_momentum, 1)`.
    #[serde(default = "default_max_momentum")]
    pub max_momentum: f64,
}

/// One phase: float end step and (lr, momentum) start/end values.
struct Phase {
    end: f64,
    lr: (f64, f64),
    momentum: (f64, f64),
}

impl OneCycle {
    /// Builds a one-cycle policy peaking at `max_lr` over `total_steps` steps.
    pub fn new(max_lr: f64, total_steps: u64, shape: OneCycleShape) -> Self {
        Self {
            max_lr,
            total_steps,
            pct_start: shape.pct_start,
            anneal_strategy: shape.anneal_strategy,
            div_factor: shape.div_factor,
            final_div_factor: shape.final_div_factor,
            three_phase: shape.three_phase,
            cycle_momentum: shape.cycle_momentum,
            base_momentum: shape.base_momentum,
            max_momentum: shape.max_momentum,
        }
    }

    /// The shape (everything but `max_lr` and `total_steps`).
    pub fn shape(&self) -> OneCycleShape {
        OneCycleShape {
            pct_start: self.pct_start,
            anneal_strategy: self.anneal_strategy,
            div_factor: self.div_factor,
            final_div_factor: self.final_div_factor,
            three_phase: self.three_phase,
            cycle_momentum: self.cycle_momentum,
            base_momentum: self.base_momentum,
            max_momentum: self.max_momentum,
        }
    }

    /// Learning rate at the start of the cycle, `max_lr / div_factor`.
    pub fn initial_lr(&self) -> f64 {
        self.max_lr / self.div_factor
    }

    /// Learning rate at the end of the cycle, `initial_lr / final_div_factor`.
    pub fn min_lr(&self) -> f64 {
        self.initial_lr() / self.final_div_factor
    }

    fn phases(&self) -> Vec<Phase> {
        let t = self.total_steps as f64;
        let p = self.pct_start;
        let (init, peak, min) = (self.initial_lr(), self.max_lr, self.min_lr());
        let (mb, mm) = (self.base_momentum, self.max_momentum);
        if self.three_phase {
            vec![
                Phase {
                    end: p * t - 1.0,
                    lr: (init, peak),
                    momentum: (mm, mb),
                },
                Phase {
                    end: 2.0 * p * t - 2.0,
                    lr: (peak, init),
                    momentum: (mb, mm),
                },
                Phase {
                    end: t - 1.0,
                    lr: (init, min),
                    momentum: (mm, mm),
                },
            ]
        } else {
            vec![
                Phase {
                    end: p * t - 1.0,
                    lr: (init, peak),
                    momentum: (mm, mb),
                },
                Phase {
                    end: t - 1.0,
                    lr: (peak, min),
                    momentum: (mb, mm),
                },
            ]
        }
    }

    /// The first step of each phase (0, then one past the floor of each phase end but the
    /// last), clamped to the last step: lr and momentum are monotone within a phase, and
    /// constant from the last step on ([`Schedule::breakpoints`](super::Schedule::breakpoints)).
    pub(crate) fn phase_starts(&self) -> Vec<u64> {
        let last = self.total_steps.saturating_sub(1);
        let phases = self.phases();
        let mut out = vec![0];
        for ph in &phases[..phases.len() - 1] {
            let next = if ph.end.is_finite() && ph.end >= 0.0 {
                (ph.end.floor() as u64).saturating_add(1)
            } else {
                0
            };
            out.push(next.min(last));
        }
        out.push(last);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// `(lr, momentum)` at `step`, following PyTorch's phase walk.
    fn at(&self, step: u64) -> (f64, f64) {
        let last = self.total_steps.saturating_sub(1);
        let s = step.min(last) as f64;
        let phases = self.phases();
        let n = phases.len();
        let mut start = 0.0;
        for (i, ph) in phases.iter().enumerate() {
            if s <= ph.end || i == n - 1 {
                let span = ph.end - start;
                // Only reachable for invalid (unvalidated) parameters: avoid 0/0.
                let pct = if span > 0.0 { (s - start) / span } else { 1.0 };
                let a = self.anneal_strategy;
                return (
                    a.interpolate(ph.lr.0, ph.lr.1, pct),
                    a.interpolate(ph.momentum.0, ph.momentum.1, pct),
                );
            }
            start = ph.end;
        }
        (f64::NAN, f64::NAN)
    }

    /// Learning rate at `step` (0-based). Steps past the end give the final value.
    pub fn lr(&self, step: u64) -> f64 {
        self.at(step).0
    }

    /// Momentum at `step`, or `None` when `cycle_momentum` is off (the momentum is left alone).
    pub fn momentum(&self, step: u64) -> Option<f64> {
        self.cycle_momentum.then(|| self.at(step).1)
    }

    /// Checks every parameter; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if !(self.max_lr.is_finite() && self.max_lr > 0.0) {
            return Err(ScheduleError::new(
                "max_lr",
                self.max_lr,
                "finite max_lr > 0",
            ));
        }
        if self.total_steps < 2 {
            return Err(ScheduleError::new(
                "total_steps",
                self.total_steps,
                "total_steps >= 2",
            ));
        }
        self.shape().validate()?;
        // Every phase must span a positive number of steps (PyTorch divides by the span).
        let mut start = 0.0;
        for ph in self.phases() {
            if ph.end <= start {
                let needed = if self.three_phase {
                    "pct_start·total_steps > 1 and 2·pct_start·total_steps < total_steps + 1"
                } else {
                    "pct_start·total_steps > 1"
                };
                return Err(ScheduleError::new(
                    "pct_start",
                    format!(
                        "{} (with total_steps = {})",
                        self.pct_start, self.total_steps
                    ),
                    needed,
                ));
            }
            start = ph.end;
        }
        Ok(())
    }
}

impl OneCycleShape {
    /// Checks every parameter; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if !(self.pct_start > 0.0 && self.pct_start < 1.0) {
            return Err(ScheduleError::new(
                "pct_start",
                self.pct_start,
                "0 < pct_start < 1",
            ));
        }
        if !(self.div_factor.is_finite() && self.div_factor >= 1.0) {
            return Err(ScheduleError::new(
                "div_factor",
                self.div_factor,
                "finite div_factor >= 1",
            ));
        }
        if !(self.final_div_factor.is_finite() && self.final_div_factor >= 1.0) {
            return Err(ScheduleError::new(
                "final_div_factor",
                self.final_div_factor,
                "finite final_div_factor >= 1",
            ));
        }
        if !(self.base_momentum >= 0.0 && self.base_momentum < 1.0) {
            return Err(ScheduleError::new(
                "base_momentum",
                self.base_momentum,
                "0 <= base_momentum < 1",
            ));
        }
        if !(self.max_momentum >= self.base_momentum && self.max_momentum < 1.0) {
            return Err(ScheduleError::new(
                "max_momentum",
                self.max_momentum,
                format!("base_momentum ({}) <= max_momentum < 1", self.base_momentum),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's formulas written out by hand for max_lr = 1, T = 10, pct_start = 0.3.
    #[test]
    fn two_phase_cos_matches_pytorch_by_hand() {
        let oc = OneCycle::new(1.0, 10, OneCycleShape::default());
        oc.validate().unwrap();
        let cos = |a: f64, b: f64, pct: f64| {
            b + (a - b) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
        };
        // phase 1 ends at 0.3·10 − 1 = 2, phase 2 at 9 (starting from 2).
        let init = 1.0 / 25.0;
        let min = init / 1e4;
        assert!((oc.lr(0) - init).abs() < 1e-15);
        assert!((oc.lr(1) - cos(init, 1.0, 0.5)).abs() < 1e-15);
        assert!((oc.lr(2) - 1.0).abs() < 1e-15);
        assert!((oc.lr(5) - cos(1.0, min, 3.0 / 7.0)).abs() < 1e-15);
        assert!((oc.lr(9) - min).abs() < 1e-18);
        assert!((oc.momentum(1).unwrap() - cos(0.95, 0.85, 0.5)).abs() < 1e-15);
        assert!((oc.momentum(5).unwrap() - cos(0.85, 0.95, 3.0 / 7.0)).abs() < 1e-15);
        // Past the end: clamped to the final value.
        assert_eq!(oc.lr(1000), oc.lr(9));
    }

    #[test]
    fn linear_and_three_phase() {
        let shape = OneCycleShape {
            anneal_strategy: Anneal::Linear,
            three_phase: true,
            pct_start: 0.25,
            ..Default::default()
        };
        let oc = OneCycle::new(2.0, 20, shape);
        oc.validate().unwrap();
        // Ends: 4, 8, 19.
        let init = 2.0 / 25.0;
        assert!((oc.lr(2) - (init + (2.0 - init) * 0.5)).abs() < 1e-15);
        assert!((oc.lr(4) - 2.0).abs() < 1e-15);
        assert!((oc.lr(6) - (2.0 + (init - 2.0) * 0.5)).abs() < 1e-15);
        assert!((oc.lr(8) - init).abs() < 1e-15);
        assert_eq!(oc.momentum(12), Some(0.95));
    }

    #[test]
    fn momentum_off_is_none() {
        let shape = OneCycleShape {
            cycle_momentum: false,
            ..Default::default()
        };
        assert_eq!(OneCycle::new(1.0, 10, shape).momentum(3), None);
    }

    #[test]
    fn validation_names_fields() {
        let bad = |oc: OneCycle| oc.validate().unwrap_err().field;
        let ok = OneCycle::new(1.0, 100, OneCycleShape::default());
        assert_eq!(
            bad(OneCycle {
                max_lr: 0.0,
                ..ok.clone()
            }),
            "max_lr"
        );
        assert_eq!(
            bad(OneCycle {
                total_steps: 1,
                ..ok.clone()
            }),
            "total_steps"
        );
        assert_eq!(
            bad(OneCycle {
                pct_start: 1.0,
                ..ok.clone()
            }),
            "pct_start"
        );
        assert_eq!(
            bad(OneCycle {
                div_factor: 0.5,
                ..ok.clone()
            }),
            "div_factor"
        );
        assert_eq!(
            bad(OneCycle {
                final_div_factor: f64::NAN,
                ..ok.clone()
            }),
            "final_div_factor"
        );
        assert_eq!(
            bad(OneCycle {
                base_momentum: -0.1,
                ..ok.clone()
            }),
            "base_momentum"
        );
        assert_eq!(
            bad(OneCycle {
                max_momentum: 0.5,
                ..ok.clone()
            }),
            "max_momentum"
        );
        // pct_start·T = 1 makes phase 1 empty (PyTorch would divide by zero).
        assert_eq!(
            bad(OneCycle {
                total_steps: 3,
                pct_start: 1.0 / 3.0,
                ..ok.clone()
            }),
            "pct_start"
        );
        let e = OneCycle {
            pct_start: 1.5,
            ..ok
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field 'pct_start' = 1.5 is out of range; allowed: 0 < pct_start < 1"
        );
    }
}
