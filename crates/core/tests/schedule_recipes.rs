//! Recipes: the stagewise invariants, the step baseline, single-stage recipes, refusals.

mod recipes_common;
use recipes_common::paper_scale;
use stagewise_core::schedule::{CooldownShape, PlanError, Recipe, RecipeParams, StageSchedule};

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
    assert!((h.qhm.lr - 0.1).abs() < 1e-12 && (h.qhm.beta - 0.85).abs() < 1e-12);
    // Cosine ends near 0.
    let layout = p.build(Recipe::Cosine).unwrap().layout(50_000).unwrap();
    assert!(layout.hyper_at_step(total - 1).unwrap().qhm.lr < 1e-7);
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

#[test]
fn new_fields_are_off_by_default_and_leave_the_preset_alone() {
    let d = RecipeParams::default();
    assert_eq!(
        (d.warmup_epochs, d.warmup_steps, d.warmup_start_fraction),
        (None, None, 0.0)
    );
    assert_eq!((d.final_lr_fraction, d.cooldown_fraction), (0.0, 0.2));
    assert_eq!(d.cooldown_shape, CooldownShape::Sqrt);
    // The serialized preset names the same eight fields as before.
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 8, "{json}");
    let back: RecipeParams = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
    let set = RecipeParams {
        warmup_steps: Some(5),
        cooldown_shape: CooldownShape::Linear,
        ..d.clone()
    };
    let json = serde_json::to_string(&set).unwrap();
    assert!(json.contains("\"warmup_steps\":5") && json.contains("\"cooldown_shape\":\"linear\""));
    assert_eq!(serde_json::from_str::<RecipeParams>(&json).unwrap(), set);
    // The older recipes' plans are unchanged.
    for r in [
        Recipe::Step,
        Recipe::Stagewise,
        Recipe::Constant,
        Recipe::Onecycle,
    ] {
        assert!(d
            .build(r)
            .unwrap()
            .stages
            .iter()
            .all(|s| !matches!(s.schedule, Some(StageSchedule::WarmupThen { .. }))));
    }
    assert_eq!(
        d.build(Recipe::Cosine).unwrap().stages[0].schedule,
        Some(StageSchedule::Cosine { min_factor: 0.0 })
    );
}

#[test]
fn linear_and_wsd_recipes() {
    let p = RecipeParams {
        final_lr_fraction: 0.1,
        ..paper_scale()
    };
    let lin = p.build(Recipe::Linear).unwrap();
    assert_eq!(lin.stages.len(), 1);
    assert_eq!(
        lin.stages[0].schedule,
        Some(StageSchedule::Linear { min_factor: 0.1 })
    );
    let layout = lin.layout(50_000).unwrap();
    let t = layout.total_steps();
    // Linear from 0.1 to 0.01 (reached at step T, one past the last).
    let last = layout.hyper_at_step(t - 1).unwrap().qhm.lr;
    assert!((last - 0.1 * (1.0 - 0.9 * (t - 1) as f64 / t as f64)).abs() < 1e-15);
    let wsd = p.build(Recipe::Wsd).unwrap();
    assert_eq!(
        wsd.stages[0].schedule,
        Some(StageSchedule::Wsd {
            cooldown_fraction: 0.2,
            shape: CooldownShape::Sqrt,
            min_factor: 0.1
        })
    );
    let layout = wsd.layout(50_000).unwrap();
    let cool = (0.2 * t as f64).round() as u64;
    assert_eq!(layout.hyper_at_step(t - cool - 1).unwrap().qhm.lr, 0.1);
    assert_eq!(layout.hyper_at_step(t - cool).unwrap().qhm.lr, 0.1);
    let s = 10.0 / cool as f64;
    let want = 0.1 * (0.1 + 0.9 * (1.0 - s.sqrt()));
    assert!((layout.hyper_at_step(t - cool + 10).unwrap().qhm.lr - want).abs() < 1e-15);
    assert_eq!(
        wsd.description.as_deref(),
        Some(
            "recipe wsd: lr 0.1, momentum 0.9, nu 0.7, batch 128, 30 epochs, cooldown 0.2 \
             (sqrt), final lr fraction 0.1"
        )
    );
    let bad = |p: RecipeParams, r: Recipe| p.build(r).unwrap_err().to_string();
    let e = bad(
        RecipeParams {
            cooldown_fraction: 0.0,
            ..paper_scale()
        },
        Recipe::Wsd,
    );
    assert!(e.contains("'cooldown_fraction' = 0") && e.contains("0 < cooldown_fraction <= 1"));
    let e = bad(
        RecipeParams {
            final_lr_fraction: -0.5,
            ..paper_scale()
        },
        Recipe::Linear,
    );
    assert!(e.contains("'final_lr_fraction'") && e.contains("0 <= final_lr_fraction <= 1"));
    // Recipes that do not read them ignore them, as the one-stage recipes ignore `drop`.
    let odd = RecipeParams {
        cooldown_fraction: 7.0,
        final_lr_fraction: 2.0,
        ..paper_scale()
    };
    assert!(odd.build(Recipe::Stagewise).is_ok() && odd.build(Recipe::Onecycle).is_ok());
    assert_eq!("wsd".parse::<Recipe>().unwrap(), Recipe::Wsd);
    assert_eq!(
        "sqrt".parse::<CooldownShape>().unwrap(),
        CooldownShape::Sqrt
    );
    assert!("cos"
        .parse::<CooldownShape>()
        .unwrap_err()
        .contains("linear, sqrt"));
    let e = "wsd2".parse::<Recipe>().unwrap_err().to_string();
    assert!(e.ends_with("constant, linear, wsd"), "{e}");
}

#[test]
fn every_recipe_takes_a_warm_up() {
    let base = RecipeParams {
        warmup_epochs: Some(1),
        warmup_start_fraction: 0.2,
        ..paper_scale()
    };
    for r in Recipe::ALL {
        let plan = base.build(r).unwrap();
        let layout = plan.layout(50_000).unwrap();
        let spe = layout.spans()[0].steps_per_epoch; // 391
        let first = plan.stages[0].lr;
        let lr = |t: u64| layout.hyper_at_step(t).unwrap().qhm.lr;
        assert!((lr(0) - 0.2 * first).abs() < 1e-15, "{r}");
        let mid = first * (0.2 + 0.8 * 100.0 / spe as f64);
        assert!((lr(100) - mid).abs() < 1e-15, "{r}");
        // After the warm-up the recipe's schedule starts from its step 0, over the steps left.
        let after = plan.stages[0].clone();
        let Some(StageSchedule::WarmupThen { then, .. }) = &after.schedule else {
            panic!("{r}: {:?}", after.schedule)
        };
        let rest = layout.spans()[0].total_steps - spe;
        let inner = then
            .as_deref()
            .map_or(first, |s| s.apply(first, after.beta, 0, rest).0);
        assert_eq!(lr(spe), inner, "{r}");
        let d = plan.description.unwrap();
        assert!(d.ends_with(", warm-up 1 epoch from lr fraction 0.2"), "{d}");
        let back = stagewise_core::schedule::Plan::from_toml_str(&plan_toml(&layout)).unwrap();
        assert_eq!(&back, layout.plan(), "{r}");
    }
    let e = |p: RecipeParams, r: Recipe| p.build(r).unwrap_err().to_string();
    // Stage 1 of the paper-scale stagewise plan lasts 2 epochs.
    let long = RecipeParams {
        warmup_epochs: Some(2),
        ..paper_scale()
    };
    let m = e(long.clone(), Recipe::Stagewise);
    assert!(
        m.contains("'warmup_epochs' = 2")
            && m.contains("1 <= warmup_epochs < 2 (the first stage's epochs)"),
        "{m}"
    );
    assert!(long.build(Recipe::Cosine).is_ok());
    let m = e(
        RecipeParams {
            warmup_epochs: Some(30),
            ..paper_scale()
        },
        Recipe::Cosine,
    );
    assert!(m.contains("warmup_epochs < 30 (the run's epochs)"), "{m}");
    let m = e(
        RecipeParams {
            warmup_epochs: Some(1),
            warmup_steps: Some(10),
            ..paper_scale()
        },
        Recipe::Wsd,
    );
    assert!(
        m.contains("at most one of warmup_epochs and warmup_steps"),
        "{m}"
    );
    let m = e(
        RecipeParams {
            warmup_steps: Some(0),
            ..paper_scale()
        },
        Recipe::Linear,
    );
    assert!(
        m.contains("'warmup_steps' = 0") && m.contains("leave it unset"),
        "{m}"
    );
    let m = e(
        RecipeParams {
            warmup_steps: Some(5),
            warmup_start_fraction: 1.5,
            ..paper_scale()
        },
        Recipe::Step,
    );
    assert!(m.contains("'warmup_start_fraction' = 1.5"), "{m}");
    // Steps are checked against the first stage once the dataset size is known: stage 1 of
    // stagewise has 2 epochs of ceil(50000/128) = 391 steps.
    let steps = RecipeParams {
        warmup_steps: Some(782),
        ..paper_scale()
    };
    let m = steps
        .build(Recipe::Stagewise)
        .unwrap()
        .layout(50_000)
        .unwrap_err()
        .to_string();
    assert!(
        m.starts_with(
            "stage 1: field 'schedule.warmup_steps' = 782 is out of range; allowed: \
                       warmup_steps < 782"
        ),
        "{m}"
    );
}

fn plan_toml(layout: &stagewise_core::schedule::Layout) -> String {
    layout.plan().to_toml_string().unwrap()
}
