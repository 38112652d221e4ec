//! One reader for every file that holds a model ([`load_model_params`]): a parameter-server
//! checkpoint (`shard-I-of-N.ckpt`) and a training checkpoint read like `model.safetensors`,
//! so that `train --init-from`, `eval` and `ps serve --init-from` take any of them; and what
//! cannot hold a whole model is refused naming the file. A resnet from a server checkpoint,
//! which holds no BatchNorm statistics, is evaluated with statistics recomputed.

use stagewise_core::optim::OptimizerState;
use stagewise_core::schedule::{Plan, Stage};
use stagewise_ps::checkpoint::Checkpoint as PsCheckpoint;
use stagewise_ps::shard::ShardRange;
use stagewise_train::asgd::initial_params;
use stagewise_train::bridge;
use stagewise_train::checkpoint::Checkpoint;
use stagewise_train::data::{DataConfig, DatasetKind};
use stagewise_train::export::{init_params, load_model_params, ModelParams};
use stagewise_train::inference::{evaluate, model_to_evaluate};
use stagewise_train::model::{Model, ModelKind};
use stagewise_train::trainer::{train, RunOptions, TrainConfig};

/// A server checkpoint of shard `index` of `count` over `params`, at `version`.
fn ps_checkpoint(
    model_id: &str,
    params: &[f32],
    shard: (usize, usize),
    version: u64,
) -> PsCheckpoint {
    let range = ShardRange::of(params.len(), shard.0, shard.1);
    let own = params[range.start..range.start + range.len].to_vec();
    PsCheckpoint {
        model_id: model_id.into(),
        total_params: params.len(),
        shard: range,
        version,
        optimizer_name: "qhm".into(),
        optimizer: OptimizerState {
            step: version,
            buffers: vec![("momentum".into(), vec![0.25; own.len()])],
            scalars: Vec::new(),
        },
        params: own,
        policy: Vec::new(),
    }
}

#[test]
fn a_single_shard_server_checkpoint_reads_as_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let params = initial_params(ModelKind::Mlp, 11);
    let path = dir.path().join("shard-0-of-1.ckpt");
    ps_checkpoint("mlp", &params, (0, 1), 42)
        .save(&path)
        .unwrap();

    let read = load_model_params(&path).unwrap();
    assert_eq!(read.kind, ModelKind::Mlp);
    assert_eq!(read.params, params, "parameters bit for bit");
    assert_eq!(read.meta.update, Some(42));
    assert_eq!(read.meta.run_kind.as_deref(), Some("ps-serve"));
    // The model it builds holds exactly those parameters.
    let model = read.to_model(&stagewise_train::inference_device()).unwrap();
    assert_eq!(bridge::flatten_params(&model), params);
    // What `ps serve --init-from` and `train --init-from` take from it.
    assert_eq!(init_params(&path, ModelKind::Mlp).unwrap(), params);
    let wrong = init_params(&path, ModelKind::Cnn).unwrap_err().to_string();
    assert!(
        wrong.contains("mlp") && wrong.contains("cnn"),
        "names both kinds: {wrong}"
    );
}

#[test]
fn a_server_checkpoint_with_its_own_model_id_is_recognised_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let params = initial_params(ModelKind::Cnn, 2);
    let path = dir.path().join("shard-0-of-1.ckpt");
    ps_checkpoint("fashion-v2", &params, (0, 1), 7)
        .save(&path)
        .unwrap();
    assert_eq!(load_model_params(&path).unwrap().kind, ModelKind::Cnn);

    // A size that is no model of ours is refused with the sizes that would be.
    let odd = vec![0.5f32; 1000];
    ps_checkpoint("tiny", &odd, (0, 1), 7).save(&path).unwrap();
    let err = load_model_params(&path).unwrap_err().to_string();
    assert!(
        err.contains("shard-0-of-1.ckpt") && err.contains("1000 parameters"),
        "{err}"
    );
    assert!(
        err.contains(&ModelKind::Mlp.param_count().to_string()),
        "{err}"
    );
}

#[test]
fn one_shard_of_several_is_refused_naming_the_file_and_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let params = initial_params(ModelKind::Mlp, 1);
    let path = dir.path().join("shard-1-of-2.ckpt");
    ps_checkpoint("mlp", &params, (1, 2), 9)
        .save(&path)
        .unwrap();
    let err = load_model_params(&path).unwrap_err().to_string();
    assert!(err.contains("shard-1-of-2.ckpt"), "{err}");
    assert!(err.contains("single-shard"), "{err}");
}

#[test]
fn a_damaged_server_checkpoint_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let params = initial_params(ModelKind::Mlp, 3);
    let path = dir.path().join("shard-0-of-1.ckpt");
    ps_checkpoint("mlp", &params, (0, 1), 5)
        .save(&path)
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let err = load_model_params(&path).unwrap_err().to_string();
    assert!(err.contains("shard-0-of-1.ckpt"), "{err}");
    assert!(
        err.to_lowercase().contains("crc") || err.contains("checksum"),
        "{err}"
    );
}

#[test]
fn a_training_checkpoint_reads_as_the_model_it_trained() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        model: ModelKind::Mlp,
        optimizer: stagewise_core::optim::OptimizerKind::Qhm,
        plan: Plan::new(vec![Stage::for_epochs(1, 0.3, 0.9, 0.7, 50)]),
        data: DataConfig {
            dataset: DatasetKind::Synthetic,
            train_subset: Some(300),
            test_subset: Some(100),
            ..DataConfig::default()
        },
        seed: 4,
        eval_batch_size: 100,
    };
    train(&config, dir.path(), &RunOptions::default()).unwrap();
    let ckpt = Checkpoint::load(dir.path()).unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    assert!(path.is_file());

    let read = load_model_params(&path).unwrap();
    assert_eq!(read.kind, ModelKind::Mlp);
    assert_eq!(read.params, ckpt.params);
    assert_eq!(read.meta.update, Some(ckpt.meta.global_step));
    assert_eq!(read.meta.run_kind.as_deref(), Some("train"));
    // It is what seeds a parameter server (`ps serve --init-from`), and it differs from a
    // fresh model of the same seed: training moved it.
    let seeded = init_params(&path, ModelKind::Mlp).unwrap();
    assert_eq!(seeded, ckpt.params);
    let fresh = bridge::flatten_params(&Model::new(
        ModelKind::Mlp,
        &stagewise_train::inference_device(),
        config.seed,
    ));
    assert_ne!(seeded, fresh);
}

/// The committed 1-epoch Fashion-MNIST resnet of the export fixture.
fn trained_resnet() -> ModelParams {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/export/resnet-trained.safetensors");
    load_model_params(&path).unwrap()
}

#[test]
fn a_resnet_from_a_server_checkpoint_gets_batch_norm_statistics_recomputed_for_evaluation() {
    let data = DataConfig {
        dataset: DatasetKind::FashionMnist,
        download: false,
        train_subset: Some(2000),
        test_subset: Some(500),
        ..DataConfig::default()
    };
    let Ok(splits) = data.load(0) else {
        eprintln!("skipped: Fashion-MNIST is not installed (CI installs it)");
        return;
    };
    let own = trained_resnet();
    assert!(!own.meta.batch_norm_missing);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0-of-1.ckpt");
    ps_checkpoint("resnet", &own.params, (0, 1), 235)
        .save(&path)
        .unwrap();
    let from_server = load_model_params(&path).unwrap();
    assert!(
        from_server.meta.batch_norm_missing,
        "a server checkpoint has none"
    );
    assert_eq!(from_server.params, own.params);

    let accuracy = |model: &Model| {
        evaluate(model, &splits.test, data.normalization())
            .unwrap()
            .accuracy
    };
    let (with_own, recomputed) = model_to_evaluate(&own, &splits.train, &data, 0).unwrap();
    assert!(
        !recomputed,
        "the file's own statistics are used as they are"
    );
    let fresh = from_server
        .to_model(&stagewise_train::inference_device())
        .unwrap();
    let (with_recomputed, recomputed) =
        model_to_evaluate(&from_server, &splits.train, &data, 0).unwrap();
    assert!(recomputed);
    let (own_acc, fresh_acc, recomputed_acc) = (
        accuracy(&with_own),
        accuracy(&fresh),
        accuracy(&with_recomputed),
    );
    eprintln!(
        "resnet on 500 test images: own statistics {own_acc}, fresh {fresh_acc}, \
         recomputed from 50 batches {recomputed_acc}"
    );
    // The fixture is trained for 8 updates only, so neither accuracy nor its own running
    // averages (still half fresh) are a sharp reference; that recomputed statistics fit a
    // trained resnet is shown by stagewise-train's asgd test
    // `the_evaluator_recomputes_a_resnets_batch_norm_statistics_at_the_evaluated_parameters`.
    // Here: the statistics were recomputed (not the fresh ones), they are finite, and they do
    // not score worse than fresh ones.
    let (recomputed_buffers, fresh_buffers) = (
        bridge::flatten_buffers(&with_recomputed),
        bridge::flatten_buffers(&fresh),
    );
    assert_eq!(fresh_buffers, from_server.buffers);
    assert_ne!(recomputed_buffers, fresh_buffers);
    assert!(recomputed_buffers.iter().all(|v| v.is_finite()));
    assert!(
        recomputed_acc >= fresh_acc,
        "recomputed {recomputed_acc} vs fresh {fresh_acc}"
    );
    // The flag survives a round trip through a model file, so a re-saved model keeps saying it.
    let bytes = from_server.to_safetensors().unwrap();
    assert!(
        ModelParams::from_safetensors(&bytes)
            .unwrap()
            .meta
            .batch_norm_missing
    );
}
