//! `stagewise compare`: run an experiment's grid (methods × lr × seeds) and write its report.
//! The library ([`stagewise_compare`]) decides everything; this module parses and renders.

use anyhow::Context;
use clap::Args;
use stagewise_compare::analysis::analyse;
use stagewise_compare::{run_grid, Experiment, RunStatus, RunnerOptions};
use stagewise_train::threads::THREADS_HELP;
use std::path::PathBuf;

/// Options of `stagewise compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The experiment file (docs/compare.md; an example is experiments/fashion-mnist.toml).
    #[arg(value_name = "EXPERIMENT.toml")]
    experiment: PathBuf,

    /// Output folder: runs/, results.csv, summary.json, report.md, report.html, plots/
    /// [default: runs/compare/NAME, or runs/compare/NAME-quick with --quick].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Runs at a time; the kernel threads are shared out between them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,

    #[arg(long, value_name = "N", help = THREADS_HELP)]
    threads: Option<usize>,

    /// The same experiment shrunk as its [quick] section says (fewer epochs, a data subset,
    /// one seed): minutes instead of hours.
    #[arg(long)]
    quick: bool,

    /// Stop every centralized run after this many epochs (run again to continue).
    #[arg(long, value_name = "E")]
    stop_after_epochs: Option<u64>,

    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// A folder name from an experiment name.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// Runs `stagewise compare`.
pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    if args.jobs == 0 {
        anyhow::bail!("--jobs 0 is out of range; allowed: >= 1");
    }
    let threads = stagewise_train::threads::resolve(args.threads)?;
    let full = Experiment::load(&args.experiment)?;
    let exp = if args.quick { full.quick() } else { full };
    let grid = exp.grid()?;
    let out = args.out.clone().unwrap_or_else(|| {
        let name = slug(&exp.name.replace(" (quick)", ""));
        PathBuf::from("runs/compare").join(if args.quick {
            format!("{name}-quick")
        } else {
            name
        })
    });
    let data = exp.data.config();
    let described = data.describe().context("locating the data")?;
    if !args.quiet {
        eprintln!(
            "compare {}: {} methods, {} runs ({} seeds, {} epochs each) on {described}, {} at a time, writing to {}",
            exp.name,
            exp.method.len(),
            grid.len(),
            exp.seeds.len(),
            exp.epochs,
            args.jobs.min(grid.len()),
            out.display()
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let options = RunnerOptions {
        jobs: args.jobs,
        threads: Some(threads),
        progress: !args.quiet,
        stop_after_epochs: args.stop_after_epochs,
    };
    let statuses = run_grid(&grid, &out, &options)?;
    let count = |s: RunStatus| statuses.iter().filter(|&&x| x == s).count();
    if !args.quiet {
        eprintln!(
            "{} ran, {} resumed, {} skipped (already finished), {} diverged, {} stopped early",
            count(RunStatus::Ran),
            count(RunStatus::Resumed),
            count(RunStatus::Skipped),
            count(RunStatus::Diverged),
            count(RunStatus::Stopped)
        );
    }
    if count(RunStatus::Stopped) > 0 {
        println!(
            "{}: {} runs stopped early; run the same command again to continue them",
            out.display(),
            count(RunStatus::Stopped)
        );
        return Ok(());
    }
    let outcome = analyse(&exp, &grid, &out)?;
    for line in &outcome.sentences {
        println!("{line}");
    }
    println!(
        "{}: report.md, report.html, results.csv, summary.json",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn folder_names_come_from_experiment_names() {
        assert_eq!(
            slug("Fashion-MNIST: cnn, 15 epochs"),
            "fashion-mnist--cnn--15-epochs"
        );
    }
}
