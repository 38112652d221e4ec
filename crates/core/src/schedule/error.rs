//! Errors of schedules, plans and recipes.

use std::path::PathBuf;

/// A schedule parameter outside its allowed range.
///
/// `field` is a dotted path inside the schedule (e.g. `pct_start`, `schedules[1].t_max`), so
/// that a plan can prefix it with the place where the schedule lives.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field '{field}' = {value} is out of range; allowed: {allowed}")]
pub struct ScheduleError {
    /// Dotted path of the offending field.
    pub field: String,
    /// The offending value, as written.
    pub value: String,
    /// Human-readable description of the allowed values.
    pub allowed: String,
}

impl ScheduleError {
    /// Builds an error for `field` holding `value`, which should satisfy `allowed`.
    pub fn new(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// Prefixes the field path with `prefix` (joined by a dot).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// Everything that can go wrong when reading, validating, building or laying out a [`Plan`].
///
/// Stage numbers in messages are 1-based, as a user counts `[[stages]]` entries.
///
/// [`Plan`]: super::Plan
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A stage field (or a field of its within-stage schedule) is outside its allowed range.
    #[error("stage {stage}: field '{field}' = {value} is out of range; allowed: {allowed}")]
    StageField {
        /// 1-based stage number.
        stage: usize,
        /// Field name, e.g. `beta` or `schedule.pct_start`.
        field: String,
        /// The offending value.
        value: String,
        /// The allowed range.
        allowed: String,
    },
    /// A within-stage schedule takes the lr or β out of its range at some step (a custom
    /// schedule: the fitted kinds cannot once their parameters are valid).
    #[error(
        "stage {stage}: field '{field}' sets {quantity} = {value} at step {step} {}; allowed: \
         {allowed}",
        if *.after_warmup { "after the warm-up" } else { "of the stage" }
    )]
    ScheduleValue {
        /// 1-based stage number.
        stage: usize,
        /// The schedule, e.g. `schedule.momentum` or `schedule.then.lr`.
        field: String,
        /// What it sets: `lr` or `beta`.
        quantity: String,
        /// The offending value.
        value: String,
        /// The first offending step (0-based), counted from the start of the stage, or from the
        /// end of the warm-up when `after_warmup` is set.
        step: u64,
        /// Whether `step` counts from the end of a warm-up given in epochs.
        after_warmup: bool,
        /// The allowed range.
        allowed: String,
    },
    /// A stage gives neither or both of `epochs` and `steps`.
    #[error("stage {stage}: exactly one of 'epochs' or 'steps' must be given ({found})")]
    StageLength {
        /// 1-based stage number.
        stage: usize,
        /// What was found instead, e.g. `neither was given`.
        found: String,
    },
    /// A plan-level field is outside its allowed range.
    #[error("plan: field '{field}' = {value} is out of range; allowed: {allowed}")]
    PlanField {
        /// Field name, e.g. `weight_decay`.
        field: String,
        /// The offending value.
        value: String,
        /// The allowed range.
        allowed: String,
    },
    /// The plan has no stage.
    #[error("plan has no stages; at least one [[stages]] entry is required")]
    NoStages,
    /// A recipe parameter is invalid.
    #[error("recipe parameter '{param}' = {value} is invalid; allowed: {allowed}")]
    RecipeParam {
        /// Parameter name, e.g. `drop`.
        param: String,
        /// The offending value.
        value: String,
        /// The allowed range.
        allowed: String,
    },
    /// The stagewise recipe would need a batch size below 1 at some stage.
    #[error(
        "stage {stage}: batch size {batch0} / {drop}^{power} = {batch} is below 1; \
         use a larger batch, a smaller drop factor or fewer stages"
    )]
    BatchTooSmall {
        /// 1-based stage number.
        stage: usize,
        /// Initial batch size b0.
        batch0: u64,
        /// Drop factor r.
        drop: f64,
        /// Exponent i (0-based stage index).
        power: usize,
        /// The unrounded batch size b0/rⁱ.
        batch: f64,
    },
    /// An unknown recipe name.
    #[error("unknown recipe '{name}'; allowed: {}", super::recipes::Recipe::names(), name = .0)]
    UnknownRecipe(String),
    /// The dataset size given to a layout is zero.
    #[error("dataset size must be >= 1 example, got 0")]
    EmptyDataset,
    /// A step count does not fit in a `u64`.
    #[error("stage {stage}: step count overflows u64")]
    Overflow {
        /// 1-based stage number.
        stage: usize,
    },
    /// The TOML text is malformed or does not match the plan format (unknown key, wrong type).
    ///
    /// The message is the toml crate's, with line, column and a snippet.
    #[error("invalid plan TOML: {0}")]
    TomlParse(toml::de::Error),
    /// The plan cannot be written as TOML.
    #[error("cannot write plan as TOML: {0}")]
    TomlWrite(toml::ser::Error),
    /// Reading or writing a plan file failed.
    #[error("cannot access plan file '{}': {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (already part of the message, so not chained as a source).
        error: std::io::Error,
    },
}

// Conversions written by hand (not `#[from]`): the messages above already include the
// underlying error, and chaining it as a `source` too would print it twice in error reports.
impl From<toml::de::Error> for PlanError {
    fn from(e: toml::de::Error) -> Self {
        PlanError::TomlParse(e)
    }
}

impl From<toml::ser::Error> for PlanError {
    fn from(e: toml::ser::Error) -> Self {
        PlanError::TomlWrite(e)
    }
}

impl PlanError {
    /// Wraps a schedule error found in the within-stage schedule of stage `stage` (1-based).
    pub fn in_stage_schedule(stage: usize, err: ScheduleError) -> Self {
        let err = err.within("schedule");
        PlanError::StageField {
            stage,
            field: err.field,
            value: err.value,
            allowed: err.allowed,
        }
    }
}
