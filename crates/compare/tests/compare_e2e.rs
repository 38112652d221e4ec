//! `compare` end to end on a tiny real grid (synthetic data, the mlp): the table against the
//! runs' own summaries, `--jobs 2` against `--jobs 1`, interrupt and resume, an ASGD method,
//! and a changed experiment refused instead of overwriting.

use stagewise_compare::analysis::{analyse, ResultRow, RESULTS_FILE};
use stagewise_compare::runner::run_dir;
use stagewise_compare::{run_grid, Experiment, RunError, RunStatus, RunnerOptions};
use stagewise_core::record::{RunSummary, EVAL_FILE};
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "tiny"
model = "mlp"
epochs = 2
seeds = [0, 1]
eval_batch = 500

[data]
dataset = "synthetic"
train_subset = 400
test_subset = 200
val_split = 100

[[method]]
name = "qhm-stagewise"
optimizer = "qhm"
recipe = "stagewise"
lr = [0.3, 0.6]
params = { stages = 2, batch = 32 }

[[method]]
name = "sgd-cosine"
optimizer = "sgd"
recipe = "cosine"
lr = [0.05]
params = { batch = 32 }
"#;

fn experiment(text: &str) -> Experiment {
    Experiment::from_toml_str(text, Path::new(".")).unwrap()
}

fn options(jobs: usize) -> RunnerOptions {
    RunnerOptions {
        jobs,
        threads: Some(2),
        ..RunnerOptions::default()
    }
}

fn results(out: &Path) -> Vec<ResultRow> {
    csv::Reader::from_path(out.join(RESULTS_FILE))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The rows without their timing, which differs from run to run.
fn untimed(rows: Vec<ResultRow>) -> Vec<ResultRow> {
    rows.into_iter()
        .map(|r| ResultRow {
            wall_seconds: 0.0,
            ..r
        })
        .collect()
}

#[test]
fn a_tiny_grid_reports_the_numbers_of_its_runs_whatever_the_jobs_or_interruptions() {
    let exp = experiment(EXPERIMENT);
    let grid = exp.grid().unwrap();
    assert_eq!(grid.len(), 6);

    let one = tempfile::tempdir().unwrap();
    let statuses = run_grid(&grid, one.path(), &options(1)).unwrap();
    assert!(
        statuses.iter().all(|s| *s == RunStatus::Ran),
        "{statuses:?}"
    );
    let outcome = analyse(&exp, &grid, one.path()).unwrap();

    // The table holds each run's own summary.
    let rows = results(one.path());
    assert_eq!(rows, outcome.rows);
    for (spec, row) in grid.iter().zip(&rows) {
        let summary: RunSummary<serde_json::Value> =
            RunSummary::load(&run_dir(one.path(), spec)).unwrap();
        let last = summary.final_eval.as_ref().unwrap();
        assert_eq!(row.final_test_accuracy, last.accuracy);
        assert_eq!(row.final_val_accuracy, last.val_accuracy);
        assert!(row.final_val_accuracy.is_some());
        assert_eq!(row.updates, summary.updates);
        assert!(row.completed);
    }
    // The chosen lr has the best mean final validation accuracy of its method's grid.
    let stagewise = &outcome.comparison.methods[0];
    let val_mean = |lr: f64| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r.method == "qhm-stagewise" && r.lr == lr)
            .map(|r| r.final_val_accuracy.unwrap())
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let best = if val_mean(0.6) > val_mean(0.3) {
        0.6
    } else {
        0.3
    };
    assert_eq!(stagewise.chosen_lr, best);
    let chosen: Vec<f64> = rows
        .iter()
        .filter(|r| r.method == "qhm-stagewise" && r.lr == best)
        .map(|r| r.final_test_accuracy.unwrap())
        .collect();
    let mean = chosen.iter().sum::<f64>() / chosen.len() as f64;
    assert!((stagewise.final_test.mean - mean).abs() < 1e-12);

    // The report: both formats, the same table, the plots on disk.
    let md = std::fs::read_to_string(one.path().join("report.md")).unwrap();
    let html = std::fs::read_to_string(one.path().join("report.html")).unwrap();
    let acc = format!("{:.4}", stagewise.final_test.mean);
    assert!(md.contains(&acc) && html.contains(&acc), "{md}");
    assert!(md.contains("validation"));
    for stem in [
        "test_accuracy_epoch",
        "test_accuracy_time",
        "schedule_lr",
        "schedule_batch",
    ] {
        assert!(
            one.path().join(format!("plots/{stem}.png")).exists(),
            "{stem}"
        );
        assert!(
            one.path().join(format!("plots/{stem}.svg")).exists(),
            "{stem}"
        );
    }
    assert!(html.contains("data:image/png;base64,"));

    // Two at a time: the same numbers.
    let two = tempfile::tempdir().unwrap();
    run_grid(&grid, two.path(), &options(2)).unwrap();
    analyse(&exp, &grid, two.path()).unwrap();
    assert_eq!(untimed(results(two.path())), untimed(rows.clone()));

    // Interrupted after one epoch of every run, then resumed: the same numbers.
    let split = tempfile::tempdir().unwrap();
    let stop = RunnerOptions {
        stop_after_epochs: Some(1),
        ..options(1)
    };
    let stopped = run_grid(&grid, split.path(), &stop).unwrap();
    assert!(stopped.iter().all(|s| *s == RunStatus::Stopped));
    let resumed = run_grid(&grid, split.path(), &options(1)).unwrap();
    assert!(
        resumed.iter().all(|s| *s == RunStatus::Resumed),
        "{resumed:?}"
    );
    analyse(&exp, &grid, split.path()).unwrap();
    assert_eq!(untimed(results(split.path())), untimed(rows.clone()));
    // A third call finds everything finished.
    let again = run_grid(&grid, split.path(), &options(1)).unwrap();
    assert!(again.iter().all(|s| *s == RunStatus::Skipped));

    // A changed experiment never reuses or overwrites a run of another configuration.
    let changed = experiment(&EXPERIMENT.replace(
        "lr = [0.05]\nparams = { batch = 32 }",
        "lr = [0.05]\nparams = { batch = 64 }",
    ));
    let changed_grid = changed.grid().unwrap();
    let before = std::fs::read(run_dir(one.path(), &grid[4]).join(EVAL_FILE)).unwrap();
    let err = run_grid(&changed_grid, one.path(), &options(1)).unwrap_err();
    assert!(matches!(err, RunError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("sgd-cosine"), "{err}");
    let after = std::fs::read(run_dir(one.path(), &grid[4]).join(EVAL_FILE)).unwrap();
    assert_eq!(before, after);
}

#[test]
fn an_asgd_method_runs_on_the_parameter_server_and_reports_its_staleness() {
    let text = r#"
        name = "tiny-asgd"
        model = "mlp"
        epochs = 2
        seeds = [0, 1]
        [data]
        dataset = "synthetic"
        train_subset = 400
        test_subset = 200
        val_split = 100
        [[method]]
        name = "sgd"
        optimizer = "qhm"
        recipe = "constant"
        lr = [0.3, 1e6]
        params = { batch = 32 }
        [[method]]
        name = "asgd2"
        optimizer = "qhm"
        recipe = "constant"
        lr = [0.1, 0.3]
        params = { batch = 32 }
        asgd = { workers = 2, rule = "none" }
    "#;
    let exp = experiment(text);
    let grid = exp.grid().unwrap();
    let out = tempfile::tempdir().unwrap();
    run_grid(&grid, out.path(), &options(1)).unwrap();
    let outcome = analyse(&exp, &grid, out.path()).unwrap();
    // lr 1e6 diverges: recorded, scored as chance, not chosen, and the grid goes on.
    assert_eq!(
        outcome.comparison.diverged,
        vec!["sgd lr 1e6 seed 0", "sgd lr 1e6 seed 1"]
    );
    assert_eq!(outcome.comparison.methods[0].chosen_lr, 0.3);
    let diverged: Vec<bool> = outcome.rows.iter().map(|r| r.diverged).collect();
    assert_eq!(diverged[..4], [false, false, true, true]);
    assert!(outcome
        .sentences
        .iter()
        .any(|s| s.contains("2 runs diverged")));
    let asgd = &outcome.comparison.methods[1];
    assert_eq!(asgd.workers, Some(2));
    let row = outcome.rows.iter().find(|r| r.method == "asgd2").unwrap();
    assert_eq!(row.workers, Some(2));
    // One evaluation per epoch of updates, with the validation split.
    let summary: RunSummary<serde_json::Value> =
        RunSummary::load(&run_dir(out.path(), &grid[4])).unwrap();
    assert!(summary.best_val_eval.is_some());
    assert!(summary.details["histogram"].as_array().is_some());
    assert!(out.path().join("plots/staleness.png").exists());
    assert!(out.path().join("plots/asgd_accuracy_lr.svg").exists());
    // Finished ASGD runs are skipped on the next call.
    let again = run_grid(&grid, out.path(), &options(1)).unwrap();
    assert!(again.iter().all(|s| *s == RunStatus::Skipped), "{again:?}");
}
