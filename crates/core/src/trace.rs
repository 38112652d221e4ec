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
//! - `algorithm`: `qhm`, `sgd` (PyTorch SGD), `adam`, `adamw`, `rmsprop` or `qhadam`.
//! - `grads`: one raw gradient vector per step (before weight decay), each as long as `theta0`.
//! - `schedule`: one object per step with the values in force at that step: `lr`, `momentum`
//!   (β for QHM, β₁ for Adam-type, μ for RMSprop) and `nu` (QHM, QHAdam's ν₁).
//! - Optional, defaulting to 0 / false / `"grad"`: `weight_decay`, `weight_decay_type`
//!   (`"grad"`/`"direct"`, for qhm and qhadam), `nesterov` and `dampening` (sgd).
//!   Per-algorithm constants with their PyTorch/qhoptim defaults: `beta2`, `eps`, `nu2`,
//!   `alpha`, `centered`.
//! - Any other field (a name, a description, the expected results) is ignored, so a fixture can
//!   carry its own expected output.
//!
//! The result is `{"params_after": [[...], ...]}`: the parameters after every step.

use crate::optim::{
    Adam, AdamHyper, OptimError, Optimizer, QhAdam, QhAdamHyper, Qhm, QhmHyper, RmsProp,
    RmsPropHyper, Scheduled, Sgd, SgdHyper, WeightDecay,
};
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
    pub schedule: Vec<Scheduled>,
    /// Weight decay (0 when absent).
    #[serde(default)]
    pub weight_decay: f64,
    /// `"grad"` (default) or `"direct"`.
    #[serde(default)]
    pub weight_decay_type: WeightDecay,
    /// PyTorch SGD's Nesterov flag.
    #[serde(default)]
    pub nesterov: bool,
    /// PyTorch SGD's dampening.
    #[serde(default)]
    pub dampening: f64,
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
    pub centered: bool,
}

/// The replay output: parameters after every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceOutput {
    /// `params_after[k]` holds the parameters after step `k + 1`.
    pub params_after: Vec<Vec<f64>>,
}

/// Why a case could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The JSON did not parse or a required field is missing.
    #[error("invalid trace case: {0}")]
    Json(#[from] serde_json::Error),
    /// The algorithm name is unknown.
    #[error("unknown algorithm '{0}'; allowed: qhm, sgd, adam, adamw, rmsprop, qhadam")]
    UnknownAlgorithm(String),
    /// Lengths of the case's fields disagree.
    #[error("{0}")]
    Shape(String),
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

    /// Builds the optimizer with the first step's hyperparameters.
    fn optimizer(&self) -> Result<Box<dyn Optimizer<f64>>, TraceError> {
        let n = self.theta0.len();
        let s = self.schedule[0];
        let eps = self.eps.unwrap_or(1e-8);
        let at_start = |source| TraceError::Step { step: 1, source };
        let opt: Box<dyn Optimizer<f64>> = match self.algorithm.as_str() {
            "qhm" => Box::new(
                Qhm::try_new(
                    n,
                    QhmHyper {
                        lr: s.lr,
                        beta: s.momentum,
                        nu: s.nu,
                        weight_decay: self.weight_decay,
                        weight_decay_type: self.weight_decay_type,
                    },
                )
                .map_err(at_start)?,
            ),
            "sgd" => Box::new(
                Sgd::try_new(
                    n,
                    SgdHyper {
                        lr: s.lr,
                        momentum: s.momentum,
                        dampening: self.dampening,
                        weight_decay: self.weight_decay,
                        nesterov: self.nesterov,
                    },
                )
                .map_err(at_start)?,
            ),
            name @ ("adam" | "adamw") => Box::new(
                Adam::try_new(
                    n,
                    AdamHyper {
                        lr: s.lr,
                        beta1: s.momentum,
                        beta2: self.beta2.unwrap_or(0.999),
                        eps,
                        weight_decay: self.weight_decay,
                        weight_decay_type: if name == "adamw" {
                            WeightDecay::Direct
                        } else {
                            WeightDecay::Grad
                        },
                    },
                )
                .map_err(at_start)?,
            ),
            "rmsprop" => Box::new(
                RmsProp::try_new(
                    n,
                    RmsPropHyper {
                        lr: s.lr,
                        alpha: self.alpha.unwrap_or(0.99),
                        eps,
                        momentum: s.momentum,
                        weight_decay: self.weight_decay,
                        centered: self.centered,
                    },
                )
                .map_err(at_start)?,
            ),
            "qhadam" => Box::new(
                QhAdam::try_new(
                    n,
                    QhAdamHyper {
                        lr: s.lr,
                        beta1: s.momentum,
                        beta2: self.beta2.unwrap_or(0.999),
                        nu1: s.nu,
                        nu2: self.nu2.unwrap_or(1.0),
                        eps,
                        weight_decay: self.weight_decay,
                        weight_decay_type: self.weight_decay_type,
                    },
                )
                .map_err(at_start)?,
            ),
            other => return Err(TraceError::UnknownAlgorithm(other.to_string())),
        };
        Ok(opt)
    }

    /// Replays the case and returns the parameters after every step.
    ///
    /// ```
    /// use stagewise_core::trace::TraceCase;
    /// let case = TraceCase::from_json(r#"{"algorithm": "sgd", "theta0": [1.0],
    ///     "grads": [[0.5]], "schedule": [{"lr": 0.1, "momentum": 0.0, "nu": 0.0}]}"#).unwrap();
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
            });
        }
        let mut opt = self.optimizer()?;
        let mut theta = self.theta0.clone();
        let mut params_after = Vec::with_capacity(self.grads.len());
        for (k, (g, s)) in self.grads.iter().zip(&self.schedule).enumerate() {
            let at = |source| TraceError::Step {
                step: k + 1,
                source,
            };
            opt.set_scheduled(*s).map_err(at)?;
            opt.step(&mut theta, g).map_err(at)?;
            params_after.push(theta.clone());
        }
        Ok(TraceOutput { params_after })
    }
}
