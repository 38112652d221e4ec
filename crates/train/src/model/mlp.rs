//! Multi-layer perceptron 784-512-512-10 with ReLU.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::init::SeededInit;
use super::{Classifier, IMAGE_PIXELS, NUM_CLASSES};
use crate::kernels::linear;

/// Width of both hidden layers.
const HIDDEN: usize = 512;

/// Multi-layer perceptron: flatten, linear 784→512, ReLU, linear 512→512, ReLU, linear 512→10.
///
/// Trainable parameters: `784·512+512 + 512·512+512 + 512·10+10 = 669,706`
/// ([`Mlp::PARAM_COUNT`]).
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Mlp {
    /// Number of trainable parameters.
    pub const PARAM_COUNT: usize = IMAGE_PIXELS * HIDDEN
        + HIDDEN
        + HIDDEN * HIDDEN
        + HIDDEN
        + HIDDEN * NUM_CLASSES
        + NUM_CLASSES;

    /// Builds the network on `device`, initialized deterministically from `seed`.
    pub fn new(device: &Device, seed: u64) -> Self {
        let mut init = SeededInit::new(device, seed);
        Self {
            fc1: init.linear(IMAGE_PIXELS, HIDDEN),
            fc2: init.linear(HIDDEN, HIDDEN),
            fc3: init.linear(HIDDEN, NUM_CLASSES),
        }
    }
}

impl Classifier for Mlp {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = images.flatten(1, 3);
        let x = relu(linear(&self.fc1, x));
        let x = relu(linear(&self.fc2, x));
        linear(&self.fc3, x)
    }
}
