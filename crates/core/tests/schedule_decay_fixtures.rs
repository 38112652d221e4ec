//! The `linear` and `wsd` recipes and the warm-up of every recipe against learning rates recorded
//! from PyTorch (`LinearLR`, `SequentialLR`) and optax (`linear_schedule`, `join_schedules`,
//! `warmup_cosine_decay_schedule`, a WSD built with `join_schedules`), by
//! `tools/make_schedule_fixtures.py` into `tests/fixtures/schedules/decay_schedules.json`.
//!
//! Every case is a 100-step run at lr 0.5: the recipe with batch 10 and 5 epochs of 200
//! examples (20 steps per epoch), read step by step through `Layout::hyper_at_step`.

use serde_json::Value;
use stagewise_core::schedule::{CooldownShape, Plan, Recipe, RecipeParams, Stage, StageSchedule};

const FIXTURE: &str = include_str!("../../../tests/fixtures/schedules/decay_schedules.json");
const N_TRAIN: u64 = 200;

fn cases() -> Vec<Value> {
    let v: Value = serde_json::from_str(FIXTURE).expect("fixture is valid JSON");
    v["cases"].as_array().unwrap().clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Relative error, 0 when both are 0.
fn rel(a: f64, b: f64) -> f64 {
    let m = a.abs().max(b.abs());
    if m == 0.0 {
        0.0
    } else {
        (a - b).abs() / m
    }
}

/// The recipe parameters a case names (lr 0.5, batch 10, 5 epochs: 100 steps of 200 examples).
fn params(p: &Value) -> RecipeParams {
    let f = |k: &str, d: f64| p.get(k).and_then(Value::as_f64).unwrap_or(d);
    let u = |k: &str| p.get(k).and_then(Value::as_u64);
    RecipeParams {
        lr: f("lr", 0.5),
        momentum: 0.9,
        nu: 0.7,
        batch: 10,
        epochs: 5,
        stages: 3,
        drop: 2.0,
        weight_decay: 0.0,
        warmup_epochs: u("warmup_epochs"),
        warmup_steps: u("warmup_steps"),
        warmup_start_fraction: f("warmup_start_fraction", 0.0),
        final_lr_fraction: f("final_lr_fraction", 0.0),
        cooldown_fraction: f("cooldown_fraction", 0.2),
        cooldown_shape: p
            .get("cooldown_shape")
            .and_then(Value::as_str)
            .map_or(CooldownShape::default(), |s| s.parse().unwrap()),
    }
}

/// Largest relative error of the plan's lr over the case's steps.
fn max_error(plan: &Plan, want: &[f64]) -> f64 {
    let layout = plan.layout(N_TRAIN).unwrap();
    assert_eq!(layout.total_steps(), want.len() as u64);
    want.iter()
        .enumerate()
        .map(|(t, &w)| rel(layout.hyper_at_step(t as u64).unwrap().qhm.lr, w))
        .fold(0.0, f64::max)
}

#[test]
fn recipes_match_pytorch_and_optax_at_every_step() {
    let cases = cases();
    assert!(cases.len() >= 13);
    let mut worst = (0.0, String::new());
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let recipe: Recipe = case["recipe"].as_str().unwrap().parse().unwrap();
        let want = floats(&case["lr"]);
        let plan = params(&case["params"]).build(recipe).unwrap();
        let e = max_error(&plan, &want);
        eprintln!("{name:28} {recipe:9} max relative error {e:.2e}");
        assert!(e <= 1e-12, "{name}: max relative error {e:e}");
        if e > worst.0 {
            worst = (e, name.to_string());
        }
        // The same schedule on a stage given in steps (warm-up in steps) gives the same lr.
        let mut stage = plan.stages[0].clone();
        let (epochs, steps_per_epoch) = (stage.epochs.unwrap(), 20);
        if let Some(StageSchedule::WarmupThen {
            warmup_epochs,
            warmup_steps,
            ..
        }) = &mut stage.schedule
        {
            if let Some(w) = warmup_epochs.take() {
                *warmup_steps = Some(w * steps_per_epoch);
            }
        }
        let in_steps = Plan::new(vec![Stage {
            epochs: None,
            steps: Some(epochs * steps_per_epoch),
            ..stage
        }]);
        assert!(max_error(&in_steps, &want) <= 1e-12, "{name} in steps");
        // And through TOML.
        let back = Plan::from_toml_str(&plan.to_toml_string().unwrap()).unwrap();
        assert_eq!(back, plan, "{name}");
    }
    eprintln!("largest: {:.2e} ({})", worst.0, worst.1);
}

/// The warm-up of a multistage recipe: the first stage ramps like PyTorch's
/// `SequentialLR([LinearLR(1/3 → 1, 10 steps), ConstantLR(1)])`, the other stages are untouched.
#[test]
fn stagewise_warm_up_matches_sequential_lr_in_its_first_stage() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "torch_warmup_constant")
        .unwrap();
    let want = floats(&case["lr"]);
    let p = params(&case["params"]);
    let plain = RecipeParams {
        warmup_steps: None,
        ..p.clone()
    };
    for recipe in [Recipe::Stagewise, Recipe::Step] {
        let warm = p.build(recipe).unwrap().layout(N_TRAIN).unwrap();
        let cold = plain.build(recipe).unwrap().layout(N_TRAIN).unwrap();
        let first = warm.spans()[0].total_steps;
        assert!(first > 10);
        for t in 0..first {
            let lr = warm.hyper_at_step(t).unwrap().qhm.lr;
            assert!(
                rel(lr, want[t as usize]) <= 1e-12,
                "{recipe} step {t}: {lr}"
            );
        }
        for t in first..warm.total_steps() {
            assert_eq!(
                warm.hyper_at_step(t),
                cold.hyper_at_step(t),
                "{recipe} step {t}"
            );
        }
        // β, ν and b are the stage's during the warm-up.
        let h = warm.hyper_at_step(3).unwrap();
        assert_eq!((h.qhm.beta, h.qhm.nu, h.batch_size), (0.9, 0.7, 10));
    }
}
