//! `stagewise eval RUN_DIR|MODEL`: accuracy, loss and the per-class confusion matrix of a
//! trained model on its test set, as text, JSON or a PNG.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use stagewise_train::data::DatasetKind;
use stagewise_train::export::load_model_params;
use stagewise_train::inference::{
    eval_data, evaluate, model_to_evaluate, EvalDataChoice, Evaluation, BATCH_NORM_RECOMPUTE_BATCH,
};
use stagewise_train::trainer::BATCH_NORM_RECOMPUTE_BATCHES;
use std::path::PathBuf;

use super::options::choice;

/// Options of `stagewise eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run folder (its model.safetensors, else its checkpoint), a model file
    /// (model.safetensors, best.safetensors, one written by PyTorch) or a checkpoint.
    #[arg(value_name = "RUN_DIR|MODEL")]
    target: PathBuf,

    /// Dataset to evaluate on (default: the run's own, when the file records it, else
    /// fashion-mnist).
    #[arg(long, value_parser = choice::<DatasetKind>())]
    dataset: Option<DatasetKind>,

    /// Fashion-MNIST folder (default: the run's own data, else the usual search:
    /// $STAGEWISE_DATA, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist, the cache).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Evaluate on a stratified subset of this many test images (default: the run's own, else
    /// the whole test set).
    #[arg(long, value_name = "N")]
    test_subset: Option<usize>,

    /// Seed that picks the --test-subset (default: the run's own, else 0).
    #[arg(long)]
    seed: Option<u64>,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,

    /// Also draw the confusion matrix into this PNG file.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
}

/// What `--json` prints.
#[derive(Serialize)]
struct EvalOutput<'a> {
    model: &'a str,
    source: String,
    #[serde(flatten)]
    evaluation: &'a Evaluation,
}

/// Runs `stagewise eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let params = load_model_params(&args.target)?;
    let choice = EvalDataChoice {
        dataset: args.dataset,
        data_dir: args.data_dir.clone(),
        test_subset: args.test_subset,
        seed: args.seed,
    };
    let (data, seed) = eval_data(&params.meta, &choice);
    if !params.meta.records_data() && args.dataset.is_none() {
        eprintln!(
            "note: {} does not record its run's data; evaluating on {}; choose other data \
             with --dataset, --test-subset, --seed",
            args.target.display(),
            data.describe()?
        );
    }
    let splits = data.load(seed).context("loading the test set")?;
    let (model, recomputed) = model_to_evaluate(&params, &splits.train, &data, seed)?;
    if recomputed {
        eprintln!(
            "note: {} holds no BatchNorm statistics (a parameter-server checkpoint); \
             recomputed them at its parameters from {} batches of {} training images",
            args.target.display(),
            BATCH_NORM_RECOMPUTE_BATCHES,
            BATCH_NORM_RECOMPUTE_BATCH
        );
    }
    let evaluation = evaluate(&model, &splits.test, data.normalization())?;
    if let Some(path) = &args.png {
        stagewise_report::confusion::draw_confusion(
            &evaluation.confusion,
            &format!(
                "{} on {} test images: accuracy {:.4}",
                params.kind, evaluation.examples, evaluation.accuracy
            ),
            path,
        )?;
    }
    if args.json {
        let out = EvalOutput {
            model: params.kind.name(),
            source: args.target.display().to_string(),
            evaluation: &evaluation,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{}: {} on {} test images ({})",
        args.target.display(),
        params.kind,
        evaluation.examples,
        data.describe()?
    );
    println!(
        "accuracy {:.4}  loss {:.4}",
        evaluation.accuracy, evaluation.loss
    );
    println!("confusion matrix (rows: true class, columns: predicted class; last: recall)");
    let classes = evaluation.confusion.len();
    let mut header = format!("{:>5}", "");
    for c in 0..classes {
        header.push_str(&format!(" {c:>5}"));
    }
    println!("{header} {:>7}", "recall");
    for ((c, row), recall) in evaluation
        .confusion
        .iter()
        .enumerate()
        .zip(evaluation.recall())
    {
        let mut line = format!("{c:>5}");
        for n in row {
            line.push_str(&format!(" {n:>5}"));
        }
        let recall = recall.map_or_else(|| "-".to_string(), |r| format!("{r:.4}"));
        println!("{line} {recall:>7}");
    }
    if let Some(path) = &args.png {
        println!("confusion matrix drawn in {}", path.display());
    }
    Ok(())
}
