//! Faster CPU kernels for the operations where burn-flex is the gap: 2-D convolution, 2×2
//! max-pooling and linear layers, forward and every gradient.
//!
//! The models stay written in burn; their layers call [`conv2d`], [`max_pool2d`] and [`linear`]
//! instead of the layers' `forward`. Each is a burn *backend extension* ([`StagewiseKernels`]):
//! on the flex backend it runs this module's slice kernels ([`conv2d::forward`], …) on the
//! tensors' values, and on flex with autodiff it records its own backward step (calling
//! [`conv2d::backward`], …), so gradients flow through it like through any burn operation.
//! Layers these kernels do not cover (groups, dilation, asymmetric padding, a dtype other than
//! f32) and a process that chose [`KernelChoice::Flex`] use burn's own `forward`. This build of
//! burn has flex as its only backend, so every tensor is a flex tensor.
//!
//! Why (`stagewise bench train --ops`, docs/benchmarks.md): burn-flex computes a convolution's
//! weight gradient as a convolution whose kernel is the whole output gradient, and its input
//! gradient as a transposed convolution; its max-pool backward scatters one element at a time;
//! its linear backward copies the transposed operands. The kernels here are im2col + GEMM over
//! cache-sized groups of images (the `gemm` crate, AVX-512 where the CPU has it), a branch-free
//! max-pool, and GEMMs that read transposes through strides.
//!
//! ```
//! use burn::nn::conv::Conv2dConfig;
//! use burn::nn::PaddingConfig2d;
//! use burn::tensor::{Distribution, Tensor};
//! use stagewise_train::kernels;
//!
//! let device = stagewise_train::training_device();
//! let conv = Conv2dConfig::new([1, 4], [3, 3])
//!     .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
//!     .init(&device);
//! let x = Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &device);
//! let ours = kernels::conv2d(&conv, x.clone());
//! let flex = conv.forward(x);
//! assert_eq!(ours.dims(), [2, 4, 6, 6]);
//! let diff: f32 = (ours - flex).abs().max().into_scalar();
//! assert!(diff < 1e-5);
//! ```

mod backend;
pub mod batch_norm;
pub mod conv2d;
pub mod linear;
mod matmul;
pub mod max_pool2d;

pub use backend::StagewiseKernels;

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::Dispatch;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::{DType, Tensor};

use self::max_pool2d::PoolShape;

/// Which implementation the models' layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// This module's kernels where they apply (the default).
    #[default]
    Stagewise,
    /// burn-flex's own operations everywhere (for comparisons).
    Flex,
}

impl KernelChoice {
    /// The name used on the command line: `stagewise` or `flex`.
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Stagewise => "stagewise",
            KernelChoice::Flex => "flex",
        }
    }
}

impl std::fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`KernelChoice::from_str`](std::str::FromStr::from_str).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kernels `{0}`: expected stagewise or flex")]
pub struct UnknownKernelsError(pub String);

impl std::str::FromStr for KernelChoice {
    type Err = UnknownKernelsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [KernelChoice::Stagewise, KernelChoice::Flex]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownKernelsError(s.to_owned()))
    }
}

static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Sets the implementation for the whole process (see [`KernelChoice`]).
pub fn set_kernel_choice(choice: KernelChoice) {
    CHOICE.store(choice as u8, Ordering::Relaxed);
}

/// The implementation in use.
pub fn kernel_choice() -> KernelChoice {
    match CHOICE.load(Ordering::Relaxed) {
        0 => KernelChoice::Stagewise,
        _ => KernelChoice::Flex,
    }
}

/// The symmetric `[ph, pw]` padding of `conv`, or `None` when it is asymmetric or `Same`.
fn symmetric_padding(conv: &Conv2d) -> Option<[usize; 2]> {
    match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }
}

/// `conv.forward(x)`, computed by [`StagewiseKernels`] when it covers the layer (one group,
/// dilation 1, symmetric padding, f32 on flex) and [`kernel_choice`] is
/// [`KernelChoice::Stagewise`]; by burn's `Conv2d::forward` otherwise.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = symmetric_padding(conv);
    let weight = conv.weight.val();
    let covered = kernel_choice() == KernelChoice::Stagewise
        && conv.groups == 1
        && conv.dilation == [1, 1]
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32;
    let (Some(padding), true) = (padding, covered) else {
        return conv.forward(x);
    };
    let [_, _, h, w] = x.dims();
    let [_, _, kh, kw] = weight.dims();
    if h + 2 * padding[0] < kh || w + 2 * padding[1] < kw {
        return conv.forward(x);
    }
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    let out = match &conv.bias {
        Some(bias) => {
            let bias = bias.val().into_dispatch();
            <Dispatch as StagewiseKernels>::stagewise_conv2d_bias(
                x,
                weight,
                bias,
                conv.stride,
                padding,
            )
        }
        None => <Dispatch as StagewiseKernels>::stagewise_conv2d(x, weight, conv.stride, padding),
    };
    Tensor::from_dispatch(out)
}

/// `pool.forward(x)`, computed by [`StagewiseKernels`] when it covers the layer (no padding,
/// dilation 1, floor mode, f32) and [`kernel_choice`] is [`KernelChoice::Stagewise`]; by
/// burn's `MaxPool2d::forward` otherwise.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let covered = kernel_choice() == KernelChoice::Stagewise
        && matches!(
            pool.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        )
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && x.dtype() == DType::F32;
    let shape = PoolShape {
        planes: 1,
        height: h,
        width: w,
        kernel: pool.kernel_size,
        stride: pool.stride,
    };
    if !covered || !shape.is_valid() {
        return pool.forward(x);
    }
    let out = <Dispatch as StagewiseKernels>::stagewise_max_pool2d(
        x.into_dispatch(),
        pool.kernel_size,
        pool.stride,
    );
    Tensor::from_dispatch(out)
}

/// `layer.forward(x)` for a 2-D input, computed by [`StagewiseKernels`] for f32 when
/// [`kernel_choice`] is [`KernelChoice::Stagewise`]; by burn's `Linear::forward` otherwise.
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let weight = layer.weight.val();
    let covered = kernel_choice() == KernelChoice::Stagewise
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32;
    if !covered {
        return layer.forward(x);
    }
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    let out = match &layer.bias {
        Some(bias) => {
            let bias = bias.val().into_dispatch();
            <Dispatch as StagewiseKernels>::stagewise_linear_bias(x, weight, bias)
        }
        None => <Dispatch as StagewiseKernels>::stagewise_linear(x, weight),
    };
    Tensor::from_dispatch(out)
}

/// `bn.forward(x)` in training mode (autodiff device, layer not frozen), computed by
/// [`StagewiseKernels`] for f32 when [`kernel_choice`] is [`KernelChoice::Stagewise`]: batch
/// statistics and normalization in two passes, and a backward step of its own. The running
/// statistics are updated as burn's `BatchNorm` does (`(1 − momentum)·running +
/// momentum·batch`). Inference mode and the other cases use burn's `BatchNorm::forward`.
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    let covered = kernel_choice() == KernelChoice::Stagewise
        && device.is_autodiff()
        && bn.training.is_enabled()
        && x.dtype() == DType::F32;
    if !covered {
        return bn.forward(x);
    }
    let [_, channels, _, _] = x.dims();
    let stats = <Dispatch as StagewiseKernels>::stagewise_batch_stats(x.clone().into_dispatch());
    let stats: Tensor<2> = Tensor::from_dispatch(stats);
    let out = <Dispatch as StagewiseKernels>::stagewise_batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        stats.clone().into_dispatch(),
        bn.epsilon,
    );
    let row = |r: usize| -> Tensor<1> {
        stats
            .clone()
            .slice([r..r + 1, 0..channels])
            .reshape([channels])
            .detach()
    };
    let m = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean.mul_scalar(1.0 - m).add(row(0).mul_scalar(m));
    let running_var = running_var.mul_scalar(1.0 - m).add(row(1).mul_scalar(m));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    Tensor::from_dispatch(out)
}
