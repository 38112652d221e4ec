//! Training-throughput benchmark: images/s of full optimizer steps, with the time split into
//! batching, forward, backward, the flat bridge and the optimizer step ([`bench_train`]), and
//! the time of each operation of the step ([`ops`]).

pub mod asgd;
pub mod ops;

use crate::bridge;
use crate::model::{Classifier, Model, ModelKind};
use crate::training_device;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use stagewise_core::optim::{OptimizerConfig, OptimizerKind, QhmParams};
use stagewise_data::{synthetic, BatchConfig, EpochBatches, SyntheticConfig};
use std::time::{Duration, Instant};

/// Result of [`bench_train`]: throughput and where the time of a step goes.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// The model.
    pub model: ModelKind,
    /// Images per batch.
    pub batch_size: usize,
    /// Timed steps.
    pub steps: usize,
    /// Images per second over the timed steps.
    pub images_per_second: f64,
    /// Mean milliseconds per step spent making the batch and its tensors.
    pub ms_batch: f64,
    /// Mean milliseconds in the forward pass and the loss.
    pub ms_forward: f64,
    /// Mean milliseconds in the backward pass.
    pub ms_backward: f64,
    /// Mean milliseconds moving gradients out of and parameters into the model.
    pub ms_bridge: f64,
    /// Mean milliseconds of the fused QHM step on the flat vector.
    pub ms_optimizer: f64,
    /// Threads of the rayon pool the step ran on.
    pub threads: usize,
    /// Convolution kernels used ([`crate::kernels::KernelChoice`]).
    pub kernels: String,
}

/// Times `steps` training steps (after `warmup` untimed ones) of `model` with QHM at batch
/// size `batch_size`, on synthetic 28×28 images (the cost does not depend on pixel values),
/// on a thread of the compute pool as in training ([`crate::threads::on_pool`]).
pub fn bench_train(kind: ModelKind, batch_size: usize, steps: usize, warmup: usize) -> TrainBench {
    crate::threads::on_pool(|| time_steps(kind, batch_size, steps, warmup))
}

fn time_steps(kind: ModelKind, batch_size: usize, steps: usize, warmup: usize) -> TrainBench {
    let device = training_device();
    let data = synthetic(&SyntheticConfig {
        train_size: batch_size * 8,
        test_size: 10,
        ..SyntheticConfig::default()
    })
    .expect("valid synthetic config")
    .train;
    let mut model = Model::new(kind, &device, 0);
    let mut params = bridge::flatten_params(&model);
    let mut grads = Vec::with_capacity(params.len());
    let mut optimizer = OptimizerConfig::new(OptimizerKind::Qhm)
        .build::<f32>(
            params.len(),
            QhmParams {
                lr: 0.1,
                beta: 0.9,
                nu: 0.7,
            },
        )
        .expect("valid hyperparameters");
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut times = [Duration::ZERO; 5];
    let mut timed_start = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            times = [Duration::ZERO; 5];
            timed_start = Instant::now();
        }
        let t0 = Instant::now();
        let batch = EpochBatches::new(&data, BatchConfig::train(batch_size), 0, step as u64)
            .expect("valid batch config")
            .next()
            .expect("one batch");
        let shape = batch.shape();
        let images: Tensor<4> = Tensor::from_data(TensorData::new(batch.images, shape), &device);
        let labels = Tensor::from_data(TensorData::new(batch.labels, [batch.len]), &device);
        let t1 = Instant::now();
        let loss = loss_fn.forward(model.forward(images), labels);
        let _ = loss.clone().into_data();
        let t2 = Instant::now();
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let t3 = Instant::now();
        bridge::take_grads_into(&model, gradients, &mut grads);
        let t4 = Instant::now();
        optimizer.step_unchecked(&mut params, &grads);
        let t5 = Instant::now();
        model = bridge::write_params(model, &params).expect("same length");
        let t6 = Instant::now();
        times[0] += t1 - t0;
        times[1] += t2 - t1;
        times[2] += t3 - t2;
        times[3] += (t4 - t3) + (t6 - t5);
        times[4] += t5 - t4;
    }
    let elapsed = timed_start.elapsed().as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / steps.max(1) as f64;
    TrainBench {
        model: kind,
        batch_size,
        steps,
        images_per_second: (steps * batch_size) as f64 / elapsed,
        ms_batch: ms(times[0]),
        ms_forward: ms(times[1]),
        ms_backward: ms(times[2]),
        ms_bridge: ms(times[3]),
        ms_optimizer: ms(times[4]),
        threads: rayon::current_num_threads(),
        kernels: crate::kernels::kernel_choice().to_string(),
    }
}
