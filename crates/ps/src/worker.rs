//! The worker loop: pull, compute, push, repeat — the same for every transport.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, PsError};
use crate::gradient::{BatchStats, GradientSource};
use crate::server::PushOutcome;

/// What a pull from every shard returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The version of each shard (in the client's shard order).
    pub versions: Vec<u64>,
    /// Some shard has spent its update budget.
    pub finished: bool,
}

/// A worker's view of the parameter server, whatever the transport.
pub trait PsClient {
    /// Parameters of the whole model.
    fn num_params(&self) -> usize;

    /// Number of shards.
    fn num_shards(&self) -> usize;

    /// Fills `params` (the whole model) from every shard, waiting until shard `i` is at least
    /// at `min_versions[i]`.
    fn pull(&mut self, min_versions: &[u64], params: &mut [f32]) -> Result<Pulled, PsError>;

    /// Pushes `grads` (the whole model); shard `i` gets its slice with `versions[i]`.
    fn push(
        &mut self,
        versions: &[u64],
        grads: &[f32],
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError>;

    /// [`PsClient::push`] of a gradient in a shared buffer, which a transport may send
    /// without copying it (gRPC does); the worker loop uses this. Transports hold no
    /// reference to `grads` once this returns, except on errors.
    fn push_shared(
        &mut self,
        versions: &[u64],
        grads: &Arc<Vec<f32>>,
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        self.push(versions, grads, stats)
    }
}

/// When a worker stops on its own (it also stops when the server finishes).
#[derive(Debug, Clone, Default)]
pub struct WorkerLimits {
    /// After this many pushes.
    pub max_pushes: Option<u64>,
    /// After this long.
    pub max_duration: Option<Duration>,
    /// When this flag is set.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What one worker did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's id.
    pub worker_id: u32,
    /// Pushes sent.
    pub pushes: u64,
    /// Pushes applied by every shard.
    pub applied: u64,
    /// Pushes kept for a synchronous round.
    pub buffered: u64,
    /// Pushes some shard dropped as too stale.
    pub refused_stale: u64,
    /// Mean staleness (over shards and pushes).
    pub mean_staleness: f64,
    /// Loss of the first batch.
    pub first_loss: Option<f64>,
    /// Loss of the last batch.
    pub last_loss: Option<f64>,
    /// Seconds the worker ran.
    pub elapsed_s: f64,
    /// Why it stopped.
    pub stopped: String,
    /// Times a server was lost and reconnected to (each drops the pull or push in flight).
    #[serde(default)]
    pub reconnects: u64,
    /// The error that stopped it, if any.
    pub error: Option<String>,
}

impl WorkerReport {
    /// The report of worker `worker_id` before it did anything.
    pub fn new(worker_id: u32) -> Self {
        Self {
            worker_id,
            pushes: 0,
            applied: 0,
            buffered: 0,
            refused_stale: 0,
            mean_staleness: 0.0,
            first_loss: None,
            last_loss: None,
            elapsed_s: 0.0,
            stopped: String::new(),
            reconnects: 0,
            error: None,
        }
    }
}

/// Runs the pull–compute–push loop until a limit, the server's end or an error.
///
/// Pull timeouts (a synchronous round or an SSP wait that took too long) are retried; other
/// errors end the loop and are returned.
pub fn worker_loop(
    worker_id: u32,
    client: &mut dyn PsClient,
    source: &mut dyn GradientSource,
    limits: &WorkerLimits,
) -> Result<WorkerReport, PsError> {
    let n = client.num_params();
    if source.num_params() != n {
        return Err(ConfigError::new(
            "source",
            format!(
                "the gradient source has {} parameters, the server {n}",
                source.num_params()
            ),
        )
        .into());
    }
    let start = Instant::now();
    let mut params = vec![0.0f32; n];
    // Shared so that a transport can send it without a copy; `make_mut` copies only if a
    // transport still held it.
    let mut grads = Arc::new(vec![0.0f32; n]);
    let mut min_versions = vec![0u64; client.num_shards()];
    let mut report = WorkerReport::new(worker_id);
    let (mut tau_sum, mut tau_n) = (0u64, 0u64);
    let stopped = loop {
        if limits.max_pushes.is_some_and(|m| report.pushes >= m) {
            break "max_pushes";
        }
        if limits.max_duration.is_some_and(|d| start.elapsed() >= d) {
            break "max_duration";
        }
        if limits
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            break "stopped";
        }
        let pulled = match client.pull(&min_versions, &mut params) {
            Ok(p) => p,
            Err(PsError::WaitTimeout { .. }) => {
                min_versions.fill(0);
                continue;
            }
            Err(PsError::Reconnected) => {
                report.reconnects += 1;
                min_versions.fill(0);
                continue;
            }
            Err(e) => return Err(e),
        };
        if pulled.finished {
            break "server finished";
        }
        let stats = source.compute(&params, Arc::make_mut(&mut grads).as_mut_slice())?;
        let outcomes = match client.push_shared(&pulled.versions, &grads, stats) {
            Ok(o) => o,
            Err(PsError::Reconnected) => {
                report.reconnects += 1;
                min_versions.fill(0);
                continue;
            }
            Err(e) => return Err(e),
        };
        report.pushes += 1;
        report.first_loss.get_or_insert(stats.loss);
        report.last_loss = Some(stats.loss);
        let mut finished = false;
        let (mut all_applied, mut any_stale, mut any_buffered) = (true, false, false);
        for (i, o) in outcomes.iter().enumerate() {
            min_versions[i] = 0;
            match *o {
                PushOutcome::Applied { staleness, .. } => {
                    tau_sum += staleness;
                    tau_n += 1;
                }
                PushOutcome::Buffered { version, staleness } => {
                    tau_sum += staleness;
                    tau_n += 1;
                    any_buffered = true;
                    all_applied = false;
                    min_versions[i] = version + 1;
                }
                PushOutcome::RefusedStale { staleness, .. } => {
                    tau_sum += staleness;
                    tau_n += 1;
                    any_stale = true;
                    all_applied = false;
                }
                PushOutcome::Finished { .. } => {
                    finished = true;
                    all_applied = false;
                }
            }
        }
        report.applied += u64::from(all_applied);
        report.buffered += u64::from(any_buffered);
        report.refused_stale += u64::from(any_stale);
        if finished {
            break "server finished";
        }
    };
    report.mean_staleness = if tau_n > 0 {
        tau_sum as f64 / tau_n as f64
    } else {
        0.0
    };
    report.elapsed_s = start.elapsed().as_secs_f64();
    report.stopped = stopped.to_string();
    Ok(report)
}
