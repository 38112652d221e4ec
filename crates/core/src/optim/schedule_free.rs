//! Schedule-free SGD and AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky 2024,
//! "The Road Less Scheduled", arXiv 2405.15682), matching the `schedulefree` package's
//! reference classes `SGDScheduleFreeReference` and `AdamWScheduleFreeReference` (version 1.4.1).
//!
//! Schedule-free methods keep three sequences: the base optimizer steps **z**, the
//! weighted average of the z iterates is **x**, and gradients are taken at the interpolation
//! **y** = β·x + (1−β)·z. The parameter buffer given to [`Optimizer::step`] holds y (the
//! training point); the optimizer keeps z and x. Evaluation and export belong at x, which
//! [`Optimizer::eval_params`] returns. With k the number of steps taken before this one
//! (0 on the first step, when z = x = y = the parameters given), every step computes
//!
//! ```text
//! γ   = lr · min(1, (k+1)/warmup_steps)          (γ = lr when warmup_steps = 0)
//! γ_max ← max(γ_max, γ)                           (γ_max starts below any γ)
//! w   = (k+1)^r · γ_max^weight_lr_power
//! W  ← W + w ;   c = w / W                        (c = 0 while W = 0)
//! ```
//!
//! then the base step on z (see [`SgdScheduleFree`] and [`AdamWScheduleFree`]), and
//!
//! ```text
//! x ← (1 − c)·x + c·z
//! y ← β·x + (1 − β)·z
//! ```
//!
//! so x is the average of z₁ … z_(k+1) with weights w. The learning rate can change between
//! steps ([`Optimizer::set_scheduled`]), as editing `param_groups[i]["lr"]` does in PyTorch;
//! γ_max and W keep their history.

use super::hyper::{check_decay, check_non_negative, check_positive};
use super::parallel::{zip2, zip3};
use super::{get_scalar, take_buffer, OptimError, Optimizer, OptimizerState, QhmParams};
use crate::Real;
use serde::{Deserialize, Serialize};

/// The averaging bookkeeping shared by both methods: W, γ_max and the last γ.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Averaging {
    /// W: the sum of the weights so far.
    weight_sum: f64,
    /// γ_max: the largest warmed-up learning rate so far (−1 before the first step).
    lr_max: f64,
    /// γ of the last step (the warmed-up learning rate), for logs.
    scheduled_lr: f64,
}

impl Averaging {
    /// The reference's initial values.
    fn new() -> Self {
        Self {
            weight_sum: 0.0,
            lr_max: -1.0,
            scheduled_lr: 0.0,
        }
    }

    /// γ for the step after `k` steps: `lr` scaled by the linear warm-up.
    fn warmed_up_lr(lr: f64, k: u64, warmup_steps: u64) -> f64 {
        let sched = if k < warmup_steps {
            (k + 1) as f64 / warmup_steps as f64
        } else {
            1.0
        };
        lr * sched
    }

    /// Records γ for the step after `k` steps and returns its averaging weight c.
    fn advance(&mut self, gamma: f64, k: u64, r: f64, weight_lr_power: f64) -> f64 {
        self.scheduled_lr = gamma;
        self.lr_max = gamma.max(self.lr_max);
        let weight = ((k + 1) as f64).powf(r) * self.lr_max.powf(weight_lr_power);
        self.weight_sum += weight;
        if self.weight_sum == 0.0 {
            0.0
        } else {
            weight / self.weight_sum
        }
    }

    fn scalars(&self) -> Vec<(String, f64)> {
        vec![
            ("weight_sum".into(), self.weight_sum),
            ("lr_max".into(), self.lr_max),
            ("scheduled_lr".into(), self.scheduled_lr),
        ]
    }

    fn from_state<F>(state: &OptimizerState<F>) -> Result<Self, OptimError> {
        Ok(Self {
            weight_sum: get_scalar(state, "weight_sum")?,
            lr_max: get_scalar(state, "lr_max")?,
            scheduled_lr: get_scalar(state, "scheduled_lr")?,
        })
    }
}

/// Checks the fields both methods share.
fn validate_common(
    lr: f64,
    weight_decay: f64,
    r: f64,
    weight_lr_power: f64,
) -> Result<(), OptimError> {
    check_non_negative("lr", lr)?;
    check_non_negative("weight_decay", weight_decay)?;
    check_non_negative("r", r)?;
    check_non_negative("weight_lr_power", weight_lr_power)
}

/// Writes y = β·x + (1−β)·z into `out`, the way a step computes it.
fn interpolate<F: Real>(out: &mut [F], x: &[F], z: &[F], beta: f64) {
    assert_eq!(out.len(), x.len(), "params length");
    let b = F::from_f64(beta);
    let one_minus_b = F::from_f64(1.0 - beta);
    for ((y, &x), &z) in out.iter_mut().zip(x).zip(z) {
        *y = x * b + one_minus_b * z;
    }
}

/// Hyperparameters of schedule-free SGD; the defaults are `SGDScheduleFreeReference`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdScheduleFreeHyper {
    /// Learning rate γ ≥ 0 (before warm-up). Default 1.0.
    pub lr: f64,
    /// Interpolation β, 0 ≤ β < 1: y = β·x + (1−β)·z. Default 0.9. (The reference refuses 0;
    /// β = 0 is well defined here: y = z, plain SGD on z with x its running average.)
    pub momentum: f64,
    /// Coupled weight decay ≥ 0, taken at y: g ← g + wd·y. Default 0.
    pub weight_decay: f64,
    /// Steps of linear learning-rate warm-up (0: none). Default 0.
    pub warmup_steps: u64,
    /// Polynomial weighting power r ≥ 0 of the average: w ∝ (k+1)^r. Default 0.
    pub r: f64,
    /// Power p ≥ 0 of γ_max in the average's weights: w ∝ γ_max^p. Default 2.
    pub weight_lr_power: f64,
}

impl Default for SgdScheduleFreeHyper {
    fn default() -> Self {
        Self {
            lr: 1.0,
            momentum: 0.9,
            weight_decay: 0.0,
            warmup_steps: 0,
            r: 0.0,
            weight_lr_power: 2.0,
        }
    }
}

impl SgdScheduleFreeHyper {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_decay("momentum", self.momentum)?;
        validate_common(self.lr, self.weight_decay, self.r, self.weight_lr_power)
    }
}

/// Schedule-free SGD over one flat buffer (`SGDScheduleFreeReference`).
///
/// `params` holds y. After the averaging bookkeeping of the [module](self), each step is
///
/// ```text
/// g ← g + wd·y
/// z ← z − γ·g
/// x ← (1 − c)·x + c·z
/// y ← β·x + (1 − β)·z
/// ```
///
/// With β = 0, y = z and the run is plain SGD (`Sgd` without momentum) while x averages it.
#[derive(Debug, Clone)]
pub struct SgdScheduleFree<F> {
    hyper: SgdScheduleFreeHyper,
    z: Vec<F>,
    x: Vec<F>,
    avg: Averaging,
    step: u64,
}

impl<F: Real> SgdScheduleFree<F> {
    /// Builds schedule-free SGD for `len` parameters after validating `hyper`.
    ///
    /// z and x are taken from the parameters of the first step.
    pub fn try_new(len: usize, hyper: SgdScheduleFreeHyper) -> Result<Self, OptimError> {
        hyper.validate()?;
        Ok(Self {
            hyper,
            z: vec![F::zero(); len],
            x: vec![F::zero(); len],
            avg: Averaging::new(),
            step: 0,
        })
    }

    /// The hyperparameters in force.
    pub fn hyper(&self) -> &SgdScheduleFreeHyper {
        &self.hyper
    }

    /// Replaces the hyperparameters; z, x, the averaging weights and the step count are kept.
    pub fn set_hyper(&mut self, hyper: SgdScheduleFreeHyper) -> Result<(), OptimError> {
        hyper.validate()?;
        self.hyper = hyper;
        Ok(())
    }

    /// The averaged iterate x (zeros before the first step).
    pub fn x(&self) -> &[F] {
        &self.x
    }

    /// The base iterate z (zeros before the first step).
    pub fn z(&self) -> &[F] {
        &self.z
    }

    /// γ of the last step: the learning rate after warm-up (0 before the first step).
    pub fn scheduled_lr(&self) -> f64 {
        self.avg.scheduled_lr
    }

    /// W, the sum of the averaging weights so far.
    pub fn weight_sum(&self) -> f64 {
        self.avg.weight_sum
    }

    /// Writes the training point y = β·x + (1−β)·z into `params`, with the β in force.
    ///
    /// For resuming from a checkpoint that stored x (and this state) but not y: with β
    /// unchanged since the last step it reproduces y bit for bit. Returns false, leaving
    /// `params` alone, before the first step (then y = x = z = the parameters).
    pub fn write_train_point(&self, params: &mut [F]) -> bool {
        if self.step == 0 {
            return false;
        }
        interpolate(params, &self.x, &self.z, self.hyper.momentum);
        true
    }
}

impl<F: Real> Optimizer<F> for SgdScheduleFree<F> {
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]) {
        assert_eq!(params.len(), self.z.len(), "params length");
        assert_eq!(grads.len(), self.z.len(), "grads length");
        if self.step == 0 {
            self.z.copy_from_slice(params);
            self.x.copy_from_slice(params);
        }
        let h = self.hyper;
        let k = self.step;
        let gamma = Averaging::warmed_up_lr(h.lr, k, h.warmup_steps);
        let c = self.avg.advance(gamma, k, h.r, h.weight_lr_power);
        let lr = F::from_f64(gamma);
        let wd = F::from_f64(h.weight_decay);
        let keep = F::from_f64(1.0 - c);
        let take = F::from_f64(c);
        let beta = F::from_f64(h.momentum);
        let one_minus_beta = F::from_f64(1.0 - h.momentum);
        zip2(params, grads, &mut self.z, &mut self.x, |p, g, z, x| {
            for (((y, &g), z), x) in p.iter_mut().zip(g).zip(z.iter_mut()).zip(x.iter_mut()) {
                let g = g + wd * *y;
                let z_new = *z - lr * g;
                let x_new = *x * keep + take * z_new;
                *z = z_new;
                *x = x_new;
                *y = x_new * beta + one_minus_beta * z_new;
            }
        });
        self.step += 1;
    }

    fn len(&self) -> usize {
        self.z.len()
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Reads `lr` as γ (before warm-up) and `momentum` as β; ignores `nu`.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError> {
        self.set_hyper(SgdScheduleFreeHyper {
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

    /// Buffers `z` and `x`; scalars `weight_sum`, `lr_max`, `scheduled_lr`.
    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            step: self.step,
            buffers: vec![("z".into(), self.z.clone()), ("x".into(), self.x.clone())],
            scalars: self.avg.scalars(),
        }
    }

    fn load_state(&mut self, mut state: OptimizerState<F>) -> Result<(), OptimError> {
        let n = self.z.len();
        let avg = Averaging::from_state(&state)?;
        let z = take_buffer(&mut state, "z", n)?;
        let x = take_buffer(&mut state, "x", n)?;
        self.z = z;
        self.x = x;
        self.avg = avg;
        self.step = state.step;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "sgd-schedulefree"
    }

    /// x, once a step was taken.
    fn eval_params(&self) -> Option<&[F]> {
        (self.step > 0).then_some(self.x.as_slice())
    }
}

/// Hyperparameters of schedule-free AdamW; the defaults are `AdamWScheduleFreeReference`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWScheduleFreeHyper {
    /// Learning rate γ ≥ 0 (before warm-up). Default 0.0025.
    pub lr: f64,
    /// Interpolation β₁, 0 ≤ β₁ < 1: y = β₁·x + (1−β₁)·z. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay β₂, 0 ≤ β₂ < 1. Default 0.999.
    pub beta2: f64,
    /// ε > 0 added to the denominator. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay ≥ 0: z ← z − γ·wd·y. Default 0.
    pub weight_decay: f64,
    /// Steps of linear learning-rate warm-up (0: none). Default 0.
    pub warmup_steps: u64,
    /// Polynomial weighting power r ≥ 0 of the average: w ∝ (k+1)^r. Default 0.
    pub r: f64,
    /// Power p ≥ 0 of γ_max in the average's weights: w ∝ γ_max^p. Default 2.
    pub weight_lr_power: f64,
    /// Take weight decay at z instead of y (z ← z − γ·wd·z). Default false.
    pub decay_at_z: bool,
}

impl Default for AdamWScheduleFreeHyper {
    fn default() -> Self {
        Self {
            lr: 0.0025,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            r: 0.0,
            weight_lr_power: 2.0,
            decay_at_z: false,
        }
    }
}

impl AdamWScheduleFreeHyper {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_decay("beta1", self.beta1)?;
        check_decay("beta2", self.beta2)?;
        check_positive("eps", self.eps)?;
        validate_common(self.lr, self.weight_decay, self.r, self.weight_lr_power)
    }
}

/// Schedule-free AdamW over one flat buffer (`AdamWScheduleFreeReference`).
///
/// `params` holds y. After the averaging bookkeeping of the [module](self) (γ includes the
/// warm-up, no bias-correction factor), each step is
///
/// ```text
/// z ← z − γ·wd·y                                 (y → z with decay_at_z)
/// v ← β₂·v + (1 − β₂)·g²                         (v starts at zero)
/// z ← z − γ·g / (√(v / (1 − β₂^(k+1))) + ε)
/// x ← (1 − c)·x + c·z
/// y ← β₁·x + (1 − β₁)·z
/// ```
///
/// There is no first moment: β₁ is the interpolation weight, which plays momentum's part.
#[derive(Debug, Clone)]
pub struct AdamWScheduleFree<F> {
    hyper: AdamWScheduleFreeHyper,
    z: Vec<F>,
    x: Vec<F>,
    exp_avg_sq: Vec<F>,
    avg: Averaging,
    step: u64,
}

impl<F: Real> AdamWScheduleFree<F> {
    /// Builds schedule-free AdamW for `len` parameters after validating `hyper`.
    ///
    /// z and x are taken from the parameters of the first step.
    pub fn try_new(len: usize, hyper: AdamWScheduleFreeHyper) -> Result<Self, OptimError> {
        hyper.validate()?;
        Ok(Self {
            hyper,
            z: vec![F::zero(); len],
            x: vec![F::zero(); len],
            exp_avg_sq: vec![F::zero(); len],
            avg: Averaging::new(),
            step: 0,
        })
    }

    /// The hyperparameters in force.
    pub fn hyper(&self) -> &AdamWScheduleFreeHyper {
        &self.hyper
    }

    /// Replaces the hyperparameters; z, x, v, the averaging weights and the step count are kept.
    pub fn set_hyper(&mut self, hyper: AdamWScheduleFreeHyper) -> Result<(), OptimError> {
        hyper.validate()?;
        self.hyper = hyper;
        Ok(())
    }

    /// The averaged iterate x (zeros before the first step).
    pub fn x(&self) -> &[F] {
        &self.x
    }

    /// The base iterate z (zeros before the first step).
    pub fn z(&self) -> &[F] {
        &self.z
    }

    /// The second-moment estimate v.
    pub fn exp_avg_sq(&self) -> &[F] {
        &self.exp_avg_sq
    }

    /// γ of the last step: the learning rate after warm-up (0 before the first step).
    pub fn scheduled_lr(&self) -> f64 {
        self.avg.scheduled_lr
    }

    /// W, the sum of the averaging weights so far.
    pub fn weight_sum(&self) -> f64 {
        self.avg.weight_sum
    }

    /// Writes the training point y = β₁·x + (1−β₁)·z into `params`, with the β₁ in force.
    ///
    /// See [`SgdScheduleFree::write_train_point`].
    pub fn write_train_point(&self, params: &mut [F]) -> bool {
        if self.step == 0 {
            return false;
        }
        interpolate(params, &self.x, &self.z, self.hyper.beta1);
        true
    }
}

impl<F: Real> Optimizer<F> for AdamWScheduleFree<F> {
    fn step_unchecked(&mut self, params: &mut [F], grads: &[F]) {
        assert_eq!(params.len(), self.z.len(), "params length");
        assert_eq!(grads.len(), self.z.len(), "grads length");
        if self.step == 0 {
            self.z.copy_from_slice(params);
            self.x.copy_from_slice(params);
        }
        let h = self.hyper;
        let k = self.step;
        let gamma = Averaging::warmed_up_lr(h.lr, k, h.warmup_steps);
        let c = self.avg.advance(gamma, k, h.r, h.weight_lr_power);
        let bias2 = F::from_f64(1.0 - h.beta2.powf((k + 1) as f64));
        let lr = F::from_f64(gamma);
        let lr_wd = F::from_f64(gamma * h.weight_decay);
        let at_z = h.decay_at_z;
        let b2 = F::from_f64(h.beta2);
        let one_minus_b2 = F::from_f64(1.0 - h.beta2);
        let eps = F::from_f64(h.eps);
        let keep = F::from_f64(1.0 - c);
        let take = F::from_f64(c);
        let beta = F::from_f64(h.beta1);
        let one_minus_beta = F::from_f64(1.0 - h.beta1);
        zip3(
            params,
            grads,
            &mut self.z,
            &mut self.x,
            &mut self.exp_avg_sq,
            |p, g, z, x, v| {
                let iter = p
                    .iter_mut()
                    .zip(g)
                    .zip(z.iter_mut())
                    .zip(x.iter_mut())
                    .zip(v.iter_mut());
                for ((((y, &g), z), x), v) in iter {
                    let decay_point = if at_z { *z } else { *y };
                    let z_decayed = *z - lr_wd * decay_point;
                    let v_new = *v * b2 + one_minus_b2 * g * g;
                    let denom = (v_new / bias2).sqrt() + eps;
                    let z_new = z_decayed - lr * g / denom;
                    let x_new = *x * keep + take * z_new;
                    *v = v_new;
                    *z = z_new;
                    *x = x_new;
                    *y = x_new * beta + one_minus_beta * z_new;
                }
            },
        );
        self.step += 1;
    }

    fn len(&self) -> usize {
        self.z.len()
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Reads `lr` as γ (before warm-up) and `momentum` as β₁; ignores `nu`.
    fn set_scheduled(&mut self, s: QhmParams) -> Result<(), OptimError> {
        self.set_hyper(AdamWScheduleFreeHyper {
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

    /// Buffers `z`, `x`, `exp_avg_sq`; scalars `weight_sum`, `lr_max`, `scheduled_lr`.
    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            step: self.step,
            buffers: vec![
                ("z".into(), self.z.clone()),
                ("x".into(), self.x.clone()),
                ("exp_avg_sq".into(), self.exp_avg_sq.clone()),
            ],
            scalars: self.avg.scalars(),
        }
    }

    fn load_state(&mut self, mut state: OptimizerState<F>) -> Result<(), OptimError> {
        let n = self.z.len();
        let avg = Averaging::from_state(&state)?;
        let z = take_buffer(&mut state, "z", n)?;
        let x = take_buffer(&mut state, "x", n)?;
        let v = take_buffer(&mut state, "exp_avg_sq", n)?;
        self.z = z;
        self.x = x;
        self.exp_avg_sq = v;
        self.avg = avg;
        self.step = state.step;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "adamw-schedulefree"
    }

    /// x, once a step was taken.
    fn eval_params(&self) -> Option<&[F]> {
        (self.step > 0).then_some(self.x.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Sgd, SgdHyper};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn grads(steps: usize, len: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..steps)
            .map(|_| (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect())
            .collect()
    }

    fn sgd_hyper() -> SgdScheduleFreeHyper {
        SgdScheduleFreeHyper {
            lr: 0.3,
            momentum: 0.9,
            weight_decay: 0.01,
            warmup_steps: 4,
            r: 1.0,
            weight_lr_power: 2.0,
        }
    }

    fn adamw_hyper() -> AdamWScheduleFreeHyper {
        AdamWScheduleFreeHyper {
            lr: 0.01,
            weight_decay: 0.05,
            warmup_steps: 3,
            r: 0.5,
            ..Default::default()
        }
    }

    /// Runs `n` steps in one go and `k` steps, a checkpoint into a fresh optimizer, `n − k`
    /// steps; every buffer must agree bit for bit.
    fn resume_is_bit_exact<O: Optimizer<f64>>(make: impl Fn() -> O, n: usize, k: usize) {
        let len = 7;
        let gs = grads(n, len, 11);
        let theta0: Vec<f64> = (0..len).map(|i| 0.3 * i as f64 - 1.0).collect();
        let mut straight = make();
        let mut y_straight = theta0.clone();
        for (i, g) in gs.iter().enumerate() {
            if i == 5 {
                let mut s = straight.scheduled();
                s.lr *= 0.5;
                straight.set_scheduled(s).unwrap();
            }
            straight.step(&mut y_straight, g).unwrap();
        }
        let mut first = make();
        let mut y = theta0;
        for (i, g) in gs[..k].iter().enumerate() {
            if i == 5 {
                let mut s = first.scheduled();
                s.lr *= 0.5;
                first.set_scheduled(s).unwrap();
            }
            first.step(&mut y, g).unwrap();
        }
        let saved = first.state();
        let mut resumed = make();
        resumed.set_scheduled(first.scheduled()).unwrap();
        resumed.load_state(saved).unwrap();
        for (i, g) in gs.iter().enumerate().skip(k) {
            if i == 5 {
                let mut s = resumed.scheduled();
                s.lr *= 0.5;
                resumed.set_scheduled(s).unwrap();
            }
            resumed.step(&mut y, g).unwrap();
        }
        assert_eq!(y, y_straight);
        assert_eq!(resumed.state(), straight.state());
        assert_eq!(resumed.eval_params(), straight.eval_params());
        assert_eq!(resumed.steps_taken(), n as u64);
    }

    #[test]
    fn sgd_resume_from_state_is_bit_exact() {
        for k in [1, 3, 8] {
            resume_is_bit_exact(|| SgdScheduleFree::try_new(7, sgd_hyper()).unwrap(), 12, k);
        }
    }

    #[test]
    fn adamw_resume_from_state_is_bit_exact() {
        for k in [1, 3, 8] {
            resume_is_bit_exact(
                || AdamWScheduleFree::try_new(7, adamw_hyper()).unwrap(),
                12,
                k,
            );
        }
    }

    #[test]
    fn write_train_point_reproduces_y() {
        let mut opt = AdamWScheduleFree::<f64>::try_new(7, adamw_hyper()).unwrap();
        let mut y = vec![0.5; 7];
        let mut rebuilt = y.clone();
        assert!(!opt.write_train_point(&mut rebuilt));
        for g in grads(6, 7, 3) {
            opt.step(&mut y, &g).unwrap();
        }
        assert!(opt.write_train_point(&mut rebuilt));
        assert_eq!(rebuilt, y);
        let mut sgd = SgdScheduleFree::<f64>::try_new(7, sgd_hyper()).unwrap();
        let mut y = vec![0.5; 7];
        for g in grads(6, 7, 4) {
            sgd.step(&mut y, &g).unwrap();
        }
        assert!(sgd.write_train_point(&mut rebuilt));
        assert_eq!(rebuilt, y);
    }

    #[test]
    fn momentum_zero_is_plain_sgd_at_y() {
        let h = SgdScheduleFreeHyper {
            lr: 0.2,
            momentum: 0.0,
            weight_decay: 0.03,
            ..Default::default()
        };
        let mut sf = SgdScheduleFree::<f64>::try_new(5, h).unwrap();
        let mut plain = Sgd::<f64>::try_new(
            5,
            SgdHyper {
                lr: 0.2,
                weight_decay: 0.03,
                ..Default::default()
            },
        )
        .unwrap();
        let mut y = vec![1.0, -2.0, 0.5, 3.0, -0.25];
        let mut theta = y.clone();
        for g in grads(20, 5, 5) {
            sf.step(&mut y, &g).unwrap();
            plain.step(&mut theta, &g).unwrap();
            assert_eq!(y, theta);
            assert_eq!(sf.z(), theta.as_slice());
        }
    }

    #[test]
    fn eval_params_is_x_after_the_first_step() {
        let mut opt = SgdScheduleFree::<f32>::try_new(3, SgdScheduleFreeHyper::default()).unwrap();
        assert!(opt.eval_params().is_none());
        let mut y = [1.0_f32, 2.0, 3.0];
        opt.step(&mut y, &[0.1, 0.2, 0.3]).unwrap();
        // First step: c = 1, so x = z = θ₀ − γ·g and y = x.
        let x = opt.eval_params().unwrap();
        assert_eq!(x, opt.z());
        assert_eq!(x, &[0.9, 1.8, 2.7]);
        for (y, x) in y.iter().zip(x) {
            assert!((y - x).abs() < 1e-6, "y = β·x + (1−β)·x up to rounding");
        }
    }

    #[test]
    fn non_finite_gradients_leave_everything_untouched() {
        let mut opt = AdamWScheduleFree::<f64>::try_new(3, adamw_hyper()).unwrap();
        let mut y = [1.0, 2.0, 3.0];
        opt.step(&mut y, &[0.1, 0.2, 0.3]).unwrap();
        let (before, y_before) = (opt.state(), y);
        let err = opt.step(&mut y, &[0.1, f64::NAN, 0.3]).unwrap_err();
        assert!(matches!(
            err,
            OptimError::NonFiniteGradient { index: 1, .. }
        ));
        assert_eq!(opt.state(), before);
        assert_eq!(y, y_before);
    }

    #[test]
    fn ranges_are_checked_with_the_field_named() {
        let bad = |h: SgdScheduleFreeHyper| {
            SgdScheduleFree::<f64>::try_new(1, h)
                .unwrap_err()
                .to_string()
        };
        let base = SgdScheduleFreeHyper::default();
        assert!(bad(SgdScheduleFreeHyper {
            momentum: 1.0,
            ..base
        })
        .contains("'momentum' = 1 is out of range; allowed: 0 <= momentum < 1"));
        assert!(bad(SgdScheduleFreeHyper { lr: -0.1, ..base }).contains("0 <= lr < inf"));
        assert!(bad(SgdScheduleFreeHyper { r: -1.0, ..base }).contains("'r'"));
        assert!(bad(SgdScheduleFreeHyper {
            weight_lr_power: f64::NAN,
            ..base
        })
        .contains("'weight_lr_power'"));
        let mut adam = AdamWScheduleFree::<f64>::try_new(1, Default::default()).unwrap();
        let err = adam
            .set_scheduled(QhmParams {
                lr: 0.1,
                beta: -0.5,
                nu: 0.0,
            })
            .unwrap_err();
        assert!(err.to_string().contains("0 <= beta1 < 1"));
        assert_eq!(adam.scheduled().beta, 0.9, "refused values are not kept");
        let err = AdamWScheduleFree::<f64>::try_new(
            1,
            AdamWScheduleFreeHyper {
                eps: 0.0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("0 < eps < inf"));
    }

    #[test]
    fn load_state_refuses_a_foreign_state() {
        let mut opt = SgdScheduleFree::<f64>::try_new(2, sgd_hyper()).unwrap();
        let mut other = SgdScheduleFree::<f64>::try_new(3, sgd_hyper()).unwrap();
        other.step(&mut [0.0; 3], &[1.0; 3]).unwrap();
        assert!(opt.load_state(other.state()).is_err());
        let mut no_scalars = opt.state();
        no_scalars.scalars.clear();
        assert!(opt.load_state(no_scalars).is_err());
    }

    #[test]
    fn parallel_chunks_match_the_serial_kernel() {
        // Elements are independent: the first elements of a buffer split across threads must
        // equal a short (serial) run on the same elements.
        let long = crate::optim::parallel::PARALLEL_MIN_LEN + 123;
        let short = 9;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let theta: Vec<f64> = (0..long).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let gs: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..long).map(|_| rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let mut big = AdamWScheduleFree::<f64>::try_new(long, adamw_hyper()).unwrap();
        let mut small = AdamWScheduleFree::<f64>::try_new(short, adamw_hyper()).unwrap();
        let mut sgd_big = SgdScheduleFree::<f64>::try_new(long, sgd_hyper()).unwrap();
        let mut sgd_small = SgdScheduleFree::<f64>::try_new(short, sgd_hyper()).unwrap();
        let (mut yb, mut ys) = (theta.clone(), theta[..short].to_vec());
        let (mut qb, mut qs) = (theta.clone(), theta[..short].to_vec());
        for g in &gs {
            big.step(&mut yb, g).unwrap();
            small.step(&mut ys, &g[..short]).unwrap();
            sgd_big.step(&mut qb, g).unwrap();
            sgd_small.step(&mut qs, &g[..short]).unwrap();
        }
        assert_eq!(&yb[..short], ys.as_slice());
        assert_eq!(&big.x()[..short], small.x());
        assert_eq!(&qb[..short], qs.as_slice());
        assert_eq!(&sgd_big.z()[..short], sgd_small.z());
    }

    #[test]
    fn zero_learning_rate_keeps_everything_still() {
        // W stays 0, so c = 0 (the reference's ZeroDivisionError branch): x stays θ₀.
        let h = SgdScheduleFreeHyper {
            lr: 0.0,
            ..Default::default()
        };
        let mut opt = SgdScheduleFree::<f64>::try_new(2, h).unwrap();
        let mut y = [1.0, -1.0];
        opt.step(&mut y, &[0.5, 0.5]).unwrap();
        assert_eq!(opt.weight_sum(), 0.0);
        assert_eq!(y, [1.0, -1.0]);
        assert_eq!(opt.x(), &[1.0, -1.0]);
    }
}
