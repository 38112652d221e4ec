//! Shuffling, batching, augmentation, normalization, subsets and shards.

use std::collections::HashSet;

use stagewise_data::{
    epoch_order, steps_per_epoch, synthetic, Augment, Batch, BatchConfig, DataError, Dataset,
    EpochBatches, Normalization, SyntheticConfig, Transform,
};

fn data() -> Dataset {
    synthetic(&SyntheticConfig::small()).unwrap().train
}

/// A 1-image dataset of `rows x cols` whose pixels are `0, 1, 2, ...`.
fn ramp(rows: usize, cols: usize) -> Dataset {
    Dataset::new(
        (0..rows * cols).map(|v| v as u8).collect(),
        vec![0],
        rows,
        cols,
        1,
    )
    .unwrap()
}

#[test]
fn steps_per_epoch_rounds_up_unless_drop_last() {
    assert_eq!(steps_per_epoch(10, 3, false), 4);
    assert_eq!(steps_per_epoch(10, 3, true), 3);
    assert_eq!(steps_per_epoch(9, 3, false), 3);
    assert_eq!(steps_per_epoch(0, 3, false), 0);
    assert_eq!(steps_per_epoch(2, 3, true), 0);
    assert_eq!(steps_per_epoch(5, 0, false), 0);
}

#[test]
fn an_epoch_visits_every_item_once_and_keeps_the_last_partial_batch() {
    let ds = data();
    let batches: Vec<Batch> = EpochBatches::new(&ds, BatchConfig::train(100), 1, 0)
        .unwrap()
        .collect();
    assert_eq!(batches.len(), 6);
    assert!(batches[..5].iter().all(|b| b.len == 100));
    assert_eq!(batches[5].len, 12);
    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(seen, (0..512).collect::<Vec<_>>(), "shuffled");
    seen.sort_unstable();
    assert_eq!(seen, (0..512).collect::<Vec<_>>());
    for b in &batches {
        assert_eq!(b.images.len(), b.len * 784);
        assert_eq!(b.labels.len(), b.len);
        assert_eq!(b.shape(), [b.len, 1, 28, 28]);
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[k], i64::from(ds.label(i)));
        }
    }
}

#[test]
fn drop_last_skips_the_partial_batch() {
    let ds = data();
    let it = EpochBatches::new(&ds, BatchConfig::train(100).with_drop_last(true), 1, 0).unwrap();
    assert_eq!(it.len(), 5);
    let sizes: Vec<usize> = it.map(|b| b.len).collect();
    assert_eq!(sizes, vec![100; 5]);
}

#[test]
fn eval_order_is_dataset_order_and_pixels_are_normalized() {
    let ds = data();
    let norm = Normalization::FASHION_MNIST;
    let mut it = EpochBatches::new(&ds, BatchConfig::eval(8), 99, 3).unwrap();
    let b = it.next().unwrap();
    assert_eq!(b.indices, (0..8).collect::<Vec<_>>());
    for (k, &px) in ds.image(5).iter().enumerate() {
        let got = b.images[5 * 784 + k];
        let want = (f32::from(px) / 255.0 - 0.2860) / 0.3530;
        assert!((got - want).abs() < 1e-6);
        assert_eq!(got, norm.apply(px));
    }
}

#[test]
fn order_depends_only_on_seed_and_epoch() {
    assert_eq!(epoch_order(1000, 5, 2), epoch_order(1000, 5, 2));
    assert_ne!(epoch_order(1000, 5, 2), epoch_order(1000, 5, 3));
    assert_ne!(epoch_order(1000, 5, 2), epoch_order(1000, 6, 2));
    let ds = data();
    let it = EpochBatches::new(&ds, BatchConfig::train(64), 5, 2).unwrap();
    assert_eq!(it.order(), &epoch_order(512, 5, 2)[..]);
}

#[test]
fn resuming_mid_epoch_reproduces_the_same_batches() {
    let ds = data();
    let config = BatchConfig::train(48).with_augment(Augment::crop_flip(4));
    let full: Vec<Batch> = EpochBatches::new(&ds, config, 11, 7).unwrap().collect();
    let mut resumed = EpochBatches::new(&ds, config, 11, 7).unwrap();
    resumed.skip_batches(4);
    assert_eq!(resumed.step(), 4);
    assert_eq!(resumed.len(), full.len() - 4);
    let rest: Vec<Batch> = resumed.collect();
    assert_eq!(rest[..], full[4..]);

    let mut done = EpochBatches::new(&ds, config, 11, 7).unwrap();
    done.skip_batches(usize::MAX);
    assert_eq!(done.next(), None);
}

#[test]
fn changing_the_batch_size_regroups_the_same_samples() {
    let ds = data();
    let aug = Augment::crop_flip(2);
    let flat = |b: usize| -> (Vec<f32>, Vec<i64>) {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for batch in EpochBatches::new(&ds, BatchConfig::train(b).with_augment(aug), 3, 1).unwrap()
        {
            images.extend(batch.images);
            labels.extend(batch.labels);
        }
        (images, labels)
    };
    assert_eq!(flat(32), flat(100));
}

#[test]
fn next_into_reuses_buffers() {
    let ds = data();
    let mut it = EpochBatches::new(&ds, BatchConfig::train(100), 0, 0).unwrap();
    let mut batch = Batch::default();
    assert!(it.next_into(&mut batch));
    let ptr = batch.images.as_ptr();
    let mut count = 1;
    while it.next_into(&mut batch) {
        count += 1;
        assert_eq!(
            batch.images.as_ptr(),
            ptr,
            "no reallocation for smaller or equal batches"
        );
    }
    assert_eq!(count, 6);
    assert_eq!(batch.len, 0);
    assert!(batch.labels.is_empty() && batch.images.is_empty());
}

#[test]
fn augmentation_is_deterministic_and_varies() {
    let ds = data();
    let config = BatchConfig::eval(512).with_augment(Augment::crop_flip(2));
    let a = EpochBatches::new(&ds, config, 1, 0)
        .unwrap()
        .next()
        .unwrap();
    let b = EpochBatches::new(&ds, config, 1, 0)
        .unwrap()
        .next()
        .unwrap();
    let c = EpochBatches::new(&ds, config, 1, 1)
        .unwrap()
        .next()
        .unwrap();
    let plain = EpochBatches::new(&ds, BatchConfig::eval(512), 1, 0)
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a.images, c.images, "another epoch, other crops");
    assert_ne!(a.images, plain.images);
    // Most images are changed, a few (identity draws) may not be.
    let changed = a
        .images
        .chunks(784)
        .zip(plain.images.chunks(784))
        .filter(|(x, y)| x != y)
        .count();
    assert!(changed > 400, "{changed} of 512 changed");
}

#[test]
fn augmentation_draws_cover_the_range() {
    let aug = Augment::crop_flip(2);
    let mut dys = HashSet::new();
    let mut dxs = HashSet::new();
    let mut flips = HashSet::new();
    for i in 0..2000u64 {
        let t = aug.draw(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        assert!(t.dy.abs() <= 2 && t.dx.abs() <= 2);
        dys.insert(t.dy);
        dxs.insert(t.dx);
        flips.insert(t.flip);
    }
    assert_eq!(dys.len(), 5);
    assert_eq!(dxs.len(), 5);
    assert_eq!(flips.len(), 2);
    assert_eq!(Augment::NONE.draw(u64::MAX), Transform::IDENTITY);
    let no_flip = Augment {
        crop_padding: 4,
        horizontal_flip: false,
    };
    assert!(!no_flip.draw(u64::MAX).flip);
}

#[test]
fn transform_shifts_with_zero_fill_and_flips() {
    let ds = ramp(3, 4); // rows: [0 1 2 3] [4 5 6 7] [8 9 10 11]
    let table = Normalization::UNIT.table();
    let mut out = vec![0.0; 12];
    let as_bytes = |v: &[f32]| {
        v.iter()
            .map(|x| (x * 255.0).round() as u8)
            .collect::<Vec<_>>()
    };

    Transform::IDENTITY.apply(ds.image(0), 3, 4, &table, &mut out);
    assert_eq!(as_bytes(&out), (0..12).collect::<Vec<u8>>());

    let down_right = Transform {
        dy: -1,
        dx: -1,
        flip: false,
    };
    down_right.apply(ds.image(0), 3, 4, &table, &mut out);
    assert_eq!(as_bytes(&out), vec![0, 0, 0, 0, 0, 0, 1, 2, 0, 4, 5, 6]);

    let flip = Transform {
        flip: true,
        ..Transform::IDENTITY
    };
    flip.apply(ds.image(0), 3, 4, &table, &mut out);
    assert_eq!(as_bytes(&out), vec![3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8]);

    let up_flip = Transform {
        dy: 1,
        dx: 1,
        flip: true,
    };
    up_flip.apply(ds.image(0), 3, 4, &table, &mut out);
    // Shift: [5 6 7 0] [9 10 11 0] [0 0 0 0]; then mirror.
    assert_eq!(as_bytes(&out), vec![0, 7, 6, 5, 0, 11, 10, 9, 0, 0, 0, 0]);

    // Background is the normalized value of a 0 pixel.
    let fm = Normalization::FASHION_MNIST;
    down_right.apply(ds.image(0), 3, 4, &fm.table(), &mut out);
    assert_eq!(out[0], fm.apply(0));
}

#[test]
fn bad_batch_arguments_are_errors() {
    let ds = data();
    assert!(matches!(
        EpochBatches::new(&ds, BatchConfig::train(0), 0, 0),
        Err(DataError::InvalidArgument(_))
    ));
    let bad = BatchConfig::train(8).with_normalization(Normalization {
        mean: 0.0,
        std: 0.0,
    });
    assert!(EpochBatches::new(&ds, bad, 0, 0).is_err());
}

#[test]
fn empty_dataset_gives_no_batches() {
    let ds = data().take(0);
    assert!(ds.is_empty());
    let mut it = EpochBatches::new(&ds, BatchConfig::train(8), 0, 0).unwrap();
    assert_eq!(it.len(), 0);
    assert_eq!(it.next(), None);
}

#[test]
fn take_truncate_and_select() {
    let ds = data();
    let head = ds.take(10);
    assert_eq!(head.len(), 10);
    assert_eq!(head.images(), &ds.images()[..7840]);
    assert_eq!(ds.take(10_000).len(), 512);
    let mut t = ds.clone();
    t.truncate(3);
    assert_eq!(t, ds.take(3));
    let sel = ds.select(&[5, 5, 0]).unwrap();
    assert_eq!(sel.image(1), ds.image(5));
    assert_eq!(sel.label(2), ds.label(0));
    assert!(matches!(
        ds.select(&[512]),
        Err(DataError::InvalidArgument(_))
    ));
}

#[test]
fn stratified_subset_keeps_class_proportions() {
    // 1000 items, classes 0..4 with 400/300/200/100 items.
    let labels: Vec<u8> = (0..1000)
        .map(|i| match i % 10 {
            0..=3 => 0,
            4..=6 => 1,
            7 | 8 => 2,
            _ => 3,
        })
        .collect();
    let images: Vec<u8> = (0..1000).map(|i| (i % 256) as u8).collect();
    let ds = Dataset::new(images, labels, 1, 1, 4).unwrap();
    let sub = ds.stratified_subset(100, 9);
    assert_eq!(sub.class_counts(), vec![40, 30, 20, 10]);
    assert_eq!(sub, ds.stratified_subset(100, 9), "deterministic");
    assert_ne!(sub, ds.stratified_subset(100, 10), "seed matters");

    // Rounding: 7 of 1000 → shares 2.8, 2.1, 1.4, 0.7 → 3, 2, 1, 1.
    let small = ds.stratified_subset(7, 0);
    assert_eq!(small.len(), 7);
    assert_eq!(small.class_counts(), vec![3, 2, 1, 1]);
    assert_eq!(ds.stratified_subset(5000, 0), ds);

    // Balanced 10-class data: an exact split.
    let bal = data(); // 512 items: 52/52/51/.../51
    let sub = bal.stratified_subset(100, 1);
    assert_eq!(sub.class_counts(), vec![10; 10]);
}

#[test]
fn shards_partition_the_dataset() {
    let ds = data();
    let shards: Vec<Dataset> = (0..3).map(|w| ds.shard(w, 3).unwrap()).collect();
    assert_eq!(
        shards.iter().map(Dataset::len).collect::<Vec<_>>(),
        vec![171, 171, 170]
    );
    for (w, s) in shards.iter().enumerate() {
        for k in 0..s.len() {
            assert_eq!(s.image(k), ds.image(w + 3 * k));
            assert_eq!(s.label(k), ds.label(w + 3 * k));
        }
    }
    assert_eq!(ds.shard(0, 1).unwrap(), ds);
    assert!(ds.shard(3, 3).is_err());
    assert!(ds.shard(0, 0).is_err());
}

#[test]
fn dataset_new_checks_invariants() {
    assert!(Dataset::new(vec![0; 8], vec![0, 1], 2, 2, 2).is_ok());
    assert!(Dataset::new(vec![0; 7], vec![0, 1], 2, 2, 2).is_err());
    assert!(Dataset::new(vec![0; 8], vec![0, 2], 2, 2, 2).is_err());
    assert!(Dataset::new(vec![], vec![], 0, 2, 2).is_err());
    assert!(Dataset::new(vec![], vec![], 2, 2, 0).is_err());
    assert!(Dataset::new(vec![], vec![], 2, 2, 257).is_err());
}

#[test]
fn configs_round_trip_through_json() {
    let config = BatchConfig::train(128).with_augment(Augment::crop_flip(4));
    let json = serde_json::to_string(&config).unwrap();
    let back: BatchConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
}
