//! The plan adapter, `explain` and `recommend` (theory-guided tuning).

mod recipes_common;
mod theory_common;
use recipes_common::paper_scale;

use stagewise_core::schedule::{Plan, Recipe, RecipeParams, Stage};
use stagewise_core::theory::{
    explain, parse_spectrum, plan_stage_hypers, plan_stages, recommend, stationary_variance,
    AdviceError, AsgdBatch, AsgdUpdate, ExplainOptions, Hint, MomentumMatch, PlanExplanation,
    RecommendOptions, Rule, Setting, Severity, Topic, WarningKind,
};

/// [`RecommendOptions::new`] with the plan shape of [`paper_scale`].
fn paper_options(setting: Setting) -> RecommendOptions {
    let p = paper_scale();
    RecommendOptions {
        batch: p.batch,
        epochs: p.epochs,
        stages: p.stages,
        drop: p.drop,
        weight_decay: p.weight_decay,
        ..RecommendOptions::new(setting)
    }
}
use theory_common::Gauss;

fn explain_default(plan: &Plan) -> PlanExplanation {
    explain(plan, &ExplainOptions::default()).unwrap()
}

fn messages(ex: &PlanExplanation, kind: WarningKind) -> Vec<&str> {
    ex.warnings_only()
        .filter(|w| w.kind == kind)
        .map(|w| w.message.as_str())
        .collect()
}

#[test]
fn adapter_counts_iterations_with_each_stage_batch() {
    let plan = paper_scale().build(Recipe::Stagewise).unwrap();
    let stages = plan_stages(&plan, 60_000).unwrap();
    let batches: Vec<f64> = stages.iter().map(|s| s.hyper.batch_size).collect();
    assert_eq!(batches, [128.0, 64.0, 32.0, 16.0]);
    // ceil(60000/b) iterations per epoch, epochs 2, 4, 8, 16.
    let steps: Vec<u64> = stages.iter().map(|s| s.hyper.length_steps).collect();
    assert_eq!(steps, [2 * 469, 4 * 938, 8 * 1875, 16 * 3750]);
    assert_eq!(stages[3].length_epochs, 16.0);
    assert!(stages.iter().all(|s| s.schedule.is_none()));
    assert_eq!(
        plan_stage_hypers(&plan, 60_000).unwrap(),
        stages.iter().map(|s| s.hyper).collect::<Vec<_>>()
    );

    // A stage written in steps keeps its step count; its epochs are fractional.
    let mixed = Plan::new(vec![
        Stage::for_epochs(1, 0.1, 0.9, 0.7, 100),
        Stage::for_steps(15, 0.05, 0.95, 0.7, 100),
    ]);
    let s = plan_stages(&mixed, 1000).unwrap();
    assert_eq!((s[1].hyper.length_steps, s[1].length_epochs), (15, 1.5));
    // Invalid inputs are errors naming the problem, not panics.
    assert!(plan_stages(&mixed, 0).is_err());
    let mut bad = mixed.clone();
    bad.stages[1].beta = 1.0;
    let e = plan_stages(&bad, 1000).unwrap_err().to_string();
    assert!(e.contains("stage 2") && e.contains("beta"), "{e}");
}

#[test]
fn stagewise_recipe_keeps_the_invariants_and_gets_no_warning_about_them() {
    let plan = paper_scale().build(Recipe::Stagewise).unwrap();
    let ex = explain_default(&plan);
    for rule in [
        Rule::LrOverBatch,
        Rule::MomentumOffset,
        Rule::LrTimesEpochs,
        Rule::BetaNonDecreasing,
    ] {
        let r = ex.rule(rule).unwrap();
        assert!(r.holds, "{rule:?}: {r:?}");
        assert!(r.max_rel_deviation < 1e-9, "{rule:?}: {r:?}");
    }
    for kind in [
        WarningKind::LrOverBatch,
        WarningKind::MomentumOffset,
        WarningKind::LrTimesSteps,
        WarningKind::Unstable,
    ] {
        assert!(!ex.has_warning(kind), "{kind:?}: {:?}", ex.warnings);
    }
    assert_eq!(ex.warnings_only().count(), 0, "{:?}", ex.warnings);
    // In iterations α·T doubles per stage (b halves): the theorem's condition 1 is not met
    // literally, which is reported as a note saying which unit the theorem needs.
    let steps = ex.rule(Rule::LrTimesSteps).unwrap();
    assert!(!steps.holds && steps.worst_stage == Some(4));
    // 0.0125·16·3750 / (0.1·2·469) − 1 (469 = ceil(60000/128) is not exactly half of 938).
    assert!((steps.max_rel_deviation - (750.0 / 93.8 - 1.0)).abs() < 1e-9);
    let note = ex
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::LrTimesSteps)
        .unwrap();
    assert_eq!(note.severity, Severity::Note);
    assert!(note.message.contains("counts iterations") && note.message.contains("epochs"));
    // Per-stage numbers: α·T = 0.2 per stage in epochs, α·ν·β/(1−β) = 0.1·0.7·9 = 0.63.
    for s in &ex.stages {
        assert!((s.lr_times_epochs - 0.2).abs() < 1e-12);
        assert!((s.momentum_offset - 0.63).abs() < 1e-12);
        assert!((s.lr_over_batch - 0.1 / 128.0).abs() < 1e-15);
        assert!(s.stable && s.stability_margin > 0.9);
    }
    assert!((ex.stages[0].unnormalized_lr - 0.01).abs() < 1e-12);
    // κ ∝ α·β/(1−β) is invariant, hence so is ψ up to 2βν/(1+β); the exact variance stays
    // within a few percent of stage 1 (§3.4).
    for s in &ex.stages {
        assert!((s.kappa - ex.stages[0].kappa).abs() < 1e-12);
        let v = s.variance_rel.unwrap();
        assert!((v - 1.0).abs() < 0.05, "stage {}: V/V1 = {v}", s.stage);
    }
}

#[test]
fn step_recipe_gets_the_alpha_over_b_and_offset_warnings() {
    let plan = paper_scale().build(Recipe::Step).unwrap();
    let ex = explain_default(&plan);
    let lb = messages(&ex, WarningKind::LrOverBatch);
    assert_eq!(lb.len(), 3, "{lb:?}");
    assert!(lb[0].starts_with("stage 2: α/b = 3.90625e-4 differs from stage 1's 7.8125e-4 by -50%"));
    assert!(
        lb[2].contains("-88%") && lb[2].contains("shrinks"),
        "{}",
        lb[2]
    );
    assert!(!ex.rule(Rule::LrOverBatch).unwrap().holds);
    // β fixed while α drops: the z offset drops too.
    let off = messages(&ex, WarningKind::MomentumOffset);
    assert_eq!(off.len(), 3);
    assert!(off[0].contains("discontinuous"), "{}", off[0]);
    // Batch fixed, lengths 2, 4, 8, 16 epochs: α·T is constant in both units, no note.
    assert!(ex.rule(Rule::LrTimesSteps).unwrap().holds);
    assert!(ex.rule(Rule::LrTimesEpochs).unwrap().holds);
    assert!(!ex
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::LrTimesSteps));
    // Stationary variance ∝ (α/b)·ψ: ≈ (1/8)·ψ₄/ψ₁ at stage 4 (ψ rises as κ ∝ α falls; the
    // exact value also has the stability factor, within 2% here).
    let (s1, s4) = (&ex.stages[0], &ex.stages[3]);
    let v4 = s4.variance_rel.unwrap();
    assert!(
        ((v4 / (0.125 * s4.psi / s1.psi)) - 1.0).abs() < 0.02,
        "{v4}"
    );
    assert!(v4 < 0.15);
}

#[test]
fn broken_offset_message_names_the_stage_and_the_jump() {
    // Stage 3 has α·ν·β/(1−β) = 0.05·0.7·β/(1−β); β/(1−β) = 1.2/0.035 gives 1.2 vs 0.63.
    let odds = 1.2 / 0.035;
    let plan = Plan::new(vec![
        Stage::for_epochs(1, 0.1, 0.9, 0.7, 128),
        Stage::for_epochs(2, 0.05, 0.9473684210526316, 0.7, 64),
        Stage::for_epochs(2, 0.05, odds / (1.0 + odds), 0.7, 64),
    ]);
    let ex = explain_default(&plan);
    let off = messages(&ex, WarningKind::MomentumOffset);
    assert_eq!(off.len(), 1, "{off:?}");
    assert!(
        off[0].starts_with("stage 3: α·ν·β/(1−β) = 1.2 differs from stage 1's 0.63 by +90%"),
        "{}",
        off[0]
    );
    assert!(off[0].contains("z-sequence") && off[0].contains("discontinuous"));
    let r = ex.rule(Rule::MomentumOffset).unwrap();
    assert_eq!(r.worst_stage, Some(3));
}

#[test]
fn unstable_stage_is_flagged_and_the_bound_skipped() {
    let plan = Plan::new(vec![
        Stage::for_epochs(1, 0.01, 0.0, 0.0, 100),
        Stage::for_epochs(1, 0.5, 0.0, 0.0, 100),
    ]);
    let opts = ExplainOptions {
        n_train: 1000,
        h_max: Some(40.0),
        spectrum: Some(parse_spectrum("isotropic:d=10,h=40,c=1").unwrap()),
        ..ExplainOptions::default()
    };
    let ex = explain(&plan, &opts).unwrap();
    let u = messages(&ex, WarningKind::Unstable);
    // Plain SGD diverges for α ≥ 2/h = 0.05.
    assert_eq!(
        u,
        [
            "stage 2 is unstable for curvature 40: α = 0.5 ≥ α_max = 0.05 (QHM diverges along \
          that direction, §1); lower α, or raise ν·β"
        ]
    );
    assert!(!ex.stages[1].stable && ex.stages[1].stability_margin < 0.0);
    assert!(ex.stages[1].rate_at_h_max > 1.0);
    assert!(ex.stages[0].stable);
    assert!(ex.bound.is_none());
    assert!(ex.has_warning(WarningKind::BoundUnavailable));
    // Close to the edge is a note: α = 0.046 is 8% below α_max = 0.05.
    let near = Plan::new(vec![Stage::for_epochs(1, 0.046, 0.0, 0.0, 100)]);
    let ex = explain(&near, &opts).unwrap();
    assert!(ex
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::NearStabilityEdge && w.severity == Severity::Note));
    assert!(ex.bound.is_some());
}

#[test]
fn too_short_stage_is_a_warning_and_decreasing_beta_too() {
    // Equal lengths with α halving: α·T halves in iterations.
    let plan = Plan::new(vec![
        Stage::for_epochs(10, 0.1, 0.9, 0.7, 100),
        Stage::for_epochs(10, 0.05, 0.8, 0.7, 100),
    ]);
    let ex = explain(
        &plan,
        &ExplainOptions {
            n_train: 1000,
            smoothness: Some(2.0),
            ..ExplainOptions::default()
        },
    )
    .unwrap();
    let short = messages(&ex, WarningKind::LrTimesSteps);
    assert_eq!(short.len(), 1);
    assert!(
        short[0].contains("-50%") && short[0].contains("200 iterations (20 epochs)"),
        "{}",
        short[0]
    );
    assert!(ex.has_warning(WarningKind::BetaNonDecreasing));
    // α ≤ (1−β)/L with L = 2: 0.1 > 0.05 at stage 1 (+100%), 0.05 ≤ 0.1 at stage 2.
    let sm = ex.rule(Rule::LrBelowSmoothness).unwrap();
    assert!(!sm.holds && sm.worst_stage == Some(1));
    assert!((sm.max_rel_deviation - 1.0).abs() < 1e-12);
    assert_eq!(messages(&ex, WarningKind::LrBelowSmoothness).len(), 1);
}

#[test]
fn bound_proxy_prefers_the_joint_rule() {
    let spec = parse_spectrum("isotropic:d=1000,h=1,c=1").unwrap();
    let opts = ExplainOptions {
        spectrum: Some(spec),
        ..ExplainOptions::default()
    };
    let p = paper_scale();
    let joint = explain(&p.build(Recipe::Stagewise).unwrap(), &opts).unwrap();
    let step = explain(&p.build(Recipe::Step).unwrap(), &opts).unwrap();
    let (bj, bs) = (joint.bound.unwrap(), step.bound.unwrap());
    assert_eq!(bj.dim, 1000);
    assert_eq!(bj.n_samples, 60_000.0);
    assert!(bj.kl < bs.kl && bj.gap < bs.gap, "{bj:?} {bs:?}");
    // The joint rule keeps the KL near its stage-1 value; dropping α alone raises it per drop.
    assert_eq!(bj.kl_after_stage.len(), 4);
    let spread = bj.kl_after_stage[3] / bj.kl_after_stage[0];
    assert!((spread - 1.0).abs() < 0.05, "{:?}", bj.kl_after_stage);
    assert!(bs.kl_after_stage.windows(2).all(|w| w[1] > w[0]));
    assert_eq!(*bj.kl_after_stage.last().unwrap(), bj.kl);
}

#[test]
fn explanation_serializes_and_renders() {
    let plan = paper_scale().build(Recipe::Step).unwrap();
    let opts = ExplainOptions {
        spectrum: Some(parse_spectrum("isotropic:d=10,h=1,c=1").unwrap()),
        ..ExplainOptions::default()
    };
    let ex = explain(&plan, &opts).unwrap();
    let json = serde_json::to_string(&ex).unwrap();
    let back: PlanExplanation = serde_json::from_str(&json).unwrap();
    // Numbers may differ in the last bit after a JSON round trip; the findings may not.
    assert_eq!(back.warnings, ex.warnings);
    assert_eq!(back.stages.len(), 4);
    assert!((back.stages[3].psi - ex.stages[3].psi).abs() < 1e-12);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["stages"][1]["batch_size"], 128);
    assert_eq!(v["rules"][0]["rule"], "lr_times_steps");
    assert_eq!(v["warnings"][0]["severity"], "warning");
    let text = ex.render();
    assert!(text.starts_with("plan: step\n4 stages, 30 epochs, 14070 iterations"));
    assert!(text.contains("α·T(ep)") && text.contains("α·T(it)") && text.contains("V/V₁"));
    assert!(text.contains("[BROKEN] α/b constant"));
    assert!(text.contains("bound proxy") && text.contains("warnings:"));
}

#[test]
fn explain_refuses_bad_options_with_the_field_name() {
    let plan = paper_scale().build(Recipe::Stagewise).unwrap();
    let bad = |o: ExplainOptions| explain(&plan, &o).unwrap_err().to_string();
    let d = ExplainOptions::default;
    assert!(bad(ExplainOptions { n_train: 0, ..d() }).contains("n_train"));
    let e = bad(ExplainOptions {
        curvature: -1.0,
        ..d()
    });
    assert!(e.contains("curvature") && e.contains("> 0"), "{e}");
    assert!(bad(ExplainOptions {
        h_max: Some(f64::NAN),
        ..d()
    })
    .contains("h_max"));
    assert!(bad(ExplainOptions { delta: 1.0, ..d() }).contains("(0, 1)"));
}

#[test]
fn recommend_from_pytorch_sgd_gives_alpha_one() {
    let r = recommend(&paper_options(Setting::PytorchSgd {
        lr: 0.1,
        momentum: 0.9,
    }))
    .unwrap();
    assert!((r.converted.lr - 1.0).abs() < 1e-12);
    assert_eq!((r.converted.beta, r.converted.nu), (0.9, 1.0));
    assert_eq!(r.initial, r.converted);
    assert!(r.asgd.is_none() && r.warnings.is_empty());
    let expected = RecipeParams {
        lr: r.converted.lr,
        momentum: 0.9,
        nu: 1.0,
        ..paper_scale()
    }
    .build(Recipe::Stagewise)
    .unwrap();
    assert_eq!(r.plan, expected);
    assert!(r.reasons[0].text.contains("α = lr/(1−m) = 1"));
    assert_eq!(r.reasons[0].topic, Topic::Conversion);
    assert!(r
        .reasons
        .iter()
        .any(|x| x.text.contains("stagewise recipe")));
    // The conversion's float noise (0.1/(1 − 0.9) = 1.0000000000000002) is rounded away.
    assert_eq!(r.plan.stages[0].lr, 1.0);
    assert!(r.plan.to_toml_string().unwrap().contains("lr = 1.0\n"));
    // The recommended plan passes its own explanation.
    let ex = explain_default(&r.plan);
    assert_eq!(ex.warnings_only().count(), 0, "{:?}", ex.warnings);

    let n = recommend(&paper_options(Setting::PytorchNesterov {
        lr: 0.1,
        momentum: 0.9,
    }))
    .unwrap();
    assert_eq!((n.initial.beta, n.initial.nu), (0.9, 0.9));
    let mut o = paper_options(Setting::Qhm {
        lr: 0.5,
        beta: 0.99,
        nu: 0.7,
    });
    o.stages = 2;
    o.epochs = 3;
    let q = recommend(&o).unwrap();
    assert_eq!(q.plan.stages.len(), 2);
    assert_eq!(
        (q.plan.stages[1].lr, q.plan.stages[1].batch_size),
        (0.25, 64)
    );
}

#[test]
fn recommend_for_asgd_caps_reduces_momentum_and_scales_only_averaged_updates() {
    let mut o = paper_options(Setting::PytorchSgd {
        lr: 0.1,
        momentum: 0.9,
    });
    o.workers = Some(8);
    // Per push, without h_max: α0 = 0.1/(1 − 0.9) kept (not ×M), uncapped, with a warning.
    let r = recommend(&o).unwrap();
    let a = r.asgd.as_ref().unwrap();
    assert_eq!((a.workers, a.tau, a.update), (8, 7, AsgdUpdate::PerPush));
    assert!((a.implicit_momentum - 0.875).abs() < 1e-12);
    assert!((r.initial.lr - 1.0).abs() < 1e-12 && !a.lr.capped);
    assert!(r.warnings[0].text.contains("no h_max"), "{:?}", r.warnings);
    assert_eq!(r.warnings[0].topic, Topic::NoCurvature);
    assert_eq!(r.warnings[0].hints, [Hint::GiveHMax]);
    // DC-gain rule: 1 − β_e = M(1 − β) ⇒ β_e = 0.2, and the total is back to 0.9.
    assert!((r.initial.beta - 0.2).abs() < 1e-12);
    assert!((a.total_momentum - 0.9).abs() < 1e-12);
    assert!((r.plan.stages[0].beta - 0.2).abs() < 1e-12);
    assert!(r
        .reasons
        .iter()
        .any(|x| x.text.contains("implicit momentum")));

    // With h_max = 1: capped at ½·2 sin(π/30) = 0.10453. By default b0 falls with α so that
    // α/b stays 1/128: b0 = ⌊128·0.10453⌋ = 13 and α0 = 13/128, below the cap.
    o.h_max = Some(1.0);
    let r = recommend(&o).unwrap();
    let cap = (std::f64::consts::PI / 30.0).sin();
    let a = r.asgd.as_ref().unwrap();
    assert!(a.lr.capped && (a.lr.lr - cap).abs() < 1e-12);
    assert_eq!((a.batch_rule, a.plan_batch), (AsgdBatch::KeepRatio, 13));
    assert!((r.initial.lr - 13.0 / 128.0).abs() < 1e-15 && r.initial.lr <= cap);
    let b: Vec<u64> = r.plan.stages.iter().map(|s| s.batch_size).collect();
    assert_eq!(b, [13, 7, 3, 2]); // round(13/2^i): the recipe's usual drops from b0 = 13
    assert!(r.reasons.iter().any(|x| x.text.contains("keep-ratio")));
    let keep_batch = Hint::UseBatchRule {
        rule: AsgdBatch::KeepBatch,
    };
    assert!(r
        .reasons
        .iter()
        .any(|x| x.topic == Topic::BatchSize && x.hints == [keep_batch]));
    assert!(r.warnings.is_empty());
    // keep-batch: α0 is the cap itself, b0 stays 128.
    o.asgd_batch = AsgdBatch::KeepBatch;
    let r = recommend(&o).unwrap();
    assert!((r.initial.lr - cap).abs() < 1e-12 && r.plan.stages[0].batch_size == 128);
    assert!(r.reasons.iter().any(|x| x.text.contains("keep-batch")));
    o.asgd_batch = AsgdBatch::KeepRatio;
    // The whole limit (cap_fraction 1): twice the α, twice the batch (⌊128·0.20906⌋ = 26).
    o.cap_fraction = 1.0;
    let r = recommend(&o).unwrap();
    assert!((r.asgd.as_ref().unwrap().lr.lr - 2.0 * cap).abs() < 1e-12);
    assert_eq!(r.plan.stages[0].batch_size, 26);
    assert!(r.reasons.iter().any(|x| x.text.starts_with("check: QHM")));
    // QHM(0.9, 0.7) with 4 workers runs at explicit β 0.6, whose exact delayed limit (0.424)
    // is below delayed SGD's 0.445: at the whole SGD limit α0 = 56/128 = 0.4375 is flagged.
    let mut q = paper_options(Setting::Qhm {
        lr: 1.0,
        beta: 0.9,
        nu: 0.7,
    });
    (q.workers, q.h_max, q.cap_fraction) = (Some(4), Some(1.0), 1.0);
    let r = recommend(&q).unwrap();
    assert!(
        (r.initial.lr - 56.0 / 128.0).abs() < 1e-15,
        "{}",
        r.initial.lr
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.text.contains("exact delayed-QHM limit")
                && w.hints == [Hint::LowerCapFraction { current: 1.0 }]),
        "{:?}",
        r.warnings
    );
    q.cap_fraction = 0.5;
    assert!(recommend(&q).unwrap().warnings.is_empty());
    o.cap_fraction = 0.0;
    let e = recommend(&o).unwrap_err().to_string();
    assert!(e.contains("cap_fraction") && e.contains("(0, 1]"), "{e}");
    o.cap_fraction = 0.5;
    // b0 = 4 at the same cap would need 0.42 examples: b0 = 1 and α0 = the cap, with a warning.
    let mut tiny = o.clone();
    (tiny.batch, tiny.stages) = (4, 1);
    let r = recommend(&tiny).unwrap();
    assert_eq!(r.plan.stages[0].batch_size, 1);
    assert!((r.initial.lr - cap).abs() < 1e-12);
    assert!(
        r.warnings.iter().any(|w| w.text.contains("b0 = 1")),
        "{:?}",
        r.warnings
    );

    // Mean-lag rule: β/(1−β) = β_e/(1−β_e) + 7 ⇒ β_e/(1−β_e) = 2.
    o.momentum_match = MomentumMatch::MeanLag;
    let r = recommend(&o).unwrap();
    assert!((r.initial.beta - 2.0 / 3.0).abs() < 1e-12);

    // 16 workers already exceed β = 0.9 on their own: explicit momentum 0, with a warning.
    o.momentum_match = MomentumMatch::DcGain;
    o.workers = Some(16);
    // τ = 15 caps α0 at sin(π/62) = 0.0506: keeping α/b needs b0 = 6, which 4 stages with
    // r = 2 cannot halve three times; the error says which options help.
    let e = recommend(&o).unwrap_err();
    assert!(e.to_string().contains("lowered from 128 to 6"), "{e}");
    assert!(e.hints().contains(&keep_batch), "{:?}", e.hints());
    o.h_max = None;
    let r = recommend(&o).unwrap();
    assert_eq!(r.initial.beta, 0.0);
    assert!(r.asgd.unwrap().explicit_momentum_exact < 0.0);
    assert!(r.warnings.iter().any(|w| w.text.contains("negative")));

    // Averaged (synchronous) updates: linear scaling α0·M = 8, β kept, no staleness; with
    // h_max = 1 the cap is ½ · 2/h_max = 1.
    o.update = AsgdUpdate::Averaged;
    o.workers = Some(8);
    o.h_max = None;
    let r = recommend(&o).unwrap();
    let a = r.asgd.as_ref().unwrap();
    assert_eq!((a.tau, a.implicit_momentum), (0, 0.0));
    assert!((r.initial.lr - 8.0).abs() < 1e-12 && (r.initial.beta - 0.9).abs() < 1e-12);
    o.h_max = Some(1.0);
    let r = recommend(&o).unwrap();
    assert!((r.initial.lr - 1.0).abs() < 1e-12 && r.asgd.unwrap().lr.capped);
}

#[test]
fn recommend_refuses_adam_and_bad_inputs() {
    let e = recommend(&paper_options(Setting::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
    }))
    .unwrap_err();
    assert!(matches!(e, AdviceError::Unsupported(_)));
    let m = e.to_string();
    assert!(
        m.contains("no exact QHM conversion") && m.contains("QHAdam"),
        "{m}"
    );
    let err = |o: RecommendOptions| recommend(&o).unwrap_err().to_string();
    let sgd = |lr, momentum| paper_options(Setting::PytorchSgd { lr, momentum });
    assert!(err(sgd(0.1, 1.0)).contains("momentum"));
    assert!(err(sgd(-0.1, 0.9)).contains("lr"));
    let mut o = sgd(0.1, 0.9);
    o.batch = 0;
    assert!(err(o.clone()).contains("'batch'"));
    o.batch = 4;
    o.stages = 6;
    o.epochs = 60;
    assert!(err(o.clone()).contains("below 1"));
    let mut o = sgd(0.1, 0.9);
    o.workers = Some(0);
    assert!(err(o.clone()).contains("workers"));
    o.workers = Some(4);
    o.h_max = Some(0.0);
    assert!(err(o.clone()).contains("h_max"));
    let mut o = sgd(0.1, 0.9);
    o.nu = Some(1.5);
    assert!(err(o).contains("nu"));
}

/// Monte Carlo check of what the explanation promises for the stagewise rule: on a noisy
/// quadratic, the variance at the end of each stage stays at stage 1's level, as `variance_rel`
/// says, while the step recipe's shrinks with α/b.
#[test]
fn variance_rel_matches_a_simulation() {
    let (h, c) = (1.0, 1.0);
    let p = RecipeParams {
        lr: 0.2,
        batch: 8,
        epochs: 15,
        stages: 3,
        ..paper_scale()
    };
    for recipe in [Recipe::Stagewise, Recipe::Step] {
        let plan = p.build(recipe).unwrap();
        let opts = ExplainOptions {
            n_train: 400,
            curvature: h,
            ..ExplainOptions::default()
        };
        let ex = explain(&plan, &opts).unwrap();
        let stages = plan_stage_hypers(&plan, 400).unwrap();
        let v1 = stationary_variance(&stages[0].qhm(), h, c / stages[0].batch_size).unwrap();
        // Many independent chains, each started at stage 1's stationary variance.
        let chains = 4000;
        let mut g = Gauss::new(7);
        let mut theta: Vec<f64> = (0..chains).map(|_| v1.sqrt() * g.next()).collect();
        let mut d = vec![0.0; chains];
        for (s, st) in stages.iter().zip(&ex.stages) {
            let sigma = (c / s.batch_size).sqrt();
            for _ in 0..s.length_steps {
                for k in 0..chains {
                    let grad = h * theta[k] + sigma * g.next();
                    d[k] = s.beta * d[k] + (1.0 - s.beta) * grad;
                    theta[k] -= s.lr * ((1.0 - s.nu) * grad + s.nu * d[k]);
                }
            }
            let var = theta.iter().map(|x| x * x).sum::<f64>() / chains as f64;
            let predicted = st.variance_rel.unwrap() * v1;
            assert!(
                (var / predicted - 1.0).abs() < 0.12,
                "{recipe} stage {}: simulated {var}, predicted {predicted}",
                st.stage
            );
        }
    }
}

/// Every text `recommend` and `explain` produce (reasons, warnings, notes, errors) names no
/// command-line option: options are the front ends' business (they render the typed hints).
#[test]
fn library_texts_name_no_command_line_option() {
    let mut texts: Vec<String> = Vec::new();
    let sgd = Setting::PytorchSgd {
        lr: 0.1,
        momentum: 0.9,
    };
    let mut cases = Vec::new();
    for workers in [None, Some(4), Some(8), Some(16)] {
        for h_max in [None, Some(1.0), Some(30.0)] {
            for (update, asgd_batch) in [
                (AsgdUpdate::PerPush, AsgdBatch::KeepRatio),
                (AsgdUpdate::PerPush, AsgdBatch::KeepBatch),
                (AsgdUpdate::Averaged, AsgdBatch::KeepRatio),
            ] {
                for cap_fraction in [0.5, 1.0] {
                    let mut o = paper_options(sgd);
                    (o.workers, o.h_max, o.update, o.asgd_batch, o.cap_fraction) =
                        (workers, h_max, update, asgd_batch, cap_fraction);
                    cases.push(o);
                }
            }
        }
    }
    let mut nu = paper_options(sgd);
    nu.nu = Some(0.7);
    let mut tiny = paper_options(sgd);
    (tiny.workers, tiny.h_max, tiny.batch, tiny.stages) = (Some(8), Some(1.0), 4, 1);
    let qhm = paper_options(Setting::Qhm {
        lr: 1.0,
        beta: 0.9,
        nu: 0.7,
    });
    let adam = paper_options(Setting::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
    });
    cases.extend([nu, tiny, qhm, adam]);
    let (mut notes, mut errors) = (0, 0);
    for o in &cases {
        match recommend(o) {
            Ok(r) => {
                for n in r.reasons.iter().chain(&r.warnings) {
                    texts.push(n.text.clone());
                    notes += 1;
                }
                let ex = explain_default(&r.plan);
                texts.extend(ex.warnings.iter().map(|w| w.message.clone()));
            }
            Err(e) => {
                texts.push(e.to_string());
                errors += 1;
            }
        }
    }
    assert!(notes > 100 && errors >= 2, "{notes} notes, {errors} errors");
    // Explain on plans that break every rule.
    let step = paper_scale().build(Recipe::Step).unwrap();
    let onecycle = paper_scale().build(Recipe::Onecycle).unwrap();
    for plan in [step, onecycle] {
        for spectrum in [
            None,
            Some(parse_spectrum("isotropic:d=10,h=50,c=1").unwrap()),
        ] {
            let opts = ExplainOptions {
                h_max: Some(40.0),
                smoothness: Some(3.0),
                spectrum,
                ..ExplainOptions::default()
            };
            let ex = explain(&plan, &opts).unwrap();
            texts.extend(ex.warnings.iter().map(|w| w.message.clone()));
        }
    }
    for t in &texts {
        assert!(!t.contains("--"), "a library text names an option: {t}");
    }
}
