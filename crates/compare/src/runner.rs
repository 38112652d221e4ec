//! Running the grid: every run through the `train` or `asgd` code path, into
//! `OUT/runs/METHOD/lr-LR/seed-SEED`, several at a time, skipping finished runs and resuming
//! interrupted ones from their checkpoint.

use crate::experiment::{RunMode, RunSpec};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use stagewise_core::optim::OptimizerConfig;
use stagewise_core::record::{RunSummary, SUMMARY_FILE};
use stagewise_core::schedule::Plan;
use stagewise_core::theory::{AsgdRule, AsgdRun, AsgdUpdate, RuleOutcome};
use stagewise_ps::config::{PolicyConfig, ScheduleConfig, ServerConfig};
use stagewise_report::comparison::DIVERGED_KEY;
use stagewise_train::asgd_job::AsgdJob;
use stagewise_train::asgd_rule::{apply_asgd_rule, InitialModel};
use stagewise_train::checkpoint::CHECKPOINT_FILE;
use stagewise_train::threads::{available_cores, KernelSplit};
use stagewise_train::{RunOptions, TrainConfig, TrainError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to run the grid (not part of any run's identity).
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Runs at a time (>= 1).
    pub jobs: usize,
    /// Kernel threads in all (default: every core); each run gets `threads / jobs`.
    pub threads: Option<usize>,
    /// One overall bar and one line per running run.
    pub progress: bool,
    /// Stop every train run after this many epochs (it resumes on the next call): splits a grid
    /// in parts, and lets tests interrupt it.
    pub stop_after_epochs: Option<u64>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            threads: None,
            progress: false,
            stop_after_epochs: None,
        }
    }
}

/// Why a run of the grid failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run itself failed (its folder keeps what it wrote).
    #[error("{dir}: {source}")]
    Train {
        /// The run folder.
        dir: PathBuf,
        /// The cause.
        source: Box<TrainError>,
    },
    /// The folder holds a run of another configuration: never overwritten.
    #[error(
        "{dir} holds a run with another configuration than the experiment's; move it away or \
         choose another --out"
    )]
    Mismatch {
        /// The run folder.
        dir: PathBuf,
    },
    /// Reading a run's record failed.
    #[error("{0}")]
    Record(#[from] stagewise_core::record::RecordError),
    /// Threads could not be started.
    #[error("starting threads: {0}")]
    Threads(String),
}

/// What happened to one run of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Found finished; not run again.
    Skipped,
    /// Continued from its checkpoint.
    Resumed,
    /// Run from the start.
    Ran,
    /// Stopped early on purpose (`stop_after_epochs`); run the grid again to finish it.
    Stopped,
    /// The loss or a gradient became NaN or infinite: the run is recorded as diverged
    /// ([`DIVERGED_KEY`] in its summary's details) and counts as chance accuracy.
    Diverged,
}

/// The folder of `spec` under `out`.
pub fn run_dir(out: &Path, spec: &RunSpec) -> PathBuf {
    out.join("runs").join(spec.relative_dir())
}

/// Runs every spec (skipping finished ones), `options.jobs` at a time; returns each run's
/// status in grid order. The first failure stops new runs from starting and is returned once
/// the running ones end.
pub fn run_grid(
    grid: &[RunSpec],
    out: &Path,
    options: &RunnerOptions,
) -> Result<Vec<RunStatus>, RunError> {
    let jobs = options.jobs.clamp(1, grid.len().max(1));
    let threads = options.threads.unwrap_or_else(available_cores).max(1);
    let per_run = (threads / jobs).max(1);
    let multi = if options.progress {
        MultiProgress::new()
    } else {
        MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    };
    let overall = multi.add(ProgressBar::new(grid.len() as u64));
    overall.set_style(
        ProgressStyle::with_template("runs [{bar:30}] {pos}/{len}, {elapsed} < {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let next = AtomicUsize::new(0);
    let statuses: Mutex<Vec<Option<RunStatus>>> = Mutex::new(vec![None; grid.len()]);
    let failure: Mutex<Option<RunError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if failure.lock().map_or(true, |f| f.is_some()) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(spec) = grid.get(i) else { return };
                let line = multi.add(ProgressBar::new_spinner());
                line.enable_steady_tick(Duration::from_millis(500));
                line.set_message(format!("{}: starting", label(spec)));
                let result = run_one(spec, &run_dir(out, spec), per_run, options, &line);
                line.finish_and_clear();
                multi.remove(&line);
                overall.inc(1);
                match result {
                    Ok(status) => {
                        if let Ok(mut s) = statuses.lock() {
                            s[i] = Some(status);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    overall.finish_and_clear();
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let statuses = statuses.into_inner().unwrap_or_default();
    Ok(statuses
        .into_iter()
        .map(|s| s.unwrap_or(RunStatus::Stopped))
        .collect())
}

fn label(spec: &RunSpec) -> String {
    format!(
        "{} lr {} seed {}",
        spec.method,
        stagewise_core::schedule::fmt_num(spec.lr),
        spec.seed
    )
}

/// Runs one spec into `dir` on its own pool of `threads` kernel threads.
fn run_one(
    spec: &RunSpec,
    dir: &Path,
    threads: usize,
    options: &RunnerOptions,
    line: &ProgressBar,
) -> Result<RunStatus, RunError> {
    let fail = |source| RunError::Train {
        dir: dir.to_path_buf(),
        source: Box::new(source),
    };
    match &spec.mode {
        RunMode::Train => {
            let config = train_config(spec);
            let previous = previous_config(dir)?;
            if let Some(found) = &previous {
                if found != &config {
                    return Err(RunError::Mismatch {
                        dir: dir.to_path_buf(),
                    });
                }
            }
            if (is_finished(dir) || is_diverged(dir)) && previous.is_some() {
                return Ok(RunStatus::Skipped);
            }
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| RunError::Threads(e.to_string()))?;
            let label = label(spec);
            let hook_line = line.clone();
            let opts = RunOptions {
                progress: false,
                stop_after_epochs: options.stop_after_epochs,
                on_epoch: Some(Arc::new(move |done, total| {
                    hook_line.set_message(format!("{label}: epoch {done}/{total}"));
                })),
                // A folder with a run but no checkpoint is not this spec's: refused.
                overwrite: false,
                ..RunOptions::default()
            };
            let resuming = dir.join(CHECKPOINT_FILE).exists();
            let started = std::time::Instant::now();
            let result = pool.install(|| {
                if resuming {
                    stagewise_train::resume(dir, &opts)
                } else {
                    stagewise_train::train(&config, dir, &opts)
                }
            });
            let summary = match result {
                Err(e @ TrainError::Diverged { .. }) => {
                    record_divergence(&config, dir, &e, started.elapsed().as_secs_f64())?;
                    return Ok(RunStatus::Diverged);
                }
                other => other.map_err(fail)?,
            };
            Ok(match (summary.completed, resuming) {
                (false, _) => RunStatus::Stopped,
                (true, true) => RunStatus::Resumed,
                (true, false) => RunStatus::Ran,
            })
        }
        RunMode::Asgd(asgd) => {
            if is_finished(dir) {
                let found = std::fs::read_to_string(dir.join("spec.json")).ok();
                if found.as_deref() != Some(asgd_identity(spec).as_str()) {
                    return Err(RunError::Mismatch {
                        dir: dir.to_path_buf(),
                    });
                }
                return Ok(RunStatus::Skipped);
            }
            line.set_message(format!(
                "{}: asynchronous, {} workers",
                label(spec),
                asgd.workers
            ));
            // An in-process ASGD run has no checkpoint to resume: it restarts.
            run_asgd(spec, asgd, dir, threads).map_err(fail)?;
            stagewise_core::files::write_atomic(
                &dir.join("spec.json"),
                asgd_identity(spec).as_bytes(),
            )
            .map_err(|e| {
                fail(TrainError::Output {
                    path: dir.join("spec.json"),
                    detail: e.to_string(),
                })
            })?;
            Ok(RunStatus::Ran)
        }
    }
}

/// The `train` configuration of a centralized spec.
pub fn train_config(spec: &RunSpec) -> TrainConfig {
    TrainConfig {
        model: spec.model,
        optimizer: spec.optimizer,
        plan: spec.plan.clone(),
        data: spec.data.clone(),
        seed: spec.seed,
        eval_batch_size: spec.eval_batch,
    }
}

/// The configuration a train run folder was started with, if it holds one.
fn previous_config(dir: &Path) -> Result<Option<TrainConfig>, RunError> {
    if dir.join(SUMMARY_FILE).exists() {
        let summary: RunSummary<serde_json::Value> = RunSummary::load(dir)?;
        let config = summary
            .details
            .get("config")
            .cloned()
            .and_then(|c| serde_json::from_value(c).ok());
        return Ok(config);
    }
    if dir.join(CHECKPOINT_FILE).exists() {
        let ckpt =
            stagewise_train::checkpoint::Checkpoint::load(dir).map_err(|e| RunError::Train {
                dir: dir.to_path_buf(),
                source: Box::new(e.into()),
            })?;
        return Ok(serde_json::from_value(ckpt.meta.config).ok());
    }
    Ok(None)
}

/// Writes the summary of a run that diverged: its evaluations so far, `completed: false`, and
/// under `details` its configuration and [`DIVERGED_KEY`] with the error and the accuracy it
/// counts as (chance: one in ten classes).
fn record_divergence(
    config: &TrainConfig,
    dir: &Path,
    error: &TrainError,
    seconds: f64,
) -> Result<(), RunError> {
    let evals: Vec<stagewise_core::record::EvalRow> = {
        let path = dir.join(stagewise_core::record::EVAL_FILE);
        if path.exists() {
            stagewise_core::record::read_rows(&path)?
        } else {
            Vec::new()
        }
    };
    let updates = match error {
        TrainError::Diverged { global_step, .. } => *global_step,
        _ => 0,
    };
    let details = serde_json::json!({
        "config": config,
        DIVERGED_KEY: {
            "error": error.to_string(),
            "chance_accuracy": 1.0 / stagewise_train::model::NUM_CLASSES as f64,
        },
    });
    let summary = RunSummary {
        updates,
        epochs: evals.last().and_then(|e| e.epoch),
        wall_seconds: evals.last().map_or(seconds, |e| e.elapsed_s.max(seconds)),
        completed: false,
        ..RunSummary::new(
            stagewise_core::record::RunKind::Train,
            config.model.to_string(),
            config.optimizer.name(),
            details,
        )
        .with_evals(&evals)
    };
    summary.save(dir)?;
    Ok(())
}

/// Whether the folder holds the summary of a run that diverged.
fn is_diverged(dir: &Path) -> bool {
    RunSummary::<serde_json::Value>::load(dir).is_ok_and(|s| s.details.get(DIVERGED_KEY).is_some())
}

/// Whether the folder holds a completed run's summary.
fn is_finished(dir: &Path) -> bool {
    RunSummary::<serde_json::Value>::load(dir).is_ok_and(|s| s.completed)
}

/// What an ASGD run folder must match to be skipped: the spec in words.
fn asgd_identity(spec: &RunSpec) -> String {
    let value = serde_json::json!({
        "method": spec.method,
        "lr": spec.lr,
        "seed": spec.seed,
        "model": spec.model,
        "optimizer": spec.optimizer,
        "plan": spec.plan,
        "data": spec.data,
        "asgd": match &spec.mode { RunMode::Asgd(a) => serde_json::to_value(a).ok(), RunMode::Train => None },
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// The plan an ASGD run follows: the recipe adapted to M workers by the staleness rule when
/// it applies (as `stagewise asgd` does), else the spec's plan.
fn asgd_plan(
    spec: &RunSpec,
    asgd: &crate::experiment::Asgd,
    splits: &stagewise_data::Splits,
) -> Result<Plan, TrainError> {
    let run = AsgdRun {
        workers: u32::try_from(asgd.workers).unwrap_or(u32::MAX),
        update: if matches!(asgd.policy, PolicyConfig::Sync { .. }) {
            AsgdUpdate::Averaged
        } else {
            AsgdUpdate::PerPush
        },
        optimizer: spec.optimizer,
    };
    if asgd.rule == AsgdRule::None {
        return Ok(spec.plan.clone());
    }
    let initial = InitialModel {
        kind: spec.model,
        seed: spec.seed,
        train: &splits.train,
        data: &spec.data,
    };
    let outcome = apply_asgd_rule(
        asgd.rule,
        spec.recipe.as_ref().map(|(r, p)| (*r, p)),
        &run,
        asgd.h_max,
        &initial,
        || {},
    )
    .map_err(|e| TrainError::Config(format!("the staleness rule: {e}")))?;
    Ok(match outcome {
        RuleOutcome::Skipped { .. } => spec.plan.clone(),
        RuleOutcome::Applied(adapted) => adapted.params.build(adapted.recipe)?,
    })
}

fn run_asgd(
    spec: &RunSpec,
    asgd: &crate::experiment::Asgd,
    dir: &Path,
    threads: usize,
) -> Result<(), TrainError> {
    let splits = spec.data.load(spec.seed)?;
    let plan = asgd_plan(spec, asgd, &splits)?;
    let n_train = splits.train.len() as u64;
    // One evaluation per epoch of updates, as `train` evaluates, unless the method says.
    let layout = plan.layout(n_train)?;
    let per_epoch = layout.total_steps() / layout.total_epochs().max(1);
    let server = ServerConfig {
        model_id: spec.model.name().to_string(),
        policy: asgd.policy.clone(),
        optimizer: OptimizerConfig::for_plan(spec.optimizer, &plan),
        schedule: ScheduleConfig::Plan {
            plan: plan.clone(),
            n_train,
        },
        eval_every: asgd.eval_every.or(Some(per_epoch.max(1))),
        ..ServerConfig::default()
    };
    let pools = KernelSplit::PerWorker
        .pools(threads, asgd.workers)
        .map_err(|e| TrainError::Config(format!("starting the workers' threads: {e}")))?;
    let job = AsgdJob {
        model: spec.model,
        seed: spec.seed,
        data: &spec.data,
        splits: &splits,
        plan: &plan,
        server,
        pools,
        worker_batch: None,
        eval_batch: spec.eval_batch,
        max_seconds: None,
    };
    let outcome = job.run(dir)?;
    if let Some(e) = outcome.all_workers_failed() {
        return Err(TrainError::Config(format!("every worker failed: {e}")));
    }
    Ok(())
}
