//! The synthetic dataset: deterministic, balanced, learnable.

use stagewise_data::{synthetic, Dataset, SyntheticConfig};

/// Accuracy on `test` of the nearest class mean computed on `train`.
fn nearest_centroid_accuracy(train: &Dataset, test: &Dataset) -> f64 {
    let (c, p) = (train.classes(), train.image_len());
    let mut means = vec![0.0f64; c * p];
    let counts = train.class_counts();
    for i in 0..train.len() {
        let l = usize::from(train.label(i));
        for (m, &px) in means[l * p..(l + 1) * p].iter_mut().zip(train.image(i)) {
            *m += f64::from(px) / counts[l] as f64;
        }
    }
    let correct = (0..test.len())
        .filter(|&i| {
            let dist = |k: usize| -> f64 {
                means[k * p..(k + 1) * p]
                    .iter()
                    .zip(test.image(i))
                    .map(|(m, &x)| (m - f64::from(x)).powi(2))
                    .sum()
            };
            let best = (0..c).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
            best == usize::from(test.label(i))
        })
        .count();
    correct as f64 / test.len() as f64
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let cfg = SyntheticConfig::small();
    assert_eq!(synthetic(&cfg).unwrap(), synthetic(&cfg).unwrap());
    let other = synthetic(&cfg.with_seed(1)).unwrap();
    assert_ne!(
        synthetic(&cfg).unwrap().train.images(),
        other.train.images()
    );
}

#[test]
fn sizes_shape_and_balance() {
    let cfg = SyntheticConfig {
        train_size: 1000,
        test_size: 250,
        ..SyntheticConfig::default()
    };
    let s = synthetic(&cfg).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (1000, 250));
    assert_eq!(
        (s.train.rows(), s.train.cols(), s.train.classes()),
        (28, 28, 10)
    );
    assert_eq!(s.train.class_counts(), vec![100; 10]);
    assert_eq!(s.test.class_counts(), vec![25; 10]);
    assert_ne!(
        s.train.images()[..784 * 250],
        s.test.images()[..],
        "splits differ"
    );
    // Labels are mixed, not sorted by class.
    assert_ne!(&s.train.labels()[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Images use the byte range.
    assert!(s.train.images().iter().any(|&p| p > 200));
    assert!(s.train.images().contains(&0));
}

#[test]
fn default_dataset_is_learnable() {
    let s = synthetic(&SyntheticConfig::default()).unwrap();
    let acc = nearest_centroid_accuracy(&s.train, &s.test);
    println!("nearest-centroid accuracy {acc}");
    assert!(acc > 0.8, "nearest-centroid accuracy {acc}");
    // ...but not trivially noise-free.
    let first = s.train.image(0);
    let same_class = (1..s.train.len())
        .find(|&i| s.train.label(i) == s.train.label(0))
        .unwrap();
    assert_ne!(first, s.train.image(same_class));
}

#[test]
fn other_shapes_and_bad_configs() {
    let cfg = SyntheticConfig {
        train_size: 30,
        test_size: 0,
        classes: 3,
        rows: 8,
        cols: 5,
        ..SyntheticConfig::default()
    };
    let s = synthetic(&cfg).unwrap();
    assert_eq!(s.train.images().len(), 30 * 40);
    assert!(s.test.is_empty());
    for bad in [
        SyntheticConfig { classes: 0, ..cfg },
        SyntheticConfig {
            classes: 300,
            ..cfg
        },
        SyntheticConfig { rows: 0, ..cfg },
        SyntheticConfig {
            noise: f32::NAN,
            ..cfg
        },
        SyntheticConfig {
            train_size: usize::MAX,
            ..cfg
        },
    ] {
        assert!(synthetic(&bad).is_err(), "{bad:?}");
    }
}
