//! `stagewise ps serve` / `stagewise ps worker`: asynchronous SGD across processes and
//! machines over gRPC. One `serve` process per shard of the parameters, any number of
//! `worker` processes, each with its own model copy and shard of the training set.
//!
//! Both sides build the same model, plan and data from the same options ([`ModelArgs`]), so
//! give them the same `--model`, plan/recipe, dataset and `--seed` options (a shared
//! `--config` file is the simplest way). The token comes from `--token-file` or the
//! environment variable `STAGEWISE_PS_TOKEN` (never from a flag: the process list is public).

use super::signals::StopSignals;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use stagewise_core::files::write_atomic;
use stagewise_ps::config::{
    AuthConfig, CheckpointConfig, ClientTlsConfig, ParamInit, RunDigests, ServeConfig,
    ServerTlsConfig, WireFloat, WorkerConfig, DEFAULT_CHUNK_BYTES, DEFAULT_MAX_CONCURRENT_PUSHES,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PUSHES_PER_WORKER, DEFAULT_PUSH_IDLE_TIMEOUT_MS,
    DEFAULT_RECONNECT_TIMEOUT_MS, DEFAULT_SHUTDOWN_GRACE_MS,
};
use stagewise_ps::Evaluator;
use stagewise_train::asgd::{initial_params, ModelEvaluator, ModelWorker, StepClock};
use stagewise_train::model::ModelKind;
use stagewise_train::threads::{init_global_pool, THREADS_HELP};
use std::io::Write;
use std::path::PathBuf;

use super::advice::Audience;
use super::asgd::{print_summary, worker_line};
use super::asgd_rule::{plan_for_workers, server_run, worker_run};
use super::options::{
    merge_with_file, option_names, with_default, AsgdRuleArgs, ModelArgs, ServerArgs, MAX_WORKERS,
};

/// The environment variable read for the token when no `--token-file` is given.
pub const TOKEN_ENV: &str = "STAGEWISE_PS_TOKEN";

/// Arguments of `stagewise ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    #[command(subcommand)]
    command: PsCommand,
}

#[derive(Subcommand, Debug)]
enum PsCommand {
    /// Serve one shard of a model's parameters over gRPC until the update budget is spent
    /// (or Ctrl-C / SIGTERM); prints `LISTENING <addr>` once bound.
    Serve(Box<ServeArgs>),
    /// Pull parameters, compute gradients on this worker's shard of the data, push them, until
    /// the servers finish.
    Worker(Box<WorkerArgs>),
}

/// Options of `stagewise ps serve`.
#[derive(Args, Debug, Default, Serialize, Deserialize)]
pub struct ServeArgs {
    /// TOML file with any of these options (flags override it).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:50051]. Use
    /// 0.0.0.0:PORT to accept other machines (with a token, and TLS beyond a trusted network).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,

    /// This server's shard of the parameters, `i/n` (0-based i) [default: 0/1].
    #[arg(long, value_name = "I/N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<String>,

    /// Number of workers M (sets the round size of --policy sync, DC-ASGD's snapshots and the
    /// staleness τ = M − 1 of --asgd-rule) [default: 1].
    #[arg(long, value_name = "M")]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,

    /// Model id workers must present [default: the model's name].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    model_id: Option<String>,

    /// File holding the shared token (first line, whitespace trimmed); otherwise
    /// $STAGEWISE_PS_TOKEN if set; otherwise no authentication.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,

    /// Serve over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,

    /// Write checkpoints (parameters, optimizer state, version) into this folder, one file per
    /// shard (`shard-I-of-N.ckpt`), atomically.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_dir: Option<PathBuf>,

    /// Checkpoint every K updates [default with --checkpoint-dir: 1000].
    #[arg(long, value_name = "K")]
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_every: Option<u64>,

    /// Also checkpoint when this many seconds have passed since the last one.
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_every_secs: Option<f64>,

    /// Start from the checkpoint in --checkpoint-dir when there is one.
    #[arg(long)]
    #[serde(default)]
    resume: bool,

    #[arg(long, help = with_default(
        "Largest gRPC message accepted, bytes",
        DEFAULT_MAX_MESSAGE_BYTES,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<usize>,

    #[arg(long, help = with_default(
        "Bytes of floats per pulled chunk (multiple of 4, at most max-message-bytes − 1024)",
        DEFAULT_CHUNK_BYTES,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_chunk_bytes: Option<usize>,

    /// After the update budget is spent, keep answering this long (so workers learn it), then
    /// exit, ms [default: 2000].
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    linger_ms: Option<u64>,

    #[arg(long, value_name = "MS", help = with_default(
        "At shutdown (signal or budget spent), how long calls in flight may take to finish \
         before the final checkpoint is written without them, ms",
        DEFAULT_SHUTDOWN_GRACE_MS,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace_ms: Option<u64>,

    #[arg(long, value_name = "MS", help = with_default(
        "A push stream that sends nothing for this long is dropped (nothing applied), ms",
        DEFAULT_PUSH_IDLE_TIMEOUT_MS,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    push_idle_timeout_ms: Option<u64>,

    #[arg(long, value_name = "N", help = with_default(
        "Most pushes received at once (each holds a shard-sized buffer); more get \
         RESOURCE_EXHAUSTED",
        DEFAULT_MAX_CONCURRENT_PUSHES,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_pushes: Option<usize>,

    #[arg(long, value_name = "N", help = with_default(
        "Most pushes received at once from one worker id (RESOURCE_EXHAUSTED beyond)",
        DEFAULT_MAX_PUSHES_PER_WORKER,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_pushes_per_worker: Option<usize>,

    /// Write train.csv and eval.csv here as the run goes (appended and flushed row by row,
    /// so a crash keeps them; a --resume keeps the rows up to the checkpoint), and
    /// summary.json when the server stops.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<PathBuf>,

    /// Start from the model in FILE (model.safetensors, a training checkpoint, a single-shard
    /// server checkpoint or a run folder) instead of the seed's initialization; with --resume,
    /// a checkpoint already in --checkpoint-dir wins.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    init_from: Option<PathBuf>,

    #[command(flatten)]
    #[serde(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    #[serde(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    #[serde(flatten)]
    rule: AsgdRuleArgs,
}

/// Options of `stagewise ps worker`.
#[derive(Args, Debug, Default, Serialize, Deserialize)]
pub struct WorkerArgs {
    /// TOML file with any of these options (flags override it).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Server URLs, one per shard, comma-separated, e.g. http://10.0.0.1:50051 (https:// with
    /// TLS).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    server: Vec<String>,

    /// This worker's index i, 0 <= i < M: it trains on examples i, i+M, i+2M, …
    #[arg(long, value_name = "I")]
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_id: Option<usize>,

    /// Number of workers M.
    #[arg(long, value_name = "M")]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,

    /// Model id to present [default: the model's name].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    model_id: Option<String>,

    /// File holding the shared token; otherwise $STAGEWISE_PS_TOKEN if set.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,

    /// PEM certificate of the CA (or the server's self-signed certificate) for https:// URLs.
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_ca: Option<PathBuf>,

    /// Server name to verify in its certificate [default: the URL's host].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_domain: Option<String>,

    /// The servers run --policy sync: the plan's batch size is read at this worker's own
    /// gradient count (one per round) instead of count × M.
    #[arg(long)]
    #[serde(default)]
    sync: bool,

    /// Stop after this many pushes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_pushes: Option<u64>,

    #[arg(long, value_name = "N", help = THREADS_HELP)]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,

    /// Stop after this many seconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_seconds: Option<f64>,

    #[arg(long, value_name = "MS", help = with_default(
        "Keep retrying the first connection this long, ms (servers may still be starting)",
        WorkerConfig::default().connect_timeout_ms,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout_ms: Option<u64>,

    #[arg(long, value_name = "MS", help = with_default(
        "After losing a server (it stopped, crashed or restarts), keep reconnecting with \
         backoff this long, then go on from the version it serves, ms (0: exit at once)",
        DEFAULT_RECONNECT_TIMEOUT_MS,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnect_timeout_ms: Option<u64>,

    #[arg(long, help = with_default(
        "Largest gRPC message accepted, bytes",
        DEFAULT_MAX_MESSAGE_BYTES,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<usize>,

    #[arg(long, help = with_default(
        "Bytes of floats per pushed chunk (multiple of 4)",
        DEFAULT_CHUNK_BYTES,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_chunk_bytes: Option<usize>,

    /// How gradients travel: f32 (exact) or bf16 (half the bytes, rounded to nearest even;
    /// the server widens them back and keeps f32 state) [default: f32].
    #[arg(long, value_name = "f32|bf16")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grad_wire: Option<WireFloat>,

    /// How parameters travel: f32 (exact) or bf16 (half the bytes; the gradient is computed
    /// at the rounded parameters) [default: f32].
    #[arg(long, value_name = "f32|bf16")]
    #[serde(skip_serializing_if = "Option::is_none")]
    param_wire: Option<WireFloat>,

    /// Write this worker's report (JSON) here.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<PathBuf>,

    #[command(flatten)]
    #[serde(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    #[serde(flatten)]
    rule: AsgdRuleArgs,
}

/// Runs `stagewise ps`.
pub fn run(args: PsArgs) -> anyhow::Result<()> {
    match args.command {
        PsCommand::Serve(a) => serve(*a),
        PsCommand::Worker(a) => worker(*a),
    }
}

/// The token source: the file if given, else the environment variable if set, else none.
fn auth(token_file: Option<PathBuf>) -> AuthConfig {
    match token_file {
        Some(f) => AuthConfig {
            token_file: Some(f),
            token_env: None,
        },
        None if std::env::var_os(TOKEN_ENV).is_some() => AuthConfig {
            token_file: None,
            token_env: Some(TOKEN_ENV.into()),
        },
        None => AuthConfig::default(),
    }
}

/// The digests a server and its workers compare: the model, the plan as run (after the
/// learning-rate rule) and the data options that decide the training set and its order.
fn run_digests(model: &ModelArgs, plan: &stagewise_core::schedule::Plan) -> RunDigests {
    let kind = model.kind();
    let d = model.data_config();
    RunDigests {
        model: RunDigests::of(&(kind.name(), kind.param_count())),
        plan: RunDigests::of(plan),
        data: RunDigests::of(&(
            d.dataset,
            d.train_subset,
            d.val_split,
            d.augment,
            model.seed(),
        )),
    }
}

/// Parses `i/n` with `i < n`.
fn parse_shard(s: &str) -> anyhow::Result<(u32, u32)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard '{s}' is not of the form I/N, e.g. 0/2"))?;
    let i: u32 = i
        .trim()
        .parse()
        .with_context(|| format!("--shard '{s}': '{i}' is not a shard index"))?;
    let n: u32 = n
        .trim()
        .parse()
        .with_context(|| format!("--shard '{s}': '{n}' is not a shard count"))?;
    if n == 0 || i >= n {
        bail!("--shard {s}: the index must be below the count (0-based), and the count >= 1");
    }
    Ok((i, n))
}

fn check_workers(workers: usize) -> anyhow::Result<()> {
    if workers == 0 || workers > MAX_WORKERS {
        bail!("--workers {workers} is out of range; allowed: 1 ..= {MAX_WORKERS}");
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // One file may configure servers and workers: worker options are ignored here.
    let args = merge_with_file(&args, args.config.as_deref(), &option_names::<WorkerArgs>())?;
    let workers = args.workers.unwrap_or(1);
    check_workers(workers)?;
    let (shard_index, num_shards) = parse_shard(args.shard.as_deref().unwrap_or("0/1"))?;
    let kind = args.model.kind();
    let seed = args.model.seed();
    let (data, splits) = args.model.load()?;
    let n_train = splits.train.len() as u64;
    // Option errors first: the rule may spend minutes estimating h_max.
    args.server.policy(workers)?;
    let run = server_run(&args.server, workers);
    let plan = plan_for_workers(
        &args.model,
        &args.rule,
        run,
        &splits.train,
        &data,
        Audience::PsServe,
        false,
    )?;
    let mut server = args.server.server_config(
        args.model.model_id(args.model_id.as_deref()),
        &plan,
        n_train,
        workers,
    )?;
    if args.checkpoint_dir.is_none()
        && (args.resume || args.checkpoint_every.is_some() || args.checkpoint_every_secs.is_some())
    {
        bail!("--resume and --checkpoint-every* need --checkpoint-dir");
    }
    if let Some(dir) = &args.checkpoint_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        server.checkpoint = Some(CheckpointConfig {
            path: dir.join(format!("shard-{shard_index}-of-{num_shards}.ckpt")),
            every_updates: Some(args.checkpoint_every.unwrap_or(1000)),
            every_secs: args.checkpoint_every_secs,
            resume: args.resume,
        });
    }
    let config = ServeConfig {
        listen: args
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:50051".into()),
        server,
        num_params: kind.param_count(),
        init: ParamInit::default(),
        shard_index,
        num_shards,
        auth: auth(args.token_file.clone()),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTlsConfig {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        },
        max_chunk_bytes: args.max_chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES),
        max_message_bytes: args.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        exit_after_finish_ms: Some(args.linger_ms.unwrap_or(2_000)),
        metrics_dir: args.out.clone(),
        shutdown_grace_ms: args.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS),
        push_idle_timeout_ms: args
            .push_idle_timeout_ms
            .unwrap_or(DEFAULT_PUSH_IDLE_TIMEOUT_MS),
        max_concurrent_pushes: args
            .max_concurrent_pushes
            .unwrap_or(DEFAULT_MAX_CONCURRENT_PUSHES),
        max_pushes_per_worker: args
            .max_pushes_per_worker
            .unwrap_or(DEFAULT_MAX_PUSHES_PER_WORKER),
        digests: run_digests(&args.model, &plan),
    };
    config.validate()?;
    // The evaluator sees the server's own shard only: evaluate with a single shard.
    let evaluator: Option<Box<dyn Evaluator>> = if num_shards == 1 {
        Some(Box::new(
            ModelEvaluator::new(kind, splits.test, &data, args.server.eval_batch()?, seed)?
                .with_validation(splits.val)
                // model.safetensors and best.safetensors beside the run record.
                .with_export(args.out.clone(), "ps-serve")
                .with_batch_norm_recompute(
                    splits.train.clone(),
                    plan.stages[0].batch_size as usize,
                ),
        ))
    } else {
        eprintln!("note: {num_shards} shards: no evaluation on the server (it sees one shard)");
        None
    };
    if kind == ModelKind::ResNet {
        eprintln!(
            "note: BatchNorm running statistics are not synchronized through the parameter \
             server; the evaluator recomputes them at the evaluated parameters from 50 \
             training batches"
        );
    }
    if config.auth == AuthConfig::default() {
        eprintln!(
            "note: no token (--token-file or ${TOKEN_ENV}): any client that can connect may train"
        );
    }
    let initial = match &args.init_from {
        Some(path) => stagewise_train::export::init_params(path, kind)?,
        None => initial_params(kind, seed),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(async move {
        let handle = stagewise_ps::start_server(config, Some(initial), evaluator).await?;
        println!("LISTENING {}", handle.local_addr());
        let _ = std::io::stdout().flush();
        eprintln!(
            "serving shard {shard_index}/{num_shards} of {kind} ({} parameters, {n_train} \
             training examples) on {}",
            kind.param_count(),
            handle.local_addr()
        );
        tokio::select! {
            () = shutdown_signal() => {
                eprintln!("signal received: writing the final checkpoint and metrics");
                handle.shutdown().await
            }
            () = wait_finished(&handle) => {
                // Budget spent: the server exits by itself after lingering.
                handle.wait().await
            }
        }
    })?;
    print_summary(&format!("shard {shard_index}/{num_shards}"), &summary);
    Ok(())
}

/// Resolves once the server's update budget is spent.
async fn wait_finished(handle: &stagewise_ps::ServeHandle) {
    while !handle.server().is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Resolves on Ctrl-C or SIGTERM ([`StopSignals`]); never when the handlers cannot be
/// installed (the server then ends with its budget).
async fn shutdown_signal() {
    match StopSignals::install() {
        Ok(mut signals) => {
            signals.recv().await;
        }
        Err(e) => {
            eprintln!(
                "warning: cannot handle SIGINT/SIGTERM ({e}); the server stops with its budget"
            );
            std::future::pending::<()>().await;
        }
    }
}

fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    // One file may configure servers and workers: server options are ignored here.
    let args = merge_with_file(&args, args.config.as_deref(), &option_names::<ServeArgs>())?;
    if args.server.is_empty() {
        bail!("give the servers with --server URL[,URL...] (one per shard)");
    }
    for url in &args.server {
        stagewise_ps::config::check_server_url(url).context("--server")?;
    }
    let workers = args
        .workers
        .context("give the number of workers with --workers M")?;
    check_workers(workers)?;
    let worker_id = args
        .worker_id
        .context("give this worker's index with --worker-id I")?;
    if worker_id >= workers {
        bail!("--worker-id {worker_id} is not below --workers {workers}");
    }
    init_global_pool(args.threads)?;
    let kind = args.model.kind();
    let seed = args.model.seed();
    let (data, splits) = args.model.load()?;
    let run = worker_run(workers, args.sync);
    let plan = plan_for_workers(
        &args.model,
        &args.rule,
        run,
        &splits.train,
        &data,
        Audience::PsWorker,
        false,
    )?;
    let layout = plan.layout(splits.train.len() as u64)?;
    let clock = if args.sync {
        StepClock::local(1)
    } else {
        StepClock::local(workers)
    };
    let sizing = args.model.sizing(&layout, &clock)?;
    let source = ModelWorker::new(kind, &splits.train, worker_id, workers, &data, sizing, seed)?;
    drop(splits);
    let config = WorkerConfig {
        servers: args.server.clone(),
        worker_id: u32::try_from(worker_id).context("--worker-id is too large")?,
        model_id: args.model.model_id(args.model_id.as_deref()),
        auth: auth(args.token_file.clone()),
        tls: args.tls_ca.as_ref().map(|ca| ClientTlsConfig {
            ca_cert: ca.clone(),
            domain: args.tls_domain.clone(),
        }),
        max_pushes: args.max_pushes,
        max_seconds: args.max_seconds,
        max_chunk_bytes: args.max_chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES),
        max_message_bytes: args.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        connect_timeout_ms: args
            .connect_timeout_ms
            .unwrap_or(WorkerConfig::default().connect_timeout_ms),
        grad_wire: args.grad_wire.unwrap_or_default(),
        param_wire: args.param_wire.unwrap_or_default(),
        digests: run_digests(&args.model, &plan),
        reconnect_timeout_ms: args
            .reconnect_timeout_ms
            .unwrap_or(DEFAULT_RECONNECT_TIMEOUT_MS),
    };
    if args.tls_domain.is_some() && args.tls_ca.is_none() {
        bail!("--tls-domain needs --tls-ca");
    }
    config.validate()?;
    let report = stagewise_ps::run_worker(config, source)?;
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report)?;
        write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", worker_line(&report));
    Ok(())
}

/// Options of `stagewise bench ps`.
#[derive(Args, Debug)]
pub struct PsBenchArgs {
    /// Model sizes P (f32 parameters), comma-separated; `k` and `M` suffixes allowed.
    #[arg(long, default_value = "1M,10M", value_delimiter = ',')]
    sizes: Vec<String>,
    /// Worker counts W for the throughput table, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    workers: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Skip the in-process rows.
    #[arg(long)]
    no_in_process: bool,
    /// Skip the gRPC rows.
    #[arg(long)]
    no_grpc: bool,
    /// Bytes per gRPC chunk (multiple of 4).
    #[arg(long, default_value_t = DEFAULT_CHUNK_BYTES)]
    chunk_bytes: usize,
    /// Wire formats of the gRPC rows, comma-separated (gradients and parameters alike).
    #[arg(
        long,
        default_value = "f32,bf16",
        value_delimiter = ',',
        value_name = "f32|bf16"
    )]
    grpc_wire: Vec<WireFloat>,
    /// Worker counts of the staleness sweep (in-process, simulated compute), comma-separated;
    /// `none` skips it.
    #[arg(long, default_value = "1,2,4,8,16")]
    staleness_workers: String,
    /// Simulated compute time per gradient in the staleness sweep, µs.
    #[arg(long, default_value_t = 1000)]
    compute_us: u64,
    /// Bytes of the raw TCP loopback reference (0: skip); `k` and `M` suffixes allowed.
    #[arg(long, default_value = "2000M")]
    tcp_bytes: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `stagewise bench ps`.
pub fn bench(args: PsBenchArgs) -> anyhow::Result<()> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!(
            "--seconds {} is out of range; allowed: a finite number > 0",
            args.seconds
        );
    }
    let staleness_workers = match args.staleness_workers.trim() {
        "" | "none" => Vec::new(),
        list => list
            .split(',')
            .map(|w| w.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| {
                format!(
                    "--staleness-workers '{list}': give worker counts separated by commas, or none"
                )
            })?,
    };
    let counts_ok = |v: &[usize]| v.iter().all(|&w| (1..=MAX_WORKERS).contains(&w));
    if args.workers.is_empty() || !counts_ok(&args.workers) || !counts_ok(&staleness_workers) {
        bail!("worker counts must be in 1 ..= {MAX_WORKERS}");
    }
    if args.grpc_wire.is_empty() {
        bail!("--grpc-wire needs at least one of f32, bf16");
    }
    if args.chunk_bytes == 0 || !args.chunk_bytes.is_multiple_of(4) {
        bail!("--chunk-bytes must be a positive multiple of 4");
    }
    let params = args
        .sizes
        .iter()
        .map(|s| super::bench::parse_size(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tcp_bytes = match args.tcp_bytes.trim() {
        "0" => 0,
        s => super::bench::parse_size(s).context("--tcp-bytes")?,
    };
    let config = stagewise_ps::bench::BenchConfig {
        params,
        workers: args.workers,
        seconds: args.seconds,
        in_process: !args.no_in_process,
        grpc: !args.no_grpc,
        chunk_bytes: args.chunk_bytes,
        grpc_wires: args.grpc_wire,
        staleness_workers,
        staleness_compute_us: args.compute_us,
        tcp_bytes,
        ..Default::default()
    };
    let report = stagewise_ps::bench::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", stagewise_ps::bench::table(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_shard;

    #[test]
    fn shards_parse_and_refuse_garbage() {
        assert_eq!(parse_shard("0/1").unwrap(), (0, 1));
        assert_eq!(parse_shard("2/3").unwrap(), (2, 3));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
