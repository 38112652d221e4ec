//! Where `plan spectrum`, `plan explain --estimate-from-model` and `plan recommend
//! --estimate-from-model` get a spectrum from a model: a trained run's checkpoint or a fresh
//! model, the data to take the Hessian and the gradient noise on, and the estimator's options.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use stagewise_core::schedule::fmt_num;
use stagewise_core::theory::estimate::SpectrumEstimate;
use stagewise_core::theory::{divergence_threshold, staleness_stability_limit};
use stagewise_train::spectrum::{estimate_spectrum, resolve_source, Curvature, SpectrumConfig};
use stagewise_train::DatasetKind;

use super::options::{choice, with_default};

/// Options of the spectrum estimator (with `--estimate-from-model` or `plan spectrum`).
#[derive(Args, Debug, Clone)]
pub struct EstimatorOpts {
    #[arg(long, value_parser = choice::<Curvature>(),
          help = with_default("Curvature matrix", Curvature::default()))]
    pub curvature_matrix: Option<Curvature>,

    /// Top Hessian eigenpairs to estimate (>= 1).
    #[arg(long, value_name = "K", default_value_t = SpectrumConfig::default().top)]
    pub top: usize,

    /// Lanczos steps, i.e. Hessian-vector products (>= --top).
    #[arg(long, value_name = "N", default_value_t = SpectrumConfig::default().lanczos_steps)]
    pub lanczos_steps: usize,

    /// Training examples the Hessian is taken on (a fixed, seeded set).
    #[arg(long, value_name = "N", default_value_t = SpectrumConfig::default().hessian_examples)]
    pub hessian_examples: usize,

    /// Finite-difference step ε of the Hessian-vector products (> 0).
    #[arg(long, value_name = "EPS", default_value_t = SpectrumConfig::default().fd_step)]
    pub fd_step: f64,

    /// Hutchinson probes for tr H, which sets the bulk of the spectrum (0: top pairs only).
    #[arg(long, value_name = "N", default_value_t = SpectrumConfig::default().trace_probes)]
    pub trace_probes: usize,

    /// Batch size of the minibatch gradients the noise is measured with.
    #[arg(long, value_name = "B", default_value_t = SpectrumConfig::default().noise_batch)]
    pub noise_batch: usize,

    /// Number of minibatch gradients for the noise (>= 2).
    #[arg(long, value_name = "N", default_value_t = SpectrumConfig::default().noise_batches)]
    pub noise_batches: usize,

    /// Dataset when the model is not a run folder: fashion-mnist or synthetic
    /// [default: the run's, else fashion-mnist].
    #[arg(long, value_parser = choice::<DatasetKind>())]
    pub spectrum_dataset: Option<DatasetKind>,

    /// Fashion-MNIST folder (otherwise $STAGEWISE_DATA, ./data/fashion-mnist,
    /// /usr/share/datasets/fashion-mnist, then the download cache).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Seed of the example choice, the random vectors and (for a model name) the
    /// initialization.
    #[arg(long, default_value_t = 0)]
    pub spectrum_seed: u64,
}

impl EstimatorOpts {
    fn config(&self) -> SpectrumConfig {
        SpectrumConfig {
            curvature: self.curvature_matrix.unwrap_or_default(),
            top: self.top,
            lanczos_steps: self.lanczos_steps,
            hessian_examples: self.hessian_examples,
            fd_step: self.fd_step,
            trace_probes: self.trace_probes,
            noise_batch: self.noise_batch,
            noise_batches: self.noise_batches,
            seed: self.spectrum_seed,
            // A bar with the time left (indicatif draws it only on a terminal).
            progress: true,
            ..SpectrumConfig::default()
        }
    }

    /// Estimates the spectrum of `source`: a run folder written by `stagewise train` (its
    /// checkpoint, on the run's data), or a model name (`mlp`, `cnn`, `resnet`) at its
    /// initialization.
    pub fn estimate(&self, source: &str) -> anyhow::Result<SpectrumEstimate> {
        let (point, mut data) = resolve_source(source, self.spectrum_seed)
            .context("choosing the model to take the spectrum of")?;
        if let Some(kind) = self.spectrum_dataset {
            data.dataset = kind;
        }
        if self.data_dir.is_some() {
            data.data_dir.clone_from(&self.data_dir);
        }
        data.augment = false;
        let splits = data.load(self.spectrum_seed).context("loading the data")?;
        let cfg = self.config();
        eprintln!(
            "estimating the spectrum of {} on {} training examples: {} Hessian-vector \
             products and {} noise gradients (minutes for the cnn)...",
            point.source,
            self.hessian_examples.min(splits.train.len()),
            cfg.lanczos_steps + cfg.trace_probes,
            cfg.noise_batches
        );
        Ok(estimate_spectrum(&point, &splits.train, &data, &cfg)?)
    }
}

/// A short table of an estimate, with the stability limits its h_max implies.
pub fn render_estimate(est: &SpectrumEstimate) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Estimated spectrum ({} parameters)", est.dim);
    for note in &est.notes {
        let _ = writeln!(o, "  {note}");
    }
    let _ = writeln!(o, "\n   j  h_j (Hessian)  c_j (noise/example)  residual");
    for (j, ((h, c), r)) in est.h.iter().zip(&est.c).zip(&est.residuals).enumerate() {
        let _ = writeln!(
            o,
            "{:>4}  {:>13}  {:>19}  {:>8}",
            j + 1,
            fmt_num(*h),
            fmt_num(*c),
            fmt_num(*r)
        );
    }
    match est.trace_h {
        Some(t) => {
            let _ = writeln!(
                o,
                "\ntr H ≈ {} ± {} ({} probes)",
                fmt_num(t.value),
                fmt_num(t.std_error),
                t.probes
            );
        }
        None => {
            let _ = writeln!(o, "\ntr H not estimated (--trace-probes 0)");
        }
    }
    let _ = writeln!(o, "tr C ≈ {}", fmt_num(est.trace_c));
    match est.bulk {
        Some(b) => {
            let _ = writeln!(
                o,
                "bulk: {} directions with h = {}, c = {}",
                b.count,
                fmt_num(b.h),
                fmt_num(b.c)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "bulk: none (tr H or tr C leaves no positive remainder); the bound uses the top \
                 directions only"
            );
        }
    }
    if let Some(&h_max) = est.h.first().filter(|h| **h > 0.0) {
        let _ = writeln!(o, "\nh_max ≈ {}: stability limits", fmt_num(h_max));
        for (name, beta, nu) in [("plain SGD", 0.0, 0.0), ("QHM β=0.9 ν=0.7", 0.9, 0.7)] {
            if let Ok(t) = divergence_threshold(beta, nu, h_max) {
                let _ = writeln!(o, "  {name}: α < {}", fmt_num(t));
            }
        }
        for tau in [1, 3, 7] {
            let _ = writeln!(
                o,
                "  delayed SGD, τ = {tau}: α < {}",
                fmt_num(staleness_stability_limit(tau) / h_max)
            );
        }
    }
    o
}
