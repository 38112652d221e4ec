//! Schedules (functions of the step) and multistage plans.
//!
//! - [`Schedule`]: small composable step-indexed schedules (constant, piecewise constant,
//!   cosine, linear warm-up, one-cycle, join), serializable with a `kind` tag.
//! - [`OneCycle`]: PyTorch `OneCycleLr` semantics, learning rate and momentum.
//! - [`Plan`]: a list of [`Stage`]s of constant (α, β, ν, b), each optionally modulated by a
//!   [`StageSchedule`]; read and written as TOML, validated with errors that name the stage and
//!   field; laid out in steps for a dataset size by [`Plan::layout`].
//! - [`Recipe`]: plans built from (α0, β0, ν, b0, epochs, stages, drop), including the paper's
//!   joint `stagewise` rule (docs/theory.md §3.4).
//!
//! ```
//! use stagewise_core::schedule::{Recipe, RecipeParams};
//! let plan = RecipeParams::default().build(Recipe::Stagewise).unwrap(); // the main job's plan
//! let layout = plan.layout(50_000).unwrap();          // CIFAR-sized training set
//! let h = layout.hyper_at_position(2, 0).unwrap();     // first step of epoch 2 = stage 2
//! assert_eq!((h.qhm.lr, h.batch_size), (0.25, 128));
//! println!("{plan}");                                  // the stage table
//! ```

mod error;
mod layout;
mod onecycle;
mod plan;
mod recipes;
mod schedules;
mod stage_schedule;
mod table;

pub use error::{PlanError, ScheduleError};
pub use layout::{Layout, StageSpan};
pub use onecycle::{Anneal, OneCycle, OneCycleShape};
pub use plan::{Hyper, Plan, Stage, StageLength};
pub use recipes::{Recipe, RecipeParams};
pub use schedules::{first_violation, Schedule};
pub use stage_schedule::{
    Combine, CooldownShape, Curve, StageCurves, StageSchedule, ValueViolation,
};
pub use table::fmt_num;
