//! One module per subcommand; each holds its clap arguments and a `run` function.

pub mod advice;
pub mod asgd;
pub mod asgd_rule;
pub mod bench;
pub mod compare;
pub mod eval;
pub mod optim;
pub mod options;
pub mod plan;
pub mod predict;
pub mod ps;
pub mod report;
pub mod signals;
pub mod spectrum_source;
pub mod train;
