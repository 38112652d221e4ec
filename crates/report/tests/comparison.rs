//! `compare` on run folders written with `RunSummary::save` and `write_rows` and read back
//! with `RunRecord::load`, checked against numbers worked out by hand from the runs.

use stagewise_core::record::{write_rows, EvalRow, RunKind, RunSummary, EVAL_FILE};
use stagewise_report::comparison::{compare, ComparisonError, GridRun, Selection};
use stagewise_report::runs::RunRecord;
use stagewise_report::stats::{self, PairedTest};
use std::path::Path;

/// An evaluation at `elapsed_s` with test accuracy `test` and validation accuracy `val`.
fn eval(elapsed_s: f64, test: f64, val: Option<f64>) -> EvalRow {
    EvalRow {
        update: (elapsed_s * 10.0) as u64,
        epoch: None,
        elapsed_s,
        loss: 1.0 - test,
        accuracy: Some(test),
        examples: 1000,
        val_loss: val.map(|v| 1.0 - v),
        val_accuracy: val,
    }
}

struct Run<'a> {
    method: &'a str,
    lr: f64,
    seed: u64,
    evals: Vec<EvalRow>,
    updates: u64,
    wall: f64,
}

/// A run whose last evaluation is its final one, with `updates` 100 and the wall time of its
/// last evaluation.
fn run(method: &str, lr: f64, seed: u64, evals: Vec<EvalRow>) -> Run<'_> {
    let wall = evals.last().map_or(0.0, |e| e.elapsed_s);
    Run {
        method,
        lr,
        seed,
        evals,
        updates: 100,
        wall,
    }
}

/// Writes the run's folder under `root` and loads it back.
fn write(root: &Path, r: Run<'_>) -> GridRun {
    let dir = root.join(format!("{}-lr{}-seed{}", r.method, r.lr, r.seed));
    std::fs::create_dir_all(&dir).unwrap();
    let mut summary = RunSummary::new(RunKind::Train, "mlp", r.method, serde_json::json!({}))
        .with_evals(&r.evals);
    summary.updates = r.updates;
    summary.wall_seconds = r.wall;
    summary.completed = true;
    summary.save(&dir).unwrap();
    write_rows(&dir.join(EVAL_FILE), &r.evals).unwrap();
    GridRun {
        method: r.method.to_string(),
        lr: r.lr,
        seed: r.seed,
        workers: None,
        record: RunRecord::load(&dir).unwrap(),
    }
}

fn grid(root: &Path, runs: Vec<Run<'_>>) -> Vec<GridRun> {
    runs.into_iter().map(|r| write(root, r)).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

/// Method "qhm" at two lrs and three seeds: lr 0.1 has the better test accuracy, lr 0.3 the
/// better validation accuracy. `val` false drops the validation accuracy of one run.
fn disagreeing_grid(root: &Path, val: bool) -> Vec<GridRun> {
    let mut runs = Vec::new();
    for seed in 0..3u64 {
        let s = seed as f64 * 0.01;
        let lr01 = vec![
            eval(5.0, 0.90 + s, Some(0.70 + s)),
            eval(10.0, 0.95 + s, Some(0.80 + s)),
        ];
        let mut lr03 = vec![
            eval(5.0, 0.80 + s, Some(0.85 + s)),
            eval(10.0, 0.85 + s, Some(0.90 + s)),
        ];
        if !val && seed == 1 {
            for e in &mut lr03 {
                e.val_accuracy = None;
                e.val_loss = None;
            }
        }
        runs.push(run("qhm", 0.1, seed, lr01));
        runs.push(run("qhm", 0.3, seed, lr03));
    }
    grid(root, runs)
}

#[test]
fn the_lr_is_chosen_on_validation_accuracy_not_test_accuracy() {
    let root = tempfile::tempdir().unwrap();
    let c = compare(&disagreeing_grid(root.path(), true)).unwrap();
    assert_eq!(c.selection, Selection::Validation);
    let m = &c.methods[0];
    assert_eq!(m.chosen_lr, 0.3);
    let lrs: Vec<f64> = m.lr_grid.iter().map(|p| p.lr).collect();
    assert_eq!(lrs, vec![0.1, 0.3]);
    assert!(close(m.lr_grid[0].val.unwrap().mean, 0.81));
    assert!(close(m.lr_grid[1].val.unwrap().mean, 0.91));
    assert!(close(m.lr_grid[0].test.mean, 0.96));
    assert!(close(m.lr_grid[1].test.mean, 0.86));
    assert_eq!(m.lr_grid[1].seeds, vec![0, 1, 2]);
    // At the chosen lr: final test 0.85, 0.86, 0.87; best validation at the last evaluation.
    assert!(close(m.final_test.mean, 0.86));
    assert!(close(m.best_epoch_test.mean, 0.86));
    let sentences = c.sentences();
    assert!(
        sentences[0].contains("chosen on validation accuracy; test accuracy was not looked at"),
        "{sentences:?}"
    );
}

#[test]
fn without_validation_in_every_run_the_lr_is_chosen_on_test_accuracy() {
    let root = tempfile::tempdir().unwrap();
    let c = compare(&disagreeing_grid(root.path(), false)).unwrap();
    assert_eq!(c.selection, Selection::Test);
    let m = &c.methods[0];
    assert_eq!(m.chosen_lr, 0.1);
    assert!(m.lr_grid.iter().all(|p| p.val.is_none()), "never mixed");
    assert!(close(m.final_test.mean, 0.96));
    // best_eval (the most accurate on test) is the last evaluation here.
    assert!(close(m.best_epoch_test.mean, 0.96));
    assert!(
        c.sentences()[0].contains("optimistic"),
        "{:?}",
        c.sentences()
    );
}

#[test]
fn ties_in_the_selection_go_to_the_smaller_lr() {
    let root = tempfile::tempdir().unwrap();
    let runs = grid(
        root.path(),
        [0.01, 0.1]
            .into_iter()
            .flat_map(|lr| {
                (0..2).map(move |seed| {
                    let test = if lr == 0.1 { 0.9 } else { 0.8 };
                    run("sgd", lr, seed, vec![eval(1.0, test, Some(0.75))])
                })
            })
            .collect(),
    );
    let c = compare(&runs).unwrap();
    assert_eq!(c.methods[0].chosen_lr, 0.01);
    assert!(
        c.sentences().iter().any(|s| s
            == "sgd's chosen lr 0.01 is the smallest of its grid: the best lr may lie outside it."),
        "{:?}",
        c.sentences()
    );
}

#[test]
fn the_table_holds_the_numbers_of_the_runs_summaries() {
    let root = tempfile::tempdir().unwrap();
    // Per seed: final test accuracy, the test accuracy where validation peaked, updates, wall.
    let qhm = [
        (0.90, 0.91, 1000, 100.0),
        (0.92, 0.90, 1010, 110.0),
        (0.91, 0.93, 990, 90.0),
        (0.93, 0.92, 1000, 120.0),
    ];
    let mut runs = Vec::new();
    for (seed, &(fin, at_best_val, updates, wall)) in qhm.iter().enumerate() {
        let evals = vec![
            eval(wall / 3.0, 0.5, Some(0.6)),
            eval(wall / 2.0, at_best_val, Some(0.95)),
            eval(wall, fin, Some(0.94)),
        ];
        runs.push(Run {
            updates,
            wall,
            ..run("qhm", 0.05, seed as u64, evals)
        });
        // A worse lr, to be sure the table reports the chosen one.
        runs.push(run(
            "qhm",
            0.5,
            seed as u64,
            vec![eval(wall, 0.3, Some(0.3))],
        ));
    }
    let c = compare(&grid(root.path(), runs)).unwrap();
    let m = &c.methods[0];
    assert_eq!(
        (m.method.as_str(), m.workers, m.chosen_lr),
        ("qhm", None, 0.05)
    );
    assert_eq!(m.per_seed, vec![(0, 0.90), (1, 0.92), (2, 0.91), (3, 0.93)]);
    // Mean 0.915; squared deviations 0.015², 0.005², 0.005², 0.015² sum to 0.0005.
    let sd = (0.0005f64 / 3.0).sqrt();
    assert_eq!(m.final_test.n, 4);
    assert!(close(m.final_test.mean, 0.915));
    assert!(close(m.final_test.std, sd));
    // t(0.975, 3) = 3.182446305284263 (scipy.stats.t.ppf).
    let half = 3.182446305284263 * sd / 2.0;
    let (lo, hi) = m.final_test.ci95.unwrap();
    assert!(
        close(lo, 0.915 - half) && close(hi, 0.915 + half),
        "{lo} {hi}"
    );
    assert!(close(m.best_epoch_test.mean, 0.915));
    assert!(close(m.best_epoch_test.std, (0.0005f64 / 3.0).sqrt()));
    assert!(close(m.steps.mean, 1000.0));
    assert!(close(m.steps.std, (200.0f64 / 3.0).sqrt()));
    assert!(close(m.wall_seconds.mean, 105.0));
    assert!(close(m.lr_grid[1].test.mean, 0.3));
    assert_eq!(c.best, 0);
    assert!(c.significance.is_empty(), "one method: nothing to test");
    let s = c.sentences();
    assert!(
        s[1] == "qhm (0.9150 ± 0.0129) is the best (final test accuracy, mean ± sd over 4 \
                 seeds, at lr 0.05).",
        "{s:?}"
    );
}

/// Six seeds: the best method "a" and two slightly worse ones whose raw paired-t p-values
/// (0.0321, 0.0455, scipy.stats.ttest_rel) are below 0.05 but whose Holm-adjusted ones
/// (0.0642 both, statsmodels) are not.
#[test]
fn holm_is_applied_across_the_comparisons_against_the_best() {
    let root = tempfile::tempdir().unwrap();
    let a = [0.910, 0.905, 0.920, 0.915, 0.900, 0.912];
    let b = [0.9, 0.903, 0.914, 0.916, 0.892, 0.908];
    let d = [0.898, 0.907, 0.911, 0.914, 0.894, 0.904];
    let mut runs = Vec::new();
    for (name, accs) in [("b", &b), ("a", &a), ("d", &d)] {
        for (seed, &acc) in accs.iter().enumerate() {
            runs.push(run(
                name,
                0.1,
                seed as u64,
                vec![eval(10.0, acc, Some(acc))],
            ));
        }
    }
    let c = compare(&grid(root.path(), runs)).unwrap();
    let names: Vec<&str> = c.methods.iter().map(|m| m.method.as_str()).collect();
    assert_eq!(names, vec!["b", "a", "d"], "input order");
    assert_eq!(c.best, 1);
    assert_eq!(c.significance.len(), 2);
    let raw = [0.032088848788258705, 0.04550832787477765];
    for (s, (other, p)) in c.significance.iter().zip([(&b, raw[0]), (&d, raw[1])]) {
        assert_eq!(s.against, "a");
        assert_eq!((s.test, s.n_pairs), (PairedTest::PairedT, 6));
        assert_eq!(s.p_value, stats::paired_t(other, &a).unwrap().p_value);
        assert!((s.p_value - p).abs() < 1e-12, "{} vs scipy {p}", s.p_value);
        assert!(
            (s.p_holm - 0.06417769757651741).abs() < 1e-12,
            "{}",
            s.p_holm
        );
        assert!(s.p_value < 0.05 && !s.significant);
    }
    assert!((c.significance[0].mean_difference + 0.004833333333333338).abs() < 1e-12);
    assert!((c.significance[1].mean_difference + 0.005666666666666671).abs() < 1e-12);
    let s = c.sentences();
    assert!(
        s.contains(
            &"b (0.9055 ± 0.0090) is 0.0048 lower, not significant (paired t, n = 6, \
              Holm-adjusted p = 0.064)."
                .to_string()
        ),
        "{s:?}"
    );
}

#[test]
fn below_six_seeds_the_test_is_wilcoxon_and_the_sentence_gives_its_floor() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, accs) in [("qhm", [0.91, 0.92, 0.93]), ("sgd", [0.90, 0.905, 0.91])] {
        for (seed, acc) in accs.into_iter().enumerate() {
            runs.push(run(
                name,
                0.1,
                seed as u64 + 7,
                vec![eval(10.0, acc, Some(acc))],
            ));
        }
    }
    let c = compare(&grid(root.path(), runs)).unwrap();
    let s = &c.significance[0];
    assert_eq!(
        (s.method.as_str(), s.test, s.n_pairs),
        ("sgd", PairedTest::Wilcoxon, 3)
    );
    // Differences −0.01, −0.015, −0.02: all negative, the exact p is 2/2³.
    assert_eq!((s.p_value, s.p_holm, s.significant), (0.25, 0.25, false));
    assert!((s.mean_difference + 0.015).abs() < 1e-12);
    let text = c.sentences().join(" ");
    assert!(
        text.contains(
            "sgd (0.9050 ± 0.0050) is 0.0150 lower, not significant (Wilcoxon signed-rank, \
             n = 3, Holm-adjusted p = 0.25; with 3 seeds the smallest possible p is 0.25)."
        ),
        "{text}"
    );
}

#[test]
fn one_seed_gives_no_test_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let runs = grid(
        root.path(),
        vec![
            run("qhm", 0.1, 0, vec![eval(10.0, 0.9, None)]),
            run("sgd", 0.1, 0, vec![eval(10.0, 0.8, None)]),
        ],
    );
    let c = compare(&runs).unwrap();
    assert_eq!(c.methods[0].final_test.ci95, None);
    assert!(c.significance.is_empty());
    assert!(
        c.sentences().iter().any(|s| s
            .contains("sgd (0.8000 ± 0.0000) is 0.1000 lower than qhm; with fewer than 2 seeds")),
        "{:?}",
        c.sentences()
    );
}

#[test]
fn equal_time_takes_each_seeds_last_evaluation_within_the_fastest_mean_wall_time() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for seed in 0..2u64 {
        let s = seed as f64 * 0.01;
        // fast: wall 9 and 11, mean 10 = the budget.
        let fast_wall = 9.0 + 2.0 * seed as f64;
        runs.push(run(
            "fast",
            0.1,
            seed,
            vec![
                eval(fast_wall / 2.0, 0.70 + s, Some(0.7)),
                eval(fast_wall, 0.80 + s, Some(0.8)),
            ],
        ));
        // slow: the best at the end, 0.60 + s at exactly 10 s.
        runs.push(run(
            "slow",
            0.1,
            seed,
            vec![
                eval(5.0, 0.50 + s, Some(0.5)),
                eval(10.0, 0.60 + s, Some(0.6)),
                eval(30.0, 0.95 + s, Some(0.95)),
            ],
        ));
        // late: no evaluation by 10 s in seed 1.
        let first = if seed == 1 { 12.0 } else { 8.0 };
        runs.push(run(
            "late",
            0.1,
            seed,
            vec![eval(first, 0.85, Some(0.85)), eval(40.0, 0.9, Some(0.9))],
        ));
        // steady: 0.75 by 10 s in both seeds.
        runs.push(run(
            "steady",
            0.1,
            seed,
            vec![eval(7.0, 0.75, Some(0.75)), eval(20.0, 0.76, Some(0.76))],
        ));
    }
    let c = compare(&grid(root.path(), runs)).unwrap();
    assert_eq!(c.methods[c.best].method, "slow");
    let e = &c.equal_time;
    assert_eq!(e.budget_seconds, 10.0);
    let order: Vec<&str> = e.ranking.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(order, vec!["fast", "steady", "slow", "late"]);
    // fast: seed 0 ends at 9 s (0.80), seed 1's last evaluation within 10 s is at 5.5 s (0.71).
    let fast = e.ranking[0].1.unwrap();
    assert!(close(fast.mean, 0.755), "{fast:?}");
    let slow = e.ranking[2].1.unwrap();
    assert!(close(slow.mean, 0.605), "{slow:?}");
    assert!(close(e.ranking[1].1.unwrap().mean, 0.75));
    assert_eq!(e.ranking[3].1, None);
    let text = c.sentences().join(" ");
    assert!(
        text.contains("At equal wall time (10.0 s, the smallest mean wall time of a method)"),
        "{text}"
    );
    assert!(
        text.contains("late (no evaluation within the budget in every seed)"),
        "{text}"
    );
}

#[test]
fn the_comparison_serializes_as_summary_json() {
    let root = tempfile::tempdir().unwrap();
    let c = compare(&disagreeing_grid(root.path(), true)).unwrap();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["selection"], "validation");
    assert_eq!(json["methods"][0]["chosen_lr"], 0.3);
    assert_eq!(json["methods"][0]["per_seed"][1][0], 1);
    assert!(json["methods"][0]["final_test"]["ci95"].is_array());
    let back: stagewise_report::comparison::Comparison = serde_json::from_value(json).unwrap();
    assert_eq!(back, c);
}

#[test]
fn an_empty_grid_is_an_error() {
    assert_eq!(compare(&[]).unwrap_err(), ComparisonError::EmptyGrid);
    assert_eq!(
        ComparisonError::EmptyGrid.to_string(),
        "the grid has no runs"
    );
}

#[test]
fn missing_grid_points_are_named() {
    let root = tempfile::tempdir().unwrap();
    let runs = grid(
        root.path(),
        vec![
            run("qhm", 0.1, 0, vec![eval(1.0, 0.9, None)]),
            run("qhm", 0.1, 1, vec![eval(1.0, 0.9, None)]),
            run("qhm", 0.3, 0, vec![eval(1.0, 0.9, None)]),
            // sgd never ran seed 1, the grid's other seed.
            run("sgd", 0.1, 0, vec![eval(1.0, 0.9, None)]),
        ],
    );
    let err = compare(&runs).unwrap_err();
    assert_eq!(err.to_string(), "method qhm: no run for lr 0.3 seed 1");
    let err = compare(&[runs[0].clone(), runs[1].clone(), runs[3].clone()]).unwrap_err();
    assert_eq!(err.to_string(), "method sgd: no run for lr 0.1 seed 1");
}

#[test]
fn duplicate_runs_mixed_workers_and_bad_lrs_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let runs = grid(
        root.path(),
        vec![
            run("qhm", 0.1, 0, vec![eval(1.0, 0.9, None)]),
            run("qhm", 0.2, 0, vec![eval(1.0, 0.9, None)]),
        ],
    );
    let mut duplicate = runs[1].clone();
    duplicate.lr = 0.1;
    let err = compare(&[runs[0].clone(), duplicate]).unwrap_err();
    assert!(matches!(err, ComparisonError::DuplicateRun { .. }), "{err}");
    assert!(
        err.to_string().contains("run qhm lr 0.1 seed 0")
            && err.to_string().contains("same method, lr and seed"),
        "{err}"
    );
    let mut asgd = runs.clone();
    asgd[1].workers = Some(4);
    let err = compare(&asgd).unwrap_err();
    assert_eq!(
        err.to_string(),
        "method qhm: runs with different worker counts (None and Some(4)); name them as \
         different methods"
    );
    let mut nan = runs.clone();
    nan[0].lr = f64::NAN;
    let err = compare(&nan).unwrap_err();
    assert!(
        err.to_string().contains("the lr is not a finite number"),
        "{err}"
    );
}

#[test]
fn runs_without_evaluations_or_accuracy_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let runs = grid(
        root.path(),
        vec![
            run("qhm", 0.1, 0, vec![eval(1.0, 0.9, None)]),
            run("qhm", 0.1, 1, vec![]),
        ],
    );
    let err = compare(&runs).unwrap_err();
    assert!(
        matches!(err, ComparisonError::NoEvaluations { .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("run qhm lr 0.1 seed 1 (")
            && err.to_string().ends_with(
                "the run has no evaluations (eval.csv is empty or summary.json has no final_eval)"
            ),
        "{err}"
    );
    let mut no_accuracy = eval(1.0, 0.9, None);
    no_accuracy.accuracy = None;
    let runs = grid(root.path(), vec![run("lm", 0.1, 0, vec![no_accuracy])]);
    let err = compare(&runs).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("summary.json final_eval has no test accuracy"),
        "{err}"
    );
}

#[test]
fn non_finite_numbers_in_a_summary_are_errors_not_nan() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = grid(
        root.path(),
        vec![run("qhm", 0.1, 0, vec![eval(1.0, 0.9, None)])],
    );
    // JSON cannot hold an infinity: a caller's own record can.
    runs[0].record.summary.wall_seconds = f64::INFINITY;
    let err = compare(&runs).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("method qhm, lr 0.1 wall seconds: values[0] is "),
        "{err}"
    );
}
