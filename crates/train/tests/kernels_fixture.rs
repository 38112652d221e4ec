//! The convolution, max-pool, linear and batch-norm kernels (`stagewise_train::kernels`) against PyTorch and
//! against burn-flex's own operations: forward values and every gradient.
//!
//! PyTorch: `tests/fixtures/kernels/kernels.json`, written by `tools/make_kernel_fixtures.py`
//! (float64 references from float32 inputs). flex: the same layer's `forward` on the same
//! device. Tolerance: 1e-5 of the reference tensor's largest magnitude, element by element.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Distribution, Tensor, TensorData};
use serde::Deserialize;
use stagewise_train::kernels;
use stagewise_train::training_device;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    op: String,
    stride: [usize; 2],
    padding: [usize; 2],
    kernel: [usize; 2],
    x_shape: Vec<usize>,
    x: Vec<f64>,
    w_shape: Option<Vec<usize>>,
    w: Option<Vec<f64>>,
    b: Option<Vec<f64>>,
    out_shape: Vec<usize>,
    out: Vec<f64>,
    grad_out: Vec<f64>,
    grad_x: Vec<f64>,
    grad_w: Option<Vec<f64>>,
    grad_b: Option<Vec<f64>>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/kernels/kernels.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture file (tools/make_kernel_fixtures.py)");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn tensor<const D: usize>(values: &[f64], shape: [usize; D]) -> Tensor<D> {
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), &training_device())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// Every `actual` within `1e-5 · max |expected|` of `expected`.
fn assert_close(what: &str, actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (f64::from(a) - e).abs();
        assert!(
            err <= 1e-5 * scale,
            "{what}[{i}]: {a} vs {e} (error {err:.3e}, scale {scale:.3e})"
        );
    }
}

/// A convolution layer with the given weights (tracked parameters).
fn conv_layer(
    w_shape: [usize; 4],
    w: &[f64],
    b: Option<&[f64]>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Conv2d {
    let [c_out, c_in, kh, kw] = w_shape;
    let mut conv = Conv2dConfig::new([c_in, c_out], [kh, kw])
        .with_stride(stride)
        .with_padding(PaddingConfig2d::Explicit(
            padding[0], padding[1], padding[0], padding[1],
        ))
        .with_bias(b.is_some())
        .init(&training_device());
    conv.weight = Param::from_tensor(tensor(w, w_shape));
    conv.bias = b.map(|b| Param::from_tensor(tensor(b, [c_out])));
    conv
}

/// Output and the gradients of `sum(op(x) ⊙ grad_out)` in x and in the parameters.
struct Run {
    out: Vec<f32>,
    grad_x: Vec<f32>,
    grad_w: Option<Vec<f32>>,
    grad_b: Option<Vec<f32>>,
}

fn run_conv(conv: &Conv2d, x: Tensor<4>, grad_out: Tensor<4>, ours: bool) -> Run {
    let x = x.require_grad();
    let out = if ours {
        kernels::conv2d(conv, x.clone())
    } else {
        conv.forward(x.clone())
    };
    let grads = (out.clone() * grad_out).sum().backward();
    Run {
        out: values(out),
        grad_x: values(x.grad(&grads).expect("x gradient")),
        grad_w: Some(values(
            conv.weight.val().grad(&grads).expect("weight gradient"),
        )),
        grad_b: conv
            .bias
            .as_ref()
            .map(|b| values(b.val().grad(&grads).expect("bias gradient"))),
    }
}

fn run_linear(layer: &Linear, x: Tensor<2>, grad_out: Tensor<2>, ours: bool) -> Run {
    let x = x.require_grad();
    let out = if ours {
        kernels::linear(layer, x.clone())
    } else {
        layer.forward(x.clone())
    };
    let grads = (out.clone() * grad_out).sum().backward();
    Run {
        out: values(out),
        grad_x: values(x.grad(&grads).expect("x gradient")),
        grad_w: Some(values(
            layer.weight.val().grad(&grads).expect("weight gradient"),
        )),
        grad_b: layer
            .bias
            .as_ref()
            .map(|b| values(b.val().grad(&grads).expect("bias gradient"))),
    }
}

fn run_norm(bn: &BatchNorm, x: Tensor<4>, grad_out: Tensor<4>, ours: bool) -> Run {
    let x = x.require_grad();
    let out = if ours {
        kernels::batch_norm(bn, x.clone())
    } else {
        bn.forward(x.clone())
    };
    let grads = (out.clone() * grad_out).sum().backward();
    Run {
        out: values(out),
        grad_x: values(x.grad(&grads).expect("x gradient")),
        grad_w: Some(values(bn.gamma.val().grad(&grads).expect("gamma gradient"))),
        grad_b: Some(values(bn.beta.val().grad(&grads).expect("beta gradient"))),
    }
}

fn dims<const D: usize>(shape: &[usize]) -> [usize; D] {
    shape.try_into().expect("tensor rank")
}

fn run_pool(pool: &MaxPool2d, x: Tensor<4>, grad_out: Tensor<4>, ours: bool) -> Run {
    let x = x.require_grad();
    let out = if ours {
        kernels::max_pool2d(pool, x.clone())
    } else {
        pool.forward(x.clone())
    };
    let grads = (out.clone() * grad_out).sum().backward();
    Run {
        out: values(out),
        grad_x: values(x.grad(&grads).expect("x gradient")),
        grad_w: None,
        grad_b: None,
    }
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn kernels_match_pytorch_forward_and_every_gradient() {
    let fixture = fixture();
    assert_eq!(
        fixture.cases.len(),
        15,
        "7 convolutions, 3 max-pools, 3 linear layers, 2 batch norms"
    );
    for case in &fixture.cases {
        let run = match case.op.as_str() {
            "conv2d" => {
                let (x, g) = (
                    tensor(&case.x, dims(&case.x_shape)),
                    tensor(&case.grad_out, dims(&case.out_shape)),
                );
                let w_shape = dims(case.w_shape.as_deref().expect("conv weight shape"));
                let conv = conv_layer(
                    w_shape,
                    case.w.as_deref().expect("conv weight"),
                    case.b.as_deref(),
                    case.stride,
                    case.padding,
                );
                run_conv(&conv, x, g, true)
            }
            "max_pool2d" => {
                let (x, g) = (
                    tensor(&case.x, dims(&case.x_shape)),
                    tensor(&case.grad_out, dims(&case.out_shape)),
                );
                let pool = MaxPool2dConfig::new(case.kernel)
                    .with_strides(case.stride)
                    .init();
                run_pool(&pool, x, g, true)
            }
            "linear" => {
                let (x, g) = (
                    tensor(&case.x, dims(&case.x_shape)),
                    tensor(&case.grad_out, dims(&case.out_shape)),
                );
                let [d_in, d_out] = dims(case.w_shape.as_deref().expect("linear weight shape"));
                let mut layer = LinearConfig::new(d_in, d_out)
                    .with_bias(case.b.is_some())
                    .init(&training_device());
                layer.weight =
                    Param::from_tensor(tensor(case.w.as_deref().unwrap(), [d_in, d_out]));
                layer.bias = case
                    .b
                    .as_deref()
                    .map(|b| Param::from_tensor(tensor(b, [d_out])));
                run_linear(&layer, x, g, true)
            }
            "batch_norm" => {
                let (x, g) = (
                    tensor(&case.x, dims(&case.x_shape)),
                    tensor(&case.grad_out, dims(&case.out_shape)),
                );
                let channels = case.x_shape[1];
                let mut bn = BatchNormConfig::new(channels).init(&training_device());
                bn.gamma = Param::from_tensor(tensor(case.w.as_deref().unwrap(), [channels]));
                bn.beta = Param::from_tensor(tensor(case.b.as_deref().unwrap(), [channels]));
                run_norm(&bn, x, g, true)
            }
            other => panic!("unknown op {other}"),
        };
        let name = &case.name;
        assert_close(&format!("{name} out"), &run.out, &case.out);
        assert_close(&format!("{name} grad_x"), &run.grad_x, &case.grad_x);
        if let (Some(actual), Some(expected)) = (&run.grad_w, &case.grad_w) {
            assert_close(&format!("{name} grad_w"), actual, expected);
        }
        assert_eq!(
            run.grad_b.is_some(),
            case.grad_b.is_some(),
            "{name}: bias gradient"
        );
        if let (Some(actual), Some(expected)) = (&run.grad_b, &case.grad_b) {
            assert_close(&format!("{name} grad_b"), actual, expected);
        }
    }
}

#[test]
fn max_pool_ties_route_the_gradient_exactly_as_pytorch() {
    let fixture = fixture();
    let case = fixture
        .cases
        .iter()
        .find(|c| c.name == "pool_ties")
        .expect("pool_ties case");
    let pool = MaxPool2dConfig::new(case.kernel)
        .with_strides(case.stride)
        .init();
    let x = tensor(&case.x, dims(&case.x_shape));
    let run = run_pool(
        &pool,
        x,
        tensor(&case.grad_out, dims(&case.out_shape)),
        true,
    );
    // Copies, not sums: the same values bit for bit, zeros where PyTorch has zeros.
    assert_eq!(to_f64(&run.grad_x), case.grad_x);
}

/// The model layers' shapes (batch 3 or 5) and a few odd ones: ours against flex.
#[test]
fn kernels_match_flex_on_the_models_shapes() {
    let device = training_device();
    // (c_in, c_out, kernel, stride, padding, side, bias)
    let convs = [
        (1, 32, 5, 1, 2, 28, true),
        (32, 64, 5, 1, 2, 14, true),
        (1, 16, 3, 1, 1, 28, false),
        (16, 16, 3, 1, 1, 28, false),
        (16, 32, 3, 2, 1, 28, false),
        (16, 32, 1, 2, 0, 28, false),
        (64, 64, 3, 1, 1, 7, false),
        (3, 4, 3, 3, 0, 10, true),
    ];
    for (c_in, c_out, k, stride, pad, side, bias) in convs {
        let conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(bias)
            .init(&device);
        let x = Tensor::<4>::random([3, c_in, side, side], Distribution::Default, &device);
        let out_side = (side + 2 * pad - k) / stride + 1;
        let g = Tensor::<4>::random(
            [3, c_out, out_side, out_side],
            Distribution::Default,
            &device,
        );
        let flex = run_conv(&conv, x.clone(), g.clone(), false);
        let ours = run_conv(&conv, x, g, true);
        let what = format!("conv {c_in}->{c_out} {k}x{k} s{stride} p{pad} @{side}");
        assert_close(&format!("{what} out"), &ours.out, &to_f64(&flex.out));
        assert_close(
            &format!("{what} grad_x"),
            &ours.grad_x,
            &to_f64(&flex.grad_x),
        );
        let (w_ours, w_flex) = (ours.grad_w.unwrap(), flex.grad_w.unwrap());
        assert_close(&format!("{what} grad_w"), &w_ours, &to_f64(&w_flex));
        if bias {
            let (b_ours, b_flex) = (ours.grad_b.unwrap(), flex.grad_b.unwrap());
            assert_close(&format!("{what} grad_b"), &b_ours, &to_f64(&b_flex));
        }
    }
    for (channels, side) in [(32, 28), (64, 14), (3, 7)] {
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let x = Tensor::<4>::random([3, channels, side, side], Distribution::Default, &device);
        let g = Tensor::<4>::random(
            [3, channels, side / 2, side / 2],
            Distribution::Default,
            &device,
        );
        let flex = run_pool(&pool, x.clone(), g.clone(), false);
        let ours = run_pool(&pool, x, g, true);
        assert_eq!(ours.out, flex.out, "max-pool {channels}@{side} out");
        assert_eq!(
            ours.grad_x, flex.grad_x,
            "max-pool {channels}@{side} grad_x"
        );
    }
    for (d_in, d_out, bias) in [
        (784, 512, true),
        (512, 10, true),
        (3136, 256, true),
        (64, 10, false),
    ] {
        let layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
        let x = Tensor::<2>::random([5, d_in], Distribution::Default, &device);
        let g = Tensor::<2>::random([5, d_out], Distribution::Default, &device);
        let flex = run_linear(&layer, x.clone(), g.clone(), false);
        let ours = run_linear(&layer, x, g, true);
        let what = format!("linear {d_in}->{d_out}");
        assert_close(&format!("{what} out"), &ours.out, &to_f64(&flex.out));
        assert_close(
            &format!("{what} grad_x"),
            &ours.grad_x,
            &to_f64(&flex.grad_x),
        );
        assert_close(
            &format!("{what} grad_w"),
            &ours.grad_w.unwrap(),
            &to_f64(&flex.grad_w.unwrap()),
        );
        if bias {
            assert_close(
                &format!("{what} grad_b"),
                &ours.grad_b.unwrap(),
                &to_f64(&flex.grad_b.unwrap()),
            );
        }
    }
}

/// A view into a larger tensor (`narrow`) gives the same results as a copy of it: the kernels
/// read the view's part of the shared storage.
#[test]
fn views_read_only_their_part_of_the_storage() {
    let device = training_device();
    let conv = Conv2dConfig::new([2, 3], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let bn = BatchNormConfig::new(2).init(&device);
    let x = Tensor::<4>::random([3, 2, 6, 6], Distribution::Default, &device);
    for (start, len) in [(0, 1), (1, 2), (2, 1)] {
        let view = x.clone().narrow(0, start, len);
        let copy = Tensor::<4>::from_data(view.clone().into_data(), &device);
        assert_eq!(
            values(kernels::conv2d(&conv, view.clone())),
            values(kernels::conv2d(&conv, copy.clone()))
        );
        assert_eq!(
            values(kernels::max_pool2d(&pool, view.clone())),
            values(kernels::max_pool2d(&pool, copy.clone()))
        );
        assert_eq!(
            values(kernels::batch_norm(&bn, view.clone())),
            values(kernels::batch_norm(&bn, copy.clone()))
        );
        let flat = |t: Tensor<4>| -> Tensor<2> { t.flatten(1, 3) };
        let layer = LinearConfig::new(72, 4).init(&device);
        assert_eq!(
            values(kernels::linear(&layer, flat(view))),
            values(kernels::linear(&layer, flat(copy)))
        );
    }
}

/// Layers the kernels do not cover (groups, dilation, asymmetric padding) still run, through
/// burn's own operation.
#[test]
fn uncovered_layers_fall_back_to_burn() {
    let device = training_device();
    let x = Tensor::<4>::random([2, 4, 9, 9], Distribution::Default, &device);
    for conv in [
        Conv2dConfig::new([4, 4], [3, 3])
            .with_groups(2)
            .init(&device),
        Conv2dConfig::new([4, 4], [3, 3])
            .with_dilation([2, 2])
            .init(&device),
        Conv2dConfig::new([4, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 0, 0, 1))
            .init(&device),
    ] {
        let ours = values(kernels::conv2d(&conv, x.clone()));
        let flex = values(conv.forward(x.clone()));
        assert_eq!(ours, flex);
    }
}
