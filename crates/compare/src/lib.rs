//! `stagewise compare`: one command that runs methods × learning rates × seeds on the same
//! data and epoch budget, and reports which is best, with statistics and plots.
//!
//! - [`experiment`]: the experiment file, checked in full before any run starts;
//! - [`runner`]: the grid, run through the `train` and `asgd` code paths (no second trainer),
//!   several runs at a time, finished runs skipped, interrupted ones resumed;
//! - [`analysis`]: the finished grid read back from its run folders, into `results.csv`,
//!   `summary.json`, plots and `report.md`/`report.html`.
//!
//! The format is documented in docs/compare.md.

pub mod analysis;
pub mod experiment;
pub mod report;
pub mod runner;

pub use experiment::{Experiment, ExperimentError, Method, RunSpec};
pub use runner::{run_grid, RunError, RunStatus, RunnerOptions};
