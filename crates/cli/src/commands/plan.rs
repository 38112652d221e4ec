//! `stagewise plan`: show multistage plans (from a TOML file or a recipe), explain them in the
//! theory's terms, recommend a stagewise plan from a familiar optimizer setting, and convert
//! optimizer settings to and from QHM.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use stagewise_core::choice::Choice;
use stagewise_core::optim::conventions::to_pytorch_sgd;
use stagewise_core::optim::method::{ConvertError, Method, ACCSGD_DEFAULT_EPS};
use stagewise_core::optim::AdamHyper;
use stagewise_core::schedule::{fmt_num, Plan};
use stagewise_core::theory::estimate::SpectrumEstimate;
use stagewise_core::theory::{
    explain, parse_spectrum, recommend, AsgdBatch, AsgdUpdate, CarryOver, ExplainOptions,
    MomentumMatch, RecommendOptions, Setting, Spectrum,
};

use super::advice::{advice_error, render_note, Audience};
use super::options::{choice, choice_with_help, with_default, RecipeArgs};
use super::spectrum_source::{render_estimate, EstimatorOpts};

/// Arguments of `stagewise plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(subcommand)]
    command: PlanCommand,
}

#[derive(Subcommand, Debug)]
enum PlanCommand {
    /// Print a plan's stage table (or the plan as TOML/JSON), from a file or a recipe.
    ///
    /// Examples: `stagewise plan show plan.toml`;
    /// `stagewise plan show --recipe stagewise --lr 0.1 --momentum 0.9 --batch 128 --epochs 30
    /// --stages 4 --drop 2 --toml > plan.toml`.
    Show(ShowArgs),
    /// Explain a plan in the theory's terms: per-stage α·T (epochs and iterations), α/b,
    /// α·ν·β/(1−β), κ, ψ, relative stationary variance, stability, the bound proxy, and
    /// warnings where a rule of docs/theory.md §2/§3.4 is broken or a stage is unstable.
    ///
    /// Example: `stagewise plan explain plan.toml --n-train 60000
    /// --spectrum isotropic:d=1000,h=1,c=1 --h-max 40`.
    Explain(ExplainArgs),
    /// Recommend a stagewise plan from a familiar optimizer setting (converted to QHM), with
    /// the reasons; optionally for asynchronous SGD with M workers.
    ///
    /// Example: `stagewise plan recommend --from pytorch-sgd --lr 0.1 --momentum 0.9
    /// --batch 128 --epochs 30 --stages 4 --drop 2 --out plan.toml`.
    Recommend(RecommendArgs),
    /// Convert an optimizer setting to normalized QHM (α, β, ν), or QHM to PyTorch SGD
    /// (docs/theory.md §1).
    ///
    /// Examples: `stagewise plan convert --from pytorch-sgd --lr 0.1 --momentum 0.9`;
    /// `stagewise plan convert --from pid --kp -0.1 --ki 0.1 --kd 0.9`;
    /// `stagewise plan convert --from qhm --lr 1 --beta 0.9 --nu 1 --to pytorch-sgd`.
    Convert(ConvertArgs),
    /// Estimate a model's curvature and gradient-noise spectrum (top Hessian eigenpairs by
    /// Lanczos on finite-difference Hessian-vector products, tr H by Hutchinson, noise from
    /// minibatch gradients) and write it as JSON for `--spectrum FILE.json`.
    ///
    /// Example: `stagewise plan spectrum runs/cnn --out cnn-spectrum.json` (a run folder of
    /// `stagewise train`), or `stagewise plan spectrum mlp --spectrum-dataset synthetic`.
    Spectrum(SpectrumArgs),
}

/// Arguments of `stagewise plan show`.
#[derive(Args, Debug)]
struct ShowArgs {
    /// Plan file (TOML) to show. Give either FILE or --recipe (with no other option, the
    /// recipe's parameters are the preset's: `--recipe stagewise` shows the plan
    /// `stagewise train` runs).
    #[arg(
        value_name = "FILE",
        required_unless_present = "recipe",
        conflicts_with_all = [
            "recipe", "lr", "momentum", "nu", "batch", "epochs", "stages", "drop", "weight_decay"
        ]
    )]
    file: Option<PathBuf>,

    #[command(flatten)]
    recipe: RecipeArgs,

    /// Print the plan as TOML (to save it as a plan file) instead of the table.
    #[arg(long, conflicts_with = "json")]
    toml: bool,

    /// Print the plan as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    fn plan(&self) -> anyhow::Result<Plan> {
        match &self.file {
            None => {
                let (recipe, params) = self.recipe.recipe_params();
                params
                    .build(recipe)
                    .with_context(|| format!("building the '{recipe}' recipe"))
            }
            Some(path) => {
                Plan::load(path).with_context(|| format!("loading plan {}", path.display()))
            }
        }
    }
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let mut o = String::new();
    let plan = args.plan()?;
    if args.toml {
        write!(o, "{}", plan.to_toml_string()?)?;
    } else if args.json {
        writeln!(o, "{}", serde_json::to_string_pretty(&plan)?)?;
    } else {
        write!(o, "{plan}")?;
    }
    emit(&o)
}

/// Writes `text` to stdout; a closed pipe (`... | head`) ends the output quietly instead of
/// panicking.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Options shared by `explain` and `recommend`: how the theory looks at the plan.
#[derive(Args, Debug, Clone)]
struct TheoryOpts {
    /// Training-set size, to count iterations per epoch (ceil(n_train/b)) and as N of the bound.
    #[arg(long, value_name = "N", default_value_t = ExplainOptions::default().n_train)]
    n_train: u64,

    /// Curvature h (> 0) at which κ, ψ and the relative stationary variance are reported.
    #[arg(long, value_name = "H", default_value_t = ExplainOptions::default().curvature)]
    curvature: f64,

    /// Largest Hessian eigenvalue (> 0) for the stability columns and warnings
    /// [default: the spectrum's largest h, else --curvature]. `recommend` also uses it (or the
    /// spectrum's largest h) to cap the ASGD learning rate.
    #[arg(long, value_name = "H")]
    h_max: Option<f64>,

    /// Spectrum for the PAC-Bayes bound proxy: `isotropic:d=1000,h=1,c=1`, or a file of
    /// Hessian eigenvalues h and per-example gradient-noise eigenvalues c: JSON
    /// (`{"h": [..], "c": [..]}` or `[{"h": .., "c": ..}, ..]`, name ending in .json) or CSV
    /// (lines `h,c`, optional header). Without it the bound is skipped.
    #[arg(long, value_name = "SPEC", conflicts_with = "estimate_from_model")]
    spectrum: Option<String>,

    /// Estimate the spectrum from a model instead: a run folder of `stagewise train` (its
    /// checkpoint, on its data) or a model name (mlp, cnn, resnet) at initialization. Its
    /// largest eigenvalue becomes the default --h-max. See `plan spectrum --help` for the
    /// estimator's options.
    #[arg(long, value_name = "RUN_DIR|MODEL")]
    estimate_from_model: Option<String>,

    #[command(flatten)]
    estimator: EstimatorOpts,

    /// Prior variance λ₀ (> 0) of the bound.
    #[arg(long, value_name = "V", default_value_t = ExplainOptions::default().prior_var)]
    prior_var: f64,

    /// Confidence δ of the bound, in (0, 1).
    #[arg(long, value_name = "D", default_value_t = ExplainOptions::default().delta)]
    delta: f64,

    /// Carry the variance across stages with the exact discrete recursion instead of the SDE
    /// approximation of docs/theory.md §3.3 (better for short stages with heavy momentum).
    #[arg(long)]
    exact_carry: bool,

    /// Smoothness L (> 0) of the loss, if known: checks §2 condition 3, α ≤ (1−β)/L.
    #[arg(long, value_name = "L")]
    smoothness: Option<f64>,

    /// Relative deviation (>= 0) from stage 1 under which an invariant counts as kept.
    #[arg(long, value_name = "TOL", default_value_t = ExplainOptions::default().rel_tol)]
    rel_tol: f64,
}

/// The spectrum the theory options ask for: none, given, or estimated from a model.
#[derive(Debug, Default)]
struct SpectrumChoice {
    spectrum: Option<Spectrum>,
    estimate: Option<SpectrumEstimate>,
}

impl TheoryOpts {
    /// Reads or estimates the spectrum (estimating takes minutes for the cnn).
    fn spectrum(&self) -> anyhow::Result<SpectrumChoice> {
        if let Some(source) = &self.estimate_from_model {
            let est = self.estimator.estimate(source)?;
            let spectrum = est.spectrum().context("the estimated spectrum")?;
            return Ok(SpectrumChoice {
                spectrum: Some(spectrum),
                estimate: Some(est),
            });
        }
        Ok(SpectrumChoice {
            spectrum: match &self.spectrum {
                None => None,
                Some(s) => Some(parse_spectrum(s).context("reading --spectrum")?),
            },
            estimate: None,
        })
    }

    /// --h-max, else the largest eigenvalue of the spectrum (given or estimated), as
    /// `explain` takes it.
    fn h_max(&self, choice: &SpectrumChoice) -> Option<f64> {
        self.h_max
            .or_else(|| choice.spectrum.as_ref().and_then(Spectrum::h_max))
    }

    fn options(&self, choice: SpectrumChoice) -> anyhow::Result<ExplainOptions> {
        let h_max = self.h_max(&choice);
        let spectrum = choice.spectrum;
        Ok(ExplainOptions {
            n_train: self.n_train,
            curvature: self.curvature,
            h_max,
            spectrum,
            prior_var: self.prior_var,
            delta: self.delta,
            carry_over: if self.exact_carry {
                CarryOver::ExactDiscrete
            } else {
                CarryOver::Sde
            },
            smoothness: self.smoothness,
            rel_tol: self.rel_tol,
        })
    }
}

/// Arguments of `stagewise plan explain`.
#[derive(Args, Debug)]
struct ExplainArgs {
    /// Plan file (TOML), e.g. written by `plan show --toml` or `plan recommend --out`.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    #[command(flatten)]
    theory: TheoryOpts,

    /// Print the explanation as JSON instead of the tables.
    #[arg(long)]
    json: bool,
}

fn explain_cmd(args: ExplainArgs) -> anyhow::Result<()> {
    let plan =
        Plan::load(&args.file).with_context(|| format!("loading plan {}", args.file.display()))?;
    let choice = args.theory.spectrum()?;
    let estimate = choice.estimate.clone();
    let ex = explain(&plan, &args.theory.options(choice)?)
        .with_context(|| format!("explaining plan {}", args.file.display()))?;
    if args.json {
        let v = match estimate {
            Some(est) => json!({ "explanation": ex, "spectrum_estimate": est }),
            None => serde_json::to_value(&ex)?,
        };
        emit(&(serde_json::to_string_pretty(&v)? + "\n"))
    } else {
        let head = estimate.as_ref().map(render_estimate).unwrap_or_default();
        emit(&format!(
            "{head}{}{}",
            if head.is_empty() { "" } else { "\n" },
            ex.render()
        ))
    }
}

/// The settings `plan recommend --from` accepts.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum FromSetting {
    /// PyTorch SGD(lr, momentum): --lr, --momentum.
    PytorchSgd,
    /// PyTorch SGD(lr, momentum, nesterov=True): --lr, --momentum.
    PytorchNesterov,
    /// Normalized QHM: --lr (α), --beta, --nu.
    Qhm,
    /// Adam: refused with an explanation (no exact QHM conversion).
    Adam,
}

/// Arguments of `stagewise plan spectrum`.
#[derive(Args, Debug)]
struct SpectrumArgs {
    /// A run folder of `stagewise train` (its checkpoint, on its data), or a model name (mlp,
    /// cnn, resnet) at initialization.
    #[arg(value_name = "RUN_DIR|MODEL")]
    source: String,

    #[command(flatten)]
    estimator: EstimatorOpts,

    /// Write the estimate as JSON to this file (read back by `--spectrum FILE.json`).
    #[arg(long, value_name = "FILE.json")]
    out: Option<PathBuf>,

    /// Print the estimate as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

fn spectrum_cmd(args: SpectrumArgs) -> anyhow::Result<()> {
    let est = args.estimator.estimate(&args.source)?;
    let text = serde_json::to_string_pretty(&est)? + "\n";
    if let Some(path) = &args.out {
        stagewise_train::checkpoint::write_atomically(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        emit(&text)
    } else {
        let mut o = render_estimate(&est);
        if let Some(path) = &args.out {
            writeln!(
                o,
                "\nwritten to {} (use --spectrum {})",
                path.display(),
                path.display()
            )?;
        }
        emit(&o)
    }
}

/// Arguments of `stagewise plan recommend`.
#[derive(Args, Debug)]
struct RecommendArgs {
    /// The optimizer setting you start from.
    #[arg(long, value_enum, value_name = "METHOD")]
    from: FromSetting,

    /// Learning rate: PyTorch's lr for pytorch-sgd/-nesterov/adam, α for qhm (> 0).
    #[arg(long, allow_negative_numbers = true)]
    lr: f64,

    /// Momentum m in [0, 1) (pytorch-sgd, pytorch-nesterov).
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f64>,

    /// QHM β in [0, 1) (qhm).
    #[arg(long, allow_negative_numbers = true)]
    beta: Option<f64>,

    /// QHM ν in [0, 1]: required for qhm; for the other methods it replaces the converted ν
    /// (stage 1 is then no longer exactly your setting).
    #[arg(long, allow_negative_numbers = true)]
    nu: Option<f64>,

    #[arg(long, help = with_default("Adam β₁ (adam)", AdamHyper::default().beta1))]
    beta1: Option<f64>,

    #[arg(long, help = with_default("Adam β₂ (adam)", AdamHyper::default().beta2))]
    beta2: Option<f64>,

    #[arg(long, help = with_default(
        "Initial batch size b0 (>= 1; per worker with --workers). Halved (÷ drop) per stage",
        recommend_defaults().batch,
    ))]
    batch: Option<u64>,

    #[arg(long, help = with_default("Total epochs (>= stages)", recommend_defaults().epochs))]
    epochs: Option<u64>,

    #[arg(long, help = with_default("Number of stages (>= 1)", recommend_defaults().stages))]
    stages: Option<usize>,

    #[arg(long, help = with_default(
        "Drop factor r (>= 1): α/r, b/r, β/(1−β)·r and stage length ·r at each drop",
        recommend_defaults().drop,
    ))]
    drop: Option<f64>,

    /// Asynchronous SGD with M (>= 1) workers: staleness τ ≈ M−1, learning rate scaled and
    /// capped (give --h-max for the cap), explicit momentum reduced for the implicit 1−1/M.
    #[arg(long, value_name = "M")]
    workers: Option<u32>,

    #[arg(long, value_parser = choice::<AsgdUpdate>(), requires = "workers", help = with_default(
        "With --workers: how the server applies gradients. per-push (asynchronous, as \
         `stagewise asgd` runs): α0 is kept and capped for staleness τ ≈ M−1; averaged (policy \
         sync): α0·M, no staleness",
        recommend_defaults().update,
    ))]
    update: Option<AsgdUpdate>,

    #[arg(long, value_parser = choice::<MomentumMatch>(), requires = "workers", help = with_default(
        "With --workers: how explicit and asynchronous momentum are combined",
        recommend_defaults().momentum_match,
    ))]
    momentum_match: Option<MomentumMatch>,

    #[arg(long, value_parser = choice::<AsgdBatch>(), requires = "workers", help = with_default(
        "With --workers, per push: what the batch size does when the staleness cap lowers α. \
         keep-ratio: b0 falls with α so α/b, the noise temperature and the SDE time per epoch \
         stay yours (more, smaller updates); keep-batch: b0 kept, α/b falls",
        recommend_defaults().asgd_batch,
    ))]
    asgd_batch: Option<AsgdBatch>,

    #[arg(long, requires = "workers", help = with_default(
        "With --workers: the fraction of the stability limit (staleness τ ≈ M−1 per push, \
         2/h_max averaged) that α0 may reach, in (0, 1]",
        recommend_defaults().cap_fraction,
    ))]
    cap_fraction: Option<f64>,

    /// Write the plan to this TOML file (for `stagewise train --plan` or `plan explain`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    #[command(flatten)]
    theory: TheoryOpts,

    /// Print the recommendation and the explanation as JSON.
    #[arg(long)]
    json: bool,
}

impl RecommendArgs {
    fn setting(&self) -> anyhow::Result<Setting> {
        let need = |name: &str, v: Option<f64>| {
            v.ok_or_else(|| anyhow::anyhow!("--from {} needs --{name}", self.method_name()))
        };
        let refuse = |names: &[(&str, bool)]| -> anyhow::Result<()> {
            match names.iter().find(|(_, given)| *given) {
                Some((n, _)) => anyhow::bail!("--{n} is not used by --from {}", self.method_name()),
                None => Ok(()),
            }
        };
        Ok(match self.from {
            FromSetting::PytorchSgd | FromSetting::PytorchNesterov => {
                refuse(&[
                    ("beta", self.beta.is_some()),
                    ("beta1", self.beta1.is_some()),
                    ("beta2", self.beta2.is_some()),
                ])?;
                let momentum = need("momentum", self.momentum)?;
                if self.from == FromSetting::PytorchSgd {
                    Setting::PytorchSgd {
                        lr: self.lr,
                        momentum,
                    }
                } else {
                    Setting::PytorchNesterov {
                        lr: self.lr,
                        momentum,
                    }
                }
            }
            FromSetting::Qhm => {
                refuse(&[
                    ("momentum", self.momentum.is_some()),
                    ("beta1", self.beta1.is_some()),
                    ("beta2", self.beta2.is_some()),
                ])?;
                Setting::Qhm {
                    lr: self.lr,
                    beta: need("beta", self.beta)?,
                    nu: need("nu", self.nu)?,
                }
            }
            FromSetting::Adam => Setting::Adam {
                lr: self.lr,
                beta1: self.beta1.unwrap_or(AdamHyper::default().beta1),
                beta2: self.beta2.unwrap_or(AdamHyper::default().beta2),
            },
        })
    }

    fn method_name(&self) -> &'static str {
        match self.from {
            FromSetting::PytorchSgd => "pytorch-sgd",
            FromSetting::PytorchNesterov => "pytorch-nesterov",
            FromSetting::Qhm => "qhm",
            FromSetting::Adam => "adam",
        }
    }

    fn options(&self, h_max: Option<f64>) -> anyhow::Result<RecommendOptions> {
        let mut o = RecommendOptions::new(self.setting()?);
        o.batch = self.batch.unwrap_or(o.batch);
        o.epochs = self.epochs.unwrap_or(o.epochs);
        o.stages = self.stages.unwrap_or(o.stages);
        o.drop = self.drop.unwrap_or(o.drop);
        o.nu = if self.from == FromSetting::Qhm {
            None
        } else {
            self.nu
        };
        o.workers = self.workers;
        o.h_max = h_max;
        o.update = self.update.unwrap_or(o.update);
        o.momentum_match = self.momentum_match.unwrap_or(o.momentum_match);
        o.asgd_batch = self.asgd_batch.unwrap_or(o.asgd_batch);
        o.cap_fraction = self.cap_fraction.unwrap_or(o.cap_fraction);
        Ok(o)
    }
}

/// The options `plan recommend` starts from (the library's preset), for the defaults in help.
fn recommend_defaults() -> RecommendOptions {
    RecommendOptions::new(Setting::Qhm {
        lr: 0.0,
        beta: 0.0,
        nu: 0.0,
    })
}

fn recommend_cmd(args: RecommendArgs) -> anyhow::Result<()> {
    let mut o = String::new();
    let choice = args.theory.spectrum()?;
    let estimate = choice.estimate.clone();
    let opts = args.options(args.theory.h_max(&choice))?;
    let to = Audience::PlanRecommend {
        from_qhm: args.from == FromSetting::Qhm,
    };
    let rec = recommend(&opts)
        .map_err(|e| advice_error(e, to))
        .context("recommending a plan")?;
    let ex = explain(&rec.plan, &args.theory.options(choice)?).context("explaining the plan")?;
    if let Some(path) = &args.out {
        rec.plan
            .save(path)
            .with_context(|| format!("writing plan {}", path.display()))?;
    }
    if args.json {
        let v = json!({ "recommendation": rec, "explanation": ex, "spectrum_estimate": estimate });
        writeln!(o, "{}", serde_json::to_string_pretty(&v)?)?;
        return emit(&o);
    }
    if let Some(est) = &estimate {
        writeln!(o, "{}", render_estimate(est))?;
    }
    writeln!(
        o,
        "recommended start: α0 = {}, β0 = {}, ν = {}, b0 = {}",
        fmt_num(rec.initial.lr),
        fmt_num(rec.initial.beta),
        fmt_num(rec.initial.nu),
        rec.recipe.batch
    )?;
    writeln!(o, "why:")?;
    for r in &rec.reasons {
        writeln!(o, "  - {}", render_note(r, to))?;
    }
    if !rec.warnings.is_empty() {
        writeln!(o, "check:")?;
        for w in &rec.warnings {
            writeln!(o, "  - {}", render_note(w, to))?;
        }
    }
    writeln!(o)?;
    write!(o, "{}", ex.render())?;
    if let Some(path) = &args.out {
        writeln!(o, "\nplan written to {}", path.display())?;
    } else {
        writeln!(o, "\nplan (TOML; save it with --out FILE):\n")?;
        write!(o, "{}", rec.plan.to_toml_string()?)?;
    }
    emit(&o)
}

/// The targets of `plan convert --to`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Normalized QHM α, β, ν.
    Qhm,
    /// PyTorch SGD lr, momentum, nesterov (exists for ν = 0, ν = 1 or ν = β).
    PytorchSgd,
}

/// `--a, --b [--c]`: the options that give a method's parameters.
fn method_flags(method: Method) -> String {
    let mut s = flags(method.needs());
    if !method.optional().is_empty() {
        s.push_str(&format!(" [{}]", flags(method.optional())));
    }
    s
}

fn flags(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("--{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CLI's words for a refused conversion: parameters as the options that give them.
fn convert_error(e: ConvertError) -> anyhow::Error {
    match e {
        ConvertError::UnknownParameter { method, parameter } => anyhow::anyhow!(
            "--{parameter} is not a parameter of --from {method}; it takes {}",
            method_flags(method)
        ),
        ConvertError::MissingParameter { method, parameter } => anyhow::anyhow!(
            "--from {method} needs --{parameter} (it takes {})",
            method_flags(method)
        ),
        e @ ConvertError::Invalid { .. } => anyhow::Error::new(e),
    }
}

/// Arguments of `stagewise plan convert`.
#[derive(Args, Debug)]
struct ConvertArgs {
    /// The method whose parameters are given.
    #[arg(long, value_name = "METHOD",
          value_parser = choice_with_help(|m: Method| format!("{} ({})", m.help(), method_flags(m))))]
    from: Method,

    /// What to convert to: qhm (default) or pytorch-sgd (only from qhm).
    #[arg(long, value_enum, default_value = "qhm")]
    to: Target,

    /// Learning rate (PyTorch's lr, plain SGD's, heavy ball's α, NAG's ε, QHM's α).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Momentum m in [0, 1) (pytorch-sgd, heavy-ball, nag's μ).
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f64>,
    /// PyTorch SGD with nesterov=True (pytorch-sgd).
    #[arg(long)]
    nesterov: bool,
    /// QHM β in [0, 1) (qhm).
    #[arg(long, allow_negative_numbers = true)]
    beta: Option<f64>,
    /// QHM ν in [0, 1] (qhm).
    #[arg(long, allow_negative_numbers = true)]
    nu: Option<f64>,
    /// PID proportional gain k_P (pid; β < 1 needs k_P < 0).
    #[arg(long, allow_negative_numbers = true)]
    kp: Option<f64>,
    /// PID integral gain k_I > 0 (pid).
    #[arg(long, allow_negative_numbers = true)]
    ki: Option<f64>,
    /// PID derivative gain k_D > 0 (pid).
    #[arg(long, allow_negative_numbers = true)]
    kd: Option<f64>,
    /// SNV step α_s (snv).
    #[arg(long, allow_negative_numbers = true)]
    alpha_s: Option<f64>,
    /// SNV β₁ in (0, 1) (snv).
    #[arg(long, allow_negative_numbers = true)]
    beta1: Option<f64>,
    /// SNV β₂ (snv).
    #[arg(long, allow_negative_numbers = true)]
    beta2: Option<f64>,
    /// AccSGD δ (accsgd).
    #[arg(long, allow_negative_numbers = true)]
    delta: Option<f64>,
    /// Condition number κ (accsgd; robust and triple: κ > 1).
    #[arg(long, allow_negative_numbers = true)]
    kappa: Option<f64>,
    /// AccSGD ξ >= 0 (accsgd).
    #[arg(long, allow_negative_numbers = true)]
    xi: Option<f64>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "AccSGD ε > 0 (accsgd), as in the reference code", ACCSGD_DEFAULT_EPS,
    ))]
    eps: Option<f64>,
    /// Smoothness L > 0 (robust, triple).
    #[arg(long, allow_negative_numbers = true)]
    smoothness: Option<f64>,
    /// Robustness ρ in (0, 1) (robust).
    #[arg(long, allow_negative_numbers = true)]
    rho: Option<f64>,
    /// TSO h (tso).
    #[arg(long, allow_negative_numbers = true)]
    tso_h: Option<f64>,
    /// TSO k (tso).
    #[arg(long, allow_negative_numbers = true)]
    tso_k: Option<f64>,
    /// TSO l (tso).
    #[arg(long, allow_negative_numbers = true)]
    tso_l: Option<f64>,
    /// TSO m (tso).
    #[arg(long, allow_negative_numbers = true)]
    tso_m: Option<f64>,
    /// TSO q (tso).
    #[arg(long, allow_negative_numbers = true)]
    tso_q: Option<f64>,
    /// TSO z (tso).
    #[arg(long, allow_negative_numbers = true)]
    tso_z: Option<f64>,

    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl ConvertArgs {
    /// Every method parameter given on the command line, by option name.
    fn given(&self) -> BTreeMap<&'static str, f64> {
        [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("nesterov", self.nesterov.then_some(1.0)),
            ("beta", self.beta),
            ("nu", self.nu),
            ("kp", self.kp),
            ("ki", self.ki),
            ("kd", self.kd),
            ("alpha-s", self.alpha_s),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("delta", self.delta),
            ("kappa", self.kappa),
            ("xi", self.xi),
            ("eps", self.eps),
            ("smoothness", self.smoothness),
            ("rho", self.rho),
            ("tso-h", self.tso_h),
            ("tso-k", self.tso_k),
            ("tso-l", self.tso_l),
            ("tso-m", self.tso_m),
            ("tso-q", self.tso_q),
            ("tso-z", self.tso_z),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

fn convert_cmd(args: ConvertArgs) -> anyhow::Result<()> {
    let mut o = String::new();
    let inputs = args.given();
    let h = args.from.to_qhm(&inputs).map_err(convert_error)?;
    let inputs_json: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|(k, v)| {
            let v = if *k == "nesterov" {
                json!(true)
            } else {
                json!(v)
            };
            (k.to_string(), v)
        })
        .collect();
    let pytorch = to_pytorch_sgd(&h);
    if args.to == Target::PytorchSgd {
        if args.from != Method::Qhm {
            anyhow::bail!(
                "--to pytorch-sgd converts from QHM only: use --from qhm --lr A --beta B --nu N \
                 (convert --from {} to QHM first)",
                args.from
            );
        }
        let Some((lr, momentum, nesterov)) = pytorch else {
            anyhow::bail!(
                "QHM α = {}, β = {}, ν = {} has no PyTorch SGD equivalent: ν must be 0 (plain \
                 SGD), 1 (momentum) or equal to β (Nesterov)",
                fmt_num(h.qhm.lr),
                fmt_num(h.qhm.beta),
                fmt_num(h.qhm.nu)
            );
        };
        if args.json {
            let v = json!({
                "from": "qhm", "to": "pytorch-sgd", "inputs": inputs_json,
                "lr": lr, "momentum": momentum, "nesterov": nesterov,
            });
            writeln!(o, "{}", serde_json::to_string_pretty(&v)?)?;
        } else {
            writeln!(
                o,
                "QHM α = {}, β = {}, ν = {}  →  PyTorch SGD(lr={}, momentum={}, nesterov={})",
                fmt_num(h.qhm.lr),
                fmt_num(h.qhm.beta),
                fmt_num(h.qhm.nu),
                fmt_num(lr),
                fmt_num(momentum),
                if nesterov { "True" } else { "False" }
            )?;
        }
        return emit(&o);
    }
    if args.json {
        let v = json!({
            "from": args.from.name(), "to": "qhm", "inputs": inputs_json,
            "alpha": h.qhm.lr, "beta": h.qhm.beta, "nu": h.qhm.nu,
            "unnormalized_lr": h.qhm.lr * (1.0 - h.qhm.beta),
            "pytorch_sgd": pytorch.map(|(lr, momentum, nesterov)| json!({
                "lr": lr, "momentum": momentum, "nesterov": nesterov
            })),
        });
        writeln!(o, "{}", serde_json::to_string_pretty(&v)?)?;
        return emit(&o);
    }
    let shown: Vec<String> = inputs
        .iter()
        .map(|(k, v)| {
            if *k == "nesterov" {
                "nesterov".to_string()
            } else {
                format!("{k} {}", fmt_num(*v))
            }
        })
        .collect();
    writeln!(
        o,
        "{} ({})  →  QHM (normalized, docs/theory.md §1):",
        args.from,
        shown.join(", ")
    )?;
    writeln!(o, "  α = {}", fmt_num(h.qhm.lr))?;
    writeln!(o, "  β = {}", fmt_num(h.qhm.beta))?;
    writeln!(o, "  ν = {}", fmt_num(h.qhm.nu))?;
    writeln!(
        o,
        "  (unnormalized lr η = α(1−β) = {})",
        fmt_num(h.qhm.lr * (1.0 - h.qhm.beta))
    )?;
    if let Some((lr, momentum, nesterov)) = pytorch {
        writeln!(
            o,
            "  = PyTorch SGD(lr={}, momentum={}, nesterov={})",
            fmt_num(lr),
            fmt_num(momentum),
            if nesterov { "True" } else { "False" }
        )?;
    }
    emit(&o)
}

/// Runs `stagewise plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    match args.command {
        PlanCommand::Show(a) => show(a),
        PlanCommand::Explain(a) => explain_cmd(a),
        PlanCommand::Recommend(a) => recommend_cmd(a),
        PlanCommand::Convert(a) => convert_cmd(a),
        PlanCommand::Spectrum(a) => spectrum_cmd(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use stagewise_core::schedule::RecipeParams;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: PlanCommand,
    }

    fn parse(args: &[&str]) -> Result<ShowArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("plan").chain(args.iter().copied()))?;
        match cli.command {
            PlanCommand::Show(a) => Ok(a),
            other => panic!("expected `show`, parsed {other:?}"),
        }
    }

    #[test]
    fn recipe_options_override_defaults() {
        let a = parse(&[
            "show",
            "--recipe",
            "stagewise",
            "--batch",
            "256",
            "--drop",
            "4",
        ])
        .unwrap();
        let (_, p) = a.recipe.recipe_params();
        let d = RecipeParams::default();
        assert_eq!(
            (p.batch, p.drop, p.lr, p.stages),
            (256, 4.0, d.lr, d.stages)
        );
        let plan = a.plan().unwrap();
        assert_eq!(plan.stages[1].batch_size, 64);
    }

    #[test]
    fn the_shown_recipe_is_the_plan_train_runs() {
        let shown = parse(&["show", "--recipe", "stagewise"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(shown, stagewise_train::TrainConfig::default().plan);
        assert!(shown.to_toml_string().unwrap().contains("weight_decay"));
    }

    #[test]
    fn bad_combinations_are_refused() {
        assert!(parse(&["show"]).is_err());
        assert!(parse(&["show", "plan.toml", "--recipe", "step"]).is_err());
        assert!(parse(&["show", "plan.toml", "--lr", "0.1"]).is_err());
        assert!(parse(&["show", "--recipe", "step", "--toml", "--json"]).is_err());
        let e = parse(&["show", "--recipe", "exponential"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("exponential"), "{e}");
    }

    #[test]
    fn recommend_hints_name_only_options_of_plan_recommend() {
        use super::super::advice::tests::assert_hints_use_options;
        use super::super::options::option_names;
        let names = option_names::<RecommendArgs>();
        for from_qhm in [false, true] {
            assert_hints_use_options(Audience::PlanRecommend { from_qhm }, &names);
        }
    }

    #[test]
    fn batch_below_one_is_an_error_not_a_panic() {
        let a = parse(&[
            "show",
            "--recipe",
            "stagewise",
            "--batch",
            "4",
            "--stages",
            "6",
            "--epochs",
            "60",
        ])
        .unwrap();
        let e = format!("{:#}", a.plan().unwrap_err());
        assert!(e.contains("below 1"), "{e}");
    }
}
