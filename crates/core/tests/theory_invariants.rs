//! Plan invariants and the §2 convergence conditions of multistage QHM.

use stagewise_core::theory::{
    check_plan, stage_invariants, CheckOptions, Condition, StageHyper, TheoryError,
};

/// PC's CIFAR rule (docs/theory.md §2): α·½, b·½, β/(1−β)·2 per drop, stage lengths 5/10/20/40
/// epochs of 50 000 images. `in_steps` converts epochs to iterations with each stage's batch.
fn pc_plan(in_steps: bool) -> Vec<StageHyper> {
    [5u64, 10, 20, 40]
        .iter()
        .enumerate()
        .map(|(k, &epochs)| {
            let f = 2f64.powi(k as i32);
            let b = 256.0 / f;
            let odds = 9.0 * f;
            let length_steps = if in_steps {
                (epochs as f64 * (50_000.0 / b).ceil()) as u64
            } else {
                epochs
            };
            StageHyper {
                lr: 0.1 / f,
                beta: odds / (1.0 + odds),
                nu: 0.5,
                batch_size: b,
                length_steps,
            }
        })
        .collect()
}

#[test]
fn pc_rule_keeps_the_conditions_when_lengths_are_epochs() {
    let check = check_plan(&pc_plan(false), &CheckOptions::default()).unwrap();
    for c in &check.conditions {
        assert!(c.holds, "{:?}: {:?}", c.condition, c.message);
        assert!(c.message.is_none());
    }
    let inv = &check.stages[3];
    assert!((inv.lr_times_length - 0.5).abs() < 1e-12);
    assert!((inv.momentum_offset - 0.45).abs() < 1e-12);
}

#[test]
fn counting_steps_with_a_shrinking_batch_breaks_condition_one() {
    // With b halving, an epoch has twice the iterations, so α·T (in steps) doubles per stage.
    let check = check_plan(&pc_plan(true), &CheckOptions::default()).unwrap();
    let c = check.get(Condition::ConstantLrTimesLength).unwrap();
    assert!(!c.holds);
    assert_eq!(c.worst_stage, Some(3));
    // 8× more (α·T): +700%, up to the rounding of iterations per epoch.
    assert!(
        (c.max_rel_deviation - 7.0).abs() < 0.05,
        "{}",
        c.max_rel_deviation
    );
    let msg = c.message.as_deref().unwrap();
    assert!(msg.contains("stage 3") && msg.contains("longer"), "{msg}");
    assert!(check.get(Condition::ConstantMomentumOffset).unwrap().holds);
    assert!(!check.all_hold());
}

#[test]
fn broken_rules_are_reported_with_deviation_and_message() {
    let s = |lr: f64, beta: f64, b: f64, t: u64| StageHyper {
        lr,
        beta,
        nu: 0.7,
        batch_size: b,
        length_steps: t,
    };
    // α drops without touching β, and β even decreases; batch fixed.
    let plan = [s(0.1, 0.9, 128.0, 100), s(0.05, 0.8, 128.0, 200)];
    let opts = CheckOptions {
        smoothness: Some(1.0),
        ..CheckOptions::default()
    };
    let check = check_plan(&plan, &opts).unwrap();
    assert!(check.get(Condition::ConstantLrTimesLength).unwrap().holds);
    let m = check.get(Condition::ConstantMomentumOffset).unwrap();
    // 0.1·0.7·9 = 0.63 → 0.05·0.7·4 = 0.14
    assert!(!m.holds && (m.max_rel_deviation - (1.0 - 0.14 / 0.63)).abs() < 1e-12);
    assert!(m.message.as_deref().unwrap().contains("β/(1−β)"));
    let b = check.get(Condition::BetaNonDecreasing).unwrap();
    assert!(!b.holds && b.worst_stage == Some(1));
    assert!(b.message.as_deref().unwrap().contains("decreases"));
    // α ≤ c(1−β)/L with L = 1: 0.1 ≤ 0.1 holds at stage 0; 0.05 ≤ 0.2 holds.
    assert!(check.get(Condition::LrBelowSmoothnessLimit).unwrap().holds);
    let tight = CheckOptions {
        smoothness: Some(2.0),
        ..CheckOptions::default()
    };
    let sm = check_plan(&plan, &tight).unwrap();
    let sm = sm.get(Condition::LrBelowSmoothnessLimit).unwrap();
    assert!(!sm.holds && sm.worst_stage == Some(0) && (sm.max_rel_deviation - 1.0).abs() < 1e-12);
    // α/b changes by half.
    let r = check.get(Condition::ConstantLrOverBatch).unwrap();
    assert!(!r.holds && (r.max_rel_deviation - 0.5).abs() < 1e-12);
    // Condition 3 is only reported when L is given.
    let without = check_plan(&plan, &CheckOptions::default()).unwrap();
    assert!(without.get(Condition::LrBelowSmoothnessLimit).is_none());
}

#[test]
fn single_stage_and_invalid_inputs() {
    let one = StageHyper {
        lr: 0.1,
        beta: 0.0,
        nu: 0.0,
        batch_size: 32.0,
        length_steps: 10,
    };
    assert!(check_plan(&[one], &CheckOptions::default())
        .unwrap()
        .all_hold());
    assert_eq!(stage_invariants(&one, 0).unwrap().momentum_offset, 0.0);
    assert!(matches!(
        check_plan(&[], &CheckOptions::default()),
        Err(TheoryError::Empty { .. })
    ));
    let bad = StageHyper { beta: 1.2, ..one };
    let e = check_plan(&[one, bad], &CheckOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("stages[1].beta") && e.to_string().contains("[0, 1)"),
        "{e}"
    );
    let zero = StageHyper {
        length_steps: 0,
        ..one
    };
    assert!(check_plan(&[zero], &CheckOptions::default()).is_err());
    let neg_l = CheckOptions {
        smoothness: Some(-1.0),
        ..CheckOptions::default()
    };
    assert!(check_plan(&[one], &neg_l).is_err());
}
