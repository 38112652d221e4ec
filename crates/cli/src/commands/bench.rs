//! `stagewise bench`: speed measurements, each beside a baseline measured in the same run.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rayon::prelude::*;
use stagewise_core::optim::{
    Adam, AdamHyper, Optimizer, Qhm, QhmHyper, QhmParams, Sgd, SgdHyper, WeightDecay,
};
use stagewise_train::bench::asgd::bench_asgd_split as bench_asgd;
use stagewise_train::bench::ops::bench_ops;
use stagewise_train::kernels::{set_kernel_choice, KernelChoice};
use stagewise_train::threads::{init_global_pool, KernelSplit, THREADS_HELP};
use std::time::Instant;

/// Arguments of `stagewise bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// One optimizer step on P f32 parameters, in ns/param, beside memory-bandwidth baselines
    /// (copy and triad over the same buffers) measured in the same run.
    Optim(OptimBenchArgs),
    /// Parameter-server throughput: pushes/s and bytes/s in-process and over gRPC on
    /// loopback, beside loopback references measured in the same run (iperf3, one stream, when
    /// it is on PATH; a raw TCP transfer), and mean staleness as workers are added. PyTorch
    /// baselines: tools/bench_ps_torch.py.
    Ps(super::ps::PsBenchArgs),
    /// Training throughput (images/s) of full steps, with the time of a step split into
    /// batching, forward, backward, the flat bridge and the optimizer; `--ops` adds the time of
    /// each operation (forward, input gradient, weight gradient). PyTorch beside it:
    /// tools/bench_train.py.
    Train(TrainBenchArgs),
    /// In-process ASGD updates/s for M workers under each way of sharing the cores between
    /// worker threads and kernel threads (`asgd --kernel-split`).
    AsgdSplit(AsgdSplitArgs),
}

/// Options of `stagewise bench asgd-split`.
#[derive(Args, Debug)]
struct AsgdSplitArgs {
    /// Model: mlp, cnn or resnet.
    #[arg(long, default_value = "cnn")]
    model: stagewise_train::model::ModelKind,
    /// Worker counts M, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    workers: Vec<usize>,
    /// Splits to measure, comma-separated: per-worker, shared, single.
    #[arg(
        long,
        default_value = "per-worker,shared,single",
        value_delimiter = ','
    )]
    splits: Vec<KernelSplit>,
    #[arg(long, value_name = "N", help = THREADS_HELP)]
    threads: Option<usize>,
    /// Images per gradient.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Measurements per (M, split), alternating the splits.
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `stagewise bench train`.
#[derive(Args, Debug)]
struct TrainBenchArgs {
    /// Model: mlp, cnn or resnet.
    #[arg(long, default_value = "cnn")]
    model: stagewise_train::model::ModelKind,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, value_name = "N", help = THREADS_HELP)]
    threads: Option<usize>,
    /// Convolution kernels: stagewise (this project's) or flex (burn-flex's own).
    #[arg(long, default_value = "stagewise")]
    kernels: KernelChoice,
    /// Also time each operation of the step (forward, input and weight gradients).
    #[arg(long)]
    ops: bool,
    /// Repetitions per operation with --ops (the median is reported).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `stagewise bench optim`.
#[derive(Args, Debug)]
struct OptimBenchArgs {
    /// Parameter counts, comma-separated; `k` and `M` suffixes allowed.
    #[arg(long, default_value = "1M,10M,50M", value_delimiter = ',')]
    sizes: Vec<String>,
    /// Worker threads (rayon pool size).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed repetitions per measurement (after 2 warm-up runs); the median is reported.
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `stagewise bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Optim(a) => bench_optim(a),
        BenchCommand::Ps(a) => super::ps::bench(a),
        BenchCommand::Train(a) => bench_train(a),
        BenchCommand::AsgdSplit(a) => bench_asgd_split(a),
    }
}

fn bench_train(args: TrainBenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.steps == 0 || args.reps == 0 {
        bail!("--batch, --steps and --reps must be at least 1");
    }
    init_global_pool(args.threads)?;
    set_kernel_choice(args.kernels);
    let r = stagewise_train::bench::bench_train(args.model, args.batch, args.steps, 3);
    let ops = if args.ops {
        bench_ops(args.model, args.batch, args.reps)
    } else {
        Vec::new()
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        for op in &ops {
            println!("{}", serde_json::to_string(op)?);
        }
        return Ok(());
    }
    let step_ms = 1e3 * r.batch_size as f64 / r.images_per_second;
    println!(
        "{} batch {} ({} threads, {} kernels): {:.0} images/s over {} steps, {:.2} ms/step; \
         ms per step: batch {:.2}, forward {:.2}, backward {:.2}, bridge {:.2}, optimizer {:.2}",
        r.model,
        r.batch_size,
        r.threads,
        r.kernels,
        r.images_per_second,
        r.steps,
        step_ms,
        r.ms_batch,
        r.ms_forward,
        r.ms_backward,
        r.ms_bridge,
        r.ms_optimizer
    );
    if !ops.is_empty() {
        println!(
            "{:<28} {:>5} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "operation", "count", "fwd ms", "∂x ms", "∂W ms", "ms/step", "GFLOP/s"
        );
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        for op in &ops {
            println!(
                "{:<28} {:>5} {:>10.3} {:>10} {:>10} {:>10.2} {:>8}",
                op.op,
                op.count,
                op.ms_forward,
                opt(op.ms_input_grad),
                opt(op.ms_weight_grad),
                op.ms_per_step(),
                op.forward_gflops
                    .map_or_else(|| "-".to_string(), |g| format!("{g:.1}"))
            );
        }
        let total: f64 = ops.iter().map(|o| o.ms_per_step()).sum();
        println!(
            "sum of operations {total:.2} ms/step; forward + backward measured in the step {:.2}",
            r.ms_forward + r.ms_backward
        );
    }
    Ok(())
}

fn bench_asgd_split(args: AsgdSplitArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.repeats == 0 || args.workers.contains(&0) {
        bail!("--batch, --repeats and every --workers count must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!(
            "--seconds {} is out of range; allowed: a finite number > 0",
            args.seconds
        );
    }
    let threads = init_global_pool(args.threads)?;
    if !args.json {
        println!(
            "{} batch {}, {threads} threads, {} s per measurement; updates/s (images/s)",
            args.model, args.batch, args.seconds
        );
    }
    for &workers in &args.workers {
        for repeat in 0..args.repeats {
            for &split in &args.splits {
                let r = bench_asgd(
                    args.model,
                    workers,
                    split,
                    threads,
                    args.batch,
                    args.seconds,
                )?;
                if args.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "M={workers} {:<10} run {} kernel threads/worker {:>2}: {:>7.2} updates/s ({:.0} images/s)",
                        split.name(),
                        repeat + 1,
                        r.kernel_threads_per_worker,
                        r.updates_per_s,
                        r.images_per_s
                    );
                }
            }
        }
    }
    Ok(())
}

/// Parses `1M`, `10M`, `500k` or a plain integer.
pub(super) fn parse_size(s: &str) -> anyhow::Result<usize> {
    let s = s.trim();
    let (digits, mult) = match s.chars().last() {
        Some('M' | 'm') => (&s[..s.len() - 1], 1_000_000),
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        _ => (s, 1),
    };
    let n: usize = digits
        .parse()
        .with_context(|| format!("--sizes: '{s}' is not a count like 1M, 500k or 1000"))?;
    if n == 0 {
        bail!("--sizes: '{s}' must be at least 1");
    }
    Ok(n * mult)
}

/// Median wall time in seconds of `reps` runs of `f`, after two warm-up runs.
fn median_seconds(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One row of the optimizer benchmark.
struct Row {
    size: usize,
    name: &'static str,
    bytes_per_param: usize,
    seconds: f64,
}

impl Row {
    fn ns_per_param(&self) -> f64 {
        self.seconds * 1e9 / self.size as f64
    }
    fn gb_per_s(&self) -> f64 {
        (self.bytes_per_param * self.size) as f64 / self.seconds / 1e9
    }
}

const CHUNK: usize = 1 << 15;

fn bench_optim(args: OptimBenchArgs) -> anyhow::Result<()> {
    if args.threads == 0 || args.reps == 0 {
        bail!("--threads and --reps must be at least 1");
    }
    let sizes: Vec<usize> = args
        .sizes
        .iter()
        .map(|s| parse_size(s))
        .collect::<anyhow::Result<_>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("building the thread pool")?;
    let mut rows = Vec::new();
    pool.install(|| -> anyhow::Result<()> {
        for &n in &sizes {
            rows.extend(bench_one_size(n, args.reps)?);
        }
        Ok(())
    })?;
    if args.json {
        for r in &rows {
            println!(
                "{}",
                serde_json::json!({"params": r.size, "kernel": r.name, "ns_per_param": r.ns_per_param(),
                    "gb_per_s": r.gb_per_s(), "bytes_per_param": r.bytes_per_param, "threads": args.threads})
            );
        }
        return Ok(());
    }
    println!(
        "f32, {} threads, median of {} runs; ratio = ns/param ÷ triad's at the same size",
        args.threads, args.reps
    );
    println!(
        "{:>10}  {:<22} {:>9} {:>8} {:>9} {:>7}",
        "params", "kernel", "ns/param", "GB/s", "B/param", "ratio"
    );
    for &n in &sizes {
        let size_rows: Vec<&Row> = rows.iter().filter(|r| r.size == n).collect();
        let triad = size_rows
            .iter()
            .find(|r| r.name == "triad (baseline)")
            .map(|r| r.ns_per_param())
            .unwrap_or(f64::NAN);
        for r in size_rows {
            println!(
                "{:>10}  {:<22} {:>9.3} {:>8.1} {:>9} {:>7.2}",
                r.size,
                r.name,
                r.ns_per_param(),
                r.gb_per_s(),
                r.bytes_per_param,
                r.ns_per_param() / triad
            );
        }
    }
    Ok(())
}

fn bench_one_size(n: usize, reps: usize) -> anyhow::Result<Vec<Row>> {
    let mut params: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32 - 500.0) * 1e-3).collect();
    let grads: Vec<f32> = (0..n).map(|i| ((i % 777) as f32 - 388.0) * 1e-3).collect();
    let mut scratch: Vec<f32> = vec![0.5; n];
    let mut rows = Vec::new();
    let mut push = |name, bytes_per_param, seconds| {
        rows.push(Row {
            size: n,
            name,
            bytes_per_param,
            seconds,
        })
    };

    // Baselines over the same buffers: copy (read 4 B, write 4 B) and triad (read 8, write 4).
    let t = median_seconds(reps, || {
        scratch
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    push("copy (baseline)", 8, t);
    let t = median_seconds(reps, || {
        params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(scratch.par_chunks(CHUNK))
            .for_each(|((a, b), c)| {
                for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + 0.5 * c;
                }
            });
    });
    push("triad (baseline)", 12, t);

    let qhm = QhmHyper {
        qhm: QhmParams {
            lr: 1e-3,
            beta: 0.9,
            nu: 0.7,
        },
        weight_decay: 0.0,
        weight_decay_type: WeightDecay::Grad,
    };
    let mut opt = Qhm::<f32>::try_new(n, qhm)?;
    let t = median_seconds(reps, || opt.step_unchecked(&mut params, &grads));
    push("qhm (fused kernel)", 20, t);
    let t = median_seconds(reps, || opt.step(&mut params, &grads).expect("finite"));
    push("qhm (+finite check)", 24, t);
    let mut opt = Qhm::<f32>::try_new(
        n,
        QhmHyper {
            weight_decay: 1e-4,
            ..qhm
        },
    )?;
    let t = median_seconds(reps, || opt.step_unchecked(&mut params, &grads));
    push("qhm + weight decay", 20, t);
    let mut opt = Sgd::<f32>::try_new(
        n,
        SgdHyper {
            lr: 1e-3,
            momentum: 0.9,
            ..Default::default()
        },
    )?;
    let t = median_seconds(reps, || opt.step_unchecked(&mut params, &grads));
    push("sgd momentum (torch)", 20, t);
    let mut opt = Adam::<f32>::try_new(n, AdamHyper::default())?;
    let t = median_seconds(reps, || opt.step_unchecked(&mut params, &grads));
    push("adam", 28, t);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_suffixes_and_refuse_garbage() {
        assert_eq!(parse_size("1M").unwrap(), 1_000_000);
        assert_eq!(parse_size("500k").unwrap(), 500_000);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("x").is_err());
        assert!(parse_size("0").is_err());
    }
}
