//! The recipe parameters the recipe and explain tests were written against.
#![allow(dead_code)]

use stagewise_core::schedule::RecipeParams;

/// The paper's CIFAR-style shape (α0 0.1, b0 128, 30 epochs, 4 stages, drop 2) with no weight
/// decay, spelled out so that the main-job preset (`RecipeParams::default()`) can change
/// without changing the tests.
pub fn paper_scale() -> RecipeParams {
    RecipeParams {
        lr: 0.1,
        momentum: 0.9,
        nu: 0.7,
        batch: 128,
        epochs: 30,
        stages: 4,
        drop: 2.0,
        weight_decay: 0.0,
        ..RecipeParams::default()
    }
}
