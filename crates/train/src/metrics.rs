//! What a training run records: the shared run record of [`stagewise_core::record`]
//! (`train.csv` and `eval.csv`, one row per epoch, and `summary.json`) with the trainer's own
//! details.

use crate::trainer::TrainConfig;
use serde::{Deserialize, Serialize};
pub use stagewise_core::record::{EVAL_FILE, SUMMARY_FILE, TRAIN_FILE};

/// The trainer's part of `summary.json` (its `details`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainDetails {
    /// Training images processed per second of wall time, this process.
    pub images_per_second: f64,
    /// The configuration used, plan included.
    pub config: TrainConfig,
    /// Where a run stopped mid-epoch ([`crate::RunOptions::stop`]); its checkpoint resumes
    /// exactly there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<StopPoint>,
    /// Which model `best.safetensors` holds (absent in records written before it existed).
    #[serde(default)]
    pub best_model: Option<crate::export::BestModel>,
}

/// A position inside an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopPoint {
    /// The epoch (1-based).
    pub epoch: u64,
    /// Steps of it done.
    pub step: u64,
    /// Steps in it.
    pub steps: u64,
}

impl std::fmt::Display for StopPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {}, step {} of {}",
            self.epoch, self.step, self.steps
        )
    }
}

/// The summary of a training run.
pub type Summary = stagewise_core::record::RunSummary<TrainDetails>;
