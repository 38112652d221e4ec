//! `stagewise train`: train a model on real data with a multistage plan.

use super::asgd::parse_dataset;
use super::plan_source::PlanChoice;
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use stagewise_core::optim::OptimizerKind;
use stagewise_core::schedule::{Plan, Recipe};
use stagewise_train::model::ModelKind;
use stagewise_train::threads::{init_global_pool, THREADS_HELP};
use stagewise_train::{DataConfig, DatasetKind, RunOptions, TrainConfig};
use std::path::PathBuf;

/// Options of `stagewise train`. Every option can also be given in a TOML file (`--config`),
/// with the same names (underscores for dashes); flags override the file.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainArgs {
    /// TOML file with any of these options (flags override it).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Continue the run in DIR from its last checkpoint, with the configuration saved there.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    #[serde(skip)]
    resume: Option<PathBuf>,

    /// Output folder for metrics.csv, summary.json and checkpoints [default: runs/train].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Model: mlp, cnn or resnet [default: cnn].
    #[arg(long)]
    model: Option<ModelKind>,

    /// Optimizer driven by the plan: qhm, sgd, nesterov, adam, adamw, rmsprop, qhadam
    /// [default: qhm]. QHM reads lr as α (normalized); sgd/nesterov as PyTorch's lr.
    #[arg(long)]
    optimizer: Option<OptimizerKind>,

    /// Plan file (TOML, see `stagewise plan show --toml`); replaces the recipe options.
    #[arg(long, value_name = "FILE", conflicts_with = "recipe")]
    plan: Option<PathBuf>,

    /// Recipe that builds the plan: stagewise, step, cosine, onecycle, constant
    /// [default: stagewise].
    #[arg(long)]
    recipe: Option<Recipe>,

    /// Recipe: initial learning rate [default: 0.5].
    #[arg(long)]
    lr: Option<f64>,

    /// Recipe: initial momentum β0 [default: 0.9].
    #[arg(long)]
    momentum: Option<f64>,

    /// Recipe: ν, fixed across stages [default: 0.7].
    #[arg(long)]
    nu: Option<f64>,

    /// Recipe: initial batch size b0 [default: 256].
    #[arg(long)]
    batch: Option<u64>,

    /// Recipe: total epochs [default: 15].
    #[arg(long)]
    epochs: Option<u64>,

    /// Recipe: number of stages [default: 3].
    #[arg(long)]
    stages: Option<usize>,

    /// Recipe: drop factor r between stages [default: 2].
    #[arg(long)]
    drop: Option<f64>,

    /// Weight decay (coupled, "grad" mode) [default: 5e-4 for recipes, the plan file's otherwise].
    #[arg(long)]
    weight_decay: Option<f64>,

    /// Dataset: fashion-mnist or synthetic [default: fashion-mnist].
    #[arg(long, value_parser = parse_dataset)]
    dataset: Option<DatasetKind>,

    /// Fashion-MNIST folder (otherwise $STAGEWISE_DATA, ./data/fashion-mnist,
    /// /usr/share/datasets/fashion-mnist, then the download cache).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Never download Fashion-MNIST; fail if it is not on disk.
    #[arg(long)]
    #[serde(default)]
    no_download: bool,

    /// Train on a stratified subset of this many images.
    #[arg(long)]
    train_subset: Option<usize>,

    /// Evaluate on a stratified subset of this many test images.
    #[arg(long)]
    test_subset: Option<usize>,

    /// Random-crop (padding 2) and horizontal-flip augmentation.
    #[arg(long)]
    #[serde(default)]
    augment: bool,

    /// Seed of initialization, data order and augmentation [default: 0].
    #[arg(long)]
    seed: Option<u64>,

    /// Evaluation batch size (does not change results) [default: 1000].
    #[arg(long)]
    eval_batch: Option<usize>,

    /// Stop after this many epochs in total (a checkpoint is written; resume later).
    #[arg(long)]
    stop_after_epochs: Option<u64>,

    /// No progress bars or per-epoch lines.
    #[arg(long)]
    #[serde(default)]
    quiet: bool,

    #[arg(long, value_name = "N", help = THREADS_HELP)]
    threads: Option<usize>,
}

impl TrainArgs {
    /// Fills unset options from the `--config` file, if any.
    fn merged(self) -> anyhow::Result<Self> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: TrainArgs =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Self {
            config: self.config,
            resume: self.resume,
            out: self.out.or(file.out),
            model: self.model.or(file.model),
            optimizer: self.optimizer.or(file.optimizer),
            plan: self.plan.or(file.plan),
            recipe: self.recipe.or(file.recipe),
            lr: self.lr.or(file.lr),
            momentum: self.momentum.or(file.momentum),
            nu: self.nu.or(file.nu),
            batch: self.batch.or(file.batch),
            epochs: self.epochs.or(file.epochs),
            stages: self.stages.or(file.stages),
            drop: self.drop.or(file.drop),
            weight_decay: self.weight_decay.or(file.weight_decay),
            dataset: self.dataset.or(file.dataset),
            data_dir: self.data_dir.or(file.data_dir),
            no_download: self.no_download || file.no_download,
            train_subset: self.train_subset.or(file.train_subset),
            test_subset: self.test_subset.or(file.test_subset),
            augment: self.augment || file.augment,
            seed: self.seed.or(file.seed),
            eval_batch: self.eval_batch.or(file.eval_batch),
            stop_after_epochs: self.stop_after_epochs.or(file.stop_after_epochs),
            quiet: self.quiet || file.quiet,
            threads: self.threads.or(file.threads),
        })
    }

    /// The plan: from `--plan`, or built by the recipe from the recipe options.
    fn plan(&self) -> anyhow::Result<Plan> {
        PlanChoice {
            plan: self.plan.as_deref(),
            recipe: self.recipe,
            lr: self.lr,
            momentum: self.momentum,
            nu: self.nu,
            batch: self.batch,
            epochs: self.epochs,
            stages: self.stages,
            drop: self.drop,
            weight_decay: self.weight_decay,
        }
        .build()
    }

    /// The run configuration these options describe.
    fn train_config(&self) -> anyhow::Result<TrainConfig> {
        let config = TrainConfig {
            model: self.model.unwrap_or(ModelKind::Cnn),
            optimizer: self.optimizer.unwrap_or(OptimizerKind::Qhm),
            plan: self.plan()?,
            data: DataConfig {
                dataset: self.dataset.unwrap_or(DatasetKind::FashionMnist),
                data_dir: self.data_dir.clone(),
                download: !self.no_download,
                train_subset: self.train_subset,
                test_subset: self.test_subset,
                augment: self.augment,
            },
            seed: self.seed.unwrap_or(0),
            eval_batch_size: self.eval_batch.unwrap_or(1000),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Runs `stagewise train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let args = args.merged()?;
    init_global_pool(args.threads)?;
    let opts = RunOptions {
        progress: !args.quiet,
        stop_after_epochs: args.stop_after_epochs,
    };
    let (summary, out) = if let Some(dir) = &args.resume {
        (stagewise_train::resume(dir, &opts)?, dir.clone())
    } else {
        let config = args.train_config()?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs/train"));
        if !args.quiet {
            eprintln!(
                "training {} with {} on {:?}, writing to {}\n{}",
                config.model,
                config.optimizer,
                config.data.dataset,
                out.display(),
                config.plan
            );
        }
        (stagewise_train::train(&config, &out, &opts)?, out)
    };
    println!(
        "{}: final test accuracy {:.4}, best {:.4} (epoch {}), {} epochs, {} steps, {:.0} s, {:.0} images/s{}",
        out.display(),
        summary.final_test_acc,
        summary.best_test_acc,
        summary.best_epoch,
        summary.epochs,
        summary.steps,
        summary.wall_seconds,
        summary.images_per_second,
        if summary.completed { "" } else { " (stopped early; --resume to continue)" }
    );
    Ok(())
}
