//! Shared hyperparameter pieces: weight-decay modes, the scheduled triple, range checks.

use super::OptimError;
use crate::Real;
use serde::{Deserialize, Serialize};

/// How weight decay `wd` enters the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDecay {
    /// Coupled (L2): `g += wd * θ` before the update (qhoptim `"grad"`, PyTorch `weight_decay`).
    #[default]
    Grad,
    /// Decoupled: `θ *= 1 - lr * wd` before the update (qhoptim `"direct"`, AdamW).
    Direct,
}

impl std::str::FromStr for WeightDecay {
    type Err = OptimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grad" => Ok(Self::Grad),
            "direct" => Ok(Self::Direct),
            other => Err(OptimError::InvalidSettings(format!(
                "weight_decay_type '{other}' is unknown; allowed: \"grad\" or \"direct\""
            ))),
        }
    }
}

/// The (α, β, ν) triple of normalized QHM: the one type for it, from the optimizers to the
/// theory.
///
/// A plan schedules it stage by stage or step by step ([`crate::schedule::Hyper`] adds the batch
/// size), and each optimizer reads it in its own terms: for QHM α, β, ν; for PyTorch SGD the
/// learning rate and momentum (ν unused); for Adam and QHAdam the learning rate and β₁ (and ν₁);
/// for RMSprop the learning rate and momentum. The theory's checked constructor and ranges are
/// [`QhmParams::new`] and [`QhmParams::validate`].
///
/// ```
/// use stagewise_core::optim::QhmParams;
/// let p = QhmParams { lr: 0.5, beta: 0.9, nu: 0.7 };
/// assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"lr":0.5,"beta":0.9,"nu":0.7}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QhmParams {
    /// Learning rate α (normalized QHM convention).
    pub lr: f64,
    /// Momentum β (β₁ for Adam-type optimizers).
    pub beta: f64,
    /// Immediate discount ν (QHM, QHAdam's ν₁); ignored by others.
    pub nu: f64,
}

impl QhmParams {
    /// Builds the triple within the optimizer's ranges (α ≥ 0, 0 ≤ β < 1, 0 ≤ ν ≤ 1), naming the
    /// first field out of range. The theory, which needs α > 0, has [`QhmParams::new`].
    ///
    /// ```
    /// use stagewise_core::optim::QhmParams;
    /// assert!(QhmParams::checked(0.0, 0.9, 0.7).is_ok());
    /// assert!(QhmParams::checked(0.1, 1.0, 0.7).is_err());
    /// ```
    pub fn checked(lr: f64, beta: f64, nu: f64) -> Result<Self, OptimError> {
        let p = Self { lr, beta, nu };
        p.check_optimizer_ranges()?;
        Ok(p)
    }

    /// Checks the optimizer's ranges (see [`QhmParams::checked`]).
    pub fn check_optimizer_ranges(&self) -> Result<(), OptimError> {
        check_non_negative("lr", self.lr)?;
        check_decay("beta", self.beta)?;
        check_fraction("nu", self.nu)
    }
}

/// Checks `lo <= value` (or `<`) and `value <= hi` (or `<`), naming the field on failure.
///
/// `allowed` is the range in words, for the message.
pub fn check_range(
    field: &'static str,
    value: f64,
    lo: f64,
    lo_inclusive: bool,
    hi: f64,
    hi_inclusive: bool,
    allowed: &str,
) -> Result<(), OptimError> {
    let above = if lo_inclusive {
        value >= lo
    } else {
        value > lo
    };
    let below = if hi_inclusive {
        value <= hi
    } else {
        value < hi
    };
    if value.is_finite() && above && below {
        Ok(())
    } else {
        Err(OptimError::InvalidHyper {
            field,
            value,
            allowed: allowed.to_string(),
        })
    }
}

/// Checks `0 <= value < inf` (learning rates, weight decay).
pub(crate) fn check_non_negative(field: &'static str, value: f64) -> Result<(), OptimError> {
    let allowed = format!("0 <= {field} < inf");
    check_range(field, value, 0.0, true, f64::INFINITY, false, &allowed)
}

/// Checks `0 < value < inf` (ε).
pub(crate) fn check_positive(field: &'static str, value: f64) -> Result<(), OptimError> {
    let allowed = format!("0 < {field} < inf");
    check_range(field, value, 0.0, false, f64::INFINITY, false, &allowed)
}

/// Checks `0 <= value < 1` (momentum factors, decay rates).
pub(crate) fn check_decay(field: &'static str, value: f64) -> Result<(), OptimError> {
    let allowed = format!("0 <= {field} < 1");
    check_range(field, value, 0.0, true, 1.0, false, &allowed)
}

/// Checks `0 <= value <= 1` (ν, dampening).
pub(crate) fn check_fraction(field: &'static str, value: f64) -> Result<(), OptimError> {
    let allowed = format!("0 <= {field} <= 1");
    check_range(field, value, 0.0, true, 1.0, true, &allowed)
}

/// Checks that every element of `grads` is finite; names the first that is not.
///
/// Branch-free and vectorizable: `x · 0` is 0 for finite `x` and NaN otherwise, accumulated in
/// independent lanes; large buffers are scanned in parallel. Only a failing block is searched
/// element by element, to name the index.
pub fn check_finite<F: Real>(grads: &[F]) -> Result<(), OptimError> {
    use rayon::prelude::*;
    let bad_block = if grads.len() < super::parallel::PARALLEL_MIN_LEN {
        grads
            .chunks(super::parallel::CHUNK)
            .position(|b| !block_is_finite(b))
    } else {
        grads
            .par_chunks(super::parallel::CHUNK)
            .position_first(|b| !block_is_finite(b))
    };
    match bad_block {
        None => Ok(()),
        Some(block) => {
            let start = block * super::parallel::CHUNK;
            let index = start
                + grads[start..]
                    .iter()
                    .position(|g| !g.is_finite())
                    .unwrap_or(0);
            Err(OptimError::NonFiniteGradient {
                index,
                value: grads[index].to_f64(),
            })
        }
    }
}

/// True when every element is finite (no NaN, no ±∞).
#[inline]
fn block_is_finite<F: Real>(block: &[F]) -> bool {
    const LANES: usize = 16;
    let zero = F::zero();
    let mut lanes = [zero; LANES];
    let mut exact = block.chunks_exact(LANES);
    for chunk in &mut exact {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = *lane + x * zero;
        }
    }
    let tail = exact
        .remainder()
        .iter()
        .fold(zero, |acc, &x| acc + x * zero);
    lanes.iter().fold(tail, |acc, &l| acc + l) == zero
}
