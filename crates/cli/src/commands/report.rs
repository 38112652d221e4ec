//! `stagewise report RUN_DIR…`: plots and a short table for finished runs of any kind.

use anyhow::Context;
use clap::Args;
use stagewise_report::runs::RunRecord;
use stagewise_report::runs_report::report_runs;
use std::path::PathBuf;

/// Options of `stagewise report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Finished `train`, `asgd` or `ps serve --out` run folders.
    #[arg(value_name = "RUN_DIR", required = true)]
    runs: Vec<PathBuf>,

    /// Where report.md, report.html and the plots go [default: the run folder for one run,
    /// else runs/report].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs `stagewise report`.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|dir| {
            RunRecord::load(dir).with_context(|| format!("reading the run in {}", dir.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| match args.runs.as_slice() {
            [one] => one.join("report"),
            _ => PathBuf::from("runs/report"),
        });
    let report = report_runs(&runs, &out)?;
    let (md, html) = report.write(&out)?;
    println!("{} and {}", md.display(), html.display());
    Ok(())
}
