//! Configuration of servers, workers and runs: plain serde structs, validated with errors that
//! name the field.
//!
//! Every struct has a [`Default`] and reads from JSON or TOML with missing fields defaulted.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
pub use stagewise_core::optim::OptimizerConfig;
use stagewise_core::optim::QhmParams;
use stagewise_core::schedule::Plan;

use crate::error::ConfigError;
use crate::schedule::{HyperSchedule, PlanSchedule};
pub use crate::transport::codec::WireFloat;

/// What the server does with a stale gradient (docs/theory.md §4.3).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyConfig {
    /// Plain asynchronous SGD: every push is applied as it arrives with the scheduled α.
    #[default]
    Asgd,
    /// Staleness-aware learning rate (Zhang et al.): α / max(1, τ).
    StalenessAware,
    /// Bounded staleness (SSP, Ho et al.).
    Bounded {
        /// Largest staleness `s` allowed.
        max_staleness: u64,
        /// What happens beyond it.
        #[serde(default)]
        on_stale: OnStale,
    },
    /// Delay-compensated ASGD (Zheng et al.): `g + λ·g⊙g⊙(w − w_pulled)`.
    ///
    /// The server keeps the last `snapshots` distinct pulled parameter versions
    /// (memory: `snapshots × P × 4` bytes, plus `P × 4` for the adaptive mean square and
    /// `P × 4` scratch). A push whose version has been evicted is applied uncompensated and
    /// counted (`dc_missing_snapshot`). With `snapshots ≥ workers` no push misses in steady
    /// state, which is the memory of the paper's one backup per worker.
    DcAsgd {
        /// λ (or λ₀ when adaptive), ≥ 0.
        lambda: f64,
        /// Adaptive λ_t = λ₀ / √(MS_t + ε) with MS_t = m·MS_{t−1} + (1−m)·g²; `None` for a
        /// constant λ.
        #[serde(default)]
        adaptive_momentum: Option<f64>,
        /// Number of parameter snapshots kept (≥ 1).
        #[serde(default = "default_snapshots")]
        snapshots: usize,
    },
    /// Synchronous baseline: wait for `workers` gradients computed on the same version, average
    /// them and apply once. A round still incomplete when a waiting pull times out is applied
    /// with the gradients present (so a dead worker cannot stop training).
    Sync {
        /// Gradients per round, M ≥ 1.
        workers: usize,
    },
}

fn default_snapshots() -> usize {
    PolicyConfig::DC_ASGD_MIN_SNAPSHOTS
}

impl PolicyConfig {
    /// DC-ASGD's λ when none is given (Zheng et al.'s constant-λ setting).
    pub const DC_ASGD_LAMBDA: f64 = 0.04;
    /// The fewest parameter snapshots DC-ASGD keeps by default.
    pub const DC_ASGD_MIN_SNAPSHOTS: usize = 16;

    /// DC-ASGD's default number of snapshots for `workers` workers: one per worker, and at
    /// least [`Self::DC_ASGD_MIN_SNAPSHOTS`].
    pub fn dc_asgd_snapshots(workers: usize) -> usize {
        workers.max(Self::DC_ASGD_MIN_SNAPSHOTS)
    }

    /// Short name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Asgd => "asgd",
            Self::StalenessAware => "staleness_aware",
            Self::Bounded { .. } => "bounded",
            Self::DcAsgd { .. } => "dc_asgd",
            Self::Sync { .. } => "sync",
        }
    }

    /// Checks the fields, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::DcAsgd {
                lambda,
                adaptive_momentum,
                snapshots,
            } => {
                if !(lambda.is_finite() && *lambda >= 0.0) {
                    return Err(ConfigError::new(
                        "policy.lambda",
                        format!("{lambda} is not a finite number >= 0"),
                    ));
                }
                if let Some(m) = adaptive_momentum {
                    if !(*m >= 0.0 && *m < 1.0) {
                        return Err(ConfigError::new(
                            "policy.adaptive_momentum",
                            format!("{m} is outside 0 <= m < 1"),
                        ));
                    }
                }
                if *snapshots == 0 {
                    return Err(ConfigError::new("policy.snapshots", "must be >= 1"));
                }
            }
            Self::Sync { workers } if *workers == 0 => {
                return Err(ConfigError::new("policy.workers", "must be >= 1"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The waiting or refusing form of bounded staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    /// A push with τ > s is dropped (outcome `RefusedStale`); the worker pulls again.
    #[default]
    Refuse,
    /// SSP clocks: a worker that has pushed `c` times waits at its next pull until every
    /// active worker has pushed at least `c − s` times. Pushes are always applied; τ is bounded
    /// by the clock gap instead (about `(W − 1)(s + 1)` updates).
    Wait,
}

/// The server's (α, β, ν) as a function of its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// Constant values.
    Constant {
        /// Learning rate α.
        lr: f64,
        /// Momentum β.
        #[serde(default)]
        momentum: f64,
        /// Immediate discount ν.
        #[serde(default)]
        nu: f64,
    },
    /// A core multistage plan, one step per applied update.
    Plan {
        /// The plan (as in a plan TOML file).
        plan: Plan,
        /// Examples per epoch, to lay out stages given in epochs.
        n_train: u64,
    },
    /// A plan read from a TOML file.
    PlanFile {
        /// The plan file.
        path: PathBuf,
        /// Examples per epoch.
        n_train: u64,
    },
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self::Constant {
            lr: 0.1,
            momentum: 0.0,
            nu: 0.0,
        }
    }
}

impl ScheduleConfig {
    /// Training examples per epoch, for plans (to count epochs in the metrics).
    pub fn examples_per_epoch(&self) -> Option<u64> {
        match self {
            Self::Constant { .. } => None,
            Self::Plan { n_train, .. } | Self::PlanFile { n_train, .. } => Some(*n_train),
        }
    }

    /// Builds the schedule (reads the plan file if any).
    pub fn build(&self) -> Result<Box<dyn HyperSchedule>, ConfigError> {
        match self {
            Self::Constant { lr, momentum, nu } => {
                for (field, v) in [
                    ("schedule.lr", lr),
                    ("schedule.momentum", momentum),
                    ("schedule.nu", nu),
                ] {
                    if !v.is_finite() || *v < 0.0 {
                        return Err(ConfigError::new(
                            field,
                            format!("{v} is not a finite number >= 0"),
                        ));
                    }
                }
                Ok(Box::new(QhmParams {
                    lr: *lr,
                    beta: *momentum,
                    nu: *nu,
                }))
            }
            Self::Plan { plan, n_train } => Ok(Box::new(PlanSchedule::new(plan, *n_train)?)),
            Self::PlanFile { path, n_train } => {
                let plan = Plan::load(path)
                    .map_err(|e| ConfigError::new("schedule.path", e.to_string()))?;
                Ok(Box::new(PlanSchedule::new(&plan, *n_train)?))
            }
        }
    }
}

/// How the server's parameters start (when not resumed and not given explicitly).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ParamInit {
    /// All zeros.
    #[default]
    Zeros,
    /// Uniform in [−scale, scale], seeded.
    Uniform {
        /// Half-width.
        scale: f32,
        /// RNG seed.
        seed: u64,
    },
}

impl ParamInit {
    /// The `len` initial values (the whole model; shards take their range).
    pub fn values(&self, len: usize) -> Vec<f32> {
        match *self {
            Self::Zeros => vec![0.0; len],
            Self::Uniform { scale, seed } => {
                use rand::{Rng, SeedableRng};
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                (0..len).map(|_| rng.gen_range(-scale..=scale)).collect()
            }
        }
    }
}

/// Periodic, atomic checkpoints of parameters, optimizer state and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The checkpoint file (written as `<path>.tmp`, then renamed).
    pub path: PathBuf,
    /// Write every this many updates (`None`: not by count).
    #[serde(default)]
    pub every_updates: Option<u64>,
    /// Write when this many seconds have passed since the last one (`None`: not by time).
    #[serde(default)]
    pub every_secs: Option<f64>,
    /// Start from the checkpoint at `path` when it exists.
    #[serde(default)]
    pub resume: bool,
}

/// Everything the server core needs, independent of the transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Model id that pushes and pulls must name.
    pub model_id: String,
    /// Staleness policy.
    pub policy: PolicyConfig,
    /// The optimizer (one of core's, with its constants); α, β and ν come from the schedule.
    pub optimizer: OptimizerConfig,
    /// (α, β, ν) by version.
    pub schedule: ScheduleConfig,
    /// Stop after this many applied updates (`None`: the schedule's length if it ends,
    /// otherwise never).
    pub max_updates: Option<u64>,
    /// Longest a pull may wait for a version (synchronous rounds, SSP waits), ms.
    pub wait_timeout_ms: u64,
    /// A worker not heard from for this long no longer holds back SSP waits, ms.
    pub worker_timeout_ms: u64,
    /// One metrics row every this many updates.
    pub log_every: u64,
    /// Evaluate with the server's evaluator every this many updates (`None`: only at the end).
    pub eval_every: Option<u64>,
    /// Periodic checkpoints.
    pub checkpoint: Option<CheckpointConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_id: "model".into(),
            policy: PolicyConfig::default(),
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            max_updates: None,
            wait_timeout_ms: 30_000,
            worker_timeout_ms: 10_000,
            log_every: 100,
            eval_every: None,
            checkpoint: None,
        }
    }
}

impl ServerConfig {
    /// Checks the fields, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.model_id.is_empty() {
            return Err(ConfigError::new("model_id", "must not be empty"));
        }
        self.policy.validate()?;
        self.optimizer
            .validate()
            .map_err(|e| ConfigError::new("optimizer", e.to_string()))?;
        if self.log_every == 0 {
            return Err(ConfigError::new("log_every", "must be >= 1"));
        }
        if self.wait_timeout_ms == 0 {
            return Err(ConfigError::new("wait_timeout_ms", "must be >= 1"));
        }
        if self.eval_every == Some(0) {
            return Err(ConfigError::new("eval_every", "must be >= 1 when given"));
        }
        if let Some(c) = &self.checkpoint {
            if c.every_updates == Some(0) {
                return Err(ConfigError::new(
                    "checkpoint.every_updates",
                    "must be >= 1 when given",
                ));
            }
            if let Some(s) = c.every_secs {
                if !(s.is_finite() && s > 0.0) {
                    return Err(ConfigError::new(
                        "checkpoint.every_secs",
                        "must be a finite number > 0",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An in-process asynchronous run (`stagewise asgd`): a server and one thread per gradient
/// source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsgdConfig {
    /// The server.
    pub server: ServerConfig,
    /// Initial parameters when none are given explicitly.
    pub init: ParamInit,
    /// Stop every worker after this many seconds (`None`: only by update count).
    pub max_seconds: Option<f64>,
    /// Where to write `train.csv`, `eval.csv` and `summary.json` (`None`: not written).
    pub metrics_dir: Option<PathBuf>,
}

impl Default for AsgdConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                max_updates: Some(1000),
                ..ServerConfig::default()
            },
            init: ParamInit::default(),
            max_seconds: None,
            metrics_dir: None,
        }
    }
}

impl AsgdConfig {
    /// Checks the fields; a run needs a stop condition.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if let Some(s) = self.max_seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(ConfigError::new(
                    "max_seconds",
                    "must be a finite number > 0",
                ));
            }
        }
        Ok(())
    }
}

/// The shared secret workers present (`authorization: Bearer <token>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Read the token from this file: its first line, surrounding whitespace trimmed.
    pub token_file: Option<PathBuf>,
    /// Or from this environment variable (e.g. `STAGEWISE_PS_TOKEN`).
    pub token_env: Option<String>,
}

/// TLS for a server: PEM certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// TLS for a worker: the CA to trust and the name to expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate of the CA (or the server's self-signed certificate).
    pub ca_cert: PathBuf,
    /// Server name to verify (defaults to the URL's host).
    #[serde(default)]
    pub domain: Option<String>,
}

/// Default chunk size on the wire: 1 MiB of floats per message.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// Default largest message a server or worker decodes: 4 MiB (tonic's default), enough for a
/// chunk of up to 4 MiB minus framing.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Default [`ServeConfig::shutdown_grace_ms`].
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 2_000;

/// Digests of what a server and its workers must agree on: the model, the plan as run and the
/// data options, each a short hex string (empty: not given, not compared).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunDigests {
    /// The model (architecture, parameter count).
    pub model: String,
    /// The plan as run (after any learning-rate rule).
    pub plan: String,
    /// The data options that decide the training set and its order.
    pub data: String,
}

impl RunDigests {
    /// The digest of `value`: CRC-32 of its JSON with every float rounded to 6 significant
    /// digits (so that estimates computed on different machines still agree), as 8 hex digits.
    pub fn of(value: &impl Serialize) -> String {
        fn round(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Number(n) if n.is_f64() => {
                    let x = n.as_f64().unwrap_or(0.0);
                    *v = serde_json::Value::String(format!("{x:.5e}"));
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(round),
                serde_json::Value::Object(o) => o.values_mut().for_each(round),
                _ => {}
            }
        }
        let mut v = serde_json::to_value(value).unwrap_or_default();
        round(&mut v);
        format!("{:08x}", crc32fast::hash(v.to_string().as_bytes()))
    }

    /// Checks `worker`'s digests against the server's (`self`): the error names each that
    /// differs, with both values. Digests either side left empty are not compared.
    pub fn check(&self, worker: &RunDigests) -> Result<(), String> {
        let differ: Vec<String> = [
            ("model", &self.model, &worker.model),
            ("plan", &self.plan, &worker.plan),
            ("data", &self.data, &worker.data),
        ]
        .into_iter()
        .filter(|(_, s, w)| !s.is_empty() && !w.is_empty() && s != w)
        .map(|(what, s, w)| format!("{what} digest differs: server {s}, worker {w}"))
        .collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}; give `ps worker` the same model, plan and data options as `ps serve`",
                differ.join("; ")
            ))
        }
    }
}

/// Default [`ServeConfig::push_idle_timeout_ms`].
pub const DEFAULT_PUSH_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Default [`ServeConfig::max_concurrent_pushes`].
pub const DEFAULT_MAX_CONCURRENT_PUSHES: usize = 64;
/// Default [`ServeConfig::max_pushes_per_worker`].
pub const DEFAULT_MAX_PUSHES_PER_WORKER: usize = 2;

/// A gRPC parameter server process holding one shard (`stagewise ps serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on, e.g. `127.0.0.1:50051` (port 0: any free port).
    pub listen: String,
    /// The server core.
    pub server: ServerConfig,
    /// Parameters of the whole model (all shards).
    pub num_params: usize,
    /// Initial values of the whole model when not resumed and none are given.
    pub init: ParamInit,
    /// This server's shard index, `0 <= shard_index < num_shards`.
    pub shard_index: u32,
    /// Number of shards the parameters are split into by index range.
    pub num_shards: u32,
    /// Shared secret required from workers (none configured: anyone may connect).
    pub auth: AuthConfig,
    /// Serve over TLS.
    pub tls: Option<ServerTlsConfig>,
    /// Bytes of floats per pulled chunk (multiple of 4, at most `max_message_bytes − 1024`).
    pub max_chunk_bytes: usize,
    /// Largest message accepted, bytes (bigger pushed chunks are refused by tonic).
    pub max_message_bytes: usize,
    /// After the update budget is reached, keep answering for this long (so workers learn it),
    /// then stop, ms. `None`: serve until shut down.
    pub exit_after_finish_ms: Option<u64>,
    /// Where to write metrics when the server stops.
    pub metrics_dir: Option<PathBuf>,
    /// At shutdown, how long calls in flight may take to finish before the server stops
    /// waiting for them and writes its final checkpoint, ms (waiting pulls end at once).
    pub shutdown_grace_ms: u64,
    /// A push stream that sends nothing for this long is dropped (ABORTED, nothing applied),
    /// ms.
    pub push_idle_timeout_ms: u64,
    /// Most pushes received at once, in total; more are refused with RESOURCE_EXHAUSTED. Each
    /// holds a shard-sized buffer: memory for pushes stays below this × the shard's bytes.
    pub max_concurrent_pushes: usize,
    /// Most pushes received at once from one worker id (RESOURCE_EXHAUSTED beyond).
    pub max_pushes_per_worker: usize,
    /// What workers must agree on; a worker whose digests differ is refused.
    pub digests: RunDigests,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            server: ServerConfig::default(),
            num_params: 0,
            init: ParamInit::default(),
            shard_index: 0,
            num_shards: 1,
            auth: AuthConfig::default(),
            tls: None,
            max_chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            exit_after_finish_ms: Some(2_000),
            metrics_dir: None,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            push_idle_timeout_ms: DEFAULT_PUSH_IDLE_TIMEOUT_MS,
            max_concurrent_pushes: DEFAULT_MAX_CONCURRENT_PUSHES,
            max_pushes_per_worker: DEFAULT_MAX_PUSHES_PER_WORKER,
            digests: RunDigests::default(),
        }
    }
}

impl ServeConfig {
    /// Checks the fields, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if self.num_params == 0 {
            return Err(ConfigError::new("num_params", "must be >= 1"));
        }
        for (field, v) in [
            ("push_idle_timeout_ms", self.push_idle_timeout_ms as usize),
            ("max_concurrent_pushes", self.max_concurrent_pushes),
            ("max_pushes_per_worker", self.max_pushes_per_worker),
        ] {
            if v == 0 {
                return Err(ConfigError::new(field, "must be >= 1"));
            }
        }
        if self.num_shards == 0 {
            return Err(ConfigError::new("num_shards", "must be >= 1"));
        }
        if self.shard_index >= self.num_shards {
            return Err(ConfigError::new(
                "shard_index",
                format!(
                    "{} is not below num_shards = {}",
                    self.shard_index, self.num_shards
                ),
            ));
        }
        if self.num_shards as usize > self.num_params {
            return Err(ConfigError::new(
                "num_shards",
                "more shards than parameters",
            ));
        }
        check_chunk(self.max_chunk_bytes, self.max_message_bytes)
    }
}

fn check_chunk(chunk: usize, message: usize) -> Result<(), ConfigError> {
    if chunk == 0 || !chunk.is_multiple_of(4) {
        return Err(ConfigError::new(
            "max_chunk_bytes",
            "must be a positive multiple of 4",
        ));
    }
    if message < 2048 || chunk > message - 1024 {
        return Err(ConfigError::new(
            "max_chunk_bytes",
            format!("{chunk} does not fit max_message_bytes = {message} with 1 KiB for framing"),
        ));
    }
    Ok(())
}

/// Checks a server URL: `http://` or `https://`, a host, and a port in 1..=65535 when one is
/// given (the error names the field `servers` and says what is wrong).
pub fn check_server_url(url: &str) -> Result<(), ConfigError> {
    let bad = |why: String| Err(ConfigError::new("servers", format!("'{url}' {why}")));
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad(format!(
            "has no scheme: write http://{url} (or https://{url} with TLS)"
        ));
    };
    if scheme != "http" && scheme != "https" {
        return bad(format!(
            "has the scheme '{scheme}'; only http:// and https:// (TLS) are served"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, after)) if after.is_empty() || after.starts_with(':') => {
                (h, after.strip_prefix(':'))
            }
            _ => return bad("has a malformed IPv6 address (write [addr]:port)".into()),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return bad("has no host".into());
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return bad(format!(
                "has the port '{p}'; a port is a number from 1 to 65535"
            ));
        }
    }
    Ok(())
}

/// A worker process talking to every shard over gRPC (`stagewise ps worker`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// One URL per shard, any order (e.g. `http://127.0.0.1:50051`, `https://...` with TLS).
    pub servers: Vec<String>,
    /// This worker's id (for staleness metrics; a restarted worker may reuse it).
    pub worker_id: u32,
    /// Model id to present.
    pub model_id: String,
    /// Shared secret to present.
    pub auth: AuthConfig,
    /// TLS settings (for `https://` URLs).
    pub tls: Option<ClientTlsConfig>,
    /// Stop after this many pushes (`None`: until the server finishes).
    pub max_pushes: Option<u64>,
    /// Stop after this many seconds.
    pub max_seconds: Option<f64>,
    /// Bytes of floats per pushed chunk (multiple of 4).
    pub max_chunk_bytes: usize,
    /// Largest message accepted, bytes.
    pub max_message_bytes: usize,
    /// Keep retrying the first connection for this long, ms (servers may still be starting).
    pub connect_timeout_ms: u64,
    /// How gradients travel: `f32` (exact) or `bf16` (half the bytes; the server widens them
    /// back to f32 before applying them).
    pub grad_wire: WireFloat,
    /// How parameters travel: `f32` (exact) or `bf16` (half the bytes; the worker computes its
    /// gradient at the bfloat16-rounded parameters, the server keeps f32 ones).
    pub param_wire: WireFloat,
    /// What the servers must agree on; a server whose digests differ is refused.
    pub digests: RunDigests,
    /// After losing a server (UNAVAILABLE: it stopped, crashed or restarts), keep
    /// reconnecting, with backoff, for this long, ms; then go on from the version it serves
    /// (0: give up at once).
    pub reconnect_timeout_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            servers: vec!["http://127.0.0.1:50051".into()],
            worker_id: 0,
            model_id: "model".into(),
            auth: AuthConfig::default(),
            tls: None,
            max_pushes: None,
            max_seconds: None,
            max_chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout_ms: 30_000,
            grad_wire: WireFloat::F32,
            param_wire: WireFloat::F32,
            digests: RunDigests::default(),
            reconnect_timeout_ms: DEFAULT_RECONNECT_TIMEOUT_MS,
        }
    }
}

/// Default [`WorkerConfig::reconnect_timeout_ms`]: long enough for a server to be restarted
/// from its checkpoint by a scheduler.
pub const DEFAULT_RECONNECT_TIMEOUT_MS: u64 = 120_000;

impl WorkerConfig {
    /// Checks the fields, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::new("servers", "give at least one server URL"));
        }
        for url in &self.servers {
            check_server_url(url)?;
        }
        if self.model_id.is_empty() {
            return Err(ConfigError::new("model_id", "must not be empty"));
        }
        if let Some(s) = self.max_seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(ConfigError::new(
                    "max_seconds",
                    "must be a finite number > 0",
                ));
            }
        }
        check_chunk(self.max_chunk_bytes, self.max_message_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let mut c = ServeConfig {
            num_params: 10,
            ..Default::default()
        };
        c.validate().unwrap();
        c.shard_index = 3;
        assert_eq!(c.validate().unwrap_err().field, "shard_index");
        c.shard_index = 0;
        c.server.policy = PolicyConfig::Sync { workers: 0 };
        assert_eq!(c.validate().unwrap_err().field, "policy.workers");
        c.server.policy = PolicyConfig::Asgd;
        c.max_chunk_bytes = 7;
        assert_eq!(c.validate().unwrap_err().field, "max_chunk_bytes");
    }

    #[test]
    fn server_urls_need_a_scheme_a_host_and_a_valid_port() {
        for ok in [
            "http://127.0.0.1:50051",
            "https://ps-host:443/",
            "http://[::1]:50051",
            "http://ps-host",
        ] {
            check_server_url(ok).unwrap();
        }
        for (bad, says) in [
            (
                "127.0.0.1:50051",
                "has no scheme: write http://127.0.0.1:50051",
            ),
            ("ps-host", "has no scheme"),
            ("ftp://ps-host:21", "only http:// and https://"),
            ("http://ps-host:99999", "port '99999'"),
            ("http://ps-host:0", "port '0'"),
            ("http://ps-host:port", "port 'port'"),
            ("http://:50051", "has no host"),
            ("http://[::1:50051", "IPv6"),
        ] {
            let e = check_server_url(bad).unwrap_err();
            assert_eq!(e.field, "servers");
            assert!(e.reason.contains(says), "{bad}: {e}");
        }
        let c = WorkerConfig {
            servers: vec!["http://a:1".into(), "b:2".into()],
            ..WorkerConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .reason
            .contains("'b:2' has no scheme"));
    }

    #[test]
    fn json_round_trip_with_defaults() {
        let c: ServerConfig = serde_json::from_str(
            r#"{"policy": {"kind": "bounded", "max_staleness": 3, "on_stale": "wait"},
                "schedule": {"kind": "constant", "lr": 0.05, "momentum": 0.9, "nu": 0.7}}"#,
        )
        .unwrap();
        assert_eq!(
            c.policy,
            PolicyConfig::Bounded {
                max_staleness: 3,
                on_stale: OnStale::Wait
            }
        );
        assert_eq!(c.model_id, "model");
        let back: ServerConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<ServerConfig>(r#"{"polcy": {"kind": "asgd"}}"#).is_err());
    }
}
