//! Option groups shared by several commands, and the one way a `--config` file is merged.
//!
//! - [`PlanArgs`]: a plan file, or a recipe and its parameters ([`RecipeArgs`]), as `train`,
//!   `asgd`, `ps serve`/`ps worker` and `plan show` take them;
//! - [`DataArgs`]: which data, how much of it, augmentation and the seed;
//! - [`AsgdRuleArgs`]: whether and with which h_max `asgd`, `ps serve` and `ps worker` adapt a
//!   recipe to asynchronous workers (docs/theory.md §4.2);
//! - [`merge_with_file`]: flags over a TOML file with the same option names.
//!
//! Every default shown in `--help` is read from the library's preset
//! ([`RecipeParams::default`], [`TrainConfig::default`], [`DataConfig::default`]), never
//! restated here.

pub mod server;

pub use server::{ModelArgs, ServerArgs, MAX_WORKERS};
use stagewise_core::choice::Choice;
use stagewise_core::optim::OptimizerKind;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use stagewise_core::optim::WeightDecay;
use stagewise_core::schedule::{CooldownShape, Plan, Recipe, RecipeParams};
use stagewise_core::theory::AsgdRule;
use stagewise_train::{DataConfig, DatasetKind, TrainConfig};

/// The parser of an option whose values are a library [`Choice`]: `--help` lists each name
/// with its help, and an unknown name is refused with the allowed ones.
pub fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    choice_with_help(|v: T| v.help().to_string())
}

/// [`choice`] with each value's help written by `help` (to add the options a value takes).
pub fn choice_with_help<T: Choice + Clone + Send + Sync>(
    help: impl Fn(T) -> String,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        T::ALL
            .iter()
            .map(|v| PossibleValue::new(v.name()).help(help(*v))),
    )
    .try_map(|s| T::parse_choice(&s))
}

/// `"{what} [default: {value}]"`, for help texts whose default comes from the library.
pub fn with_default(what: &str, value: impl Display) -> String {
    format!("{what} [default: {value}]")
}

/// Help of an `--optimizer` option (its values are listed by [`choice`]): `what`, how the
/// plan's lr is read, and the default.
pub fn optimizer_help(what: &str) -> String {
    with_default(
        &format!("{what}. QHM reads lr as α (normalized); sgd/nesterov as PyTorch's lr; the schedule-free methods train at y and evaluate at their average x"),
        OptimizerKind::default(),
    )
}

fn recipe_help() -> String {
    let names: Vec<&str> = Recipe::ALL.iter().map(|r| r.name()).collect();
    with_default(
        &format!(
            "Recipe that builds the plan: {} (docs/recipes.md)",
            names.join(", ")
        ),
        Recipe::default(),
    )
}

fn preset() -> RecipeParams {
    RecipeParams::default()
}

/// The recipe and its parameters; each unset one takes the preset's value
/// ([`RecipeParams::default`], shown by `stagewise plan show --recipe stagewise`).
#[derive(Args, Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeArgs {
    #[arg(long, help = recipe_help())]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<Recipe>,

    #[arg(long, help = with_default(
        "Recipe: initial learning rate α0 (normalized QHM)", preset().lr,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,

    #[arg(long, help = with_default("Recipe: initial momentum β0, in [0, 1)", preset().momentum))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,

    #[arg(long, help = with_default(
        "Recipe: immediate discount ν, in [0, 1], fixed across stages", preset().nu,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nu: Option<f64>,

    #[arg(long, help = with_default(
        "Recipe: initial batch size b0 (per worker gradient in asgd and ps)", preset().batch,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,

    #[arg(long, help = with_default(
        "Recipe: total epochs (in asgd and ps, passes of all workers together over the \
         training set)",
        preset().epochs,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,

    #[arg(long, help = with_default(
        "Recipe: number of stages, for step and stagewise (the other recipes are one stage)",
        preset().stages,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<usize>,

    #[arg(long, help = with_default(
        "Recipe: drop factor r >= 1 between stages, for step and stagewise", preset().drop,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<f64>,

    #[arg(long, help = with_default(
        "Weight decay (coupled, \"grad\" mode); with --plan it replaces the file's",
        format!("{} for recipes, the plan file's otherwise", preset().weight_decay),
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,

    /// Recipe: linear warm-up of α over the first N epochs (any recipe; not with --warmup-steps).
    #[arg(long, value_name = "N", conflicts_with = "warmup_steps")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<u64>,

    /// Recipe: linear warm-up of α over the first N optimizer steps (any recipe).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,

    #[arg(long, value_name = "F", help = with_default(
        "Recipe: the warm-up starts at F·α, F in [0, 1]", preset().warmup_start_fraction,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_start_fraction: Option<f64>,

    #[arg(long, value_name = "F", help = with_default(
        "Recipe: cosine, linear and wsd decay α to F·α, F in [0, 1]",
        preset().final_lr_fraction,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_lr_fraction: Option<f64>,

    #[arg(long, value_name = "F", help = with_default(
        "Recipe: wsd cools down over the last fraction F of the steps, F in (0, 1]",
        preset().cooldown_fraction,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_fraction: Option<f64>,

    #[arg(long, value_name = "linear|sqrt", help = with_default(
        "Recipe: shape of the wsd cooldown", preset().cooldown_shape,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_shape: Option<CooldownShape>,
}

impl RecipeArgs {
    /// The options given (on the command line or in a config file), as flags: `--epochs`, ….
    pub fn given(&self) -> Vec<String> {
        let set = serde_json::to_value(self).unwrap_or_default();
        set.as_object()
            .map(|o| {
                o.keys()
                    .map(|k| format!("--{}", k.replace('_', "-")))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The recipe and its parameters, unset ones at the preset's values.
    pub fn recipe_params(&self) -> (Recipe, RecipeParams) {
        let d = preset();
        let params = RecipeParams {
            lr: self.lr.unwrap_or(d.lr),
            momentum: self.momentum.unwrap_or(d.momentum),
            nu: self.nu.unwrap_or(d.nu),
            batch: self.batch.unwrap_or(d.batch),
            epochs: self.epochs.unwrap_or(d.epochs),
            stages: self.stages.unwrap_or(d.stages),
            drop: self.drop.unwrap_or(d.drop),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            warmup_epochs: self.warmup_epochs.or(d.warmup_epochs),
            warmup_steps: self.warmup_steps.or(d.warmup_steps),
            warmup_start_fraction: self
                .warmup_start_fraction
                .unwrap_or(d.warmup_start_fraction),
            final_lr_fraction: self.final_lr_fraction.unwrap_or(d.final_lr_fraction),
            cooldown_fraction: self.cooldown_fraction.unwrap_or(d.cooldown_fraction),
            cooldown_shape: self.cooldown_shape.unwrap_or(d.cooldown_shape),
        };
        (self.recipe.unwrap_or_default(), params)
    }
}

/// Where a run's plan comes from: a plan file, or a recipe.
#[derive(Args, Debug, Default, Clone, Serialize, Deserialize)]
pub struct PlanArgs {
    /// Plan file (TOML, see `stagewise plan show --toml`); replaces the recipe options.
    #[arg(long, value_name = "FILE", conflicts_with = "recipe")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PathBuf>,

    #[command(flatten)]
    #[serde(flatten)]
    pub recipe: RecipeArgs,
}

impl PlanArgs {
    /// The recipe and its parameters, or `None` when the plan comes from a file.
    pub fn recipe_params(&self) -> Option<(Recipe, RecipeParams)> {
        self.plan.is_none().then(|| self.recipe.recipe_params())
    }

    /// The validated plan: loaded from the file (with `--weight-decay` replacing the file's),
    /// or built by the recipe.
    pub fn build(&self) -> anyhow::Result<Plan> {
        let Some(path) = &self.plan else {
            let (recipe, params) = self.recipe.recipe_params();
            return Ok(params.build(recipe)?);
        };
        if let Some(flag) = self
            .recipe
            .given()
            .into_iter()
            .find(|f| f != "--weight-decay")
        {
            bail!(
                "{flag} cannot be combined with --plan: the plan file sets the whole plan \
                 (edit the file, or leave --plan out to build the plan from the recipe options)"
            );
        }
        let mut plan = Plan::load(path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(wd) = self.recipe.weight_decay {
            if !(wd.is_finite() && wd >= 0.0) {
                bail!("--weight-decay {wd} is out of range; allowed: a finite number >= 0");
            }
            if plan.weight_decay != 0.0 && plan.weight_decay != wd {
                bail!(
                    "--weight-decay {wd} conflicts with weight_decay = {} in the plan file",
                    plan.weight_decay
                );
            }
            plan.weight_decay = wd;
            plan.weight_decay_type = WeightDecay::Grad;
        }
        plan.validate()?;
        Ok(plan)
    }
}

/// The data: which dataset, how much of it, augmentation, and the seed of the run.
#[derive(Args, Debug, Default, Clone, Serialize, Deserialize)]
pub struct DataArgs {
    #[arg(long, value_parser = choice::<DatasetKind>(), help = with_default(
        "Dataset", DataConfig::default().dataset.name(),
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetKind>,

    /// Fashion-MNIST folder (otherwise $STAGEWISE_DATA, ./data/fashion-mnist,
    /// /usr/share/datasets/fashion-mnist, then the download cache).
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,

    /// Never download Fashion-MNIST; fail if it is not on disk.
    #[arg(long)]
    #[serde(default)]
    pub no_download: bool,

    /// Train on a stratified subset of this many images (all workers together).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,

    /// Evaluate on a stratified subset of this many test images.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,

    /// Hold this many training images out as a validation split, evaluated beside the test
    /// set every time (stratified; the same images for every seed).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_split: Option<usize>,

    /// Random-crop (padding 2) and horizontal-flip augmentation.
    #[arg(long)]
    #[serde(default)]
    pub augment: bool,

    #[arg(long, help = with_default(
        "Seed of the initial parameters, the subsets, the data order and augmentation",
        TrainConfig::default().seed,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl DataArgs {
    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or(TrainConfig::default().seed)
    }

    /// The data configuration.
    pub fn data_config(&self) -> DataConfig {
        let d = DataConfig::default();
        DataConfig {
            dataset: self.dataset.unwrap_or(d.dataset),
            data_dir: self.data_dir.clone(),
            download: !self.no_download,
            train_subset: self.train_subset,
            test_subset: self.test_subset,
            val_split: self.val_split,
            augment: self.augment,
        }
    }
}

/// `--asgd-rule` on the command line (the library's [`AsgdRule`]).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsgdRuleArg {
    /// docs/theory.md §4.2: α0 capped for staleness, b0 lowered with it, β0 lowered (default).
    Theory,
    /// The recipe's α0, β0 and b0 as given (they may diverge with stale gradients).
    None,
}

/// How `asgd`, `ps serve` and `ps worker` adapt a recipe to M asynchronous workers; the same
/// options give every process of a run the same plan.
#[derive(Args, Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsgdRuleArgs {
    /// How a recipe is adapted to asynchronous workers: theory (docs/theory.md §4.2: α0 capped at
    /// ½ of the staleness limit for τ = M−1 at the initial model's h_max, b0 lowered with it
    /// so α/b is kept, β0 lowered for asynchrony's implicit momentum) or none (the recipe as
    /// given). Applies to recipes with the qhm optimizer, M > 1 and a per-push policy; a plan
    /// file is always used as given. `ps serve` and `ps worker` apply it alike: give them the
    /// same options [default: theory].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asgd_rule: Option<AsgdRuleArg>,

    /// Largest Hessian eigenvalue for --asgd-rule theory, instead of estimating it on the
    /// initial model (about two minutes for the cnn on 2 cores).
    #[arg(long, value_name = "H", allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h_max: Option<f64>,
}

impl AsgdRuleArgs {
    /// The rule asked for (theory unless `--asgd-rule none`).
    pub fn rule(&self) -> AsgdRule {
        match self.asgd_rule {
            Some(AsgdRuleArg::None) => AsgdRule::None,
            Some(AsgdRuleArg::Theory) | None => AsgdRule::Theory,
        }
    }

    /// `true` when the user asked for the rule explicitly (`--asgd-rule theory` or `--h-max`),
    /// so that a run it does not apply to says so.
    pub fn asked(&self) -> bool {
        self.asgd_rule == Some(AsgdRuleArg::Theory) || self.h_max.is_some()
    }

    /// `--h-max`, checked.
    pub fn h_max(&self) -> anyhow::Result<Option<f64>> {
        match self.h_max {
            Some(h) if !(h.is_finite() && h > 0.0) => {
                bail!("--h-max {h} is out of range; allowed: a finite number > 0")
            }
            h => Ok(h),
        }
    }
}

/// The option names (clap ids, underscores for dashes) of `T`, without `config`.
pub fn option_names<T: Args>() -> Vec<String> {
    T::augment_args(clap::Command::new("options"))
        .get_arguments()
        .map(|a| a.get_id().as_str().to_string())
        .filter(|id| id != "config")
        .collect()
}

/// Fills the options a command line left unset from the TOML file at `path`.
///
/// Flags win; a boolean flag set in the file stays set. Keys that are not options of the
/// command are errors, except those in `tolerated` (options of a sibling command sharing the
/// file), which are ignored.
pub fn merge_with_file<T>(cli: &T, path: Option<&Path>, tolerated: &[String]) -> anyhow::Result<T>
where
    T: Args + Serialize + DeserializeOwned,
{
    let mut merged = toml::Table::new();
    if let Some(path) = path {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let known = option_names::<T>();
        if let Some(unknown) = file
            .keys()
            .find(|k| !known.contains(k) && !tolerated.contains(k))
        {
            bail!(
                "{}: unknown option '{unknown}'; allowed: {}",
                path.display(),
                known.join(", ")
            );
        }
        merged = file
            .into_iter()
            .filter(|(k, _)| known.contains(k))
            .collect();
    }
    let flags = match toml::Value::try_from(cli).context("collecting the options")? {
        toml::Value::Table(t) => t,
        _ => toml::Table::new(),
    };
    for (key, value) in flags {
        if value != toml::Value::Boolean(false) || !merged.contains_key(&key) {
            merged.insert(key, value);
        }
    }
    let what = path.map_or_else(|| "the options".to_string(), |p| p.display().to_string());
    let file_keys: Vec<String> = merged.keys().cloned().collect();
    let parsed: T = toml::Value::Table(merged)
        .try_into()
        .with_context(|| format!("reading {what}"))?;
    // An option the file names but that does not come back out was dropped on the way in: it
    // exists on the command line only (`--config`, `--resume`): say so instead of ignoring it.
    if let (Some(path), toml::Value::Table(back)) = (
        path,
        toml::Value::try_from(&parsed).context("collecting the options")?,
    ) {
        if let Some(k) = file_keys.iter().find(|k| !back.contains_key(*k)) {
            bail!(
                "{}: option '{k}' can be given on the command line only (--{})",
                path.display(),
                k.replace('_', "-")
            );
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        plan: PlanArgs,
    }

    #[test]
    fn unset_recipe_options_take_the_preset_and_the_help_shows_it() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let plan = cli.plan.build().unwrap();
        assert_eq!(
            plan,
            RecipeParams::default().build(Recipe::default()).unwrap()
        );
        let cli = Cli::try_parse_from(["x", "--lr", "0.2", "--weight-decay", "0"]).unwrap();
        let plan = cli.plan.build().unwrap();
        assert_eq!((plan.stages[0].lr, plan.weight_decay), (0.2, 0.0));
        let help = Cli::command_help();
        let lr = format!("[default: {}]", RecipeParams::default().lr);
        assert!(help.contains(&lr), "{help}");
    }

    impl Cli {
        fn command_help() -> String {
            use clap::CommandFactory;
            Cli::command().render_help().to_string()
        }
    }
}
