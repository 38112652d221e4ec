//! Typed reasons, warnings and hints: what [`recommend`](super::recommend()) and the staleness
//! rule ([`adapt_recipe`](super::adapt_recipe)) tell a user, as data.
//!
//! A [`Note`] is a [`Topic`], the library's text in plain words, and [`Hint`]s: actions the
//! user can take, with their values. The text states the finding and never names a command-line
//! option; each front end turns a hint into its own advice (a flag of the command at hand, or
//! nothing where the command has no such option), so no caller ever reads the text to decide
//! anything.
//!
//! ```
//! use stagewise_core::theory::{recommend, Hint, RecommendOptions, Setting, Topic};
//! let mut o = RecommendOptions::new(Setting::PytorchSgd { lr: 0.1, momentum: 0.9 });
//! o.workers = Some(4); // no h_max: the staleness cap cannot be applied
//! let r = recommend(&o).unwrap();
//! let w = r.warnings.iter().find(|w| w.topic == Topic::NoCurvature).unwrap();
//! assert_eq!(w.hints, [Hint::GiveHMax]);
//! assert!(!w.text.contains("--"));
//! ```

use serde::{Deserialize, Serialize};

use super::recommend::AsgdBatch;

/// What a [`Note`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// The user's setting, converted to QHM (docs/theory.md §1).
    Conversion,
    /// ν given instead of the converted one.
    NuOverride,
    /// The recipe that builds the plan and the invariants it keeps (§3.4).
    Recipe,
    /// qhoptim's rule of thumb, as a tip.
    RuleOfThumb,
    /// How the workers' gradients become updates: staleness τ, or averaging (§4.1).
    Asynchrony,
    /// The learning rate under asynchrony: scaling and the staleness cap (§4.2).
    LearningRate,
    /// The batch size under the staleness cap (the batch rule).
    BatchSize,
    /// Explicit momentum against asynchrony's implicit momentum (§4.1).
    Momentum,
    /// The exact delayed-QHM stability limit of the result.
    StabilityCheck,
    /// Warning: no h_max, so no staleness cap.
    NoCurvature,
    /// Warning: α0 at or beyond the exact delayed-QHM stability limit.
    BeyondStabilityLimit,
    /// Warning: asynchrony alone exceeds the target momentum (β0 clamped at 0).
    NegativeMomentum,
    /// Warning: α/b cannot be kept even with one example per worker.
    BatchFloor,
}

impl Topic {
    /// `true` for what asynchronous SGD changes (the notes the staleness rule reports).
    pub fn is_asgd(self) -> bool {
        !matches!(
            self,
            Topic::Conversion | Topic::NuOverride | Topic::Recipe | Topic::RuleOfThumb
        )
    }
}

/// An action the user can take, with its values. Front ends name it with their own options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Hint {
    /// Set ν to `nu`.
    SetNu {
        /// The suggested ν.
        nu: f64,
    },
    /// Average the M gradients into one update (synchronous SGD), where linear scaling applies.
    AverageUpdates,
    /// Give the largest Hessian eigenvalue h_max (or estimate it) so the staleness cap applies.
    GiveHMax,
    /// Lower the fraction of the stability limit that α0 may reach.
    LowerCapFraction {
        /// The fraction used.
        current: f64,
    },
    /// Apply this batch rule instead of the one used.
    UseBatchRule {
        /// The other rule.
        rule: AsgdBatch,
    },
    /// A larger initial batch size b0.
    LargerBatch {
        /// The b0 used.
        current: u64,
    },
    /// Fewer stages.
    FewerStages {
        /// The number of stages used.
        current: usize,
    },
    /// Fewer workers.
    FewerWorkers {
        /// The number of workers used.
        current: u32,
    },
    /// A larger momentum β (of the setting or recipe).
    LargerMomentum {
        /// The β used.
        current: f64,
    },
}

/// One reason or warning: what it is about, the finding in words, and what the user can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// What it is about.
    pub topic: Topic,
    /// The finding, in plain words (no option names).
    pub text: String,
    /// Actions the user can take about it (often none).
    pub hints: Vec<Hint>,
}

impl Note {
    /// A note without hints.
    pub fn new(topic: Topic, text: impl Into<String>) -> Self {
        Self {
            topic,
            text: text.into(),
            hints: Vec::new(),
        }
    }

    /// The note with `hint` added.
    pub fn hint(mut self, hint: Hint) -> Self {
        self.hints.push(hint);
        self
    }
}
