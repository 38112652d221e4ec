//! One finished run folder, loaded: its summary, training curve and evaluations.

use stagewise_core::record::{
    read_rows, EvalRow, RecordError, RunKind, RunSummary, TrainRow, EVAL_FILE, TRAIN_FILE,
};
use std::path::{Path, PathBuf};

/// A run folder written by `train`, `asgd` or `ps serve` (docs/run-format.md).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// `summary.json`, with the run kind's own facts left as JSON.
    pub summary: RunSummary<serde_json::Value>,
    /// `train.csv`.
    pub train: Vec<TrainRow>,
    /// `eval.csv`.
    pub evals: Vec<EvalRow>,
}

impl RunRecord {
    /// Reads the three files of `dir`; an absent `train.csv` or `eval.csv` reads as no rows.
    pub fn load(dir: &Path) -> Result<Self, RecordError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            summary: RunSummary::load(dir)?,
            train: rows_if_present(&dir.join(TRAIN_FILE))?,
            evals: rows_if_present(&dir.join(EVAL_FILE))?,
        })
    }

    /// What produced the run.
    pub fn kind(&self) -> RunKind {
        self.summary.kind
    }

    /// The staleness histogram of a parameter-server run (`details.histogram`: bucket τ holds
    /// the pushes of staleness τ, the last bucket those at least that stale); `None` for `train`.
    pub fn staleness_histogram(&self) -> Option<Vec<u64>> {
        let values = self.summary.details.get("histogram")?.as_array()?;
        values.iter().map(|v| v.as_u64()).collect()
    }
}

fn rows_if_present<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, RecordError> {
    if path.exists() {
        read_rows(path)
    } else {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::record::write_rows;

    #[test]
    fn a_run_folder_loads_with_its_rows_and_histogram() {
        let dir = tempfile::tempdir().unwrap();
        let eval = EvalRow {
            update: 4,
            epoch: Some(1.0),
            elapsed_s: 1.5,
            loss: 0.5,
            accuracy: Some(0.75),
            examples: 8,
            val_loss: Some(0.6),
            val_accuracy: Some(0.7),
        };
        RunSummary::new(
            RunKind::Asgd,
            "mlp",
            "qhm",
            serde_json::json!({"histogram": [3, 0, 2]}),
        )
        .with_evals(std::slice::from_ref(&eval))
        .save(dir.path())
        .unwrap();
        write_rows(&dir.path().join(EVAL_FILE), std::slice::from_ref(&eval)).unwrap();
        let run = RunRecord::load(dir.path()).unwrap();
        assert_eq!(run.evals, vec![eval]);
        assert!(run.train.is_empty());
        assert_eq!(run.kind(), RunKind::Asgd);
        assert_eq!(run.staleness_histogram(), Some(vec![3, 0, 2]));
        assert_eq!(run.summary.best_val_eval.unwrap().val_accuracy, Some(0.7));
    }
}
