//! Choosing an optimizer by name and building it from scheduled hyperparameters.

use super::{
    Adam, AdamHyper, OptimError, Optimizer, QhAdam, QhAdamHyper, Qhm, QhmHyper, RmsProp,
    RmsPropHyper, Scheduled, Sgd, SgdHyper, WeightDecay,
};
use crate::Real;
use serde::{Deserialize, Serialize};

/// The optimizers a plan can drive, by name.
///
/// How each reads a plan's (lr, β, ν) is documented on [`Optimizer::set_scheduled`] of each
/// type: QHM takes α (normalized), β, ν; `sgd` and `nesterov` take PyTorch's lr and momentum;
/// Adam-type take lr and β₁ (QHAdam also ν₁); RMSprop takes lr and momentum.
///
/// ```
/// use stagewise_core::optim::{OptimizerKind, Scheduled, WeightDecay};
/// let kind: OptimizerKind = "qhm".parse().unwrap();
/// let s = Scheduled { lr: 1.0, momentum: 0.9, nu: 0.7 };
/// let opt = kind.build::<f32>(10, s, 0.0, WeightDecay::Grad).unwrap();
/// assert_eq!(opt.name(), "qhm");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Quasi-hyperbolic momentum (qhoptim), normalized α.
    Qhm,
    /// PyTorch SGD with momentum (unnormalized lr).
    Sgd,
    /// PyTorch SGD with Nesterov momentum (unnormalized lr).
    Nesterov,
    /// PyTorch Adam (coupled weight decay).
    Adam,
    /// PyTorch AdamW (decoupled weight decay).
    AdamW,
    /// PyTorch RMSprop.
    RmsProp,
    /// qhoptim QHAdam.
    QhAdam,
}

impl OptimizerKind {
    /// Every kind, in the order used in messages.
    pub const ALL: [OptimizerKind; 7] = [
        Self::Qhm,
        Self::Sgd,
        Self::Nesterov,
        Self::Adam,
        Self::AdamW,
        Self::RmsProp,
        Self::QhAdam,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qhm => "qhm",
            Self::Sgd => "sgd",
            Self::Nesterov => "nesterov",
            Self::Adam => "adam",
            Self::AdamW => "adamw",
            Self::RmsProp => "rmsprop",
            Self::QhAdam => "qhadam",
        }
    }

    /// Builds the optimizer for `len` parameters with the first step's hyperparameters.
    ///
    /// `weight_decay_type` applies to QHM and QHAdam; Adam is coupled and AdamW decoupled by
    /// definition, SGD and RMSprop are coupled as in PyTorch.
    pub fn build<F: Real>(
        self,
        len: usize,
        s: Scheduled,
        weight_decay: f64,
        weight_decay_type: WeightDecay,
    ) -> Result<Box<dyn Optimizer<F>>, OptimError> {
        Ok(match self {
            Self::Qhm => Box::new(Qhm::try_new(
                len,
                QhmHyper {
                    lr: s.lr,
                    beta: s.momentum,
                    nu: s.nu,
                    weight_decay,
                    weight_decay_type,
                },
            )?),
            Self::Sgd | Self::Nesterov => Box::new(Sgd::try_new(
                len,
                SgdHyper {
                    lr: s.lr,
                    momentum: s.momentum,
                    dampening: 0.0,
                    weight_decay,
                    nesterov: self == Self::Nesterov,
                },
            )?),
            Self::Adam | Self::AdamW => Box::new(Adam::try_new(
                len,
                AdamHyper {
                    lr: s.lr,
                    beta1: s.momentum,
                    weight_decay,
                    weight_decay_type: if self == Self::AdamW {
                        WeightDecay::Direct
                    } else {
                        WeightDecay::Grad
                    },
                    ..AdamHyper::default()
                },
            )?),
            Self::RmsProp => Box::new(RmsProp::try_new(
                len,
                RmsPropHyper {
                    lr: s.lr,
                    momentum: s.momentum,
                    weight_decay,
                    ..RmsPropHyper::default()
                },
            )?),
            Self::QhAdam => Box::new(QhAdam::try_new(
                len,
                QhAdamHyper {
                    lr: s.lr,
                    beta1: s.momentum,
                    nu1: s.nu,
                    weight_decay,
                    weight_decay_type,
                    ..QhAdamHyper::default()
                },
            )?),
        })
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = OptimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| {
                OptimError::InvalidSettings(format!(
                    "unknown optimizer '{s}'; allowed: qhm, sgd, nesterov, adam, adamw, rmsprop, qhadam"
                ))
            })
    }
}
