//! Small learnable tasks and a fixed gradient, for tests, examples and benchmarks.
//!
//! - [`SoftmaxTask`]: multinomial logistic regression on Gaussian inputs labelled by a random
//!   teacher; workers draw their own batches ([`SoftmaxTask::worker`]) and the held-out split
//!   is an [`Evaluator`] ([`SoftmaxTask::evaluator`]). Loss falls and accuracy rises well above
//!   chance within a few hundred updates.
//! - [`NoisyQuadratic`]: `½ Σ h_i (w_i − w*_i)²` with Gaussian gradient noise.
//! - [`FixedGradient`]: the same pre-filled gradient every time (transport benchmarks).

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::GradientError;
use crate::gradient::{BatchStats, EvalPoint, EvalStats, Evaluator, GradientSource};

fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    rng.sample::<f64, _>(rand_distr::StandardNormal) as f32
}

#[derive(Debug)]
struct Dataset {
    dim: usize,
    classes: usize,
    /// Row-major `n × dim`.
    x: Vec<f32>,
    y: Vec<u32>,
}

impl Dataset {
    fn len(&self) -> usize {
        self.y.len()
    }
}

/// A generated classification problem for multinomial logistic regression.
///
/// Parameters are laid out as the `classes × dim` weight matrix (row-major) followed by
/// `classes` biases: [`SoftmaxTask::num_params`] = `classes · (dim + 1)`.
#[derive(Debug, Clone)]
pub struct SoftmaxTask {
    train: Arc<Dataset>,
    test: Arc<Dataset>,
}

impl SoftmaxTask {
    /// Generates `n_train + n_test` examples in `dim` dimensions over `classes` classes,
    /// labelled by a random linear teacher (with a little label noise), from `seed`.
    pub fn new(dim: usize, classes: usize, n_train: usize, n_test: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let teacher: Vec<f32> = (0..classes * dim).map(|_| gaussian(&mut rng)).collect();
        let mut make = |n: usize| {
            let mut x = Vec::with_capacity(n * dim);
            let mut y = Vec::with_capacity(n);
            for _ in 0..n {
                let row: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng)).collect();
                let label = (0..classes)
                    .map(|c| {
                        let w = &teacher[c * dim..(c + 1) * dim];
                        let z: f32 = w.iter().zip(&row).map(|(a, b)| a * b).sum();
                        z + 0.5 * gaussian(&mut rng)
                    })
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(0, |(c, _)| c as u32);
                x.extend_from_slice(&row);
                y.push(label);
            }
            Arc::new(Dataset { dim, classes, x, y })
        };
        let train = make(n_train);
        let test = make(n_test);
        Self { train, test }
    }

    /// Number of model parameters, `classes · (dim + 1)`.
    pub fn num_params(&self) -> usize {
        self.train.classes * (self.train.dim + 1)
    }

    /// A worker drawing batches of `batch_size` training examples with its own `seed`.
    pub fn worker(&self, batch_size: usize, seed: u64) -> SoftmaxWorker {
        SoftmaxWorker {
            data: Arc::clone(&self.train),
            batch_size: batch_size.max(1),
            rng: ChaCha8Rng::seed_from_u64(seed),
            logits: vec![0.0; self.train.classes],
        }
    }

    /// Evaluates on the held-out split.
    pub fn evaluator(&self) -> SoftmaxEvaluator {
        SoftmaxEvaluator {
            data: Arc::clone(&self.test),
        }
    }
}

/// Loss and correctness of one example; adds its gradient (scaled by `scale`) when asked.
fn example(
    data: &Dataset,
    i: usize,
    params: &[f32],
    logits: &mut [f32],
    grads: Option<(&mut [f32], f32)>,
) -> (f64, bool) {
    let (d, k) = (data.dim, data.classes);
    let x = &data.x[i * d..(i + 1) * d];
    let (w, b) = params.split_at(k * d);
    for c in 0..k {
        let z: f32 = w[c * d..(c + 1) * d]
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum();
        logits[c] = z + b[c];
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for z in logits.iter_mut() {
        *z = (*z - max).exp();
        sum += *z;
    }
    let y = data.y[i] as usize;
    let p_y = (logits[y] / sum).max(1e-30);
    let predicted = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(c, _)| c);
    if let Some((g, scale)) = grads {
        let (gw, gb) = g.split_at_mut(k * d);
        for c in 0..k {
            let dz = (logits[c] / sum - if c == y { 1.0 } else { 0.0 }) * scale;
            for (gi, xi) in gw[c * d..(c + 1) * d].iter_mut().zip(x) {
                *gi += dz * xi;
            }
            gb[c] += dz;
        }
    }
    (-(p_y as f64).ln(), predicted == y)
}

fn check_len(expected: usize, params: usize, grads: usize) -> Result<(), GradientError> {
    if params != expected || grads != expected {
        return Err(GradientError(format!(
            "expected {expected} parameters and gradients, got {params} and {grads}"
        )));
    }
    Ok(())
}

/// A worker of a [`SoftmaxTask`].
#[derive(Debug)]
pub struct SoftmaxWorker {
    data: Arc<Dataset>,
    batch_size: usize,
    rng: ChaCha8Rng,
    logits: Vec<f32>,
}

impl GradientSource for SoftmaxWorker {
    fn num_params(&self) -> usize {
        self.data.classes * (self.data.dim + 1)
    }

    fn compute(&mut self, params: &[f32], grads: &mut [f32]) -> Result<BatchStats, GradientError> {
        check_len(self.num_params(), params.len(), grads.len())?;
        if self.data.len() == 0 {
            return Err(GradientError("the training set is empty".into()));
        }
        grads.fill(0.0);
        let scale = 1.0 / self.batch_size as f32;
        let (mut loss, mut correct) = (0.0, 0usize);
        for _ in 0..self.batch_size {
            let i = self.rng.gen_range(0..self.data.len());
            let (l, ok) = example(
                &self.data,
                i,
                params,
                &mut self.logits,
                Some((&mut *grads, scale)),
            );
            loss += l;
            correct += ok as usize;
        }
        let n = self.batch_size as f64;
        Ok(BatchStats {
            loss: loss / n,
            accuracy: Some(correct as f64 / n),
            batch_size: self.batch_size as u64,
        })
    }
}

/// The held-out split of a [`SoftmaxTask`].
#[derive(Debug)]
pub struct SoftmaxEvaluator {
    data: Arc<Dataset>,
}

impl Evaluator for SoftmaxEvaluator {
    fn evaluate(&mut self, _at: &EvalPoint, params: &[f32]) -> Result<EvalStats, GradientError> {
        let p = self.data.classes * (self.data.dim + 1);
        check_len(p, params.len(), p)?;
        let mut logits = vec![0.0; self.data.classes];
        let (mut loss, mut correct) = (0.0, 0usize);
        for i in 0..self.data.len() {
            let (l, ok) = example(&self.data, i, params, &mut logits, None);
            loss += l;
            correct += ok as usize;
        }
        let n = self.data.len().max(1) as f64;
        Ok(EvalStats {
            loss: loss / n,
            accuracy: Some(correct as f64 / n),
            examples: self.data.len() as u64,
            ..EvalStats::default()
        })
    }
}

/// `f(w) = ½ Σ h_i (w_i − w*_i)²` with curvatures log-spaced in `[h_min, h_max]` and gradient
/// noise of standard deviation `noise`.
#[derive(Debug, Clone)]
pub struct NoisyQuadratic {
    h: Arc<Vec<f32>>,
    optimum: Arc<Vec<f32>>,
    noise: f32,
    rng: ChaCha8Rng,
}

impl NoisyQuadratic {
    /// A problem in `dim` dimensions; `seed` fixes the optimum, `noise_seed` the noise.
    pub fn new(dim: usize, h_min: f32, h_max: f32, noise: f32, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = (0..dim)
            .map(|i| {
                let t = if dim > 1 {
                    i as f32 / (dim - 1) as f32
                } else {
                    0.0
                };
                h_min * (h_max / h_min).powf(t)
            })
            .collect();
        let optimum = (0..dim).map(|_| gaussian(&mut rng)).collect();
        Self {
            h: Arc::new(h),
            optimum: Arc::new(optimum),
            noise,
            rng,
        }
    }

    /// The same problem with its own noise stream (one per worker).
    pub fn with_noise_seed(&self, seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            ..self.clone()
        }
    }

    /// The noiseless loss at `params`.
    pub fn loss(&self, params: &[f32]) -> f64 {
        params
            .iter()
            .zip(self.h.iter().zip(self.optimum.iter()))
            .map(|(w, (h, o))| 0.5 * (*h as f64) * ((w - o) as f64).powi(2))
            .sum()
    }
}

impl GradientSource for NoisyQuadratic {
    fn num_params(&self) -> usize {
        self.h.len()
    }

    fn compute(&mut self, params: &[f32], grads: &mut [f32]) -> Result<BatchStats, GradientError> {
        check_len(self.h.len(), params.len(), grads.len())?;
        for (i, g) in grads.iter_mut().enumerate() {
            *g = self.h[i] * (params[i] - self.optimum[i]) + self.noise * gaussian(&mut self.rng);
        }
        Ok(BatchStats {
            loss: self.loss(params),
            accuracy: None,
            batch_size: 1,
        })
    }
}

impl Evaluator for NoisyQuadratic {
    fn evaluate(&mut self, _at: &EvalPoint, params: &[f32]) -> Result<EvalStats, GradientError> {
        check_len(self.h.len(), params.len(), self.h.len())?;
        Ok(EvalStats {
            loss: self.loss(params),
            accuracy: None,
            examples: 0,
            ..EvalStats::default()
        })
    }
}

/// Returns the same gradient every time (the cost of "computing" it is one copy).
#[derive(Debug, Clone)]
pub struct FixedGradient {
    values: Arc<Vec<f32>>,
}

impl FixedGradient {
    /// A gradient of `len` small finite values, deterministic in `seed`.
    pub fn new(len: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self {
            values: Arc::new((0..len).map(|_| rng.gen_range(-1e-3..1e-3)).collect()),
        }
    }

    /// The pre-filled values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

impl GradientSource for FixedGradient {
    fn num_params(&self) -> usize {
        self.values.len()
    }

    fn compute(&mut self, params: &[f32], grads: &mut [f32]) -> Result<BatchStats, GradientError> {
        check_len(self.values.len(), params.len(), grads.len())?;
        grads.copy_from_slice(&self.values);
        Ok(BatchStats {
            loss: 0.0,
            accuracy: None,
            batch_size: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_gradient_matches_finite_differences() {
        let task = SoftmaxTask::new(3, 4, 8, 8, 1);
        let p = task.num_params();
        let params: Vec<f32> = (0..p).map(|i| (i as f32 * 0.37).sin() * 0.3).collect();
        // Full-batch loss and gradient over the 8 training examples, evaluated directly.
        let data = &task.train;
        let full = |w: &[f32], g: Option<&mut [f32]>| {
            let mut logits = vec![0.0; 4];
            let mut loss = 0.0;
            let mut g = g;
            for i in 0..data.len() {
                let gs = g.as_deref_mut().map(|g| (g, 1.0 / 8.0));
                loss += example(data, i, w, &mut logits, gs).0;
            }
            loss / 8.0
        };
        let mut g = vec![0.0; p];
        full(&params, Some(&mut g));
        for j in [0, 5, p - 1] {
            let (mut a, mut b) = (params.clone(), params.clone());
            a[j] += 1e-2;
            b[j] -= 1e-2;
            let fd = (full(&a, None) - full(&b, None)) / 2e-2;
            assert!(
                (fd - g[j] as f64).abs() < 1e-3,
                "param {j}: fd {fd} vs {}",
                g[j]
            );
        }
    }

    #[test]
    fn quadratic_gradient_without_noise_points_to_optimum() {
        let mut q = NoisyQuadratic::new(4, 1.0, 4.0, 0.0, 3);
        let w = vec![0.0; 4];
        let mut g = vec![0.0; 4];
        q.compute(&w, &mut g).unwrap();
        for (i, gi) in g.iter().enumerate() {
            assert!((gi + q.h[i] * q.optimum[i]).abs() < 1e-6);
        }
        assert!(q.compute(&w, &mut [0.0; 3]).is_err());
    }
}
