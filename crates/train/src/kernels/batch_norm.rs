//! Batch normalization in training mode on plain `f32` slices (`[batch, channels, plane]`):
//! batch statistics, the normalized output, and the gradients in the input, γ and β. Each
//! plane is summed in f32 (vectorized), and the planes' sums in f64. The variance is the biased one (divided by the count), as burn's
//! `batch_norm_train` and PyTorch's normalization use.
//!
//! ```
//! use stagewise_train::kernels::batch_norm::{self, NormShape};
//!
//! let shape = NormShape { batch: 2, channels: 1, plane: 1 };
//! let x = [1.0, 3.0];
//! let (mut mean, mut var) = ([0.0], [0.0]);
//! batch_norm::statistics(&shape, &x, &mut mean, &mut var);
//! assert_eq!((mean, var), ([2.0], [1.0]));
//! let mut y = [0.0; 2];
//! batch_norm::forward(&shape, &x, &[1.0], &[0.0], &mean, &var, 0.0, &mut y);
//! assert_eq!(y, [-1.0, 1.0]);
//! ```

use rayon::prelude::*;

/// The sizes: `batch` images of `channels` planes of `plane` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    /// Images.
    pub batch: usize,
    /// Channels (one mean, variance, γ and β each).
    pub channels: usize,
    /// Values per plane (height × width).
    pub plane: usize,
}

impl NormShape {
    /// Length of the input.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The planes of channel `c`, one per image.
    fn planes<'a>(&self, x: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (plane, stride) = (self.plane, self.channels * self.plane);
        (0..self.batch).map(move |n| &x[n * stride + c * plane..n * stride + (c + 1) * plane])
    }
}

/// Per-channel mean and biased variance of `x`.
///
/// # Panics
///
/// When a length does not match `shape`.
pub fn statistics(s: &NormShape, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    assert_eq!(x.len(), s.len(), "batch norm: input length");
    assert!(
        mean.len() == s.channels && var.len() == s.channels,
        "batch norm: statistics length"
    );
    let count = (s.batch * s.plane) as f64;
    mean.par_iter_mut()
        .zip(var.par_iter_mut())
        .enumerate()
        .for_each(|(c, (m, v))| {
            let sum: f64 = s
                .planes(x, c)
                .map(|p| f64::from(p.iter().sum::<f32>()))
                .sum();
            let mu = sum / count;
            let m32 = mu as f32;
            let sq: f64 = s
                .planes(x, c)
                .map(|p| f64::from(p.iter().map(|&x| (x - m32) * (x - m32)).sum::<f32>()))
                .sum();
            *m = mu as f32;
            *v = (sq / count) as f32;
        });
}

/// `y = (x − mean) / √(var + ε) · γ + β`, per channel.
///
/// # Panics
///
/// When a length does not match `shape`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    y: &mut [f32],
) {
    assert!(
        x.len() == s.len() && y.len() == s.len(),
        "batch norm: input or output length"
    );
    for v in [gamma, beta, mean, var] {
        assert_eq!(v.len(), s.channels, "batch norm: per-channel length");
    }
    y.par_chunks_mut(s.plane)
        .zip(x.par_chunks(s.plane))
        .enumerate()
        .for_each(|(i, (y, x))| {
            let c = i % s.channels;
            let inv_std = 1.0 / (f64::from(var[c]) + epsilon).sqrt();
            let scale = (f64::from(gamma[c]) * inv_std) as f32;
            let shift =
                (f64::from(beta[c]) - f64::from(mean[c]) * f64::from(gamma[c]) * inv_std) as f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x * scale + shift;
            }
        });
}

/// Which gradients [`backward`] computes; a `None` is skipped. Each is overwritten.
pub struct NormGrads<'a> {
    /// `∂x`.
    pub x: Option<&'a mut [f32]>,
    /// `∂γ`.
    pub gamma: Option<&'a mut [f32]>,
    /// `∂β`.
    pub beta: Option<&'a mut [f32]>,
}

/// Gradients of the training-mode normalization, the batch statistics' dependence on `x`
/// included: with `x̂ = (x − mean)/σ`, `∂β = Σ g`, `∂γ = Σ g·x̂` and
/// `∂x = γ/σ · (g − Σg/N − x̂·Σ(g·x̂)/N)` per channel (`N = batch · plane`).
///
/// # Panics
///
/// When a length does not match `shape`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    grad_y: &[f32],
    grads: NormGrads,
) {
    assert!(
        x.len() == s.len() && grad_y.len() == s.len(),
        "batch norm: input length"
    );
    let count = (s.batch * s.plane) as f64;
    // Per channel: Σ g and Σ g·x̂.
    let sums: Vec<(f64, f64)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let inv_std = 1.0 / (f64::from(var[c]) + epsilon).sqrt();
            let mu = mean[c];
            let (sg, sgx) = s.planes(x, c).zip(s.planes(grad_y, c)).fold(
                (0.0f64, 0.0f64),
                |(sg, sgx), (x, g)| {
                    let plane_g: f32 = g.iter().sum();
                    let plane_gx: f32 = x.iter().zip(g).map(|(&x, &g)| g * (x - mu)).sum();
                    (sg + f64::from(plane_g), sgx + f64::from(plane_gx))
                },
            );
            (sg, sgx * inv_std)
        })
        .collect();
    if let Some(beta) = grads.beta {
        for (b, &(sg, _)) in beta.iter_mut().zip(&sums) {
            *b = sg as f32;
        }
    }
    if let Some(gamma_grad) = grads.gamma {
        for (g, &(_, sgx)) in gamma_grad.iter_mut().zip(&sums) {
            *g = sgx as f32;
        }
    }
    if let Some(grad_x) = grads.x {
        assert_eq!(grad_x.len(), s.len(), "batch norm: input gradient length");
        grad_x
            .par_chunks_mut(s.plane)
            .zip(x.par_chunks(s.plane).zip(grad_y.par_chunks(s.plane)))
            .enumerate()
            .for_each(|(i, (dx, (x, g)))| {
                let c = i % s.channels;
                let (mu, inv_std) = (
                    f64::from(mean[c]),
                    1.0 / (f64::from(var[c]) + epsilon).sqrt(),
                );
                let (sg, sgx) = sums[c];
                let scale = f64::from(gamma[c]) * inv_std;
                let (mean_g, mean_gx) = (sg / count, sgx / count);
                // ∂x = scale·(g − mean_g − x̂·mean_gx), x̂ = (x − mu)·inv_std, in f32 per element.
                let a = scale as f32;
                let b = (scale * mean_g) as f32;
                let c1 = (scale * mean_gx * inv_std) as f32;
                let mu = mu as f32;
                for (dx, (&x, &g)) in dx.iter_mut().zip(x.iter().zip(g)) {
                    *dx = a * g - b - c1 * (x - mu);
                }
            });
    }
}
