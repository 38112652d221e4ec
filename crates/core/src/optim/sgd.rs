//! `torch.optim.SGD` semantics, including PyTorch's first step.
//!
//! With learning rate η, momentum m, dampening δ, weight decay wd (coupled):
//!
//! ```text
//! g ← g + wd·θ
//! if m ≠ 0:
//!     B ← g                      on the first step with m ≠ 0 (dampening skipped)
//!     B ← m·B + (1−δ)·g          afterwards
//!     g ← g + m·B   (nesterov)   or   g ← B
//! θ ← θ − η·g
//! ```
//!
//! The unnormalized buffer `B` relates to QHM's `d` by `d = (1−β)·B`; with δ = 0 this run equals
//! QHM with α = η/(1−m), β = m and ν = 1 (or ν = m for Nesterov), first step included.
//! With δ = m it is normalized heavy ball *except* on step 1, where PyTorch skips dampening.

use super::hyper::{check_decay, check_fraction, check_non_negative};
use super::parallel::{zip0, zip1};
use super::{take_buffer, OptimError, Optimizer, OptimizerState, QhmParams};
use crate::Real;
use serde::{Deserialize, Serialize};

/// Hyperparameters of PyTorch SGD.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SgdHyper {
    /// Learning rate η ≥ 0.
    pub lr: f64,
    /// Momentum m, 0 ≤ m < 1 (0: plain SGD, no buffer).
    pub momentum: f64,
    /// Dampening δ, 0 ≤ δ ≤ 1 (must be 0 with Nesterov).
    pub dampening: f64,
    /// Coupled weight decay ≥ 0.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl SgdHyper {
    /// Checks ranges and PyTorch's rule that Nesterov needs momentum > 0 and zero dampening.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_non_negative("lr", self.lr)?;
        check_decay("momentum", self.momentum)?;
        check_fraction("dampening", self.dampening)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OptimError::InvalidSettings(
                "nesterov requires momentum > 0 and dampening = 0 (PyTorch rule)".into(),
            ));
        }
        Ok(())
    }
}

/// PyTorch SGD over one flat buffer.
#[derive(Debug, Clone)]
pub struct Sgd<F> {
    hyper: SgdHyper,
    buffer: Vec<F>,
    /// PyTorch creates the buffer on the first step with momentum ≠ 0.
    buffer_started: bool,
    step: u64,
}

impl<F: Real> Sgd<F> {
    /// Builds SGD for `len` parameters after validating `hyper`.
    pub fn try_new(len: usize, hyper: SgdHyper) -> Result<Self, OptimError> {
        hyper.validate()?;
        Ok(Self {
            hyper,
            buffer: vec![F::zero(); len],
            buffer_started: false,
            step: 0,
        })
    }

    /// The hyperparameters in force.
    pub fn hyper(&self) -> &SgdHyper {
        &self.hyper
    }

    /// Replaces the hyperparameters; the buffer and step count are kept.
    pub fn set_hyper(&mut self, hyper: SgdHyper) -> Result<(), OptimError> {
        hyper.validate()?;
        self.hyper = hyper;
        Ok(())
    }

    /// The unnormalized momentum buffer `B` (zeros before it starts).
    pub fn buffer(&self) -> &[F] {
        &self.buffer
    }
}

impl<F: Real> Optimizer<F> for Sgd<F> {
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]) {
        assert_eq!(params.len(), self.buffer.len(), "params length");
        assert_eq!(grads.len(), self.buffer.len(), "grads length");
        let h = self.hyper;
        let lr = F::from_f64(h.lr);
        let wd = F::from_f64(h.weight_decay);
        if h.momentum == 0.0 {
            zip0(params, grads, |p, g| {
                for (p, &g) in p.iter_mut().zip(g) {
                    let g = g + wd * *p;
                    *p = *p - lr * g;
                }
            });
        } else {
            let m = F::from_f64(h.momentum);
            // On the first step the buffer is the gradient itself: B = 0·m + 1·g.
            let keep = if self.buffer_started { m } else { F::zero() };
            let fresh = if self.buffer_started {
                F::from_f64(1.0 - h.dampening)
            } else {
                F::one()
            };
            // Nesterov looks ahead by m·B; plain momentum steps along B.
            let look_ahead = if h.nesterov { m } else { F::one() };
            let grad_weight = if h.nesterov { F::one() } else { F::zero() };
            zip1(params, grads, &mut self.buffer, |p, g, b| {
                for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                    let g = g + wd * *p;
                    let b_new = keep * *b + fresh * g;
                    *b = b_new;
                    *p = *p - lr * (grad_weight * g + look_ahead * b_new);
                }
            });
            self.buffer_started = true;
        }
        self.step += 1;
    }

    fn len(&self) -> usize {
        self.buffer.len()
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Reads `lr` as η and `momentum` as m; ignores `nu`.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError> {
        self.set_hyper(SgdHyper {
            lr: s.lr,
            momentum: s.beta,
            ..self.hyper
        })
    }

    fn scheduled(&self) -> QhmParams {
        QhmParams {
            lr: self.hyper.lr,
            beta: self.hyper.momentum,
            nu: if self.hyper.nesterov {
                self.hyper.momentum
            } else {
                1.0
            },
        }
    }

    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            step: self.step,
            buffers: vec![("momentum".into(), self.buffer.clone())],
            scalars: vec![(
                "buffer_started".into(),
                if self.buffer_started { 1.0 } else { 0.0 },
            )],
        }
    }

    fn load_state(&mut self, mut state: OptimizerState<F>) -> Result<(), OptimError> {
        let started = super::get_scalar(&state, "buffer_started")?;
        self.buffer = take_buffer(&mut state, "momentum", self.buffer.len())?;
        self.buffer_started = started != 0.0;
        self.step = state.step;
        Ok(())
    }

    fn name(&self) -> &'static str {
        if self.hyper.nesterov {
            "nesterov"
        } else {
            "sgd"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_skips_dampening() {
        let h = SgdHyper {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.9,
            ..Default::default()
        };
        let mut opt = Sgd::<f64>::try_new(1, h).unwrap();
        let mut theta = [0.0];
        opt.step(&mut theta, &[1.0]).unwrap();
        assert_eq!(opt.buffer(), &[1.0]);
        assert!((theta[0] + 0.1).abs() < 1e-15);
        opt.step(&mut theta, &[1.0]).unwrap();
        // B = 0.9·1 + 0.1·1 = 1.0
        assert!((opt.buffer()[0] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn nesterov_with_dampening_is_refused() {
        let h = SgdHyper {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.1,
            nesterov: true,
            ..Default::default()
        };
        assert!(matches!(
            Sgd::<f64>::try_new(1, h),
            Err(OptimError::InvalidSettings(_))
        ));
    }
}
