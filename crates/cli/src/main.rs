//! `stagewise`: multistage QHM training, plans, theory and asynchronous SGD from the command line.

mod commands;

/// mimalloc instead of the system allocator: a training step frees and allocates the same
/// tensor sizes every step, and mimalloc hands the freed pages back without faulting them in
/// again (measured in `bench train`, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Stage-wise scheduled quasi-hyperbolic momentum: plans, optimizer traces, training and
/// benchmarks.
#[derive(Parser, Debug)]
#[command(name = "stagewise", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `stagewise=debug`.
    #[arg(long, global = true, default_value = "warn", env = "STAGEWISE_LOG")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model on Fashion-MNIST (or synthetic data) with a multistage plan.
    Train(commands::train::TrainArgs),
    /// Show, check and build multistage plans.
    Plan(commands::plan::PlanArgs),
    /// Optimizer tools: replay an optimizer on a gradient sequence.
    Optim(commands::optim::OptimArgs),
    /// Benchmarks (speed is measured here, never asserted in tests).
    Bench(commands::bench::BenchArgs),
    /// Asynchronous SGD in one process: a parameter server and worker threads.
    Asgd(Box<commands::asgd::AsgdArgs>),
    /// Asynchronous SGD across processes and machines: parameter servers and workers (gRPC).
    Ps(commands::ps::PsArgs),
    /// Compare methods × learning rates × seeds on real data; writes a report with statistics
    /// and plots.
    Compare(commands::compare::CompareArgs),
    /// Plots and a short table for finished runs (train, asgd, ps serve).
    Report(commands::report::ReportArgs),
    /// Accuracy, loss and confusion matrix of a trained model (a run folder or model file).
    Eval(commands::eval::EvalArgs),
    /// Classes and probabilities of images (IDX or PNG) under a trained model, as CSV.
    Predict(commands::predict::PredictArgs),
}

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_e` in mimalloc.h, v2 and v3; the
/// crate builds v3): how long freed memory is kept before it is returned to the system.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Keep freed memory: a training loop frees and allocates the same tensor sizes every step,
    // and memory returned to the system is page-faulted in again (measured: docs/benchmarks.md).
    // SAFETY: sets a process-wide allocator option; mimalloc allows it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Optim(args) => commands::optim::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Asgd(args) => commands::asgd::run(*args),
        Command::Ps(args) => commands::ps::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already
/// holds (many errors quote their source in their own message).
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod error_text_tests {
    use super::error_text;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io).context("reading plan.toml: no such file");
        assert_eq!(error_text(&err), "reading plan.toml: no such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io).context("reading plan.toml");
        assert_eq!(error_text(&err), "reading plan.toml: no such file");
    }
}
