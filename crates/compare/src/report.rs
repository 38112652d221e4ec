//! The comparison's report: tables, findings and plots, written as `report.md` and a
//! self-contained `report.html` (the same content) with the charts in `plots/`.

use crate::analysis::{AnalysisError, ResultRow};
use crate::experiment::Experiment;
use stagewise_core::schedule::fmt_num;
use stagewise_report::comparison::{Comparison, GridRun, MethodResult, Selection};
use stagewise_report::plots::{
    band_over_seeds, draw_histogram, draw_line_chart, Band, Figure, HistogramChart, LineChart,
    Series,
};
use stagewise_report::render::{Block, Report, Table};
use stagewise_report::stats::SampleSummary;
use std::path::Path;

/// A column of `train.csv`, as a number.
type TrainColumn = fn(&stagewise_core::record::TrainRow) -> Option<f64>;

fn report_error(e: impl std::fmt::Display) -> AnalysisError {
    AnalysisError::Report(e.to_string())
}

/// `mean ± std` with 4 decimals.
fn mean_std(s: &SampleSummary) -> String {
    format!("{:.4} ± {:.4}", s.mean, s.std)
}

fn interval(s: &SampleSummary) -> String {
    s.ci95
        .map_or_else(|| "-".into(), |(lo, hi)| format!("[{lo:.4}, {hi:.4}]"))
}

/// The runs of `method` at its chosen lr.
fn chosen_runs<'a>(runs: &'a [GridRun], m: &MethodResult) -> Vec<&'a GridRun> {
    runs.iter()
        .filter(|r| r.method == m.method && r.lr == m.chosen_lr)
        .collect()
}

/// One series per method: `y` of its chosen-lr runs against `x`, banded over seeds.
fn method_series(
    comparison: &Comparison,
    runs: &[GridRun],
    curve: impl Fn(&GridRun) -> Vec<(f64, f64)>,
    grid: Option<&[f64]>,
) -> Vec<Series> {
    comparison
        .methods
        .iter()
        .map(|m| {
            let curves: Vec<Vec<(f64, f64)>> =
                chosen_runs(runs, m).into_iter().map(&curve).collect();
            Series {
                name: m.method.clone(),
                points: band_over_seeds(&curves, grid),
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Evenly spaced points from 0 to `end`.
fn time_grid(end: f64, points: usize) -> Vec<f64> {
    (0..=points)
        .map(|i| end * i as f64 / points as f64)
        .collect()
}

fn line_chart(
    dir: &Path,
    stem: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: Vec<Series>,
    log_x: bool,
) -> Result<Option<Figure>, AnalysisError> {
    if series.is_empty() {
        return Ok(None);
    }
    let chart = LineChart {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        series,
        log_x,
    };
    draw_line_chart(&chart, &dir.join(stem))
        .map(Some)
        .map_err(report_error)
}

/// Draws every chart of the comparison into `dir`.
fn figures(
    comparison: &Comparison,
    runs: &[GridRun],
    dir: &Path,
) -> Result<Vec<Figure>, AnalysisError> {
    std::fs::create_dir_all(dir).map_err(report_error)?;
    let mut figures = Vec::new();
    let evals_by = |x: fn(&stagewise_core::record::EvalRow) -> Option<f64>,
                    y: fn(&stagewise_core::record::EvalRow) -> Option<f64>| {
        move |r: &GridRun| -> Vec<(f64, f64)> {
            r.record
                .evals
                .iter()
                .filter_map(|e| Some((x(e)?, y(e)?)))
                .collect()
        }
    };
    let epoch = |e: &stagewise_core::record::EvalRow| e.epoch;
    let elapsed = |e: &stagewise_core::record::EvalRow| Some(e.elapsed_s);
    let test_acc = |e: &stagewise_core::record::EvalRow| e.accuracy;
    let val_acc = |e: &stagewise_core::record::EvalRow| e.val_accuracy;
    let charts: [(&str, &str, &str, Vec<Series>); 2] = [
        (
            "test_accuracy_epoch",
            "Test accuracy against epoch (chosen lr; line: mean over seeds, band: min to max)",
            "epoch",
            method_series(comparison, runs, evals_by(epoch, test_acc), None),
        ),
        (
            "val_accuracy_epoch",
            "Validation accuracy against epoch (chosen lr)",
            "epoch",
            method_series(comparison, runs, evals_by(epoch, val_acc), None),
        ),
    ];
    for (stem, title, x, series) in charts {
        figures.extend(line_chart(dir, stem, title, x, "accuracy", series, false)?);
    }
    let longest = runs
        .iter()
        .map(|r| r.record.summary.wall_seconds)
        .fold(0.0, f64::max);
    let grid = time_grid(longest, 60);
    figures.extend(line_chart(
        dir,
        "test_accuracy_time",
        "Test accuracy against wall time (chosen lr)",
        "seconds",
        "accuracy",
        method_series(comparison, runs, evals_by(elapsed, test_acc), Some(&grid)),
        false,
    )?);
    let train_curve = |y: fn(&stagewise_core::record::TrainRow) -> Option<f64>| {
        move |r: &GridRun| -> Vec<(f64, f64)> {
            r.record
                .train
                .iter()
                .filter_map(|t| Some((t.epoch?, y(t)?)))
                .collect()
        }
    };
    let schedules: [(&str, &str, &str, TrainColumn); 5] = [
        (
            "train_loss_epoch",
            "Training loss against epoch (chosen lr)",
            "loss",
            |t| t.loss,
        ),
        (
            "schedule_lr",
            "Scheduled α (lr) at each logged point (chosen lr)",
            "α",
            |t| Some(t.lr),
        ),
        ("schedule_momentum", "Scheduled β (momentum)", "β", |t| {
            t.momentum
        }),
        ("schedule_nu", "Scheduled ν", "ν", |t| t.nu),
        ("schedule_batch", "Batch size", "batch size", |t| {
            t.batch_size.map(|b| b as f64)
        }),
    ];
    for (stem, title, y, field) in schedules {
        let series = method_series(comparison, runs, train_curve(field), None);
        figures.extend(line_chart(dir, stem, title, "epoch", y, series, false)?);
    }
    // Asynchronous methods: staleness, and test accuracy against lr for each M.
    let asgd: Vec<&MethodResult> = comparison
        .methods
        .iter()
        .filter(|m| m.workers.is_some())
        .collect();
    let histograms: Vec<(String, Vec<u64>)> = asgd
        .iter()
        .filter_map(|m| {
            let mut total: Vec<u64> = Vec::new();
            for r in chosen_runs(runs, m) {
                let h = r.record.staleness_histogram()?;
                if total.len() < h.len() {
                    total.resize(h.len(), 0);
                }
                for (t, n) in total.iter_mut().zip(h) {
                    *t += n;
                }
            }
            (!total.is_empty()).then(|| (m.method.clone(), total))
        })
        .collect();
    if !histograms.is_empty() {
        let chart = HistogramChart {
            title: "Staleness of the applied gradients (chosen lr, all seeds)".into(),
            x_label: "staleness τ (last bucket: at least)".into(),
            y_label: "pushes".into(),
            series: histograms,
        };
        figures.push(draw_histogram(&chart, &dir.join("staleness")).map_err(report_error)?);
    }
    let lr_series: Vec<Series> = asgd
        .iter()
        .map(|m| Series {
            name: format!("{} (M = {})", m.method, m.workers.unwrap_or(0)),
            points: m
                .lr_grid
                .iter()
                .map(|p| Band {
                    x: p.lr,
                    mean: p.test.mean,
                    lo: p.test.mean - p.test.std,
                    hi: p.test.mean + p.test.std,
                })
                .collect(),
        })
        .collect();
    figures.extend(line_chart(
        dir,
        "asgd_accuracy_lr",
        "ASGD: final test accuracy against α0 for each worker count M (band: ± std over seeds)",
        "α0",
        "accuracy",
        lr_series,
        true,
    )?);
    Ok(figures)
}

/// Builds the report and writes `report.md`, `report.html` and `plots/` into `out`.
pub fn write_report(
    exp: &Experiment,
    comparison: &Comparison,
    runs: &[GridRun],
    rows: &[ResultRow],
    out: &Path,
) -> Result<(), AnalysisError> {
    let mut report = Report::new(exp.name.clone());
    let data = exp.data.config();
    let selection = match comparison.selection {
        Selection::Validation => format!(
            "Each method's learning rate was chosen on the mean final accuracy on {} validation \
             images held out of the training set (the same for every method and seed); the test \
             set was not looked at to choose it.",
            exp.data.val_split.unwrap_or(0)
        ),
        Selection::Test => "No validation split was held out, so each method's learning rate \
             was chosen on test accuracy: the test accuracies below are optimistic."
            .to_string(),
    };
    report.push(Block::Paragraph(format!(
        "{} methods, {} runs: every method trained the {} model for {} epochs with seeds {:?} on \
         {}. {selection}",
        comparison.methods.len(),
        rows.len(),
        exp.model,
        exp.epochs,
        exp.seeds,
        data.describe().unwrap_or_else(|_| data.dataset.to_string()),
    )));
    report.push(Block::Heading(2, "Results".into()));
    let mut table = Table {
        header: [
            "method",
            "workers",
            "chosen lr",
            "final test accuracy",
            "95% interval",
            "best-epoch test accuracy",
            "steps",
            "wall time (s)",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for m in &comparison.methods {
        table.rows.push(vec![
            m.method.clone(),
            m.workers.map_or_else(|| "-".into(), |w| w.to_string()),
            fmt_num(m.chosen_lr),
            mean_std(&m.final_test),
            interval(&m.final_test),
            mean_std(&m.best_epoch_test),
            format!("{:.0}", m.steps.mean),
            format!("{:.0}", m.wall_seconds.mean),
        ]);
    }
    report.push(Block::Table(table));
    report.push(Block::Paragraph(
        "Final test accuracy: mean ± standard deviation over seeds, with the 95% Student-t \
         interval of the mean. Best-epoch: the test accuracy at the evaluation with the best \
         validation accuracy. Differences from the best method are tested paired by seed \
         (paired t; Wilcoxon signed-rank below 6 seeds), Holm-corrected."
            .into(),
    ));
    report.push(Block::Heading(2, "Findings".into()));
    report.push(Block::List(comparison.sentences()));
    report.push(Block::Heading(2, "At equal wall time".into()));
    report.push(Block::Paragraph(format!(
        "Test accuracy of each method at {:.0} s, when the fastest method (by mean wall time) \
         had finished: the last evaluation before that moment, averaged over seeds.",
        comparison.equal_time.budget_seconds
    )));
    report.push(Block::Table(Table {
        header: vec!["method".into(), "test accuracy at equal time".into()],
        rows: comparison
            .equal_time
            .ranking
            .iter()
            .map(|(m, s)| {
                vec![
                    m.clone(),
                    s.as_ref()
                        .map_or_else(|| "no evaluation yet".into(), mean_std),
                ]
            })
            .collect(),
    }));
    report.push(Block::Heading(2, "Learning-rate grids".into()));
    let mut grid = Table {
        header: [
            "method",
            "lr",
            "validation accuracy",
            "test accuracy",
            "seeds",
            "chosen",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for m in &comparison.methods {
        for p in &m.lr_grid {
            grid.rows.push(vec![
                m.method.clone(),
                fmt_num(p.lr),
                p.val.as_ref().map_or_else(|| "-".into(), mean_std),
                mean_std(&p.test),
                p.seeds.len().to_string(),
                if p.lr == m.chosen_lr { "yes" } else { "" }.into(),
            ]);
        }
    }
    report.push(Block::Table(grid));
    report.push(Block::Heading(2, "Plots".into()));
    for figure in figures(comparison, runs, &out.join("plots"))? {
        report.push(Block::Figure(figure));
    }
    report.push(Block::Paragraph(
        "Every run's own folder is under runs/ (train.csv, eval.csv, summary.json); \
         results.csv has one row per run and summary.json the numbers of this report."
            .into(),
    ));
    report.write(out).map_err(report_error)?;
    Ok(())
}
