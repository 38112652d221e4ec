//! The learning-rate rule `stagewise asgd` applies by default for M asynchronous workers
//! (docs/theory.md §4.2), the same as `stagewise plan recommend --workers M`:
//!
//! - α0 is capped at ½ of the delayed-SGD stability limit 2 sin(π/(2(2τ+1)))/h_max for
//!   τ = M − 1, with h_max estimated on the initial model (or given with `--h-max`);
//! - b0 falls with α0 so that α/b, the noise temperature, stays the recipe's
//!   ([`AsgdBatch::KeepRatio`]): an epoch is the same SDE time, in more, smaller updates;
//! - β0 is lowered so that it and asynchrony's implicit momentum 1 − 1/M give the recipe's β0.
//!
//! Only the recipe's α0, β0 and b0 change; its shape (stages, drops, epochs) is kept. A plan
//! file is used as given.

use anyhow::Context;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use stagewise_core::schedule::{fmt_num, Recipe, RecipeParams};
use stagewise_core::theory::{recommend, AsgdBatch, RecommendOptions, Setting};
use stagewise_data::Dataset;
use stagewise_train::asgd::initial_params;
use stagewise_train::model::ModelKind;
use stagewise_train::spectrum::{estimate_spectrum, ModelPoint, SpectrumConfig};
use stagewise_train::DataConfig;

/// Whether `stagewise asgd` adapts the recipe to asynchrony.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsgdRule {
    /// docs/theory.md §4.2: α0 capped for staleness, b0 lowered with it, β0 lowered (default).
    #[default]
    Theory,
    /// The recipe's α0, β0 and b0 as given (they may diverge with stale gradients).
    None,
}

/// A recipe adapted to M asynchronous workers, with the reasons in words.
#[derive(Debug, Clone)]
pub struct Adapted {
    /// The recipe parameters to build the plan with.
    pub params: RecipeParams,
    /// The largest curvature the cap used.
    pub h_max: f64,
    /// Why each number changed.
    pub reasons: Vec<String>,
    /// Things to check.
    pub warnings: Vec<String>,
}

/// Estimator settings for h_max at initialization: one Lanczos pair from 12 Gauss-Newton
/// products on the estimator's default 2048 examples (so `plan spectrum MODEL --lanczos-steps
/// 12` gives the same h_max); no trace and a token noise pass (neither is used).
fn h_max_config(seed: u64) -> SpectrumConfig {
    SpectrumConfig {
        top: 1,
        lanczos_steps: 12,
        trace_probes: 0,
        noise_batch: 16,
        noise_batches: 2,
        seed,
        ..SpectrumConfig::default()
    }
}

/// The largest Gauss-Newton eigenvalue of `kind` at its initialization with `seed`, on
/// `train` (seconds for the mlp, about two minutes for the cnn on 2 cores).
pub fn initial_h_max(
    kind: ModelKind,
    seed: u64,
    train: &Dataset,
    data: &DataConfig,
) -> anyhow::Result<f64> {
    let point = ModelPoint::new(kind, initial_params(kind, seed), vec![])?;
    let mut data = data.clone();
    data.augment = false;
    let est = estimate_spectrum(&point, train, &data, &h_max_config(seed))
        .context("estimating h_max of the initial model")?;
    est.h
        .first()
        .copied()
        .filter(|h| h.is_finite() && *h > 0.0)
        .context("the initial model's largest curvature is not a positive number")
}

/// Applies docs/theory.md §4.2 to `params` for `workers` per-push workers and curvature `h_max`.
///
/// # Errors
/// When the recipe's α0, β0, ν are not a QHM setting, or b0 cannot be lowered enough for the
/// recipe's stages (the message names the options that help).
pub fn adapt(
    params: &RecipeParams,
    recipe: Recipe,
    workers: u32,
    h_max: f64,
) -> anyhow::Result<Adapted> {
    let mut o = RecommendOptions::new(Setting::Qhm {
        lr: params.lr,
        beta: params.momentum,
        nu: params.nu,
    });
    o.batch = params.batch;
    o.epochs = params.epochs;
    // Only stagewise halves b per stage; other recipes keep b0 in every stage.
    o.stages = if recipe == Recipe::Stagewise {
        params.stages
    } else {
        1
    };
    o.drop = params.drop;
    o.weight_decay = params.weight_decay;
    o.workers = Some(workers);
    o.h_max = Some(h_max);
    o.asgd_batch = AsgdBatch::KeepRatio;
    let rec = recommend(&o).context("adapting the recipe to asynchronous workers (--asgd-rule)")?;
    let keep = ["ASGD", "learning rate", "batch size", "momentum", "check"];
    let reasons = rec
        .reasons
        .into_iter()
        .filter(|r| keep.iter().any(|k| r.starts_with(k)))
        .collect();
    Ok(Adapted {
        params: RecipeParams {
            lr: rec.initial.lr,
            momentum: rec.initial.beta,
            batch: rec.recipe.batch,
            ..params.clone()
        },
        h_max,
        reasons,
        warnings: rec.warnings,
    })
}

impl Adapted {
    /// One paragraph for the terminal.
    pub fn render(&self, before: &RecipeParams) -> String {
        let mut s = format!(
            "asgd rule (docs/theory.md §4.2, --asgd-rule theory; h_max = {} at initialization): \
             α0 {} → {}, β0 {} → {}, b0 {} → {} per worker",
            fmt_num(self.h_max),
            fmt_num(before.lr),
            fmt_num(self.params.lr),
            fmt_num(before.momentum),
            fmt_num(self.params.momentum),
            before.batch,
            self.params.batch
        );
        for r in self.reasons.iter().chain(&self.warnings) {
            s.push_str("\n  - ");
            s.push_str(r);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_caps_alpha_keeps_alpha_over_b_and_lowers_beta() {
        let p = RecipeParams {
            lr: 0.5,
            momentum: 0.9,
            nu: 0.7,
            batch: 256,
            epochs: 6,
            stages: 3,
            drop: 2.0,
            weight_decay: 5e-4,
        };
        let a = adapt(&p, Recipe::Stagewise, 4, 2.97).unwrap();
        // ½ · 2 sin(π/14) / 2.97 = 0.07492 ⇒ b0 = ⌊256 · 0.07492 / 0.5⌋ = 38, α0 = 0.5 · 38/256.
        assert_eq!(a.params.batch, 38);
        assert!((a.params.lr - 0.5 * 38.0 / 256.0).abs() < 1e-15);
        assert!((a.params.momentum - 0.6).abs() < 1e-12); // 1 − β = 4 · (1 − 0.9)
        assert_eq!((a.params.epochs, a.params.stages), (6, 3));
        assert!(a.render(&p).contains("b0 256 → 38"), "{}", a.render(&p));
        // A cosine recipe keeps b0 in its one stage, so b0 = 38 needs no halving.
        let c = adapt(&p, Recipe::Cosine, 4, 2.97).unwrap();
        assert_eq!((c.params.batch, c.params.stages), (38, 3));
        // 64 workers at a large curvature: b0 would fall below what 3 halvings allow.
        let e = adapt(&p, Recipe::Stagewise, 64, 30.0).unwrap_err();
        assert!(format!("{e:#}").contains("keep-batch"), "{e:#}");
    }
}
