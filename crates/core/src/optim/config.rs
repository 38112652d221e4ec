//! One description of an optimizer and the one factory that builds it.
//!
//! [`OptimizerConfig`] names the algorithm and its constants (weight decay, Adam's β₂ and ε, …);
//! the scheduled values (lr, β, ν) come from the plan at every step. Training, the
//! parameter server and `optim trace` all build their optimizers through
//! [`OptimizerConfig::build`].
//!
//! ```
//! use stagewise_core::optim::{OptimizerConfig, OptimizerKind, QhmParams};
//! let config = OptimizerConfig { beta2: Some(0.99), ..OptimizerConfig::new(OptimizerKind::Adam) };
//! let first = QhmParams { lr: 1e-3, beta: 0.9, nu: 0.0 };
//! let opt = config.build::<f32>(10, first).unwrap();
//! assert_eq!(opt.name(), "adam");
//! // A constant the algorithm does not have is refused, naming it.
//! let wrong = OptimizerConfig { beta2: Some(0.99), ..OptimizerConfig::new(OptimizerKind::Qhm) };
//! assert!(wrong.validate().unwrap_err().to_string().contains("beta2"));
//! ```

use super::{
    Adam, AdamHyper, AdamWScheduleFree, AdamWScheduleFreeHyper, OptimError, Optimizer,
    OptimizerKind, QhAdam, QhAdamHyper, Qhm, QhmHyper, QhmParams, RmsProp, RmsPropHyper, Sgd,
    SgdHyper, SgdScheduleFree, SgdScheduleFreeHyper, WeightDecay,
};
use crate::schedule::Plan;
use crate::Real;
use serde::{Deserialize, Serialize};

/// An optimizer and its constants; unset constants take the reference implementation's default.
///
/// In TOML: `kind = "adam"`, `weight_decay = 5e-4`, `beta2 = 0.99`, …
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// The algorithm.
    #[serde(default)]
    pub kind: OptimizerKind,
    /// Weight decay ≥ 0 (0: none).
    #[serde(default)]
    pub weight_decay: f64,
    /// Coupled (`grad`) or decoupled (`direct`) weight decay: qhm and qhadam only (Adam is
    /// coupled and AdamW decoupled by definition; SGD and RMSprop are coupled as in PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay_type: Option<WeightDecay>,
    /// β₂ of adam, adamw and qhadam [default 0.999].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f64>,
    /// ε of adam, adamw, qhadam and rmsprop [default 1e-8].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// ν₂ of qhadam [default 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nu2: Option<f64>,
    /// Smoothing constant of rmsprop [default 0.99].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Centered rmsprop [default false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centered: Option<bool>,
    /// Dampening of sgd [default 0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// Steps of the schedule-free methods' own linear warm-up [default 0; a recipe's warm-up
    /// does the same from the plan].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// Polynomial weighting power r of the schedule-free average [default 0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<f64>,
    /// Power of γ_max in the schedule-free average's weights [default 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_lr_power: Option<f64>,
    /// adamw-schedulefree: weight decay at z instead of y [default false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_at_z: Option<bool>,
}

/// Which kinds take each optional constant, for validation and messages.
const CONSTANTS: [(&str, &[OptimizerKind]); 11] = {
    use OptimizerKind::*;
    [
        ("weight_decay_type", &[Qhm, QhAdam]),
        ("beta2", &[Adam, AdamW, QhAdam, AdamWScheduleFree]),
        ("eps", &[Adam, AdamW, QhAdam, RmsProp, AdamWScheduleFree]),
        ("nu2", &[QhAdam]),
        ("alpha", &[RmsProp]),
        ("centered", &[RmsProp]),
        ("dampening", &[Sgd]),
        ("warmup_steps", &[SgdScheduleFree, AdamWScheduleFree]),
        ("r", &[SgdScheduleFree, AdamWScheduleFree]),
        ("weight_lr_power", &[SgdScheduleFree, AdamWScheduleFree]),
        ("decay_at_z", &[AdamWScheduleFree]),
    ]
};

impl OptimizerConfig {
    /// `kind` with no weight decay and every constant at its default.
    pub fn new(kind: OptimizerKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// `kind` with the plan's weight decay (and its type, where `kind` has one).
    pub fn for_plan(kind: OptimizerKind, plan: &Plan) -> Self {
        Self {
            kind,
            weight_decay: plan.weight_decay,
            weight_decay_type: kind
                .has_weight_decay_type()
                .then_some(plan.weight_decay_type),
            ..Self::default()
        }
    }

    /// The names of the constants that are set.
    fn set_constants(&self) -> [(&'static str, bool); 11] {
        [
            ("weight_decay_type", self.weight_decay_type.is_some()),
            ("beta2", self.beta2.is_some()),
            ("eps", self.eps.is_some()),
            ("nu2", self.nu2.is_some()),
            ("alpha", self.alpha.is_some()),
            ("centered", self.centered.is_some()),
            ("dampening", self.dampening.is_some()),
            ("warmup_steps", self.warmup_steps.is_some()),
            ("r", self.r.is_some()),
            ("weight_lr_power", self.weight_lr_power.is_some()),
            ("decay_at_z", self.decay_at_z.is_some()),
        ]
    }

    /// Refuses constants the algorithm does not have; value ranges are checked by
    /// [`OptimizerConfig::build`], which every optimizer validates.
    pub fn validate(&self) -> Result<(), OptimError> {
        for ((name, set), (_, kinds)) in self.set_constants().into_iter().zip(CONSTANTS) {
            if set && !kinds.contains(&self.kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                return Err(OptimError::InvalidSettings(format!(
                    "{name} applies only to {}; the optimizer is {}",
                    names.join(", "),
                    self.kind
                )));
            }
        }
        Ok(())
    }

    /// Builds the optimizer for `len` parameters with the first step's scheduled values.
    ///
    /// How each algorithm reads (lr, momentum, ν) is documented on its `set_scheduled`.
    pub fn build<F: Real>(
        &self,
        len: usize,
        first: QhmParams,
    ) -> Result<Box<dyn Optimizer<F>>, OptimError> {
        self.validate()?;
        let weight_decay = self.weight_decay;
        let weight_decay_type = self.weight_decay_type.unwrap_or_default();
        let adam = AdamHyper::default();
        let qhadam = QhAdamHyper::default();
        let rmsprop = RmsPropHyper::default();
        let sgd_sf = SgdScheduleFreeHyper::default();
        let adamw_sf = AdamWScheduleFreeHyper::default();
        Ok(match self.kind {
            OptimizerKind::Qhm => Box::new(Qhm::try_new(
                len,
                QhmHyper {
                    qhm: QhmParams {
                        lr: first.lr,
                        beta: first.beta,
                        nu: first.nu,
                    },
                    weight_decay,
                    weight_decay_type,
                },
            )?),
            kind @ (OptimizerKind::Sgd | OptimizerKind::Nesterov) => Box::new(Sgd::try_new(
                len,
                SgdHyper {
                    lr: first.lr,
                    momentum: first.beta,
                    dampening: self.dampening.unwrap_or(0.0),
                    weight_decay,
                    nesterov: kind == OptimizerKind::Nesterov,
                },
            )?),
            kind @ (OptimizerKind::Adam | OptimizerKind::AdamW) => Box::new(Adam::try_new(
                len,
                AdamHyper {
                    lr: first.lr,
                    beta1: first.beta,
                    beta2: self.beta2.unwrap_or(adam.beta2),
                    eps: self.eps.unwrap_or(adam.eps),
                    weight_decay,
                    weight_decay_type: if kind == OptimizerKind::AdamW {
                        WeightDecay::Direct
                    } else {
                        WeightDecay::Grad
                    },
                },
            )?),
            OptimizerKind::RmsProp => Box::new(RmsProp::try_new(
                len,
                RmsPropHyper {
                    lr: first.lr,
                    alpha: self.alpha.unwrap_or(rmsprop.alpha),
                    eps: self.eps.unwrap_or(rmsprop.eps),
                    momentum: first.beta,
                    weight_decay,
                    centered: self.centered.unwrap_or(rmsprop.centered),
                },
            )?),
            OptimizerKind::QhAdam => Box::new(QhAdam::try_new(
                len,
                QhAdamHyper {
                    lr: first.lr,
                    beta1: first.beta,
                    beta2: self.beta2.unwrap_or(qhadam.beta2),
                    nu1: first.nu,
                    nu2: self.nu2.unwrap_or(qhadam.nu2),
                    eps: self.eps.unwrap_or(qhadam.eps),
                    weight_decay,
                    weight_decay_type,
                },
            )?),
            OptimizerKind::SgdScheduleFree => Box::new(SgdScheduleFree::try_new(
                len,
                SgdScheduleFreeHyper {
                    lr: first.lr,
                    momentum: first.beta,
                    weight_decay,
                    warmup_steps: self.warmup_steps.unwrap_or(sgd_sf.warmup_steps),
                    r: self.r.unwrap_or(sgd_sf.r),
                    weight_lr_power: self.weight_lr_power.unwrap_or(sgd_sf.weight_lr_power),
                },
            )?),
            OptimizerKind::AdamWScheduleFree => Box::new(AdamWScheduleFree::try_new(
                len,
                AdamWScheduleFreeHyper {
                    lr: first.lr,
                    beta1: first.beta,
                    beta2: self.beta2.unwrap_or(adamw_sf.beta2),
                    eps: self.eps.unwrap_or(adamw_sf.eps),
                    weight_decay,
                    warmup_steps: self.warmup_steps.unwrap_or(adamw_sf.warmup_steps),
                    r: self.r.unwrap_or(adamw_sf.r),
                    weight_lr_power: self.weight_lr_power.unwrap_or(adamw_sf.weight_lr_power),
                    decay_at_z: self.decay_at_z.unwrap_or(adamw_sf.decay_at_z),
                },
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: QhmParams = QhmParams {
        lr: 0.1,
        beta: 0.9,
        nu: 0.7,
    };

    #[test]
    fn every_kind_builds_under_its_own_name() {
        for kind in OptimizerKind::ALL {
            let opt = OptimizerConfig::new(kind).build::<f64>(3, FIRST).unwrap();
            assert_eq!(opt.name(), kind.name(), "{kind}");
        }
    }

    #[test]
    fn a_constant_is_refused_on_every_kind_without_it() {
        for kind in OptimizerKind::ALL {
            let with_alpha = OptimizerConfig {
                alpha: Some(0.9),
                ..OptimizerConfig::new(kind)
            };
            assert_eq!(
                with_alpha.validate().is_ok(),
                kind == OptimizerKind::RmsProp,
                "{kind}"
            );
        }
    }

    #[test]
    fn the_plan_gives_weight_decay_and_its_type_only_where_the_kind_has_one() {
        let mut plan = Plan::new(vec![crate::schedule::Stage::for_epochs(
            1, 0.1, 0.9, 0.7, 32,
        )]);
        plan.weight_decay = 5e-4;
        plan.weight_decay_type = WeightDecay::Direct;
        let qhm = OptimizerConfig::for_plan(OptimizerKind::Qhm, &plan);
        assert_eq!(qhm.weight_decay_type, Some(WeightDecay::Direct));
        let adam = OptimizerConfig::for_plan(OptimizerKind::Adam, &plan);
        assert_eq!((adam.weight_decay, adam.weight_decay_type), (5e-4, None));
        adam.validate().unwrap();
    }

    #[test]
    fn toml_names_the_kind_and_refuses_unknown_keys() {
        let c: OptimizerConfig = toml::from_str("kind = \"adamw\"\nbeta2 = 0.99").unwrap();
        assert_eq!((c.kind, c.beta2), (OptimizerKind::AdamW, Some(0.99)));
        assert!(toml::from_str::<OptimizerConfig>("kind = \"adam\"\nbeta3 = 1").is_err());
        let back: OptimizerConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
