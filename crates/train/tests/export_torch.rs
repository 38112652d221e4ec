//! The named-tensor export (`model.safetensors`) against PyTorch, both directions, and its
//! strict reader.
//!
//! Fixture: `tests/fixtures/export/logits.json`, written by `tools/make_export_fixture.py`: the
//! logits PyTorch computes on the first 100 Fashion-MNIST test images after
//! `load_state_dict(strict=True)` of stagewise-written files (a trained resnet, committed, and
//! the seed-7 mlp and cnn, which [`Model::new`] rebuilds bit for bit), and a PyTorch-written mlp
//! (`torch_mlp_seed*.safetensors`, no stagewise metadata) with its logits on 10 images.
//! Tolerance: 1e-4 on every logit.

use burn::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::Deserialize;
use stagewise_data::Normalization;
use stagewise_train::bridge;
use stagewise_train::export::{
    load_model_params, tensor_names, ExportError, ModelMeta, ModelParams,
};
use stagewise_train::inference;
use stagewise_train::model::{Classifier, Model, ModelKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TOLERANCE: f32 = 1e-4;
/// The seed of the untrained mlp and cnn of the fixture.
const SEED: u64 = 7;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/export")
}

#[derive(Deserialize)]
struct Fixture {
    stagewise_to_torch: HashMap<String, Entry>,
    torch_to_stagewise: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    kind: ModelKind,
    file: String,
    logits: Vec<f32>,
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(fixture_dir().join("logits.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The first `n` Fashion-MNIST test images, or `None` (with a note) when the dataset is not
/// installed outside CI.
fn test_images(n: usize) -> Option<Vec<u8>> {
    let dir = std::env::var_os("STAGEWISE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    let path = dir.join("t10k-images-idx3-ubyte.gz");
    if !path.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install dataset-fashion-mnist"
        );
        eprintln!(
            "skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
        );
        return None;
    }
    let images = stagewise_data::idx::read_images(&path).unwrap();
    Some(images.pixels[..n * 784].to_vec())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A resnet whose BatchNorm statistics are not the fresh ones, so that they are checked too.
fn resnet_with_statistics(seed: u64) -> Model {
    let model = Model::new(
        ModelKind::ResNet,
        &stagewise_train::inference_device(),
        seed,
    );
    let n = bridge::buffer_count(&model);
    let buffers: Vec<f32> = (0..n).map(|i| 0.5 + (i % 13) as f32 * 0.1).collect();
    bridge::write_buffers(model, &buffers).unwrap()
}

#[test]
fn every_kind_round_trips_exactly_with_pytorch_names_and_shapes() {
    let device = stagewise_train::inference_device();
    for kind in ModelKind::ALL {
        let model = match kind {
            ModelKind::ResNet => resnet_with_statistics(3),
            _ => Model::new(kind, &device, 3),
        };
        let params = ModelParams::from_model(&model, ModelMeta::default());
        let bytes = params.to_safetensors().unwrap();
        let back = ModelParams::from_safetensors(&bytes).unwrap();
        assert_eq!(back.kind, kind);
        assert_eq!(back.params, params.params, "{kind}");
        assert_eq!(back.buffers, params.buffers, "{kind}");
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let shape = |name: &str| tensors.tensor(name).unwrap().shape().to_vec();
        match kind {
            ModelKind::Mlp => {
                assert_eq!(shape("fc1.weight"), [512, 784]);
                assert_eq!(shape("fc3.bias"), [10]);
                assert_eq!(tensors.len(), 6);
            }
            ModelKind::Cnn => {
                assert_eq!(shape("conv1.weight"), [32, 1, 5, 5]);
                assert_eq!(shape("conv2.weight"), [64, 32, 5, 5]);
                assert_eq!(shape("fc1.weight"), [256, 3136]);
                assert_eq!(tensors.len(), 8);
            }
            ModelKind::ResNet => {
                assert_eq!(shape("stem_conv.weight"), [16, 1, 3, 3]);
                assert_eq!(shape("stem_bn.weight"), [16]);
                assert_eq!(shape("stem_bn.running_var"), [16]);
                assert_eq!(shape("blocks.3.shortcut.conv.weight"), [32, 16, 1, 1]);
                assert_eq!(shape("blocks.8.bn2.running_mean"), [64]);
                assert_eq!(shape("fc.weight"), [10, 64]);
                let counter = tensors
                    .tensor("blocks.3.shortcut.bn.num_batches_tracked")
                    .unwrap();
                assert_eq!((counter.dtype(), counter.shape()), (Dtype::I64, &[][..]));
                // 21 convolutions (stem, 9 blocks × 2, 2 shortcuts) + 21 BatchNorms × 5
                // + fc weight and bias.
                assert_eq!(tensors.len(), 21 + 21 * 5 + 2);
            }
        }
        assert_eq!(tensor_names(kind).len(), tensors.len());
    }
}

#[test]
fn linear_weights_are_stored_out_by_in_as_pytorch_does() {
    let model = Model::new(ModelKind::Mlp, &stagewise_train::inference_device(), 5);
    let burn_flat = bridge::flatten_params(&model);
    let bytes = ModelParams::from_model(&model, ModelMeta::default())
        .to_safetensors()
        .unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let fc1 = tensors.tensor("fc1.weight").unwrap();
    let value = |o: usize, i: usize| {
        let k = (o * 784 + i) * 4;
        f32::from_le_bytes(fc1.data()[k..k + 4].try_into().unwrap())
    };
    // burn keeps fc1.weight as [784, 512]: element (input i, output o) at i·512 + o.
    for (i, o) in [(0, 0), (1, 0), (0, 1), (783, 511), (100, 37)] {
        assert_eq!(value(o, i), burn_flat[i * 512 + o], "(in {i}, out {o})");
    }
}

/// The export of a seed-3 cnn with `edit` applied to its tensors (name → (dtype, shape, bytes)).
fn edited_cnn(edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) -> Vec<u8> {
    edited_cnn_with(true, edit)
}

/// [`edited_cnn`], keeping the file's metadata (which names the model) or dropping it.
fn edited_cnn_with(
    keep_metadata: bool,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let model = Model::new(ModelKind::Cnn, &stagewise_train::inference_device(), 3);
    let bytes = ModelParams::from_model(&model, ModelMeta::default())
        .to_safetensors()
        .unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().filter(|_| keep_metadata);
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<_> = tensors
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut owned);
    let views: Vec<_> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    // The file's metadata is kept: it names the model, so loading checks the names against it.
    safetensors::serialize(views, metadata).unwrap()
}

#[test]
fn strict_loading_names_what_does_not_fit() {
    let err = |bytes: Vec<u8>| ModelParams::from_safetensors(&bytes).unwrap_err();

    let e = err(edited_cnn(|t| t.retain(|(n, ..)| n != "conv2.bias")));
    assert!(
        matches!(&e, ExportError::Names { kind: ModelKind::Cnn, missing, unexpected }
            if missing == &["conv2.bias"] && unexpected.is_empty()),
        "{e}"
    );
    assert!(e.to_string().contains("missing [conv2.bias]"), "{e}");

    let e = err(edited_cnn(|t| {
        t.push(("fc3.weight".into(), Dtype::F32, vec![1], vec![0; 4]))
    }));
    assert!(e.to_string().contains("unexpected [fc3.weight]"), "{e}");

    let e = err(edited_cnn(|t| {
        let w = t.iter_mut().find(|(n, ..)| n == "fc1.weight").unwrap();
        w.2 = vec![3136, 256];
    }));
    assert_eq!(
        e.to_string(),
        "tensor `fc1.weight` has shape [3136, 256], the cnn model needs [256, 3136]"
    );

    let e = err(edited_cnn(|t| {
        let b = t.iter_mut().find(|(n, ..)| n == "fc2.bias").unwrap();
        b.1 = Dtype::I32;
    }));
    assert!(
        e.to_string()
            .contains("tensor `fc2.bias` is I32; allowed: F32 or F64"),
        "{e}"
    );

    let e = err(edited_cnn(|t| {
        let b = t.iter_mut().find(|(n, ..)| n == "fc2.bias").unwrap();
        b.3[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    }));
    assert!(
        e.to_string()
            .contains("`fc2.bias` holds a non-finite value (NaN) at index 2"),
        "{e}"
    );

    // Names of no model at all, and no metadata naming one.
    let e = err(edited_cnn_with(false, |t| {
        t.retain(|(n, ..)| n.starts_with("conv"))
    }));
    assert!(e.to_string().contains("fit none of the models"), "{e}");

    // Damaged bytes are an error, never a panic.
    let good = edited_cnn(|_| {});
    assert!(ModelParams::from_safetensors(&good).is_ok());
    for cut in [0, 7, 8, 100, good.len() / 2, good.len() - 1] {
        assert!(
            ModelParams::from_safetensors(&good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn float64_tensors_are_read_as_float32() {
    let expected = ModelParams::from_safetensors(&edited_cnn(|_| {})).unwrap();
    let bytes = edited_cnn(|t| {
        let b = t.iter_mut().find(|(n, ..)| n == "fc2.bias").unwrap();
        b.1 = Dtype::F64;
        b.3 =
            b.3.chunks_exact(4)
                .flat_map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
                .collect();
    });
    assert_eq!(ModelParams::from_safetensors(&bytes).unwrap(), expected);
}

#[test]
fn stagewise_models_give_pytorchs_logits_on_100_test_images() {
    let Some(pixels) = test_images(100) else {
        return;
    };
    let device = stagewise_train::inference_device();
    let fixture = fixture();
    assert!(fixture.stagewise_to_torch.len() >= 3);
    for (name, entry) in &fixture.stagewise_to_torch {
        let model = if entry.file.contains("seed7") {
            Model::new(entry.kind, &device, SEED)
        } else {
            load_model_params(&fixture_dir().join(&entry.file))
                .unwrap()
                .to_model(&device)
                .unwrap()
        };
        assert_eq!(model.kind(), entry.kind);
        let ours = inference::logits(&model, &pixels, Normalization::FASHION_MNIST);
        let diff = max_diff(&ours, &entry.logits);
        eprintln!("{name}: max |logit difference| vs PyTorch = {diff:e}");
        assert!(diff <= TOLERANCE, "{name}: {diff}");
    }
}

#[test]
fn a_pytorch_written_mlp_loads_strictly_and_gives_pytorchs_logits() {
    let Some(pixels) = test_images(10) else {
        return;
    };
    let entry = &fixture().torch_to_stagewise["mlp"];
    let path = fixture_dir().join(&entry.file);
    let loaded = load_model_params(&path).unwrap();
    // No stagewise metadata: the kind comes from the names.
    assert_eq!(loaded.kind, ModelKind::Mlp);
    assert_eq!(loaded.meta, ModelMeta::default());
    let model = loaded
        .to_model(&stagewise_train::inference_device())
        .unwrap();
    let ours = inference::logits(&model, &pixels, Normalization::FASHION_MNIST);
    let diff = max_diff(&ours, &entry.logits);
    eprintln!("torch mlp: max |logit difference| = {diff:e}");
    assert!(diff <= TOLERANCE, "{diff}");
}

/// Writes the seed-7 mlp and cnn for `tools/make_export_fixture.py` into
/// `target/export-fixture/` (run with `--ignored`).
#[test]
#[ignore = "writes the inputs of tools/make_export_fixture.py"]
fn write_seeded_models_for_the_fixture_script() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/export-fixture");
    std::fs::create_dir_all(&out).unwrap();
    for kind in [ModelKind::Mlp, ModelKind::Cnn] {
        let model = Model::new(kind, &stagewise_train::inference_device(), SEED);
        let path = out.join(format!("{kind}-seed{SEED}.safetensors"));
        ModelParams::from_model(&model, ModelMeta::default())
            .save(&path)
            .unwrap();
        eprintln!("{}", path.display());
    }
    // The forward pass used by the check, on a blank image, to make sure the model runs.
    let model = Model::new(ModelKind::Cnn, &stagewise_train::inference_device(), SEED);
    let logits = model.forward(Tensor::zeros(
        [1, 1, 28, 28],
        &stagewise_train::inference_device(),
    ));
    assert_eq!(logits.dims(), [1, 10]);
}
