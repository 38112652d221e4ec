//! Recipes: the stagewise invariants, the step baseline, single-stage recipes, refusals.

mod recipes_common;
use recipes_common::paper_scale;
use stagewise_core::schedule::{PlanError, Recipe, RecipeParams, StageSchedule};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs())
}

#[test]
fn stagewise_keeps_the_invariants() {
    for (drop, batch, stages, epochs) in [
        (2.0, 256, 4, 75),
        (2.0, 128, 4, 30),
        (4.0, 1024, 3, 63),
        (3.0, 729, 5, 200),
    ] {
        let p = RecipeParams {
            lr: 0.3,
            momentum: 0.9,
            nu: 0.5,
            batch,
            epochs,
            stages,
            drop,
            weight_decay: 0.0,
            ..RecipeParams::default()
        };
        let plan = p.build(Recipe::Stagewise).unwrap();
        assert_eq!(plan.stages.len(), stages);
        let s0 = &plan.stages[0];
        let inv = |s: &stagewise_core::schedule::Stage| {
            (
                s.lr / s.batch_size as f64,
                s.lr * s.nu * s.beta / (1.0 - s.beta),
                s.lr * s.epochs.unwrap() as f64,
            )
        };
        let (ab0, k0, at0) = inv(s0);
        assert_eq!((s0.lr, s0.beta, s0.batch_size), (0.3, 0.9, batch));
        for (i, s) in plan.stages.iter().enumerate() {
            let (ab, k, at) = inv(s);
            assert!(rel(ab, ab0) < 1e-12, "α/b at stage {i}: {ab} vs {ab0}");
            assert!(rel(k, k0) < 1e-12, "α·ν·β/(1−β) at stage {i}: {k} vs {k0}");
            // α·T is constant up to rounding of the lengths: within one epoch's worth.
            assert!(
                (at - at0).abs() <= s.lr * 1.0 + 1e-12 + s0.lr,
                "α·T at stage {i}: {at} vs {at0}"
            );
            assert_eq!(s.nu, 0.5);
            assert!(
                s.beta >= plan.stages[i.saturating_sub(1)].beta,
                "β non-decreasing"
            );
        }
        let total: u64 = plan.stages.iter().map(|s| s.epochs.unwrap()).sum();
        assert_eq!(total, epochs);
        assert_eq!(plan.total_epochs(), Some(epochs));
    }
}

#[test]
fn stagewise_reproduces_pc_schedule() {
    // PC (docs/theory.md §2): 75 epochs, drop 2, b 256 → 32, β 0.9 → 0.947 → 0.973 → 0.986.
    let p = RecipeParams {
        lr: 0.1,
        momentum: 0.9,
        nu: 0.5,
        batch: 256,
        epochs: 75,
        stages: 4,
        drop: 2.0,
        weight_decay: 0.0,
        ..RecipeParams::default()
    };
    let plan = p.build(Recipe::Stagewise).unwrap();
    let e: Vec<u64> = plan.stages.iter().map(|s| s.epochs.unwrap()).collect();
    let b: Vec<u64> = plan.stages.iter().map(|s| s.batch_size).collect();
    let beta: Vec<f64> = plan
        .stages
        .iter()
        .map(|s| (s.beta * 1000.0).round() / 1000.0)
        .collect();
    let lr: Vec<f64> = plan.stages.iter().map(|s| s.lr).collect();
    assert_eq!(e, [5, 10, 20, 40]);
    assert_eq!(b, [256, 128, 64, 32]);
    assert_eq!(beta, [0.9, 0.947, 0.973, 0.986]);
    assert_eq!(lr, [0.1, 0.05, 0.025, 0.0125]);
}

#[test]
fn step_drops_lr_only_with_same_lengths() {
    let p = paper_scale();
    let step = p.build(Recipe::Step).unwrap();
    let sw = p.build(Recipe::Stagewise).unwrap();
    for (a, b) in step.stages.iter().zip(&sw.stages) {
        assert_eq!(a.epochs, b.epochs, "same stage lengths");
        assert_eq!(a.lr, b.lr);
        assert_eq!((a.beta, a.nu, a.batch_size), (0.9, 0.7, 128));
    }
    assert_eq!(p.stage_epochs().unwrap(), [2, 4, 8, 16]);
    assert_eq!(step.name.as_deref(), Some("step"));
}

#[test]
fn single_stage_recipes() {
    let p = paper_scale();
    for (r, sched) in [
        (Recipe::Constant, None),
        (Recipe::Cosine, Some("cosine")),
        (Recipe::Onecycle, Some("one_cycle")),
    ] {
        let plan = p.build(r).unwrap();
        assert_eq!(plan.stages.len(), 1);
        let s = &plan.stages[0];
        assert_eq!(
            (s.epochs, s.lr, s.beta, s.batch_size),
            (Some(30), 0.1, 0.9, 128)
        );
        let kind = s.schedule.as_ref().map(|x| match x {
            StageSchedule::Cosine { .. } => "cosine",
            StageSchedule::OneCycle(_) => "one_cycle",
            _ => "other",
        });
        assert_eq!(kind, sched);
    }
    // One-cycle over the whole run peaks at lr at 30% of the steps.
    let layout = p.build(Recipe::Onecycle).unwrap().layout(50_000).unwrap();
    let total = layout.total_steps();
    assert_eq!(total, 30 * 391);
    let peak = (0.3 * total as f64) as u64 - 1;
    let h = layout.hyper_at_step(peak).unwrap();
    assert!((h.lr - 0.1).abs() < 1e-12 && (h.beta - 0.85).abs() < 1e-12);
    // Cosine ends near 0.
    let layout = p.build(Recipe::Cosine).unwrap().layout(50_000).unwrap();
    assert!(layout.hyper_at_step(total - 1).unwrap().lr < 1e-7);
}

#[test]
fn batch_below_one_is_refused() {
    let p = RecipeParams {
        batch: 8,
        stages: 5,
        drop: 2.0,
        epochs: 40,
        ..Default::default()
    };
    // 8/2^4 = 0.5 would round to 1 and silently halve α/b: refused at stage 5.
    let e = p.build(Recipe::Stagewise).unwrap_err();
    assert!(
        matches!(e, PlanError::BatchTooSmall { stage: 5, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("stage 5: batch size 8 / 2^4 = 0.5 is below 1"),
        "{e}"
    );
    // The step recipe does not touch b, so it is fine.
    assert!(p.build(Recipe::Step).is_ok());
    let p = RecipeParams { stages: 4, ..p };
    assert_eq!(p.build(Recipe::Stagewise).unwrap().stages[3].batch_size, 1);
}

#[test]
fn bad_params_are_refused() {
    let base = paper_scale();
    let cases = [
        (
            RecipeParams {
                lr: 0.0,
                ..base.clone()
            },
            "'lr'",
        ),
        (
            RecipeParams {
                momentum: 1.0,
                ..base.clone()
            },
            "'momentum'",
        ),
        (
            RecipeParams {
                nu: -0.1,
                ..base.clone()
            },
            "'nu'",
        ),
        (
            RecipeParams {
                batch: 0,
                ..base.clone()
            },
            "'batch'",
        ),
        (
            RecipeParams {
                stages: 0,
                ..base.clone()
            },
            "'stages'",
        ),
        (
            RecipeParams {
                epochs: 2,
                ..base.clone()
            },
            "'epochs'",
        ),
        (
            RecipeParams {
                drop: f64::NAN,
                ..base.clone()
            },
            "'drop'",
        ),
    ];
    // The one-stage recipes do not read `stages` and `drop`, so they ignore them.
    let about_stages = |needle: &str| ["'stages'", "'epochs'", "'drop'"].contains(&needle);
    for (p, needle) in cases {
        for r in Recipe::ALL {
            if about_stages(needle) && !r.has_stages() {
                assert!(p.build(r).is_ok(), "{r} with {p:?}");
                continue;
            }
            let e = p.build(r).unwrap_err().to_string();
            assert!(e.contains(needle), "{r}: {e}");
        }
    }
}

#[test]
fn recipe_plans_survive_toml() {
    for r in Recipe::ALL {
        let plan = paper_scale().build(r).unwrap();
        let text = plan.to_toml_string().unwrap();
        assert_eq!(
            stagewise_core::schedule::Plan::from_toml_str(&text).unwrap(),
            plan,
            "{r}"
        );
    }
}
