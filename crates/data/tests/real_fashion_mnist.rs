//! Loads the real Fashion-MNIST when the Debian package
//! `dataset-fashion-mnist` is installed; skipped (with a message) otherwise.

use std::path::Path;

use stagewise_data::locate::SYSTEM_DIR;
use stagewise_data::{BatchConfig, EpochBatches, FashionMnist, LocateOptions, Origin};

#[test]
fn loads_the_debian_package() {
    let dir = Path::new(SYSTEM_DIR);
    if !FashionMnist::has_files(dir) {
        println!("skipped: Fashion-MNIST is not installed in {SYSTEM_DIR} (apt-get install dataset-fashion-mnist)");
        return;
    }
    let found = LocateOptions {
        data_dir: None,
        env_dir: None,
        local_dir: None,
        download: false,
        ..LocateOptions::from_env(None)
    }
    .locate()
    .unwrap();
    assert_eq!(found.origin, Origin::System);

    let splits = FashionMnist::load(dir).unwrap();
    assert_eq!(splits.train.len(), 60_000);
    assert_eq!(splits.test.len(), 10_000);
    assert_eq!((splits.train.rows(), splits.train.cols()), (28, 28));
    assert_eq!(splits.train.class_counts(), vec![6000; 10]);
    assert_eq!(splits.test.class_counts(), vec![1000; 10]);
    // First labels of the official files: train 9 (ankle boot), 0, 0, 3;
    // test 9, 2, 1, 1.
    assert_eq!(&splits.train.labels()[..4], &[9, 0, 0, 3]);
    assert_eq!(&splits.test.labels()[..4], &[9, 2, 1, 1]);

    // The published normalization constants match the training pixels.
    let n = splits.train.images().len() as f64;
    let mean = splits
        .train
        .images()
        .iter()
        .map(|&p| f64::from(p) / 255.0)
        .sum::<f64>()
        / n;
    let var = splits
        .train
        .images()
        .iter()
        .map(|&p| (f64::from(p) / 255.0 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!((mean - 0.2860).abs() < 5e-4, "mean {mean}");
    assert!((var.sqrt() - 0.3530).abs() < 5e-4, "std {}", var.sqrt());

    // The CI subset: 6000 stratified images, 600 per class, one epoch.
    let sub = splits.train.stratified_subset(6000, 0);
    assert_eq!(sub.class_counts(), vec![600; 10]);
    let batches = EpochBatches::new(&sub, BatchConfig::train(128), 0, 0).unwrap();
    assert_eq!(batches.len(), 47);
    assert_eq!(batches.map(|b| b.len).sum::<usize>(), 6000);
}
