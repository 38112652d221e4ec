//! `stagewise report RUN_DIR…` as a library function: charts and a summary table for one or
//! more finished runs of any kind (`train`, `asgd`, `ps-serve`).
//!
//! ```
//! use stagewise_core::record::{write_rows, EvalRow, RunKind, RunSummary, EVAL_FILE};
//! use stagewise_report::{runs::RunRecord, runs_report::report_runs};
//! let root = tempfile::tempdir().unwrap();
//! let dir = root.path().join("cnn-qhm");
//! let evals = vec![EvalRow { update: 10, epoch: Some(1.0), elapsed_s: 3.0, loss: 0.5,
//!     accuracy: Some(0.8), examples: 100, val_loss: None, val_accuracy: None }];
//! RunSummary::new(RunKind::Train, "cnn", "qhm", serde_json::json!({}))
//!     .with_evals(&evals)
//!     .save(&dir)
//!     .unwrap();
//! write_rows(&dir.join(EVAL_FILE), &evals).unwrap();
//! let run = RunRecord::load(&dir).unwrap();
//! let out = root.path().join("report");
//! let report = report_runs(&[run], &out).unwrap();
//! let (md, _html) = report.write(&out).unwrap();
//! assert!(std::fs::read_to_string(md).unwrap().contains("test_accuracy_epoch.png"));
//! ```

use crate::plots::{draw_histogram, draw_line_chart, HistogramChart, LineChart, PlotError, Series};
use crate::render::{Block, Report, Table};
use crate::runs::RunRecord;
use stagewise_core::record::{EvalRow, RunKind, TrainRow};
use std::path::{Component, Path, PathBuf};

/// Why a report on runs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunsReportError {
    /// The list of runs was empty.
    #[error("no run to report on: give at least one run folder")]
    NoRuns,
    /// A chart could not be drawn or written.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The output folder could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Draws the charts of `runs` into `out` (created) and returns the report that shows them; the
/// caller writes it with [`Report::write`] (into `out`, or anywhere: figure links are made
/// relative to the folder it is written to).
///
/// Charts, one series per run labelled by [`run_labels`]: test accuracy against epoch and
/// against wall time, validation accuracy against epoch, training loss against epoch, the
/// scheduled α (`lr`), β (`momentum`), ν and batch size against epoch (from `train.csv`), and
/// the staleness histogram of parameter-server runs. A chart no run has data for is not drawn;
/// the report lists which. A summary table comes first.
pub fn report_runs(runs: &[RunRecord], out: &Path) -> Result<Report, RunsReportError> {
    if runs.is_empty() {
        return Err(RunsReportError::NoRuns);
    }
    std::fs::create_dir_all(out).map_err(|source| RunsReportError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let labels = run_labels(runs);
    let title = match labels.as_slice() {
        [one] => format!("Run report: {one}"),
        _ => "Run report".to_string(),
    };
    let mut report = Report::new(title);
    report.push(Block::List(
        runs.iter()
            .zip(&labels)
            .map(|(r, l)| format!("{l}: {}", r.dir.display()))
            .collect(),
    ));
    report.push(Block::Heading(2, "Summary".into()));
    report.push(Block::Table(summary_table(runs, &labels)));

    let mut skipped = Vec::new();
    let mut section = |report: &mut Report, heading: &str, charts: Vec<CurveChart>| {
        let mut figures = Vec::new();
        for c in charts {
            let series: Vec<Series> = runs
                .iter()
                .zip(&labels)
                .map(|(r, l)| Series::line(l.clone(), (c.points)(r)))
                .collect();
            if series.iter().all(|s| s.points.is_empty()) {
                skipped.push(c.title.to_string());
                continue;
            }
            let chart = LineChart {
                title: c.title.to_string(),
                x_label: c.x_label.to_string(),
                y_label: c.y_label.to_string(),
                series,
                log_x: false,
            };
            figures.push(draw_line_chart(&chart, &out.join(c.stem)));
        }
        let figures = figures.into_iter().collect::<Result<Vec<_>, _>>()?;
        if !figures.is_empty() {
            report.push(Block::Heading(2, heading.into()));
            report.blocks.extend(figures.into_iter().map(Block::Figure));
        }
        Ok::<(), RunsReportError>(())
    };
    section(&mut report, "Evaluation", evaluation_charts())?;
    section(&mut report, "Training", training_charts())?;
    section(&mut report, "Schedules", schedule_charts())?;

    let histograms: Vec<(String, Vec<u64>)> = runs
        .iter()
        .zip(&labels)
        .filter_map(|(r, l)| r.staleness_histogram().map(|h| (l.clone(), h)))
        .collect();
    if histograms.is_empty() {
        skipped.push(STALENESS_TITLE.to_string());
    } else {
        let chart = HistogramChart {
            title: STALENESS_TITLE.into(),
            x_label: "staleness τ (the last bucket: at least that stale)".into(),
            y_label: "gradients applied".into(),
            series: histograms,
        };
        let figure = draw_histogram(&chart, &out.join("staleness"))?;
        report.push(Block::Heading(2, "Staleness".into()));
        report.push(Block::Figure(figure));
    }
    if !skipped.is_empty() {
        report.push(Block::Paragraph(format!(
            "Not drawn, as no run has the data: {}.",
            skipped.join(", ")
        )));
    }
    Ok(report)
}

const STALENESS_TITLE: &str = "Staleness of applied gradients";

/// A chart of one curve per run.
struct CurveChart {
    stem: &'static str,
    title: &'static str,
    x_label: &'static str,
    y_label: &'static str,
    points: fn(&RunRecord) -> Vec<(f64, f64)>,
}

fn eval_points(r: &RunRecord, f: impl Fn(&EvalRow) -> Option<(f64, f64)>) -> Vec<(f64, f64)> {
    r.evals.iter().filter_map(f).collect()
}

fn train_points(r: &RunRecord, f: impl Fn(&TrainRow) -> Option<f64>) -> Vec<(f64, f64)> {
    r.train
        .iter()
        .filter_map(|t| Some((t.epoch?, f(t)?)))
        .collect()
}

fn evaluation_charts() -> Vec<CurveChart> {
    vec![
        CurveChart {
            stem: "test_accuracy_epoch",
            title: "Test accuracy against epoch",
            x_label: "epoch",
            y_label: "test accuracy",
            points: |r| eval_points(r, |e| Some((e.epoch?, e.accuracy?))),
        },
        CurveChart {
            stem: "test_accuracy_time",
            title: "Test accuracy against wall time",
            x_label: "wall time (s)",
            y_label: "test accuracy",
            points: |r| eval_points(r, |e| Some((e.elapsed_s, e.accuracy?))),
        },
        CurveChart {
            stem: "val_accuracy_epoch",
            title: "Validation accuracy against epoch",
            x_label: "epoch",
            y_label: "validation accuracy",
            points: |r| eval_points(r, |e| Some((e.epoch?, e.val_accuracy?))),
        },
    ]
}

fn training_charts() -> Vec<CurveChart> {
    vec![CurveChart {
        stem: "train_loss_epoch",
        title: "Training loss against epoch",
        x_label: "epoch",
        y_label: "training loss",
        points: |r| train_points(r, |t| t.loss),
    }]
}

fn schedule_charts() -> Vec<CurveChart> {
    vec![
        CurveChart {
            stem: "lr_epoch",
            title: "Learning rate α against epoch",
            x_label: "epoch",
            y_label: "α (lr)",
            points: |r| train_points(r, |t| Some(t.lr)),
        },
        CurveChart {
            stem: "momentum_epoch",
            title: "Momentum β against epoch",
            x_label: "epoch",
            y_label: "β (momentum)",
            points: |r| train_points(r, |t| t.momentum),
        },
        CurveChart {
            stem: "nu_epoch",
            title: "ν against epoch",
            x_label: "epoch",
            y_label: "ν",
            points: |r| train_points(r, |t| t.nu),
        },
        CurveChart {
            stem: "batch_size_epoch",
            title: "Batch size against epoch",
            x_label: "epoch",
            y_label: "batch size",
            points: |r| train_points(r, |t| t.batch_size.map(|b| b as f64)),
        },
    ]
}

/// One label per run: the run folder's name; where names repeat, enough parent folders to tell
/// them apart (`a/run`, `b/run`), and where the paths themselves repeat, a count (`run (2)`).
///
/// ```
/// # use stagewise_report::{runs::RunRecord, runs_report::run_labels};
/// # use stagewise_core::record::{RunKind, RunSummary};
/// let run = |dir: &str| RunRecord {
///     dir: dir.into(),
///     summary: RunSummary::new(RunKind::Train, "mlp", "qhm", serde_json::json!({})),
///     train: vec![],
///     evals: vec![],
/// };
/// let labels = run_labels(&[run("x/a/seed1"), run("x/b/seed1"), run("x/c"), run("x/c")]);
/// assert_eq!(labels, ["a/seed1", "b/seed1", "c", "c (2)"]);
/// ```
pub fn run_labels(runs: &[RunRecord]) -> Vec<String> {
    let parts: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut names: Vec<String> = r
                .dir
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            if names.is_empty() {
                names.push(r.dir.display().to_string());
            }
            names
        })
        .collect();
    let label = |i: usize, depth: usize| {
        let p = &parts[i];
        p[p.len().saturating_sub(depth)..].join("/")
    };
    let mut depth = vec![1usize; runs.len()];
    loop {
        let labels: Vec<String> = (0..runs.len()).map(|i| label(i, depth[i])).collect();
        let mut grew = false;
        for i in 0..runs.len() {
            let repeated = labels
                .iter()
                .enumerate()
                .any(|(j, l)| *l == labels[i] && parts[j] != parts[i]);
            if repeated && depth[i] < parts[i].len() {
                depth[i] += 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    let labels: Vec<String> = (0..runs.len()).map(|i| label(i, depth[i])).collect();
    labels
        .iter()
        .enumerate()
        .map(
            |(i, l)| match labels[..i].iter().filter(|e| *e == l).count() {
                0 => l.clone(),
                earlier => format!("{l} ({})", earlier + 1),
            },
        )
        .collect()
}

fn summary_table(runs: &[RunRecord], labels: &[String]) -> Table {
    let with_val = runs.iter().any(|r| best_val(r).is_some());
    let mut header: Vec<String> = [
        "run",
        "kind",
        "model",
        "optimizer",
        "updates",
        "epochs",
        "wall s",
        "final test acc",
        "best test acc",
    ]
    .map(String::from)
    .to_vec();
    if with_val {
        header.push("best val acc".into());
    }
    header.push("completed".into());
    let rows = runs
        .iter()
        .zip(labels)
        .map(|(r, l)| {
            let s = &r.summary;
            let mut row = vec![
                l.clone(),
                kind_name(s.kind).to_string(),
                s.model.clone(),
                s.optimizer.clone(),
                s.updates.to_string(),
                s.epochs.map(trimmed).unwrap_or_else(|| "-".into()),
                format!("{:.1}", s.wall_seconds),
                accuracy(s.final_accuracy()),
                accuracy(s.best_eval.as_ref().and_then(|e| e.accuracy)),
            ];
            if with_val {
                row.push(accuracy(best_val(r)));
            }
            row.push(if s.completed { "yes" } else { "no" }.into());
            row
        })
        .collect();
    Table { header, rows }
}

fn best_val(r: &RunRecord) -> Option<f64> {
    r.summary
        .best_val_eval
        .as_ref()
        .and_then(|e| e.val_accuracy)
}

/// The name of a run kind as in `summary.json`.
fn kind_name(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Train => "train",
        RunKind::Asgd => "asgd",
        RunKind::PsServe => "ps-serve",
    }
}

fn accuracy(a: Option<f64>) -> String {
    match a {
        Some(a) if a.is_finite() => format!("{a:.4}"),
        _ => "-".into(),
    }
}

/// A number with at most two decimals, trailing zeros dropped (`15`, `2.5`).
fn trimmed(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::record::{write_rows, RunSummary, EVAL_FILE, TRAIN_FILE};

    fn eval(update: u64, epoch: Option<f64>, t: f64, acc: f64, val: Option<f64>) -> EvalRow {
        EvalRow {
            update,
            epoch,
            elapsed_s: t,
            loss: 1.0 - acc,
            accuracy: Some(acc),
            examples: 100,
            val_loss: val.map(|v| 1.0 - v),
            val_accuracy: val,
        }
    }

    /// A `train`-like run: one row per epoch with the whole schedule, and a validation split.
    fn train_run(dir: &Path) -> RunRecord {
        let train: Vec<TrainRow> = (1..=3)
            .map(|e| TrainRow {
                update: e * 10,
                epoch: Some(e as f64),
                elapsed_s: e as f64 * 2.0,
                loss: Some(1.0 / e as f64),
                accuracy: Some(0.5),
                stage: Some(1 + u32::from(e > 2)),
                lr: if e > 2 { 0.01 } else { 0.1 },
                momentum: Some(0.9),
                nu: Some(0.7),
                batch_size: Some(if e > 2 { 256 } else { 128 }),
                ..TrainRow::default()
            })
            .collect();
        let evals: Vec<EvalRow> = [(1, 0.6, 0.62), (2, 0.8, 0.79), (3, 0.75, 0.8)]
            .iter()
            .map(|&(e, a, v)| eval(e * 10, Some(e as f64), e as f64 * 2.0, a, Some(v)))
            .collect();
        let mut s =
            RunSummary::new(RunKind::Train, "cnn", "qhm", serde_json::json!({})).with_evals(&evals);
        s.updates = 30;
        s.epochs = Some(3.0);
        s.wall_seconds = 6.24;
        s.completed = true;
        s.save(dir).unwrap();
        write_rows(&dir.join(TRAIN_FILE), &train).unwrap();
        write_rows(&dir.join(EVAL_FILE), &evals).unwrap();
        RunRecord::load(dir).unwrap()
    }

    /// An `asgd`-like run: rows every few updates, no ν or batch size, a staleness histogram.
    fn asgd_run(dir: &Path) -> RunRecord {
        let train: Vec<TrainRow> = (1..=4)
            .map(|i| TrainRow {
                update: i * 5,
                epoch: Some(i as f64 * 0.5),
                elapsed_s: i as f64,
                loss: Some(2.0 / i as f64),
                lr: 0.05,
                momentum: Some(0.8),
                pushes: Some(5),
                mean_staleness: Some(1.5),
                ..TrainRow::default()
            })
            .collect();
        let evals = vec![
            eval(10, Some(1.0), 2.5, 0.5, None),
            eval(20, Some(2.0), 4.5, 0.7, None),
        ];
        let mut s = RunSummary::new(
            RunKind::Asgd,
            "mlp",
            "qhm",
            serde_json::json!({"histogram": [7, 9, 3, 1]}),
        )
        .with_evals(&evals);
        s.updates = 20;
        s.epochs = Some(2.0);
        s.wall_seconds = 4.5;
        s.save(dir).unwrap();
        write_rows(&dir.join(TRAIN_FILE), &train).unwrap();
        write_rows(&dir.join(EVAL_FILE), &evals).unwrap();
        RunRecord::load(dir).unwrap()
    }

    fn figure_titles(report: &Report) -> Vec<String> {
        report
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Figure(f) => Some(f.title.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_train_run_and_an_asgd_run_get_every_chart_and_a_table() {
        let root = tempfile::tempdir().unwrap();
        let runs = [
            train_run(&root.path().join("a").join("run")),
            asgd_run(&root.path().join("b").join("run")),
        ];
        let out = root.path().join("report");
        let report = report_runs(&runs, &out).unwrap();
        assert_eq!(report.title, "Run report");
        assert_eq!(
            figure_titles(&report),
            [
                "Test accuracy against epoch",
                "Test accuracy against wall time",
                "Validation accuracy against epoch",
                "Training loss against epoch",
                "Learning rate α against epoch",
                "Momentum β against epoch",
                "ν against epoch",
                "Batch size against epoch",
                STALENESS_TITLE,
            ]
        );
        for block in &report.blocks {
            if let Block::Figure(f) = block {
                assert!(f.png.starts_with(&out) && f.png.exists(), "{f:?}");
                assert!(f.svg.exists(), "{f:?}");
            }
        }
        // Both runs are named in the curves, only the asgd run in the histogram.
        let svg = |stem: &str| std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        let acc = svg("test_accuracy_epoch");
        assert!(acc.contains("a/run") && acc.contains("b/run"));
        let hist = svg("staleness");
        assert!(hist.contains("b/run") && !hist.contains("a/run"));

        let table = report
            .blocks
            .iter()
            .find_map(|b| match b {
                Block::Table(t) => Some(t),
                _ => None,
            })
            .unwrap();
        assert_eq!(table.header[9], "best val acc");
        assert_eq!(
            table.rows[0],
            [
                "a/run", "train", "cnn", "qhm", "30", "3", "6.2", "0.7500", "0.8000", "0.8000",
                "yes"
            ]
        );
        assert_eq!(
            table.rows[1],
            ["b/run", "asgd", "mlp", "qhm", "20", "2", "4.5", "0.7000", "0.7000", "-", "no"]
        );
        assert!(!report
            .blocks
            .iter()
            .any(|b| matches!(b, Block::Paragraph(p) if p.starts_with("Not drawn"))));

        let (md, html) = report.write(&out).unwrap();
        let md = std::fs::read_to_string(md).unwrap();
        assert!(
            md.contains("![Staleness of applied gradients](staleness.png)"),
            "{md}"
        );
        assert!(md.contains("| a/run | train |"), "{md}");
        let html = std::fs::read_to_string(html).unwrap();
        assert_eq!(html.matches("data:image/png;base64,").count(), 9);
    }

    #[test]
    fn charts_without_data_are_skipped_and_named() {
        let root = tempfile::tempdir().unwrap();
        let run = asgd_run(&root.path().join("only"));
        let out = root.path().join("out");
        let report = report_runs(std::slice::from_ref(&run), &out).unwrap();
        assert_eq!(report.title, "Run report: only");
        let titles = figure_titles(&report);
        assert!(titles.contains(&"Momentum β against epoch".to_string()));
        assert!(!titles.contains(&"ν against epoch".to_string()));
        assert!(!titles.contains(&"Validation accuracy against epoch".to_string()));
        assert!(!out.join("nu_epoch.png").exists());
        let note = report
            .blocks
            .iter()
            .find_map(|b| match b {
                Block::Paragraph(p) if p.starts_with("Not drawn") => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            note,
            "Not drawn, as no run has the data: Validation accuracy against epoch, \
             ν against epoch, Batch size against epoch."
        );
        // Without a validation split, the table has no column for it.
        let Some(Block::Table(t)) = report.blocks.iter().find(|b| matches!(b, Block::Table(_)))
        else {
            panic!("no table");
        };
        assert!(!t.header.iter().any(|h| h == "best val acc"));
    }

    #[test]
    fn a_run_without_rows_or_evaluations_still_reports() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("empty");
        RunSummary::new(RunKind::PsServe, "m", "sgd", serde_json::json!({}))
            .save(&dir)
            .unwrap();
        let run = RunRecord::load(&dir).unwrap();
        let report = report_runs(&[run], &root.path().join("out")).unwrap();
        assert!(figure_titles(&report).is_empty());
        assert!(report.to_html().is_ok());
    }

    #[test]
    fn no_runs_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let err = report_runs(&[], root.path()).unwrap_err();
        assert!(matches!(err, RunsReportError::NoRuns));
    }

    #[test]
    fn labels_grow_until_distinct() {
        let run = |dir: &str| RunRecord {
            dir: dir.into(),
            summary: RunSummary::new(RunKind::Train, "mlp", "qhm", serde_json::json!({})),
            train: vec![],
            evals: vec![],
        };
        let runs = [
            run("/r/x/s1"),
            run("/q/x/s1"),
            run("/r/y/s1"),
            run("s2"),
            run("."),
        ];
        assert_eq!(run_labels(&runs), ["r/x/s1", "q/x/s1", "y/s1", "s2", "."]);
    }
}
