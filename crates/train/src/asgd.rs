//! Burn models behind the parameter server of `stagewise-ps`: a [`GradientSource`] that
//! computes gradients of a model on one worker's shard of the training set, and an
//! [`Evaluator`] that scores parameters on the test set.
//!
//! Each [`ModelWorker`] owns its own copy of the model and its own shard
//! ([`Dataset::shard`]: worker `i` of `M` takes examples `i, i + M, i + 2M, …`). Before every
//! gradient the parameters pulled from the server are written into the model through
//! [`crate::bridge`]; the gradient comes back in the same flat order. Batches are drawn from the
//! shard in a shuffled order seeded per worker ([`worker_seed`]), so a run is reproducible up to
//! the interleaving of the workers' pushes.
//!
//! # Batch size
//!
//! The server's version plays the role of the global step of a centralized run (see
//! `stagewise_ps::schedule`), so the batch size of the plan's current stage depends on it.
//! A gradient source is not told the server's version; [`BatchSizing::Plan`] therefore reads
//! the plan at an estimate of it, kept by a [`StepClock`]:
//!
//! - in one process, one clock shared by every worker counts every gradient computed, which is
//!   the server version for the asynchronous policies (up to pushes still in flight and pushes
//!   refused as stale) — [`StepClock::shared`];
//! - a worker in its own process counts its own gradients and multiplies by the number of
//!   workers, which is right on average for workers of equal speed — [`StepClock::local`].
//!
//! For the synchronous policy one server update takes one gradient from each of the `M`
//! workers: scale the clock by `1/M` (shared) or `1` (local) with [`StepClock::with_scale`].
//! [`BatchSizing::Fixed`] ignores the plan's batch sizes altogether. When a worker's batch size
//! changes it starts a new pass over its shard, as stages start at epoch boundaries in the
//! centralized trainer.
//!
//! # BatchNorm buffers are not synchronized; the evaluator recomputes them
//!
//! Only trainable parameters travel through the parameter server. BatchNorm running statistics
//! (the `resnet` model; `mlp` and `cnn` have none) stay in each worker's model copy, updated by
//! that worker's own forward passes. A [`ModelEvaluator`] given training data
//! ([`ModelEvaluator::with_batch_norm_recompute`], as `stagewise asgd`, `ps serve` and `compare`
//! do) recomputes them at the evaluated parameters before every evaluation, from 50 training
//! batches, as the trainer does for schedule-free optimizers; without it, it evaluates with
//! the initial statistics (mean 0, variance 1), which is not meaningful for a trained resnet.
//!
//! ```no_run
//! use stagewise_ps::config::AsgdConfig;
//! use stagewise_ps::GradientSource;
//! use stagewise_train::asgd::{initial_params, BatchSizing, ModelEvaluator, ModelWorker};
//! use stagewise_train::model::ModelKind;
//! use stagewise_train::{DataConfig, DatasetKind};
//!
//! let data = DataConfig { dataset: DatasetKind::Synthetic, ..DataConfig::default() };
//! let splits = data.load(0)?;
//! let workers = 2;
//! let sources = (0..workers)
//!     .map(|i| {
//!         ModelWorker::new(ModelKind::Mlp, &splits.train, i, workers, &data, BatchSizing::Fixed(64), 0)
//!             .map(|w| Box::new(w) as Box<dyn GradientSource>)
//!     })
//!     .collect::<Result<Vec<_>, _>>()?;
//! let evaluator = ModelEvaluator::new(ModelKind::Mlp, splits.test, &data, 1000, 0)?;
//! let report = stagewise_ps::run_in_process_from(
//!     AsgdConfig::default(),
//!     initial_params(ModelKind::Mlp, 0),
//!     sources,
//!     Some(Box::new(evaluator)),
//! )?;
//! println!("{:?}", report.summary.last_eval);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::GradientsParams;
use stagewise_core::schedule::Layout;
use stagewise_data::{Batch, BatchConfig, Dataset, EpochBatches};
use stagewise_ps::error::GradientError;
use stagewise_ps::{BatchStats, EvalPoint, EvalStats, Evaluator, GradientSource};

use crate::bridge;
use crate::data::DataConfig;
use crate::model::{Classifier, Model, ModelKind, NUM_CLASSES};
use crate::trainer::{batch_tensors, evaluate, TrainError};
use crate::training_device;

/// The seed of worker `worker_index`'s data order and augmentation, derived from the run's
/// seed so that workers draw different, reproducible batches.
///
/// ```
/// use stagewise_train::asgd::worker_seed;
/// assert_eq!(worker_seed(3, 1), worker_seed(3, 1));
/// assert_ne!(worker_seed(3, 0), worker_seed(3, 1));
/// ```
pub fn worker_seed(seed: u64, worker_index: usize) -> u64 {
    // SplitMix64 finalizer of (seed, index): distinct, well-mixed streams per worker.
    let mut z = seed ^ (worker_index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The initial flat parameters of a model of `kind` built from `seed` — what the server starts
/// from, so that an asynchronous run starts where `stagewise train` with the same seed does.
pub fn initial_params(kind: ModelKind, seed: u64) -> Vec<f32> {
    bridge::flatten_params(&Model::new(kind, &training_device(), seed))
}

/// An estimate of the server's version, from the number of gradients computed (see the
/// [module documentation](self)). Cloning shares the counter.
#[derive(Debug, Clone)]
pub struct StepClock {
    ticks: Arc<AtomicU64>,
    scale: f64,
}

impl StepClock {
    /// A clock to clone into every worker of one process: the estimate is the number of
    /// gradients all of them computed.
    pub fn shared() -> Self {
        Self {
            ticks: Arc::new(AtomicU64::new(0)),
            scale: 1.0,
        }
    }

    /// A clock for a worker that runs alone among `num_workers` equally fast workers: the
    /// estimate is its own gradient count times `num_workers`.
    pub fn local(num_workers: usize) -> Self {
        Self::shared().with_scale(num_workers.max(1) as f64)
    }

    /// The same counter, its estimate multiplied by `scale` (e.g. `1/M` for a shared clock
    /// under the synchronous policy). A scale that is not a finite number > 0 is replaced by 1.
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        self
    }

    /// The estimated server version.
    pub fn estimate(&self) -> u64 {
        (self.ticks.load(Ordering::Relaxed) as f64 * self.scale) as u64
    }

    /// Counts one gradient; returns the estimate before it.
    fn tick(&self) -> u64 {
        (self.ticks.fetch_add(1, Ordering::Relaxed) as f64 * self.scale) as u64
    }
}

/// How a [`ModelWorker`] chooses its batch size.
#[derive(Debug, Clone)]
pub enum BatchSizing {
    /// Always this many examples per gradient.
    Fixed(usize),
    /// The batch size of the plan's stage at the clock's estimate of the server version (the
    /// last stage's past the plan's end). The layout must be made for the whole training set,
    /// as the server's schedule is.
    Plan {
        /// The plan laid out in steps.
        layout: Layout,
        /// The version estimate.
        clock: StepClock,
    },
}

impl BatchSizing {
    /// The batch size for the next gradient (counts it on the clock).
    fn next(&self) -> usize {
        match self {
            Self::Fixed(b) => *b,
            Self::Plan { layout, clock } => {
                let step = clock.tick();
                let b = layout
                    .hyper_at_step(step)
                    .map(|h| h.batch_size)
                    .or_else(|| layout.spans().last().map(|s| s.batch_size))
                    .unwrap_or(1);
                usize::try_from(b).unwrap_or(usize::MAX)
            }
        }
    }
}

/// Mean cross-entropy and accuracy of logits `[n, 10]` against `labels`.
fn loss_and_accuracy(logits: &[f32], labels: &[i64]) -> (f64, f64) {
    let mut loss = 0.0;
    let mut correct = 0usize;
    for (row, &label) in logits.chunks_exact(NUM_CLASSES).zip(labels) {
        let (argmax, max) =
            row.iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |(bi, bz), (i, &z)| {
                    if z > bz {
                        (i, z)
                    } else {
                        (bi, bz)
                    }
                });
        let max = f64::from(max);
        let sum: f64 = row.iter().map(|&z| (f64::from(z) - max).exp()).sum();
        let target = usize::try_from(label).unwrap_or(0).min(NUM_CLASSES - 1);
        loss += max + sum.ln() - f64::from(row[target]);
        correct += usize::from(argmax == target);
    }
    let n = labels.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

/// Mean cross-entropy gradient of `model` on `batch`, written into `out` in the flat order of
/// [`bridge`]; returns the model back with the batch's mean loss and accuracy.
pub(crate) fn batch_gradient(
    model: Model,
    batch: &Batch,
    loss_fn: &CrossEntropyLoss,
    out: &mut Vec<f32>,
) -> (Model, f64, f64) {
    let (images, labels) = batch_tensors(batch, &training_device());
    let logits = model.forward(images);
    let loss = loss_fn.forward(logits.clone(), labels);
    let values = logits
        .into_data_as::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let (mean_loss, accuracy) = loss_and_accuracy(&values, &batch.labels);
    let gradients = GradientsParams::from_grads(loss.backward(), &model);
    bridge::take_grads_into(&model, gradients, out);
    (model, mean_loss, accuracy)
}

/// A [`GradientSource`] computing gradients of a burn model on one worker's shard.
pub struct ModelWorker {
    /// `None` only while a gradient is being computed.
    model: Option<Model>,
    kind: ModelKind,
    model_seed: u64,
    num_params: usize,
    shard: Dataset,
    data: DataConfig,
    sizing: BatchSizing,
    seed: u64,
    epoch: u64,
    batches_done: usize,
    batch_size: usize,
    batch: Batch,
    grad_buf: Vec<f32>,
    loss_fn: CrossEntropyLoss,
    /// The rayon pool this worker's kernels run in; `None`: the caller's (global) pool.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for ModelWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWorker")
            .field("kind", &self.kind)
            .field("num_params", &self.num_params)
            .field("shard_len", &self.shard.len())
            .field("sizing", &self.sizing)
            .field("seed", &self.seed)
            .field("epoch", &self.epoch)
            .field("batches_done", &self.batches_done)
            .finish_non_exhaustive()
    }
}

impl ModelWorker {
    /// Worker `worker_index` of `num_workers`: a fresh model of `kind` (its initial values are
    /// overwritten by every pull) and the worker's shard of `train`, drawn in an order seeded
    /// by [`worker_seed`]`(seed, worker_index)`, with `data`'s augmentation and normalization.
    ///
    /// Fails when the index is not below the count, the shard is empty or a fixed batch size
    /// is 0.
    pub fn new(
        kind: ModelKind,
        train: &Dataset,
        worker_index: usize,
        num_workers: usize,
        data: &DataConfig,
        sizing: BatchSizing,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let shard = train.shard(worker_index, num_workers)?;
        if shard.is_empty() {
            return Err(TrainError::Config(format!(
                "worker {worker_index} of {num_workers} gets no training examples \
                 ({} in the training set)",
                train.len()
            )));
        }
        if matches!(sizing, BatchSizing::Fixed(0)) {
            return Err(TrainError::Config(
                "worker batch size 0 is out of range; allowed: >= 1".into(),
            ));
        }
        let device = training_device();
        let model = Model::new(kind, &device, seed);
        let num_params = bridge::param_count(&model);
        Ok(Self {
            model: Some(model),
            kind,
            model_seed: seed,
            num_params,
            shard,
            data: data.clone(),
            sizing,
            seed: worker_seed(seed, worker_index),
            epoch: 0,
            batches_done: 0,
            batch_size: 0,
            batch: Batch::default(),
            grad_buf: Vec::with_capacity(num_params),
            loss_fn: CrossEntropyLossConfig::new().init(&device),
            pool: None,
        })
    }

    /// Runs this worker's kernels in `pool` (see [`crate::threads::KernelSplit`]); `None`
    /// keeps the calling thread's pool.
    pub fn with_pool(mut self, pool: Option<Arc<rayon::ThreadPool>>) -> Self {
        self.pool = pool;
        self
    }

    /// Number of training examples in this worker's shard.
    pub fn shard_len(&self) -> usize {
        self.shard.len()
    }

    /// Passes over the shard started so far (a change of batch size starts a new one).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Fills `self.batch` with the next batch of `batch_size` examples from the shard.
    fn next_batch(&mut self, batch_size: usize) -> Result<(), GradientError> {
        if batch_size != self.batch_size {
            if self.batch_size != 0 && self.batches_done > 0 {
                self.epoch += 1;
            }
            self.batch_size = batch_size;
            self.batches_done = 0;
        }
        let config = BatchConfig::train(batch_size)
            .with_augment(self.data.augmentation())
            .with_normalization(self.data.normalization());
        // At most two tries: the rest of this pass, then a fresh pass (the shard is not empty).
        for _ in 0..2 {
            let mut batches = EpochBatches::new(&self.shard, config, self.seed, self.epoch)
                .map_err(|e| GradientError(e.to_string()))?;
            batches.skip_batches(self.batches_done);
            if batches.next_into(&mut self.batch) {
                self.batches_done += 1;
                return Ok(());
            }
            self.epoch += 1;
            self.batches_done = 0;
        }
        Err(GradientError("the worker's shard yields no batch".into()))
    }
}

impl GradientSource for ModelWorker {
    fn num_params(&self) -> usize {
        self.num_params
    }

    fn compute(&mut self, params: &[f32], grads: &mut [f32]) -> Result<BatchStats, GradientError> {
        match self.pool.clone() {
            Some(pool) => pool.install(|| self.compute_here(params, grads)),
            None => self.compute_here(params, grads),
        }
    }
}

impl ModelWorker {
    /// [`GradientSource::compute`] in the current rayon pool.
    fn compute_here(
        &mut self,
        params: &[f32],
        grads: &mut [f32],
    ) -> Result<BatchStats, GradientError> {
        if params.len() != self.num_params || grads.len() != self.num_params {
            return Err(GradientError(format!(
                "{} parameters and {} gradient slots for a {} model of {} parameters",
                params.len(),
                grads.len(),
                self.kind,
                self.num_params
            )));
        }
        let batch_size = self.sizing.next();
        self.next_batch(batch_size)?;
        let device = training_device();
        let model = match self.model.take() {
            Some(m) => m,
            None => Model::new(self.kind, &device, self.model_seed),
        };
        let model = bridge::write_params(model, params)
            .map_err(|e| GradientError(format!("writing parameters into the model: {e}")))?;
        let batch = &self.batch;
        let (model, mean_loss, accuracy) =
            batch_gradient(model, batch, &self.loss_fn, &mut self.grad_buf);
        self.model = Some(model);
        if !mean_loss.is_finite() {
            return Err(GradientError(format!(
                "the loss is {mean_loss} on a batch of {}",
                batch.len
            )));
        }
        if self.grad_buf.len() != grads.len() {
            return Err(GradientError(format!(
                "the model produced {} gradient values for {} parameters",
                self.grad_buf.len(),
                grads.len()
            )));
        }
        grads.copy_from_slice(&self.grad_buf);
        Ok(BatchStats {
            loss: mean_loss,
            accuracy: Some(accuracy),
            batch_size: batch.len as u64,
        })
    }
}

/// An [`Evaluator`] that writes the server's parameters into a model and scores it on a test
/// set with [`crate::trainer::evaluate`].
///
/// BatchNorm running statistics are not synchronized through the server: give the evaluator
/// training data to recompute them ([`ModelEvaluator::with_batch_norm_recompute`]; see the
/// [module documentation](self)).
pub struct ModelEvaluator {
    model: Option<Model>,
    kind: ModelKind,
    seed: u64,
    num_params: usize,
    test: Dataset,
    val: Option<Dataset>,
    batch_norm: Option<BatchNormRecompute>,
    evaluations: u64,
    data: DataConfig,
    batch_size: usize,
    export: Option<EvalExport>,
}

/// Where an evaluator writes the evaluated model ([`ModelEvaluator::with_export`]).
#[derive(Debug, Clone)]
struct EvalExport {
    dir: std::path::PathBuf,
    meta: crate::export::ModelMeta,
}

/// Where an evaluator recomputes BatchNorm statistics from ([`ModelEvaluator::with_batch_norm_recompute`]).
#[derive(Debug, Clone)]
struct BatchNormRecompute {
    train: Dataset,
    batch_size: usize,
}

impl std::fmt::Debug for ModelEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelEvaluator")
            .field("kind", &self.kind)
            .field("test_len", &self.test.len())
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl ModelEvaluator {
    /// Scores models of `kind` on `test` in batches of `batch_size` (which does not change the
    /// result), with `data`'s normalization. Fails on an empty test set or batch size 0.
    pub fn new(
        kind: ModelKind,
        test: Dataset,
        data: &DataConfig,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, TrainError> {
        if test.is_empty() {
            return Err(TrainError::Config("the test set is empty".into()));
        }
        if batch_size == 0 {
            return Err(TrainError::Config(
                "evaluation batch size 0 is out of range; allowed: >= 1".into(),
            ));
        }
        let model = Model::new(kind, &training_device(), seed);
        let num_params = bridge::param_count(&model);
        Ok(Self {
            model: Some(model),
            kind,
            seed,
            num_params,
            test,
            val: None,
            batch_norm: None,
            evaluations: 0,
            data: data.clone(),
            batch_size,
            export: None,
        })
    }

    /// After every evaluation, writes the evaluated model to `dir/model.safetensors`, and to
    /// `dir/best.safetensors` when it scores better than every earlier evaluation of the run
    /// ([`EvalPoint::is_best`]: on the validation split when there is one, on the test set
    /// otherwise); see [`crate::export::save_model_files`]. `None` writes nothing.
    pub fn with_export(mut self, dir: Option<std::path::PathBuf>, run_kind: &str) -> Self {
        self.export = dir.map(|dir| EvalExport {
            meta: crate::export::ModelMeta {
                run_kind: Some(run_kind.into()),
                run: Some(dir.display().to_string()),
                data: serde_json::to_string(&self.data).ok(),
                seed: Some(self.seed),
                ..crate::export::ModelMeta::default()
            },
            dir,
        });
        self
    }

    /// Before every evaluation, recomputes the model's BatchNorm running statistics (resnet;
    /// `mlp` and `cnn` have none) at the evaluated parameters from
    /// [`BATCH_NORM_RECOMPUTE_BATCHES`](crate::trainer::BATCH_NORM_RECOMPUTE_BATCHES) batches
    /// of `train` (of `batch_size` examples, without augmentation), since the statistics do not
    /// travel through the parameter server.
    pub fn with_batch_norm_recompute(mut self, train: Dataset, batch_size: usize) -> Self {
        self.batch_norm = (!train.is_empty()).then_some(BatchNormRecompute { train, batch_size });
        self
    }

    /// Also scores every evaluation on `val` (the validation split held out of the training
    /// set), when given; an empty split counts as none.
    pub fn with_validation(mut self, val: Option<Dataset>) -> Self {
        self.val = val.filter(|v| !v.is_empty());
        self
    }

    /// Number of parameters the evaluated model has.
    pub fn num_params(&self) -> usize {
        self.num_params
    }
}

impl Evaluator for ModelEvaluator {
    fn writes_model_files(&self) -> bool {
        self.export.is_some()
    }

    fn evaluate(&mut self, at: &EvalPoint, params: &[f32]) -> Result<EvalStats, GradientError> {
        if params.len() != self.num_params {
            return Err(GradientError(format!(
                "{} parameters for a {} model of {}",
                params.len(),
                self.kind,
                self.num_params
            )));
        }
        let model = match self.model.take() {
            Some(m) => m,
            None => Model::new(self.kind, &training_device(), self.seed),
        };
        let model = bridge::write_params(model, params)
            .map_err(|e| GradientError(format!("writing parameters into the model: {e}")))?;
        if let Some(bn) = &self.batch_norm {
            crate::trainer::recompute_batch_norm(
                &model,
                &bn.train,
                bn.batch_size,
                &self.data,
                self.seed ^ 0x5f,
                self.evaluations,
            )
            .map_err(|e| GradientError(format!("recomputing BatchNorm statistics: {e}")))?;
        }
        self.evaluations += 1;
        let result = evaluate(&model, &self.test, self.batch_size, &self.data).and_then(|test| {
            let val = self
                .val
                .as_ref()
                .map(|v| evaluate(&model, v, self.batch_size, &self.data))
                .transpose()?;
            Ok((test, val))
        });
        let ((loss, accuracy), val) = match result {
            Ok(r) => r,
            Err(e) => {
                self.model = Some(model);
                return Err(GradientError(e.to_string()));
            }
        };
        if let Some(export) = &self.export {
            let val_accuracy = val.map(|v| v.1);
            let is_best = at.is_best(Some(accuracy), val_accuracy);
            let params = crate::export::ModelParams::from_model(
                &model,
                crate::export::ModelMeta {
                    update: Some(at.version),
                    epoch: at.epoch,
                    test_accuracy: Some(accuracy),
                    val_accuracy,
                    chosen_on: is_best
                        .then(|| stagewise_core::record::chosen_on(val.is_some()).to_string()),
                    ..export.meta.clone()
                },
            );
            if let Err(e) = crate::export::save_model_files(&export.dir, &params) {
                self.model = Some(model);
                return Err(GradientError(format!("writing the model: {e}")));
            }
        }
        self.model = Some(model);
        Ok(EvalStats {
            loss,
            accuracy: Some(accuracy),
            examples: self.test.len() as u64,
            val_loss: val.map(|v| v.0),
            val_accuracy: val.map(|v| v.1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetKind;
    use stagewise_core::schedule::{Plan, Stage};
    use stagewise_data::{synthetic, SyntheticConfig};

    fn small() -> (Dataset, Dataset, DataConfig) {
        let splits = synthetic(&SyntheticConfig::small()).unwrap();
        let data = DataConfig {
            dataset: DatasetKind::Synthetic,
            ..DataConfig::default()
        };
        (splits.train, splits.test, data)
    }

    #[test]
    fn loss_and_accuracy_of_known_logits() {
        let mut logits = vec![0.0f32; 2 * NUM_CLASSES];
        logits[3] = 10.0; // row 0 predicts 3
        logits[NUM_CLASSES + 5] = 10.0; // row 1 predicts 5
        let (loss, acc) = loss_and_accuracy(&logits, &[3, 4]);
        assert_eq!(acc, 0.5);
        // Row 0 is almost surely right (loss ≈ 0), row 1 pays about 10.
        assert!((loss - 5.0).abs() < 0.01, "{loss}");
    }

    #[test]
    fn clocks_estimate_the_server_version() {
        let shared = StepClock::shared();
        let other = shared.clone();
        assert_eq!(shared.tick(), 0);
        assert_eq!(other.tick(), 1);
        assert_eq!(shared.estimate(), 2);
        let local = StepClock::local(4);
        local.tick();
        local.tick();
        assert_eq!(local.estimate(), 8);
        assert_eq!(StepClock::shared().with_scale(f64::NAN).scale, 1.0);
    }

    #[test]
    fn plan_sizing_follows_the_stage_and_holds_the_last() {
        let plan = Plan::new(vec![
            Stage::for_steps(2, 0.1, 0.9, 0.7, 16),
            Stage::for_steps(2, 0.05, 0.9, 0.7, 32),
        ]);
        let sizing = BatchSizing::Plan {
            layout: plan.layout(320).unwrap(),
            clock: StepClock::shared(),
        };
        let sizes: Vec<usize> = (0..6).map(|_| sizing.next()).collect();
        assert_eq!(sizes, [16, 16, 32, 32, 32, 32]);
    }

    #[test]
    fn worker_gradient_matches_its_batch_and_is_deterministic() {
        let (train, _, data) = small();
        let params = initial_params(ModelKind::Mlp, 1);
        let make = || {
            ModelWorker::new(
                ModelKind::Mlp,
                &train,
                1,
                2,
                &data,
                BatchSizing::Fixed(8),
                1,
            )
            .unwrap()
        };
        let (mut a, mut b) = (make(), make());
        assert_eq!(a.num_params(), params.len());
        assert_eq!(a.shard_len(), train.len() / 2);
        let mut ga = vec![0.0; params.len()];
        let mut gb = vec![1.0; params.len()];
        let sa = a.compute(&params, &mut ga).unwrap();
        let sb = b.compute(&params, &mut gb).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(ga, gb);
        assert_eq!(sa.batch_size, 8);
        assert!(sa.loss.is_finite() && sa.loss > 0.0);
        assert!(ga.iter().any(|&g| g != 0.0));
        // The next batch differs.
        a.compute(&params, &mut gb).unwrap();
        assert_ne!(ga, gb);
        // Wrong lengths are errors, not panics.
        assert!(a.compute(&params[1..], &mut ga[1..]).is_err());
    }

    #[test]
    fn a_step_against_the_gradient_lowers_the_batch_loss() {
        let (train, _, data) = small();
        let mut w = ModelWorker::new(
            ModelKind::Mlp,
            &train,
            0,
            1,
            &data,
            BatchSizing::Fixed(train.len()),
            0,
        )
        .unwrap();
        let mut params = initial_params(ModelKind::Mlp, 0);
        let mut g = vec![0.0; params.len()];
        let before = w.compute(&params, &mut g).unwrap().loss;
        params.iter_mut().zip(&g).for_each(|(p, g)| *p -= 0.05 * g);
        // Full-batch: the second pass sees the same examples.
        let after = w.compute(&params, &mut g).unwrap().loss;
        assert!(after < before, "{after} >= {before}");
    }

    #[test]
    fn evaluator_scores_parameters_and_refuses_wrong_lengths() {
        let (_, test, data) = small();
        let mut e = ModelEvaluator::new(ModelKind::Mlp, test.clone(), &data, 100, 0).unwrap();
        let params = initial_params(ModelKind::Mlp, 0);
        let stats = e.evaluate(&EvalPoint::default(), &params).unwrap();
        assert_eq!(stats.examples, test.len() as u64);
        let acc = stats.accuracy.unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(stats.loss > 0.0);
        assert!(e.evaluate(&EvalPoint::default(), &params[..10]).is_err());
        assert!(ModelEvaluator::new(ModelKind::Mlp, test, &data, 0, 0).is_err());
    }

    #[test]
    fn the_evaluator_recomputes_a_resnets_batch_norm_statistics_at_the_evaluated_parameters() {
        use crate::checkpoint::Checkpoint;
        use crate::trainer::{evaluate, train, RunOptions, TrainConfig};
        let data = DataConfig {
            dataset: DatasetKind::Synthetic,
            train_subset: Some(1000),
            test_subset: Some(200),
            ..DataConfig::default()
        };
        let config = TrainConfig {
            model: ModelKind::ResNet,
            optimizer: stagewise_core::optim::OptimizerKind::Qhm,
            plan: Plan::new(vec![Stage::for_epochs(1, 0.5, 0.9, 0.7, 20)]),
            data: data.clone(),
            seed: 2,
            eval_batch_size: 100,
        };
        let dir = tempfile::tempdir().unwrap();
        let trained = train(&config, dir.path(), &RunOptions::default()).unwrap();
        let own_stats = trained.final_accuracy().unwrap();
        let ckpt = Checkpoint::load(dir.path()).unwrap();
        let splits = data.load(config.seed).unwrap();
        // The training run's own model (its own running statistics) scores `own_stats`.
        let model = Model::new(ModelKind::ResNet, &training_device(), config.seed);
        let model = bridge::write_buffers(
            bridge::write_params(model, &ckpt.params).unwrap(),
            &ckpt.buffers,
        )
        .unwrap();
        let (_, acc) = evaluate(&model, &splits.test, 100, &data).unwrap();
        assert_eq!(acc, own_stats);

        let mut initial =
            ModelEvaluator::new(ModelKind::ResNet, splits.test.clone(), &data, 100, 2).unwrap();
        let mut recomputing =
            ModelEvaluator::new(ModelKind::ResNet, splits.test.clone(), &data, 100, 2)
                .unwrap()
                .with_batch_norm_recompute(splits.train.clone(), 20);
        let with_initial = initial
            .evaluate(&EvalPoint::default(), &ckpt.params)
            .unwrap()
            .accuracy
            .unwrap();
        let with_recomputed = recomputing
            .evaluate(&EvalPoint::default(), &ckpt.params)
            .unwrap()
            .accuracy
            .unwrap();
        // Initial statistics (mean 0, variance 1) do not fit the trained network; statistics
        // recomputed at its parameters fit it at least as well as the training run's own
        // running averages, which lag behind the parameters (BatchNorm momentum 0.1).
        let report =
            format!("recomputed {with_recomputed}, initial {with_initial}, own {own_stats}");
        eprintln!("{report}");
        assert!(with_recomputed > with_initial + 0.05, "{report}");
        assert!(with_recomputed + 0.02 >= own_stats, "{report}");
    }

    #[test]
    fn bad_worker_setups_are_errors() {
        let (train, _, data) = small();
        let sizing = BatchSizing::Fixed(4);
        assert!(ModelWorker::new(ModelKind::Mlp, &train, 2, 2, &data, sizing.clone(), 0).is_err());
        assert!(ModelWorker::new(
            ModelKind::Mlp,
            &train,
            0,
            2,
            &data,
            BatchSizing::Fixed(0),
            0
        )
        .is_err());
        let tiny = train.take(1);
        assert!(ModelWorker::new(ModelKind::Mlp, &tiny, 1, 2, &data, sizing, 0).is_err());
    }
}
