//! Replay of an optimizer on a given gradient sequence, in f64: the engine of
//! `stagewise optim trace`, used to check equivalence with other frameworks.
//!
//! A case is JSON:
//!
//! ```json
//! {
//!   "algorithm": "qhm",
//!   "theta0": [1.0, -2.0],
//!   "grads": [[0.1, 0.2], [0.3, -0.1]],
//!   "schedule": [{"lr": 1.0, "momentum": 0.9, "nu": 0.7}, {"lr": 0.5, "momentum": 0.95, "nu": 0.7}],
//!   "weight_decay": 0.01,
//!   "weight_decay_type": "grad"
//! }
//! ```
//!
//! - `algorithm`: `qhm`, `sgd` (PyTorch SGD), `adam`, `adamw`, `rmsprop`, `qhadam`,
//!   `sgd-schedulefree` or `adamw-schedulefree` (the `schedulefree` package's reference classes).
//! - `grads`: one raw gradient vector per step (before weight decay), each as long as `theta0`.
//! - `schedule`: one object per step with the values in force at that step: `lr`, `momentum`
//!   (β for QHM, β₁ for Adam-type, μ for RMSprop) and `nu` (QHM, QHAdam's ν₁; required for
//!   those two, optional and ignored for the others).
//! - Optional, defaulting to 0 / false / `"grad"`: `weight_decay`, `weight_decay_type`
//!   (`"grad"`/`"direct"`, for qhm and qhadam), `nesterov` and `dampening` (sgd).
//!   Per-algorithm constants with their PyTorch/qhoptim defaults: `beta2`, `eps`, `nu2`,
//!   `alpha`, `centered`; schedule-free: `warmup_steps`, `r`, `weight_lr_power`, `decay_at_z`.
//! - Any other field (a name, a description, the expected results) is ignored, so a fixture can
//!   carry its own expected output.
//!
//! The result is `{"params_after": [[...], ...]}`: the parameters after every step. For the
//! schedule-free methods these are the training point y, and `x_after` holds the evaluation
//! point x after every step.

use crate::optim::{OptimError, Optimizer, OptimizerConfig, OptimizerKind, QhmParams, WeightDecay};
use serde::{Deserialize, Serialize};

/// One optimizer replay case (see the module documentation for the format).
#[derive(Debug, Clone, Deserialize)]
pub struct TraceCase {
    /// `qhm`, `sgd`, `adam`, `adamw`, `rmsprop` or `qhadam`.
    pub algorithm: String,
    /// Initial parameters.
    pub theta0: Vec<f64>,
    /// Raw gradients, one vector per step.
    pub grads: Vec<Vec<f64>>,
    /// Hyperparameters in force at each step.
    pub schedule: Vec<TraceStep>,
    /// Weight decay (0 when absent).
    #[serde(default)]
    pub weight_decay: f64,
    /// `"grad"` or `"direct"` (qhm and qhadam).
    #[serde(default)]
    pub weight_decay_type: Option<WeightDecay>,
    /// PyTorch SGD's Nesterov flag.
    #[serde(default)]
    pub nesterov: bool,
    /// PyTorch SGD's dampening.
    #[serde(default)]
    pub dampening: Option<f64>,
    /// Adam-type β₂ (default 0.999).
    #[serde(default)]
    pub beta2: Option<f64>,
    /// ε of Adam-type and RMSprop (default 1e-8).
    #[serde(default)]
    pub eps: Option<f64>,
    /// QHAdam's ν₂ (default 1).
    #[serde(default)]
    pub nu2: Option<f64>,
    /// RMSprop's smoothing constant (default 0.99).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Centered RMSprop.
    #[serde(default)]
    pub centered: Option<bool>,
    /// Schedule-free warm-up steps (default 0).
    #[serde(default)]
    pub warmup_steps: Option<u64>,
    /// Schedule-free averaging power r (default 0).
    #[serde(default)]
    pub r: Option<f64>,
    /// Schedule-free power of γ_max in the weights (default 2).
    #[serde(default)]
    pub weight_lr_power: Option<f64>,
    /// Schedule-free AdamW: weight decay at z (default false).
    #[serde(default)]
    pub decay_at_z: Option<bool>,
}

/// The scheduled values at one step; `nu` only for the algorithms that read it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStep {
    /// Learning rate.
    pub lr: f64,
    /// β (QHM), momentum (SGD, RMSprop) or β₁ (Adam-type).
    pub momentum: f64,
    /// ν (QHM) or ν₁ (QHAdam); ignored by the others.
    #[serde(default)]
    pub nu: Option<f64>,
}

/// The replay output: parameters after every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceOutput {
    /// `params_after[k]` holds the parameters after step `k + 1` (y for schedule-free methods).
    pub params_after: Vec<Vec<f64>>,
    /// Schedule-free methods: the evaluation point x after every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_after: Option<Vec<Vec<f64>>>,
}

/// Why a case could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The JSON did not parse or a required field is missing.
    #[error("invalid trace case: {0}")]
    Json(#[from] serde_json::Error),
    /// The algorithm name is unknown.
    #[error(
        "unknown algorithm '{0}'; allowed: qhm, sgd, adam, adamw, rmsprop, qhadam, \
         sgd-schedulefree, adamw-schedulefree"
    )]
    UnknownAlgorithm(String),
    /// A step leaves out ν for an algorithm that reads it.
    #[error("schedule[{index}]: {algorithm} needs 'nu' at every step")]
    MissingNu {
        /// 0-based index into `schedule`.
        index: usize,
        /// The algorithm.
        algorithm: String,
    },
    /// Lengths of the case's fields disagree.
    #[error("{0}")]
    Shape(String),
    /// A scheduled value is out of the algorithm's range at a step, named as in the case.
    #[error(
        "step {step}: schedule[{index}].{field} = {value} is out of range for {algorithm}; \
         allowed: {allowed}",
        index = step - 1
    )]
    Schedule {
        /// 1-based step number.
        step: usize,
        /// The schedule field (`lr`, `momentum` or `nu`).
        field: &'static str,
        /// The algorithm.
        algorithm: String,
        /// The value given.
        value: f64,
        /// The allowed range, in the case's names.
        allowed: String,
    },
    /// The optimizer refused a hyperparameter or gradient at a step.
    #[error("step {step}: {source}")]
    Step {
        /// 1-based step number.
        step: usize,
        /// The optimizer's reason.
        source: OptimError,
    },
}

impl TraceCase {
    /// Parses a case from JSON text.
    pub fn from_json(text: &str) -> Result<Self, TraceError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The optimizer this case names, with its constants.
    pub fn optimizer_config(&self) -> Result<OptimizerConfig, TraceError> {
        let kind = match self.algorithm.as_str() {
            "sgd" if self.nesterov => OptimizerKind::Nesterov,
            "qhm" | "sgd" | "adam" | "adamw" | "rmsprop" | "qhadam" | "sgd-schedulefree"
            | "adamw-schedulefree" => self
                .algorithm
                .parse()
                .map_err(|_| TraceError::UnknownAlgorithm(self.algorithm.clone()))?,
            other => return Err(TraceError::UnknownAlgorithm(other.to_string())),
        };
        Ok(OptimizerConfig {
            kind,
            weight_decay: self.weight_decay,
            weight_decay_type: self.weight_decay_type,
            beta2: self.beta2,
            eps: self.eps,
            nu2: self.nu2,
            alpha: self.alpha,
            centered: self.centered,
            dampening: self.dampening,
            warmup_steps: self.warmup_steps,
            r: self.r,
            weight_lr_power: self.weight_lr_power,
            decay_at_z: self.decay_at_z,
        })
    }

    /// Names an optimizer's refusal at `step` by the case's field names.
    fn step_error(&self, step: usize, source: OptimError) -> TraceError {
        let OptimError::InvalidHyper {
            field,
            value,
            ref allowed,
        } = source
        else {
            return TraceError::Step { step, source };
        };
        let named = match field {
            "beta" | "beta1" | "momentum" => "momentum",
            "nu" | "nu1" => "nu",
            "lr" => "lr",
            _ => return TraceError::Step { step, source },
        };
        TraceError::Schedule {
            step,
            field: named,
            algorithm: self.algorithm.clone(),
            value,
            allowed: allowed.replace(field, named),
        }
    }

    /// The scheduled values of every step, checking that ν is there where it is read.
    fn scheduled(&self, kind: OptimizerKind) -> Result<Vec<QhmParams>, TraceError> {
        self.schedule
            .iter()
            .enumerate()
            .map(|(index, s)| match (s.nu, kind.uses_nu()) {
                (None, true) => Err(TraceError::MissingNu {
                    index,
                    algorithm: self.algorithm.clone(),
                }),
                (nu, _) => Ok(QhmParams {
                    lr: s.lr,
                    beta: s.momentum,
                    nu: nu.unwrap_or(0.0),
                }),
            })
            .collect()
    }

    /// Replays the case and returns the parameters after every step.
    ///
    /// ```
    /// use stagewise_core::trace::TraceCase;
    /// let case = TraceCase::from_json(r#"{"algorithm": "sgd", "theta0": [1.0],
    ///     "grads": [[0.5]], "schedule": [{"lr": 0.1, "momentum": 0.0}]}"#).unwrap();
    /// assert_eq!(case.run().unwrap().params_after, vec![vec![0.95]]);
    /// ```
    pub fn run(&self) -> Result<TraceOutput, TraceError> {
        if self.grads.len() != self.schedule.len() {
            return Err(TraceError::Shape(format!(
                "'grads' has {} steps but 'schedule' has {}; give one schedule entry per step",
                self.grads.len(),
                self.schedule.len()
            )));
        }
        if let Some(k) = self.grads.iter().position(|g| g.len() != self.theta0.len()) {
            return Err(TraceError::Shape(format!(
                "'grads[{k}]' has {} elements but 'theta0' has {}",
                self.grads[k].len(),
                self.theta0.len()
            )));
        }
        if self.grads.is_empty() {
            return Ok(TraceOutput {
                params_after: vec![],
                x_after: None,
            });
        }
        let config = self.optimizer_config()?;
        let schedule = self.scheduled(config.kind)?;
        let mut opt: Box<dyn Optimizer<f64>> = config
            .build(self.theta0.len(), schedule[0])
            .map_err(|source| self.step_error(1, source))?;
        let mut theta = self.theta0.clone();
        let mut params_after = Vec::with_capacity(self.grads.len());
        let mut x_after = config.kind.is_schedule_free().then(Vec::new);
        for (k, (g, s)) in self.grads.iter().zip(&schedule).enumerate() {
            let at = |source| self.step_error(k + 1, source);
            opt.set_scheduled(*s).map_err(at)?;
            opt.step(&mut theta, g).map_err(at)?;
            params_after.push(theta.clone());
            if let Some(xs) = &mut x_after {
                xs.push(opt.eval_params().unwrap_or(&theta).to_vec());
            }
        }
        Ok(TraceOutput {
            params_after,
            x_after,
        })
    }
}
