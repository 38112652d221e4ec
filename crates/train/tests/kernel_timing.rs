//! Timing of the slice kernels by themselves (not asserted). Run with
//! `cargo test --release -p stagewise-train --test kernel_timing -- --ignored --nocapture`.

use std::time::Instant;

use stagewise_train::kernels::max_pool2d::{self, PoolShape};

#[test]
#[ignore = "timing, run by hand"]
fn time_max_pool() {
    for (channels, side) in [(32, 28), (64, 14)] {
        let s = PoolShape {
            planes: 128 * channels,
            height: side,
            width: side,
            kernel: [2, 2],
            stride: [2, 2],
        };
        // Pseudo-random values: the maxima's positions must not be predictable.
        let x: Vec<f32> = (0..s.input_len() as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 8) as f32)
            .collect();
        let mut out = vec![0.0; s.out_len()];
        let mut at = vec![0; s.out_len()];
        let mut grad = vec![0.0; s.input_len()];
        for _ in 0..3 {
            let t = Instant::now();
            max_pool2d::forward(&s, &x, &mut out, &mut at);
            let f = t.elapsed();
            let t = Instant::now();
            max_pool2d::backward(&s, &out, &at, &mut grad);
            println!(
                "{channels}@{side}: forward {f:?}, backward {:?}",
                t.elapsed()
            );
        }
    }
}

#[test]
#[ignore = "timing, run by hand"]
fn time_max_pool_tensor() {
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{Distribution, Tensor};
    let device = stagewise_train::training_device();
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let x = Tensor::<4>::random([128, 32, 28, 28], Distribution::Default, &device);
    for _ in 0..4 {
        let t = Instant::now();
        let y = stagewise_train::kernels::max_pool2d(&pool, x.clone());
        let f = t.elapsed();
        drop(y);
        let t2 = Instant::now();
        let z = stagewise_train::kernels::conv2d(
            &burn::nn::conv::Conv2dConfig::new([32, 32], [1, 1]).init(&device),
            x.clone(),
        );
        println!(
            "tensor max-pool {f:?}; 1x1 conv {:?} {:?}",
            t2.elapsed(),
            z.dims()
        );
    }
}
