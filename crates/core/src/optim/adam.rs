//! Adam and AdamW with `torch.optim.Adam` / `torch.optim.AdamW` semantics (no amsgrad).
//!
//! ```text
//! t ← t + 1
//! Adam:  g ← g + wd·θ          AdamW:  θ ← θ·(1 − lr·wd)
//! m ← β₁·m + (1−β₁)·g ;  v ← β₂·v + (1−β₂)·g²
//! θ ← θ − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε)
//! ```

use super::hyper::{check_decay, check_non_negative, check_positive};
use super::parallel::zip2;
use super::WeightDecay;
use super::{take_buffer, OptimError, Optimizer, OptimizerState, QhmParams};
use crate::Real;
use serde::{Deserialize, Serialize};

/// Adam hyperparameters; `weight_decay_type` `Grad` is Adam, `Direct` is AdamW.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamHyper {
    /// Learning rate ≥ 0.
    pub lr: f64,
    /// β₁, 0 ≤ β₁ < 1.
    pub beta1: f64,
    /// β₂, 0 ≤ β₂ < 1.
    pub beta2: f64,
    /// ε > 0 added to the denominator.
    pub eps: f64,
    /// Weight decay ≥ 0.
    pub weight_decay: f64,
    /// `Grad`: Adam's coupled L2. `Direct`: AdamW's decoupled decay.
    pub weight_decay_type: WeightDecay,
}

impl Default for AdamHyper {
    /// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            weight_decay_type: WeightDecay::Grad,
        }
    }
}

impl AdamHyper {
    /// PyTorch AdamW's defaults (weight decay 0.01, decoupled).
    pub fn adamw_default() -> Self {
        Self {
            weight_decay: 0.01,
            weight_decay_type: WeightDecay::Direct,
            ..Self::default()
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_non_negative("lr", self.lr)?;
        check_decay("beta1", self.beta1)?;
        check_decay("beta2", self.beta2)?;
        check_positive("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)
    }
}

/// Adam / AdamW over one flat buffer.
#[derive(Debug, Clone)]
pub struct Adam<F> {
    hyper: AdamHyper,
    exp_avg: Vec<F>,
    exp_avg_sq: Vec<F>,
    step: u64,
}

impl<F: Real> Adam<F> {
    /// Builds Adam (or AdamW) for `len` parameters after validating `hyper`.
    pub fn try_new(len: usize, hyper: AdamHyper) -> Result<Self, OptimError> {
        hyper.validate()?;
        Ok(Self {
            hyper,
            exp_avg: vec![F::zero(); len],
            exp_avg_sq: vec![F::zero(); len],
            step: 0,
        })
    }

    /// The hyperparameters in force.
    pub fn hyper(&self) -> &AdamHyper {
        &self.hyper
    }

    /// Replaces the hyperparameters; moments and step count are kept.
    pub fn set_hyper(&mut self, hyper: AdamHyper) -> Result<(), OptimError> {
        hyper.validate()?;
        self.hyper = hyper;
        Ok(())
    }
}

impl<F: Real> Optimizer<F> for Adam<F> {
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]) {
        assert_eq!(params.len(), self.exp_avg.len(), "params length");
        assert_eq!(grads.len(), self.exp_avg.len(), "grads length");
        self.step += 1;
        let h = self.hyper;
        let t = self.step as i32;
        let bias1 = 1.0 - h.beta1.powi(t);
        let bias2_sqrt = (1.0 - h.beta2.powi(t)).sqrt();
        let step_size = F::from_f64(h.lr / bias1);
        let bias2_sqrt_f = F::from_f64(bias2_sqrt);
        let b1 = F::from_f64(h.beta1);
        let one_minus_b1 = F::from_f64(1.0 - h.beta1);
        let b2 = F::from_f64(h.beta2);
        let one_minus_b2 = F::from_f64(1.0 - h.beta2);
        let eps = F::from_f64(h.eps);
        let coupled = h.weight_decay_type == WeightDecay::Grad;
        let wd = F::from_f64(if coupled { h.weight_decay } else { 0.0 });
        let scale = F::from_f64(if coupled {
            1.0
        } else {
            1.0 - h.lr * h.weight_decay
        });
        zip2(
            params,
            grads,
            &mut self.exp_avg,
            &mut self.exp_avg_sq,
            |p, g, m, v| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let theta = *p * scale;
                    let g = g + wd * *p;
                    let m_new = b1 * *m + one_minus_b1 * g;
                    let v_new = b2 * *v + one_minus_b2 * g * g;
                    *m = m_new;
                    *v = v_new;
                    let denom = v_new.sqrt() / bias2_sqrt_f + eps;
                    *p = theta - step_size * m_new / denom;
                }
            },
        );
    }

    fn len(&self) -> usize {
        self.exp_avg.len()
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Reads `lr` as the learning rate and `momentum` as β₁; ignores `nu`.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError> {
        self.set_hyper(AdamHyper {
            lr: s.lr,
            beta1: s.beta,
            ..self.hyper
        })
    }

    fn scheduled(&self) -> QhmParams {
        QhmParams {
            lr: self.hyper.lr,
            beta: self.hyper.beta1,
            nu: 1.0,
        }
    }

    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            step: self.step,
            buffers: vec![
                ("exp_avg".into(), self.exp_avg.clone()),
                ("exp_avg_sq".into(), self.exp_avg_sq.clone()),
            ],
            scalars: vec![],
        }
    }

    fn load_state(&mut self, mut state: OptimizerState<F>) -> Result<(), OptimError> {
        let n = self.exp_avg.len();
        let m = take_buffer(&mut state, "exp_avg", n)?;
        let v = take_buffer(&mut state, "exp_avg_sq", n)?;
        self.exp_avg = m;
        self.exp_avg_sq = v;
        self.step = state.step;
        Ok(())
    }

    fn name(&self) -> &'static str {
        match self.hyper.weight_decay_type {
            WeightDecay::Grad => "adam",
            WeightDecay::Direct => "adamw",
        }
    }
}
