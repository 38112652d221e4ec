//! Per-operation timing of a model's training step: each layer's forward pass and, for layers
//! with parameters, its input gradient and its weight gradient, timed in isolation at the
//! shapes the model uses.
//!
//! How an operation is timed (median of `reps` after two warm-up runs, on the training
//! device, so forward passes record the graph as in training):
//! - **forward**: `op(x)`;
//! - **input gradient** (`∂x`): the backward pass of `sum(op(x) ⊙ g)` with only `x` tracked,
//!   minus the backward pass of `sum(y ⊙ g)` for a tracked leaf `y` of the output's shape
//!   (the cost of the `⊙ g` and the sum, subtracted);
//! - **weight gradient** (`∂W`, bias included): the same with only the layer's parameters
//!   tracked.
//!
//! The loss row times `cross_entropy(logits, labels)` forward and its gradient in the logits.

use std::time::Instant;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Distribution, Int, Tensor};
use serde::Serialize;

use crate::kernels;
use crate::model::{ModelKind, NUM_CLASSES};
use crate::training_device;

/// One operation of a model, at the shape it runs in a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpSpec {
    /// Convolution `c_in → c_out`, square kernel, on `side × side` inputs.
    Conv {
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        side: usize,
        bias: bool,
        /// Whether the input needs a gradient (false for the first layer).
        input_grad: bool,
    },
    /// Linear layer `d_in → d_out`.
    Linear { d_in: usize, d_out: usize },
    /// 2×2 max-pool, stride 2, on `[b, channels, side, side]`.
    MaxPool { channels: usize, side: usize },
    /// ReLU on `[b, channels, side, side]` (`side` 1 for a vector of `channels`).
    Relu { channels: usize, side: usize },
    /// BatchNorm in training mode on `[b, channels, side, side]`.
    BatchNorm { channels: usize, side: usize },
    /// Cross-entropy of `[b, 10]` logits.
    Loss,
}

impl OpSpec {
    /// A short name with the shape, e.g. `conv 32→64 5×5 s1 @14`.
    pub fn label(&self) -> String {
        match *self {
            OpSpec::Conv {
                c_in,
                c_out,
                kernel,
                stride,
                side,
                ..
            } => {
                format!("conv {c_in}→{c_out} {kernel}×{kernel} s{stride} @{side}")
            }
            OpSpec::Linear { d_in, d_out } => format!("linear {d_in}→{d_out}"),
            OpSpec::MaxPool { channels, side } => format!("max-pool 2×2 {channels}@{side}"),
            OpSpec::Relu { channels, side } => format!("relu {channels}@{side}"),
            OpSpec::BatchNorm { channels, side } => format!("batchnorm {channels}@{side}"),
            OpSpec::Loss => "cross-entropy".to_string(),
        }
    }

    /// Multiply–adds of the forward pass per image (convolutions and linear layers; 0 for
    /// the rest).
    pub fn forward_macs_per_image(&self) -> usize {
        match *self {
            OpSpec::Conv {
                c_in,
                c_out,
                kernel,
                stride,
                padding,
                side,
                ..
            } => {
                let out = (side + 2 * padding - kernel) / stride + 1;
                c_out * out * out * c_in * kernel * kernel
            }
            OpSpec::Linear { d_in, d_out } => d_in * d_out,
            _ => 0,
        }
    }
}

/// The operations of one training step of `kind`, each with how many times it runs.
pub fn model_ops(kind: ModelKind) -> Vec<(OpSpec, usize)> {
    let conv = |c_in, c_out, kernel, stride, padding, side, bias, input_grad| OpSpec::Conv {
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        side,
        bias,
        input_grad,
    };
    let linear = |d_in, d_out| OpSpec::Linear { d_in, d_out };
    let relu = |channels, side| OpSpec::Relu { channels, side };
    let pool = |channels, side| OpSpec::MaxPool { channels, side };
    let norm = |channels, side| OpSpec::BatchNorm { channels, side };
    match kind {
        ModelKind::Mlp => vec![
            (linear(784, 512), 1),
            (relu(512, 1), 2),
            (linear(512, 512), 1),
            (linear(512, 10), 1),
            (OpSpec::Loss, 1),
        ],
        ModelKind::Cnn => vec![
            (conv(1, 32, 5, 1, 2, 28, true, false), 1),
            (relu(32, 28), 1),
            (pool(32, 28), 1),
            (conv(32, 64, 5, 1, 2, 14, true, true), 1),
            (relu(64, 14), 1),
            (pool(64, 14), 1),
            (linear(3136, 256), 1),
            (relu(256, 1), 1),
            (linear(256, 10), 1),
            (OpSpec::Loss, 1),
        ],
        ModelKind::ResNet => vec![
            (conv(1, 16, 3, 1, 1, 28, false, false), 1),
            (conv(16, 16, 3, 1, 1, 28, false, true), 6),
            (conv(16, 32, 3, 2, 1, 28, false, true), 1),
            (conv(16, 32, 1, 2, 0, 28, false, true), 1),
            (conv(32, 32, 3, 1, 1, 14, false, true), 5),
            (conv(32, 64, 3, 2, 1, 14, false, true), 1),
            (conv(32, 64, 1, 2, 0, 14, false, true), 1),
            (conv(64, 64, 3, 1, 1, 7, false, true), 5),
            (norm(16, 28), 7),
            (norm(32, 14), 7),
            (norm(64, 7), 7),
            (relu(16, 28), 7),
            (relu(32, 14), 6),
            (relu(64, 7), 6),
            (linear(64, 10), 1),
            (OpSpec::Loss, 1),
        ],
    }
}

/// Timings of one operation, in milliseconds per call (median).
#[derive(Debug, Clone, Serialize)]
pub struct OpTiming {
    /// [`OpSpec::label`].
    pub op: String,
    /// Calls per training step.
    pub count: usize,
    /// Forward pass.
    pub ms_forward: f64,
    /// Input gradient (`None` when the model needs none here, e.g. the first layer).
    pub ms_input_grad: Option<f64>,
    /// Weight (and bias) gradient, for layers with parameters; for the other operations, the
    /// whole backward pass.
    pub ms_weight_grad: Option<f64>,
    /// Forward GFLOP/s (convolutions and linear layers).
    pub forward_gflops: Option<f64>,
}

impl OpTiming {
    /// Milliseconds per training step: `count × (forward + gradients)`.
    pub fn ms_per_step(&self) -> f64 {
        let grads = self.ms_input_grad.unwrap_or(0.0) + self.ms_weight_grad.unwrap_or(0.0);
        self.count as f64 * (self.ms_forward + grads)
    }
}

/// Median milliseconds of `reps` runs of `f` after two warm-up runs.
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Median milliseconds of the backward pass alone of the scalar that `make_loss` builds (the
/// forward pass runs untimed before each backward pass), after two warm-up runs.
fn median_backward_ms(reps: usize, make_loss: impl Fn() -> Tensor<1>) -> f64 {
    let mut times: Vec<f64> = (0..reps.max(1) + 2)
        .map(|_| {
            let loss = make_loss();
            let t = Instant::now();
            let _ = loss.backward();
            t.elapsed().as_secs_f64() * 1e3
        })
        .skip(2)
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Backward milliseconds of `sum(f(x) ⊙ g)` minus those of `sum(y ⊙ g)` for a tracked leaf `y`
/// of the output's shape, with `x` tracked or not (the parameters inside `f` decide the rest).
fn gradient_ms<const DI: usize, const DO: usize>(
    reps: usize,
    x_dims: [usize; DI],
    track_x: bool,
    f: impl Fn(Tensor<DI>) -> Tensor<DO>,
) -> f64 {
    let device = training_device();
    let x = Tensor::<DI>::random(x_dims, Distribution::Default, &device);
    let out_dims = f(x.clone()).dims();
    let g = Tensor::<DO>::random(out_dims, Distribution::Default, &device);
    let with_op = median_backward_ms(reps, || {
        let x = if track_x {
            x.clone().require_grad()
        } else {
            x.clone()
        };
        (f(x) * g.clone()).sum()
    });
    let y = Tensor::<DO>::random(out_dims, Distribution::Default, &device);
    let without = median_backward_ms(reps, || (y.clone().require_grad() * g.clone()).sum());
    (with_op - without).max(0.0)
}

/// Forward milliseconds of `f(x)` on a random `x` of `x_dims` (not tracked).
fn forward_ms<const DI: usize, const DO: usize>(
    reps: usize,
    x_dims: [usize; DI],
    f: impl Fn(Tensor<DI>) -> Tensor<DO>,
) -> f64 {
    let x = Tensor::<DI>::random(x_dims, Distribution::Default, &training_device());
    median_ms(reps, || {
        let _ = f(x.clone());
    })
}

/// Times one operation at batch size `batch` (see the [module documentation](self)).
pub fn time_op(spec: OpSpec, count: usize, batch: usize, reps: usize) -> OpTiming {
    let device = training_device();
    let b = batch;
    let (ms_forward, ms_input_grad, ms_weight_grad) = match spec {
        OpSpec::Conv {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
            side,
            bias,
            input_grad,
        } => {
            let make = || -> Conv2d {
                Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(
                        padding, padding, padding, padding,
                    ))
                    .with_bias(bias)
                    .init(&device)
            };
            // Two layers: a clone shares its parameters' lazy state, so `no_grad` on a clone
            // would freeze the original too.
            let (layer, frozen) = (make(), make().no_grad());
            let dims = [b, c_in, side, side];
            let fwd = forward_ms(reps, dims, |x| kernels::conv2d(&layer, x));
            let dx =
                input_grad.then(|| gradient_ms(reps, dims, true, |x| kernels::conv2d(&frozen, x)));
            let dw = gradient_ms(reps, dims, false, |x| kernels::conv2d(&layer, x));
            (fwd, dx, Some(dw))
        }
        OpSpec::Linear { d_in, d_out } => {
            let make = || LinearConfig::new(d_in, d_out).init(&device);
            let (layer, frozen) = (make(), make().no_grad());
            let dims = [b, d_in];
            let fwd = forward_ms(reps, dims, |x| kernels::linear(&layer, x));
            let dx = gradient_ms(reps, dims, true, |x| kernels::linear(&frozen, x));
            let dw = gradient_ms(reps, dims, false, |x| kernels::linear(&layer, x));
            (fwd, Some(dx), Some(dw))
        }
        OpSpec::MaxPool { channels, side } => {
            let pool = MaxPool2dConfig::new([2, 2]).init();
            let dims = [b, channels, side, side];
            let fwd = forward_ms(reps, dims, |x| kernels::max_pool2d(&pool, x));
            let dx = gradient_ms(reps, dims, true, |x| kernels::max_pool2d(&pool, x));
            (fwd, Some(dx), None)
        }
        OpSpec::Relu { channels, side } => {
            let dims = [b, channels, side, side];
            let fwd = forward_ms(reps, dims, relu);
            (fwd, Some(gradient_ms(reps, dims, true, relu)), None)
        }
        OpSpec::BatchNorm { channels, side } => {
            let make = || BatchNormConfig::new(channels).init(&device);
            let (bn, frozen) = (make(), make().no_grad());
            let dims = [b, channels, side, side];
            let fwd = forward_ms(reps, dims, |x| kernels::batch_norm(&bn, x));
            let dx = gradient_ms(reps, dims, true, |x| kernels::batch_norm(&frozen, x));
            let dw = gradient_ms(reps, dims, false, |x| kernels::batch_norm(&bn, x));
            (fwd, Some(dx), Some(dw))
        }
        OpSpec::Loss => {
            let loss_fn = CrossEntropyLossConfig::new().init(&device);
            let labels = Tensor::<1, Int>::from_data(
                burn::tensor::TensorData::new(
                    (0..b as i64)
                        .map(|i| i % NUM_CLASSES as i64)
                        .collect::<Vec<_>>(),
                    [b],
                ),
                &device,
            );
            let logits = Tensor::<2>::random([b, NUM_CLASSES], Distribution::Default, &device);
            let fwd = median_ms(reps, || {
                let _ = loss_fn.forward(logits.clone(), labels.clone());
            });
            let grad = median_backward_ms(reps, || {
                loss_fn.forward(logits.clone().require_grad(), labels.clone())
            });
            (fwd, Some(grad), None)
        }
    };
    let macs = spec.forward_macs_per_image() * b;
    OpTiming {
        op: spec.label(),
        count,
        ms_forward,
        ms_input_grad,
        ms_weight_grad,
        forward_gflops: (macs > 0).then(|| 2.0 * macs as f64 / (ms_forward * 1e6)),
    }
}

/// Times every operation of `kind`'s training step at batch size `batch`.
pub fn bench_ops(kind: ModelKind, batch: usize, reps: usize) -> Vec<OpTiming> {
    crate::threads::on_pool(|| {
        model_ops(kind)
            .into_iter()
            .map(|(spec, count)| time_op(spec, count, batch, reps))
            .collect()
    })
}

/// Multiply–adds of `kind`'s forward pass per image (convolutions and linear layers).
pub fn forward_macs_per_image(kind: ModelKind) -> usize {
    model_ops(kind)
        .iter()
        .map(|(spec, count)| spec.forward_macs_per_image() * count)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnn_forward_macs_match_its_layers() {
        // conv1 32·784·25, conv2 64·196·800, fc1 3136·256, fc2 256·10.
        let expected = 32 * 784 * 25 + 64 * 196 * 800 + 3136 * 256 + 2560;
        assert_eq!(forward_macs_per_image(ModelKind::Cnn), expected);
    }

    #[test]
    fn every_op_of_the_mlp_times_positive() {
        let rows = bench_ops(ModelKind::Mlp, 4, 1);
        assert_eq!(rows.len(), model_ops(ModelKind::Mlp).len());
        assert!(rows
            .iter()
            .all(|r| r.ms_forward > 0.0 && r.ms_per_step() > 0.0));
    }
}
