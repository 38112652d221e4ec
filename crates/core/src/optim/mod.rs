//! The optimizer family as fused updates on flat slices.
//!
//! Every optimizer implements [`Optimizer`]: `step(params, grads)` updates `params` in place in one
//! pass over memory, without allocating, splitting large buffers across the rayon thread pool.
//! State (buffers, step count) lives in the optimizer and carries over when hyperparameters change,
//! which is what a stage switch is ([`Optimizer::set_scheduled`]).
//!
//! Conventions are documented per optimizer; [`Qhm`] follows qhoptim exactly (normalized
//! momentum, zero initial buffer), [`Sgd`], [`Adam`] and [`RmsProp`] follow PyTorch, [`QhAdam`]
//! follows qhoptim. [`conventions`] and [`convert`] map other methods onto QHM, and [`method`] names them.

pub mod adam;
mod config;
pub mod conventions;
pub mod convert;
mod error;
mod hyper;
mod kind;
pub mod method;
mod parallel;
pub mod qhadam;
pub mod qhm;
pub mod rmsprop;
pub mod schedule_free;
pub mod sgd;

pub use adam::{Adam, AdamHyper};
pub use config::OptimizerConfig;
pub use error::OptimError;
pub use hyper::{check_finite, check_range, QhmParams, WeightDecay};
pub use kind::OptimizerKind;
pub use qhadam::{QhAdam, QhAdamHyper};
pub use qhm::{Qhm, QhmHyper};
pub use rmsprop::{RmsProp, RmsPropHyper};
pub use schedule_free::{
    AdamWScheduleFree, AdamWScheduleFreeHyper, SgdScheduleFree, SgdScheduleFreeHyper,
};
pub use sgd::{Sgd, SgdHyper};

use crate::Real;
use serde::{Deserialize, Serialize};

/// An optimizer state as plain data: the step count and named buffers, for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState<F> {
    /// Number of steps taken so far.
    pub step: u64,
    /// Named state buffers (for example `"momentum"`), each as long as the parameters.
    pub buffers: Vec<(String, Vec<F>)>,
    /// Named scalar state (for example qhoptim's bias-correction weights).
    pub scalars: Vec<(String, f64)>,
}

/// A first-order optimizer over one flat parameter buffer.
pub trait Optimizer<F: Real>: Send {
    /// Applies one update to `params` given `grads` (raw gradients, before weight decay).
    ///
    /// Refuses, leaving `params` and the state untouched, when the lengths disagree with the
    /// optimizer's or any gradient is NaN or infinite.
    fn step(&mut self, params: &mut [F], grads: &[F]) -> Result<(), OptimError> {
        self.check_step_input(params, grads)?;
        check_finite(grads)?;
        self.step_unchecked(params, grads);
        Ok(())
    }

    /// Applies one update without the finiteness check (lengths are still asserted).
    ///
    /// For callers that validated `grads` already, for example while decoding them.
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]);

    /// Number of parameters this optimizer was built for.
    fn len(&self) -> usize;

    /// True when built for zero parameters.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of steps taken.
    fn steps_taken(&self) -> u64;

    /// Sets the scheduled hyperparameters (learning rate, momentum, ν) for the next steps.
    ///
    /// Each optimizer documents how it reads them; state is kept.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError>;

    /// The scheduled hyperparameters currently in force.
    fn scheduled(&self) -> QhmParams;

    /// Exports the state for a checkpoint.
    fn state(&self) -> OptimizerState<F>;

    /// Restores a state exported by [`Optimizer::state`] of the same optimizer kind and length.
    fn load_state(&mut self, state: OptimizerState<F>) -> Result<(), OptimError>;

    /// A short name of the algorithm, for logs.
    fn name(&self) -> &'static str;

    /// The point to evaluate and checkpoint at, when it differs from the training point.
    ///
    /// `None` (the default) means the `params` given to [`Optimizer::step`] are that point.
    /// Schedule-free methods train at y and return the average x here.
    fn eval_params(&self) -> Option<&[F]> {
        None
    }

    /// Checks that `params` and `grads` have this optimizer's length.
    fn check_step_input(&self, params: &[F], grads: &[F]) -> Result<(), OptimError> {
        if params.len() != self.len() || grads.len() != self.len() {
            return Err(OptimError::LengthMismatch {
                expected: self.len(),
                params: params.len(),
                grads: grads.len(),
            });
        }
        Ok(())
    }
}

/// Takes the buffer called `name` out of `state`, checking its length.
pub(crate) fn take_buffer<F>(
    state: &mut OptimizerState<F>,
    name: &str,
    len: usize,
) -> Result<Vec<F>, OptimError> {
    let pos = state
        .buffers
        .iter()
        .position(|(n, _)| n == name)
        .ok_or_else(|| OptimError::BadState(format!("missing buffer '{name}'")))?;
    let (_, buf) = state.buffers.swap_remove(pos);
    if buf.len() != len {
        return Err(OptimError::BadState(format!(
            "buffer '{name}' has {} elements, expected {len}",
            buf.len()
        )));
    }
    Ok(buf)
}

/// Reads the scalar called `name` from `state`.
pub(crate) fn get_scalar<F>(state: &OptimizerState<F>, name: &str) -> Result<f64, OptimError> {
    state
        .scalars
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| OptimError::BadState(format!("missing scalar '{name}'")))
}
