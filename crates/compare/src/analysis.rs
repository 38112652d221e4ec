//! The finished grid read back from its run folders: `results.csv` (one row per run), the
//! comparison of [`stagewise_report::comparison`] (`summary.json`), plots, and the report.

use crate::experiment::{Experiment, RunSpec};
use crate::runner::run_dir;
use serde::Serialize;
use stagewise_core::files::write_atomic;
use stagewise_core::record::{RecordError, SUMMARY_FILE};
use stagewise_report::comparison::{compare, Comparison, ComparisonError, GridRun};
use stagewise_report::runs::RunRecord;
use std::path::{Path, PathBuf};

/// `results.csv` inside the experiment's folder.
pub const RESULTS_FILE: &str = "results.csv";

/// One row of `results.csv`: a run of the grid, as its own summary records it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ResultRow {
    /// The method.
    pub method: String,
    /// ASGD worker count (empty for centralized runs).
    pub workers: Option<u32>,
    /// The grid's lr.
    pub lr: f64,
    /// The seed.
    pub seed: u64,
    /// The run folder, relative to the experiment's folder.
    pub run_dir: String,
    /// Whether the run finished its plan.
    pub completed: bool,
    /// Whether it diverged (then it counts as chance accuracy in the comparison).
    pub diverged: bool,
    /// Optimizer updates.
    pub updates: u64,
    /// Epochs of data consumed.
    pub epochs: Option<f64>,
    /// Wall time, seconds.
    pub wall_seconds: f64,
    /// Final test accuracy.
    pub final_test_accuracy: Option<f64>,
    /// Final test loss.
    pub final_test_loss: Option<f64>,
    /// Final validation accuracy (with a validation split).
    pub final_val_accuracy: Option<f64>,
    /// The best validation accuracy of the run.
    pub best_val_accuracy: Option<f64>,
    /// Test accuracy at the evaluation with the best validation accuracy.
    pub test_accuracy_at_best_val: Option<f64>,
    /// The best test accuracy of the run (optimistic: chosen on test).
    pub best_test_accuracy: Option<f64>,
}

/// Why the analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A run's record could not be read.
    #[error("{0}")]
    Record(#[from] RecordError),
    /// The runs do not make a comparable grid.
    #[error("{0}")]
    Comparison(#[from] ComparisonError),
    /// A plot or the report could not be written.
    #[error("{0}")]
    Report(String),
    /// An output could not be written.
    #[error("{path}: {detail}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> AnalysisError {
    AnalysisError::Output {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Every run of the grid, loaded from `out`, with its spec.
pub fn load_grid(grid: &[RunSpec], out: &Path) -> Result<Vec<(RunSpec, RunRecord)>, AnalysisError> {
    grid.iter()
        .map(|spec| Ok((spec.clone(), RunRecord::load(&run_dir(out, spec))?)))
        .collect()
}

/// The `results.csv` row of one run.
pub fn result_row(spec: &RunSpec, run: &RunRecord) -> ResultRow {
    let s = &run.summary;
    let final_eval = s.final_eval.as_ref();
    let best_val = s.best_val_eval.as_ref();
    ResultRow {
        method: spec.method.clone(),
        workers: spec.workers(),
        lr: spec.lr,
        seed: spec.seed,
        run_dir: Path::new("runs")
            .join(spec.relative_dir())
            .display()
            .to_string(),
        completed: s.completed,
        diverged: s
            .details
            .get(stagewise_report::comparison::DIVERGED_KEY)
            .is_some(),
        updates: s.updates,
        epochs: s.epochs,
        wall_seconds: s.wall_seconds,
        final_test_accuracy: final_eval.and_then(|e| e.accuracy),
        final_test_loss: final_eval.map(|e| e.loss),
        final_val_accuracy: final_eval.and_then(|e| e.val_accuracy),
        best_val_accuracy: best_val.and_then(|e| e.val_accuracy),
        test_accuracy_at_best_val: best_val.and_then(|e| e.accuracy),
        best_test_accuracy: s.best_eval.as_ref().and_then(|e| e.accuracy),
    }
}

/// Writes `out/results.csv`, one row per run in grid order.
pub fn write_results(rows: &[ResultRow], out: &Path) -> Result<PathBuf, AnalysisError> {
    let path = out.join(RESULTS_FILE);
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).map_err(|e| output_error(&path, e))?;
    }
    let bytes = w.into_inner().map_err(|e| output_error(&path, e))?;
    write_atomic(&path, &bytes).map_err(|e| output_error(&path, e))?;
    Ok(path)
}

/// The experiment as it ran, saved beside the results (`experiment.toml`), so the folder
/// says what it holds.
pub fn save_experiment(exp: &Experiment, out: &Path) -> Result<(), AnalysisError> {
    let path = out.join("experiment.toml");
    let text = toml::to_string(exp).map_err(|e| output_error(&path, e))?;
    write_atomic(&path, text.as_bytes()).map_err(|e| output_error(&path, e))
}

/// What [`analyse`] wrote and found.
#[derive(Debug)]
pub struct AnalysisOutcome {
    /// The comparison (also `summary.json`).
    pub comparison: Comparison,
    /// One row per run (also `results.csv`).
    pub rows: Vec<ResultRow>,
    /// The findings in words (also in the report).
    pub sentences: Vec<String>,
}

/// Reads the finished grid from `out`, writes `results.csv`, `summary.json`,
/// `experiment.toml`, the plots and `report.md`/`report.html`.
pub fn analyse(
    exp: &Experiment,
    grid: &[RunSpec],
    out: &Path,
) -> Result<AnalysisOutcome, AnalysisError> {
    let loaded = load_grid(grid, out)?;
    let rows: Vec<ResultRow> = loaded.iter().map(|(s, r)| result_row(s, r)).collect();
    write_results(&rows, out)?;
    save_experiment(exp, out)?;
    let runs: Vec<GridRun> = loaded
        .iter()
        .map(|(spec, record)| GridRun {
            method: spec.method.clone(),
            lr: spec.lr,
            seed: spec.seed,
            workers: spec.workers(),
            record: record.clone(),
        })
        .collect();
    let comparison = compare(&runs)?;
    let path = out.join(SUMMARY_FILE);
    let text = serde_json::to_string_pretty(&comparison).map_err(|e| output_error(&path, e))?;
    write_atomic(&path, text.as_bytes()).map_err(|e| output_error(&path, e))?;
    let sentences = comparison.sentences();
    crate::report::write_report(exp, &comparison, &runs, &rows, out)?;
    Ok(AnalysisOutcome {
        comparison,
        rows,
        sentences,
    })
}
