//! What a worker computes and what the server evaluates: the two traits a model implements.
//!
//! The parameter server knows nothing about models: a worker hands the flat parameters to a
//! [`GradientSource`] and gets back a flat gradient; the server hands them to an
//! [`Evaluator`] at intervals. A burn model implements both through its flatten bridge;
//! [`crate::synthetic`] has small learnable ones for tests and benchmarks.

use serde::{Deserialize, Serialize};

use stagewise_core::record::BestModel;

use crate::error::GradientError;

/// Statistics of the batch a gradient was computed on (measured at the pulled parameters).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchStats {
    /// Mean loss over the batch.
    pub loss: f64,
    /// Fraction of correct predictions, when the task has them.
    pub accuracy: Option<f64>,
    /// Number of examples.
    pub batch_size: u64,
}

/// Computes gradients on a worker's own batches.
pub trait GradientSource: Send {
    /// Number of parameters (the whole model, all shards).
    fn num_params(&self) -> usize;

    /// Writes the gradient of the loss on the next batch at `params` into `grads` (same
    /// length as `params`) and returns the batch's statistics.
    fn compute(&mut self, params: &[f32], grads: &mut [f32]) -> Result<BatchStats, GradientError>;
}

impl<T: GradientSource + ?Sized> GradientSource for Box<T> {
    fn num_params(&self) -> usize {
        (**self).num_params()
    }
    fn compute(&mut self, params: &[f32], grads: &mut [f32]) -> Result<BatchStats, GradientError> {
        (**self).compute(params, grads)
    }
}

/// Result of evaluating parameters on a held-out set.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EvalStats {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy, when the task has it.
    pub accuracy: Option<f64>,
    /// Number of examples evaluated.
    pub examples: u64,
    /// Mean loss on the validation split, when the evaluator holds one.
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// Accuracy on the validation split, when the evaluator holds one.
    #[serde(default)]
    pub val_accuracy: Option<f64>,
}

/// Where in the run an evaluation happens: what the server knows and an evaluator does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalPoint {
    /// The version evaluated (updates applied).
    pub version: u64,
    /// Epochs of training data consumed at that version, when the server knows the epoch size.
    pub epoch: Option<f64>,
    /// The run's best evaluation so far ([`best_model`](stagewise_core::record::best_model)),
    /// counting the evaluations of the run this server resumed.
    pub best: Option<BestModel>,
}

impl EvalPoint {
    /// Whether an evaluation with these accuracies is the run's best so far (the first one is).
    pub fn is_best(&self, test_accuracy: Option<f64>, val_accuracy: Option<f64>) -> bool {
        self.best
            .as_ref()
            .is_none_or(|b| b.is_beaten_by(test_accuracy, val_accuracy))
    }
}

/// Evaluates parameters on a test set; the server calls it at intervals on a copy of its
/// parameters, on its own thread, never blocking pushes.
pub trait Evaluator: Send {
    /// Evaluates `params` (the whole model) at `at`.
    fn evaluate(&mut self, at: &EvalPoint, params: &[f32]) -> Result<EvalStats, GradientError>;

    /// Whether [`Evaluator::evaluate`] writes the evaluated model into the run folder
    /// (`model.safetensors`, and `best.safetensors` when [`EvalPoint::is_best`]); the server's
    /// summary then says which evaluation the best file holds. The default writes nothing.
    fn writes_model_files(&self) -> bool {
        false
    }
}

impl<T: Evaluator + ?Sized> Evaluator for Box<T> {
    fn evaluate(&mut self, at: &EvalPoint, params: &[f32]) -> Result<EvalStats, GradientError> {
        (**self).evaluate(at, params)
    }
    fn writes_model_files(&self) -> bool {
        (**self).writes_model_files()
    }
}
