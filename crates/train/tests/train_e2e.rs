//! End-to-end training runs: per-stage batching, resume equivalence, divergence handling,
//! corrupt checkpoints, and a real Fashion-MNIST run.

use stagewise_core::optim::OptimizerKind;
use stagewise_core::record::{read_rows, EvalRow, TrainRow};
use stagewise_core::schedule::{Plan, Stage};
use stagewise_train::checkpoint::{Checkpoint, CHECKPOINT_FILE};
use stagewise_train::metrics::{EVAL_FILE, TRAIN_FILE};
use stagewise_train::model::ModelKind;
use stagewise_train::{
    resume, train, DataConfig, DatasetKind, RunOptions, TrainConfig, TrainError,
};
use std::path::PathBuf;

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stagewise-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn synthetic(train: usize, test: usize) -> DataConfig {
    DataConfig {
        dataset: DatasetKind::Synthetic,
        train_subset: Some(train),
        test_subset: Some(test),
        ..DataConfig::default()
    }
}

fn config(plan: Plan, data: DataConfig) -> TrainConfig {
    TrainConfig {
        model: ModelKind::Mlp,
        optimizer: OptimizerKind::Qhm,
        plan,
        data,
        seed: 3,
        eval_batch_size: 500,
    }
}

fn quiet() -> RunOptions {
    RunOptions::default()
}

#[test]
fn batch_size_changes_reach_the_batching_and_the_optimizer_state_carries_over() {
    // 1000 images: b = 100 gives 10 steps per epoch, b = 50 gives 20, b = 30 gives 34.
    let plan = Plan::new(vec![
        Stage::for_epochs(1, 0.5, 0.9, 0.7, 100),
        Stage::for_epochs(2, 0.25, 0.95, 0.7, 50),
        Stage::for_epochs(1, 0.1, 0.97, 0.7, 30),
    ]);
    let dir = out_dir("batching");
    let summary = train(&config(plan, synthetic(1000, 300)), &dir, &quiet()).unwrap();
    let rows: Vec<TrainRow> = read_rows(&dir.join(TRAIN_FILE)).unwrap();
    let steps: Vec<u64> = rows.iter().map(|r| r.update).collect();
    assert_eq!(steps, vec![10, 30, 50, 84]);
    let batches: Vec<Option<u64>> = rows.iter().map(|r| r.batch_size).collect();
    assert_eq!(batches, [100, 50, 50, 30].map(Some));
    let stages: Vec<Option<u32>> = rows.iter().map(|r| r.stage).collect();
    assert_eq!(stages, [1, 2, 2, 3].map(Some));
    let epochs: Vec<Option<f64>> = rows.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, [1.0, 2.0, 3.0, 4.0].map(Some));
    assert!((rows[3].momentum.unwrap() - 0.97).abs() < 1e-12 && (rows[1].lr - 0.25).abs() < 1e-12);
    let evals: Vec<EvalRow> = read_rows(&dir.join(EVAL_FILE)).unwrap();
    assert_eq!(evals.iter().map(|e| e.update).collect::<Vec<_>>(), steps);
    assert_eq!(summary.final_eval.as_ref(), evals.last());
    // One optimizer for the whole run: its step count spans every stage.
    let ckpt = Checkpoint::load(&dir).unwrap();
    assert_eq!(ckpt.optimizer.step, 84);
    assert_eq!(summary.updates, 84);
    // Learnable data: far above the 10% of chance.
    let acc = summary.final_accuracy().unwrap();
    assert!(acc > 0.6, "{acc}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_and_resumed_run_ends_with_exactly_the_same_parameters() {
    let plan = Plan::new(vec![
        Stage::for_epochs(1, 0.5, 0.9, 0.7, 64),
        Stage::for_epochs(2, 0.25, 0.95, 0.7, 32),
    ]);
    let mut data = synthetic(600, 200);
    data.augment = true;
    let cfg = config(plan, data);

    let whole = out_dir("whole");
    train(&cfg, &whole, &quiet()).unwrap();

    let split = out_dir("split");
    let first = train(
        &cfg,
        &split,
        &RunOptions {
            stop_after_epochs: Some(2),
            ..quiet()
        },
    )
    .unwrap();
    assert!(!first.completed);
    assert_eq!(first.epochs, Some(2.0));
    let resumed = resume(&split, &quiet()).unwrap();
    assert!(resumed.completed);

    let a = Checkpoint::load(&whole).unwrap();
    let b = Checkpoint::load(&split).unwrap();
    assert_eq!(a.meta.global_step, b.meta.global_step);
    assert!(a.params == b.params, "parameters differ after resume");
    assert_eq!(a.optimizer, b.optimizer);
    let train_a: Vec<TrainRow> = read_rows(&whole.join(TRAIN_FILE)).unwrap();
    let train_b: Vec<TrainRow> = read_rows(&split.join(TRAIN_FILE)).unwrap();
    assert_eq!(train_a.len(), train_b.len());
    for (x, y) in train_a.iter().zip(&train_b) {
        assert_eq!((x.update, x.loss), (y.update, y.loss));
    }
    let eval_a: Vec<EvalRow> = read_rows(&whole.join(EVAL_FILE)).unwrap();
    let eval_b: Vec<EvalRow> = read_rows(&split.join(EVAL_FILE)).unwrap();
    let accuracies = |rows: &[EvalRow]| rows.iter().map(|e| e.accuracy).collect::<Vec<_>>();
    assert_eq!(accuracies(&eval_a), accuracies(&eval_b));
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&split);
}

#[test]
fn divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint() {
    let plan = Plan::new(vec![
        Stage::for_epochs(1, 0.1, 0.9, 0.7, 100),
        Stage::for_epochs(1, 1e30, 0.9, 0.7, 100),
    ]);
    let dir = out_dir("diverge");
    let err = train(&config(plan, synthetic(500, 100)), &dir, &quiet()).unwrap_err();
    match &err {
        TrainError::Diverged {
            epoch,
            last_good_epoch,
            lr,
            ..
        } => {
            assert_eq!(*epoch, 2);
            assert_eq!(*last_good_epoch, 1);
            assert_eq!(*lr, 1e30);
        }
        other => panic!("expected divergence, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("epoch 2") && message.contains("lr 1000000000000000000000000000000"));
    let ckpt = Checkpoint::load(&dir).unwrap();
    assert_eq!(ckpt.meta.epochs_done, 1);
    assert!(ckpt.params.iter().all(|p| p.is_finite()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_checkpoint_is_refused_with_its_path() {
    let dir = out_dir("corrupt");
    let plan = Plan::new(vec![Stage::for_epochs(1, 0.1, 0.9, 0.7, 100)]);
    train(&config(plan, synthetic(200, 100)), &dir, &quiet()).unwrap();
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = resume(&dir, &quiet()).unwrap_err();
    assert!(
        err.to_string().contains(CHECKPOINT_FILE),
        "error should name the file: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cnn_learns_real_fashion_mnist_in_one_epoch_on_a_subset() {
    let system = std::path::Path::new("/usr/share/datasets/fashion-mnist");
    if !system.exists() && std::env::var_os("STAGEWISE_DATA").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install dataset-fashion-mnist (see .ci/run)"
        );
        eprintln!(
            "skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
        );
        return;
    }
    let plan = Plan::new(vec![Stage::for_epochs(1, 0.5, 0.9, 0.7, 64)]);
    let data = DataConfig {
        dataset: DatasetKind::FashionMnist,
        download: false,
        train_subset: Some(6000),
        test_subset: Some(2000),
        ..DataConfig::default()
    };
    let cfg = TrainConfig {
        model: ModelKind::Cnn,
        ..config(plan, data)
    };
    let dir = out_dir("fashion");
    let summary = train(&cfg, &dir, &quiet()).unwrap();
    eprintln!(
        "cnn, 6000 Fashion-MNIST images, 1 epoch: test accuracy {:.4}",
        summary.final_accuracy().unwrap()
    );
    // Chance is 0.10; one epoch on 6000 images gets far above it.
    let acc = summary.final_accuracy().unwrap();
    assert!(acc > 0.6, "{acc}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_schedule_free_run_learns_evaluates_at_x_and_resumes_exactly() {
    // Schedule-free SGD wants larger rates than SGD; β 0.9 interpolates y between x and z.
    let plan = Plan::new(vec![Stage::for_epochs(3, 1.0, 0.9, 0.0, 50)]);
    let cfg = TrainConfig {
        optimizer: OptimizerKind::SgdScheduleFree,
        ..config(plan, synthetic(600, 200))
    };
    let whole = out_dir("sf-whole");
    let summary = train(&cfg, &whole, &quiet()).unwrap();
    assert_eq!(summary.optimizer, "sgd-schedulefree");
    let acc = summary.final_accuracy().unwrap();
    assert!(acc > 0.6, "{acc}");
    // The checkpoint holds y as the parameters and x, z in the optimizer state.
    let ckpt = Checkpoint::load(&whole).unwrap();
    let names: Vec<&str> = ckpt
        .optimizer
        .buffers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(names.contains(&"x") && names.contains(&"z"), "{names:?}");
    let x = &ckpt
        .optimizer
        .buffers
        .iter()
        .find(|(n, _)| n == "x")
        .unwrap()
        .1;
    assert!(x != &ckpt.params, "after training, x and y differ");

    let split = out_dir("sf-split");
    let stop = RunOptions {
        stop_after_epochs: Some(1),
        ..quiet()
    };
    train(&cfg, &split, &stop).unwrap();
    let resumed = resume(&split, &quiet()).unwrap();
    let b = Checkpoint::load(&split).unwrap();
    assert!(ckpt.params == b.params, "y differs after resume");
    assert_eq!(ckpt.optimizer, b.optimizer);
    assert_eq!(
        resumed.final_eval.map(|e| e.accuracy),
        summary.final_eval.map(|e| e.accuracy)
    );
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&split);
}
