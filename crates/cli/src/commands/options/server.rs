//! The option groups of a parameter-server run, shared by `stagewise asgd`, `ps serve` and
//! `ps worker`: [`ModelArgs`] (model, plan, data; the same for the server and every worker) and
//! [`ServerArgs`] (policy, optimizer, budget).

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use stagewise_core::optim::OptimizerKind;
use stagewise_core::schedule::{Layout, Plan};
use stagewise_data::Splits;
use stagewise_ps::config::{OnStale, OptimizerConfig, PolicyConfig, ScheduleConfig, ServerConfig};
use stagewise_train::asgd::{BatchSizing, StepClock};
use stagewise_train::model::ModelKind;
use stagewise_train::{DataConfig, TrainConfig};

use super::{choice, optimizer_help, with_default, DataArgs, PlanArgs};

pub use stagewise_core::theory::MAX_WORKERS;

/// The model, its plan and its data: the same for the server and every worker of a run.
#[derive(Args, Debug, Default, Clone, Serialize, Deserialize)]
pub struct ModelArgs {
    #[arg(long, value_parser = choice::<ModelKind>(), help = with_default(
        "Model. BatchNorm statistics (resnet) are not synchronized through the server: \
         prefer mlp or cnn",
        TrainConfig::default().model,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelKind>,

    #[command(flatten)]
    #[serde(flatten)]
    pub plan: PlanArgs,

    /// Every worker gradient on this many examples, whatever the plan's stage batch size
    /// (otherwise the stage's, read at an estimate of the server version).
    #[arg(long, value_name = "B")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_batch: Option<usize>,

    #[command(flatten)]
    #[serde(flatten)]
    pub data: DataArgs,
}

impl ModelArgs {
    /// The architecture.
    pub fn kind(&self) -> ModelKind {
        self.model.unwrap_or(TrainConfig::default().model)
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.data.seed()
    }

    /// The data configuration.
    pub fn data_config(&self) -> DataConfig {
        self.data.data_config()
    }

    /// Loads the train and test splits.
    pub fn load(&self) -> anyhow::Result<(DataConfig, Splits)> {
        let data = self.data_config();
        let splits = data
            .load(self.seed())
            .with_context(|| format!("loading {}", data.dataset))?;
        if splits.train.is_empty() || splits.test.is_empty() {
            bail!(
                "the training set ({}) and the test set ({}) must not be empty",
                splits.train.len(),
                splits.test.len()
            );
        }
        Ok((data, splits))
    }

    /// The plan: from `--plan`, or built by the recipe from the recipe options.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        self.plan.build()
    }

    /// Refuses `--worker-batch 0`.
    pub fn check_worker_batch(&self) -> anyhow::Result<()> {
        if self.worker_batch == Some(0) {
            bail!("--worker-batch 0 is out of range; allowed: >= 1");
        }
        Ok(())
    }

    /// How worker `i`'s batch size is chosen: fixed, or the plan's stage at `clock`.
    pub fn sizing(&self, layout: &Layout, clock: &StepClock) -> anyhow::Result<BatchSizing> {
        Ok(match self.worker_batch {
            Some(0) => bail!("--worker-batch 0 is out of range; allowed: >= 1"),
            Some(b) => BatchSizing::Fixed(b),
            None => BatchSizing::Plan {
                layout: layout.clone(),
                clock: clock.clone(),
            },
        })
    }

    /// The model id servers and workers agree on (the model's name unless given).
    pub fn model_id(&self, explicit: Option<&str>) -> String {
        explicit.map_or_else(|| self.kind().name().to_string(), str::to_string)
    }
}

/// Staleness policies on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Apply every push as it arrives.
    Asgd,
    /// Learning rate α/max(1, τ).
    StalenessAware,
    /// Bounded staleness: refuse (or, with --on-stale wait, SSP-wait) beyond --max-staleness.
    Bounded,
    /// Delay-compensated ASGD with --lambda.
    DcAsgd,
    /// Synchronous rounds of one gradient per worker.
    Sync,
}

/// What bounded staleness does beyond the bound.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnStaleArg {
    /// Drop the push; the worker pulls again.
    Refuse,
    /// SSP clocks: fast workers wait at their pull.
    Wait,
}

/// The parameter server's policy, optimizer and budget.
#[derive(Args, Debug, Default, Clone, Serialize, Deserialize)]
pub struct ServerArgs {
    /// Staleness policy [default: asgd].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyKind>,

    /// Bounded policy: largest staleness s allowed.
    #[arg(long, value_name = "S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_staleness: Option<u64>,

    /// Bounded policy: refuse stale pushes or make fast workers wait (SSP) [default: refuse].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_stale: Option<OnStaleArg>,

    #[arg(long, help = with_default(
        "DC-ASGD: compensation strength λ (λ0 with --dc-adaptive)",
        PolicyConfig::DC_ASGD_LAMBDA,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,

    /// DC-ASGD: adaptive λ_t = λ0/√(MS_t) with this mean-square momentum m.
    #[arg(long, value_name = "M")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dc_adaptive: Option<f64>,

    #[arg(long, help = format!(
        "DC-ASGD: parameter snapshots kept (>= workers avoids uncompensated pushes) \
         [default: max({}, workers)]",
        PolicyConfig::DC_ASGD_MIN_SNAPSHOTS,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dc_snapshots: Option<usize>,

    #[arg(long, value_parser = choice::<OptimizerKind>(), help = optimizer_help(
        "Server optimizer driven by the plan, with the plan's weight decay"
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerKind>,

    /// Stop after this many updates [default: the plan's length in steps].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_updates: Option<u64>,

    /// Evaluate on the test set every K updates (always once at the end).
    #[arg(long, value_name = "K")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,

    #[arg(long, help = with_default(
        "One row of train.csv every this many updates",
        ServerConfig::default().log_every,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_every: Option<u64>,

    /// Evaluation batch size (does not change results) [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_batch: Option<usize>,

    #[arg(long, help = with_default(
        "Longest a pull waits for a synchronous round or an SSP clock, ms",
        ServerConfig::default().wait_timeout_ms,
    ))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_timeout_ms: Option<u64>,
}

impl ServerArgs {
    /// The policy configuration for `workers` workers.
    pub fn policy(&self, workers: usize) -> anyhow::Result<PolicyConfig> {
        let kind = self.policy.unwrap_or(PolicyKind::Asgd);
        let misplaced =
            |flag: &str, needs: &str| anyhow::anyhow!("{flag} applies only to --policy {needs}");
        if kind != PolicyKind::Bounded {
            if self.max_staleness.is_some() {
                return Err(misplaced("--max-staleness", "bounded"));
            }
            if self.on_stale.is_some() {
                return Err(misplaced("--on-stale", "bounded"));
            }
        }
        if kind != PolicyKind::DcAsgd
            && (self.lambda.is_some() || self.dc_adaptive.is_some() || self.dc_snapshots.is_some())
        {
            return Err(misplaced(
                "--lambda/--dc-adaptive/--dc-snapshots",
                "dc-asgd",
            ));
        }
        let policy = match kind {
            PolicyKind::Asgd => PolicyConfig::Asgd,
            PolicyKind::StalenessAware => PolicyConfig::StalenessAware,
            PolicyKind::Bounded => PolicyConfig::Bounded {
                max_staleness: self
                    .max_staleness
                    .context("--policy bounded needs --max-staleness S")?,
                on_stale: match self.on_stale.unwrap_or(OnStaleArg::Refuse) {
                    OnStaleArg::Refuse => OnStale::Refuse,
                    OnStaleArg::Wait => OnStale::Wait,
                },
            },
            PolicyKind::DcAsgd => PolicyConfig::DcAsgd {
                lambda: self.lambda.unwrap_or(PolicyConfig::DC_ASGD_LAMBDA),
                adaptive_momentum: self.dc_adaptive,
                snapshots: self
                    .dc_snapshots
                    .unwrap_or(PolicyConfig::dc_asgd_snapshots(workers)),
            },
            PolicyKind::Sync => PolicyConfig::Sync { workers },
        };
        policy.validate()?;
        Ok(policy)
    }

    /// The server's optimizer.
    pub fn optimizer_kind(&self) -> OptimizerKind {
        self.optimizer.unwrap_or_default()
    }

    /// Whether the synchronous policy is chosen.
    pub fn is_sync(&self) -> bool {
        self.policy == Some(PolicyKind::Sync)
    }

    /// The server core's configuration for `plan` over `n_train` examples.
    pub fn server_config(
        &self,
        model_id: String,
        plan: &Plan,
        n_train: u64,
        workers: usize,
    ) -> anyhow::Result<ServerConfig> {
        let optimizer = OptimizerConfig::for_plan(self.optimizer_kind(), plan);
        if self.max_updates == Some(0) {
            bail!("--max-updates 0 is out of range; allowed: >= 1");
        }
        let config = ServerConfig {
            model_id,
            policy: self.policy(workers)?,
            optimizer,
            schedule: ScheduleConfig::Plan {
                plan: plan.clone(),
                n_train,
            },
            max_updates: self.max_updates,
            eval_every: self.eval_every,
            ..ServerConfig::default()
        };
        let config = ServerConfig {
            wait_timeout_ms: self.wait_timeout_ms.unwrap_or(config.wait_timeout_ms),
            log_every: self.log_every.unwrap_or(config.log_every),
            ..config
        };
        config.validate()?;
        Ok(config)
    }

    /// The evaluation batch size.
    pub fn eval_batch(&self) -> anyhow::Result<usize> {
        match self.eval_batch.unwrap_or(1000) {
            0 => bail!("--eval-batch 0 is out of range; allowed: >= 1"),
            b => Ok(b),
        }
    }
}
