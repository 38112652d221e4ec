//! Shared Monte Carlo helpers of the `theory_*` integration tests.
//!
//! Normal variates use Box–Muller on `rand_chacha::ChaCha8Rng` (no extra dependency).
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seeded standard-normal generator (Box–Muller, both outputs used).
pub struct Gauss {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl Gauss {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            spare: None,
        }
    }

    /// One N(0, 1) draw.
    pub fn next(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1: f64 = 1.0 - self.rng.gen::<f64>();
        let u2: f64 = self.rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.rng.gen::<f64>()
    }
}

/// Mean of a stationary, autocorrelated series with a batch-means standard error.
pub struct BatchMeans {
    batch_len: usize,
    cur: f64,
    n_cur: usize,
    means: Vec<f64>,
}

impl BatchMeans {
    pub fn new(batch_len: usize) -> Self {
        Self {
            batch_len,
            cur: 0.0,
            n_cur: 0,
            means: Vec::new(),
        }
    }

    pub fn push(&mut self, x: f64) {
        self.cur += x;
        self.n_cur += 1;
        if self.n_cur == self.batch_len {
            self.means.push(self.cur / self.batch_len as f64);
            self.cur = 0.0;
            self.n_cur = 0;
        }
    }

    /// (mean, standard error) over the completed batches.
    pub fn estimate(&self) -> (f64, f64) {
        mean_se(&self.means)
    }
}

/// Mean and standard error of i.i.d. samples.
pub fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}
