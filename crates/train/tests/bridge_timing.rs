//! Timing of the bridge (not asserted). Run with
//! `cargo test -p stagewise-train --test bridge_timing -- --ignored --nocapture` (the dev profile
//! already builds burn at opt-level 3).

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use stagewise_train::bridge;
use stagewise_train::model::{Classifier, Model, ModelKind};
use stagewise_train::training_device;

#[test]
#[ignore = "timing, run by hand"]
fn time_flatten_and_write() {
    const ROUNDS: u32 = 50;
    let device = training_device();
    for kind in ModelKind::ALL {
        let mut model = Model::new(kind, &device, 0);
        let loss = model.forward(Tensor::ones([8, 1, 28, 28], &device)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut flat = Vec::new();
        let mut flat_grads = Vec::new();
        bridge::read_params_into(&model, &mut flat);

        let start = Instant::now();
        for _ in 0..ROUNDS {
            bridge::read_params_into(&model, &mut flat);
        }
        let read = start.elapsed() / ROUNDS;

        let start = Instant::now();
        for _ in 0..ROUNDS {
            bridge::read_grads_into(&model, &grads, &mut flat_grads);
        }
        let read_grads = start.elapsed() / ROUNDS;

        let start = Instant::now();
        for _ in 0..ROUNDS {
            model = bridge::write_params(model, &flat).unwrap();
        }
        let write = start.elapsed() / ROUNDS;

        println!(
            "{kind:>6}: {} params, read_params_into {read:?}, read_grads_into {read_grads:?}, \
             write_params {write:?}",
            flat.len()
        );
    }
}
