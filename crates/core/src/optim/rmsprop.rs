//! RMSprop with `torch.optim.RMSprop` semantics.
//!
//! ```text
//! g ← g + wd·θ
//! s ← α·s + (1−α)·g²
//! centered:  a ← α·a + (1−α)·g ;  den = √(s − a²) + ε      else  den = √s + ε
//! momentum > 0:  B ← μ·B + g/den ;  θ ← θ − lr·B            else  θ ← θ − lr·g/den
//! ```

use super::hyper::{check_decay, check_non_negative, check_positive};
use super::parallel::{zip1, zip2};
use super::{take_buffer, OptimError, Optimizer, OptimizerState, QhmParams};
use crate::Real;
use serde::{Deserialize, Serialize};

/// RMSprop hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RmsPropHyper {
    /// Learning rate ≥ 0.
    pub lr: f64,
    /// Smoothing constant α of the squared-gradient average, 0 ≤ α < 1.
    pub alpha: f64,
    /// ε > 0 added to the denominator.
    pub eps: f64,
    /// Momentum μ, 0 ≤ μ < 1.
    pub momentum: f64,
    /// Coupled weight decay ≥ 0.
    pub weight_decay: f64,
    /// Normalize by the variance estimate instead of the second moment.
    pub centered: bool,
}

impl Default for RmsPropHyper {
    /// PyTorch's defaults: lr 1e-2, alpha 0.99, eps 1e-8, no momentum, not centered.
    fn default() -> Self {
        Self {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
            centered: false,
        }
    }
}

impl RmsPropHyper {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_non_negative("lr", self.lr)?;
        check_decay("alpha", self.alpha)?;
        check_positive("eps", self.eps)?;
        check_decay("momentum", self.momentum)?;
        check_non_negative("weight_decay", self.weight_decay)
    }
}

/// RMSprop over one flat buffer.
#[derive(Debug, Clone)]
pub struct RmsProp<F> {
    hyper: RmsPropHyper,
    square_avg: Vec<F>,
    grad_avg: Vec<F>,
    momentum: Vec<F>,
    step: u64,
}

impl<F: Real> RmsProp<F> {
    /// Builds RMSprop for `len` parameters after validating `hyper`.
    pub fn try_new(len: usize, hyper: RmsPropHyper) -> Result<Self, OptimError> {
        hyper.validate()?;
        Ok(Self {
            hyper,
            square_avg: vec![F::zero(); len],
            grad_avg: vec![F::zero(); len],
            momentum: vec![F::zero(); len],
            step: 0,
        })
    }

    /// Replaces the hyperparameters; state is kept.
    pub fn set_hyper(&mut self, hyper: RmsPropHyper) -> Result<(), OptimError> {
        hyper.validate()?;
        self.hyper = hyper;
        Ok(())
    }
}

/// Per-step constants of the RMSprop kernel.
#[derive(Clone, Copy)]
struct RmsCoefficients<F> {
    lr: F,
    alpha: F,
    one_minus_alpha: F,
    eps: F,
    mu: F,
    wd: F,
}

impl<F: Real> RmsCoefficients<F> {
    #[inline(always)]
    fn denominator(&self, s: F, a: F) -> F {
        (s - a * a).sqrt() + self.eps
    }
}

impl<F: Real> Optimizer<F> for RmsProp<F> {
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]) {
        assert_eq!(params.len(), self.square_avg.len(), "params length");
        assert_eq!(grads.len(), self.square_avg.len(), "grads length");
        let h = self.hyper;
        let c = RmsCoefficients {
            lr: F::from_f64(h.lr),
            alpha: F::from_f64(h.alpha),
            one_minus_alpha: F::from_f64(1.0 - h.alpha),
            eps: F::from_f64(h.eps),
            mu: F::from_f64(h.momentum),
            wd: F::from_f64(h.weight_decay),
        };
        let zero = F::zero();
        let with_momentum = h.momentum > 0.0;
        match (h.centered, with_momentum) {
            (false, false) => zip1(params, grads, &mut self.square_avg, |p, g, s| {
                for ((p, &g), s) in p.iter_mut().zip(g).zip(s.iter_mut()) {
                    let g = g + c.wd * *p;
                    *s = c.alpha * *s + c.one_minus_alpha * g * g;
                    *p = *p - c.lr * (g / c.denominator(*s, zero));
                }
            }),
            (false, true) => zip2(
                params,
                grads,
                &mut self.square_avg,
                &mut self.momentum,
                |p, g, s, b| {
                    for (((p, &g), s), b) in p.iter_mut().zip(g).zip(s.iter_mut()).zip(b.iter_mut())
                    {
                        let g = g + c.wd * *p;
                        *s = c.alpha * *s + c.one_minus_alpha * g * g;
                        *b = c.mu * *b + g / c.denominator(*s, zero);
                        *p = *p - c.lr * *b;
                    }
                },
            ),
            (true, _) => {
                // Centered RMSprop is rarely used: a simple serial loop over three state buffers.
                let iter = params
                    .iter_mut()
                    .zip(grads)
                    .zip(self.square_avg.iter_mut())
                    .zip(self.grad_avg.iter_mut())
                    .zip(self.momentum.iter_mut());
                for ((((p, &g), s), a), b) in iter {
                    let g = g + c.wd * *p;
                    *s = c.alpha * *s + c.one_minus_alpha * g * g;
                    *a = *a + (g - *a) * c.one_minus_alpha;
                    let den = c.denominator(*s, *a);
                    if with_momentum {
                        *b = c.mu * *b + g / den;
                        *p = *p - c.lr * *b;
                    } else {
                        *p = *p - c.lr * (g / den);
                    }
                }
            }
        }
        self.step += 1;
    }

    fn len(&self) -> usize {
        self.square_avg.len()
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Reads `lr` as the learning rate and `momentum` as μ; ignores `nu`.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError> {
        self.set_hyper(RmsPropHyper {
            lr: s.lr,
            momentum: s.beta,
            ..self.hyper
        })
    }

    fn scheduled(&self) -> QhmParams {
        QhmParams {
            lr: self.hyper.lr,
            beta: self.hyper.momentum,
            nu: 1.0,
        }
    }

    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            step: self.step,
            buffers: vec![
                ("square_avg".into(), self.square_avg.clone()),
                ("grad_avg".into(), self.grad_avg.clone()),
                ("momentum".into(), self.momentum.clone()),
            ],
            scalars: vec![],
        }
    }

    fn load_state(&mut self, mut state: OptimizerState<F>) -> Result<(), OptimError> {
        let n = self.square_avg.len();
        let s = take_buffer(&mut state, "square_avg", n)?;
        let a = take_buffer(&mut state, "grad_avg", n)?;
        let b = take_buffer(&mut state, "momentum", n)?;
        self.square_avg = s;
        self.grad_avg = a;
        self.momentum = b;
        self.step = state.step;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "rmsprop"
    }
}
