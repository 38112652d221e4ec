//! Choosing an optimizer by name; [`super::OptimizerConfig`] builds it.

use super::OptimError;
use serde::{Deserialize, Serialize};

/// The optimizers a plan can drive, by name.
///
/// How each reads a plan's (lr, β, ν) is documented on [`Optimizer::set_scheduled`] of each
/// type: QHM takes α (normalized), β, ν; `sgd` and `nesterov` take PyTorch's lr and momentum;
/// Adam-type take lr and β₁ (QHAdam also ν₁); RMSprop takes lr and momentum.
///
/// ```
/// use stagewise_core::optim::OptimizerKind;
/// let kind: OptimizerKind = "qhm".parse().unwrap();
/// assert_eq!(kind, OptimizerKind::default());
/// assert!(kind.uses_nu() && !OptimizerKind::Sgd.uses_nu());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Quasi-hyperbolic momentum (qhoptim), normalized α.
    #[default]
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
    /// Schedule-free SGD (Defazio et al. 2024): gradients at y, evaluation at the average x.
    #[serde(rename = "sgd-schedulefree")]
    SgdScheduleFree,
    /// Schedule-free AdamW (Defazio et al. 2024).
    #[serde(rename = "adamw-schedulefree")]
    AdamWScheduleFree,
}

impl OptimizerKind {
    /// Every kind, in the order used in messages.
    pub const ALL: [OptimizerKind; 9] = [
        Self::Qhm,
        Self::Sgd,
        Self::Nesterov,
        Self::Adam,
        Self::AdamW,
        Self::RmsProp,
        Self::QhAdam,
        Self::SgdScheduleFree,
        Self::AdamWScheduleFree,
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
            Self::SgdScheduleFree => "sgd-schedulefree",
            Self::AdamWScheduleFree => "adamw-schedulefree",
        }
    }

    /// Whether the kind reads ν from the plan (QHM's ν, QHAdam's ν₁); the others ignore it.
    pub fn uses_nu(self) -> bool {
        matches!(self, Self::Qhm | Self::QhAdam)
    }

    /// Whether the optimizer trains at one point and evaluates at another
    /// ([`super::Optimizer::eval_params`]).
    pub fn is_schedule_free(self) -> bool {
        matches!(self, Self::SgdScheduleFree | Self::AdamWScheduleFree)
    }

    /// Whether weight decay can be coupled or decoupled (`weight_decay_type`).
    pub fn has_weight_decay_type(self) -> bool {
        matches!(self, Self::Qhm | Self::QhAdam)
    }
}

impl crate::choice::Choice for OptimizerKind {
    const WHAT: &'static str = "optimizer";
    const ALL: &'static [Self] = &OptimizerKind::ALL;

    fn name(self) -> &'static str {
        OptimizerKind::name(self)
    }

    fn help(self) -> &'static str {
        match self {
            Self::Qhm => "quasi-hyperbolic momentum (qhoptim), lr read as normalized α, β, ν",
            Self::Sgd => "PyTorch SGD with momentum (unnormalized lr)",
            Self::Nesterov => "PyTorch SGD with Nesterov momentum (unnormalized lr)",
            Self::Adam => "PyTorch Adam (coupled weight decay), momentum read as β₁",
            Self::AdamW => "PyTorch AdamW (decoupled weight decay), momentum read as β₁",
            Self::RmsProp => "PyTorch RMSprop, with momentum",
            Self::QhAdam => "qhoptim QHAdam, momentum and ν read as β₁ and ν₁",
            Self::SgdScheduleFree => {
                "schedule-free SGD (Defazio et al. 2024): trains at y, evaluates the average x"
            }
            Self::AdamWScheduleFree => "schedule-free AdamW (Defazio et al. 2024)",
        }
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
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                OptimError::InvalidSettings(format!(
                    "unknown optimizer '{s}'; allowed: {}",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    #[test]
    fn every_kind_parses_by_its_choice_name_and_has_help() {
        for &kind in <OptimizerKind as Choice>::ALL {
            assert_eq!(OptimizerKind::parse_choice(kind.name()), Ok(kind));
            assert_eq!(kind.name().parse::<OptimizerKind>().unwrap(), kind);
            assert!(!Choice::help(kind).is_empty());
        }
        let err = OptimizerKind::parse_choice("adagrad").unwrap_err();
        assert!(
            err.contains("unknown optimizer 'adagrad'") && err.contains("qhm, sgd"),
            "{err}"
        );
    }
}
