//! A synthetic, learnable stand-in for Fashion-MNIST, for offline demos and
//! fast tests.
//!
//! Each class has a prototype made of a few Gaussian blobs whose positions,
//! widths and brightness are drawn from the seed. An item is its class
//! prototype shifted by a few pixels, scaled in brightness, plus pixel
//! noise, quantized to bytes. Classes are balanced and appear in random
//! order. A small model — even a linear one — gets far above chance after
//! one epoch.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Splits};
use crate::error::DataError;
use crate::rng::{stream_rng, Purpose};

/// Blobs per class prototype.
const BLOBS: usize = 3;

/// Size and difficulty of the synthetic dataset.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyntheticConfig {
    /// Items in the training split.
    pub train_size: usize,
    /// Items in the test split.
    pub test_size: usize,
    /// Seed; equal seeds give byte-identical datasets.
    pub seed: u64,
    /// Number of classes (1..=256).
    pub classes: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// Standard deviation of the additive pixel noise, in `[0, 1]` pixel
    /// units.
    pub noise: f32,
    /// Largest shift of an item relative to its prototype, in pixels.
    pub max_shift: usize,
}

impl Default for SyntheticConfig {
    /// 6000 training and 1000 test items, 10 classes, 28×28, noise 0.2,
    /// shifts up to 2 pixels, seed 0.
    fn default() -> Self {
        Self {
            train_size: 6000,
            test_size: 1000,
            seed: 0,
            classes: 10,
            rows: 28,
            cols: 28,
            noise: 0.2,
            max_shift: 2,
        }
    }
}

impl SyntheticConfig {
    /// A small variant for unit tests: 512 training and 128 test items.
    pub fn small() -> Self {
        Self {
            train_size: 512,
            test_size: 128,
            ..Self::default()
        }
    }

    /// The same configuration with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Generates the synthetic dataset described by `config`.
///
/// ```
/// use stagewise_data::{synthetic, SyntheticConfig};
///
/// let a = synthetic(&SyntheticConfig::small())?;
/// let b = synthetic(&SyntheticConfig::small())?;
/// assert_eq!(a, b); // deterministic
/// assert_eq!(a.train.len(), 512);
/// assert_eq!(a.train.class_counts().iter().max(), Some(&52));
/// # Ok::<(), stagewise_data::DataError>(())
/// ```
pub fn synthetic(config: &SyntheticConfig) -> Result<Splits, DataError> {
    let &SyntheticConfig {
        rows,
        cols,
        classes,
        noise,
        ..
    } = config;
    if rows == 0 || cols == 0 || classes == 0 || classes > 256 {
        return Err(DataError::InvalidArgument(format!(
            "synthetic data needs non-empty images and 1..=256 classes, got {rows}x{cols}, {classes} classes"
        )));
    }
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(DataError::InvalidArgument(format!(
            "synthetic noise {noise} must be a non-negative number"
        )));
    }
    let prototypes = prototypes(config);
    let train = split(
        config,
        &prototypes,
        config.train_size,
        Purpose::SyntheticTrain,
    )?;
    let test = split(
        config,
        &prototypes,
        config.test_size,
        Purpose::SyntheticTest,
    )?;
    Ok(Splits {
        train,
        val: None,
        test,
    })
}

/// One `rows * cols` intensity map in `[0, 1]` per class.
fn prototypes(config: &SyntheticConfig) -> Vec<Vec<f32>> {
    let (rows, cols) = (config.rows, config.cols);
    let mut rng = stream_rng(config.seed, 0, Purpose::SyntheticPrototypes);
    (0..config.classes)
        .map(|_| {
            let blobs: Vec<(f32, f32, f32, f32)> = (0..BLOBS)
                .map(|_| {
                    let cy = rng.gen_range(0.2..0.8) * rows as f32;
                    let cx = rng.gen_range(0.2..0.8) * cols as f32;
                    let sigma = rng.gen_range(0.06..0.16) * rows.min(cols) as f32;
                    let amp = rng.gen_range(0.5..1.0);
                    (cy, cx, sigma.max(0.5), amp)
                })
                .collect();
            let mut map = vec![0.0f32; rows * cols];
            for (i, v) in map.iter_mut().enumerate() {
                let (y, x) = ((i / cols) as f32, (i % cols) as f32);
                let s: f32 = blobs
                    .iter()
                    .map(|&(cy, cx, sigma, amp)| {
                        let d2 = (y - cy).powi(2) + (x - cx).powi(2);
                        amp * (-d2 / (2.0 * sigma * sigma)).exp()
                    })
                    .sum();
                *v = s.min(1.0);
            }
            map
        })
        .collect()
}

fn split(
    config: &SyntheticConfig,
    prototypes: &[Vec<f32>],
    n: usize,
    purpose: Purpose,
) -> Result<Dataset, DataError> {
    let (rows, cols, classes) = (config.rows, config.cols, config.classes);
    let mut rng = stream_rng(config.seed, 0, purpose);
    let too_big = || DataError::InvalidArgument(format!("cannot allocate {n} synthetic images"));
    let total = n.checked_mul(rows * cols).ok_or_else(too_big)?;
    let mut images = Vec::new();
    images.try_reserve_exact(total).map_err(|_| too_big())?;
    images.resize(total, 0u8);
    let mut labels = Vec::new();
    labels.try_reserve_exact(n).map_err(|_| too_big())?;
    labels.extend((0..n).map(|i| (i % classes) as u8));
    labels.shuffle(&mut rng);

    let shift = config.max_shift as isize;
    {
        for (img, &label) in images.chunks_exact_mut(rows * cols).zip(&labels) {
            let proto = &prototypes[usize::from(label)];
            let dy = rng.gen_range(-shift..=shift);
            let dx = rng.gen_range(-shift..=shift);
            let gain: f32 = rng.gen_range(0.7..1.0);
            for (i, px) in img.iter_mut().enumerate() {
                let sy = (i / cols) as isize - dy;
                let sx = (i % cols) as isize - dx;
                let base = if (0..rows as isize).contains(&sy) && (0..cols as isize).contains(&sx) {
                    proto[sy as usize * cols + sx as usize]
                } else {
                    0.0
                };
                let v = gain * base + config.noise * standard_normal(&mut rng);
                *px = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    Dataset::new(images, labels, rows, cols, classes)
}

/// An approximately standard normal sample (Irwin–Hall with four uniforms,
/// rescaled to unit variance); plenty for pixel noise.
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let s: f32 = (0..4).map(|_| rng.gen::<f32>()).sum();
    (s - 2.0) * 3.0f32.sqrt()
}
