//! Image classifiers for 28×28 grayscale images (MNIST, Fashion-MNIST).
//!
//! Every model takes a batch of images `[batch, 1, 28, 28]` (f32, normalized) and returns logits
//! `[batch, 10]`. Models are built on a [`Device`] (see [`crate::training_device`]) and
//! initialized deterministically from a seed: the same kind, seed and device give bit-identical
//! parameters, whatever else the process does with burn's own random generator.
//!
//! ```
//! use stagewise_train::model::{Classifier, Model, ModelKind};
//! use burn::tensor::Tensor;
//!
//! let device = stagewise_train::inference_device();
//! let model = Model::new("mlp".parse::<ModelKind>().unwrap(), &device, 7);
//! let logits = model.forward(Tensor::zeros([2, 1, 28, 28], &device));
//! assert_eq!(logits.dims(), [2, 10]);
//! ```

mod cnn;
mod init;
mod mlp;
mod resnet;

pub use cnn::Cnn;
pub use mlp::Mlp;
pub use resnet::{BasicBlock, Projection, ResNet};

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Side of the square input images.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image (`28 · 28`).
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes (output logits).
pub const NUM_CLASSES: usize = 10;

/// A module mapping images `[batch, 1, 28, 28]` to logits `[batch, 10]`.
pub trait Classifier: Module {
    /// Computes the logits of a batch of images.
    ///
    /// Runs in training mode (BatchNorm on batch statistics, graph recorded) when the model and
    /// the images are on an autodiff device, and in inference mode after
    /// [`Module::valid`] with images on the matching plain device
    /// ([`crate::inference_device`]).
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;
}

/// The model architectures, by name: `mlp`, `cnn`, `resnet`.
///
/// Serialized in lowercase. [`FromStr`] ignores ASCII case and surrounding whitespace.
///
/// ```
/// use stagewise_train::model::ModelKind;
///
/// assert_eq!("cnn".parse::<ModelKind>().unwrap(), ModelKind::Cnn);
/// let err = "vgg".parse::<ModelKind>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown model `vgg`: expected one of mlp, cnn, resnet");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// [`Mlp`]: 784-512-512-10, ReLU.
    Mlp,
    /// [`Cnn`]: two 5×5 convolutions with max-pooling, then 3136-256-10.
    Cnn,
    /// [`ResNet`]: ResNet-20 style, 16/32/64 channels, BatchNorm.
    ResNet,
}

impl ModelKind {
    /// All kinds, in the order of their names in error messages.
    pub const ALL: [ModelKind; 3] = [ModelKind::Mlp, ModelKind::Cnn, ModelKind::ResNet];

    /// The name used in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
            ModelKind::ResNet => "resnet",
        }
    }

    /// Number of trainable parameters of this architecture (the length of the flat parameter
    /// vector of [`crate::bridge`]).
    pub fn param_count(self) -> usize {
        match self {
            ModelKind::Mlp => Mlp::PARAM_COUNT,
            ModelKind::Cnn => Cnn::PARAM_COUNT,
            ModelKind::ResNet => ResNet::PARAM_COUNT,
        }
    }

    /// Builds a model of this kind; same as [`Model::new`].
    pub fn build(self, device: &Device, seed: u64) -> Model {
        Model::new(self, device, seed)
    }
}

impl stagewise_core::choice::Choice for ModelKind {
    const WHAT: &'static str = "model";
    const ALL: &'static [Self] = &ModelKind::ALL;

    fn name(self) -> &'static str {
        ModelKind::name(self)
    }

    fn help(self) -> &'static str {
        match self {
            ModelKind::Mlp => "784-512-512-10 perceptron, ReLU",
            ModelKind::Cnn => "two 5×5 convolutions with max-pooling, then 3136-256-10",
            ModelKind::ResNet => "ResNet-20 style, 16/32/64 channels, BatchNorm",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`ModelKind::from_str`]: the name matches no architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model `{name}`: expected one of mlp, cnn, resnet")]
pub struct UnknownModelError {
    /// The name that was given.
    pub name: String,
}

impl FromStr for ModelKind {
    type Err = UnknownModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        ModelKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownModelError { name: s.to_owned() })
    }
}

/// Any of the architectures, as one module type (what the trainer holds).
///
/// Visiting order (see [`crate::bridge`]) descends into the variant's fields in declaration
/// order.
#[derive(Module, Debug)]
pub enum Model {
    /// See [`Mlp`].
    Mlp(Mlp),
    /// See [`Cnn`].
    Cnn(Cnn),
    /// See [`ResNet`].
    ResNet(ResNet),
}

impl Model {
    /// Builds a model of `kind` on `device`, initialized deterministically from `seed`.
    pub fn new(kind: ModelKind, device: &Device, seed: u64) -> Self {
        match kind {
            ModelKind::Mlp => Model::Mlp(Mlp::new(device, seed)),
            ModelKind::Cnn => Model::Cnn(Cnn::new(device, seed)),
            ModelKind::ResNet => Model::ResNet(ResNet::new(device, seed)),
        }
    }

    /// The architecture of this model.
    pub fn kind(&self) -> ModelKind {
        match self {
            Model::Mlp(_) => ModelKind::Mlp,
            Model::Cnn(_) => ModelKind::Cnn,
            Model::ResNet(_) => ModelKind::ResNet,
        }
    }
}

impl Classifier for Model {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Mlp(model) => model.forward(images),
            Model::Cnn(model) => model.forward(images),
            Model::ResNet(model) => model.forward(images),
        }
    }
}
