//! The staged trainer: runs a [`Plan`] on a model, rebuilding the batching with each stage's
//! batch size and switching α, β, ν in the optimizer, whose buffers carry over.
//!
//! Every epoch: train (one optimizer step per batch), evaluate on the test set (and on the
//! validation split, when [`DataConfig::val_split`] holds one out), append a row to
//! `train.csv` and `eval.csv`, write `checkpoint.safetensors` atomically. At the end,
//! `summary.json` (the run record of [`stagewise_core::record`]). A run told to stop
//! ([`RunOptions::stop`]) finishes its step and writes a checkpoint holding its position in the
//! epoch, from which [`resume`] goes on bit-exactly; [`resume`] refuses a checkpoint that is
//! damaged or belongs to another run, and metrics missing rows.
//! The optimizers of `stagewise-core` run on the flat parameter vector ([`crate::bridge`]).

use crate::bridge::{self, BridgeError};
use crate::checkpoint::{
    digest, Checkpoint, CheckpointError, CheckpointMeta, PartialEpoch, RunIdentity,
};
use crate::data::DataConfig;
use crate::metrics::{StopPoint, Summary, TrainDetails};
use crate::model::{Classifier, Model, ModelKind, NUM_CLASSES};
use crate::run_folder::RUN_FILE;
use crate::{inference_device, training_device};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use stagewise_core::optim::{OptimError, Optimizer, OptimizerConfig, OptimizerKind, QhmParams};
use stagewise_core::record::{
    read_rows, write_rows, EvalRow, RecordError, RunKind, TrainRow, EVAL_FILE, TRAIN_FILE,
};
use stagewise_core::schedule::{Hyper, Layout, Plan, PlanError, Recipe, RecipeParams};
use stagewise_data::{Batch, BatchConfig, DataError, Dataset, EpochBatches};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Everything that defines a training run (saved in checkpoints and the summary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The architecture.
    pub model: ModelKind,
    /// The optimizer the plan drives.
    pub optimizer: OptimizerKind,
    /// The multistage plan (α, β, ν, batch size and length per stage).
    pub plan: Plan,
    /// The data.
    pub data: DataConfig,
    /// Seed of model initialization, data order and augmentation.
    pub seed: u64,
    /// Batch size for evaluation (does not affect results).
    pub eval_batch_size: usize,
}

impl Default for TrainConfig {
    /// The main job: the cnn on Fashion-MNIST, QHM driven by the preset's stagewise plan
    /// ([`RecipeParams::default`]), seed 0.
    fn default() -> Self {
        Self {
            model: ModelKind::Cnn,
            optimizer: OptimizerKind::default(),
            plan: RecipeParams::default()
                .build(Recipe::default())
                .expect("the preset builds"),
            data: DataConfig::default(),
            seed: 0,
            eval_batch_size: 1000,
        }
    }
}

/// Called after every epoch with (epochs done, epochs in the plan), e.g. to drive a progress
/// line of `compare`.
pub type EpochHook = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How to run (not part of the run's identity).
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Draw a progress bar per epoch.
    pub progress: bool,
    /// Stop after this many epochs in total (a checkpoint is written), e.g. to split a run.
    pub stop_after_epochs: Option<u64>,
    /// Stop after this many optimizer steps in total, mid-epoch or not (a checkpoint that
    /// resumes exactly there is written).
    pub stop_after_steps: Option<u64>,
    /// Once set (by a signal handler, say), the run stops after the step in progress, writes a
    /// checkpoint that resumes exactly there, and returns its summary
    /// ([`TrainDetails::stopped_at`]).
    pub stop: Option<Arc<AtomicBool>>,
    /// Told after every epoch.
    pub on_epoch: Option<EpochHook>,
    /// Replace a run already in the output folder instead of refusing it
    /// ([`crate::run_folder::prepare_new_run`]); ignored by [`resume`].
    pub overwrite: bool,
}

impl RunOptions {
    /// Whether the run should stop now, `global_step` steps in.
    fn should_stop(&self, global_step: u64) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || self.stop_after_steps.is_some_and(|n| global_step >= n)
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("progress", &self.progress)
            .field("stop_after_epochs", &self.stop_after_epochs)
            .field("stop_after_steps", &self.stop_after_steps)
            .field("stop", &self.stop)
            .field("on_epoch", &self.on_epoch.is_some())
            .field("overwrite", &self.overwrite)
            .finish()
    }
}

/// Why training stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Parameters could not be moved between the model and the flat vector.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// The optimizer refused hyperparameters or state.
    #[error("optimizer: {0}")]
    Optimizer(#[from] OptimError),
    /// Loss or gradient became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "training diverged at epoch {epoch}, step {step_in_epoch} of the epoch (global step \
         {global_step}): {what} with lr {lr}, beta {beta}, nu {nu}, batch size {batch_size}; \
         the last good checkpoint (end of epoch {last_good_epoch}) is kept"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: u64,
        /// 0-based step in the epoch.
        step_in_epoch: u64,
        /// 0-based global step.
        global_step: u64,
        /// What was not finite.
        what: String,
        /// Learning rate in force.
        lr: f64,
        /// β in force.
        beta: f64,
        /// ν in force.
        nu: f64,
        /// Batch size in force.
        batch_size: u64,
        /// Epochs completed in the last checkpoint (0: none).
        last_good_epoch: u64,
    },
    /// The parameter server of an asynchronous run failed ([`crate::asgd_job`]).
    #[error("parameter server: {0}")]
    Server(#[from] stagewise_ps::PsError),
    /// Reading or writing the run record (metrics, summary) failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The output folder already holds a run.
    #[error(transparent)]
    RunExists(#[from] crate::run_folder::RunExists),
    /// The run folder's files do not agree with each other (a checkpoint of another run,
    /// metrics with rows missing): resuming would mix or lose results.
    #[error("{path}: {detail}; refusing to resume")]
    Inconsistent {
        /// The file that does not agree.
        path: PathBuf,
        /// How.
        detail: String,
    },
    /// Writing an output failed.
    #[error("{path}: {detail}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

impl TrainConfig {
    /// The optimizer with the plan's weight decay.
    pub fn optimizer_config(&self) -> OptimizerConfig {
        OptimizerConfig::for_plan(self.optimizer, &self.plan)
    }

    /// What a checkpoint of this run with `parameters` model parameters belongs to.
    pub fn identity(&self, parameters: usize) -> RunIdentity {
        let d = &self.data;
        let count = |n: Option<usize>| n.map_or("all".to_string(), |n| n.to_string());
        RunIdentity {
            model: self.model.to_string(),
            parameters: parameters as u64,
            optimizer: self.optimizer.to_string(),
            plan_digest: digest(&serde_json::to_vec(&self.plan).unwrap_or_default()),
            dataset: format!(
                "{}, train subset {}, test subset {}, validation split {}, augment {}",
                d.dataset.name(),
                count(d.train_subset),
                count(d.test_subset),
                d.val_split.unwrap_or(0),
                d.augment
            ),
            seed: self.seed,
        }
    }

    /// Checks fields the plan's own validation does not cover.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.plan.validate()?;
        self.data.validate()?;
        if self.eval_batch_size == 0 {
            return Err(TrainError::Config(
                "eval_batch_size = 0 is out of range; allowed: >= 1".into(),
            ));
        }
        Ok(())
    }
}

/// Converts a batch to input tensors on `device`.
pub(crate) fn batch_tensors(batch: &Batch, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let images = Tensor::from_data(TensorData::new(batch.images.clone(), batch.shape()), device);
    let labels = Tensor::from_data(TensorData::new(batch.labels.clone(), [batch.len]), device);
    (images, labels)
}

/// Sum of cross-entropy losses and number of correct predictions for logits `[n, 10]`.
pub(crate) fn loss_and_correct(logits: &[f32], labels: &[i64]) -> (f64, usize) {
    let mut loss = 0.0;
    let mut correct = 0;
    for (row, &label) in logits.chunks_exact(NUM_CLASSES).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_sum = max
            + row
                .iter()
                .map(|&z| (z as f64 - max).exp())
                .sum::<f64>()
                .ln();
        loss += log_sum - row[label as usize] as f64;
        let predicted = crate::inference::argmax(row);
        correct += usize::from(predicted as i64 == label);
    }
    (loss, correct)
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data_as::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// Mean loss and accuracy of `model` on `data` (BatchNorm on running statistics).
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    batch_size: usize,
    config: &DataConfig,
) -> Result<(f64, f64), TrainError> {
    let device = inference_device();
    let model = model.valid();
    let mut loss = 0.0;
    let mut correct = 0;
    let batches = EpochBatches::new(
        data,
        BatchConfig::eval(batch_size).with_normalization(config.normalization()),
        0,
        0,
    )?;
    for batch in batches {
        let (images, _) = batch_tensors(&batch, &device);
        let (l, c) = loss_and_correct(&to_vec(model.forward(images)), &batch.labels);
        loss += l;
        correct += c;
    }
    let n = data.len().max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

/// Training batches forwarded to recompute BatchNorm statistics at a schedule-free x.
pub const BATCH_NORM_RECOMPUTE_BATCHES: usize = 50;

/// The model to evaluate when the optimizer evaluates at another point than it trains at
/// (schedule-free x, [`Optimizer::eval_params`]); `None` to evaluate the training model.
///
/// The copy is independent of the training model. Its BatchNorm statistics (resnet) are
/// recomputed at x from [`BATCH_NORM_RECOMPUTE_BATCHES`] training batches, without
/// augmentation, as the schedule-free reference asks, so the training model's statistics are
/// left as they are.
fn evaluation_model(
    state: &RunState,
    train: &Dataset,
    config: &TrainConfig,
    epoch: u64,
) -> Result<Option<Model>, TrainError> {
    let Some(x) = state.optimizer.eval_params() else {
        return Ok(None);
    };
    let model = bridge::write_params(state.model.valid().train(), x)?;
    recompute_batch_norm(
        &model,
        train,
        config.plan.stages[0].batch_size as usize,
        &config.data,
        config.seed ^ 0x5f,
        epoch,
    )?;
    Ok(Some(model))
}

/// Recomputes the BatchNorm running statistics of `model` (a training-mode model on the
/// training device) at its current parameters, by forwarding [`BATCH_NORM_RECOMPUTE_BATCHES`]
/// batches of `train` (no augmentation; drawn from `seed` and `epoch`). Models without
/// BatchNorm are left alone.
pub(crate) fn recompute_batch_norm(
    model: &Model,
    train: &Dataset,
    batch_size: usize,
    data: &DataConfig,
    seed: u64,
    epoch: u64,
) -> Result<(), TrainError> {
    if bridge::buffer_count(model) == 0 {
        return Ok(());
    }
    let device = training_device();
    let batch_config =
        BatchConfig::train(batch_size.max(1)).with_normalization(data.normalization());
    let mut batches = EpochBatches::new(train, batch_config, seed, epoch)?;
    let mut batch = Batch::default();
    for _ in 0..BATCH_NORM_RECOMPUTE_BATCHES {
        if !batches.next_into(&mut batch) {
            break;
        }
        let (images, _) = batch_tensors(&batch, &device);
        drop(model.forward(images));
    }
    Ok(())
}

/// The state of a run between epochs.
struct RunState {
    model: Model,
    params: Vec<f32>,
    optimizer: Box<dyn Optimizer<f32>>,
    epochs_done: u64,
    /// Progress into the next epoch (a run resumed mid-epoch, or stopped mid-epoch).
    partial: Option<PartialEpoch>,
    global_step: u64,
    seconds: f64,
    train_rows: Vec<TrainRow>,
    eval_rows: Vec<EvalRow>,
}

/// Trains `config` from scratch, writing into `out_dir` (created if needed). A folder that
/// already holds a run is refused unless [`RunOptions::overwrite`].
pub fn train(
    config: &TrainConfig,
    out_dir: &Path,
    opts: &RunOptions,
) -> Result<Summary, TrainError> {
    train_from(config, None, out_dir, opts)
}

/// Like [`train`], starting from the parameters (and BatchNorm statistics) of `init` instead of
/// the seed's initialization when given (`--init-from`, [`crate::export::load_model_params`]).
///
/// # Errors
/// [`TrainError::Config`] when `init` holds another kind of model than `config.model`.
pub fn train_from(
    config: &TrainConfig,
    init: Option<&crate::export::ModelParams>,
    out_dir: &Path,
    opts: &RunOptions,
) -> Result<Summary, TrainError> {
    config.validate()?;
    crate::run_folder::prepare_new_run(out_dir, opts.overwrite)?;
    let model = match init {
        Some(init) => crate::export::init_model(init, config.model)?,
        None => Model::new(config.model, &training_device(), config.seed),
    };
    let params = bridge::flatten_params(&model);
    let identity = config.identity(params.len());
    let run_file = out_dir.join(RUN_FILE);
    let text = serde_json::to_string_pretty(&identity).map_err(|e| output_error(&run_file, e))?;
    stagewise_core::files::write_atomic(&run_file, text.as_bytes())
        .map_err(|e| output_error(&run_file, e))?;
    let first = config
        .plan
        .stages
        .first()
        .map(|s| s.hyper_at(0, 1))
        .ok_or_else(|| TrainError::Config("the plan has no stages".into()))?;
    let optimizer = config
        .optimizer_config()
        .build::<f32>(params.len(), first.qhm)?;
    let state = RunState {
        model,
        params,
        optimizer,
        epochs_done: 0,
        partial: None,
        global_step: 0,
        seconds: 0.0,
        train_rows: Vec::new(),
        eval_rows: Vec::new(),
    };
    run(config, out_dir, opts, state)
}

/// The configuration saved in a checkpoint's metadata.
pub fn saved_config(meta: &CheckpointMeta) -> Result<TrainConfig, TrainError> {
    serde_json::from_value(meta.config.clone())
        .map_err(|e| TrainError::Config(format!("checkpoint configuration does not parse: {e}")))
}

/// Continues the run in `out_dir` from its checkpoint, with the configuration saved there.
pub fn resume(out_dir: &Path, opts: &RunOptions) -> Result<Summary, TrainError> {
    let ckpt = Checkpoint::load(out_dir)?;
    let config = saved_config(&ckpt.meta)?;
    config.validate()?;
    let model = Model::new(config.model, &training_device(), config.seed);
    check_identity(out_dir, &config, &model, &ckpt)?;
    let model = bridge::write_params(model, &ckpt.params)?;
    let model = bridge::write_buffers(model, &ckpt.buffers)?;
    let first = config.plan.stages[0].hyper_at(0, 1);
    let mut optimizer = config
        .optimizer_config()
        .build::<f32>(ckpt.params.len(), first.qhm)?;
    optimizer.load_state(ckpt.optimizer)?;
    // Rows written after the checkpoint (an interrupted epoch's) are dropped.
    let done = Some(ckpt.meta.epochs_done as f64);
    let mut train_rows: Vec<TrainRow> = read_rows_if_any(&out_dir.join(TRAIN_FILE))?;
    train_rows.retain(|r| r.epoch <= done);
    let mut eval_rows: Vec<EvalRow> = read_rows_if_any(&out_dir.join(EVAL_FILE))?;
    eval_rows.retain(|r| r.epoch <= done);
    check_rows(
        &out_dir.join(TRAIN_FILE),
        train_rows.iter().map(|r| r.epoch).collect(),
        ckpt.meta.epochs_done,
    )?;
    check_rows(
        &out_dir.join(EVAL_FILE),
        eval_rows.iter().map(|r| r.epoch).collect(),
        ckpt.meta.epochs_done,
    )?;
    let state = RunState {
        model,
        params: ckpt.params,
        optimizer,
        epochs_done: ckpt.meta.epochs_done,
        partial: ckpt.meta.partial,
        global_step: ckpt.meta.global_step,
        seconds: ckpt.meta.seconds,
        train_rows,
        eval_rows,
    };
    run(&config, out_dir, opts, state)
}

/// Refuses a checkpoint that does not belong to the run in `out_dir`: its identity must be the
/// one its own configuration gives, and the one the folder recorded when the run started.
fn check_identity(
    out_dir: &Path,
    config: &TrainConfig,
    model: &Model,
    ckpt: &Checkpoint,
) -> Result<(), TrainError> {
    let path = out_dir.join(crate::checkpoint::CHECKPOINT_FILE);
    let own = config.identity(bridge::flatten_params(model).len());
    let differs = own.differences(&ckpt.meta.identity);
    if !differs.is_empty() {
        return Err(TrainError::Inconsistent {
            path,
            detail: format!(
                "its configuration and identity disagree ({})",
                differs.join(", ")
            ),
        });
    }
    let run_file = out_dir.join(RUN_FILE);
    let folder: RunIdentity = std::fs::read_to_string(&run_file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| TrainError::Inconsistent {
            path: run_file.clone(),
            detail: format!("the run's record cannot be read ({e})"),
        })?;
    let differs = ckpt.meta.identity.differences(&folder);
    if !differs.is_empty() {
        return Err(TrainError::Inconsistent {
            path,
            detail: format!(
                "the checkpoint belongs to another run than {RUN_FILE} records (checkpoint vs \
                 folder: {})",
                differs.join(", ")
            ),
        });
    }
    Ok(())
}

/// The rows in `path`; none when there is no such file (a run stopped in its first epoch),
/// which [`check_rows`] refuses past the first epoch.
fn read_rows_if_any<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, TrainError> {
    if path.exists() {
        Ok(read_rows(path)?)
    } else {
        Ok(Vec::new())
    }
}

/// Refuses metrics that lack rows the checkpoint has passed: `epochs` (those of the rows up to
/// the checkpoint) must be 1, 2, …, `done`.
fn check_rows(path: &Path, epochs: Vec<Option<f64>>, done: u64) -> Result<(), TrainError> {
    let want: Vec<Option<f64>> = (1..=done).map(|e| Some(e as f64)).collect();
    if epochs != want {
        return Err(TrainError::Inconsistent {
            path: path.to_path_buf(),
            detail: format!(
                "{} rows for the {done} epochs of the checkpoint (epochs {:?}): rows are \
                 missing, and resuming would lose them",
                epochs.len(),
                epochs
                    .iter()
                    .map(|e| e.unwrap_or(f64::NAN))
                    .collect::<Vec<_>>()
            ),
        });
    }
    Ok(())
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Output {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

fn progress_bar(show: bool, steps: u64, epoch: u64, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} steps, {elapsed} < {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{total}"));
    bar
}

/// Runs epochs from `state.epochs_done` to the end of the plan (or `stop_after_epochs`), on a
/// thread of the compute pool ([`crate::threads::on_pool`]).
fn run(
    config: &TrainConfig,
    out_dir: &Path,
    opts: &RunOptions,
    state: RunState,
) -> Result<Summary, TrainError> {
    crate::threads::on_pool(|| run_epochs(config, out_dir, opts, state))
}

fn run_epochs(
    config: &TrainConfig,
    out_dir: &Path,
    opts: &RunOptions,
    mut state: RunState,
) -> Result<Summary, TrainError> {
    let splits = config.data.load(config.seed)?;
    let layout: Layout = config.plan.layout(splits.train.len() as u64)?;
    let total_epochs = layout.total_epochs();
    let last_epoch = opts
        .stop_after_epochs
        .map_or(total_epochs, |e| e.min(total_epochs));
    let loss_fn = CrossEntropyLossConfig::new().init(&training_device());
    let device = training_device();
    let mut grads = Vec::with_capacity(state.params.len());
    let mut images_seen = 0usize;
    let mut batch = Batch::default();
    let started = Instant::now();
    let seconds_before = state.seconds;
    let mut stopped_at = None;

    let first_epoch = state.epochs_done;
    'epochs: for epoch in first_epoch..last_epoch {
        // Between epochs the last one's checkpoint is written: stopping there loses nothing.
        // A run told to stop before its first epoch takes one step, so that it has a
        // checkpoint to resume.
        if epoch > first_epoch && opts.should_stop(state.global_step) {
            break;
        }
        let stage = layout.stage_at_epoch(epoch).expect("epoch inside the plan");
        let span = layout.spans()[stage];
        let steps = layout.steps_in_epoch(epoch).expect("epoch inside the plan");
        // The batching is rebuilt every epoch with the stage's batch size.
        let batch_config = BatchConfig::train(span.batch_size as usize)
            .with_augment(config.data.augmentation())
            .with_normalization(config.data.normalization());
        let mut batches = EpochBatches::new(&splits.train, batch_config, config.seed, epoch)?;
        let bar = progress_bar(opts.progress, steps, epoch + 1, total_epochs);
        // A run resumed mid-epoch goes on where it stopped, with the epoch's sums so far.
        let partial = state.partial.take().unwrap_or(PartialEpoch {
            steps: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
        });
        batches.skip_batches(partial.steps as usize);
        bar.set_position(partial.steps);
        let (mut loss_sum, mut correct, mut seen) = (
            partial.loss_sum,
            partial.correct as usize,
            partial.seen as usize,
        );
        let mut hyper = Hyper {
            qhm: QhmParams {
                lr: 0.0,
                beta: 0.0,
                nu: 0.0,
            },
            batch_size: span.batch_size,
        };
        for k in partial.steps..steps {
            if !batches.next_into(&mut batch) {
                break;
            }
            hyper = layout
                .hyper_at_position(epoch, k)
                .expect("position inside the plan");
            state.optimizer.set_scheduled(hyper.qhm)?;
            let (images, labels) = batch_tensors(&batch, &device);
            let logits = state.model.forward(images);
            let loss = loss_fn.forward(logits.clone(), labels);
            let (batch_loss, batch_correct) = loss_and_correct(&to_vec(logits), &batch.labels);
            let diverged = |what: String| TrainError::Diverged {
                epoch: epoch + 1,
                step_in_epoch: k,
                global_step: state.global_step,
                what,
                lr: hyper.qhm.lr,
                beta: hyper.qhm.beta,
                nu: hyper.qhm.nu,
                batch_size: hyper.batch_size,
                last_good_epoch: state.epochs_done,
            };
            if !batch_loss.is_finite() {
                return Err(diverged(format!("loss is {batch_loss}")));
            }
            let gradients = GradientsParams::from_grads(loss.backward(), &state.model);
            bridge::take_grads_into(&state.model, gradients, &mut grads);
            match state.optimizer.step(&mut state.params, &grads) {
                Err(OptimError::NonFiniteGradient { index, value }) => {
                    return Err(diverged(format!("gradient element {index} is {value}")));
                }
                other => other?,
            }
            state.model = bridge::write_params(state.model, &state.params)?;
            state.global_step += 1;
            loss_sum += batch_loss;
            correct += batch_correct;
            seen += batch.len;
            bar.inc(1);
            if k % 10 == 0 {
                bar.set_message(format!(
                    "loss {:.4} acc {:.4}",
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64
                ));
            }
            if k + 1 < steps && opts.should_stop(state.global_step) {
                bar.finish_and_clear();
                images_seen += seen - partial.seen as usize;
                state.partial = Some(PartialEpoch {
                    steps: k + 1,
                    loss_sum,
                    correct: correct as u64,
                    seen: seen as u64,
                });
                state.seconds = seconds_before + started.elapsed().as_secs_f64();
                save_checkpoint(config, out_dir, &state)?;
                stopped_at = Some(StopPoint {
                    epoch: epoch + 1,
                    step: k + 1,
                    steps,
                });
                break 'epochs;
            }
        }
        bar.finish_and_clear();
        images_seen += seen - partial.seen as usize;
        let at_x = evaluation_model(&state, &splits.train, config, epoch)?;
        let evaluated = at_x.as_ref().unwrap_or(&state.model);
        let (test_loss, test_acc) = evaluate(
            evaluated,
            &splits.test,
            config.eval_batch_size,
            &config.data,
        )?;
        let val = splits
            .val
            .as_ref()
            .map(|v| evaluate(evaluated, v, config.eval_batch_size, &config.data))
            .transpose()?;
        state.epochs_done = epoch + 1;
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        let (train_loss, train_acc) = (
            loss_sum / seen.max(1) as f64,
            correct as f64 / seen.max(1) as f64,
        );
        tracing::info!(
            epoch = epoch + 1,
            stage = stage + 1,
            train_loss,
            test_acc,
            "epoch done"
        );
        if opts.progress {
            eprintln!(
                "epoch {:>3}/{total_epochs}  stage {}  b {:>4}  lr {:.4}  beta {:.4}  train loss {train_loss:.4} acc {train_acc:.4}  test loss {test_loss:.4} acc {test_acc:.4}  {:.0}s",
                epoch + 1, stage + 1, span.batch_size, hyper.qhm.lr, hyper.qhm.beta, state.seconds
            );
        }
        let at_epoch = Some(state.epochs_done as f64);
        state.train_rows.push(TrainRow {
            update: state.global_step,
            epoch: at_epoch,
            elapsed_s: state.seconds,
            loss: Some(train_loss),
            accuracy: Some(train_acc),
            stage: u32::try_from(stage + 1).ok(),
            lr: hyper.qhm.lr,
            momentum: Some(hyper.qhm.beta),
            nu: Some(hyper.qhm.nu),
            batch_size: Some(span.batch_size),
            ..TrainRow::default()
        });
        state.eval_rows.push(EvalRow {
            update: state.global_step,
            epoch: at_epoch,
            elapsed_s: state.seconds,
            loss: test_loss,
            accuracy: Some(test_acc),
            examples: splits.test.len() as u64,
            val_loss: val.map(|v| v.0),
            val_accuracy: val.map(|v| v.1),
        });
        write_rows(&out_dir.join(TRAIN_FILE), &state.train_rows)?;
        write_rows(&out_dir.join(EVAL_FILE), &state.eval_rows)?;
        let meta = crate::export::ModelMeta::of_run("train", out_dir, config);
        crate::export::save_after_eval(out_dir, evaluated, &state.eval_rows, meta)
            .map_err(|e| output_error(out_dir, e))?;
        save_checkpoint(config, out_dir, &state)?;
        if let Some(hook) = &opts.on_epoch {
            hook(state.epochs_done, total_epochs);
        }
    }
    let mut summary = summarize(config, &state, images_seen, started, total_epochs);
    if stopped_at.is_some() {
        summary.completed = false;
        summary.details.stopped_at = stopped_at;
    }
    summary.save(out_dir)?;
    Ok(summary)
}

fn save_checkpoint(
    config: &TrainConfig,
    out_dir: &Path,
    state: &RunState,
) -> Result<(), TrainError> {
    let optimizer = state.optimizer.state();
    let ckpt = Checkpoint {
        params: state.params.clone(),
        buffers: bridge::flatten_buffers(&state.model),
        meta: CheckpointMeta {
            epochs_done: state.epochs_done,
            partial: state.partial,
            global_step: state.global_step,
            seconds: state.seconds,
            optimizer_step: optimizer.step,
            optimizer_scalars: optimizer.scalars.clone(),
            config: serde_json::to_value(config).map_err(|e| TrainError::Config(e.to_string()))?,
            identity: config.identity(state.params.len()),
        },
        optimizer,
    };
    ckpt.save(out_dir)?;
    Ok(())
}

fn summarize(
    config: &TrainConfig,
    state: &RunState,
    images_seen: usize,
    started: Instant,
    total_epochs: u64,
) -> Summary {
    let elapsed = started.elapsed().as_secs_f64();
    let details = TrainDetails {
        images_per_second: images_seen as f64 / elapsed.max(1e-9),
        config: config.clone(),
        stopped_at: None,
        best_model: crate::export::best_model(&state.eval_rows).map(|(best, _)| best),
    };
    Summary {
        updates: state.global_step,
        epochs: Some(state.epochs_done as f64),
        wall_seconds: state.seconds,
        completed: state.epochs_done == total_epochs,
        ..Summary::new(
            RunKind::Train,
            config.model.to_string(),
            state.optimizer.name(),
            details,
        )
        .with_evals(&state.eval_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetKind;
    use stagewise_core::schedule::Stage;

    /// Forwards the first [`BATCH_NORM_RECOMPUTE_BATCHES`] training batches of `epoch`
    /// through `model` in training mode (updating its BatchNorm statistics).
    fn forward_recompute_batches(model: &Model, train: &Dataset, config: &TrainConfig, epoch: u64) {
        let batch_config = BatchConfig::train(config.plan.stages[0].batch_size as usize)
            .with_normalization(config.data.normalization());
        let mut batches =
            EpochBatches::new(train, batch_config, config.seed ^ 0x5f, epoch).unwrap();
        let mut batch = Batch::default();
        for _ in 0..BATCH_NORM_RECOMPUTE_BATCHES {
            assert!(batches.next_into(&mut batch), "the test needs 50 batches");
            drop(model.forward(batch_tensors(&batch, &training_device()).0));
        }
    }

    fn tiny(augment: bool) -> TrainConfig {
        TrainConfig {
            model: ModelKind::Mlp,
            optimizer: OptimizerKind::default(),
            plan: Plan::new(vec![
                Stage::for_epochs(1, 0.5, 0.9, 0.7, 50),
                Stage::for_epochs(1, 0.25, 0.95, 0.7, 25),
            ]),
            data: DataConfig {
                dataset: DatasetKind::Synthetic,
                train_subset: Some(500),
                test_subset: Some(100),
                augment,
                ..DataConfig::default()
            },
            seed: 2,
            eval_batch_size: 100,
        }
    }

    #[test]
    fn a_run_stopped_mid_epoch_resumes_bit_exactly() {
        // Epoch 1: 10 steps of 50; epoch 2: 20 steps of 25. Stopped at 4 (epoch 1) and 17
        // (epoch 2, step 7), each resumed.
        let config = tiny(true);
        let whole = tempfile::tempdir().unwrap();
        train(&config, whole.path(), &RunOptions::default()).unwrap();
        let split = tempfile::tempdir().unwrap();
        let stop_at = |n| RunOptions {
            stop_after_steps: Some(n),
            ..RunOptions::default()
        };
        let first = train(&config, split.path(), &stop_at(4)).unwrap();
        let at = first.details.stopped_at.unwrap();
        assert_eq!((at.epoch, at.step, at.steps), (1, 4, 10));
        assert!(!first.completed);
        assert!(read_rows::<TrainRow>(&split.path().join(TRAIN_FILE)).is_err());
        let ckpt = Checkpoint::load(split.path()).unwrap();
        assert_eq!((ckpt.meta.epochs_done, ckpt.meta.global_step), (0, 4));
        assert_eq!(ckpt.meta.partial.unwrap().steps, 4);
        let second = resume(split.path(), &stop_at(17)).unwrap();
        assert_eq!(
            second.details.stopped_at.unwrap().to_string(),
            "epoch 2, step 7 of 20"
        );
        let done = resume(split.path(), &RunOptions::default()).unwrap();
        assert!(done.completed && done.details.stopped_at.is_none());

        let (a, b) = (
            Checkpoint::load(whole.path()).unwrap(),
            Checkpoint::load(split.path()).unwrap(),
        );
        assert_eq!(b.meta.global_step, 30);
        assert!(a.params == b.params, "parameters differ");
        assert_eq!(a.optimizer, b.optimizer);
        assert_eq!(b.meta.partial, None);
        let rows = |dir: &Path| {
            read_rows::<TrainRow>(&dir.join(TRAIN_FILE))
                .unwrap()
                .into_iter()
                .map(|r| TrainRow {
                    elapsed_s: 0.0,
                    ..r
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(rows(whole.path()), rows(split.path()));
        let evals = |dir: &Path| {
            read_rows::<EvalRow>(&dir.join(EVAL_FILE))
                .unwrap()
                .into_iter()
                .map(|r| EvalRow {
                    elapsed_s: 0.0,
                    ..r
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(evals(whole.path()), evals(split.path()));
    }

    #[test]
    fn a_stop_flag_set_before_the_run_stops_it_after_one_step() {
        let stop = Arc::new(AtomicBool::new(true));
        let dir = tempfile::tempdir().unwrap();
        let opts = RunOptions {
            stop: Some(stop),
            ..RunOptions::default()
        };
        let s = train(&tiny(false), dir.path(), &opts).unwrap();
        assert_eq!(s.updates, 1);
        assert_eq!(s.details.stopped_at.unwrap().step, 1);
        assert!(s.final_accuracy().is_none(), "nothing was measured");
    }

    #[test]
    fn a_schedule_free_resnet_is_evaluated_at_x_with_batch_norm_statistics_of_x() {
        let config = TrainConfig {
            model: ModelKind::ResNet,
            optimizer: OptimizerKind::SgdScheduleFree,
            plan: Plan::new(vec![Stage::for_epochs(1, 1.0, 0.9, 0.0, 20)]),
            data: DataConfig {
                dataset: DatasetKind::Synthetic,
                train_subset: Some(1000),
                test_subset: Some(100),
                ..DataConfig::default()
            },
            seed: 4,
            eval_batch_size: 100,
        };
        let dir = tempfile::tempdir().unwrap();
        train(&config, dir.path(), &RunOptions::default()).unwrap();
        // The state at the end of the run, rebuilt from its checkpoint as `resume` does.
        let ckpt = Checkpoint::load(dir.path()).unwrap();
        let model = Model::new(config.model, &training_device(), config.seed);
        let model = bridge::write_params(model, &ckpt.params).unwrap();
        let model = bridge::write_buffers(model, &ckpt.buffers).unwrap();
        let first = config.plan.stages[0].hyper_at(0, 1).qhm;
        let mut optimizer = config
            .optimizer_config()
            .build::<f32>(ckpt.params.len(), first)
            .unwrap();
        optimizer.load_state(ckpt.optimizer.clone()).unwrap();
        let state = RunState {
            model,
            params: ckpt.params.clone(),
            optimizer,
            epochs_done: 1,
            partial: None,
            global_step: 50,
            seconds: 0.0,
            train_rows: Vec::new(),
            eval_rows: Vec::new(),
        };
        let train_set = config.data.load(config.seed).unwrap().train;
        let x = state.optimizer.eval_params().unwrap().to_vec();
        let at_x = evaluation_model(&state, &train_set, &config, 1)
            .unwrap()
            .unwrap();

        // Evaluated at x, not at the training point y.
        assert_eq!(bridge::flatten_params(&at_x), x);
        assert_ne!(x, ckpt.params);
        // The training model keeps its own statistics; the evaluated copy has new ones.
        assert_eq!(bridge::flatten_buffers(&state.model), ckpt.buffers);
        let recomputed = bridge::flatten_buffers(&at_x);
        assert_ne!(recomputed, ckpt.buffers);
        // They are the statistics of x: recomputing from fresh statistics (mean 0, variance 1)
        // over the same batches lands on the same values, up to the 0.9^50 ≈ 0.5% of the
        // starting point that BatchNorm's momentum 0.1 leaves after 50 batches.
        let fresh = Model::new(config.model, &training_device(), config.seed);
        let fresh = bridge::write_params(fresh, &x).unwrap();
        forward_recompute_batches(&fresh, &train_set, &config, 1);
        let from_fresh = bridge::flatten_buffers(&fresh);
        let initial =
            bridge::flatten_buffers(&Model::new(config.model, &training_device(), config.seed));
        let gap_start: f64 = ckpt
            .buffers
            .iter()
            .zip(&initial)
            .map(|(a, b)| f64::from((a - b).abs()))
            .sum();
        let gap_end: f64 = recomputed
            .iter()
            .zip(&from_fresh)
            .map(|(a, b)| f64::from((a - b).abs()))
            .sum();
        assert!(gap_start > 0.0);
        assert!(gap_end < 0.01 * gap_start, "{gap_end} vs {gap_start}");
    }
}
