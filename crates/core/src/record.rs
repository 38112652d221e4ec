//! The run record: what every run writes into its folder, whatever ran it (`train`, `asgd`,
//! `ps serve`), so that tools (`compare`, `report`, scripts) read one layout.
//!
//! - `summary.json`: a [`RunSummary`], schema [`SCHEMA_VERSION`], with the run kind's own
//!   facts under `details`;
//! - `train.csv`: [`TrainRow`]s (one per epoch for `train`, one per `log_every` updates for the
//!   parameter server);
//! - `eval.csv`: [`EvalRow`]s, one per test-set evaluation.
//!
//! The layout is documented in docs/run-format.md.
//!
//! ```
//! use stagewise_core::record::{read_rows, write_rows, EvalRow};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("eval.csv");
//! let row = EvalRow { update: 10, epoch: Some(1.0), elapsed_s: 2.5, loss: 0.4,
//!                     accuracy: Some(0.9), examples: 100, val_loss: None, val_accuracy: None };
//! write_rows(&path, &[row.clone()]).unwrap();
//! assert_eq!(read_rows::<EvalRow>(&path).unwrap(), vec![row]);
//! ```

use crate::files::write_atomic;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the layout; a reader refuses other versions by name.
pub const SCHEMA_VERSION: u32 = 1;
/// The run summary inside a run folder.
pub const SUMMARY_FILE: &str = "summary.json";
/// The training curve inside a run folder.
pub const TRAIN_FILE: &str = "train.csv";
/// The evaluations inside a run folder.
pub const EVAL_FILE: &str = "eval.csv";
/// The model exported at a run's latest evaluation (named tensors, PyTorch layout).
pub const MODEL_FILE: &str = "model.safetensors";
/// The model of a run's best evaluation ([`best_model`]).
pub const BEST_FILE: &str = "best.safetensors";

/// What produced the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// `stagewise train`: one process, synchronous steps.
    Train,
    /// `stagewise asgd`: a parameter server and workers in one process.
    Asgd,
    /// `stagewise ps serve`: one server (shard) of a multi-process run.
    PsServe,
}

/// One evaluation on the test set, and on the validation split when the run holds one out
/// (a row of `eval.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Optimizer updates applied before the evaluation (the server version for ASGD).
    pub update: u64,
    /// Epochs of training data consumed, when known.
    pub epoch: Option<f64>,
    /// Seconds since the run started (resumed runs continue the count).
    pub elapsed_s: f64,
    /// Mean test loss.
    pub loss: f64,
    /// Test accuracy, for classifiers.
    pub accuracy: Option<f64>,
    /// Examples evaluated.
    pub examples: u64,
    /// Mean loss on the validation split (held out of the training set), when there is one.
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// Accuracy on the validation split, when there is one.
    #[serde(default)]
    pub val_accuracy: Option<f64>,
}

/// One point of the training curve (a row of `train.csv`); fields a run kind does not have are
/// empty.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainRow {
    /// Optimizer updates applied so far.
    pub update: u64,
    /// Epochs of training data consumed, when known.
    pub epoch: Option<f64>,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Mean training loss since the previous row.
    pub loss: Option<f64>,
    /// Training accuracy since the previous row.
    pub accuracy: Option<f64>,
    /// 1-based stage of the plan at this point.
    pub stage: Option<u32>,
    /// Scheduled learning rate α.
    pub lr: f64,
    /// Scheduled momentum β.
    pub momentum: Option<f64>,
    /// Scheduled ν.
    pub nu: Option<f64>,
    /// Batch size in force.
    pub batch_size: Option<u64>,
    /// Updates per second since the previous row (parameter server).
    pub updates_per_s: Option<f64>,
    /// Gradients received since the previous row (parameter server).
    pub pushes: Option<u64>,
    /// Mean staleness of those gradients (parameter server).
    pub mean_staleness: Option<f64>,
    /// Largest staleness among them (parameter server).
    pub max_staleness: Option<u64>,
}

/// `summary.json`: the facts every run has, and the run kind's own under `details`.
///
/// Read any run's summary as `RunSummary<serde_json::Value>` with [`RunSummary::load`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary<D> {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema: u32,
    /// What produced the run.
    pub kind: RunKind,
    /// The model (`mlp`, `cnn`, `resnet`, or a parameter server's model id).
    pub model: String,
    /// The optimizer's name.
    pub optimizer: String,
    /// Optimizer updates applied.
    pub updates: u64,
    /// Epochs of training data consumed, when known.
    pub epochs: Option<f64>,
    /// Wall time of the run, seconds (resumed runs continue the count).
    pub wall_seconds: f64,
    /// Whether the run did all it was asked (false when stopped early on purpose or by a fault).
    pub completed: bool,
    /// The last evaluation.
    pub final_eval: Option<EvalRow>,
    /// The evaluation with the highest test accuracy (the first of equals).
    pub best_eval: Option<EvalRow>,
    /// The evaluation with the highest validation accuracy (the first of equals); `None`
    /// when the run held out no validation split. Selecting on it never looks at the test set.
    #[serde(default)]
    pub best_val_eval: Option<EvalRow>,
    /// What only this kind of run has (the configuration, worker statistics, …).
    pub details: D,
}

/// Why a run record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A CSV file is malformed.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: csv::Error,
    },
    /// `summary.json` is malformed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The summary was written by another version of the layout.
    #[error(
        "{path}: run record schema {found} is not supported; this version reads schema \
         {SCHEMA_VERSION} (docs/run-format.md)"
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version found (0 when absent).
        found: u32,
    },
}

impl EvalRow {
    /// The evaluation with the highest test accuracy, the first of equals.
    pub fn best(rows: &[EvalRow]) -> Option<&EvalRow> {
        Self::best_by(rows, |r| r.accuracy)
    }

    /// The evaluation with the highest validation accuracy, the first of equals; `None` when no
    /// row has one.
    pub fn best_val(rows: &[EvalRow]) -> Option<&EvalRow> {
        Self::best_by(rows.iter().filter(|r| r.val_accuracy.is_some()), |r| {
            r.val_accuracy
        })
    }

    fn best_by<'a>(
        rows: impl IntoIterator<Item = &'a EvalRow>,
        key: impl Fn(&EvalRow) -> Option<f64>,
    ) -> Option<&'a EvalRow> {
        rows.into_iter()
            .fold(None, |best: Option<&EvalRow>, r| match best {
                Some(b)
                    if key(b).unwrap_or(f64::NEG_INFINITY)
                        >= key(r).unwrap_or(f64::NEG_INFINITY) =>
                {
                    Some(b)
                }
                _ => Some(r),
            })
    }
}

/// Which model `best.safetensors` holds: the evaluation it was chosen at, and on which split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestModel {
    /// The file, relative to the run folder ([`BEST_FILE`]).
    pub file: String,
    /// `validation` when the run held out a validation split, `test` otherwise.
    pub chosen_on: String,
    /// Updates applied at the chosen evaluation.
    pub update: u64,
    /// Epochs trained at the chosen evaluation.
    pub epoch: Option<f64>,
    /// The accuracy it was chosen by, on `chosen_on`.
    #[serde(default)]
    pub accuracy: Option<f64>,
}

impl BestModel {
    /// Whether a later evaluation with these accuracies replaces this one as the best: a
    /// higher accuracy on the split this one was chosen on (the first of equals stays), as
    /// [`best_model`] decides over the rows.
    pub fn is_beaten_by(&self, test_accuracy: Option<f64>, val_accuracy: Option<f64>) -> bool {
        let candidate = if self.chosen_on == VALIDATION {
            val_accuracy
        } else {
            test_accuracy
        };
        candidate.unwrap_or(f64::NEG_INFINITY) > self.accuracy.unwrap_or(f64::NEG_INFINITY)
    }
}

const VALIDATION: &str = "validation";

/// The split a run's best model is chosen on ([`BestModel::chosen_on`]): `validation` when the
/// run holds one out, `test` otherwise.
pub fn chosen_on(has_validation: bool) -> &'static str {
    if has_validation {
        VALIDATION
    } else {
        "test"
    }
}

/// The best of `evals`, the one a run keeps as `best.safetensors`: on validation accuracy
/// when the rows have it, on test accuracy otherwise (the first of equals, as `summary.json`'s
/// `best_val_eval` and `best_eval`).
///
/// ```
/// use stagewise_core::record::{best_model, EvalRow};
/// let row = |update, accuracy, val| EvalRow { update, epoch: None, elapsed_s: 0.0, loss: 0.5,
///     accuracy: Some(accuracy), examples: 10, val_loss: None, val_accuracy: Some(val) };
/// let rows = [row(1, 0.9, 0.7), row(2, 0.8, 0.8)];
/// let (best, _) = best_model(&rows).unwrap();
/// assert_eq!((best.update, best.chosen_on.as_str()), (2, "validation"));
/// ```
pub fn best_model(evals: &[EvalRow]) -> Option<(BestModel, &EvalRow)> {
    let (row, has_validation, accuracy) = match EvalRow::best_val(evals) {
        Some(row) => (row, true, row.val_accuracy),
        None => {
            let row = EvalRow::best(evals)?;
            (row, false, row.accuracy)
        }
    };
    Some((
        BestModel {
            file: BEST_FILE.into(),
            chosen_on: chosen_on(has_validation).into(),
            update: row.update,
            epoch: row.epoch,
            accuracy,
        },
        row,
    ))
}

impl<D> RunSummary<D> {
    /// A summary of the current layout version; final and best come from `evals`.
    pub fn new(
        kind: RunKind,
        model: impl Into<String>,
        optimizer: impl Into<String>,
        details: D,
    ) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            kind,
            model: model.into(),
            optimizer: optimizer.into(),
            updates: 0,
            epochs: None,
            wall_seconds: 0.0,
            completed: false,
            final_eval: None,
            best_eval: None,
            best_val_eval: None,
            details,
        }
    }

    /// Sets `final_eval`, `best_eval` and `best_val_eval` from the run's evaluations.
    pub fn with_evals(mut self, evals: &[EvalRow]) -> Self {
        self.final_eval = evals.last().cloned();
        self.best_eval = EvalRow::best(evals).cloned();
        self.best_val_eval = EvalRow::best_val(evals).cloned();
        self
    }

    /// The final test accuracy, if the run evaluated one.
    pub fn final_accuracy(&self) -> Option<f64> {
        self.final_eval.as_ref().and_then(|e| e.accuracy)
    }
}

impl<D: Serialize> RunSummary<D> {
    /// Writes `dir/summary.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        let path = dir.join(SUMMARY_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|source| RecordError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, text.as_bytes()).map_err(|source| RecordError::Io { path, source })
    }
}

impl<D: DeserializeOwned> RunSummary<D> {
    /// Reads `dir/summary.json`, refusing other schema versions.
    pub fn load(dir: &Path) -> Result<Self, RecordError> {
        let path = dir.join(SUMMARY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| RecordError::Io {
            path: path.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| RecordError::Json {
                path: path.clone(),
                source,
            })?;
        let found = value.get("schema").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != u64::from(SCHEMA_VERSION) {
            let found = u32::try_from(found).unwrap_or(u32::MAX);
            return Err(RecordError::Schema { path, found });
        }
        serde_json::from_value(value).map_err(|source| RecordError::Json { path, source })
    }
}

/// Writes `rows` as CSV with a header, atomically (replacing the file).
pub fn write_rows<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), RecordError> {
    let csv_error = |source| RecordError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).map_err(csv_error)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv_error(csv::Error::from(e.into_error())))?;
    write_atomic(path, &bytes).map_err(|source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads rows written by [`write_rows`].
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, RecordError> {
    let csv_error = |source| RecordError::Csv {
        path: path.to_path_buf(),
        source,
    };
    csv::Reader::from_path(path)
        .map_err(csv_error)?
        .deserialize()
        .collect::<Result<_, _>>()
        .map_err(csv_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(update: u64, accuracy: f64) -> EvalRow {
        EvalRow {
            update,
            epoch: None,
            elapsed_s: update as f64,
            loss: 1.0 - accuracy,
            accuracy: Some(accuracy),
            examples: 10,
            val_loss: None,
            val_accuracy: None,
        }
    }

    #[test]
    fn best_is_the_first_of_the_most_accurate() {
        let rows = [eval(1, 0.5), eval(2, 0.8), eval(3, 0.8), eval(4, 0.7)];
        assert_eq!(EvalRow::best(&rows).unwrap().update, 2);
        assert!(EvalRow::best(&[]).is_none());
        assert!(EvalRow::best_val(&rows).is_none());
    }

    #[test]
    fn the_best_validation_row_ignores_the_test_set() {
        let mut rows = vec![eval(1, 0.9), eval(2, 0.5), eval(3, 0.6)];
        for (r, v) in rows.iter_mut().zip([0.7, 0.8, 0.8]) {
            r.val_accuracy = Some(v);
        }
        assert_eq!(EvalRow::best_val(&rows).unwrap().update, 2);
        assert_eq!(EvalRow::best(&rows).unwrap().update, 1);
    }

    #[test]
    fn eval_files_without_validation_columns_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVAL_FILE);
        std::fs::write(
            &path,
            "update,epoch,elapsed_s,loss,accuracy,examples\n5,1.0,2.0,0.5,0.8,100\n",
        )
        .unwrap();
        let rows: Vec<EvalRow> = read_rows(&path).unwrap();
        assert_eq!(rows[0].accuracy, Some(0.8));
        assert_eq!(rows[0].val_accuracy, None);
    }

    #[test]
    fn a_summary_round_trips_and_other_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = RunSummary::new(
            RunKind::Asgd,
            "cnn",
            "qhm",
            serde_json::json!({"workers": 4}),
        )
        .with_evals(&[eval(5, 0.6), eval(9, 0.7)]);
        s.save(dir.path()).unwrap();
        let back = RunSummary::<serde_json::Value>::load(dir.path()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.final_accuracy(), Some(0.7));
        std::fs::write(dir.path().join(SUMMARY_FILE), r#"{"final_test_acc": 0.9}"#).unwrap();
        let err = RunSummary::<serde_json::Value>::load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("schema 0 is not supported"),
            "{err}"
        );
    }

    #[test]
    fn train_rows_leave_missing_fields_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRAIN_FILE);
        let row = TrainRow {
            update: 3,
            lr: 0.1,
            ..TrainRow::default()
        };
        write_rows(&path, std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().nth(1).unwrap().starts_with("3,,0.0,,,,0.1,"),
            "{text}"
        );
        assert_eq!(read_rows::<TrainRow>(&path).unwrap(), vec![row]);
    }
}
