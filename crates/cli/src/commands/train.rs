//! `stagewise train`: train a model on real data with a multistage plan.

use super::options::{choice, merge_with_file, optimizer_help, with_default, DataArgs, PlanArgs};
use super::signals::StopSignals;
use anyhow::bail;
use clap::Args;
use serde::{Deserialize, Serialize};
use stagewise_core::optim::OptimizerKind;
use stagewise_train::checkpoint::{Checkpoint, CheckpointMeta};
use stagewise_train::model::ModelKind;
use stagewise_train::threads::{init_global_pool, THREADS_HELP};
use stagewise_train::{RunOptions, TrainConfig, TrainError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

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

    /// Continue the run in DIR from its last checkpoint, with the configuration saved there
    /// (other options are accepted only when they say the same: the run's own command works).
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

    /// Replace the run already in the output folder (otherwise refused; see --resume).
    #[arg(long, conflicts_with = "resume")]
    #[serde(skip)]
    overwrite: bool,

    #[arg(long, value_parser = choice::<ModelKind>(), help = with_default("Model", TrainConfig::default().model))]
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<ModelKind>,

    #[arg(long, value_parser = choice::<OptimizerKind>(), help = optimizer_help("Optimizer driven by the plan"))]
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
        merged.overwrite = self.overwrite;
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

impl TrainArgs {
    /// Refuses options that would change the run being resumed (saved as `saved`): a resumed
    /// run keeps its configuration, so an option is accepted only when it says the same (for
    /// recipe options: when they build the saved plan).
    fn check_resume_options(&self, saved: &TrainConfig) -> anyhow::Result<()> {
        fn differs<T: PartialEq + std::fmt::Debug>(
            flag: &str,
            given: Option<T>,
            saved: T,
        ) -> anyhow::Result<()> {
            match given {
                Some(g) if g != saved => bail!(
                    "{flag} {g:?} conflicts with the run being resumed, which has {saved:?}: \
                     a resumed run keeps its saved configuration (leave {flag} out, or start a \
                     new run with --out)"
                ),
                _ => Ok(()),
            }
        }
        let d = &self.data;
        differs("--model", self.model, saved.model)?;
        differs("--optimizer", self.optimizer, saved.optimizer)?;
        differs("--eval-batch", self.eval_batch, saved.eval_batch_size)?;
        differs("--seed", d.seed, saved.seed)?;
        differs("--dataset", d.dataset, saved.data.dataset)?;
        differs(
            "--data-dir",
            d.data_dir.clone(),
            saved.data.data_dir.clone().unwrap_or_default(),
        )?;
        differs(
            "--train-subset",
            d.train_subset.map(Some),
            saved.data.train_subset,
        )?;
        differs(
            "--test-subset",
            d.test_subset.map(Some),
            saved.data.test_subset,
        )?;
        differs("--val-split", d.val_split.map(Some), saved.data.val_split)?;
        differs("--augment", d.augment.then_some(true), saved.data.augment)?;
        differs(
            "--no-download",
            d.no_download.then_some(false),
            saved.data.download,
        )?;
        if self.plan.plan.is_some() && self.plan.build()? != saved.plan {
            bail!(
                "--plan: the plan file differs from the plan of the run being resumed: a \
                 resumed run keeps its saved plan"
            );
        }
        // Recipe options are accepted when they build the saved plan again (the run's own
        // command repeated with --resume); a saved plan does not record the options that built
        // it, so the options left out take their defaults.
        let given = self.plan.recipe.given();
        if !given.is_empty() && self.plan.plan.is_none() && self.plan.build()? != saved.plan {
            bail!(
                "{} with --resume build another plan than the one saved in the run being \
                 resumed, which keeps its plan: give the run's own recipe options, or none (to \
                 train longer or differently, start a new run with --out)",
                given.join(", ")
            );
        }
        Ok(())
    }
}

/// Set on the first SIGINT (Ctrl-C) or SIGTERM: the signal's number.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Makes the first SIGINT or SIGTERM set `stop` (the run stops after the step in progress and
/// writes a checkpoint); a second one ends the process at once. Installed before the run starts.
fn stop_on_signal(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = {
        let _guard = rt.enter();
        StopSignals::install()?
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    let number = signals.recv().await;
                    if stop.swap(true, Ordering::SeqCst) {
                        eprintln!("\nsecond signal: quitting without a checkpoint");
                        std::process::exit(128 + number);
                    }
                    SIGNAL.store(number, Ordering::SeqCst);
                    eprintln!(
                        "\nsignal received: stopping after the current step and writing a \
                         checkpoint (again to quit at once)"
                    );
                }
            })
        })?;
    Ok(())
}

/// Runs `stagewise train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let args = args.merged()?;
    init_global_pool(args.threads)?;
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunOptions {
        progress: !args.quiet,
        stop_after_epochs: args.stop_after_epochs,
        stop_after_steps: None,
        stop: Some(stop.clone()),
        on_epoch: None,
        overwrite: args.overwrite,
    };
    let (summary, out) = if let Some(dir) = &args.resume {
        let ckpt = Checkpoint::load(dir)?;
        args.check_resume_options(&stagewise_train::trainer::saved_config(&ckpt.meta)?)?;
        if !args.quiet {
            eprintln!("resuming {} at {}", dir.display(), resume_point(&ckpt.meta));
        }
        drop(ckpt);
        stop_on_signal(stop)?;
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
        stop_on_signal(stop)?;
        match stagewise_train::train_from(&config, init.as_ref(), &out, &opts) {
            Err(TrainError::RunExists(e)) => bail!(
                "{e}; give --resume {} to continue it, or --overwrite to replace it",
                e.dir.display()
            ),
            other => (other?, out),
        }
    };
    let (best_acc, best_epoch) = summary.best_eval.as_ref().map_or((0.0, 0.0), |e| {
        (e.accuracy.unwrap_or(0.0), e.epoch.unwrap_or(0.0))
    });
    let final_acc = summary
        .final_accuracy()
        .map_or("not measured yet".to_string(), |a| format!("{a:.4}"));
    println!(
        "{}: final test accuracy {final_acc}, best {best_acc:.4} (epoch {best_epoch}), {} epochs, {} steps, {:.0} s, {:.0} images/s{}",
        out.display(),
        summary.epochs.unwrap_or(0.0),
        summary.updates,
        summary.wall_seconds,
        summary.details.images_per_second,
        if summary.completed { "" } else { " (stopped early; --resume to continue)" }
    );
    let signal = SIGNAL.load(Ordering::SeqCst);
    if signal != 0 {
        let at = summary.details.stopped_at.map_or(
            format!("the end of epoch {}", summary.epochs.unwrap_or(0.0)),
            |p| p.to_string(),
        );
        println!(
            "interrupted at {at}: checkpoint and summary written; continue with \
             `stagewise train --resume {}`",
            out.display()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(128 + signal);
    }
    Ok(())
}

/// Where a checkpoint resumes, in words.
fn resume_point(meta: &CheckpointMeta) -> String {
    let epoch = meta.epochs_done + 1;
    match meta.partial {
        Some(p) => format!(
            "epoch {epoch}, after its step {} ({} steps done in all)",
            p.steps, meta.global_step
        ),
        None => format!(
            "the start of epoch {epoch} ({} steps done in all)",
            meta.global_step
        ),
    }
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
