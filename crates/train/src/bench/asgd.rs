//! In-process ASGD throughput under each way of sharing the cores between worker threads and
//! kernel threads ([`KernelSplit`]): updates per second of M burn workers on synthetic images.

use serde::Serialize;
use stagewise_data::{synthetic, SyntheticConfig};
use stagewise_ps::config::ScheduleConfig;
use stagewise_ps::{AsgdConfig, GradientSource, ServerConfig};

use crate::asgd::{initial_params, BatchSizing, ModelWorker};
use crate::data::{DataConfig, DatasetKind};
use crate::model::ModelKind;
use crate::threads::KernelSplit;
use crate::TrainError;

/// One measurement of [`bench_asgd_split`].
#[derive(Debug, Clone, Serialize)]
pub struct SplitBench {
    /// The model.
    pub model: ModelKind,
    /// Worker threads M.
    pub workers: usize,
    /// How the cores were shared.
    pub split: KernelSplit,
    /// Threads in all (T).
    pub threads: usize,
    /// Kernel threads per worker (T for [`KernelSplit::Shared`], whose pool all share).
    pub kernel_threads_per_worker: usize,
    /// Examples per gradient.
    pub batch_size: usize,
    /// Updates the server applied.
    pub updates: u64,
    /// Seconds the workers ran.
    pub seconds: f64,
    /// Updates per second.
    pub updates_per_s: f64,
    /// Images per second (updates/s × batch size).
    pub images_per_s: f64,
}

/// Runs `workers` in-process workers of `kind` for `seconds` on synthetic data, their kernels
/// split over `threads` threads as `split` says, and measures the server's updates per second.
///
/// # Errors
///
/// A configuration the parameter server or the workers refuse, or threads the system does not
/// start.
pub fn bench_asgd_split(
    kind: ModelKind,
    workers: usize,
    split: KernelSplit,
    threads: usize,
    batch_size: usize,
    seconds: f64,
) -> Result<SplitBench, TrainError> {
    let data = DataConfig {
        dataset: DatasetKind::Synthetic,
        ..DataConfig::default()
    };
    let train = synthetic(&SyntheticConfig {
        train_size: (batch_size * 8 * workers).max(64),
        test_size: 10,
        ..SyntheticConfig::default()
    })
    .map_err(|e| TrainError::Config(e.to_string()))?
    .train;
    let pools = split
        .pools(threads, workers)
        .map_err(|e| TrainError::Config(format!("starting kernel threads: {e}")))?;
    let kernel_threads_per_worker = pools[0]
        .as_ref()
        .map_or(rayon::current_num_threads(), |p| p.current_num_threads());
    let sources = pools
        .into_iter()
        .enumerate()
        .map(|(i, pool)| {
            let w = ModelWorker::new(
                kind,
                &train,
                i,
                workers,
                &data,
                BatchSizing::Fixed(batch_size),
                0,
            )?
            .with_pool(pool);
            Ok(Box::new(w) as Box<dyn GradientSource>)
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    // A small constant rate: the updates must stay finite on random images; their cost does
    // not depend on the values.
    let config = AsgdConfig {
        server: ServerConfig {
            max_updates: None,
            schedule: ScheduleConfig::Constant {
                lr: 0.01,
                momentum: 0.9,
                nu: 0.7,
            },
            ..ServerConfig::default()
        },
        max_seconds: Some(seconds),
        ..AsgdConfig::default()
    };
    let report = stagewise_ps::run_in_process_from(config, initial_params(kind, 0), sources, None)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    if let Some(err) = report.workers.iter().find_map(|w| w.error.clone()) {
        return Err(TrainError::Config(format!("a worker failed: {err}")));
    }
    let seconds = report
        .workers
        .iter()
        .map(|w| w.elapsed_s)
        .fold(0.0, f64::max);
    let updates = report.summary.updates;
    let updates_per_s = updates as f64 / seconds.max(1e-9);
    Ok(SplitBench {
        model: kind,
        workers,
        split,
        threads,
        kernel_threads_per_worker,
        batch_size,
        updates,
        seconds,
        updates_per_s,
        images_per_s: updates_per_s * batch_size as f64,
    })
}
