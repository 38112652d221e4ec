//! The curvature and gradient-noise spectrum of a model at given parameters, for the
//! PAC-Bayes proxy (docs/theory.md §3.3), the stability checks of `stagewise plan explain` (§1)
//! and the staleness cap of `plan recommend --workers` and `asgd` (§4.2).
//!
//! - **Curvature-vector products** on a fixed set of training examples, without double
//!   backward (burn's flex backend has none), in one of two ways ([`Curvature`]):
//!   - [`Curvature::GaussNewton`] (default): the generalized Gauss-Newton matrix
//!     G = (1/n) Σ_i J_iᵀ H_i J_i, with J_i the Jacobian of example i's logits and H_i the
//!     softmax cross-entropy Hessian in the logits. J v is a central difference of the
//!     *logits* (continuous in θ for ReLU networks), H_i is exact, and Jᵀ r is one backward
//!     pass. G is symmetric positive semi-definite, and near a minimum it carries the top of
//!     the Hessian's spectrum (the usual choice for sharpness and PAC-Bayes analyses);
//!   - [`Curvature::FiniteDifferenceHessian`]: H v ≈ ‖v‖ (∇L(θ + ε v̂) − ∇L(θ − ε v̂)) / (2ε).
//!     For ReLU networks the gradient jumps where a unit changes sign, and those jumps do not
//!     vanish with ε: measured on the mlp, ‖Hv‖ grew from 0.17 to 1.1 as ε went from 0.1 to
//!     0.001 and Lanczos' Ritz vectors were not eigenvectors of a fresh product. Kept for
//!     smooth models and for comparison.
//! - **Top eigenpairs** by Lanczos ([`stagewise_core::theory::estimate::lanczos_top`]) and
//!   **tr H** by Hutchinson's estimator on those products.
//! - **Gradient noise** from independent minibatches: c_j = b · Var(u_j · g_b) along each
//!   eigenvector, and tr C.
//!
//! The result is a [`SpectrumEstimate`], which `--spectrum FILE.json` reads back.
//!
//! ```no_run
//! use stagewise_train::asgd::initial_params;
//! use stagewise_train::model::ModelKind;
//! use stagewise_train::spectrum::{estimate_spectrum, ModelPoint, SpectrumConfig};
//! use stagewise_train::{DataConfig, DatasetKind};
//!
//! let data = DataConfig { dataset: DatasetKind::Synthetic, ..DataConfig::default() };
//! let splits = data.load(0)?;
//! let point = ModelPoint::new(ModelKind::Mlp, initial_params(ModelKind::Mlp, 0), vec![])?;
//! let est = estimate_spectrum(&point, &splits.train, &data, &SpectrumConfig::default())?;
//! println!("h_max ≈ {}", est.h[0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Instant;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use stagewise_core::choice::Choice;
use stagewise_core::theory::estimate::{
    hutchinson_trace, lanczos_top, LanczosOptions, NoiseAccumulator, SpectrumEstimate,
};
use stagewise_data::{Batch, BatchConfig, Dataset, EpochBatches};

use crate::asgd::{batch_gradient, initial_params};
use crate::bridge;
use crate::checkpoint::{Checkpoint, CHECKPOINT_FILE};
use crate::data::DataConfig;
use crate::model::{Classifier, Model, ModelKind, NUM_CLASSES};
use crate::trainer::{batch_tensors, TrainConfig, TrainError};
use crate::training_device;

/// Which curvature matrix the products use (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Curvature {
    /// Generalized Gauss-Newton: finite-difference logits, exact softmax Hessian, one backward.
    #[default]
    GaussNewton,
    /// Central finite differences of gradients.
    FiniteDifferenceHessian,
}

impl Choice for Curvature {
    const WHAT: &'static str = "curvature";
    const ALL: &'static [Self] = &[Self::GaussNewton, Self::FiniteDifferenceHessian];

    fn name(self) -> &'static str {
        match self {
            Self::GaussNewton => "gauss-newton",
            Self::FiniteDifferenceHessian => "fd-hessian",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::GaussNewton => {
                "generalized Gauss-Newton: symmetric PSD; finite-difference logits, exact \
                 softmax Hessian"
            }
            Self::FiniteDifferenceHessian => {
                "finite differences of gradients; noisy for ReLU networks"
            }
        }
    }
}

stagewise_core::display_and_parse_by_choice!(Curvature);

/// Options of [`estimate_spectrum`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrumConfig {
    /// The curvature matrix.
    pub curvature: Curvature,
    /// Top Hessian eigenpairs to find (≥ 1).
    pub top: usize,
    /// Lanczos steps (Hessian-vector products), ≥ `top`.
    pub lanczos_steps: usize,
    /// Training examples of the fixed batch the Hessian is taken on (≥ 1).
    pub hessian_examples: usize,
    /// Examples per forward/backward pass over that batch (memory bound, not the result).
    pub chunk: usize,
    /// Finite-difference step ε in parameter space (> 0).
    pub fd_step: f64,
    /// Hutchinson probes for tr H (0: no trace, no bulk).
    pub trace_probes: usize,
    /// Batch size b of the minibatch gradients for the noise (≥ 1).
    pub noise_batch: usize,
    /// Number of minibatch gradients for the noise (≥ 2).
    pub noise_batches: usize,
    /// Seed of the example choice and the random vectors.
    pub seed: u64,
    /// Draw a progress bar with the time left on the terminal (not part of the estimate).
    #[serde(skip)]
    pub progress: bool,
}

impl Default for SpectrumConfig {
    /// 8 pairs from 24 Lanczos steps on 2048 examples, ε = 1e-3, 4 trace probes, 64 noise
    /// batches of 128: about 80 gradient passes over 2048 examples (minutes for the cnn on 2
    /// cores).
    fn default() -> Self {
        Self {
            curvature: Curvature::GaussNewton,
            top: 8,
            lanczos_steps: 24,
            hessian_examples: 2048,
            chunk: 512,
            fd_step: 1e-3,
            trace_probes: 4,
            noise_batch: 128,
            noise_batches: 64,
            seed: 0,
            progress: false,
        }
    }
}

impl SpectrumConfig {
    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, value: String, allowed: &str| {
            Err(TrainError::Config(format!(
                "{field} = {value} is out of range; allowed: {allowed}"
            )))
        };
        if self.top == 0 {
            return bad("top", "0".into(), ">= 1");
        }
        if self.lanczos_steps < self.top {
            return bad(
                "lanczos_steps",
                self.lanczos_steps.to_string(),
                &format!(">= top = {}", self.top),
            );
        }
        if self.hessian_examples == 0 {
            return bad("hessian_examples", "0".into(), ">= 1");
        }
        if self.chunk == 0 {
            return bad("chunk", "0".into(), ">= 1");
        }
        if !(self.fd_step.is_finite() && self.fd_step > 0.0) {
            return bad("fd_step", self.fd_step.to_string(), "finite and > 0");
        }
        if self.noise_batch == 0 {
            return bad("noise_batch", "0".into(), ">= 1");
        }
        if self.noise_batches < 2 {
            return bad("noise_batches", self.noise_batches.to_string(), ">= 2");
        }
        Ok(())
    }
}

/// A model and the point in parameter space to look at.
#[derive(Debug, Clone)]
pub struct ModelPoint {
    /// The architecture.
    pub kind: ModelKind,
    /// Flat parameters (the order of [`bridge`]).
    pub params: Vec<f32>,
    /// Flat buffers (BatchNorm running statistics), possibly empty.
    pub buffers: Vec<f32>,
    /// Where the point comes from, for the estimate's notes.
    pub source: String,
    /// The data of the run the point was trained on, if known.
    pub data: Option<DataConfig>,
}

impl ModelPoint {
    /// A point of `kind` with the given parameters (and buffers, or none).
    ///
    /// # Errors
    /// When the number of parameters does not match the architecture.
    pub fn new(kind: ModelKind, params: Vec<f32>, buffers: Vec<f32>) -> Result<Self, TrainError> {
        if params.len() != kind.param_count() {
            return Err(TrainError::Config(format!(
                "{} parameters given for a {kind} model of {}",
                params.len(),
                kind.param_count()
            )));
        }
        Ok(Self {
            kind,
            params,
            buffers,
            source: format!("{kind}, given parameters"),
            data: None,
        })
    }

    /// The trained model of a run folder written by `stagewise train` (its checkpoint).
    ///
    /// # Errors
    /// When the checkpoint is missing or corrupt, or its configuration names no model.
    pub fn from_run(dir: &std::path::Path) -> Result<Self, TrainError> {
        let ckpt = Checkpoint::load(dir)?;
        let config: TrainConfig =
            serde_json::from_value(ckpt.meta.config.clone()).map_err(|e| {
                TrainError::Config(format!(
                    "{}: the checkpoint's configuration is not a training run's: {e}",
                    dir.display()
                ))
            })?;
        let mut point = Self::new(config.model, ckpt.params, ckpt.buffers)?;
        point.data = Some(config.data.clone());
        point.source = format!(
            "{}, checkpoint of {} after {} epochs",
            config.model,
            dir.display(),
            ckpt.meta.epochs_done
        );
        Ok(point)
    }
}

/// Where a spectrum is taken: a run folder written by `stagewise train` (its checkpoint), or a
/// model name (`mlp`, `cnn`, `resnet`) at its initialization with `seed`.
///
/// Returns the point and the data to take the spectrum on: the run's, or the default data for a
/// fresh model.
///
/// # Errors
/// When `source` is neither a run folder nor a model name, or the run's checkpoint is unreadable.
pub fn resolve_source(source: &str, seed: u64) -> Result<(ModelPoint, DataConfig), TrainError> {
    let dir = std::path::Path::new(source);
    if dir.join(CHECKPOINT_FILE).is_file() {
        let point = ModelPoint::from_run(dir)?;
        let data = point.data.clone().unwrap_or_default();
        return Ok((point, data));
    }
    let kind: ModelKind = source.parse().map_err(|e| {
        TrainError::Config(format!(
            "{source}: not a run folder (no {CHECKPOINT_FILE} in it) and not a model name: {e}"
        ))
    })?;
    let point = ModelPoint::new(kind, initial_params(kind, seed), vec![])?;
    Ok((point, DataConfig::default()))
}

/// Computes full-batch gradients over a fixed list of batches at arbitrary parameters.
struct GradientOracle {
    model: Option<Model>,
    kind: ModelKind,
    buffers: Vec<f32>,
    loss_fn: CrossEntropyLoss,
    grad: Vec<f32>,
    passes: usize,
}

impl GradientOracle {
    fn new(point: &ModelPoint) -> Result<Self, TrainError> {
        let device = training_device();
        let mut model = Model::new(point.kind, &device, 0);
        if !point.buffers.is_empty() {
            model = bridge::write_buffers(model, &point.buffers)?;
        }
        Ok(Self {
            model: Some(model),
            kind: point.kind,
            buffers: point.buffers.clone(),
            loss_fn: CrossEntropyLossConfig::new().init(&device),
            grad: Vec::new(),
            passes: 0,
        })
    }

    /// The mean-loss gradient over `batches` (weighted by their sizes) at `params`, into `out`.
    fn gradient(
        &mut self,
        params: &[f32],
        batches: &[Batch],
        out: &mut [f64],
    ) -> Result<f64, String> {
        let mut model = self.model_at(params)?;
        let total: usize = batches.iter().map(|b| b.len).sum();
        out.fill(0.0);
        let mut loss = 0.0;
        for batch in batches {
            let (m, batch_loss, _) = batch_gradient(model, batch, &self.loss_fn, &mut self.grad);
            model = m;
            self.passes += 1;
            if self.grad.len() != out.len() {
                return Err(format!(
                    "the model produced {} gradient values for {} parameters",
                    self.grad.len(),
                    out.len()
                ));
            }
            let w = batch.len as f64 / total as f64;
            loss += w * batch_loss;
            out.iter_mut()
                .zip(&self.grad)
                .for_each(|(o, &g)| *o += w * f64::from(g));
        }
        self.model = Some(model);
        if !loss.is_finite() {
            return Err(format!("the loss is {loss} at the perturbed parameters"));
        }
        Ok(loss)
    }
}

impl GradientOracle {
    fn model_at(&mut self, params: &[f32]) -> Result<Model, String> {
        let model = match self.model.take() {
            Some(m) => m,
            None => {
                let m = Model::new(self.kind, &training_device(), 0);
                if self.buffers.is_empty() {
                    m
                } else {
                    bridge::write_buffers(m, &self.buffers).map_err(|e| e.to_string())?
                }
            }
        };
        bridge::write_params(model, params).map_err(|e| e.to_string())
    }

    /// The logits `[n, 10]` (row-major) of each batch at `params`.
    fn logits(&mut self, params: &[f32], batches: &[Batch]) -> Result<Vec<Vec<f32>>, String> {
        let model = self.model_at(params)?;
        let device = training_device();
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let (images, _) = batch_tensors(batch, &device);
            let z = model
                .forward(images)
                .into_data_as::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| format!("reading logits: {e:?}"))?;
            if z.iter().any(|x| !x.is_finite()) {
                return Err("the logits are not finite at the perturbed parameters".into());
            }
            out.push(z);
        }
        self.model = Some(model);
        self.passes += batches.len();
        Ok(out)
    }

    /// The gradient at `params` of Σ_batches Σ_i r_i · z_i(θ) / `total`, into `out`.
    fn weighted_logit_gradient(
        &mut self,
        params: &[f32],
        batches: &[Batch],
        weights: &[Vec<f32>],
        total: usize,
        out: &mut [f64],
    ) -> Result<(), String> {
        let model = self.model_at(params)?;
        let device = training_device();
        out.fill(0.0);
        for (batch, r) in batches.iter().zip(weights) {
            let (images, _) = batch_tensors(batch, &device);
            let logits = model.forward(images);
            let r = Tensor::<2>::from_data(
                TensorData::new(r.clone(), [batch.len, NUM_CLASSES]),
                &device,
            );
            let objective = (logits * r).sum();
            let grads = GradientsParams::from_grads(objective.backward(), &model);
            bridge::read_grads_into(&model, &grads, &mut self.grad);
            if self.grad.len() != out.len() {
                return Err(format!(
                    "the model produced {} gradient values for {} parameters",
                    self.grad.len(),
                    out.len()
                ));
            }
            let w = 1.0 / total as f64;
            out.iter_mut()
                .zip(&self.grad)
                .for_each(|(o, &g)| *o += w * f64::from(g));
        }
        self.model = Some(model);
        self.passes += batches.len();
        Ok(())
    }
}

/// The first `n` examples of the training set in a seeded order, as batches of `chunk`.
fn fixed_batches(
    train: &Dataset,
    data: &DataConfig,
    n: usize,
    chunk: usize,
    seed: u64,
) -> Result<Vec<Batch>, TrainError> {
    let config = BatchConfig::eval(chunk.min(n)).with_normalization(data.normalization());
    let config = BatchConfig {
        shuffle: true,
        ..config
    };
    let mut batches = EpochBatches::new(train, config, seed, 0)?;
    let mut out = Vec::new();
    let mut taken = 0;
    while taken < n {
        let mut b = Batch::default();
        if !batches.next_into(&mut b) {
            break;
        }
        if taken + b.len > n {
            truncate_batch(&mut b, n - taken);
        }
        taken += b.len;
        out.push(b);
    }
    Ok(out)
}

fn truncate_batch(b: &mut Batch, len: usize) {
    let per = b.rows * b.cols;
    b.images.truncate(len * per);
    b.labels.truncate(len);
    b.indices.truncate(len);
    b.len = len;
}

/// Hessian-vector products of the mean training loss of a model at a fixed point, on a fixed
/// set of examples, by central finite differences of gradients (see the
/// [module documentation](self)).
pub struct HessianOperator<'a> {
    curvature: Curvature,
    point: &'a ModelPoint,
    logits_plus: Vec<Vec<f32>>,
    logits_minus: Vec<Vec<f32>>,
    /// Logits at θ itself (computed on the first Gauss-Newton product).
    logits_at: Vec<Vec<f32>>,
    batches: Vec<Batch>,
    oracle: GradientOracle,
    plus: Vec<f64>,
    minus: Vec<f64>,
    shifted: Vec<f32>,
    eps: f64,
    products: usize,
    start: Instant,
}

impl std::fmt::Debug for HessianOperator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HessianOperator")
            .field("curvature", &self.curvature)
            .field("kind", &self.point.kind)
            .field("examples", &self.examples())
            .field("eps", &self.eps)
            .field("products", &self.products)
            .finish_non_exhaustive()
    }
}

impl<'a> HessianOperator<'a> {
    /// The `curvature` matrix at `point` of the mean loss over `examples` training examples
    /// chosen by `seed` (normalized as `data` says), evaluated `chunk` examples per pass, with
    /// finite-difference step `eps`.
    ///
    /// # Errors
    /// For `examples`, `chunk` or `eps` out of range, or a model that cannot be built.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        curvature: Curvature,
        point: &'a ModelPoint,
        train: &Dataset,
        data: &DataConfig,
        examples: usize,
        chunk: usize,
        eps: f64,
        seed: u64,
    ) -> Result<Self, TrainError> {
        if examples == 0 || chunk == 0 {
            return Err(TrainError::Config(
                "hessian_examples and chunk must be >= 1".into(),
            ));
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(TrainError::Config(format!(
                "fd_step = {eps} is out of range; allowed: finite and > 0"
            )));
        }
        let dim = point.params.len();
        Ok(Self {
            curvature,
            point,
            logits_plus: Vec::new(),
            logits_minus: Vec::new(),
            logits_at: Vec::new(),
            batches: fixed_batches(train, data, examples, chunk, seed)?,
            oracle: GradientOracle::new(point)?,
            plus: vec![0.0; dim],
            minus: vec![0.0; dim],
            shifted: vec![0.0; dim],
            eps,
            products: 0,
            start: Instant::now(),
        })
    }

    /// Number of examples the loss is averaged over.
    pub fn examples(&self) -> usize {
        self.batches.iter().map(|b| b.len).sum()
    }

    /// Products computed so far.
    pub fn products(&self) -> usize {
        self.products
    }

    /// Forward/backward passes so far.
    pub fn passes(&self) -> usize {
        self.oracle.passes
    }

    /// `out = H v` (two gradients at θ ± ε v/‖v‖).
    ///
    /// # Errors
    /// A message when a gradient is not finite or has the wrong length.
    pub fn apply(&mut self, v: &[f64], out: &mut [f64]) -> Result<(), String> {
        let dim = self.point.params.len();
        if v.len() != dim || out.len() != dim {
            return Err(format!(
                "vectors of {} and {} values for {dim} parameters",
                v.len(),
                out.len()
            ));
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            out.fill(0.0);
            return Ok(());
        }
        match self.curvature {
            Curvature::FiniteDifferenceHessian => self.fd_hessian(v, norm, out)?,
            Curvature::GaussNewton => self.gauss_newton(v, norm, out)?,
        }
        self.products += 1;
        if self.products.is_multiple_of(4) {
            tracing::info!(
                "spectrum: {} Hessian-vector products, {:.0} s",
                self.products,
                self.start.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}

impl HessianOperator<'_> {
    /// θ + sign · ε · v/‖v‖ into `self.shifted`.
    fn shift(&mut self, v: &[f64], norm: f64, sign: f64) {
        for ((s, &p), &x) in self.shifted.iter_mut().zip(&self.point.params).zip(v) {
            *s = (f64::from(p) + sign * self.eps * x / norm) as f32;
        }
    }

    fn fd_hessian(&mut self, v: &[f64], norm: f64, out: &mut [f64]) -> Result<(), String> {
        self.shift(v, norm, 1.0);
        self.oracle
            .gradient(&self.shifted, &self.batches, &mut self.plus)?;
        self.shift(v, norm, -1.0);
        self.oracle
            .gradient(&self.shifted, &self.batches, &mut self.minus)?;
        let scale = norm / (2.0 * self.eps);
        for ((o, p), m) in out.iter_mut().zip(&self.plus).zip(&self.minus) {
            *o = (p - m) * scale;
        }
        Ok(())
    }

    fn gauss_newton(&mut self, v: &[f64], norm: f64, out: &mut [f64]) -> Result<(), String> {
        self.shift(v, norm, 1.0);
        self.logits_plus = self.oracle.logits(&self.shifted, &self.batches)?;
        self.shift(v, norm, -1.0);
        self.logits_minus = self.oracle.logits(&self.shifted, &self.batches)?;
        // r_i = H_i (J_i v): H = diag(p) − p pᵀ at θ, J v by the central difference.
        let scale = norm / (2.0 * self.eps);
        let total: usize = self.batches.iter().map(|b| b.len).sum();
        let mut weights = Vec::with_capacity(self.batches.len());
        if self.logits_at.is_empty() {
            self.logits_at = self.oracle.logits(&self.point.params, &self.batches)?;
        }
        for ((z, zp), zm) in self
            .logits_at
            .iter()
            .zip(&self.logits_plus)
            .zip(&self.logits_minus)
        {
            let mut r = vec![0.0f32; z.len()];
            for (((ri, zi), pi), mi) in r
                .chunks_exact_mut(NUM_CLASSES)
                .zip(z.chunks_exact(NUM_CLASSES))
                .zip(zp.chunks_exact(NUM_CLASSES))
                .zip(zm.chunks_exact(NUM_CLASSES))
            {
                let max = zi.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = zi.iter().map(|&x| f64::from(x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let jv: Vec<f64> = pi
                    .iter()
                    .zip(mi)
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)) * scale)
                    .collect();
                let p_dot: f64 = e.iter().zip(&jv).map(|(ek, s)| ek / sum * s).sum();
                for ((rk, ek), s) in ri.iter_mut().zip(&e).zip(&jv) {
                    *rk = (ek / sum * (s - p_dot)) as f32;
                }
            }
            weights.push(r);
        }
        // Jᵀ r / n: the gradient of Σ_i r_i · z_i(θ) / n.
        self.oracle
            .weighted_logit_gradient(&self.point.params, &self.batches, &weights, total, out)
    }
}

/// Estimates the top Hessian eigenpairs, tr H and the gradient noise of `point` on `train`
/// (normalized as `data` says, without augmentation); see the [module documentation](self).
///
/// # Errors
/// [`TrainError::Config`] for options out of range or a parameter/model mismatch; an error
/// naming the step when a gradient is not finite.
pub fn estimate_spectrum(
    point: &ModelPoint,
    train: &Dataset,
    data: &DataConfig,
    cfg: &SpectrumConfig,
) -> Result<SpectrumEstimate, TrainError> {
    cfg.validate()?;
    let start = Instant::now();
    let dim = point.params.len();
    if cfg.lanczos_steps > dim {
        return Err(TrainError::Config(format!(
            "lanczos_steps = {} is out of range; allowed: <= the {dim} parameters",
            cfg.lanczos_steps
        )));
    }
    let mut hessian = HessianOperator::new(
        cfg.curvature,
        point,
        train,
        data,
        cfg.hessian_examples,
        cfg.chunk,
        cfg.fd_step,
        cfg.seed,
    )?;
    let examples = hessian.examples();
    let eps = cfg.fd_step;
    // Work in examples passed forward and backward: two per example per product.
    let (per_product, per_noise) = (2 * examples as u64, cfg.noise_batch as u64);
    let products = (cfg.lanczos_steps + cfg.trace_probes) as u64;
    let bar = progress_bar(
        cfg.progress,
        products * per_product + cfg.noise_batches as u64 * per_noise,
    );
    bar.set_message("Hessian-vector products");
    let mut hvp = |v: &[f64], out: &mut [f64]| {
        let applied = hessian.apply(v, out);
        bar.inc(per_product);
        applied
    };
    let lanczos = LanczosOptions {
        top: cfg.top,
        steps: cfg.lanczos_steps,
        seed: cfg.seed,
    };
    let pairs = lanczos_top(dim, &lanczos, &mut hvp).map_err(|e| estimate_error("Lanczos", e))?;
    let trace_h = if cfg.trace_probes > 0 {
        Some(
            hutchinson_trace(dim, cfg.trace_probes, cfg.seed ^ 0x7ace, &mut hvp)
                .map_err(|e| estimate_error("Hutchinson trace", e))?,
        )
    } else {
        None
    };
    let lanczos_seconds = start.elapsed().as_secs_f64();
    let hessian_passes = hessian.passes();
    bar.set_message("noise gradients");

    let mut oracle = GradientOracle::new(point)?;
    let mut noise = NoiseAccumulator::new(pairs.vectors.clone(), cfg.noise_batch)
        .map_err(|e| estimate_error("noise", e))?;
    let config = BatchConfig::train(cfg.noise_batch).with_normalization(data.normalization());
    let mut grad = vec![0.0f64; dim];
    let mut epoch = 0u64;
    let mut batches = EpochBatches::new(train, config, cfg.seed ^ 0x5eed, epoch)?;
    let mut batch = Batch::default();
    let mut done = 0;
    while done < cfg.noise_batches {
        if !batches.next_into(&mut batch) {
            epoch += 1;
            batches = EpochBatches::new(train, config, cfg.seed ^ 0x5eed, epoch)?;
            if !batches.next_into(&mut batch) {
                return Err(TrainError::Config(format!(
                    "noise_batch = {} is larger than the {} training examples",
                    cfg.noise_batch,
                    train.len()
                )));
            }
        }
        oracle
            .gradient(&point.params, std::slice::from_ref(&batch), &mut grad)
            .map_err(|e| TrainError::Config(format!("noise gradient {done}: {e}")))?;
        noise.add(&grad).map_err(|e| estimate_error("noise", e))?;
        done += 1;
        bar.inc(per_noise);
    }
    bar.finish_and_clear();
    let noise = noise.finish().map_err(|e| estimate_error("noise", e))?;
    let mut est = SpectrumEstimate::new(dim, &pairs, &noise, trace_h);
    est.notes = vec![
        format!("model: {}", point.source),
        format!(
            "curvature {} on {examples} training examples, central differences with ε = \
             {eps}, {} Lanczos steps, {} trace probes",
            cfg.curvature, pairs.applications, cfg.trace_probes
        ),
        format!(
            "noise from {} minibatches of {} (per-example c = b · Var)",
            noise.samples, noise.batch_size
        ),
        format!(
            "{} gradient passes, {:.1} s (Hessian {:.1} s)",
            hessian_passes + oracle.passes,
            start.elapsed().as_secs_f64(),
            lanczos_seconds
        ),
    ];
    Ok(est)
}

/// A bar over the estimate's `total` work (examples through the model), with the elapsed time
/// and an estimate of the time left; hidden unless `show`.
fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "spectrum [{bar:30}] {percent:>3}% {msg}, {elapsed} < {eta} left",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

fn estimate_error(stage: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("spectrum estimate, {stage}: {e}"))
}
