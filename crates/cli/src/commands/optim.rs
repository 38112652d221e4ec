//! `stagewise optim`: optimizer tools.

use anyhow::Context;
use clap::{Args, Subcommand};
use stagewise_core::trace::TraceCase;
use std::path::PathBuf;

/// Arguments of `stagewise optim`.
#[derive(Args, Debug)]
pub struct OptimArgs {
    #[command(subcommand)]
    command: OptimCommand,
}

#[derive(Subcommand, Debug)]
enum OptimCommand {
    /// Replay an optimizer on a given gradient sequence in f64 and print
    /// `{"params_after": [[...], ...]}` (the parameters after every step) as JSON.
    ///
    /// CASE.json fields: algorithm ("qhm", "sgd", "adam", "adamw", "rmsprop", "qhadam"),
    /// theta0, grads (one raw vector per step), schedule (one {lr, momentum, nu} per step),
    /// and optional weight_decay, weight_decay_type ("grad"/"direct"), nesterov, dampening,
    /// beta2, eps, nu2, alpha, centered. Other fields are ignored. See docs/trace-format.md.
    Trace {
        /// The case file (JSON); `-` reads standard input.
        case: PathBuf,
    },
}

/// Runs `stagewise optim`.
pub fn run(args: OptimArgs) -> anyhow::Result<()> {
    match args.command {
        OptimCommand::Trace { case } => {
            let text = if case.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&case)
                    .with_context(|| format!("reading {}", case.display()))?
            };
            let output = TraceCase::from_json(&text)
                .and_then(|c| c.run())
                .with_context(|| format!("replaying {}", case.display()))?;
            println!("{}", serde_json::to_string(&output)?);
            Ok(())
        }
    }
}
