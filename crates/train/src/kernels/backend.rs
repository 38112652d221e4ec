//! The burn side of the kernels: [`StagewiseKernels`] for flex (forward passes on the tensors'
//! slices) and for flex with autodiff (the same forward passes, recording a backward step that
//! calls the slice kernels' backward passes).

use std::fmt::Debug;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Flex};
use burn::tensor::{Shape, TensorData};

use super::batch_norm::{self, NormGrads, NormShape};
use super::conv2d::{self, Conv2dGrads, Conv2dShape};
use super::linear::{self, LinearGrads, LinearShape};
use super::max_pool2d::{self, PoolShape};

/// The backend operations of [`crate::kernels`]; implemented for flex and flex with autodiff.
/// Call them through [`crate::kernels::conv2d`], [`crate::kernels::max_pool2d`] and
/// [`crate::kernels::linear`], which check that a layer is covered.
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

    /// Linear layer `x·W` on `[batch, d_in]` inputs, `W` of `[d_in, d_out]`.
    fn stagewise_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x·W + b`.
    fn stagewise_linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Per-channel batch mean and biased variance of `[batch, channels, h, w]` as a
    /// `[2, channels]` tensor; never tracked (the normalization's backward step accounts for
    /// their dependence on `x`).
    fn stagewise_batch_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Training-mode batch normalization of `x` with the statistics of
    /// [`stagewise_batch_stats`](Self::stagewise_batch_stats) of the same `x`.
    fn stagewise_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// `t` itself when its values are contiguous (a cheap clone), else a contiguous copy. Read the
/// values with [`f32s`]: a view (e.g. `narrow`) may start inside a larger buffer.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// The values of a contiguous f32 tensor: its part of the storage it shares.
fn f32s(t: &FlexTensor) -> &[f32] {
    let start = t.layout().start_offset();
    let len = t.layout().shape().num_elements();
    &t.storage::<f32>()[start..start + len]
}

fn flex_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The convolution sizes of input `x_shape` and weight `w_shape`.
fn conv_shape(x: &Shape, w: &Shape, stride: [usize; 2], padding: [usize; 2]) -> Conv2dShape {
    Conv2dShape {
        batch: x[0],
        c_in: x[1],
        height: x[2],
        width: x[3],
        c_out: w[0],
        kernel: [w[2], w[3]],
        stride,
        padding,
    }
}

/// Stride and padding of a convolution.
type ConvParams = ([usize; 2], [usize; 2]);

fn conv_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    (stride, padding): ConvParams,
) -> FlexTensor {
    let (x, weight, bias) = (contiguous(x), contiguous(weight), bias.map(contiguous));
    let s = conv_shape(x.layout().shape(), weight.layout().shape(), stride, padding);
    let mut out = vec![0.0f32; s.out_len()];
    let bias = bias.as_ref().map(f32s);
    conv2d::forward(&s, f32s(&x), f32s(&weight), bias, &mut out);
    flex_tensor(
        out,
        Shape::new([s.batch, s.c_out, s.out_height(), s.out_width()]),
    )
}

fn pool_shape(x: &Shape, kernel: [usize; 2], stride: [usize; 2]) -> PoolShape {
    PoolShape {
        planes: x[0] * x[1],
        height: x[2],
        width: x[3],
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
    max_pool2d::forward(&s, f32s(&x), &mut out, &mut argmax);
    let shape = Shape::new([x_shape[0], x_shape[1], s.out_height(), s.out_width()]);
    (flex_tensor(out, shape), argmax)
}

fn linear_shape(x: &Shape, w: &Shape) -> LinearShape {
    LinearShape {
        batch: x[0],
        d_in: x[1],
        d_out: w[1],
    }
}

fn linear_forward(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>) -> FlexTensor {
    let (x, weight, bias) = (contiguous(x), contiguous(weight), bias.map(contiguous));
    let s = linear_shape(x.layout().shape(), weight.layout().shape());
    let mut y = vec![0.0f32; s.batch * s.d_out];
    let bias = bias.as_ref().map(f32s);
    linear::forward(&s, f32s(&x), f32s(&weight), bias, &mut y);
    flex_tensor(y, Shape::new([s.batch, s.d_out]))
}

fn norm_shape(x: &Shape) -> NormShape {
    NormShape {
        batch: x[0],
        channels: x[1],
        plane: x[2] * x[3],
    }
}

fn batch_stats(x: &FlexTensor) -> FlexTensor {
    let x = contiguous(x);
    let s = norm_shape(x.layout().shape());
    let mut stats = vec![0.0f32; 2 * s.channels];
    let (mean, var) = stats.split_at_mut(s.channels);
    batch_norm::statistics(&s, f32s(&x), mean, var);
    flex_tensor(stats, Shape::new([2, s.channels]))
}

fn norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    stats: &FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let (x, gamma, beta, stats) = (
        contiguous(x),
        contiguous(gamma),
        contiguous(beta),
        contiguous(stats),
    );
    let s = norm_shape(x.layout().shape());
    let (mean, var) = f32s(&stats).split_at(s.channels);
    let mut y = vec![0.0f32; s.len()];
    let (g, b) = (f32s(&gamma), f32s(&beta));
    batch_norm::forward(&s, f32s(&x), g, b, mean, var, epsilon, &mut y);
    flex_tensor(y, x.layout().shape().clone())
}

impl StagewiseKernels for Flex {
    fn stagewise_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        conv_forward(&x, &weight, None, (stride, padding))
    }

    fn stagewise_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        conv_forward(&x, &weight, Some(&bias), (stride, padding))
    }

    fn stagewise_max_pool2d(x: FlexTensor, kernel: [usize; 2], stride: [usize; 2]) -> FlexTensor {
        pool_forward(&x, kernel, stride).0
    }

    fn stagewise_linear(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        linear_forward(&x, &weight, None)
    }

    fn stagewise_linear_bias(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&x, &weight, Some(&bias))
    }

    fn stagewise_batch_stats(x: FlexTensor) -> FlexTensor {
        batch_stats(&x)
    }

    fn stagewise_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        norm_forward(&x, &gamma, &beta, &stats, epsilon)
    }
}

/// State of a layer's backward step: its checkpointed input and weight, and its sizes.
#[derive(Debug, Clone)]
struct Checkpointed<P> {
    x: NodeId,
    weight: NodeId,
    params: P,
}

/// The output gradient and the checkpointed input and weight of a layer's backward step.
fn layer_inputs<P, const N: usize>(
    ops: &Ops<Checkpointed<P>, N>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) -> [FlexTensor; 3] {
    let grad_out = contiguous(&grads.consume::<Flex>(&ops.node));
    let x = checkpointer.retrieve_node_output::<FlexTensor>(ops.state.x);
    let weight = checkpointer.retrieve_node_output::<FlexTensor>(ops.state.weight);
    [grad_out, contiguous(&x), contiguous(&weight)]
}

/// Registers each computed gradient with its parent (`[x, weight]` or `[x, weight, bias]`).
fn register<const N: usize>(
    ops: &Ops<impl Clone, N>,
    grads: &mut Gradients,
    results: [Option<FlexTensor>; 3],
) {
    for (parent, grad) in ops.parents.iter().zip(results) {
        if let (Some(node), Some(grad)) = (parent, grad) {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// A zeroed gradient buffer of `len` values for each parent that needs one.
fn buffers<const N: usize>(
    parents: &[Option<impl Sized>; N],
    lens: [usize; 3],
) -> [Option<Vec<f32>>; 3] {
    std::array::from_fn(|i| {
        parents
            .get(i)
            .and_then(Option::as_ref)
            .map(|_| vec![0.0f32; lens[i]])
    })
}

fn conv_backward<const N: usize>(
    ops: Ops<Checkpointed<ConvParams>, N>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let [grad_out, x, weight] = layer_inputs(&ops, grads, checkpointer);
    let (stride, padding) = ops.state.params;
    let (x_shape, w_shape) = (x.layout().shape().clone(), weight.layout().shape().clone());
    let s = conv_shape(&x_shape, &w_shape, stride, padding);
    let [mut gx, mut gw, mut gb] = buffers(&ops.parents, [s.input_len(), s.weight_len(), s.c_out]);
    let wanted = Conv2dGrads {
        x: gx.as_deref_mut(),
        weight: gw.as_deref_mut(),
        bias: gb.as_deref_mut(),
    };
    let (x_values, w_values) = (f32s(&x), f32s(&weight));
    conv2d::backward(&s, x_values, w_values, f32s(&grad_out), wanted);
    let results = [
        gx.map(|g| flex_tensor(g, x_shape)),
        gw.map(|g| flex_tensor(g, w_shape)),
        gb.map(|g| flex_tensor(g, Shape::new([s.c_out]))),
    ];
    register(&ops, grads, results);
}

fn linear_backward<const N: usize>(
    ops: Ops<Checkpointed<()>, N>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let [grad_y, x, weight] = layer_inputs(&ops, grads, checkpointer);
    let (x_shape, w_shape) = (x.layout().shape().clone(), weight.layout().shape().clone());
    let s = linear_shape(&x_shape, &w_shape);
    let lens = [s.batch * s.d_in, s.d_in * s.d_out, s.d_out];
    let [mut gx, mut gw, mut gb] = buffers(&ops.parents, lens);
    let wanted = LinearGrads {
        x: gx.as_deref_mut(),
        weight: gw.as_deref_mut(),
        bias: gb.as_deref_mut(),
    };
    let (x_values, w_values) = (f32s(&x), f32s(&weight));
    linear::backward(&s, x_values, w_values, f32s(&grad_y), wanted);
    let results = [
        gx.map(|g| flex_tensor(g, x_shape)),
        gw.map(|g| flex_tensor(g, w_shape)),
        gb.map(|g| flex_tensor(g, Shape::new([s.d_out]))),
    ];
    register(&ops, grads, results);
}

/// The batch statistics and ε of a normalization.
type NormParams = (FlexTensor, f64);

fn norm_backward(
    ops: Ops<Checkpointed<NormParams>, 3>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    // `weight` is γ here.
    let [grad_y, x, gamma] = layer_inputs(&ops, grads, checkpointer);
    let (stats, epsilon) = (contiguous(&ops.state.params.0), ops.state.params.1);
    let x_shape = x.layout().shape().clone();
    let s = norm_shape(&x_shape);
    let [mut gx, mut gg, mut gb] = buffers(&ops.parents, [s.len(), s.channels, s.channels]);
    let wanted = NormGrads {
        x: gx.as_deref_mut(),
        gamma: gg.as_deref_mut(),
        beta: gb.as_deref_mut(),
    };
    let (mean, var) = f32s(&stats).split_at(s.channels);
    let (x_values, g_values) = (f32s(&x), f32s(&gamma));
    batch_norm::backward(
        &s,
        x_values,
        g_values,
        mean,
        var,
        epsilon,
        f32s(&grad_y),
        wanted,
    );
    let channels = || Shape::new([s.channels]);
    let results = [
        gx.map(|g| flex_tensor(g, x_shape)),
        gg.map(|g| flex_tensor(g, channels())),
        gb.map(|g| flex_tensor(g, channels())),
    ];
    register(&ops, grads, results);
}

/// Declares a backward step with `N` parents that calls `$backward`.
macro_rules! layer_step {
    ($name:ident, $n:literal, $params:ty, $backward:ident) => {
        #[derive(Debug)]
        struct $name;

        impl Backward<Flex, $n> for $name {
            type State = Checkpointed<$params>;

            fn backward(
                self,
                ops: Ops<Self::State, $n>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                $backward(ops, grads, checkpointer);
            }
        }
    };
}

layer_step!(ConvNoBias, 2, ConvParams, conv_backward);
layer_step!(ConvWithBias, 3, ConvParams, conv_backward);
layer_step!(LinearNoBias, 2, (), linear_backward);
layer_step!(LinearWithBias, 3, (), linear_backward);
layer_step!(NormTrain, 3, NormParams, norm_backward);

/// Records `op` (whose parents are `nodes`) with `x` and `weight` checkpointed, and computes
/// its output with `forward`.
fn record<O, P, C, const N: usize>(
    op: O,
    nodes: [NodeGuard; N],
    x: &FloatTensor<Autodiff<Flex, C>>,
    weight: &FloatTensor<Autodiff<Flex, C>>,
    params: P,
    forward: impl FnOnce() -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>>
where
    O: Backward<Flex, N, State = Checkpointed<P>>,
    P: Clone + Send + Debug + 'static,
    C: CheckpointStrategy,
{
    match op.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = Checkpointed {
                x: prep.checkpoint(x),
                weight: prep.checkpoint(weight),
                params,
            };
            prep.finish(state, forward())
        }
        OpsKind::UnTracked(prep) => prep.finish(forward()),
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
        max_pool2d::backward(&state.shape, f32s(&grad_out), &state.argmax, &mut grad_x);
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
        let forward = || conv_forward(x.primitive(), weight.primitive(), None, (stride, padding));
        let nodes = [x.node(), weight.node()];
        record::<_, _, C, _>(ConvNoBias, nodes, &x, &weight, (stride, padding), forward)
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
            conv_forward(x.primitive(), weight.primitive(), b, (stride, padding))
        };
        let nodes = [x.node(), weight.node(), bias.node()];
        record::<_, _, C, _>(ConvWithBias, nodes, &x, &weight, (stride, padding), forward)
    }

    fn stagewise_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> FloatTensor<Self> {
        match MaxPool.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, argmax) = pool_forward(x.primitive(), kernel, stride);
                let x_shape = x.primitive().layout().shape().clone();
                let state = PoolState {
                    shape: pool_shape(&x_shape, kernel, stride),
                    x_shape,
                    argmax: Arc::new(argmax),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(pool_forward(x.primitive(), kernel, stride).0),
        }
    }

    fn stagewise_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let forward = || linear_forward(x.primitive(), weight.primitive(), None);
        record::<_, _, C, _>(
            LinearNoBias,
            [x.node(), weight.node()],
            &x,
            &weight,
            (),
            forward,
        )
    }

    fn stagewise_linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let forward = || linear_forward(x.primitive(), weight.primitive(), Some(bias.primitive()));
        let nodes = [x.node(), weight.node(), bias.node()];
        record::<_, _, C, _>(LinearWithBias, nodes, &x, &weight, (), forward)
    }

    fn stagewise_batch_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(batch_stats(x.primitive()))
    }

    fn stagewise_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let stats = stats.primitive().clone();
        let forward = || {
            norm_forward(
                x.primitive(),
                gamma.primitive(),
                beta.primitive(),
                &stats,
                epsilon,
            )
        };
        let nodes = [x.node(), gamma.node(), beta.node()];
        let params = (stats.clone(), epsilon);
        record::<_, _, C, _>(NormTrain, nodes, &x, &gamma, params, forward)
    }
}
