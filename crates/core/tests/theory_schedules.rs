//! `explain` on stages with a within-stage schedule: α integrated over the stage, stability at
//! the largest α, the bound proxy through every step (docs/theory.md §2, §3.3).

use stagewise_core::schedule::{OneCycleShape, Plan, Recipe, RecipeParams, Stage, StageSchedule};
use stagewise_core::theory::{
    divergence_threshold, explain, gaussian_kl, parse_spectrum, plan_bound, plan_bound_pieces,
    plan_stages, stationary_variance, BoundOptions, CarryOver, ExplainOptions, InitialState,
    QhmParams, Spectrum, StageHyper, WarningKind,
};

const N_TRAIN: u64 = 1000;

fn opts() -> ExplainOptions {
    ExplainOptions {
        n_train: N_TRAIN,
        ..ExplainOptions::default()
    }
}

fn cosine_stage(epochs: u64, lr: f64) -> Stage {
    Stage::for_epochs(epochs, lr, 0.9, 0.7, 100)
        .with_schedule(StageSchedule::Cosine { min_factor: 0.0 })
}

/// The lr of every step of the plan laid out for `N_TRAIN`, by direct evaluation.
fn lrs(plan: &Plan) -> Vec<f64> {
    let layout = plan.layout(N_TRAIN).unwrap();
    (0..layout.total_steps())
        .map(|t| layout.hyper_at_step(t).unwrap().qhm.lr)
        .collect()
}

#[test]
fn a_cosine_stage_integrates_alpha_over_its_steps() {
    let plan = Plan::new(vec![cosine_stage(3, 0.4)]);
    let direct: f64 = lrs(&plan).iter().sum();
    let ex = explain(&plan, &opts()).unwrap();
    let s = &ex.stages[0];
    assert_eq!(s.length_steps, 30);
    assert!(
        (s.lr_times_steps - direct).abs() <= 1e-12 * direct,
        "{}",
        s.lr_times_steps
    );
    // Not the constant α·T: about half of it (the cosine's mean is ~1/2, +α/(2T) for t = 0).
    assert!((s.lr_times_steps / (0.4 * 30.0) - (0.5 + 1.0 / 60.0)).abs() < 1e-12);
    assert!((s.lr_times_epochs - direct / 10.0).abs() <= 1e-12 * direct);
    assert!((s.lr_mean - direct / 30.0).abs() < 1e-15);
    assert_eq!(s.lr_peak, 0.4);
    // α/b and the offset use the mean α (β is constant here).
    assert!((s.lr_over_batch - s.lr_mean / 100.0).abs() < 1e-15);
    assert!((s.momentum_offset - s.lr_mean * 0.7 * 9.0).abs() < 1e-12);
    // The note says how the schedule was accounted for.
    let note = ex
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::WithinStageSchedule)
        .unwrap();
    assert!(
        note.message.contains("sum of α over its 30 steps"),
        "{}",
        note.message
    );
}

#[test]
fn every_recipe_integrates_alpha_exactly() {
    let p = RecipeParams {
        batch: 100,
        epochs: 6,
        warmup_steps: Some(7),
        ..RecipeParams::default()
    };
    for recipe in Recipe::ALL {
        let plan = p.build(recipe).unwrap();
        let stages = plan_stages(&plan, N_TRAIN).unwrap();
        let layout = plan.layout(N_TRAIN).unwrap();
        for (s, span) in stages.iter().zip(layout.spans()) {
            let direct: f64 = (span.start_step..span.start_step + span.total_steps)
                .map(|t| layout.hyper_at_step(t).unwrap().qhm.lr)
                .sum();
            assert!(
                (s.lr_sum - direct).abs() <= 1e-12 * direct,
                "{recipe}: {} vs {direct}",
                s.lr_sum
            );
            // The pieces cover every step, in order, with the step's (α, β).
            let covered: u64 = s.pieces.iter().map(|p| p.length_steps).sum();
            assert_eq!(covered, span.total_steps, "{recipe}");
            let mut t = span.start_step;
            for piece in &s.pieces {
                for _ in 0..piece.length_steps {
                    let h = layout.hyper_at_step(t).unwrap();
                    assert_eq!(
                        (h.qhm.lr, h.qhm.beta),
                        (piece.lr, piece.beta),
                        "{recipe} step {t}"
                    );
                    t += 1;
                }
            }
        }
    }
}

#[test]
fn a_cosine_whose_peak_is_unstable_is_flagged_though_its_mean_is_stable() {
    // Plain SGD (β = 0) on h_max = 8/3: α_max = 2/h = 0.75. The cosine peaks at 1.0, its mean
    // is about 0.5.
    let h_max = 8.0 / 3.0;
    let lr_max = divergence_threshold(0.0, 0.0, h_max).unwrap();
    assert!((lr_max - 0.75).abs() < 1e-15);
    let stage = Stage::for_epochs(2, 1.0, 0.0, 0.0, 100)
        .with_schedule(StageSchedule::Cosine { min_factor: 0.0 });
    let o = ExplainOptions {
        h_max: Some(h_max),
        ..opts()
    };
    let ex = explain(&Plan::new(vec![stage]), &o).unwrap();
    let s = &ex.stages[0];
    assert!(
        s.lr_mean < lr_max && s.lr_peak > lr_max,
        "{} {}",
        s.lr_mean,
        s.lr_peak
    );
    assert!(!s.stable && s.stability_margin < 0.0);
    assert_eq!((s.lr_at_edge, s.edge_step), (1.0, 0));
    let u: Vec<&str> = ex
        .warnings_only()
        .filter(|w| w.kind == WarningKind::Unstable)
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(u.len(), 1);
    assert!(u[0].contains("α = 1 ≥ α_max = 0.75 at step 0"), "{}", u[0]);
    // A constant stage at the cosine's mean α is stable there: treating the schedule as its
    // mean would have missed it.
    let flat = Plan::new(vec![Stage::for_epochs(2, s.lr_mean, 0.0, 0.0, 100)]);
    assert!(explain(&flat, &o).unwrap().stages[0].stable);
    // A warm-up to the same peak is flagged at the end of the warm-up.
    let warm = Stage::for_epochs(2, 1.0, 0.0, 0.0, 100).with_schedule(StageSchedule::WarmupThen {
        start_factor: 0.0,
        warmup_steps: Some(5),
        warmup_epochs: None,
        then: Some(Box::new(StageSchedule::Cosine { min_factor: 0.0 })),
    });
    let ex = explain(&Plan::new(vec![warm]), &o).unwrap();
    assert_eq!((ex.stages[0].lr_at_edge, ex.stages[0].edge_step), (1.0, 5));
}

#[test]
fn one_cycle_stability_is_that_of_its_worst_step() {
    // The peak α comes with the lowest momentum 0.85: α_max is the one at β = 0.85.
    let stage = Stage::for_epochs(3, 0.5, 0.9, 0.7, 100)
        .with_schedule(StageSchedule::OneCycle(OneCycleShape::default()));
    let ex = explain(&Plan::new(vec![stage]), &opts()).unwrap();
    let s = &ex.stages[0];
    let worst = (0..30)
        .map(|t| {
            let (lr, beta) =
                StageSchedule::OneCycle(OneCycleShape::default()).apply(0.5, 0.9, t, 30);
            lr / divergence_threshold(beta, 0.7, 1.0).unwrap()
        })
        .fold(f64::NEG_INFINITY, f64::max);
    assert!((s.stability_margin - (1.0 - worst)).abs() < 1e-12);
    assert!((s.lr_at_edge - 0.5).abs() < 1e-12);
    assert!((s.lr_max - divergence_threshold(0.85, 0.7, 1.0).unwrap()).abs() < 1e-12);
}

#[test]
fn the_bound_follows_alpha_step_by_step() {
    let spec = "isotropic:d=10,h=1,c=1";
    let o = ExplainOptions {
        spectrum: Some(parse_spectrum(spec).unwrap()),
        ..opts()
    };
    let plan = Plan::new(vec![cosine_stage(3, 0.4)]);
    let ex = explain(&plan, &o).unwrap();
    let kl = ex.bound.as_ref().unwrap().kl;
    // By hand: the SDE relaxation of §3.3 applied at every step, from stage 1's stationary state.
    let var = |lr: f64| {
        let p = QhmParams {
            lr,
            beta: 0.9,
            nu: 0.7,
        };
        stationary_variance(&p, 1.0, 1.0 / 100.0).unwrap()
    };
    let steps = lrs(&plan);
    let mut v = var(steps[0]);
    for &lr in &steps {
        let target = var(lr);
        v = target + (-2.0 * lr).exp() * (v - target);
    }
    let want = gaussian_kl(&[v; 10], 1.0).unwrap();
    assert!((kl - want).abs() <= 1e-12 * want, "{kl} vs {want}");
    // Annealing lowers the final variance below that of the constant stage: the KL differs.
    let flat = Plan::new(vec![Stage::for_epochs(3, 0.4, 0.9, 0.7, 100)]);
    let kl_flat = explain(&flat, &o).unwrap().bound.unwrap().kl;
    assert!(v < var(0.4) && kl != kl_flat);
}

#[test]
fn bound_pieces_are_plan_bound_for_constant_stages() {
    let spec = Spectrum::from_lists(vec![0.5, 2.0, 2.0, 9.0], vec![1.0, 0.3, 0.3, 2.0]).unwrap();
    let s1 = StageHyper {
        lr: 0.1,
        beta: 0.9,
        nu: 0.7,
        batch_size: 64.0,
        length_steps: 50,
    };
    let s2 = StageHyper {
        lr: 0.05,
        beta: 18.0 / 19.0,
        batch_size: 32.0,
        length_steps: 200,
        ..s1
    };
    for carry_over in [CarryOver::Sde, CarryOver::ExactDiscrete] {
        for initial in [InitialState::Stationary, InitialState::Variance(0.3)] {
            let bo = BoundOptions {
                carry_over,
                initial,
                ..BoundOptions::default()
            };
            let pieces = plan_bound_pieces(&[vec![s1], vec![s2]], &spec, &bo).unwrap();
            let first = plan_bound(&[s1], &spec, &bo).unwrap();
            let full = plan_bound(&[s1, s2], &spec, &bo).unwrap();
            assert_eq!((pieces[0].kl, pieces[0].gap), (first.kl, first.gap));
            assert_eq!(
                (pieces[1].kl, pieces[1].gap, pieces[1].risk_inflation),
                (full.kl, full.gap, full.risk_inflation)
            );
        }
    }
    // An α = 0 piece (a warm-up from 0) does not move the variance.
    let zero = StageHyper { lr: 0.0, ..s2 };
    let bo = BoundOptions::default();
    let with = plan_bound_pieces(&[vec![s1], vec![zero, s2]], &spec, &bo).unwrap();
    let without = plan_bound_pieces(&[vec![s1], vec![s2]], &spec, &bo).unwrap();
    assert_eq!(with, without);
}
