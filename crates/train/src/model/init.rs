//! Seeded parameter initialization, independent of burn's global random state.
//!
//! burn's initializers draw from one process-wide generator (flex keeps it behind a mutex) and
//! initialize parameters lazily, on first use. Tests running in parallel threads, or a different
//! first use (a forward pass versus a flatten), would then change the values. The layers here are
//! built with burn's zero initializer (no random draws, nothing to defer) and their weights and
//! biases are then replaced by values drawn from a ChaCha8 generator seeded by the model seed,
//! in construction order.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Draws layer parameters from a seeded generator.
///
/// Weights and biases follow PyTorch's default for linear and convolution layers (also burn's):
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, `fan_in = in_features` or `in_channels * kh * kw`.
pub(crate) struct SeededInit {
    rng: ChaCha8Rng,
    device: Device,
}

impl SeededInit {
    pub(crate) fn new(device: &Device, seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    fn uniform<const D: usize>(&mut self, shape: [usize; D], fan_in: usize) -> Param<Tensor<D>> {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| self.rng.gen_range(-bound..bound) as f32)
            .collect();
        Param::from_data(TensorData::new(values, shape), &self.device)
    }

    /// A linear layer `d_input -> d_output` with bias (weight shape `[d_input, d_output]`).
    pub(crate) fn linear(&mut self, d_input: usize, d_output: usize) -> Linear {
        let mut layer = LinearConfig::new(d_input, d_output)
            .with_initializer(Initializer::Zeros)
            .init(&self.device);
        layer.weight = self.uniform([d_input, d_output], d_input);
        layer.bias = Some(self.uniform([d_output], d_input));
        layer
    }

    /// A 2-d convolution from `config`; its initializer is replaced by the seeded one.
    pub(crate) fn conv2d(&mut self, config: Conv2dConfig) -> Conv2d {
        let [c_in, c_out] = config.channels;
        let [kh, kw] = config.kernel_size;
        let c_in_group = c_in / config.groups;
        let fan_in = c_in_group * kh * kw;
        let has_bias = config.bias;
        let mut layer = config
            .with_initializer(Initializer::Zeros)
            .init(&self.device);
        layer.weight = self.uniform([c_out, c_in_group, kh, kw], fan_in);
        layer.bias = has_bias.then(|| self.uniform([c_out], fan_in));
        layer
    }
}
