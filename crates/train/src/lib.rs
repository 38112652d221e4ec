//! Training with burn: data loading, models and the staged trainer.
//!
//! # Devices instead of backend types
//!
//! burn 0.22 removed the backend type parameter from tensors and modules: a [`Tensor`] carries
//! its backend in its [`Device`], and autodiff is a property of the device
//! ([`Device::autodiff`]). The models in [`model`] are therefore plain structs (no `B: Backend`
//! parameter) that run on whatever device their parameters were created on:
//!
//! - [`training_device`]: the flex CPU backend with autodiff, for training;
//! - [`inference_device`]: the same backend without autodiff, for evaluation.
//!
//! The bridge between burn modules and the flat `f32` slices used by the optimizers of
//! `stagewise-core` and by the parameter server is in [`bridge`].
//!
//! [`Tensor`]: burn::Tensor

pub mod asgd;
pub mod asgd_job;
pub mod asgd_rule;
pub mod bench;
pub mod bridge;
pub mod kernels;
pub mod model;
pub mod spectrum;
pub mod threads;

use burn::tensor::Device;

/// The device models are trained on: the pure-Rust `flex` CPU backend with autodiff enabled.
///
/// Tensors created on it (parameters, input batches) record a graph, so `loss.backward()` works;
/// [`BatchNorm`](burn::nn::BatchNorm) layers use batch statistics on it unless the model was put
/// in validation mode with [`Module::valid`](burn::module::Module::valid).
///
/// ```
/// let device = stagewise_train::training_device();
/// assert!(device.is_autodiff());
/// ```
pub fn training_device() -> Device {
    Device::flex().autodiff()
}

/// The device for evaluation: the `flex` CPU backend without autodiff.
///
/// `model.valid()` moves a model's parameters here (same values, no graph) and switches its
/// BatchNorm layers to running statistics.
///
/// ```
/// let device = stagewise_train::inference_device();
/// assert!(!device.is_autodiff());
/// ```
pub fn inference_device() -> Device {
    Device::flex()
}

/// The default device of this crate: [`training_device`].
pub fn default_device() -> Device {
    training_device()
}

pub mod checkpoint;
pub mod data;
pub mod export;
pub mod inference;
pub mod metrics;
pub mod run_folder;
pub mod trainer;

pub use data::{DataConfig, DatasetKind};
pub use trainer::{
    evaluate, resume, train, train_from, EpochHook, RunOptions, TrainConfig, TrainError,
};
