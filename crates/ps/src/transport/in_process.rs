//! In-process asynchronous SGD: the server and one thread per worker in this process, no
//! network (`stagewise asgd --workers N`).
//!
//! Workers call the shared [`ParamServer`] directly; a pull copies the parameters into the
//! worker's buffer under the server's lock and a push applies under it, so the cost of an
//! update is the optimizer's pass over memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::AsgdConfig;
use crate::error::{ConfigError, PsError};
use crate::gradient::{BatchStats, Evaluator, GradientSource};
use crate::metrics::Summary;
use crate::server::{ParamServer, PullRequest, Push, PushOutcome};
use crate::shard::ShardRange;
use crate::worker::{worker_loop, PsClient, Pulled, WorkerLimits, WorkerReport};

/// A worker's handle on a server in the same process.
#[derive(Clone)]
pub struct InProcessClient {
    server: Arc<ParamServer>,
    worker_id: u32,
}

impl InProcessClient {
    /// A client for `worker_id`.
    pub fn new(server: Arc<ParamServer>, worker_id: u32) -> Self {
        Self { server, worker_id }
    }
}

impl PsClient for InProcessClient {
    fn num_params(&self) -> usize {
        self.server.total_params()
    }

    fn num_shards(&self) -> usize {
        1
    }

    fn pull(&mut self, min_versions: &[u64], params: &mut [f32]) -> Result<Pulled, PsError> {
        let req = PullRequest {
            worker_id: self.worker_id,
            min_version: min_versions.first().copied().unwrap_or(0),
            wait: None,
        };
        let info = self.server.pull_into(req, params)?;
        Ok(Pulled {
            versions: vec![info.version],
            finished: info.finished,
        })
    }

    fn push(
        &mut self,
        versions: &[u64],
        grads: &[f32],
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        let outcome = self.server.push(Push {
            worker_id: self.worker_id,
            pulled_version: versions.first().copied().unwrap_or(0),
            grads,
            stats,
        })?;
        Ok(vec![outcome])
    }
}

/// The result of an in-process run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The server's metrics summary (also written to `metrics_dir`).
    pub summary: Summary,
    /// One report per worker, in source order.
    pub workers: Vec<WorkerReport>,
    /// Final version.
    pub version: u64,
    /// Final parameters: the model to use (the schedule-free average x when the optimizer has
    /// one).
    #[serde(skip)]
    pub params: Vec<f32>,
}

/// Runs asynchronous SGD in this process: a server initialised from `config.init` and one
/// worker thread per gradient source (worker ids 0, 1, …). See [`run_in_process_from`].
pub fn run_in_process(
    config: AsgdConfig,
    sources: Vec<Box<dyn GradientSource>>,
    evaluator: Option<Box<dyn Evaluator>>,
) -> Result<Report, PsError> {
    let n = sources.first().map_or(0, |s| s.num_params());
    let initial = config.init.values(n);
    run_in_process_from(config, initial, sources, evaluator)
}

/// Runs asynchronous SGD in this process from `initial` parameters (e.g. a model's own
/// initialisation) until the server's update budget or `config.max_seconds`.
///
/// The evaluator, if any, runs every `server.eval_every` updates on its own thread and once
/// more at the end. Workers that fail stop alone; their error is in their report.
pub fn run_in_process_from(
    config: AsgdConfig,
    initial: Vec<f32>,
    sources: Vec<Box<dyn GradientSource>>,
    evaluator: Option<Box<dyn Evaluator>>,
) -> Result<Report, PsError> {
    config.validate()?;
    if sources.is_empty() {
        return Err(ConfigError::new("sources", "give at least one gradient source").into());
    }
    let n = initial.len();
    if let Some((i, s)) = sources
        .iter()
        .enumerate()
        .find(|(_, s)| s.num_params() != n)
    {
        return Err(ConfigError::new(
            "sources",
            format!("source {i} has {} parameters, expected {n}", s.num_params()),
        )
        .into());
    }
    let server = Arc::new(ParamServer::new(
        &config.server,
        n,
        ShardRange::whole(n),
        initial,
    )?);
    let unbounded = !server.is_finished()
        && config.server.max_updates.is_none()
        && config.server.schedule.build()?.total_updates().is_none();
    if unbounded && config.max_seconds.is_none() {
        return Err(ConfigError::new(
            "server.max_updates",
            "an in-process run needs max_updates, a schedule that ends, or max_seconds",
        )
        .into());
    }
    let mut evaluator = evaluator;
    let eval_handle = match (config.server.eval_every, evaluator.take()) {
        (Some(_), Some(e)) => Some(server.attach_evaluator(e)),
        (_, e) => {
            evaluator = e;
            None
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let limits = WorkerLimits {
        max_pushes: None,
        max_duration: config.max_seconds.map(Duration::from_secs_f64),
        stop: Some(Arc::clone(&stop)),
    };
    // Start every worker at once, so that none runs alone while the others are spawned.
    let barrier = std::sync::Barrier::new(sources.len());
    let workers: Vec<WorkerReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .into_iter()
            .enumerate()
            .map(|(i, mut source)| {
                let mut client = InProcessClient::new(Arc::clone(&server), i as u32);
                let limits = limits.clone();
                let server = Arc::clone(&server);
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let r = worker_loop(i as u32, &mut client, &mut source, &limits);
                    // A worker that ends keeps no synchronous round waiting.
                    server.wake_all();
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| match h.join() {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => failed(i as u32, e.to_string()),
                Err(_) => failed(i as u32, "worker thread panicked".into()),
            })
            .collect()
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(handle) = eval_handle {
        evaluator = handle.finish();
    }
    if let Some(e) = evaluator.as_deref_mut() {
        server.evaluate_now(e)?;
    }
    server.checkpoint_now()?;
    let summary = match &config.metrics_dir {
        Some(dir) => server.write_metrics(dir, stagewise_core::record::RunKind::Asgd)?,
        None => server.summary(),
    };
    let (version, params) = server.eval_snapshot();
    Ok(Report {
        summary,
        workers,
        version,
        params,
    })
}

fn failed(worker_id: u32, error: String) -> WorkerReport {
    WorkerReport {
        stopped: "error".into(),
        error: Some(error),
        ..WorkerReport::new(worker_id)
    }
}
