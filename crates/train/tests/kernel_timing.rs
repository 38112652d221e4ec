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

#[test]
#[ignore = "timing, run by hand"]
fn time_conv2_forward_parts() {
    use stagewise_train::kernels::conv2d::{self, Conv2dGrads, Conv2dShape};
    let s = Conv2dShape {
        batch: 128,
        c_in: 32,
        height: 14,
        width: 14,
        c_out: 64,
        kernel: [5, 5],
        stride: [1, 1],
        padding: [2, 2],
    };
    let x: Vec<f32> = (0..s.input_len() as u32)
        .map(|i| (i % 13) as f32 * 0.1)
        .collect();
    let w: Vec<f32> = (0..s.weight_len() as u32)
        .map(|i| (i % 7) as f32 * 0.1)
        .collect();
    let mut out = vec![0.0; s.out_len()];
    let mut gx = vec![0.0; s.input_len()];
    let mut gw = vec![0.0; s.weight_len()];
    let flops = 2.0 * (s.out_len() * s.col_rows()) as f64;
    for _ in 0..3 {
        let t = Instant::now();
        conv2d::forward(&s, &x, &w, None, &mut out);
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        conv2d::backward(
            &s,
            &x,
            &w,
            &out,
            Conv2dGrads {
                x: Some(&mut gx),
                weight: None,
                bias: None,
            },
        );
        let bx = t.elapsed().as_secs_f64();
        let t = Instant::now();
        conv2d::backward(
            &s,
            &x,
            &w,
            &out,
            Conv2dGrads {
                x: None,
                weight: Some(&mut gw),
                bias: None,
            },
        );
        let bw = t.elapsed().as_secs_f64();
        println!(
            "conv2: forward {:.1} ms ({:.0} GFLOP/s), dx {:.1} ms, dW {:.1} ms",
            f * 1e3,
            flops / f / 1e9,
            bx * 1e3,
            bw * 1e3
        );
    }
    // The bare GEMM of the forward pass, 128 images as 13 groups of 10 (1960 columns).
    let (m, k, n) = (64usize, 800usize, 1960usize);
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    use rayon::prelude::*;
    for _ in 0..3 {
        let t = Instant::now();
        (0..13).into_par_iter().for_each_init(
            || vec![0.0f32; m * n],
            |c, _| unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            },
        );
        let e = t.elapsed().as_secs_f64();
        println!(
            "bare GEMM 13 × (64×800·800×1960): {:.1} ms ({:.0} GFLOP/s)",
            e * 1e3,
            13.0 * 2.0 * (m * n * k) as f64 / e / 1e9
        );
    }
    c[0] = 0.0;
}

#[test]
#[ignore = "timing, run by hand"]
fn time_max_pool_fresh_buffers() {
    let s = PoolShape {
        planes: 128 * 32,
        height: 28,
        width: 28,
        kernel: [2, 2],
        stride: [2, 2],
    };
    let x: Vec<f32> = (0..s.input_len() as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 8) as f32)
        .collect();
    for _ in 0..4 {
        let t = Instant::now();
        let mut out = vec![0.0; s.out_len()];
        let mut at = vec![0; s.out_len()];
        let a = t.elapsed();
        max_pool2d::forward(&s, &x, &mut out, &mut at);
        println!("fresh buffers: alloc {a:?}, forward {:?}", t.elapsed() - a);
    }
}

#[test]
#[ignore = "timing, run by hand"]
fn time_weight_gradient_gemm() {
    use rayon::prelude::*;
    // ∂W (64 × 800) += ∂out (64 × 1960) · colsᵀ, cols 800 × 1960 row-major; 13 groups, 2 tasks.
    let (m, n, k) = (64usize, 800usize, 1960usize);
    let a = vec![0.5f32; m * k];
    let cols = vec![0.25f32; n * k];
    for kk in [196usize, 392, 980, 1960] {
        let reps = 7 * k / kk;
        for (label, dst_cs, dst_rs) in [
            ("row-major ∂W", 1isize, n as isize),
            ("column-major ∂W", m as isize, 1),
        ] {
            let t = Instant::now();
            (0..2).into_par_iter().for_each(|_| {
                let mut c = vec![0.0f32; m * n];
                for g in 0..reps {
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            kk,
                            c.as_mut_ptr(),
                            dst_cs,
                            dst_rs,
                            g > 0,
                            a.as_ptr(),
                            1,
                            k as isize,
                            cols.as_ptr(),
                            k as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            });
            let e = t.elapsed().as_secs_f64();
            println!(
                "dW GEMM k={kk}, {label}: {:.1} ms ({:.0} GFLOP/s)",
                e * 1e3,
                14.0 * 2.0 * (m * n * k) as f64 / e / 1e9
            );
        }
    }
}
