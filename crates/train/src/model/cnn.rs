//! Two-layer convolutional network.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::init::SeededInit;
use super::{Classifier, NUM_CLASSES};
use crate::kernels::{conv2d, linear, max_pool2d};

/// Convolutional network: conv 1→32 5×5 pad 2, ReLU, max-pool 2; conv 32→64 5×5 pad 2, ReLU,
/// max-pool 2; flatten (64·7·7 = 3136); linear 3136→256, ReLU; linear 256→10.
///
/// Trainable parameters: `32·25+32 + 64·32·25+64 + 3136·256+256 + 256·10+10 = 857,738`
/// ([`Cnn::PARAM_COUNT`]).
#[derive(Module, Debug)]
pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
}

impl Cnn {
    /// Number of trainable parameters.
    pub const PARAM_COUNT: usize =
        32 * 25 + 32 + 64 * 32 * 25 + 64 + 3136 * 256 + 256 + 256 * 10 + 10;

    /// Builds the network on `device`, initialized deterministically from `seed`.
    pub fn new(device: &Device, seed: u64) -> Self {
        let mut init = SeededInit::new(device, seed);
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
        };
        Self {
            conv1: init.conv2d(conv(1, 32)),
            conv2: init.conv2d(conv(32, 64)),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: init.linear(64 * 7 * 7, 256),
            fc2: init.linear(256, NUM_CLASSES),
        }
    }
}

impl Classifier for Cnn {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = max_pool2d(&self.pool, relu(conv2d(&self.conv1, images)));
        let x = max_pool2d(&self.pool, relu(conv2d(&self.conv2, x)));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = relu(linear(&self.fc1, x));
        linear(&self.fc2, x)
    }
}
