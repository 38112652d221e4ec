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
    /// Which model `best.safetensors` holds (absent in records written before it existed).
    #[serde(default)]
    pub best_model: Option<crate::export::BestModel>,
}

/// The summary of a training run.
pub type Summary = stagewise_core::record::RunSummary<TrainDetails>;
