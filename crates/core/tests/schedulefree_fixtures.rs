//! Replays every fixture made by `tools/make_schedulefree_fixtures.py` (the `schedulefree`
//! package's reference classes, float64) and requires y, x and z after every step to agree
//! within 1e-12. The optimizers are built directly from their hyperparameter structs.

use serde::Deserialize;
use stagewise_core::optim::{
    AdamWScheduleFree, AdamWScheduleFreeHyper, Optimizer, QhmParams, SgdScheduleFree,
    SgdScheduleFreeHyper,
};
use std::path::PathBuf;

const TOLERANCE: f64 = 1e-12;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/schedulefree")
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct Step {
    lr: f64,
    momentum: f64,
}

#[derive(Debug, Deserialize)]
struct Expected {
    params_after: Vec<Vec<f64>>,
    x_after: Vec<Vec<f64>>,
    z_after: Vec<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    algorithm: String,
    theta0: Vec<f64>,
    grads: Vec<Vec<f64>>,
    schedule: Vec<Step>,
    weight_decay: f64,
    warmup_steps: u64,
    r: f64,
    weight_lr_power: f64,
    beta2: Option<f64>,
    eps: Option<f64>,
    #[serde(default)]
    decay_at_z: bool,
    expected: Expected,
}

/// y, x and z after every step of our implementation.
struct Replay {
    y: Vec<Vec<f64>>,
    x: Vec<Vec<f64>>,
    z: Vec<Vec<f64>>,
}

fn build(case: &Case) -> Box<dyn Optimizer<f64>> {
    let first = case.schedule[0];
    let n = case.theta0.len();
    match case.algorithm.as_str() {
        "sgd-schedulefree" => Box::new(
            SgdScheduleFree::try_new(
                n,
                SgdScheduleFreeHyper {
                    lr: first.lr,
                    momentum: first.momentum,
                    weight_decay: case.weight_decay,
                    warmup_steps: case.warmup_steps,
                    r: case.r,
                    weight_lr_power: case.weight_lr_power,
                },
            )
            .unwrap(),
        ),
        "adamw-schedulefree" => Box::new(
            AdamWScheduleFree::try_new(
                n,
                AdamWScheduleFreeHyper {
                    lr: first.lr,
                    beta1: first.momentum,
                    beta2: case.beta2.expect("adamw fixture has beta2"),
                    eps: case.eps.expect("adamw fixture has eps"),
                    weight_decay: case.weight_decay,
                    warmup_steps: case.warmup_steps,
                    r: case.r,
                    weight_lr_power: case.weight_lr_power,
                    decay_at_z: case.decay_at_z,
                },
            )
            .unwrap(),
        ),
        other => panic!("{}: unknown algorithm {other}", case.name),
    }
}

/// z as exported in the state (the trait object gives no direct access).
fn z_of(opt: &dyn Optimizer<f64>) -> Vec<f64> {
    let state = opt.state();
    let (_, z) = state.buffers.iter().find(|(n, _)| n == "z").unwrap();
    z.clone()
}

fn replay(case: &Case) -> Replay {
    let mut opt = build(case);
    assert_eq!(opt.name(), case.algorithm);
    assert!(opt.eval_params().is_none(), "no x before the first step");
    let mut y = case.theta0.clone();
    let mut out = Replay {
        y: vec![],
        x: vec![],
        z: vec![],
    };
    assert_eq!(case.grads.len(), case.schedule.len(), "{}", case.name);
    for (s, g) in case.schedule.iter().zip(&case.grads) {
        opt.set_scheduled(QhmParams {
            lr: s.lr,
            beta: s.momentum,
            nu: 0.0,
        })
        .unwrap();
        opt.step(&mut y, g).unwrap();
        out.y.push(y.clone());
        out.x
            .push(opt.eval_params().expect("x after a step").to_vec());
        out.z.push(z_of(opt.as_ref()));
    }
    out
}

fn load_cases() -> Vec<Case> {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder tests/fixtures/schedulefree")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the committed fixtures, found {}",
        files.len()
    );
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

/// Largest |a − b| over all steps; panics naming the case, sequence and step beyond tolerance.
fn worst_diff(name: &str, what: &str, got: &[Vec<f64>], want: &[Vec<f64>]) -> f64 {
    assert_eq!(got.len(), want.len(), "{name}: {what} step count");
    let mut worst: f64 = 0.0;
    for (step, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            a.len(),
            b.len(),
            "{name}: {what} length at step {}",
            step + 1
        );
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let err = (x - y).abs();
            assert!(
                err <= TOLERANCE,
                "{name}: {what}[{i}] after step {} differs by {err:e} ({x} vs {y})",
                step + 1
            );
            worst = worst.max(err);
        }
    }
    worst
}

#[test]
fn every_fixture_matches_the_reference_within_1e_12() {
    let mut algorithms = std::collections::BTreeSet::new();
    let mut overall: f64 = 0.0;
    for case in load_cases() {
        let got = replay(&case);
        let e = &case.expected;
        let wy = worst_diff(&case.name, "y", &got.y, &e.params_after);
        let wx = worst_diff(&case.name, "x", &got.x, &e.x_after);
        let wz = worst_diff(&case.name, "z", &got.z, &e.z_after);
        println!(
            "{:24} max |diff| y {wy:.2e}  x {wx:.2e}  z {wz:.2e}",
            case.name
        );
        overall = overall.max(wy).max(wx).max(wz);
        algorithms.insert(case.algorithm.clone());
    }
    println!("overall max |diff| = {overall:.2e}");
    for needed in ["sgd-schedulefree", "adamw-schedulefree"] {
        assert!(algorithms.contains(needed), "no fixture for {needed}");
    }
}

/// The averaging weights w_t = t^r · γ_max,t^p, computed here from the case, independently of
/// the library: γ_t is the scheduled lr times the linear warm-up, γ_max,t its running maximum.
fn weights(case: &Case) -> Vec<f64> {
    let mut lr_max = f64::NEG_INFINITY;
    case.schedule
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let t = (k + 1) as f64;
            let warm = if (k as u64) < case.warmup_steps {
                t / case.warmup_steps as f64
            } else {
                1.0
            };
            lr_max = lr_max.max(s.lr * warm);
            t.powf(case.r) * lr_max.powf(case.weight_lr_power)
        })
        .collect()
}

#[test]
fn x_is_the_weighted_average_of_the_z_iterates() {
    // x_t = Σ_{i ≤ t} w_i·z_i / Σ_{i ≤ t} w_i: checked on the reference's z and x and on ours.
    for case in load_cases() {
        let w = weights(&case);
        let got = replay(&case);
        for (zs, xs, source) in [
            (&case.expected.z_after, &case.expected.x_after, "reference"),
            (&got.z, &got.x, "stagewise"),
        ] {
            let n = case.theta0.len();
            let mut weighted = vec![0.0; n];
            let mut total = 0.0;
            for (t, (z, x)) in zs.iter().zip(xs).enumerate() {
                total += w[t];
                for (acc, zi) in weighted.iter_mut().zip(z) {
                    *acc += w[t] * zi;
                }
                for (i, (acc, xi)) in weighted.iter().zip(x).enumerate() {
                    let average = acc / total;
                    assert!(
                        (average - xi).abs() <= 1e-12 * (1.0 + xi.abs()),
                        "{} ({source}): x[{i}] after step {} is {xi}, weighted average of z is \
                         {average}",
                        case.name,
                        t + 1
                    );
                }
            }
        }
    }
}

#[test]
fn y_interpolates_x_and_z() {
    // y_t = β_t·x_t + (1 − β_t)·z_t with the β in force at step t.
    for case in load_cases() {
        let e = &case.expected;
        for (t, s) in case.schedule.iter().enumerate() {
            for i in 0..case.theta0.len() {
                let y = s.momentum * e.x_after[t][i] + (1.0 - s.momentum) * e.z_after[t][i];
                assert!(
                    (y - e.params_after[t][i]).abs() <= 1e-12,
                    "{}: y[{i}] after step {}",
                    case.name,
                    t + 1
                );
            }
        }
    }
}
