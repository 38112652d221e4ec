//! Models: shapes, parameter counts, seeded initialization, names, BatchNorm train/eval modes.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stagewise_train::bridge;
use stagewise_train::model::{Classifier, Cnn, Mlp, Model, ModelKind, ResNet};
use stagewise_train::{inference_device, training_device};

/// A batch of pseudo-images `[n, 1, 28, 28]` with values drawn from a seeded generator.
fn images(n: usize, seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..n * 784).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(values, [n, 1, 28, 28]), device)
}

fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data_as::<f32>()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

#[test]
fn param_counts_match_the_documented_values() {
    let device = inference_device();
    assert_eq!(
        Mlp::PARAM_COUNT,
        784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    );
    assert_eq!(Mlp::PARAM_COUNT, 669_706);
    assert_eq!(Cnn::PARAM_COUNT, 857_738);
    assert_eq!(ResNet::PARAM_COUNT, 272_186);
    for kind in ModelKind::ALL {
        let model = Model::new(kind, &device, 0);
        assert_eq!(model.kind(), kind);
        assert_eq!(bridge::param_count(&model), kind.param_count(), "{kind}");
        // burn's own count includes BatchNorm running statistics.
        assert_eq!(
            model.num_params(),
            kind.param_count() + bridge::buffer_count(&model),
            "{kind}"
        );
    }
    let resnet = Model::new(ModelKind::ResNet, &device, 0);
    assert_eq!(bridge::buffer_count(&resnet), ResNet::BUFFER_COUNT);
    assert_eq!(
        bridge::buffer_count(&Model::new(ModelKind::Cnn, &device, 0)),
        0
    );
}

#[test]
fn forward_gives_finite_logits_of_shape_batch_by_10() {
    for device in [inference_device(), training_device()] {
        for kind in ModelKind::ALL {
            let model = Model::new(kind, &device, 1);
            let logits = model.forward(images(3, 5, &device));
            assert_eq!(logits.dims(), [3, 10], "{kind}");
            let values = to_vec(logits);
            assert!(values.iter().all(|x| x.is_finite()), "{kind}");
            // Different images give different logits (the input is used).
            assert_ne!(values[..10], values[10..20], "{kind}");
        }
    }
}

#[test]
fn initialization_is_determined_by_the_seed() {
    for kind in ModelKind::ALL {
        let a = bridge::flatten_params(&Model::new(kind, &inference_device(), 42));
        // burn's global generator in between must not matter.
        let _noise = Tensor::<1>::random([1000], Distribution::Default, &inference_device());
        let b = bridge::flatten_params(&Model::new(kind, &training_device(), 42));
        let c = bridge::flatten_params(&Model::new(kind, &inference_device(), 43));
        assert_eq!(a, b, "{kind}: same seed");
        assert_ne!(a, c, "{kind}: different seed");
    }
}

#[test]
fn initialization_follows_the_fan_in_bound() {
    let model = Model::new(ModelKind::Cnn, &inference_device(), 9);
    let flat = bridge::flatten_params(&model);
    for slot in bridge::param_layout(&model) {
        let values = &flat[slot.offset..slot.offset + slot.len];
        let fan_in: usize = match slot.shape.len() {
            4 => slot.shape[1..].iter().product(),
            _ if slot.path.ends_with("fc1.weight") || slot.path.ends_with("fc1.bias") => 3136,
            _ if slot.path.ends_with("fc2.weight") || slot.path.ends_with("fc2.bias") => 256,
            _ if slot.path.ends_with("conv1.bias") => 25,
            _ => 32 * 25,
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let max = values.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max <= bound, "{}: {max} > {bound}", slot.path);
        if slot.len >= 1000 {
            // Uniform over the whole interval, not a narrower one.
            assert!(max > 0.99 * bound, "{}: {max} vs {bound}", slot.path);
        }
    }
}

#[test]
fn model_kind_names_parse_and_serialize() {
    for kind in ModelKind::ALL {
        assert_eq!(kind.name().parse::<ModelKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), kind.name());
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.name()));
        assert_eq!(serde_json::from_str::<ModelKind>(&json).unwrap(), kind);
    }
    assert_eq!(" ResNet ".parse::<ModelKind>().unwrap(), ModelKind::ResNet);
    let err = "resnet50".parse::<ModelKind>().unwrap_err();
    let message = err.to_string();
    assert!(message.contains("resnet50"), "{message}");
    assert!(message.contains("mlp, cnn, resnet"), "{message}");
    assert!(serde_json::from_str::<ModelKind>("\"vgg\"").is_err());
}

#[test]
fn batch_norm_uses_batch_statistics_in_training_and_running_statistics_in_eval() {
    let device = training_device();
    let model = Model::new(ModelKind::ResNet, &device, 3);
    let ab = images(2, 10, &device);
    let c = images(1, 11, &device);
    let ac = Tensor::cat(vec![ab.clone().narrow(0, 0, 1), c], 0);

    // Training mode: the logits of image `a` depend on the other image of the batch.
    let train_ab = to_vec(model.forward(ab.clone()));
    let train_ac = to_vec(model.forward(ac.clone()));
    assert_ne!(train_ab[..10], train_ac[..10]);

    // Eval mode: they do not, and they match a batch of one.
    let eval = model.valid();
    let plain = inference_device();
    let eval_ab = to_vec(eval.forward(ab.clone().without_autodiff()));
    let eval_ac = to_vec(eval.forward(ac.without_autodiff()));
    let eval_a = to_vec(eval.forward(ab.clone().narrow(0, 0, 1).without_autodiff()));
    assert_eq!(eval_ab[..10], eval_ac[..10]);
    let diff = eval_ab[..10]
        .iter()
        .zip(&eval_a)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1e-5, "{diff}");
    assert!(!eval.forward(images(1, 12, &plain)).is_autodiff());

    // The two training batches moved the running statistics away from their initial values.
    let buffers = bridge::flatten_buffers(&model);
    let initial = bridge::flatten_buffers(&Model::new(ModelKind::ResNet, &device, 3));
    assert_ne!(buffers, initial);

    // `train` goes back to batch statistics: the first batch gives the same logits again.
    let retrained = eval.train();
    let again = to_vec(retrained.forward(ab));
    assert_eq!(again, train_ab);
}
