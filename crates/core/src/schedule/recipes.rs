//! Recipes: plans built from a handful of parameters (α0, β0, ν, b0, epochs, stages n, drop r).
//!
//! The multistage recipes `step` and `stagewise` share one stage-length structure so they are
//! directly comparable: stage `i` (0-based) lasts about `E·rⁱ / (1 + r + … + rⁿ⁻¹)` epochs, so
//! that α·T stays constant when α is divided by r at each drop (docs/theory.md §2, condition 1).
//! The lengths are rounded to integers that sum exactly to `E` by the largest-remainder method,
//! each at least 1 epoch. With r = 2, n = 4 and E = 75 this gives PC's 5, 10, 20, 40.
//!
//! Every recipe takes an optional linear warm-up (`warmup_epochs` or `warmup_steps`): the first
//! stage's schedule becomes a [`StageSchedule::WarmupThen`], a ramp from
//! `warmup_start_fraction·α` to the stage's α followed by the recipe's own schedule over the
//! remaining steps (optax `join_schedules`, PyTorch `SequentialLR`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::PlanError;
use super::onecycle::OneCycleShape;
use super::plan::{Plan, Stage};
use super::stage_schedule::{CooldownShape, StageSchedule};

/// The named recipes; the default is `stagewise`, the paper's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Constant-and-drop: α divided by r at each stage; β, ν, b fixed.
    Step,
    /// The paper's joint rule: at each drop α/r, b/r, β/(1−β)·r, stage length ·r; ν fixed.
    #[default]
    Stagewise,
    /// One stage, cosine annealing of α over the whole run (no restarts).
    Cosine,
    /// One stage, one-cycle α and momentum over the whole run (PyTorch defaults, peak α0).
    Onecycle,
    /// One stage of constant hyperparameters.
    Constant,
    /// One stage, α decaying linearly to `final_lr_fraction·α0` over the run (PyTorch
    /// `LinearLR`, optax `linear_schedule`; to zero by default, Defazio et al. 2023).
    Linear,
    /// One stage of warmup-stable-decay (Hägele et al. 2024): the optional warm-up, α0, then
    /// a cooldown over the last `cooldown_fraction` of the steps, of shape `cooldown_shape`.
    Wsd,
}

impl Recipe {
    /// Every recipe, in documentation order.
    pub const ALL: [Recipe; 7] = [
        Recipe::Step,
        Recipe::Stagewise,
        Recipe::Cosine,
        Recipe::Onecycle,
        Recipe::Constant,
        Recipe::Linear,
        Recipe::Wsd,
    ];

    /// The recipe's name as accepted by [`FromStr`] and serde.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Step => "step",
            Recipe::Stagewise => "stagewise",
            Recipe::Cosine => "cosine",
            Recipe::Onecycle => "onecycle",
            Recipe::Constant => "constant",
            Recipe::Linear => "linear",
            Recipe::Wsd => "wsd",
        }
    }

    /// Every recipe name, comma-separated, in documentation order.
    pub fn names() -> String {
        Recipe::ALL.map(Recipe::name).join(", ")
    }

    /// Whether the recipe decays α to a floor and so reads `final_lr_fraction` (`cosine`,
    /// `linear`, `wsd`).
    pub fn has_floor(self) -> bool {
        matches!(self, Recipe::Cosine | Recipe::Linear | Recipe::Wsd)
    }

    /// Whether the recipe has several stages and so reads `stages` and `drop` (`step` and
    /// `stagewise`); the others are one stage over the whole run.
    pub fn has_stages(self) -> bool {
        matches!(self, Recipe::Step | Recipe::Stagewise)
    }

    /// Builds the plan for `params` (see [`RecipeParams::build`]).
    pub fn build(self, params: &RecipeParams) -> Result<Plan, PlanError> {
        params.build(self)
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Recipe {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Recipe::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| PlanError::UnknownRecipe(s.to_string()))
    }
}

/// Parameters of the recipes.
///
/// [`Default`] is the project's one preset, the main job (`stagewise train` with no options:
/// the cnn on Fashion-MNIST): `lr = 0.5`, `momentum = 0.9`, `nu = 0.7` (qhoptim's rule of
/// thumb), `batch = 256`, `epochs = 15`, `stages = 3`, `drop = 2`, `weight_decay = 5e-4`.
/// `stagewise plan show --recipe stagewise`, `train`, `asgd` and `ps serve` all start from it,
/// so the plan shown is the plan run. The README ("Accuracy of the default run") has the
/// measurements behind it.
///
/// ```
/// use stagewise_core::schedule::{Recipe, RecipeParams};
/// let plan = RecipeParams::default().build(Recipe::Stagewise).unwrap();
/// let b: Vec<u64> = plan.stages.iter().map(|s| s.batch_size).collect();
/// let e: Vec<u64> = plan.stages.iter().map(|s| s.epochs.unwrap()).collect();
/// assert_eq!(b, [256, 128, 64]);
/// assert_eq!(e, [2, 4, 9]);
/// assert_eq!(plan.weight_decay, 5e-4);
///
/// // The paper's CIFAR-style shape: four stages of 2, 4, 8, 16 epochs.
/// let p = RecipeParams { lr: 0.1, batch: 128, epochs: 30, stages: 4, ..RecipeParams::default() };
/// let b: Vec<u64> = p.build(Recipe::Stagewise).unwrap().stages.iter().map(|s| s.batch_size).collect();
/// assert_eq!(b, [128, 64, 32, 16]);
/// ```
///
/// The warm-up and decay fields default to "off" (no warm-up, decay to 0, a 20% `sqrt`
/// cooldown for `wsd`), so the preset and the plans of the older recipes do not change; they
/// are left out of the serialized form while at their defaults.
///
/// ```
/// use stagewise_core::schedule::{Recipe, RecipeParams};
/// let p = RecipeParams { warmup_epochs: Some(1), ..RecipeParams::default() };
/// let layout = p.build(Recipe::Wsd).unwrap().layout(60_000).unwrap(); // 235 steps per epoch
/// assert_eq!(layout.hyper_at_step(0).unwrap().qhm.lr, 0.0);               // from 0·α0 …
/// assert_eq!(layout.hyper_at_step(235).unwrap().qhm.lr, 0.5);             // … to α0 in 1 epoch
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecipeParams {
    /// Initial learning rate α0 (normalized QHM), `> 0`.
    pub lr: f64,
    /// Initial momentum β0, `0 <= β0 < 1`.
    pub momentum: f64,
    /// Immediate discount ν, `0 <= ν <= 1`, fixed across stages.
    pub nu: f64,
    /// Initial batch size b0, `>= 1`.
    pub batch: u64,
    /// Total number of epochs E, `>= stages`.
    pub epochs: u64,
    /// Number of stages n (for `step` and `stagewise`; the one-stage recipes ignore it),
    /// `>= 1`.
    pub stages: usize,
    /// Drop factor r (for `step` and `stagewise`; the one-stage recipes ignore it), finite and
    /// `>= 1`.
    pub drop: f64,
    /// Coupled weight decay of the plan, finite and `>= 0`.
    pub weight_decay: f64,
    /// Linear warm-up over this many epochs at the start of the run (every recipe), `>= 1` and
    /// fewer than the first stage's epochs; exclusive with `warmup_steps`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<u64>,
    /// Linear warm-up over this many optimizer steps at the start of the run (every recipe),
    /// `>= 1` and fewer than the first stage's steps (checked when the plan is laid out for a
    /// dataset); exclusive with `warmup_epochs`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// The warm-up starts at `warmup_start_fraction·α` (α of the first stage), in `[0, 1]`;
    /// default 0, as optax `linear_schedule(0, α, W)` (PyTorch `LinearLR` needs a
    /// `start_factor > 0`, e.g. 1/3, its default).
    #[serde(skip_serializing_if = "is_zero")]
    pub warmup_start_fraction: f64,
    /// Final α as a fraction of α0 for the recipes that decay (`cosine`, `linear`, `wsd`), in
    /// `[0, 1]`; default 0 (decay to zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub final_lr_fraction: f64,
    /// Fraction of the steps (after the warm-up) spent cooling down in `wsd`, in `(0, 1]`;
    /// default 0.2.
    #[serde(skip_serializing_if = "is_default_cooldown")]
    pub cooldown_fraction: f64,
    /// Shape of the `wsd` cooldown, `linear` or `sqrt` (1−√, the default).
    #[serde(skip_serializing_if = "is_default_shape")]
    pub cooldown_shape: CooldownShape,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// `wsd`'s default cooldown: the last 20% of the steps (about what Hägele et al. 2024 need to
/// match cosine).
const DEFAULT_COOLDOWN_FRACTION: f64 = 0.2;

fn is_default_cooldown(x: &f64) -> bool {
    *x == DEFAULT_COOLDOWN_FRACTION
}

fn is_default_shape(x: &CooldownShape) -> bool {
    *x == CooldownShape::default()
}

impl Default for RecipeParams {
    fn default() -> Self {
        Self {
            lr: 0.5,
            momentum: 0.9,
            nu: 0.7,
            batch: 256,
            epochs: 15,
            stages: 3,
            drop: 2.0,
            weight_decay: 5e-4,
            warmup_epochs: None,
            warmup_steps: None,
            warmup_start_fraction: 0.0,
            final_lr_fraction: 0.0,
            cooldown_fraction: DEFAULT_COOLDOWN_FRACTION,
            cooldown_shape: CooldownShape::default(),
        }
    }
}

/// Splits `total` into `weights.len()` integers `>= 1` proportional to `weights`, summing to
/// `total` exactly (largest-remainder rounding). Needs `total >= weights.len()`.
fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let ideal: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut out: Vec<u64> = ideal.iter().map(|x| (x.floor() as u64).max(1)).collect();
    // Remainder of each stage: how much it is still owed (negative: over-allocated).
    let owed = |out: &[u64], i: usize| ideal[i] - out[i] as f64;
    let mut assigned: u64 = out.iter().sum();
    while assigned < total {
        let i = (0..out.len())
            .max_by(|&a, &b| owed(&out, a).total_cmp(&owed(&out, b)).then(b.cmp(&a)))
            .unwrap_or(0);
        out[i] += 1;
        assigned += 1;
    }
    while assigned > total {
        let Some(i) = (0..out.len())
            .filter(|&i| out[i] > 1)
            .min_by(|&a, &b| owed(&out, a).total_cmp(&owed(&out, b)).then(b.cmp(&a)))
        else {
            break;
        };
        out[i] -= 1;
        assigned -= 1;
    }
    out
}

impl RecipeParams {
    /// Checks the parameters `recipe` reads (the one-stage recipes ignore `stages` and `drop`).
    fn check(&self, recipe: Recipe) -> Result<(), PlanError> {
        let bad = |param: &str, value: String, allowed: &str| {
            Err(PlanError::RecipeParam {
                param: param.into(),
                value,
                allowed: allowed.into(),
            })
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "finite lr > 0");
        }
        if !(self.momentum >= 0.0 && self.momentum < 1.0) {
            return bad("momentum", self.momentum.to_string(), "0 <= momentum < 1");
        }
        if !(0.0..=1.0).contains(&self.nu) {
            return bad("nu", self.nu.to_string(), "0 <= nu <= 1");
        }
        if self.batch == 0 {
            return bad("batch", "0".into(), "batch >= 1");
        }
        if self.epochs == 0 {
            return bad("epochs", "0".into(), "epochs >= 1");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            let value = self.weight_decay.to_string();
            return bad("weight_decay", value, "finite weight_decay >= 0");
        }
        if recipe.has_floor() && !(0.0..=1.0).contains(&self.final_lr_fraction) {
            let value = self.final_lr_fraction.to_string();
            return bad("final_lr_fraction", value, "0 <= final_lr_fraction <= 1");
        }
        if recipe == Recipe::Wsd && !(self.cooldown_fraction > 0.0 && self.cooldown_fraction <= 1.0)
        {
            let value = self.cooldown_fraction.to_string();
            return bad("cooldown_fraction", value, "0 < cooldown_fraction <= 1");
        }
        self.check_warmup_fields()?;
        if !recipe.has_stages() {
            return self.check_warmup_length(self.epochs, "the run's epochs");
        }
        if self.stages == 0 {
            return bad("stages", "0".into(), "stages >= 1");
        }
        if self.epochs < self.stages as u64 {
            return bad(
                "epochs",
                self.epochs.to_string(),
                &format!(
                    "epochs >= stages ({}): every stage lasts at least one epoch, so give more \
                     epochs or fewer stages",
                    self.stages
                ),
            );
        }
        if !(self.drop.is_finite() && self.drop >= 1.0) {
            return bad("drop", self.drop.to_string(), "finite drop >= 1");
        }
        let first = apportion(self.epochs, &self.stage_weights())[0];
        self.check_warmup_length(first, "the first stage's epochs")
    }

    /// The warm-up fields on their own: at most one length, `>= 1`, a start in `[0, 1]`.
    fn check_warmup_fields(&self) -> Result<(), PlanError> {
        let bad = |param: &str, value: String, allowed: &str| {
            Err(PlanError::RecipeParam {
                param: param.into(),
                value,
                allowed: allowed.into(),
            })
        };
        match (self.warmup_epochs, self.warmup_steps) {
            (Some(e), Some(s)) => {
                return bad(
                    "warmup_steps",
                    s.to_string(),
                    &format!(
                        "at most one of warmup_epochs and warmup_steps (warmup_epochs = {e} is \
                         set too)"
                    ),
                )
            }
            (Some(0), None) => {
                return bad(
                    "warmup_epochs",
                    "0".into(),
                    "warmup_epochs >= 1 (leave it unset for no warm-up)",
                )
            }
            (None, Some(0)) => {
                return bad(
                    "warmup_steps",
                    "0".into(),
                    "warmup_steps >= 1 (leave it unset for no warm-up)",
                )
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&self.warmup_start_fraction) {
            let value = self.warmup_start_fraction.to_string();
            return bad(
                "warmup_start_fraction",
                value,
                "0 <= warmup_start_fraction <= 1",
            );
        }
        Ok(())
    }

    /// A warm-up in epochs must end inside the first stage of `first_epochs` epochs. A warm-up
    /// in steps is checked against the stage's steps when the plan is laid out for a dataset.
    fn check_warmup_length(&self, first_epochs: u64, what: &str) -> Result<(), PlanError> {
        match self.warmup_epochs {
            Some(w) if w >= first_epochs => Err(PlanError::RecipeParam {
                param: "warmup_epochs".into(),
                value: w.to_string(),
                allowed: format!(
                    "1 <= warmup_epochs < {first_epochs} ({what}): the warm-up must end inside \
                     the first stage; use warmup_steps for a shorter one"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// `1, r, r², …, rⁿ⁻¹`.
    fn stage_weights(&self) -> Vec<f64> {
        (0..self.stages).map(|i| self.drop.powi(i as i32)).collect()
    }

    /// Stage lengths in epochs shared by `step` and `stagewise`: proportional to
    /// `1, r, r², …, rⁿ⁻¹`, each `>= 1`, summing exactly to `epochs`.
    pub fn stage_epochs(&self) -> Result<Vec<u64>, PlanError> {
        self.check(Recipe::Step)?;
        Ok(apportion(self.epochs, &self.stage_weights()))
    }

    /// Builds the plan of `recipe`; the result is validated.
    ///
    /// - `step`: stage i has α0/rⁱ; β0, ν, b0 unchanged.
    /// - `stagewise`: stage i has α0/rⁱ, `b_i = round(b0/rⁱ)` (error if b0/rⁱ falls below 1),
    ///   `β_i = rⁱc/(rⁱc + 1)` with `c = β0/(1−β0)`, ν unchanged. This keeps α/b (up to the
    ///   rounding of b) and α·ν·β/(1−β) invariant, and α·T constant up to the rounding of T.
    /// - `cosine`: one stage of E epochs, α annealed to `final_lr_fraction·α0` (0 by default)
    ///   by a cosine over the stage.
    /// - `onecycle`: one stage of E epochs, one-cycle with peak α0 and PyTorch's defaults
    ///   (the cycled momentum 0.95→0.85→0.95 replaces β0 during the stage).
    /// - `constant`: one stage of E epochs with (α0, β0, ν, b0).
    /// - `linear`: one stage of E epochs, α decaying linearly from α0 to
    ///   `final_lr_fraction·α0` ([`StageSchedule::Linear`]).
    /// - `wsd`: one stage of E epochs at α0, then a cooldown over the last `cooldown_fraction`
    ///   of the steps to `final_lr_fraction·α0`, of shape `cooldown_shape`
    ///   ([`StageSchedule::Wsd`]).
    ///
    /// With `warmup_epochs` or `warmup_steps`, the first stage's schedule (none, or the one
    /// above) is put behind a linear warm-up from `warmup_start_fraction·α` to α
    /// ([`StageSchedule::WarmupThen`]): the recipe's schedule then runs over the steps left
    /// after the warm-up, as after optax `join_schedules` or PyTorch `SequentialLR`.
    ///
    /// # Errors
    /// [`PlanError::RecipeParam`] for an invalid parameter, [`PlanError::BatchTooSmall`] when
    /// the stagewise batch size rounds below 1.
    pub fn build(&self, recipe: Recipe) -> Result<Plan, PlanError> {
        self.check(recipe)?;
        let (a0, b0, nu) = (self.lr, self.momentum, self.nu);
        let single = |schedule: Option<StageSchedule>| {
            let mut s = Stage::for_epochs(self.epochs, a0, b0, nu, self.batch);
            s.schedule = schedule;
            vec![s]
        };
        let floor = self.final_lr_fraction;
        let mut stages = match recipe {
            Recipe::Constant => single(None),
            Recipe::Cosine => single(Some(StageSchedule::Cosine { min_factor: floor })),
            Recipe::Linear => single(Some(StageSchedule::Linear { min_factor: floor })),
            Recipe::Wsd => single(Some(StageSchedule::Wsd {
                cooldown_fraction: self.cooldown_fraction,
                shape: self.cooldown_shape,
                min_factor: floor,
            })),
            Recipe::Onecycle => single(Some(StageSchedule::OneCycle(OneCycleShape::default()))),
            Recipe::Step => self
                .stage_epochs()?
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    Stage::for_epochs(e, a0 / self.drop.powi(i as i32), b0, nu, self.batch)
                })
                .collect(),
            Recipe::Stagewise => {
                let c = b0 / (1.0 - b0);
                let mut stages = Vec::with_capacity(self.stages);
                for (i, e) in self.stage_epochs()?.into_iter().enumerate() {
                    let ri = self.drop.powi(i as i32);
                    // Refuse before rounding: b0/rⁱ < 1 would silently break the α/b invariant.
                    let exact = self.batch as f64 / ri;
                    let batch = exact.round() as u64;
                    if exact < 1.0 {
                        return Err(PlanError::BatchTooSmall {
                            stage: i + 1,
                            batch0: self.batch,
                            drop: self.drop,
                            power: i,
                            batch: exact,
                        });
                    }
                    let beta = ri * c / (ri * c + 1.0);
                    stages.push(Stage::for_epochs(e, a0 / ri, beta, nu, batch));
                }
                stages
            }
        };
        if self.warmup_epochs.is_some() || self.warmup_steps.is_some() {
            let first = &mut stages[0];
            first.schedule = Some(StageSchedule::WarmupThen {
                start_factor: self.warmup_start_fraction,
                warmup_steps: self.warmup_steps,
                warmup_epochs: self.warmup_epochs,
                then: first.schedule.take().map(Box::new),
            });
        }
        let mut plan = Plan::new(stages);
        plan.name = Some(recipe.name().to_string());
        plan.weight_decay = self.weight_decay;
        plan.description = Some(self.describe(recipe));
        plan.validate()?;
        Ok(plan)
    }

    /// The one-line description [`build`](Self::build) gives the plan, in plain words:
    /// `recipe stagewise: lr 0.5, momentum 0.9, nu 0.7, batch 256, 15 epochs, 3 stages, drop 2`
    /// (the plan shows its weight decay on a line of its own). The parameters the recipe reads
    /// are named: the cooldown of `wsd`, the floor of `linear` and `wsd` (and of `cosine` when
    /// not 0), the warm-up when set, e.g. `…, 15 epochs, cooldown 0.2 (sqrt), final lr
    /// fraction 0, warm-up 1 epoch from lr fraction 0`.
    pub fn describe(&self, recipe: Recipe) -> String {
        let mut d = format!(
            "recipe {recipe}: lr {}, momentum {}, nu {}, batch {}, {}",
            self.lr,
            self.momentum,
            self.nu,
            self.batch,
            plural(self.epochs, "epoch")
        );
        if recipe.has_stages() {
            d += &format!(
                ", {}, drop {}",
                plural(self.stages as u64, "stage"),
                self.drop
            );
        }
        if recipe == Recipe::Wsd {
            d += &format!(
                ", cooldown {} ({})",
                self.cooldown_fraction, self.cooldown_shape
            );
        }
        let floor_read = matches!(recipe, Recipe::Linear | Recipe::Wsd)
            || (recipe.has_floor() && self.final_lr_fraction != 0.0);
        if floor_read {
            d += &format!(", final lr fraction {}", self.final_lr_fraction);
        }
        let warmup = match (self.warmup_epochs, self.warmup_steps) {
            (Some(e), _) => Some(plural(e, "epoch")),
            (None, Some(s)) => Some(plural(s, "step")),
            (None, None) => None,
        };
        if let Some(w) = warmup {
            d += &format!(
                ", warm-up {w} from lr fraction {}",
                self.warmup_start_fraction
            );
        }
        d
    }
}

/// `1 stage`, `3 stages`.
pub(crate) fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_sums_and_respects_minimum() {
        assert_eq!(apportion(75, &[1.0, 2.0, 4.0, 8.0]), [5, 10, 20, 40]);
        assert_eq!(apportion(4, &[1.0, 2.0, 4.0, 8.0]), [1, 1, 1, 1]);
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), [4, 3, 3]);
        for total in 5..200u64 {
            let v = apportion(total, &[1.0, 3.0, 9.0, 27.0, 81.0]);
            assert_eq!(v.iter().sum::<u64>(), total);
            assert!(v.iter().all(|&x| x >= 1));
            assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Recipe::ALL {
            assert_eq!(r.name().parse::<Recipe>().unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.name())
            );
        }
        let e = "cosine2".parse::<Recipe>().unwrap_err().to_string();
        assert!(e.contains("cosine2") && e.contains("stagewise"));
    }

    #[test]
    fn params_are_checked() {
        let p = RecipeParams {
            drop: 0.5,
            ..Default::default()
        };
        assert!(p
            .build(Recipe::Step)
            .unwrap_err()
            .to_string()
            .contains("'drop'"));
        let p = RecipeParams {
            epochs: 3,
            stages: 4,
            ..Default::default()
        };
        assert!(p
            .build(Recipe::Step)
            .unwrap_err()
            .to_string()
            .contains("'epochs'"));
    }

    #[test]
    fn one_stage_recipes_ignore_stages_and_drop() {
        let p = RecipeParams {
            epochs: 1,
            stages: 3,
            drop: 0.5,
            ..Default::default()
        };
        for recipe in [Recipe::Constant, Recipe::Cosine, Recipe::Onecycle] {
            let plan = p.build(recipe).unwrap();
            assert_eq!(plan.stages.len(), 1);
            assert_eq!(plan.stages[0].epochs, Some(1));
            let d = plan.description.unwrap();
            assert!(d.contains("1 epoch") && !d.contains("stage"), "{d}");
        }
        let e = p.build(Recipe::Stagewise).unwrap_err().to_string();
        assert!(e.contains("'epochs'") && e.contains("fewer stages"), "{e}");
    }

    #[test]
    fn the_preset_carries_its_weight_decay_into_the_plan() {
        let plan = RecipeParams::default().build(Recipe::default()).unwrap();
        assert_eq!(plan.weight_decay, 5e-4);
        let toml = plan.to_toml_string().unwrap();
        assert!(toml.contains("weight_decay = 0.0005"), "{toml}");
        assert_eq!(
            plan.description.as_deref(),
            Some(
                "recipe stagewise: lr 0.5, momentum 0.9, nu 0.7, batch 256, 15 epochs, \
                 3 stages, drop 2"
            )
        );
        let bad = RecipeParams {
            weight_decay: -1.0,
            ..Default::default()
        };
        let e = bad.build(Recipe::Step).unwrap_err().to_string();
        assert!(e.contains("'weight_decay'") && e.contains(">= 0"), "{e}");
    }
}
