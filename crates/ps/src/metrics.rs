//! Server metrics: updates per second, staleness per worker, training and evaluation curves,
//! refusals; written like a trainer's metrics (`train.csv`, `eval.csv`, `summary.json`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use stagewise_core::optim::QhmParams;
use stagewise_core::record::{
    best_model, write_rows, BestModel, RunKind, RunSummary, EVAL_FILE, TRAIN_FILE,
};
pub use stagewise_core::record::{EvalRow, TrainRow};
use std::path::PathBuf;

use crate::error::PsError;
use crate::gradient::{BatchStats, EvalPoint, EvalStats};

/// Staleness histogram buckets: `τ = 0 ..= 62` exactly, the last bucket counts `τ ≥ 63`.
pub const STALENESS_BUCKETS: usize = 64;

/// Pushes and calls the server refused, by reason. Parameters were unchanged by each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    /// Gradient of the wrong length (InvalidArgument).
    pub wrong_length: u64,
    /// Gradient with NaN or infinity (InvalidArgument).
    pub non_finite: u64,
    /// Unknown model id (NotFound).
    pub unknown_model: u64,
    /// Pulled version newer than the server's (InvalidArgument).
    pub future_version: u64,
    /// Missing or wrong token (Unauthenticated).
    pub unauthenticated: u64,
    /// Push streams that broke before their last chunk (never applied).
    pub aborted: u64,
    /// Malformed messages (chunks out of order, bad sizes).
    pub malformed: u64,
    /// Pushes dropped as too stale (bounded staleness, past synchronous rounds).
    pub stale: u64,
    /// DC-ASGD pushes applied uncompensated because their snapshot was evicted.
    pub dc_missing_snapshot: u64,
    /// Pushes refused because the server was shutting down (Unavailable).
    #[serde(default)]
    pub shutting_down: u64,
    /// Pushes refused beyond the limits on concurrent pushes (ResourceExhausted).
    #[serde(default)]
    pub busy: u64,
    /// Push streams dropped after sending nothing for the idle timeout (Aborted).
    #[serde(default)]
    pub idle: u64,
    /// Workers refused because their model, plan or data digests differ (FailedPrecondition).
    #[serde(default)]
    pub mismatch: u64,
}

/// Per-worker push statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// The worker's id.
    pub worker_id: u32,
    /// Valid pushes received (applied, buffered or refused as stale).
    pub pushes: u64,
    /// Pushes applied (asynchronous policies).
    pub applied: u64,
    /// Pushes kept for a synchronous round.
    pub buffered: u64,
    /// Pushes dropped as too stale.
    pub refused_stale: u64,
    /// Mean staleness over valid pushes.
    pub mean_staleness: f64,
    /// Largest staleness seen.
    pub max_staleness: u64,
    /// Staleness histogram (see [`STALENESS_BUCKETS`]), trailing zeros trimmed.
    pub histogram: Vec<u64>,
    #[serde(skip)]
    staleness_sum: u64,
}

impl WorkerStats {
    fn new(worker_id: u32) -> Self {
        Self {
            worker_id,
            pushes: 0,
            applied: 0,
            buffered: 0,
            refused_stale: 0,
            mean_staleness: 0.0,
            max_staleness: 0,
            histogram: vec![0; STALENESS_BUCKETS],
            staleness_sum: 0,
        }
    }
}

/// What became of a valid push, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// Applied at once.
    Applied,
    /// Kept for a synchronous round.
    Buffered,
    /// Dropped as too stale.
    RefusedStale,
}

/// The server's own facts: the `details` of its `summary.json` ([`RunSummary`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model id.
    pub model_id: String,
    /// Policy name.
    pub policy: String,
    /// Version when the server started (non-zero after a resume).
    pub start_version: u64,
    /// Version at the end.
    pub final_version: u64,
    /// Updates applied by this server process.
    pub updates: u64,
    /// Seconds the server ran.
    pub elapsed_s: f64,
    /// `updates / elapsed_s`.
    pub updates_per_s: f64,
    /// Valid pushes received.
    pub pushes: u64,
    /// Mean staleness over all valid pushes.
    pub mean_staleness: f64,
    /// Staleness histogram over all workers.
    pub histogram: Vec<u64>,
    /// Per worker.
    pub workers: Vec<WorkerStats>,
    /// Refusals by reason.
    pub refusals: Refusals,
    /// Last logged training loss.
    pub last_train_loss: Option<f64>,
    /// Last logged training accuracy.
    pub last_train_accuracy: Option<f64>,
    /// Last evaluation.
    pub last_eval: Option<EvalRow>,
    /// Which evaluation `best.safetensors` holds, when the evaluator writes model files
    /// ([`Evaluator::writes_model_files`](crate::gradient::Evaluator::writes_model_files)).
    #[serde(default)]
    pub best_model: Option<BestModel>,
}

/// A server run's `summary.json`.
pub type RunRecord = RunSummary<Summary>;

#[derive(Debug, Default)]
struct Interval {
    pushes: u64,
    staleness_sum: u64,
    staleness_max: u64,
    loss_sum: f64,
    loss_n: u64,
    acc_sum: f64,
    acc_n: u64,
}

/// Collects the server's metrics (kept by the server behind its own lock).
#[derive(Debug)]
pub struct Metrics {
    start: Instant,
    model_id: String,
    policy: String,
    log_every: u64,
    start_version: u64,
    workers: BTreeMap<u32, WorkerStats>,
    /// Refusals by reason.
    pub refusals: Refusals,
    interval: Interval,
    last_row: (Instant, u64),
    rows: Vec<TrainRow>,
    evals: Vec<EvalRow>,
    optimizer: String,
    examples_per_epoch: Option<u64>,
    /// Examples in the applied gradients so far.
    examples: u64,
    /// `train.csv` and `eval.csv`, appended to as rows come ([`Metrics::stream_to`]).
    logs: Option<(RowLog, RowLog)>,
    /// Whether the evaluator writes `model.safetensors` and `best.safetensors`.
    model_files: bool,
}

/// A CSV file that rows are appended to, and flushed, one by one.
struct RowLog {
    path: PathBuf,
    writer: csv::Writer<std::fs::File>,
    failed: bool,
}

impl std::fmt::Debug for RowLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowLog").field("path", &self.path).finish()
    }
}

impl RowLog {
    /// Starts `path` afresh with `kept` (written atomically), to be appended to.
    fn open<T: Serialize>(path: &Path, kept: &[T]) -> Result<Self, PsError> {
        write_rows(path, kept)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| PsError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: csv::WriterBuilder::new()
                .has_headers(kept.is_empty())
                .from_writer(file),
            failed: false,
        })
    }

    /// Appends `row` and flushes it to the file (an error is logged once; the final write
    /// of the record still rewrites the file).
    fn append<T: Serialize>(&mut self, row: &T) {
        if self.failed {
            return;
        }
        let r = self
            .writer
            .serialize(row)
            .map_err(|e| e.to_string())
            .and_then(|()| self.writer.flush().map_err(|e| e.to_string()));
        if let Err(e) = r {
            tracing::error!(path = %self.path.display(), error = %e, "cannot append a metrics row");
            self.failed = true;
        }
    }
}

/// The rows of `path` up to `version` (those a resumed run keeps), as far as they parse: a
/// crash may have cut the last line short.
fn rows_up_to<T: serde::de::DeserializeOwned>(
    path: &Path,
    version: u64,
    update: impl Fn(&T) -> u64,
) -> Vec<T> {
    let Ok(mut r) = csv::Reader::from_path(path) else {
        return Vec::new();
    };
    r.deserialize::<T>()
        .map_while(Result::ok)
        .filter(|row| update(row) <= version)
        .collect()
}

impl Metrics {
    /// Starts collecting at `start_version`, one row every `log_every` updates.
    pub fn new(model_id: &str, policy: &str, log_every: u64, start_version: u64) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            model_id: model_id.into(),
            policy: policy.into(),
            log_every: log_every.max(1),
            start_version,
            workers: BTreeMap::new(),
            refusals: Refusals::default(),
            interval: Interval::default(),
            last_row: (now, start_version),
            rows: Vec::new(),
            evals: Vec::new(),
            optimizer: String::new(),
            examples_per_epoch: None,
            examples: 0,
            logs: None,
            model_files: false,
        }
    }

    /// Names the optimizer for the summary, and counts epochs of `examples_per_epoch`.
    pub fn with_run(mut self, optimizer: &str, examples_per_epoch: Option<u64>) -> Self {
        self.optimizer = optimizer.into();
        self.examples_per_epoch = examples_per_epoch.filter(|&n| n > 0);
        self
    }

    /// Records whether the evaluator writes the evaluated models into the run folder, so that
    /// the summary names the best one.
    pub fn set_model_files(&mut self, model_files: bool) {
        self.model_files = model_files;
    }

    /// Epochs of training data in the gradients applied so far, when known.
    fn epoch(&self) -> Option<f64> {
        self.examples_per_epoch
            .map(|n| self.examples as f64 / n as f64)
    }

    /// Records a valid push from `worker` with staleness `tau`.
    pub fn record_push(&mut self, worker: u32, tau: u64, kind: PushKind, stats: &BatchStats) {
        let w = self
            .workers
            .entry(worker)
            .or_insert_with(|| WorkerStats::new(worker));
        w.pushes += 1;
        if kind != PushKind::RefusedStale {
            self.examples += stats.batch_size;
        }
        match kind {
            PushKind::Applied => w.applied += 1,
            PushKind::Buffered => w.buffered += 1,
            PushKind::RefusedStale => w.refused_stale += 1,
        }
        w.staleness_sum += tau;
        w.max_staleness = w.max_staleness.max(tau);
        w.histogram[(tau as usize).min(STALENESS_BUCKETS - 1)] += 1;
        let iv = &mut self.interval;
        iv.pushes += 1;
        iv.staleness_sum += tau;
        iv.staleness_max = iv.staleness_max.max(tau);
        if stats.loss.is_finite() && stats.batch_size > 0 {
            iv.loss_sum += stats.loss;
            iv.loss_n += 1;
        }
        if let Some(a) = stats.accuracy.filter(|a| a.is_finite()) {
            iv.acc_sum += a;
            iv.acc_n += 1;
        }
    }

    /// Records that the server reached `version` with the scheduled values `s`; closes a row
    /// every `log_every` updates.
    pub fn record_update(&mut self, version: u64, s: QhmParams) {
        if version.is_multiple_of(self.log_every) {
            self.close_row(version, s);
        }
    }

    fn close_row(&mut self, version: u64, s: QhmParams) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_row.0).as_secs_f64();
        let du = version.saturating_sub(self.last_row.1);
        let iv = std::mem::take(&mut self.interval);
        let epoch = self.epoch();
        self.rows.push(TrainRow {
            update: version,
            epoch,
            elapsed_s: now.duration_since(self.start).as_secs_f64(),
            loss: (iv.loss_n > 0).then(|| iv.loss_sum / iv.loss_n as f64),
            accuracy: (iv.acc_n > 0).then(|| iv.acc_sum / iv.acc_n as f64),
            lr: s.lr,
            momentum: Some(s.beta),
            nu: Some(s.nu),
            updates_per_s: Some(if dt > 0.0 { du as f64 / dt } else { 0.0 }),
            pushes: Some(iv.pushes),
            mean_staleness: Some(if iv.pushes > 0 {
                iv.staleness_sum as f64 / iv.pushes as f64
            } else {
                0.0
            }),
            max_staleness: Some(iv.staleness_max),
            ..TrainRow::default()
        });
        self.last_row = (now, version);
        if let (Some((train, _)), Some(row)) = (&mut self.logs, self.rows.last()) {
            train.append(row);
        }
    }

    /// From now on appends each row of `train.csv` and `eval.csv` in `dir` (created if
    /// missing) as it is recorded, flushed, so that a crash keeps them. A run resumed at a
    /// version above 0 keeps the files' rows up to that version (the later ones were lost
    /// with the updates after the checkpoint), and counts them as its own (in the summary and
    /// in [`Metrics::eval_point`]); otherwise the files start empty.
    pub fn stream_to(&mut self, dir: &Path) -> Result<(), PsError> {
        std::fs::create_dir_all(dir).map_err(|source| PsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (train, eval) = (dir.join(TRAIN_FILE), dir.join(EVAL_FILE));
        let v = self.start_version;
        let (kept_train, kept_eval) = if v > 0 {
            (
                rows_up_to(&train, v, |r: &TrainRow| r.update),
                rows_up_to(&eval, v, |r: &EvalRow| r.update),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let mut train = RowLog::open(&train, &kept_train)?;
        let mut eval = RowLog::open(&eval, &kept_eval)?;
        for r in &self.rows {
            train.append(r);
        }
        for r in &self.evals {
            eval.append(r);
        }
        self.logs = Some((train, eval));
        // The kept rows belong to this run: its best evaluation and summary count them.
        self.rows.splice(0..0, kept_train);
        self.evals.splice(0..0, kept_eval);
        Ok(())
    }

    /// Where an evaluation of `version` happens now: the epoch, and the best evaluation so
    /// far (a resumed run's included).
    pub fn eval_point(&self, version: u64) -> EvalPoint {
        EvalPoint {
            version,
            epoch: self.epoch(),
            best: best_model(&self.evals).map(|(best, _)| best),
        }
    }

    /// Records an evaluation at `at` ([`Metrics::eval_point`]).
    pub fn record_eval(&mut self, at: &EvalPoint, stats: EvalStats) {
        self.evals.push(EvalRow {
            update: at.version,
            epoch: at.epoch,
            elapsed_s: self.start.elapsed().as_secs_f64(),
            loss: stats.loss,
            accuracy: stats.accuracy,
            examples: stats.examples,
            val_loss: stats.val_loss,
            val_accuracy: stats.val_accuracy,
        });
        if let (Some((_, eval)), Some(row)) = (&mut self.logs, self.evals.last()) {
            eval.append(row);
        }
    }

    /// The training rows so far.
    pub fn rows(&self) -> &[TrainRow] {
        &self.rows
    }

    /// The evaluations so far.
    pub fn evals(&self) -> &[EvalRow] {
        &self.evals
    }

    /// Statistics of one worker.
    pub fn worker(&self, id: u32) -> Option<WorkerStats> {
        self.workers.get(&id).map(finish_worker)
    }

    /// The summary at `version`.
    pub fn summary(&self, version: u64) -> Summary {
        let elapsed = self.start.elapsed().as_secs_f64();
        let updates = version.saturating_sub(self.start_version);
        let workers: Vec<WorkerStats> = self.workers.values().map(finish_worker).collect();
        let pushes: u64 = workers.iter().map(|w| w.pushes).sum();
        let sum: u64 = self.workers.values().map(|w| w.staleness_sum).sum();
        let mut histogram = vec![0u64; STALENESS_BUCKETS];
        for w in self.workers.values() {
            for (h, x) in histogram.iter_mut().zip(&w.histogram) {
                *h += x;
            }
        }
        trim(&mut histogram);
        let last_loss = self.rows.iter().rev().find_map(|r| r.loss);
        let last_acc = self.rows.iter().rev().find_map(|r| r.accuracy);
        Summary {
            model_id: self.model_id.clone(),
            policy: self.policy.clone(),
            start_version: self.start_version,
            final_version: version,
            updates,
            elapsed_s: elapsed,
            updates_per_s: if elapsed > 0.0 {
                updates as f64 / elapsed
            } else {
                0.0
            },
            pushes,
            mean_staleness: if pushes > 0 {
                sum as f64 / pushes as f64
            } else {
                0.0
            },
            histogram,
            workers,
            refusals: self.refusals.clone(),
            last_train_loss: last_loss,
            last_train_accuracy: last_acc,
            last_eval: self.evals.last().cloned(),
            best_model: if self.model_files {
                best_model(&self.evals).map(|(best, _)| best)
            } else {
                None
            },
        }
    }

    /// Writes the run record into `dir` (created if missing): `train.csv`, `eval.csv` and
    /// `summary.json` for a run of `kind` at `version`, `completed` when its budget is spent.
    pub fn write(
        &self,
        dir: &Path,
        version: u64,
        kind: RunKind,
        completed: bool,
    ) -> Result<Summary, PsError> {
        // Streamed files already hold every row (and those of the run this one resumed).
        if self.logs.is_none() {
            write_rows(&dir.join(TRAIN_FILE), &self.rows)?;
            write_rows(&dir.join(EVAL_FILE), &self.evals)?;
        }
        let summary = self.summary(version);
        let record = RunSummary {
            updates: version,
            epochs: self.epoch(),
            wall_seconds: summary.elapsed_s,
            completed,
            ..RunSummary::new(kind, &self.model_id, &self.optimizer, summary.clone())
                .with_evals(&self.evals)
        };
        record.save(dir)?;
        Ok(summary)
    }
}

fn trim(h: &mut Vec<u64>) {
    while h.len() > 1 && h.last() == Some(&0) {
        h.pop();
    }
}

fn finish_worker(w: &WorkerStats) -> WorkerStats {
    let mut w = w.clone();
    w.mean_staleness = if w.pushes > 0 {
        w.staleness_sum as f64 / w.pushes as f64
    } else {
        0.0
    };
    trim(&mut w.histogram);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_rows_are_on_disk_at_once_and_a_resume_keeps_those_up_to_its_version() {
        let scheduled = QhmParams {
            lr: 0.1,
            beta: 0.0,
            nu: 0.0,
        };
        let dir = tempfile::tempdir().unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        let mut m = Metrics::new("m", "asgd", 2, 0);
        m.stream_to(dir.path()).unwrap();
        for v in 1..=6 {
            m.record_update(v, scheduled);
        }
        m.record_eval(
            &m.eval_point(6),
            EvalStats {
                loss: 0.5,
                ..EvalStats::default()
            },
        );
        // Written and flushed before any `write`: a crash now keeps them.
        assert_eq!(
            read("train.csv").lines().count(),
            4,
            "{}",
            read("train.csv")
        );
        assert_eq!(read("eval.csv").lines().count(), 2);
        // A crash cut the last line short; the run resumes at version 4.
        let mut cut = read("train.csv");
        cut.push_str("8,1.0,0.5");
        std::fs::write(dir.path().join("train.csv"), cut).unwrap();
        let mut m = Metrics::new("m", "asgd", 2, 4);
        m.stream_to(dir.path()).unwrap();
        m.record_update(6, scheduled);
        let rows: Vec<TrainRow> =
            stagewise_core::record::read_rows(&dir.path().join("train.csv")).unwrap();
        let updates: Vec<u64> = rows.iter().map(|r| r.update).collect();
        assert_eq!(updates, [2, 4, 6]);
        assert_eq!(
            read("eval.csv").lines().count(),
            0,
            "the evaluation at 6 was lost"
        );
        m.write(dir.path(), 6, RunKind::PsServe, false).unwrap();
        assert_eq!(read("train.csv").lines().count(), 4);
    }

    #[test]
    fn histogram_rows_and_files() {
        let mut m = Metrics::new("m", "asgd", 2, 0).with_run("qhm", Some(8));
        let s = BatchStats {
            loss: 1.0,
            accuracy: Some(0.5),
            batch_size: 4,
        };
        let scheduled = QhmParams {
            lr: 0.1,
            beta: 0.9,
            nu: 0.7,
        };
        for (v, tau) in [(1u64, 0u64), (2, 3), (3, 100)] {
            m.record_push(7, tau, PushKind::Applied, &s);
            m.record_update(v, scheduled);
        }
        let w = m.worker(7).unwrap();
        assert_eq!(w.pushes, 3);
        assert_eq!(w.histogram[0], 1);
        assert_eq!(w.histogram[3], 1);
        assert_eq!(w.histogram[STALENESS_BUCKETS - 1], 1);
        assert!((w.mean_staleness - 103.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.rows().len(), 1);
        assert_eq!(m.rows()[0].mean_staleness, Some(1.5));
        // Two pushes of 4 examples over 8 per epoch: one epoch.
        assert_eq!(m.rows()[0].epoch, Some(1.0));
        assert_eq!(m.rows()[0].momentum, Some(0.9));
        let dir = tempfile::tempdir().unwrap();
        let sum = m.write(dir.path(), 3, RunKind::Asgd, true).unwrap();
        assert_eq!(sum.updates, 3);
        let csv = std::fs::read_to_string(dir.path().join("train.csv")).unwrap();
        assert_eq!(csv.lines().count(), 2);
        let back = RunRecord::load(dir.path()).unwrap();
        assert_eq!(back.details.workers[0].max_staleness, 100);
        assert_eq!((back.kind, back.optimizer.as_str()), (RunKind::Asgd, "qhm"));
        assert_eq!(back.epochs, Some(1.5));
    }

    #[test]
    fn a_resumed_run_counts_its_kept_evaluations_in_the_best_model() {
        let dir = tempfile::tempdir().unwrap();
        let eval = |m: &mut Metrics, v: u64, acc: f64| {
            let at = m.eval_point(v);
            m.record_eval(
                &at,
                EvalStats {
                    loss: 1.0 - acc,
                    accuracy: Some(acc),
                    examples: 10,
                    ..EvalStats::default()
                },
            );
        };
        let mut m = Metrics::new("m", "asgd", 2, 0);
        m.stream_to(dir.path()).unwrap();
        m.set_model_files(true);
        eval(&mut m, 2, 0.9);
        eval(&mut m, 4, 0.5);
        // Before the second evaluation the first was the best; after it, still the first.
        assert_eq!(m.eval_point(5).best.unwrap().update, 2);
        // The server restarts from its checkpoint at version 4: both rows are kept.
        let mut m = Metrics::new("m", "asgd", 2, 4);
        m.set_model_files(true);
        m.stream_to(dir.path()).unwrap();
        let at = m.eval_point(6);
        let best = at.best.clone().unwrap();
        assert_eq!((best.update, best.chosen_on.as_str()), (2, "test"));
        assert_eq!(best.accuracy, Some(0.9));
        assert!(
            !at.is_best(Some(0.9), None),
            "the first of equals stays best"
        );
        assert!(at.is_best(Some(0.95), None));
        eval(&mut m, 6, 0.8);
        let summary = m.write(dir.path(), 6, RunKind::PsServe, true).unwrap();
        assert_eq!(summary.best_model.unwrap().update, 2);
        let record = RunRecord::load(dir.path()).unwrap();
        assert_eq!(record.best_eval.unwrap().update, 2);
        assert_eq!(record.final_eval.unwrap().update, 6);
        // Without model files the summary names none.
        m.set_model_files(false);
        assert_eq!(m.summary(6).best_model, None);
    }
}
