//! Per-epoch metrics (`metrics.csv`) and the run summary (`summary.json`).

use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the per-epoch metrics inside a run folder.
pub const METRICS_FILE: &str = "metrics.csv";
/// File name of the run summary inside a run folder.
pub const SUMMARY_FILE: &str = "summary.json";

/// One row of `metrics.csv`: the state at the end of an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u64,
    /// 1-based stage number.
    pub stage: usize,
    /// Optimizer steps taken since the start of the run.
    pub step: u64,
    /// Learning rate at the last step of the epoch.
    pub lr: f64,
    /// Momentum β at the last step of the epoch.
    pub beta: f64,
    /// ν at the last step of the epoch.
    pub nu: f64,
    /// Batch size of the epoch.
    pub batch_size: u64,
    /// Mean training loss over the epoch's batches (weighted by batch length).
    pub train_loss: f64,
    /// Training accuracy over the epoch.
    pub train_acc: f64,
    /// Test loss at the end of the epoch.
    pub test_loss: f64,
    /// Test accuracy at the end of the epoch.
    pub test_acc: f64,
    /// Wall time since the start of the run, in seconds (resumed runs continue the count).
    pub seconds: f64,
}

/// Writes `rows` to `path` as CSV with a header (replacing the file).
pub fn write_metrics(path: &Path, rows: &[EpochMetrics]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_path(path)?;
    for row in rows {
        w.serialize(row)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads `metrics.csv` rows written by [`write_metrics`].
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>, csv::Error> {
    csv::Reader::from_path(path)?.deserialize().collect()
}

/// The run summary written to `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Test accuracy after the last epoch.
    pub final_test_acc: f64,
    /// Best test accuracy over the epochs, and its epoch.
    pub best_test_acc: f64,
    /// Epoch (1-based) of the best test accuracy.
    pub best_epoch: u64,
    /// Epochs run.
    pub epochs: u64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Training wall time in seconds (evaluation included).
    pub wall_seconds: f64,
    /// Training images processed per second of wall time.
    pub images_per_second: f64,
    /// Whether the run finished its plan (false when stopped early on purpose).
    pub completed: bool,
    /// The configuration used, plan included.
    pub config: serde_json::Value,
}
