//! Faster CPU kernels for the operations where burn-flex is the gap: 2-D convolution (forward,
//! input gradient, weight gradient, bias gradient).
//!
//! The models stay written in burn; their convolutions call [`conv2d`] instead of
//! `Conv2d::forward`. [`conv2d`] is a burn *backend extension* ([`StagewiseKernels`]): on the flex
//! backend it runs [`conv2d::forward`] on the tensors' slices, and on flex with autodiff it
//! records its own backward pass ([`conv2d::backward`]), so gradients flow through it like
//! through any burn operation. Shapes these kernels do not cover (groups, dilation, asymmetric
//! padding, a dtype other than f32) and a process that chose [`KernelChoice::Flex`] fall back
//! to burn's own `Conv2d::forward`.
//!
//! Why: burn-flex computes a convolution's weight gradient as a convolution whose kernel is
//! the whole output gradient and its input gradient as a transposed convolution; on the cnn's
//! and resnet's shapes both are several times slower than the im2col + GEMM of
//! [`conv2d::backward`] (`stagewise bench train --ops`, docs/benchmarks.md).
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

pub mod conv2d;
pub mod max_pool2d;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::{DType, Shape, Tensor, TensorData};

use self::conv2d::{Conv2dGrads, Conv2dShape};
use self::max_pool2d::PoolShape;

/// Which implementation the models' convolutions use.
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

/// The backend operations this module adds; implemented for flex and for flex with autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait StagewiseKernels: Backend {
    /// 2-D convolution without bias, dilation 1, one group, symmetric padding `[ph, pw]`.
    fn stagewise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self>;

    /// The same with a bias `[c_out]` added to every output position.
    fn stagewise_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self>;

    /// 2-D max-pooling, no padding, dilation 1, floor mode.
    fn stagewise_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// The convolution sizes of input `x_shape` and weight `w_shape`.
fn conv_shape(
    x_shape: &Shape,
    w_shape: &Shape,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Conv2dShape {
    Conv2dShape {
        batch: x_shape[0],
        c_in: x_shape[1],
        height: x_shape[2],
        width: x_shape[3],
        c_out: w_shape[0],
        kernel: [w_shape[2], w_shape[3]],
        stride,
        padding,
    }
}

/// The f32 values of a flex tensor, contiguous.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn flex_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn flex_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> FlexTensor {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let s = conv_shape(x.layout().shape(), weight.layout().shape(), stride, padding);
    let bias = bias.map(contiguous);
    let mut out = vec![0.0f32; s.out_len()];
    conv2d::forward(
        &s,
        x.storage::<f32>(),
        weight.storage::<f32>(),
        bias.as_ref().map(|b| b.storage::<f32>()),
        &mut out,
    );
    flex_tensor(
        out,
        Shape::new([s.batch, s.c_out, s.out_height(), s.out_width()]),
    )
}

impl StagewiseKernels for Flex {
    fn stagewise_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        flex_forward(&x, &weight, None, stride, padding)
    }

    fn stagewise_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        flex_forward(&x, &weight, Some(&bias), stride, padding)
    }

    fn stagewise_max_pool2d(x: FlexTensor, kernel: [usize; 2], stride: [usize; 2]) -> FlexTensor {
        pool_forward(&x, kernel, stride).0
    }
}

/// The pool's sizes for input `x_shape`.
fn pool_shape(x_shape: &Shape, kernel: [usize; 2], stride: [usize; 2]) -> PoolShape {
    PoolShape {
        planes: x_shape[0] * x_shape[1],
        height: x_shape[2],
        width: x_shape[3],
        kernel,
        stride,
    }
}

/// The pooled tensor and where each maximum lies in its input plane.
fn pool_forward(x: &FlexTensor, kernel: [usize; 2], stride: [usize; 2]) -> (FlexTensor, Vec<u32>) {
    let x = contiguous(x);
    let x_shape = x.layout().shape().clone();
    let s = pool_shape(&x_shape, kernel, stride);
    let mut out = vec![0.0f32; s.out_len()];
    let mut argmax = vec![0u32; s.out_len()];
    max_pool2d::forward(&s, x.storage::<f32>(), &mut out, &mut argmax);
    let shape = Shape::new([x_shape[0], x_shape[1], s.out_height(), s.out_width()]);
    (flex_tensor(out, shape), argmax)
}

/// State of the convolution's backward step: the checkpointed input and weight, and the sizes.
#[derive(Debug, Clone)]
struct ConvState {
    x: NodeId,
    weight: NodeId,
    stride: [usize; 2],
    padding: [usize; 2],
}

/// The gradients of one convolution; parents `[x, weight]` or `[x, weight, bias]`.
fn conv_backward<const N: usize>(
    ops: Ops<ConvState, N>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let grad_out = contiguous(&grads.consume::<Flex>(&ops.node));
    let state = ops.state;
    let x = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(state.x));
    let weight = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(state.weight));
    let x_shape = x.layout().shape().clone();
    let w_shape = weight.layout().shape().clone();
    let s = conv_shape(&x_shape, &w_shape, state.stride, state.padding);
    let parents = &ops.parents;
    let mut gx = parents[0].as_ref().map(|_| vec![0.0f32; s.input_len()]);
    let mut gw = parents[1].as_ref().map(|_| vec![0.0f32; s.weight_len()]);
    let mut gb = parents
        .get(2)
        .and_then(Option::as_ref)
        .map(|_| vec![0.0f32; s.c_out]);
    conv2d::backward(
        &s,
        x.storage::<f32>(),
        weight.storage::<f32>(),
        grad_out.storage::<f32>(),
        Conv2dGrads {
            x: gx.as_deref_mut(),
            weight: gw.as_deref_mut(),
            bias: gb.as_deref_mut(),
        },
    );
    let results = [
        gx.map(|g| flex_tensor(g, x_shape)),
        gw.map(|g| flex_tensor(g, w_shape)),
        gb.map(|g| flex_tensor(g, Shape::new([s.c_out]))),
    ];
    for (parent, grad) in parents.iter().zip(results) {
        if let (Some(node), Some(grad)) = (parent, grad) {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

#[derive(Debug)]
struct ConvWithBias;

impl Backward<Flex, 3> for ConvWithBias {
    type State = ConvState;

    fn backward(
        self,
        ops: Ops<ConvState, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        conv_backward(ops, grads, checkpointer);
    }
}

#[derive(Debug)]
struct ConvNoBias;

impl Backward<Flex, 2> for ConvNoBias {
    type State = ConvState;

    fn backward(
        self,
        ops: Ops<ConvState, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        conv_backward(ops, grads, checkpointer);
    }
}

/// State of the max-pool's backward step: where each maximum lies.
#[derive(Debug, Clone)]
struct PoolState {
    shape: PoolShape,
    x_shape: Shape,
    argmax: Arc<Vec<u32>>,
}

#[derive(Debug)]
struct MaxPool;

impl Backward<Flex, 1> for MaxPool {
    type State = PoolState;

    fn backward(self, ops: Ops<PoolState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_out = contiguous(&grads.consume::<Flex>(&ops.node));
        let [Some(parent)] = &ops.parents else {
            return;
        };
        let state = ops.state;
        let mut grad_x = vec![0.0f32; state.shape.input_len()];
        max_pool2d::backward(
            &state.shape,
            grad_out.storage::<f32>(),
            &state.argmax,
            &mut grad_x,
        );
        grads.register::<Flex>(parent.id, flex_tensor(grad_x, state.x_shape));
    }
}

impl<C: CheckpointStrategy> StagewiseKernels for Autodiff<Flex, C> {
    fn stagewise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let forward = || flex_forward(x.primitive(), weight.primitive(), None, stride, padding);
        match ConvNoBias
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = ConvState {
                    x: prep.checkpoint(&x),
                    weight: prep.checkpoint(&weight),
                    stride,
                    padding,
                };
                prep.finish(state, forward())
            }
            OpsKind::UnTracked(prep) => prep.finish(forward()),
        }
    }

    fn stagewise_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let forward = || {
            let b = Some(bias.primitive());
            flex_forward(x.primitive(), weight.primitive(), b, stride, padding)
        };
        match ConvWithBias
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = ConvState {
                    x: prep.checkpoint(&x),
                    weight: prep.checkpoint(&weight),
                    stride,
                    padding,
                };
                prep.finish(state, forward())
            }
            OpsKind::UnTracked(prep) => prep.finish(forward()),
        }
    }

    fn stagewise_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> FloatTensor<Self> {
        match MaxPool.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, argmax) = pool_forward(x.primitive(), kernel, stride);
                let state = PoolState {
                    shape: pool_shape(x.primitive().layout().shape(), kernel, stride),
                    x_shape: x.primitive().layout().shape().clone(),
                    argmax: Arc::new(argmax),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(pool_forward(x.primitive(), kernel, stride).0),
        }
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
