//! The flat-vector bridge: round trips, lengths, ids, gradient order, buffers, SGD equivalence.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::LinearConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stagewise_train::bridge::{self, BridgeError};
use stagewise_train::model::{Classifier, Model, ModelKind};
use stagewise_train::{inference_device, training_device};

/// A seeded batch: images `[n, 1, 28, 28]` in `[-1, 1)` and labels in `0..10`.
fn batch(n: usize, seed: u64, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<f32> = (0..n * 784).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let labels: Vec<i64> = (0..n).map(|_| rng.gen_range(0..10)).collect();
    (
        Tensor::from_data(TensorData::new(pixels, [n, 1, 28, 28]), device),
        Tensor::from_data(TensorData::new(labels, [n]), device),
    )
}

fn loss(model: &Model, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
    let device = images.device();
    CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(images), labels)
}

fn scalar(tensor: Tensor<1>) -> f32 {
    tensor.into_data_as::<f32>().as_slice::<f32>().unwrap()[0]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

struct Ids(Vec<ParamId>);

impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

fn ids<M: Module>(model: &M) -> Vec<ParamId> {
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

#[test]
fn params_round_trip_exactly_and_keep_ids() {
    for kind in ModelKind::ALL {
        let model = Model::new(kind, &training_device(), 1);
        let before = ids(&model);
        let flat = bridge::flatten_params(&model);
        assert_eq!(flat.len(), kind.param_count());
        // Distinct values that are exactly representable and not the initial ones.
        let new: Vec<f32> = (0..flat.len())
            .map(|i| (i % 4093) as f32 / 64.0 - 30.0)
            .collect();
        let model = bridge::write_params(model, &new).unwrap();
        assert_eq!(bridge::flatten_params(&model), new, "{kind}");
        assert_eq!(ids(&model), before, "{kind}");

        let mut buffer = vec![7.0; 3];
        bridge::read_params_into(&model, &mut buffer);
        assert_eq!(buffer, new, "{kind}");
        let model = bridge::write_params(model, &flat).unwrap();
        assert_eq!(bridge::flatten_params(&model), flat, "{kind}");
    }
}

#[test]
fn wrong_lengths_are_errors() {
    let model = Model::new(ModelKind::Mlp, &inference_device(), 0);
    let n = bridge::param_count(&model);
    let err = bridge::write_params(model.clone(), &vec![0.0; n + 1]).unwrap_err();
    assert_eq!(
        err,
        BridgeError::ParamLength {
            expected: n,
            actual: n + 1
        }
    );
    assert!(bridge::write_params(model.clone(), &[]).is_err());
    // An mlp has no buffers: only the empty vector fits.
    assert!(bridge::write_buffers(model.clone(), &[]).is_ok());
    let err = bridge::write_buffers(model, &[1.0]).unwrap_err();
    assert_eq!(
        err,
        BridgeError::BufferLength {
            expected: 0,
            actual: 1
        }
    );

    let resnet = Model::new(ModelKind::ResNet, &inference_device(), 0);
    let err = bridge::write_buffers(resnet, &[0.0; 10]).unwrap_err();
    assert!(err.to_string().contains("1568"), "{err}");
}

#[test]
fn layout_tiles_the_flat_vector_in_visiting_order() {
    let model = Model::new(ModelKind::ResNet, &inference_device(), 0);
    let slots = bridge::param_layout(&model);
    assert_eq!(slots[0].path, "ResNet.stem_conv.weight");
    assert_eq!(slots[0].shape, [16, 1, 3, 3]);
    assert_eq!(slots[1].path, "ResNet.stem_bn.gamma");
    assert_eq!(slots[2].path, "ResNet.stem_bn.beta");
    assert_eq!(slots.last().unwrap().path, "ResNet.fc.bias");
    let mut offset = 0;
    for slot in &slots {
        assert_eq!(slot.offset, offset, "{}", slot.path);
        assert_eq!(slot.len, slot.shape.iter().product::<usize>());
        assert!(!slot.path.contains("running"), "{}", slot.path);
        offset += slot.len;
    }
    assert_eq!(offset, bridge::param_count(&model));

    let buffers = bridge::buffer_layout(&model);
    assert_eq!(buffers.len(), 2 * 21);
    assert_eq!(buffers[0].path, "ResNet.stem_bn.running_mean");
    assert_eq!(buffers[1].path, "ResNet.stem_bn.running_var");
    assert_eq!(
        buffers.iter().map(|s| s.len).sum::<usize>(),
        bridge::buffer_count(&model)
    );
}

#[test]
fn linear_layer_gradients_have_the_analytic_values_in_param_order() {
    let device = training_device();
    let layer = LinearConfig::new(3, 2).init(&device);
    let x = Tensor::<2>::from_data([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &device);
    // loss = sum(x W + b): dW[i][j] = sum over the batch of x[., i], db[j] = batch size.
    let loss = layer.forward(x).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &layer);
    let flat = bridge::flatten_grads(&layer, &grads);
    assert_eq!(flat, [5.0, 5.0, 7.0, 7.0, 9.0, 9.0, 2.0, 2.0]);

    // A parameter without gradient contributes zeros.
    let empty = GradientsParams::new();
    assert_eq!(bridge::flatten_grads(&layer, &empty), [0.0; 8]);
}

#[test]
fn mlp_gradients_match_central_finite_differences() {
    let train = training_device();
    let model = Model::new(ModelKind::Mlp, &train, 5);
    let (images, labels) = batch(8, 6, &train);
    let l = loss(&model, images.clone(), labels.clone());
    let grads = GradientsParams::from_grads(l.backward(), &model);
    let flat_grads = bridge::flatten_grads(&model, &grads);
    let params = bridge::flatten_params(&model);

    let plain = inference_device();
    let eval = model.valid();
    let (images, labels) = (images.without_autodiff(), labels.without_autodiff());
    let loss_at = |theta: &[f32]| {
        let probe = bridge::write_params(eval.clone(), theta).unwrap();
        scalar(loss(&probe, images.clone(), labels.clone()))
    };
    assert_eq!(eval.devices(), [plain]);

    // In each tensor, the two entries with the largest gradients (small ones drown in f32
    // rounding of the loss).
    let eps = 1e-2f32;
    let mut checked = 0;
    for slot in bridge::param_layout(&model) {
        let mut order: Vec<usize> = (slot.offset..slot.offset + slot.len).collect();
        order.sort_by(|&i, &j| flat_grads[j].abs().total_cmp(&flat_grads[i].abs()));
        for &i in &order[..2] {
            let g = flat_grads[i];
            assert!(
                g.abs() > 2e-3,
                "{}: gradient {g} too small to test",
                slot.path
            );
            let mut theta = params.clone();
            theta[i] = params[i] + eps;
            let up = loss_at(&theta);
            theta[i] = params[i] - eps;
            let down = loss_at(&theta);
            let fd = (up - down) / (2.0 * eps);
            assert!(
                (fd - g).abs() <= 1e-4 + 5e-2 * g.abs(),
                "{} [{}]: backward {g}, finite difference {fd}",
                slot.path,
                i - slot.offset
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

#[test]
fn sgd_through_the_bridge_equals_burn_sgd() {
    let lr = 0.1;
    for kind in [ModelKind::Mlp, ModelKind::Cnn, ModelKind::ResNet] {
        let device = training_device();
        let model = Model::new(kind, &device, 8);
        let (images, labels) = batch(4, 9, &device);
        let l = loss(&model, images, labels);
        let grads = GradientsParams::from_grads(l.backward(), &model);

        let mut flat = bridge::flatten_params(&model);
        let flat_grads = bridge::flatten_grads(&model, &grads);
        assert!(flat_grads.iter().any(|&g| g != 0.0), "{kind}");
        for (p, g) in flat.iter_mut().zip(&flat_grads) {
            *p -= lr as f32 * g;
        }
        let ours = bridge::write_params(model.clone(), &flat).unwrap();

        let mut sgd = SgdConfig::new().init();
        let theirs = sgd.step(lr, model, grads);
        let diff = max_abs_diff(
            &bridge::flatten_params(&ours),
            &bridge::flatten_params(&theirs),
        );
        assert!(diff <= 1e-6, "{kind}: {diff}");
    }
}

#[test]
fn written_params_stay_trainable() {
    let device = training_device();
    let model = Model::new(ModelKind::Cnn, &device, 2);
    let n = bridge::param_count(&model);
    // Varied values: with equal weights the backward signal through fc2 would cancel.
    let values: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.002 - 0.012).collect();
    let model = bridge::write_params(model, &values).unwrap();
    let (images, labels) = batch(2, 3, &device);
    let l = loss(&model, images, labels);
    let grads = GradientsParams::from_grads(l.backward(), &model);
    // Every tensor (weights and biases of 4 layers) has a gradient.
    assert_eq!(grads.len(), 8);
    let flat_grads = bridge::flatten_grads(&model, &grads);
    for slot in bridge::param_layout(&model) {
        let part = &flat_grads[slot.offset..slot.offset + slot.len];
        assert!(part.iter().any(|&g| g != 0.0), "{}", slot.path);
    }
}

#[test]
fn buffers_start_at_zero_mean_unit_variance_and_follow_training() {
    let device = training_device();
    let model = Model::new(ModelKind::ResNet, &device, 4);
    let initial = bridge::flatten_buffers(&model);
    assert_eq!(initial.len(), 1568);
    for slot in bridge::buffer_layout(&model) {
        let expected = if slot.path.ends_with("running_mean") {
            0.0
        } else {
            1.0
        };
        let part = &initial[slot.offset..slot.offset + slot.len];
        assert!(part.iter().all(|&x| x == expected), "{}", slot.path);
    }
    let (images, _) = batch(4, 1, &device);
    let _ = model.forward(images);
    let after = bridge::flatten_buffers(&model);
    assert_ne!(after, initial);
    // Reading does not change them.
    assert_eq!(bridge::flatten_buffers(&model), after);
}

#[test]
fn written_buffers_replace_pending_batch_statistics() {
    let device = training_device();
    let model = Model::new(ModelKind::ResNet, &device, 4);
    let target: Vec<f32> = (0..1568).map(|i| 0.5 + (i % 7) as f32 / 8.0).collect();
    let (images, _) = batch(4, 1, &device);
    // Two training batches: the second leaves its statistics pending in burn's running state.
    let _ = model.forward(images.clone());
    let _ = model.forward(images);
    let model = bridge::write_buffers(model, &target).unwrap();
    assert_eq!(bridge::flatten_buffers(&model), target);
    assert_eq!(bridge::flatten_buffers(&model.valid()), target);
}

#[test]
fn params_and_buffers_carry_a_trained_resnet_to_a_fresh_one() {
    let device = training_device();
    let trained = Model::new(ModelKind::ResNet, &device, 11);
    let (images, labels) = batch(4, 2, &device);
    let l = loss(&trained, images.clone(), labels);
    let grads = GradientsParams::from_grads(l.backward(), &trained);
    let trained = SgdConfig::new().init().step(0.5, trained, grads);

    let fresh = Model::new(ModelKind::ResNet, &device, 12);
    let fresh = bridge::write_params(fresh, &bridge::flatten_params(&trained)).unwrap();
    let fresh = bridge::write_buffers(fresh, &bridge::flatten_buffers(&trained)).unwrap();

    let x = images.without_autodiff();
    let a = trained.valid().forward(x.clone()).into_data_as::<f32>();
    let b = fresh.valid().forward(x).into_data_as::<f32>();
    assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
}

#[test]
fn clones_share_buffers_but_valid_train_copies_do_not() {
    let device = inference_device();
    let model = Model::new(ModelKind::ResNet, &device, 4);
    let initial = bridge::flatten_buffers(&model);
    let copy = model.valid().train();
    let written = bridge::write_buffers(model.clone(), &vec![0.25; initial.len()]).unwrap();
    assert_eq!(bridge::flatten_buffers(&written), vec![0.25; initial.len()]);
    // burn's running state is shared between clones...
    assert_eq!(bridge::flatten_buffers(&model), vec![0.25; initial.len()]);
    // ...but not with a `valid().train()` copy.
    assert_eq!(bridge::flatten_buffers(&copy), initial);
}
