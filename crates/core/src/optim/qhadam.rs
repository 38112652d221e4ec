//! QHAdam, exactly as qhoptim defines it.
//!
//! qhoptim keeps bias-corrected moment estimates directly, with "weights" w₁, w₂ (start at 0):
//!
//! ```text
//! w₁ ← 1 + β₁·w₁ ;  b₁ = 1 − 1/w₁          (same for w₂, b₂ with β₂)
//! m ← b₁·m + (1−b₁)·g ;  v ← b₂·v + (1−b₂)·g²
//! θ ← θ − lr · [(1−ν₁)·g + ν₁·m] / ( √((1−ν₂)·g² + ν₂·v) + ε )
//! ```
//!
//! With constant β this equals Adam's bias correction; it stays correct when β changes.
//! Weight decay is `grad` (g += wd·θ) or `direct` (θ *= 1 − lr·wd), as for [`super::Qhm`].

use super::hyper::{check_decay, check_fraction, check_non_negative};
use super::parallel::zip2;
use super::{get_scalar, take_buffer, OptimError, Optimizer, OptimizerState};
use super::{QhmParams, WeightDecay};
use crate::Real;
use serde::{Deserialize, Serialize};

/// QHAdam hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QhAdamHyper {
    /// Learning rate ≥ 0.
    pub lr: f64,
    /// β₁, 0 ≤ β₁ < 1.
    pub beta1: f64,
    /// β₂, 0 ≤ β₂ < 1.
    pub beta2: f64,
    /// ν₁, 0 ≤ ν₁ ≤ 1.
    pub nu1: f64,
    /// ν₂, 0 ≤ ν₂ ≤ 1.
    pub nu2: f64,
    /// ε ≥ 0 added to the denominator.
    pub eps: f64,
    /// Weight decay ≥ 0.
    pub weight_decay: f64,
    /// How weight decay is applied.
    pub weight_decay_type: WeightDecay,
}

impl Default for QhAdamHyper {
    /// qhoptim's defaults: lr 1e-3, betas (0.995, 0.999), nus (0.7, 1.0), eps 1e-8.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.995,
            beta2: 0.999,
            nu1: 0.7,
            nu2: 1.0,
            eps: 1e-8,
            weight_decay: 0.0,
            weight_decay_type: WeightDecay::Grad,
        }
    }
}

impl QhAdamHyper {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_non_negative("lr", self.lr)?;
        check_decay("beta1", self.beta1)?;
        check_decay("beta2", self.beta2)?;
        check_fraction("nu1", self.nu1)?;
        check_fraction("nu2", self.nu2)?;
        check_non_negative("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)
    }
}

/// QHAdam over one flat buffer.
#[derive(Debug, Clone)]
pub struct QhAdam<F> {
    hyper: QhAdamHyper,
    exp_avg: Vec<F>,
    exp_avg_sq: Vec<F>,
    beta1_weight: f64,
    beta2_weight: f64,
    step: u64,
}

impl<F: Real> QhAdam<F> {
    /// Builds QHAdam for `len` parameters after validating `hyper`.
    pub fn try_new(len: usize, hyper: QhAdamHyper) -> Result<Self, OptimError> {
        hyper.validate()?;
        Ok(Self {
            hyper,
            exp_avg: vec![F::zero(); len],
            exp_avg_sq: vec![F::zero(); len],
            beta1_weight: 0.0,
            beta2_weight: 0.0,
            step: 0,
        })
    }

    /// Replaces the hyperparameters; state is kept.
    pub fn set_hyper(&mut self, hyper: QhAdamHyper) -> Result<(), OptimError> {
        hyper.validate()?;
        self.hyper = hyper;
        Ok(())
    }
}

impl<F: Real> Optimizer<F> for QhAdam<F> {
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]) {
        assert_eq!(params.len(), self.exp_avg.len(), "params length");
        assert_eq!(grads.len(), self.exp_avg.len(), "grads length");
        let h = self.hyper;
        self.beta1_weight = 1.0 + h.beta1 * self.beta1_weight;
        self.beta2_weight = 1.0 + h.beta2 * self.beta2_weight;
        let b1 = 1.0 - 1.0 / self.beta1_weight;
        let b2 = 1.0 - 1.0 / self.beta2_weight;
        let coupled = h.weight_decay_type == WeightDecay::Grad;
        let wd = F::from_f64(if coupled { h.weight_decay } else { 0.0 });
        let scale = F::from_f64(if coupled {
            1.0
        } else {
            1.0 - h.lr * h.weight_decay
        });
        let (b1, one_minus_b1) = (F::from_f64(b1), F::from_f64(1.0 - b1));
        let (b2, one_minus_b2) = (F::from_f64(b2), F::from_f64(1.0 - b2));
        let (nu1, one_minus_nu1) = (F::from_f64(h.nu1), F::from_f64(1.0 - h.nu1));
        let (nu2, one_minus_nu2) = (F::from_f64(h.nu2), F::from_f64(1.0 - h.nu2));
        let eps = F::from_f64(h.eps);
        let lr = F::from_f64(h.lr);
        zip2(
            params,
            grads,
            &mut self.exp_avg,
            &mut self.exp_avg_sq,
            |p, g, m, v| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = g + wd * *p;
                    let theta = *p * scale;
                    let g2 = g * g;
                    *m = b1 * *m + one_minus_b1 * g;
                    *v = b2 * *v + one_minus_b2 * g2;
                    let num = *m * nu1 + one_minus_nu1 * g;
                    let den = (*v * nu2 + one_minus_nu2 * g2).sqrt() + eps;
                    *p = theta - lr * (num / den);
                }
            },
        );
        self.step += 1;
    }

    fn len(&self) -> usize {
        self.exp_avg.len()
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Reads `lr`, `momentum` as β₁ and `nu` as ν₁.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError> {
        self.set_hyper(QhAdamHyper {
            lr: s.lr,
            beta1: s.beta,
            nu1: s.nu,
            ..self.hyper
        })
    }

    fn scheduled(&self) -> QhmParams {
        QhmParams {
            lr: self.hyper.lr,
            beta: self.hyper.beta1,
            nu: self.hyper.nu1,
        }
    }

    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            step: self.step,
            buffers: vec![
                ("exp_avg".into(), self.exp_avg.clone()),
                ("exp_avg_sq".into(), self.exp_avg_sq.clone()),
            ],
            scalars: vec![
                ("beta1_weight".into(), self.beta1_weight),
                ("beta2_weight".into(), self.beta2_weight),
            ],
        }
    }

    fn load_state(&mut self, mut state: OptimizerState<F>) -> Result<(), OptimError> {
        let n = self.exp_avg.len();
        let w1 = get_scalar(&state, "beta1_weight")?;
        let w2 = get_scalar(&state, "beta2_weight")?;
        let m = take_buffer(&mut state, "exp_avg", n)?;
        let v = take_buffer(&mut state, "exp_avg_sq", n)?;
        (self.exp_avg, self.exp_avg_sq) = (m, v);
        (self.beta1_weight, self.beta2_weight) = (w1, w2);
        self.step = state.step;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "qhadam"
    }
}
