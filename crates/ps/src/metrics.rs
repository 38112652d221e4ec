//! Server metrics: updates per second, staleness per worker, training and evaluation curves,
//! refusals; written like a trainer's metrics (`train.csv`, `eval.csv`, `summary.json`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::PsError;
use crate::gradient::{BatchStats, EvalStats};

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

/// One row of `train.csv`: an interval of `log_every` updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRow {
    /// Server version at the end of the interval.
    pub version: u64,
    /// Seconds since the server started.
    pub elapsed_s: f64,
    /// Updates per second over the interval.
    pub updates_per_s: f64,
    /// Valid pushes in the interval.
    pub pushes: u64,
    /// Mean staleness of those pushes.
    pub mean_staleness: f64,
    /// Largest staleness among them.
    pub max_staleness: u64,
    /// Mean worker batch loss (at the pulled parameters), if reported.
    pub loss: Option<f64>,
    /// Mean worker batch accuracy, if reported.
    pub accuracy: Option<f64>,
    /// Scheduled learning rate at the end of the interval (before staleness scaling).
    pub lr: f64,
}

/// One row of `eval.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Version evaluated.
    pub version: u64,
    /// Seconds since the server started.
    pub elapsed_s: f64,
    /// The evaluator's result.
    pub stats: EvalStats,
}

/// The whole run in one JSON object (`summary.json`).
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
}

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
        }
    }

    /// Records a valid push from `worker` with staleness `tau`.
    pub fn record_push(&mut self, worker: u32, tau: u64, kind: PushKind, stats: &BatchStats) {
        let w = self
            .workers
            .entry(worker)
            .or_insert_with(|| WorkerStats::new(worker));
        w.pushes += 1;
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

    /// Records that the server reached `version` with scheduled learning rate `lr`; closes a
    /// row every `log_every` updates.
    pub fn record_update(&mut self, version: u64, lr: f64) {
        if version.is_multiple_of(self.log_every) {
            self.close_row(version, lr);
        }
    }

    fn close_row(&mut self, version: u64, lr: f64) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_row.0).as_secs_f64();
        let du = version.saturating_sub(self.last_row.1);
        let iv = std::mem::take(&mut self.interval);
        self.rows.push(TrainRow {
            version,
            elapsed_s: now.duration_since(self.start).as_secs_f64(),
            updates_per_s: if dt > 0.0 { du as f64 / dt } else { 0.0 },
            pushes: iv.pushes,
            mean_staleness: if iv.pushes > 0 {
                iv.staleness_sum as f64 / iv.pushes as f64
            } else {
                0.0
            },
            max_staleness: iv.staleness_max,
            loss: (iv.loss_n > 0).then(|| iv.loss_sum / iv.loss_n as f64),
            accuracy: (iv.acc_n > 0).then(|| iv.acc_sum / iv.acc_n as f64),
            lr,
        });
        self.last_row = (now, version);
    }

    /// Records an evaluation of `version`.
    pub fn record_eval(&mut self, version: u64, stats: EvalStats) {
        self.evals.push(EvalRow {
            version,
            elapsed_s: self.start.elapsed().as_secs_f64(),
            stats,
        });
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
        }
    }

    /// Writes `train.csv`, `eval.csv` and `summary.json` into `dir` (created if missing).
    pub fn write(&self, dir: &Path, version: u64) -> Result<Summary, PsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PsError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let fmt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let mut train = String::from(
            "version,elapsed_s,updates_per_s,pushes,mean_staleness,max_staleness,loss,accuracy,lr\n",
        );
        for r in &self.rows {
            train.push_str(&format!(
                "{},{:.4},{:.3},{},{:.4},{},{},{},{}\n",
                r.version,
                r.elapsed_s,
                r.updates_per_s,
                r.pushes,
                r.mean_staleness,
                r.max_staleness,
                fmt(r.loss),
                fmt(r.accuracy),
                r.lr
            ));
        }
        let mut eval = String::from("version,elapsed_s,loss,accuracy,examples\n");
        for r in &self.evals {
            eval.push_str(&format!(
                "{},{:.4},{},{},{}\n",
                r.version,
                r.elapsed_s,
                r.stats.loss,
                fmt(r.stats.accuracy),
                r.stats.examples
            ));
        }
        let summary = self.summary(version);
        let json = serde_json::to_string_pretty(&summary).unwrap_or_else(|_| "{}".into());
        for (name, text) in [
            ("train.csv", train),
            ("eval.csv", eval),
            ("summary.json", json),
        ] {
            let path = dir.join(name);
            let mut f = std::fs::File::create(&path).map_err(io(&path))?;
            f.write_all(text.as_bytes()).map_err(io(&path))?;
        }
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
    fn histogram_rows_and_files() {
        let mut m = Metrics::new("m", "asgd", 2, 0);
        let s = BatchStats {
            loss: 1.0,
            accuracy: Some(0.5),
            batch_size: 4,
        };
        for (v, tau) in [(1u64, 0u64), (2, 3), (3, 100)] {
            m.record_push(7, tau, PushKind::Applied, &s);
            m.record_update(v, 0.1);
        }
        let w = m.worker(7).unwrap();
        assert_eq!(w.pushes, 3);
        assert_eq!(w.histogram[0], 1);
        assert_eq!(w.histogram[3], 1);
        assert_eq!(w.histogram[STALENESS_BUCKETS - 1], 1);
        assert!((w.mean_staleness - 103.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.rows().len(), 1);
        assert_eq!(m.rows()[0].mean_staleness, 1.5);
        let dir = tempfile::tempdir().unwrap();
        let sum = m.write(dir.path(), 3).unwrap();
        assert_eq!(sum.updates, 3);
        let csv = std::fs::read_to_string(dir.path().join("train.csv")).unwrap();
        assert_eq!(csv.lines().count(), 2);
        let back: Summary = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(back.workers[0].max_staleness, 100);
    }
}
