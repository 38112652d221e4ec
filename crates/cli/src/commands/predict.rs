//! `stagewise predict MODEL IMAGES…`: classes and probabilities of images, as CSV.

use anyhow::Context;
use clap::Args;
use stagewise_train::export::load_model_params;
use stagewise_train::inference::{predict, read_images};
use std::io::Write;
use std::path::PathBuf;

/// Options of `stagewise predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The model: model.safetensors (or one written by PyTorch), best.safetensors, a training
    /// or parameter-server checkpoint, or a run folder.
    #[arg(value_name = "MODEL")]
    model: PathBuf,

    /// An IDX image file (every image in it) or 28×28 PNG files.
    #[arg(value_name = "IMAGES", required = true)]
    images: Vec<PathBuf>,

    /// Write the CSV here instead of to standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `stagewise predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let params = load_model_params(&args.model)?;
    if params.meta.batch_norm_missing {
        anyhow::bail!(
            "{}: the file holds no BatchNorm statistics (a {} from a parameter-server \
             checkpoint), so its predictions would be wrong; use the server's \
             model.safetensors (its --out folder), or `stagewise eval`, which recomputes them",
            args.model.display(),
            params.kind
        );
    }
    let model = params.to_model(&stagewise_train::inference_device())?;
    let images = read_images(&args.images)?;
    let normalization = stagewise_train::DataConfig::default().normalization();
    let predictions = predict(&model, &images.pixels, normalization);
    let mut csv = String::from("image,class");
    for c in 0..stagewise_train::model::NUM_CLASSES {
        csv.push_str(&format!(",p{c}"));
    }
    csv.push('\n');
    for (source, p) in images.sources.iter().zip(&predictions) {
        csv.push_str(&csv_field(source));
        csv.push_str(&format!(",{}", p.class));
        for prob in &p.probabilities {
            csv.push_str(&format!(",{prob:.6}"));
        }
        csv.push('\n');
    }
    match &args.out {
        Some(path) => stagewise_core::files::write_atomic(path, csv.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout()
            .write_all(csv.as_bytes())
            .context("writing to standard output")?,
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
