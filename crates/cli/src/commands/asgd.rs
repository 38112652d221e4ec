//! `stagewise asgd`: asynchronous SGD in one process — a parameter server and `--workers`
//! threads, each with its own model copy and shard of the training set.
//!
//! The option groups [`ModelArgs`] (model, plan, data) and [`ServerArgs`] (policy, optimizer,
//! budget) live in [`super::options`], shared with `stagewise ps serve` / `stagewise ps worker`;
//! every option can also be given in a TOML file (`--config`, same names with underscores;
//! flags override it).

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use stagewise_ps::metrics::{Summary, STALENESS_BUCKETS};
use stagewise_ps::worker::WorkerReport;
use stagewise_train::asgd_job::AsgdJob;
use stagewise_train::model::ModelKind;
use stagewise_train::threads::{init_global_pool, KernelSplit, THREADS_HELP};
use stagewise_train::TrainError;
use std::path::PathBuf;

use super::advice::Audience;
use super::asgd_rule::{plan_for_workers, server_run};
pub use super::options::merge_with_file;
use super::options::{AsgdRuleArgs, ModelArgs, ServerArgs, MAX_WORKERS};

/// Options of `stagewise asgd`.
#[derive(Args, Debug, Default, Serialize, Deserialize)]
pub struct AsgdArgs {
    /// TOML file with any of these options (flags override it).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Number of worker threads M [default: 4].
    #[arg(long, value_name = "M")]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,

    /// Output folder for train.csv, eval.csv, summary.json and workers.json
    /// [default: runs/asgd].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<PathBuf>,

    /// Replace the run already in the output folder (otherwise refused).
    #[arg(long)]
    #[serde(skip)]
    overwrite: bool,

    /// Stop every worker after this many seconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_seconds: Option<f64>,

    /// Print only the final lines.
    #[arg(long)]
    #[serde(default)]
    quiet: bool,

    #[arg(long, value_name = "N", help = THREADS_HELP)]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,

    /// How the workers share the threads: per-worker (each worker a pool of threads/M),
    /// shared (one pool for all) or single (one thread per worker) [default: per-worker].
    #[arg(long, value_name = "SPLIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_split: Option<KernelSplit>,

    #[command(flatten)]
    #[serde(flatten)]
    rule: AsgdRuleArgs,

    #[command(flatten)]
    #[serde(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    #[serde(flatten)]
    server: ServerArgs,
}

/// Formats the staleness histogram's non-empty buckets as `τ:count` pairs.
pub fn histogram_line(histogram: &[u64]) -> String {
    let parts: Vec<String> = histogram
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(tau, n)| {
            if tau + 1 == STALENESS_BUCKETS {
                format!("{tau}+:{n}")
            } else {
                format!("{tau}:{n}")
            }
        })
        .collect();
    if parts.is_empty() {
        "(no pushes)".into()
    } else {
        parts.join(" ")
    }
}

/// Prints the final lines of a server's summary.
pub fn print_summary(label: &str, summary: &Summary) {
    let eval = summary.last_eval.as_ref().map_or_else(
        || "no evaluation".to_string(),
        |e| {
            format!(
                "final test accuracy {} (loss {:.4}, {} examples) at version {}",
                e.accuracy.map_or_else(|| "-".into(), |a| format!("{a:.4}")),
                e.loss,
                e.examples,
                e.update
            )
        },
    );
    println!("{label}: {eval}");
    let max = summary
        .workers
        .iter()
        .map(|w| w.max_staleness)
        .max()
        .unwrap_or(0);
    println!(
        "{} updates in {:.1} s: {:.1} updates/s; {} pushes, staleness mean {:.2}, max {}; refused: {} stale, {} non-finite",
        summary.updates,
        summary.elapsed_s,
        summary.updates_per_s,
        summary.pushes,
        summary.mean_staleness,
        max,
        summary.refusals.stale,
        summary.refusals.non_finite
    );
    println!(
        "staleness histogram (tau:pushes): {}",
        histogram_line(&summary.histogram)
    );
}

/// One line per worker report.
pub fn worker_line(r: &WorkerReport) -> String {
    let loss = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    format!(
        "worker {}: {} pushes ({} applied, {} buffered, {} refused stale), mean staleness {:.2}, batch loss {} -> {}, {:.1} s, {} reconnects, stopped: {}{}",
        r.worker_id,
        r.pushes,
        r.applied,
        r.buffered,
        r.refused_stale,
        r.mean_staleness,
        loss(r.first_loss),
        loss(r.last_loss),
        r.elapsed_s,
        r.reconnects,
        r.stopped,
        r.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    )
}

/// Runs `stagewise asgd`.
pub fn run(args: AsgdArgs) -> anyhow::Result<()> {
    let args = merge_with_file(&args, args.config.as_deref(), &[])?;
    let workers = args.workers.unwrap_or(4);
    if workers == 0 || workers > MAX_WORKERS {
        bail!("--workers {workers} is out of range; allowed: 1 ..= {MAX_WORKERS}");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/asgd"));
    match stagewise_train::run_folder::prepare_new_run(&out, args.overwrite) {
        Err(TrainError::RunExists(e)) => {
            bail!("{e}; an asgd run cannot be resumed: give --overwrite to replace it")
        }
        other => other?,
    }
    if let Some(s) = args.max_seconds {
        if !(s.is_finite() && s > 0.0) {
            bail!("--max-seconds {s} is out of range; allowed: a finite number > 0");
        }
    }
    let threads = init_global_pool(args.threads)?;
    let pools = args
        .kernel_split
        .unwrap_or_default()
        .pools(threads, workers)
        .context("starting the workers' kernel threads")?;
    let kind = args.model.kind();
    let seed = args.model.seed();
    let (data, splits) = args.model.load()?;
    let n_train = splits.train.len() as u64;
    if (workers as u64) > n_train {
        bail!("--workers {workers} is more than the {n_train} training examples");
    }
    // Option errors first: the rule may spend minutes estimating h_max.
    args.server.policy(workers)?;
    args.model.check_worker_batch()?;
    let run = server_run(&args.server, workers);
    let plan = plan_for_workers(
        &args.model,
        &args.rule,
        run,
        &splits.train,
        &data,
        Audience::Asgd,
        args.quiet,
    )?;
    let server = args
        .server
        .server_config(args.model.model_id(None), &plan, n_train, workers)?;
    if !args.quiet {
        if kind == ModelKind::ResNet {
            eprintln!(
                "note: BatchNorm running statistics are not synchronized through the parameter \
                 server; the evaluator recomputes them at the evaluated parameters from 50 \
                 training batches"
            );
        }
        let budget = match server.max_updates {
            Some(n) => n,
            None => plan.layout(n_train)?.total_steps(),
        };
        eprintln!(
            "asgd: {kind} on {} ({n_train} training examples), {workers} workers, policy {}, \
             {budget} updates, writing to {}\n{plan}",
            data.describe()?,
            server.policy.name(),
            out.display()
        );
    }
    let job = AsgdJob {
        model: kind,
        seed,
        data: &data,
        splits: &splits,
        plan: &plan,
        server,
        pools,
        worker_batch: args.model.worker_batch,
        eval_batch: args.server.eval_batch()?,
        max_seconds: args.max_seconds,
    };
    let outcome = job.run(&out)?;
    if !args.quiet {
        for w in &outcome.report.workers {
            eprintln!("{}", worker_line(w));
        }
    }
    print_summary(&out.display().to_string(), &outcome.report.summary);
    if let Some(first) = outcome.all_workers_failed() {
        bail!("every worker failed: {first}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::options::server::PolicyKind;
    use stagewise_ps::config::{OnStale, PolicyConfig};

    #[test]
    fn histogram_line_shows_non_empty_buckets_and_the_overflow() {
        let mut h = vec![0u64; STALENESS_BUCKETS];
        h[0] = 3;
        h[2] = 1;
        h[STALENESS_BUCKETS - 1] = 7;
        assert_eq!(histogram_line(&h), "0:3 2:1 63+:7");
        assert_eq!(histogram_line(&[]), "(no pushes)");
    }

    #[test]
    fn policy_flags_must_match_the_policy() {
        let mut s = ServerArgs {
            policy: Some(PolicyKind::Bounded),
            ..Default::default()
        };
        assert!(s.policy(2).is_err(), "bounded needs --max-staleness");
        s.max_staleness = Some(3);
        assert_eq!(
            s.policy(2).unwrap(),
            PolicyConfig::Bounded {
                max_staleness: 3,
                on_stale: OnStale::Refuse
            }
        );
        s.policy = Some(PolicyKind::Asgd);
        assert!(s.policy(2).is_err(), "--max-staleness without bounded");
        let s = ServerArgs {
            policy: Some(PolicyKind::DcAsgd),
            lambda: Some(-1.0),
            ..Default::default()
        };
        assert!(s.policy(2).is_err(), "negative lambda");
        let s = ServerArgs {
            policy: Some(PolicyKind::Sync),
            ..Default::default()
        };
        assert_eq!(s.policy(3).unwrap(), PolicyConfig::Sync { workers: 3 });
    }

    #[test]
    fn file_options_fill_gaps_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("stagewise-asgd-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(
            &path,
            "workers = 3\nmodel = \"mlp\"\nlr = 0.1\naugment = true\npolicy = \"staleness-aware\"\n",
        )
        .unwrap();
        let cli = AsgdArgs {
            workers: Some(5),
            ..Default::default()
        };
        let merged = merge_with_file(&cli, Some(&path), &[]).unwrap();
        assert_eq!(merged.workers, Some(5));
        assert_eq!(merged.model.model, Some(ModelKind::Mlp));
        assert_eq!(merged.model.plan.recipe.lr, Some(0.1));
        assert!(merged.model.data.augment);
        assert_eq!(merged.server.policy, Some(PolicyKind::StalenessAware));
        std::fs::write(&path, "wrokers = 3\n").unwrap();
        let err = merge_with_file(&cli, Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option 'wrokers'"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
