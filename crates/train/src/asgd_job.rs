//! One in-process asynchronous run from start to its run folder: what `stagewise asgd` runs,
//! and what `stagewise compare` runs for its ASGD methods (one code path for both).
//!
//! The caller decides the plan (after any staleness rule, [`crate::asgd_rule`]) and the
//! server's configuration; [`AsgdJob::run`] builds one [`ModelWorker`] per worker on its shard,
//! a [`ModelEvaluator`] on the test set (and the validation split, when the data holds one
//! out), runs them against an in-process parameter server, and writes the run folder:
//! `train.csv`, `eval.csv` and `summary.json` (docs/run-format.md), and beside them
//! `workers.json` (the workers' reports), `config.json` (the server's configuration) and
//! `plan.toml` (the plan as run).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stagewise_core::files::write_atomic;
use stagewise_core::schedule::Plan;
use stagewise_data::Splits;
use stagewise_ps::config::{AsgdConfig, ParamInit, PolicyConfig, ServerConfig};
use stagewise_ps::{GradientSource, Report};

use crate::asgd::{initial_params, BatchSizing, ModelEvaluator, ModelWorker, StepClock};
use crate::data::DataConfig;
use crate::model::ModelKind;
use crate::trainer::TrainError;

/// Everything one in-process asynchronous run needs.
pub struct AsgdJob<'a> {
    /// The architecture.
    pub model: ModelKind,
    /// Seed of the initial parameters and of every worker's data order.
    pub seed: u64,
    /// The data configuration (normalization, augmentation).
    pub data: &'a DataConfig,
    /// The loaded data: workers shard `train`; the evaluator scores `test` and `val`.
    pub splits: &'a Splits,
    /// The plan as run (saved as `plan.toml`).
    pub plan: &'a Plan,
    /// The server: policy, optimizer, schedule (the plan over `splits.train`), budget.
    pub server: ServerConfig,
    /// Kernel thread pools, one entry per worker (`None`: the global pool); their number is
    /// the number of workers M.
    pub pools: Vec<Option<Arc<rayon::ThreadPool>>>,
    /// Fix every gradient's batch size instead of following the plan's stages.
    pub worker_batch: Option<usize>,
    /// Evaluation batch size (does not change results).
    pub eval_batch: usize,
    /// Stop every worker after this many seconds.
    pub max_seconds: Option<f64>,
}

/// A finished [`AsgdJob`]: the parameter server's report and the run folder.
pub struct AsgdOutcome {
    /// The server's summary, the workers' reports and the final parameters.
    pub report: Report,
    /// The in-process configuration that ran (also in `config.json`).
    pub config: AsgdConfig,
    /// The run folder.
    pub out: PathBuf,
}

impl AsgdJob<'_> {
    /// The number of workers M.
    pub fn workers(&self) -> usize {
        self.pools.len()
    }

    /// Runs the job, writing into `out` (created if needed).
    ///
    /// # Errors
    /// [`TrainError`] when the configuration is refused, the data is too small for the workers,
    /// the server fails, or an output cannot be written. Workers that fail stop alone; their
    /// errors are in the report, and [`AsgdOutcome::all_workers_failed`] tells whether any
    /// worker survived.
    pub fn run(self, out: &Path) -> Result<AsgdOutcome, TrainError> {
        let workers = self.workers();
        let n_train = self.splits.train.len();
        if workers == 0 || workers > n_train {
            return Err(TrainError::Config(format!(
                "workers = {workers} is out of range for {n_train} training examples; \
                 allowed: 1 ..= {n_train}"
            )));
        }
        if self.worker_batch == Some(0) {
            return Err(TrainError::Config(
                "worker_batch = 0 is out of range; allowed: >= 1".into(),
            ));
        }
        std::fs::create_dir_all(out).map_err(|e| output_error(out, e))?;
        let layout = self.plan.layout(n_train as u64)?;
        // One clock for every worker: the number of gradients computed is the server version
        // (one update per gradient), or M gradients per update under the synchronous policy.
        let clock = if matches!(self.server.policy, PolicyConfig::Sync { .. }) {
            StepClock::shared().with_scale(1.0 / workers as f64)
        } else {
            StepClock::shared()
        };
        let sources = self
            .pools
            .into_iter()
            .enumerate()
            .map(|(i, pool)| {
                let sizing = match self.worker_batch {
                    Some(b) => BatchSizing::Fixed(b),
                    None => BatchSizing::Plan {
                        layout: layout.clone(),
                        clock: clock.clone(),
                    },
                };
                let worker = ModelWorker::new(
                    self.model,
                    &self.splits.train,
                    i,
                    workers,
                    self.data,
                    sizing,
                    self.seed,
                )?
                .with_pool(pool);
                Ok(Box::new(worker) as Box<dyn GradientSource>)
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        let evaluator = ModelEvaluator::new(
            self.model,
            self.splits.test.clone(),
            self.data,
            self.eval_batch,
            self.seed,
        )?
        .with_validation(self.splits.val.clone())
        .with_export(Some(out.to_path_buf()), "asgd")
        .with_batch_norm_recompute(
            self.splits.train.clone(),
            self.plan.stages[0].batch_size as usize,
        );
        let config = AsgdConfig {
            server: self.server,
            init: ParamInit::default(),
            max_seconds: self.max_seconds,
            metrics_dir: Some(out.to_path_buf()),
        };
        let report = stagewise_ps::run_in_process_from(
            config.clone(),
            initial_params(self.model, self.seed),
            sources,
            Some(Box::new(evaluator)),
        )?;
        write_json(&out.join("workers.json"), &report.workers)?;
        write_json(&out.join("config.json"), &config)?;
        let plan_path = out.join("plan.toml");
        self.plan.save(&plan_path)?;
        Ok(AsgdOutcome {
            report,
            config,
            out: out.to_path_buf(),
        })
    }
}

impl AsgdOutcome {
    /// The first worker error when every worker failed (`None` when at least one finished).
    pub fn all_workers_failed(&self) -> Option<String> {
        let workers = &self.report.workers;
        if !workers.is_empty() && workers.iter().all(|w| w.error.is_some()) {
            workers.iter().find_map(|w| w.error.clone())
        } else {
            None
        }
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| output_error(path, e))?;
    write_atomic(path, text.as_bytes()).map_err(|e| output_error(path, e))
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Output {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}
