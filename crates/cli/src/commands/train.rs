//! `stagewise train`: train a model on real data with a multistage plan.

use super::options::{merge_with_file, optimizer_help, with_default, DataArgs, PlanArgs};
use clap::Args;
use serde::{Deserialize, Serialize};
use stagewise_core::optim::OptimizerKind;
use stagewise_train::model::ModelKind;
use stagewise_train::threads::{init_global_pool, THREADS_HELP};
use stagewise_train::{RunOptions, TrainConfig};
use std::path::PathBuf;

/// Where a run writes unless `--out` says otherwise.
const DEFAULT_OUT: &str = "runs/train";

/// Options of `stagewise train`. Every option can also be given in a TOML file (`--config`),
/// with the same names (underscores for dashes); flags override the file.
#[derive(Args, Debug, Default, Serialize, Deserialize)]
pub struct TrainArgs {
    /// TOML file with any of these options (flags override it).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Continue the run in DIR from its last checkpoint, with the configuration saved there.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    #[serde(skip)]
    resume: Option<PathBuf>,

    /// Start from the model in FILE (model.safetensors, one written by PyTorch included, a
    /// training checkpoint or a run folder) instead of the seed's initialization.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    #[serde(skip_serializing_if = "Option::is_none")]
    init_from: Option<PathBuf>,

    #[arg(long, value_name = "DIR", help = with_default(
        "Output folder for train.csv, eval.csv, summary.json and checkpoints", DEFAULT_OUT,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<PathBuf>,

    #[arg(long, help = with_default("Model: mlp, cnn or resnet", TrainConfig::default().model))]
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<ModelKind>,

    #[arg(long, help = optimizer_help("Optimizer driven by the plan"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    optimizer: Option<OptimizerKind>,

    #[command(flatten)]
    #[serde(flatten)]
    plan: PlanArgs,

    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,

    #[arg(long, help = with_default(
        "Evaluation batch size (does not change results)",
        TrainConfig::default().eval_batch_size,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_batch: Option<usize>,

    /// Stop after this many epochs in total (a checkpoint is written; resume later).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_after_epochs: Option<u64>,

    /// No progress bars or per-epoch lines.
    #[arg(long)]
    #[serde(default)]
    quiet: bool,

    #[arg(long, value_name = "N", help = THREADS_HELP)]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
}

impl TrainArgs {
    /// Fills unset options from the `--config` file, if any.
    fn merged(self) -> anyhow::Result<Self> {
        let mut merged = merge_with_file(&self, self.config.as_deref(), &[])?;
        merged.config = self.config;
        merged.resume = self.resume;
        Ok(merged)
    }

    /// The run configuration these options describe: the library's defaults
    /// ([`TrainConfig::default`]) with the options given.
    fn train_config(&self) -> anyhow::Result<TrainConfig> {
        let d = TrainConfig::default();
        let config = TrainConfig {
            model: self.model.unwrap_or(d.model),
            optimizer: self.optimizer.unwrap_or(d.optimizer),
            plan: self.plan.build()?,
            data: self.data.data_config(),
            seed: self.data.seed(),
            eval_batch_size: self.eval_batch.unwrap_or(d.eval_batch_size),
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
        on_epoch: None,
    };
    let (summary, out) = if let Some(dir) = &args.resume {
        (stagewise_train::resume(dir, &opts)?, dir.clone())
    } else {
        let config = args.train_config()?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
        if !args.quiet {
            eprintln!(
                "training {} with {} on {}, writing to {}\n{}",
                config.model,
                config.optimizer,
                config.data.describe()?,
                out.display(),
                config.plan
            );
        }
        let init = args
            .init_from
            .as_deref()
            .map(stagewise_train::export::load_model_params)
            .transpose()?;
        (
            stagewise_train::train_from(&config, init.as_ref(), &out, &opts)?,
            out,
        )
    };
    let (best_acc, best_epoch) = summary.best_eval.as_ref().map_or((0.0, 0.0), |e| {
        (e.accuracy.unwrap_or(0.0), e.epoch.unwrap_or(0.0))
    });
    println!(
        "{}: final test accuracy {:.4}, best {best_acc:.4} (epoch {best_epoch}), {} epochs, {} steps, {:.0} s, {:.0} images/s{}",
        out.display(),
        summary.final_accuracy().unwrap_or(0.0),
        summary.epochs.unwrap_or(0.0),
        summary.updates,
        summary.wall_seconds,
        summary.details.images_per_second,
        if summary.completed { "" } else { " (stopped early; --resume to continue)" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_options_give_the_library_default_run() {
        let config = TrainArgs::default().train_config().unwrap();
        let d = TrainConfig::default();
        assert_eq!(config.plan, d.plan);
        assert_eq!((config.model, config.optimizer), (d.model, d.optimizer));
        assert_eq!(
            (config.seed, config.eval_batch_size),
            (d.seed, d.eval_batch_size)
        );
        assert_eq!(config.data, d.data);
    }

    #[test]
    fn flag_only_options_in_a_config_file_are_refused_not_ignored() {
        let dir =
            std::env::temp_dir().join(format!("stagewise-train-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(&path, "model = \"mlp\"\nresume = \"runs/train\"\n").unwrap();
        let args = TrainArgs {
            config: Some(path.clone()),
            ..TrainArgs::default()
        };
        let e = args.merged().unwrap_err().to_string();
        assert!(
            e.contains("option 'resume' can be given on the command line only (--resume)"),
            "{e}"
        );
        std::fs::write(&path, "model = \"mlp\"\nquiet = true\n").unwrap();
        let args = TrainArgs {
            config: Some(path),
            ..TrainArgs::default()
        };
        let merged = args.merged().unwrap();
        assert_eq!(merged.model, Some(ModelKind::Mlp));
        assert!(merged.quiet);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
