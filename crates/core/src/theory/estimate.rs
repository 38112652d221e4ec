//! Estimating a [`Spectrum`] from a model instead of assuming one (docs/theory.md §3.3 needs the
//! curvature h_j and the per-example gradient noise c_j along the same directions).
//!
//! The pieces are independent of any deep-learning framework: the caller supplies
//!
//! - a **Hessian-vector product** `v ↦ H v` (for a burn model, finite differences of two
//!   gradients, see `stagewise-train`'s `spectrum` module), used by
//!   - [`lanczos_top`]: the largest eigenvalues and their eigenvectors (Lanczos with full
//!     reorthogonalization; the Ritz residual ‖H u − θ u‖ is reported for each pair), and
//!   - [`hutchinson_trace`]: tr H by Rademacher probes, for the bulk of the spectrum;
//! - **minibatch gradients** at one point, fed to a [`NoiseAccumulator`]: the per-example
//!   variance along each eigenvector, c_j = b · Var(u_j · g_b), and the total tr C.
//!
//! [`SpectrumEstimate::spectrum`] then builds the [`Spectrum`]: the top pairs, plus the
//! remaining d − k directions as one "bulk" of equal (h, c) whose sums match the traces.
//!
//! ```
//! use stagewise_core::theory::estimate::{lanczos_top, LanczosOptions};
//! // H = diag(100, 80, 60, 0.1, 0.2, …, 4.7): a few outliers above a bulk, as in neural nets.
//! let h = |i: usize| if i < 3 { 100.0 - 20.0 * i as f64 } else { (i - 2) as f64 / 10.0 };
//! let mut op = |v: &[f64], out: &mut [f64]| -> Result<(), String> {
//!     for (i, (o, x)) in out.iter_mut().zip(v).enumerate() { *o = h(i) * x; }
//!     Ok(())
//! };
//! let pairs = lanczos_top(50, &LanczosOptions { top: 3, steps: 20, seed: 1 }, &mut op).unwrap();
//! assert!((pairs.values[0] - 100.0).abs() < 1e-6 && (pairs.values[2] - 60.0).abs() < 1e-6);
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::bound::Spectrum;

/// Why an estimate failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimateError {
    /// An option is out of range.
    #[error("{field} = {value} is out of range; allowed: {allowed}")]
    Invalid {
        /// The option.
        field: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        allowed: String,
    },
    /// The operator (Hessian-vector product) or a gradient failed or was not finite.
    #[error("{0}")]
    Operator(String),
}

fn invalid(field: &'static str, value: impl ToString, allowed: impl ToString) -> EstimateError {
    EstimateError::Invalid {
        field,
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

/// Options of [`lanczos_top`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanczosOptions {
    /// Eigenpairs wanted (≥ 1).
    pub top: usize,
    /// Lanczos steps, i.e. operator applications (≥ `top`, ≤ the dimension; more steps give
    /// more accurate pairs, 2·top + 10 is usually enough for the top few).
    pub steps: usize,
    /// Seed of the random start vector.
    pub seed: u64,
}

/// Eigenpairs of a symmetric operator, largest eigenvalue first.
#[derive(Debug, Clone, PartialEq)]
pub struct Eigenpairs {
    /// Ritz values θ_1 ≥ θ_2 ≥ ….
    pub values: Vec<f64>,
    /// Unit Ritz vectors, one per value.
    pub vectors: Vec<Vec<f64>>,
    /// Residual bounds ‖H u − θ u‖ from the Lanczos recurrence, one per value.
    pub residuals: Vec<f64>,
    /// Operator applications used.
    pub applications: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn check_finite(what: &str, v: &[f64]) -> Result<(), EstimateError> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(EstimateError::Operator(format!(
            "{what} is not finite at index {i}"
        ))),
    }
}

/// The `top` largest eigenvalues of the symmetric operator `op` on ℝ^`dim`, with eigenvectors,
/// by `steps` Lanczos steps from a random start, fully reorthogonalized (memory: `steps + 1`
/// vectors of `dim` f64).
///
/// Stops early when the Krylov space is exhausted (the operator's rank is reached); then fewer
/// than `top` pairs may come back.
///
/// # Errors
/// [`EstimateError::Invalid`] for `dim == 0`, `top == 0`, `steps < top` or `steps > dim`;
/// [`EstimateError::Operator`] when `op` fails or returns a non-finite value.
pub fn lanczos_top<F>(
    dim: usize,
    opts: &LanczosOptions,
    op: &mut F,
) -> Result<Eigenpairs, EstimateError>
where
    F: FnMut(&[f64], &mut [f64]) -> Result<(), String>,
{
    if dim == 0 {
        return Err(invalid("dim", dim, ">= 1"));
    }
    if opts.top == 0 {
        return Err(invalid("top", opts.top, ">= 1"));
    }
    if opts.steps < opts.top || opts.steps > dim {
        return Err(invalid(
            "steps",
            opts.steps,
            format!("in [top = {}, dim = {dim}]", opts.top),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut q: Vec<f64> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let n0 = norm(&q);
    q.iter_mut().for_each(|x| *x /= n0);
    let mut basis: Vec<Vec<f64>> = vec![q];
    let (mut alphas, mut betas) = (Vec::new(), Vec::new());
    let mut w = vec![0.0; dim];
    for k in 0..opts.steps {
        op(&basis[k], &mut w).map_err(EstimateError::Operator)?;
        check_finite("the operator's output", &w)?;
        let alpha = dot(&w, &basis[k]);
        alphas.push(alpha);
        // Full reorthogonalization, twice (classical Gram-Schmidt is not enough in f64 for
        // clustered spectra).
        for _ in 0..2 {
            for b in &basis {
                let c = dot(&w, b);
                w.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
            }
        }
        let beta = norm(&w);
        let scale = alphas
            .iter()
            .fold(0.0f64, |m, a| m.max(a.abs()))
            .max(1e-300);
        if k + 1 == opts.steps || beta <= 1e-10 * scale {
            betas.push(beta);
            break;
        }
        betas.push(beta);
        basis.push(w.iter().map(|x| x / beta).collect());
    }
    let m = alphas.len();
    let (theta, s) = symmetric_tridiagonal_eigen(&alphas, &betas[..m - 1]);
    let last_beta = betas[m - 1];
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| theta[b].total_cmp(&theta[a]));
    let take = opts.top.min(m);
    let mut pairs = Eigenpairs {
        values: Vec::with_capacity(take),
        vectors: Vec::with_capacity(take),
        residuals: Vec::with_capacity(take),
        applications: m,
    };
    for &i in order.iter().take(take) {
        let mut u = vec![0.0; dim];
        for (k, b) in basis.iter().take(m).enumerate() {
            let c = s[k][i];
            u.iter_mut().zip(b).for_each(|(x, y)| *x += c * y);
        }
        let nu = norm(&u);
        u.iter_mut().for_each(|x| *x /= nu);
        pairs.values.push(theta[i]);
        pairs.residuals.push((last_beta * s[m - 1][i]).abs());
        pairs.vectors.push(u);
    }
    Ok(pairs)
}

/// Eigenvalues and eigenvectors (as columns: `vectors[row][col]`) of the symmetric tridiagonal
/// matrix with diagonal `diag` and off-diagonal `off`, by cyclic Jacobi rotations (the matrix
/// is small: one row per Lanczos step).
fn symmetric_tridiagonal_eigen(diag: &[f64], off: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = diag.len();
    let mut a = vec![vec![0.0; n]; n];
    for i in 0..n {
        a[i][i] = diag[i];
        if i + 1 < n {
            a[i][i + 1] = off[i];
            a[i + 1][i] = off[i];
        }
    }
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for _sweep in 0..100 {
        let off_norm: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let diag_norm: f64 = (0..n).map(|i| a[i][i] * a[i][i]).sum();
        if off_norm <= 1e-30 * diag_norm.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p].clone(), a[q].clone());
                for (k, (apk, aqk)) in row_p.iter().zip(&row_q).enumerate() {
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

/// A trace estimate with its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TraceEstimate {
    /// The estimate.
    pub value: f64,
    /// Its standard error (0 with one probe).
    pub std_error: f64,
    /// Probes used.
    pub probes: usize,
}

/// tr(op) by Hutchinson's estimator with `probes` Rademacher vectors: mean of zᵀ·op(z).
///
/// # Errors
/// As [`lanczos_top`] for `dim == 0`, `probes == 0` and operator failures.
pub fn hutchinson_trace<F>(
    dim: usize,
    probes: usize,
    seed: u64,
    op: &mut F,
) -> Result<TraceEstimate, EstimateError>
where
    F: FnMut(&[f64], &mut [f64]) -> Result<(), String>,
{
    if dim == 0 {
        return Err(invalid("dim", dim, ">= 1"));
    }
    if probes == 0 {
        return Err(invalid("probes", probes, ">= 1"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut z = vec![0.0; dim];
    let mut out = vec![0.0; dim];
    let mut samples = Vec::with_capacity(probes);
    for _ in 0..probes {
        z.iter_mut()
            .for_each(|x| *x = if rng.gen::<bool>() { 1.0 } else { -1.0 });
        op(&z, &mut out).map_err(EstimateError::Operator)?;
        check_finite("the operator's output", &out)?;
        samples.push(dot(&z, &out));
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = if samples.len() > 1 {
        samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Ok(TraceEstimate {
        value: mean,
        std_error: (var / n).sqrt(),
        probes,
    })
}

/// Accumulates minibatch gradients at one point to estimate the per-example gradient-noise
/// variance along given unit directions and in total.
///
/// With minibatch gradients g_1 … g_N of batch size b (drawn independently), the per-example
/// covariance is C ≈ b · Cov(g), so c_j = b · Var(u_j · g) and tr C = b · E‖g − ḡ‖².
///
/// ```
/// use stagewise_core::theory::estimate::NoiseAccumulator;
/// let mut acc = NoiseAccumulator::new(vec![vec![1.0, 0.0]], 4).unwrap();
/// for g in [[1.0, 5.0], [3.0, 5.0], [1.0, 7.0], [3.0, 7.0]] { acc.add(&g).unwrap(); }
/// let est = acc.finish().unwrap();
/// // Var(g_0) = 4/3 (unbiased), so c_0 = 4 · 4/3.
/// assert!((est.along[0] - 16.0 / 3.0).abs() < 1e-12);
/// assert!((est.trace - 32.0 / 3.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone)]
pub struct NoiseAccumulator {
    directions: Vec<Vec<f64>>,
    batch_size: usize,
    sum: Vec<f64>,
    sum_sq_norm: f64,
    projections: Vec<Vec<f64>>,
    count: usize,
}

/// Gradient-noise estimate from a [`NoiseAccumulator`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseEstimate {
    /// Per-example variance c_j along each direction.
    pub along: Vec<f64>,
    /// Per-example total variance tr C.
    pub trace: f64,
    /// Squared norm of the mean gradient ‖ḡ‖².
    pub mean_grad_sq_norm: f64,
    /// Batch size of the gradients.
    pub batch_size: usize,
    /// Gradients used.
    pub samples: usize,
}

impl NoiseAccumulator {
    /// An accumulator for `directions` (unit vectors of one dimension, possibly none) and
    /// gradients of batch size `batch_size` (≥ 1).
    pub fn new(directions: Vec<Vec<f64>>, batch_size: usize) -> Result<Self, EstimateError> {
        if batch_size == 0 {
            return Err(invalid("noise batch size", 0, ">= 1"));
        }
        let k = directions.len();
        Ok(Self {
            directions,
            batch_size,
            sum: Vec::new(),
            sum_sq_norm: 0.0,
            projections: vec![Vec::new(); k],
            count: 0,
        })
    }

    /// Adds one minibatch gradient.
    ///
    /// # Errors
    /// When its length differs from the directions' or from earlier gradients', or it is not
    /// finite.
    pub fn add(&mut self, grad: &[f64]) -> Result<(), EstimateError> {
        check_finite("a minibatch gradient", grad)?;
        let expected = self
            .directions
            .first()
            .map(Vec::len)
            .or((!self.sum.is_empty()).then_some(self.sum.len()));
        if let Some(d) = expected {
            if grad.len() != d {
                return Err(invalid("gradient length", grad.len(), d));
            }
        }
        if self.sum.is_empty() {
            self.sum = vec![0.0; grad.len()];
        }
        self.sum.iter_mut().zip(grad).for_each(|(s, g)| *s += g);
        self.sum_sq_norm += dot(grad, grad);
        for (dir, proj) in self.directions.iter().zip(&mut self.projections) {
            proj.push(dot(dir, grad));
        }
        self.count += 1;
        Ok(())
    }

    /// The estimate (needs at least two gradients).
    pub fn finish(&self) -> Result<NoiseEstimate, EstimateError> {
        if self.count < 2 {
            return Err(invalid("noise batches", self.count, ">= 2"));
        }
        let n = self.count as f64;
        let b = self.batch_size as f64;
        let mean_sq = dot(&self.sum, &self.sum) / (n * n);
        let trace = b * (self.sum_sq_norm / n - mean_sq) * n / (n - 1.0);
        let along = self
            .projections
            .iter()
            .map(|p| {
                let m = p.iter().sum::<f64>() / n;
                b * p.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
            })
            .collect();
        Ok(NoiseEstimate {
            along,
            trace: trace.max(0.0),
            mean_grad_sq_norm: mean_sq,
            batch_size: self.batch_size,
            samples: self.count,
        })
    }
}

/// The remaining d − k directions of an estimated spectrum, taken as equal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bulk {
    /// Number of directions.
    pub count: usize,
    /// Their common curvature: (tr H − Σ top h) / count.
    pub h: f64,
    /// Their common per-example noise: (tr C − Σ top c) / count.
    pub c: f64,
}

/// An estimated spectrum: top Hessian eigenpairs with the noise along them, traces, and the
/// bulk, with the diagnostics a reader needs to judge it. Serializes to the JSON read by
/// `--spectrum FILE.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrumEstimate {
    /// Number of parameters d.
    pub dim: usize,
    /// Top Hessian eigenvalues h_j, largest first.
    pub h: Vec<f64>,
    /// Per-example gradient-noise variance c_j along the same eigenvectors.
    pub c: Vec<f64>,
    /// Lanczos residual bounds ‖H u_j − h_j u_j‖.
    pub residuals: Vec<f64>,
    /// Hutchinson estimate of tr H, if computed.
    pub trace_h: Option<TraceEstimate>,
    /// tr C, the total per-example gradient-noise variance.
    pub trace_c: f64,
    /// The other directions, when both their h and c come out positive.
    pub bulk: Option<Bulk>,
    /// Free-form provenance (model, checkpoint, batch sizes, timings).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl SpectrumEstimate {
    /// Combines eigenpairs, noise along them and the traces; the bulk is set when tr H and
    /// tr C leave a positive remainder for the d − k other directions.
    pub fn new(
        dim: usize,
        pairs: &Eigenpairs,
        noise: &NoiseEstimate,
        trace_h: Option<TraceEstimate>,
    ) -> Self {
        let k = pairs.values.len();
        let bulk = trace_h.and_then(|t| {
            let count = dim.checked_sub(k).filter(|&n| n > 0)?;
            let h = (t.value - pairs.values.iter().sum::<f64>()) / count as f64;
            let c = (noise.trace - noise.along.iter().sum::<f64>()) / count as f64;
            (h > 0.0 && c > 0.0 && h.is_finite() && c.is_finite()).then_some(Bulk { count, h, c })
        });
        Self {
            dim,
            h: pairs.values.clone(),
            c: noise.along.clone(),
            residuals: pairs.residuals.clone(),
            trace_h,
            trace_c: noise.trace,
            bulk,
            notes: Vec::new(),
        }
    }

    /// The [`Spectrum`] for the bound: the top directions with h_j > 0 (negative curvature has
    /// no stationary variance), plus the bulk repeated `count` times when present.
    ///
    /// # Errors
    /// When no direction is left (no positive eigenvalue with positive noise and no bulk).
    pub fn spectrum(&self) -> Result<Spectrum, EstimateError> {
        let (mut h, mut c): (Vec<f64>, Vec<f64>) = self
            .h
            .iter()
            .zip(&self.c)
            .filter(|(&h, &c)| h > 0.0 && c > 0.0 && h.is_finite() && c.is_finite())
            .map(|(&h, &c)| (h, c))
            .unzip();
        if let Some(b) = self.bulk {
            h.extend(std::iter::repeat_n(b.h, b.count));
            c.extend(std::iter::repeat_n(b.c, b.count));
        }
        Spectrum::from_lists(h, c).map_err(|e| {
            EstimateError::Operator(format!(
                "the estimate has no direction with positive curvature and noise: {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random symmetric matrix with prescribed eigenvalues: Q diag(λ) Qᵀ, Q from Householder
    /// reflections of random vectors.
    fn matrix_with_eigenvalues(eigs: &[f64], seed: u64) -> Vec<Vec<f64>> {
        let n = eigs.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut q: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
            .collect();
        for _ in 0..3 {
            let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let vv = dot(&v, &v);
            // q ← q (I − 2 v vᵀ / vᵀv)
            for row in q.iter_mut() {
                let c = 2.0 * dot(row, &v) / vv;
                row.iter_mut().zip(&v).for_each(|(x, y)| *x -= c * y);
            }
        }
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (0..n).map(|k| q[i][k] * eigs[k] * q[j][k]).sum())
                    .collect()
            })
            .collect()
    }

    fn apply(m: &[Vec<f64>]) -> impl FnMut(&[f64], &mut [f64]) -> Result<(), String> + '_ {
        move |v, out| {
            for (o, row) in out.iter_mut().zip(m) {
                *o = dot(row, v);
            }
            Ok(())
        }
    }

    #[test]
    fn lanczos_finds_the_top_of_a_dense_spectrum_with_negative_eigenvalues() {
        let n = 120;
        let mut eigs: Vec<f64> = (0..n).map(|i| 1.0 - 2.0 * i as f64 / n as f64).collect();
        eigs[..4].copy_from_slice(&[40.0, 25.0, 12.0, 8.0]);
        let m = matrix_with_eigenvalues(&eigs, 3);
        let mut op = apply(&m);
        let opts = LanczosOptions {
            top: 4,
            steps: 40,
            seed: 9,
        };
        let pairs = lanczos_top(n, &opts, &mut op).unwrap();
        for (got, want) in pairs.values.iter().zip([40.0, 25.0, 12.0, 8.0]) {
            assert!((got - want).abs() < 1e-8, "{got} vs {want}");
        }
        // The vectors are eigenvectors: ‖M u − θ u‖ small, and the reported residual bounds it.
        let mut out = vec![0.0; n];
        for ((u, &theta), &res) in pairs
            .vectors
            .iter()
            .zip(&pairs.values)
            .zip(&pairs.residuals)
        {
            op(u, &mut out).unwrap();
            let r: f64 = out
                .iter()
                .zip(u)
                .map(|(o, x)| (o - theta * x).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                r < 1e-6 && (r - res).abs() < 1e-6,
                "residual {r}, bound {res}"
            );
            assert!((norm(u) - 1.0).abs() < 1e-12);
        }
        assert_eq!(pairs.applications, 40);
    }

    #[test]
    fn lanczos_stops_when_the_krylov_space_is_exhausted() {
        // Rank 2 plus zero: the space closes after 3 steps at most.
        let mut eigs = vec![0.0; 30];
        eigs[0] = 5.0;
        eigs[1] = 2.0;
        let m = matrix_with_eigenvalues(&eigs, 1);
        let pairs = lanczos_top(
            30,
            &LanczosOptions {
                top: 2,
                steps: 20,
                seed: 2,
            },
            &mut apply(&m),
        )
        .unwrap();
        assert!(pairs.applications <= 4, "{}", pairs.applications);
        assert!((pairs.values[0] - 5.0).abs() < 1e-9 && (pairs.values[1] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn bad_options_and_failing_operators_are_reported() {
        let mut ok = |_: &[f64], o: &mut [f64]| -> Result<(), String> {
            o.fill(1.0);
            Ok(())
        };
        let o = |top, steps| LanczosOptions {
            top,
            steps,
            seed: 0,
        };
        assert!(matches!(
            lanczos_top(10, &o(0, 5), &mut ok),
            Err(EstimateError::Invalid { field: "top", .. })
        ));
        assert!(matches!(
            lanczos_top(10, &o(3, 2), &mut ok),
            Err(EstimateError::Invalid { field: "steps", .. })
        ));
        assert!(matches!(
            lanczos_top(10, &o(3, 11), &mut ok),
            Err(EstimateError::Invalid { field: "steps", .. })
        ));
        let mut nan = |_: &[f64], o: &mut [f64]| -> Result<(), String> {
            o.fill(f64::NAN);
            Ok(())
        };
        let err = lanczos_top(10, &o(1, 3), &mut nan).unwrap_err();
        assert!(err.to_string().contains("not finite"), "{err}");
        let mut failing = |_: &[f64], _: &mut [f64]| -> Result<(), String> { Err("boom".into()) };
        assert_eq!(
            hutchinson_trace(10, 2, 0, &mut failing).unwrap_err(),
            EstimateError::Operator("boom".into())
        );
    }

    #[test]
    fn hutchinson_is_exact_for_diagonal_operators_and_unbiased_otherwise() {
        // Diagonal: zᵀ D z = tr D for every Rademacher z.
        let mut diag = |v: &[f64], o: &mut [f64]| -> Result<(), String> {
            for (i, (x, y)) in o.iter_mut().zip(v).enumerate() {
                *x = (i as f64 + 1.0) * y;
            }
            Ok(())
        };
        let t = hutchinson_trace(20, 3, 5, &mut diag).unwrap();
        assert!((t.value - 210.0).abs() < 1e-9 && t.std_error < 1e-9);
        // Dense: the estimate is within 4 standard errors of the trace.
        let eigs: Vec<f64> = (0..60).map(|i| (i % 7) as f64 - 1.0).collect();
        let m = matrix_with_eigenvalues(&eigs, 4);
        let t = hutchinson_trace(60, 400, 6, &mut apply(&m)).unwrap();
        let exact: f64 = eigs.iter().sum();
        assert!(
            (t.value - exact).abs() < 4.0 * t.std_error && t.std_error > 0.0,
            "{t:?} vs {exact}"
        );
    }

    #[test]
    fn noise_accumulator_recovers_a_known_per_example_covariance() {
        // Per-example gradients ~ N(μ, diag(s²)); minibatch means of b have covariance s²/b.
        use standard_normal as normal;
        let (d, b, n) = (5, 16, 4000);
        let s2: [f64; 5] = [4.0, 1.0, 0.25, 9.0, 0.5];
        let mu: [f64; 5] = [1.0, -2.0, 0.0, 0.5, 3.0];
        let dirs = vec![vec![1.0, 0.0, 0.0, 0.0, 0.0], vec![0.0, 0.6, 0.0, 0.8, 0.0]];
        let mut acc = NoiseAccumulator::new(dirs, b).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..n {
            let g: Vec<f64> = (0..d)
                .map(|j| {
                    let mean: f64 = (0..b).map(|_| normal(&mut rng)).sum::<f64>() / b as f64;
                    mu[j] + s2[j].sqrt() * mean
                })
                .collect();
            acc.add(&g).unwrap();
        }
        let est = acc.finish().unwrap();
        let want_along = [4.0, 0.36 * 1.0 + 0.64 * 9.0];
        for (got, want) in est.along.iter().zip(want_along) {
            assert!((got / want - 1.0).abs() < 0.1, "{got} vs {want}");
        }
        let want_trace: f64 = s2.iter().sum();
        assert!((est.trace / want_trace - 1.0).abs() < 0.1, "{}", est.trace);
        assert!(acc.add(&[1.0]).is_err());
        assert!(NoiseAccumulator::new(vec![], 0).is_err());
    }

    fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
        rng.sample(rand_distr::StandardNormal)
    }

    #[test]
    fn the_spectrum_keeps_positive_pairs_and_spreads_the_traces_over_the_bulk() {
        let pairs = Eigenpairs {
            values: vec![10.0, 4.0, -1.0],
            vectors: vec![vec![]; 3],
            residuals: vec![0.0; 3],
            applications: 3,
        };
        let noise = NoiseEstimate {
            along: vec![2.0, 1.0, 0.5],
            trace: 13.5,
            mean_grad_sq_norm: 0.0,
            batch_size: 8,
            samples: 10,
        };
        let trace = TraceEstimate {
            value: 23.0,
            std_error: 1.0,
            probes: 4,
        };
        let est = SpectrumEstimate::new(13, &pairs, &noise, Some(trace));
        let bulk = est.bulk.unwrap();
        assert_eq!(bulk.count, 10);
        assert!((bulk.h - 1.0).abs() < 1e-12 && (bulk.c - 1.0).abs() < 1e-12);
        let s = est.spectrum().unwrap();
        assert_eq!(s.dim(), 12); // the negative direction is dropped
        assert_eq!(&s.h[..2], &[10.0, 4.0]);
        // A trace below the top eigenvalues leaves no bulk.
        let low = TraceEstimate {
            value: 5.0,
            ..trace
        };
        assert!(SpectrumEstimate::new(13, &pairs, &noise, Some(low))
            .bulk
            .is_none());
    }
}
