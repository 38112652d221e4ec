//! # stagewise-core
//!
//! The numerical heart of stagewise, free of any deep-learning framework:
//!
//! - [`optim`]: the quasi-hyperbolic momentum (QHM) family and the usual baselines as fused,
//!   allocation-free updates on flat `&mut [f32]` / `&mut [f64]` slices;
//! - [`schedule`]: schedules as functions of the step, and multistage [`schedule::Plan`]s;
//! - [`theory`]: stationary variance, stability limits, bound proxies and ASGD calculators;
//! - [`trace`]: replay of an optimizer on a given gradient sequence (equivalence checks).
//!
//! ```
//! use stagewise_core::optim::{Optimizer, Qhm, QhmHyper, QhmParams};
//! let mut theta = vec![1.0_f64, -2.0];
//! let mut opt = Qhm::new(theta.len(), QhmHyper { qhm: QhmParams { lr: 0.1, beta: 0.9, nu: 0.7 }, ..Default::default() });
//! opt.step(&mut theta, &[0.5, -0.5]).unwrap();
//! assert!(theta[0] < 1.0 && theta[1] > -2.0);
//! ```

pub mod choice;
pub mod files;
pub mod optim;
pub mod real;
pub mod record;
pub mod schedule;
pub mod theory;
pub mod trace;

pub use real::Real;
