//! Plan invariants and the convergence conditions of multistage QHM (docs/theory.md §2, §3.4).

use serde::{Deserialize, Serialize};

use super::error::{self, Result, TheoryError};
use super::qhm::QhmParams;

/// One stage of a multistage QHM plan, in plain numbers.
///
/// `length_steps` counts optimizer iterations (not epochs): with a batch-size schedule the
/// number of iterations per epoch changes from stage to stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageHyper {
    /// Normalized learning rate α_i (> 0).
    pub lr: f64,
    /// Momentum β_i ∈ [0, 1).
    pub beta: f64,
    /// Immediate discount ν_i ∈ [0, 1].
    pub nu: f64,
    /// Batch size b_i (> 0; a real number so that averaged or fractional batches are allowed).
    pub batch_size: f64,
    /// Number of iterations T_i of the stage (≥ 1).
    pub length_steps: u64,
}

impl StageHyper {
    /// Checks every field; `index` is used in the error's field name (`stages[i].beta`).
    pub fn validate(&self, index: usize) -> Result<()> {
        error::positive(&format!("stages[{index}].lr"), self.lr)?;
        error::momentum(&format!("stages[{index}].beta"), self.beta)?;
        error::unit_closed(&format!("stages[{index}].nu"), self.nu)?;
        error::positive(&format!("stages[{index}].batch_size"), self.batch_size)?;
        if self.length_steps == 0 {
            return Err(error::out_of_range(
                format!("stages[{index}].length_steps"),
                0.0,
                ">= 1",
            ));
        }
        Ok(())
    }

    /// The QHM part (α, β, ν) of the stage.
    pub fn qhm(&self) -> QhmParams {
        QhmParams {
            lr: self.lr,
            beta: self.beta,
            nu: self.nu,
        }
    }
}

/// The per-stage quantities that the scheduling rules keep fixed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageInvariants {
    /// α·T (SDE time of the stage)  [§2 condition 1].
    pub lr_times_length: f64,
    /// α/b (noise temperature)  [§3.4].
    pub lr_over_batch: f64,
    /// α·ν·β/(1−β) (offset of the z-sequence)  [§2 condition 2].
    pub momentum_offset: f64,
}

/// α·T, α/b and α·ν·β/(1−β) of one stage  [D, docs/theory.md §2 and §3.4].
///
/// ```
/// use stagewise_core::theory::{stage_invariants, StageHyper};
/// let s = StageHyper { lr: 0.1, beta: 0.9, nu: 0.5, batch_size: 256.0, length_steps: 1000 };
/// let inv = stage_invariants(&s, 0).unwrap();
/// assert!((inv.lr_times_length - 100.0).abs() < 1e-9);
/// assert!((inv.momentum_offset - 0.45).abs() < 1e-12);
/// ```
pub fn stage_invariants(stage: &StageHyper, index: usize) -> Result<StageInvariants> {
    stage.validate(index)?;
    Ok(StageInvariants {
        lr_times_length: stage.lr * stage.length_steps as f64,
        lr_over_batch: stage.lr / stage.batch_size,
        momentum_offset: stage.lr * stage.nu * stage.beta / (1.0 - stage.beta),
    })
}

/// A rule that a multistage plan may keep or break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// §2 condition 1: α_i·T_i is the same for every stage.
    ConstantLrTimesLength,
    /// §2 condition 2: α_i·ν_i·β_i/(1−β_i) is the same for every stage.
    ConstantMomentumOffset,
    /// §2 condition 3: α_i ≤ c·(1−β_i)/L (checked only when L is given).
    LrBelowSmoothnessLimit,
    /// §2 condition 4: β_i is non-decreasing.
    BetaNonDecreasing,
    /// §3.4 (generalization rule, not a convergence condition): α_i/b_i is the same for every
    /// stage.
    ConstantLrOverBatch,
}

/// Whether a plan keeps one [`Condition`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionReport {
    /// The rule.
    pub condition: Condition,
    /// `true` if the largest relative deviation is within the tolerance.
    pub holds: bool,
    /// Largest relative deviation over the stages (0 when kept exactly). For the "constant"
    /// rules: max_i |x_i − x_1|/|x_1|; for the smoothness limit: max_i (α_i L/(c(1−β_i)) − 1)⁺;
    /// for β non-decreasing: max_i (β_i − β_{i+1})⁺/β_i.
    pub max_rel_deviation: f64,
    /// The stage (0-based) with the largest deviation, if any deviates.
    pub worst_stage: Option<usize>,
    /// Plain-language explanation when the rule is broken.
    pub message: Option<String>,
}

/// Options of [`check_plan`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckOptions {
    /// Relative tolerance below which a deviation counts as "kept" (default 1e-3, so that
    /// hyperparameters rounded to 3–4 digits, like β = 0.947, still pass).
    pub rel_tol: f64,
    /// Smoothness constant L of the loss, if known (enables condition 3).
    pub smoothness: Option<f64>,
    /// The constant c of condition 3, α ≤ c(1−β)/L (default 1; the theorem's constant is not
    /// available, docs/theory.md §2).
    pub lr_constant: f64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            rel_tol: 1e-3,
            smoothness: None,
            lr_constant: 1.0,
        }
    }
}

/// Invariants of every stage and the verdict on each rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanCheck {
    /// Per-stage invariants, in plan order.
    pub stages: Vec<StageInvariants>,
    /// One report per checked [`Condition`] (condition 3 only when `smoothness` is given).
    pub conditions: Vec<ConditionReport>,
}

impl PlanCheck {
    /// `true` if every checked rule holds.
    pub fn all_hold(&self) -> bool {
        self.conditions.iter().all(|c| c.holds)
    }

    /// The report on `condition`, if it was checked.
    pub fn get(&self, condition: Condition) -> Option<&ConditionReport> {
        self.conditions.iter().find(|c| c.condition == condition)
    }
}

/// Checks a plan against the convergence conditions of docs/theory.md §2 \[D\] and the α/b
/// invariant of §3.4 \[D\].
///
/// ```
/// use stagewise_core::theory::{check_plan, CheckOptions, Condition, StageHyper};
/// // PC's rule with r = 2 (α/2, b/2, β/(1−β)·2, T·2):
/// let s = |k: i32| {
///     let r = 2f64.powi(k);
///     StageHyper { lr: 0.1 / r, beta: 9.0 * r / (9.0 * r + 1.0), nu: 0.5,
///                  batch_size: 256.0 / r, length_steps: 1000 * 2u64.pow(k as u32) }
/// };
/// let plan = [s(0), s(1), s(2)];
/// let check = check_plan(&plan, &CheckOptions::default()).unwrap();
/// assert!(check.all_hold());
/// ```
pub fn check_plan(stages: &[StageHyper], opts: &CheckOptions) -> Result<PlanCheck> {
    if stages.is_empty() {
        return Err(TheoryError::Empty { field: "stages" });
    }
    error::non_negative("rel_tol", opts.rel_tol)?;
    error::positive("lr_constant", opts.lr_constant)?;
    let inv = stages
        .iter()
        .enumerate()
        .map(|(i, s)| stage_invariants(s, i))
        .collect::<Result<Vec<_>>>()?;
    let tol = opts.rel_tol;
    let mut conditions = vec![
        constant_rule(
            Condition::ConstantLrTimesLength,
            &inv.iter().map(|x| x.lr_times_length).collect::<Vec<_>>(),
            "lr × stage length (in steps)",
            "stages must get longer in proportion as the learning rate drops (§2 condition 1)",
            tol,
        ),
        constant_rule(
            Condition::ConstantMomentumOffset,
            &inv.iter().map(|x| x.momentum_offset).collect::<Vec<_>>(),
            "lr·ν·β/(1−β)",
            "when the learning rate drops, β/(1−β) (or ν) must grow by the same factor (§2 condition 2)",
            tol,
        ),
    ];
    if let Some(l) = opts.smoothness {
        error::positive("smoothness", l)?;
        conditions.push(smoothness_rule(stages, l, opts.lr_constant, tol));
    }
    conditions.push(beta_rule(stages, tol));
    conditions.push(constant_rule(
        Condition::ConstantLrOverBatch,
        &inv.iter().map(|x| x.lr_over_batch).collect::<Vec<_>>(),
        "lr / batch size",
        "the batch size must shrink with the learning rate to keep the noise temperature (§3.4)",
        tol,
    ));
    Ok(PlanCheck {
        stages: inv,
        conditions,
    })
}

/// Relative deviation of each value from the first one. A zero reference counts as deviation
/// |x_i| (absolute), which is 0 only if all values are 0.
fn rel_deviations(values: &[f64]) -> Vec<f64> {
    let r = values[0];
    values
        .iter()
        .map(|&x| {
            if r == 0.0 {
                x.abs()
            } else {
                ((x - r) / r).abs()
            }
        })
        .collect()
}

/// Largest entry and its index (None if all are 0).
fn worst(devs: &[f64]) -> (f64, Option<usize>) {
    devs.iter().enumerate().fold(
        (0.0, None),
        |(m, at), (i, &d)| {
            if d > m {
                (d, Some(i))
            } else {
                (m, at)
            }
        },
    )
}

fn constant_rule(
    condition: Condition,
    values: &[f64],
    name: &str,
    advice: &str,
    tol: f64,
) -> ConditionReport {
    let (dev, at) = worst(&rel_deviations(values));
    let holds = dev <= tol;
    let message = match (holds, at) {
        (false, Some(i)) => Some(format!(
            "{name} is not constant: stage {} has {:.6e} but stage 0 has {:.6e} ({:+.1}%); {advice}",
            i,
            values[i],
            values[0],
            100.0 * (values[i] - values[0]) / values[0].abs().max(f64::MIN_POSITIVE)
        )),
        _ => None,
    };
    ConditionReport {
        condition,
        holds,
        max_rel_deviation: dev,
        worst_stage: at,
        message,
    }
}

fn smoothness_rule(stages: &[StageHyper], l: f64, c: f64, tol: f64) -> ConditionReport {
    let devs: Vec<f64> = stages
        .iter()
        .map(|s| (s.lr * l / (c * (1.0 - s.beta)) - 1.0).max(0.0))
        .collect();
    let (dev, at) = worst(&devs);
    let holds = dev <= tol;
    let message = match (holds, at) {
        (false, Some(i)) => Some(format!(
            "stage {i}: lr = {} exceeds c·(1−β)/L = {:.6e} by {:.1}%; lower the learning rate or \
             the momentum β of that stage (§2 condition 3)",
            stages[i].lr,
            c * (1.0 - stages[i].beta) / l,
            100.0 * dev
        )),
        _ => None,
    };
    ConditionReport {
        condition: Condition::LrBelowSmoothnessLimit,
        holds,
        max_rel_deviation: dev,
        worst_stage: at,
        message,
    }
}

fn beta_rule(stages: &[StageHyper], tol: f64) -> ConditionReport {
    let mut devs = vec![0.0; stages.len()];
    for i in 1..stages.len() {
        let (prev, cur) = (stages[i - 1].beta, stages[i].beta);
        if cur < prev {
            devs[i] = (prev - cur) / prev;
        }
    }
    let (dev, at) = worst(&devs);
    let holds = dev <= tol;
    let message = match (holds, at) {
        (false, Some(i)) => Some(format!(
            "β decreases from {} (stage {}) to {} (stage {i}); momentum must not drop between \
             stages (§2 condition 4)",
            stages[i - 1].beta,
            i - 1,
            stages[i].beta
        )),
        _ => None,
    };
    ConditionReport {
        condition: Condition::BetaNonDecreasing,
        holds,
        max_rel_deviation: dev,
        worst_stage: at,
        message,
    }
}
