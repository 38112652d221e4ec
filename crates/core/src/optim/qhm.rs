//! Quasi-hyperbolic momentum (QHM), exactly as qhoptim defines it.
//!
//! With gradient `g` (after coupled weight decay), buffer `d` (starts at zero) and
//! hyperparameters α (learning rate), β (momentum) and ν (immediate discount):
//!
//! ```text
//! d ← β·d + (1−β)·g
//! θ ← θ − α·ν·d − α·(1−ν)·g
//! ```
//!
//! This is the *normalized* convention: a PyTorch `SGD(lr=η, momentum=m)` run equals QHM with
//! α = η/(1−m), β = m, ν = 1 (see [`super::conventions`]). Plain SGD is ν = 0, normalized heavy
//! ball ν = 1, PyTorch Nesterov ν = β.

use super::hyper::check_non_negative;
use super::parallel::zip1;
use super::{take_buffer, OptimError, Optimizer, OptimizerState};
use super::{QhmParams, WeightDecay};
use crate::Real;
use serde::{Deserialize, Serialize};

/// The QHM optimizer's settings: the (α, β, ν) triple and weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QhmHyper {
    /// α ≥ 0, 0 ≤ β < 1, 0 ≤ ν ≤ 1 (normalized convention).
    #[serde(flatten)]
    pub qhm: QhmParams,
    /// Weight decay ≥ 0.
    pub weight_decay: f64,
    /// How weight decay is applied.
    pub weight_decay_type: WeightDecay,
}

impl Default for QhmHyper {
    /// qhoptim's recommended defaults: α = 1, β = 0.999, ν = 0.7, no weight decay.
    fn default() -> Self {
        Self::from(QhmParams {
            lr: 1.0,
            beta: 0.999,
            nu: 0.7,
        })
    }
}

impl From<QhmParams> for QhmHyper {
    /// The triple without weight decay.
    fn from(qhm: QhmParams) -> Self {
        Self {
            qhm,
            weight_decay: 0.0,
            weight_decay_type: WeightDecay::Grad,
        }
    }
}

impl QhmHyper {
    /// Builds α, β, ν without weight decay, validated.
    pub fn checked(lr: f64, beta: f64, nu: f64) -> Result<Self, OptimError> {
        QhmParams::checked(lr, beta, nu).map(Self::from)
    }

    /// Checks every field's range, naming the first field out of range.
    pub fn validate(&self) -> Result<(), OptimError> {
        self.qhm.check_optimizer_ranges()?;
        check_non_negative("weight_decay", self.weight_decay)
    }
}

/// The QHM optimizer over one flat buffer of `F` (`f32` or `f64`).
#[derive(Debug, Clone)]
pub struct Qhm<F> {
    hyper: QhmHyper,
    buffer: Vec<F>,
    step: u64,
}

impl<F: Real> Qhm<F> {
    /// Builds QHM for `len` parameters with a zero momentum buffer.
    ///
    /// # Panics
    /// Never on its own; use [`Qhm::try_new`] to validate user-given hyperparameters.
    pub fn new(len: usize, hyper: QhmHyper) -> Self {
        Self {
            hyper,
            buffer: vec![F::zero(); len],
            step: 0,
        }
    }

    /// Builds QHM after validating `hyper`.
    pub fn try_new(len: usize, hyper: QhmHyper) -> Result<Self, OptimError> {
        hyper.validate()?;
        Ok(Self::new(len, hyper))
    }

    /// The hyperparameters in force.
    pub fn hyper(&self) -> &QhmHyper {
        &self.hyper
    }

    /// Replaces the hyperparameters (a stage switch); the buffer and step count are kept.
    pub fn set_hyper(&mut self, hyper: QhmHyper) -> Result<(), OptimError> {
        hyper.validate()?;
        self.hyper = hyper;
        Ok(())
    }

    /// The momentum buffer `d` (normalized).
    pub fn buffer(&self) -> &[F] {
        &self.buffer
    }
}

/// The fused QHM kernel on one chunk: one read of θ, g, d and one write of θ, d per element.
#[inline]
fn qhm_kernel<F: Real>(
    params: &mut [F],
    grads: &[F],
    buffer: &mut [F],
    coef: QhmCoefficients<F>,
    coupled_wd: bool,
) {
    let QhmCoefficients {
        beta,
        one_minus_beta,
        lr_nu,
        lr_one_minus_nu,
        wd,
        direct_scale,
    } = coef;
    for ((p, &g), d) in params.iter_mut().zip(grads).zip(buffer.iter_mut()) {
        let g = if coupled_wd { g + wd * *p } else { g };
        // Multiplying by exactly 1 when decay is not direct changes nothing and avoids a branch.
        let theta = *p * direct_scale;
        let d_new = beta * *d + one_minus_beta * g;
        *d = d_new;
        *p = theta - lr_nu * d_new - lr_one_minus_nu * g;
    }
}

/// Per-step constants of the QHM kernel, converted once to the element type.
#[derive(Clone, Copy)]
struct QhmCoefficients<F> {
    beta: F,
    one_minus_beta: F,
    lr_nu: F,
    lr_one_minus_nu: F,
    wd: F,
    direct_scale: F,
}

impl<F: Real> Optimizer<F> for Qhm<F> {
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]) {
        assert_eq!(params.len(), self.buffer.len(), "params length");
        assert_eq!(grads.len(), self.buffer.len(), "grads length");
        let h = self.hyper;
        let coupled_wd = h.weight_decay != 0.0 && h.weight_decay_type == WeightDecay::Grad;
        let direct_scale = match h.weight_decay_type {
            WeightDecay::Direct if h.weight_decay != 0.0 => 1.0 - h.qhm.lr * h.weight_decay,
            _ => 1.0,
        };
        let coef = QhmCoefficients {
            beta: F::from_f64(h.qhm.beta),
            one_minus_beta: F::from_f64(1.0 - h.qhm.beta),
            lr_nu: F::from_f64(h.qhm.lr * h.qhm.nu),
            lr_one_minus_nu: F::from_f64(h.qhm.lr * (1.0 - h.qhm.nu)),
            wd: F::from_f64(h.weight_decay),
            direct_scale: F::from_f64(direct_scale),
        };
        if coupled_wd {
            zip1(params, grads, &mut self.buffer, |p, g, d| {
                qhm_kernel(p, g, d, coef, true)
            });
        } else {
            zip1(params, grads, &mut self.buffer, |p, g, d| {
                qhm_kernel(p, g, d, coef, false)
            });
        }
        self.step += 1;
    }

    fn len(&self) -> usize {
        self.buffer.len()
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Reads `lr` as α, `momentum` as β and `nu` as ν.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError> {
        self.set_hyper(QhmHyper {
            qhm: s,
            ..self.hyper
        })
    }

    fn scheduled(&self) -> QhmParams {
        self.hyper.qhm
    }

    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            step: self.step,
            buffers: vec![("momentum".into(), self.buffer.clone())],
            scalars: vec![],
        }
    }

    fn load_state(&mut self, mut state: OptimizerState<F>) -> Result<(), OptimError> {
        self.buffer = take_buffer(&mut state, "momentum", self.buffer.len())?;
        self.step = state.step;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "qhm"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_step(theta: &mut [f64], d: &mut [f64], g: &[f64], h: QhmHyper) {
        for i in 0..theta.len() {
            let mut gi = g[i];
            if h.weight_decay_type == WeightDecay::Grad {
                gi += h.weight_decay * theta[i];
            } else {
                theta[i] *= 1.0 - h.qhm.lr * h.weight_decay;
            }
            d[i] = h.qhm.beta * d[i] + (1.0 - h.qhm.beta) * gi;
            theta[i] -= h.qhm.lr * (h.qhm.nu * d[i] + (1.0 - h.qhm.nu) * gi);
        }
    }

    #[test]
    fn parallel_and_serial_paths_agree_with_a_reference() {
        // Long enough to take the parallel path, odd length to leave a ragged last chunk.
        let n = super::super::parallel::PARALLEL_MIN_LEN * 3 + 17;
        let piece = super::super::parallel::PARALLEL_MIN_LEN / 2;
        let theta0: Vec<f64> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0)
            .collect();
        for wd_type in [WeightDecay::Grad, WeightDecay::Direct] {
            let h = QhmHyper {
                qhm: QhmParams {
                    lr: 0.3,
                    beta: 0.9,
                    nu: 0.7,
                },
                weight_decay: 0.01,
                weight_decay_type: wd_type,
            };
            let mut whole = Qhm::<f64>::try_new(n, h).unwrap();
            let mut theta = theta0.clone();
            // The same buffer updated piece by piece, each piece short enough to run serially.
            let mut pieces: Vec<Qhm<f64>> =
                theta0.chunks(piece).map(|c| Qhm::new(c.len(), h)).collect();
            let mut theta_pieces = theta0.clone();
            let mut theta_ref = theta0.clone();
            let mut d_ref = vec![0.0; n];
            for k in 0..3 {
                let g: Vec<f64> = (0..n).map(|i| ((i + k) % 13) as f64 - 6.0).collect();
                whole.step(&mut theta, &g).unwrap();
                for ((opt, p), g) in pieces
                    .iter_mut()
                    .zip(theta_pieces.chunks_mut(piece))
                    .zip(g.chunks(piece))
                {
                    opt.step(p, g).unwrap();
                }
                reference_step(&mut theta_ref, &mut d_ref, &g, h);
            }
            assert!(theta == theta_pieces, "parallel and serial paths differ");
            let max_err = theta
                .iter()
                .zip(&theta_ref)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(max_err < 1e-13, "max deviation from reference {max_err}");
            assert_eq!(whole.steps_taken(), 3);
        }
    }

    #[test]
    fn non_finite_gradient_is_refused_and_nothing_changes() {
        let mut opt = Qhm::<f32>::new(4, QhmHyper::default());
        let mut theta = vec![1.0f32; 4];
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = opt.step(&mut theta, &[0.1, 0.2, bad, 0.3]).unwrap_err();
            assert!(matches!(
                err,
                OptimError::NonFiniteGradient { index: 2, .. }
            ));
            assert_eq!(theta, vec![1.0f32; 4]);
            assert_eq!(opt.buffer(), &[0.0f32; 4]);
            assert_eq!(opt.steps_taken(), 0);
        }
    }

    #[test]
    fn invalid_hyperparameters_name_the_field() {
        let bad = QhmHyper {
            qhm: QhmParams {
                beta: 1.0,
                ..QhmHyper::default().qhm
            },
            ..Default::default()
        };
        let err = Qhm::<f64>::try_new(1, bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hyperparameter 'beta' = 1 is out of range; allowed: 0 <= beta < 1"
        );
        let bad = QhmHyper {
            qhm: QhmParams {
                nu: f64::NAN,
                ..QhmHyper::default().qhm
            },
            ..Default::default()
        };
        assert!(matches!(
            Qhm::<f64>::try_new(1, bad),
            Err(OptimError::InvalidHyper { field: "nu", .. })
        ));
    }

    #[test]
    fn length_mismatch_is_refused() {
        let mut opt = Qhm::<f64>::new(3, QhmHyper::default());
        let mut theta = vec![0.0; 3];
        assert!(matches!(
            opt.step(&mut theta, &[1.0, 2.0]),
            Err(OptimError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let h = QhmHyper {
            qhm: QhmParams {
                lr: 0.5,
                beta: 0.8,
                nu: 0.6,
            },
            ..Default::default()
        };
        let mut a = Qhm::<f64>::new(2, h);
        let mut ta = vec![1.0, 2.0];
        a.step(&mut ta, &[0.3, -0.1]).unwrap();
        let mut b = Qhm::<f64>::new(2, h);
        b.load_state(a.state()).unwrap();
        let mut tb = ta.clone();
        a.step(&mut ta, &[0.2, 0.4]).unwrap();
        b.step(&mut tb, &[0.2, 0.4]).unwrap();
        assert_eq!(ta, tb);
        assert_eq!(b.steps_taken(), 2);
        let mut wrong = a.state();
        wrong.buffers[0].1.pop();
        assert!(matches!(b.load_state(wrong), Err(OptimError::BadState(_))));
    }
}
