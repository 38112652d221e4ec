//! The parameter server core, independent of any transport.
//!
//! [`ParamServer`] holds one shard's flat f32 parameters, the optimizer state and a version
//! counter behind a mutex. A worker pulls `(parameters, version)`, computes a gradient and
//! pushes `(gradient, pulled version)`; the server applies each push as it arrives according to
//! its [`PolicyConfig`](crate::config::PolicyConfig), records its staleness
//! τ = current version − pulled version, checkpoints periodically and hands copies of the
//! parameters to an [`Evaluator`] at intervals. Both the in-process transport (threads) and the
//! gRPC service call it.
//!
//! Validation (length, finiteness, version) happens before anything changes: a refused push
//! leaves parameters, optimizer state and version exactly as they were.

mod policy;
mod state;

pub use state::PushOutcome;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stagewise_core::optim::{check_finite, QhmParams};
use stagewise_core::record::RunKind;

use crate::checkpoint::Checkpoint;
use crate::config::{CheckpointConfig, ServerConfig};
use crate::error::{CheckpointError, ConfigError, PsError, PushError};
use crate::gradient::{BatchStats, Evaluator};
use crate::metrics::{Metrics, PushKind, Refusals, Summary};
use crate::shard::ShardRange;
use policy::Policy;
use state::ShardState;

/// A pull: who asks and which version it needs at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullRequest {
    /// The worker's id.
    pub worker_id: u32,
    /// Wait until the version is at least this (0: at once).
    pub min_version: u64,
    /// Longest wait (`None`: the server's `wait_timeout_ms`).
    pub wait: Option<Duration>,
}

/// What a pull returns besides the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullInfo {
    /// Version of the parameters returned.
    pub version: u64,
    /// The server has spent its update budget: the worker should stop.
    pub finished: bool,
}

/// A push as the server sees it.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// The worker's id.
    pub worker_id: u32,
    /// The version the gradient was computed on.
    pub pulled_version: u64,
    /// The gradient (the shard's length).
    pub grads: &'a [f32],
    /// The worker's batch statistics.
    pub stats: BatchStats,
}

/// Evaluations run on their own thread; dropping this or calling [`EvalHandle::finish`] stops
/// it.
pub struct EvalHandle {
    sender: Option<EvalSender>,
    thread: Option<JoinHandle<Box<dyn Evaluator>>>,
    server: Arc<ParamServer>,
}

impl EvalHandle {
    /// Stops the evaluation thread (after the evaluation in progress) and returns the
    /// evaluator.
    pub fn finish(mut self) -> Option<Box<dyn Evaluator>> {
        self.stop()
    }

    fn stop(&mut self) -> Option<Box<dyn Evaluator>> {
        if let Ok(mut tx) = self.server.eval_tx.lock() {
            *tx = None;
        }
        self.sender = None;
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for EvalHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One shard of the parameter server.
pub struct ParamServer {
    model_id: String,
    policy_name: &'static str,
    total_params: usize,
    shard: ShardRange,
    wait_timeout: Duration,
    state: Mutex<ShardState>,
    changed: Condvar,
    /// Called after every change a waiting pull may wait for (async transports wake on it).
    listeners: Mutex<Vec<ChangeListener>>,
    /// Set by [`ParamServer::begin_shutdown`]: waiting pulls end.
    shutting_down: AtomicBool,
    metrics: Arc<Mutex<Metrics>>,
    checkpoint: Option<CheckpointConfig>,
    checkpoint_busy: AtomicBool,
    eval_every: Option<u64>,
    eval_tx: Mutex<Option<EvalSender>>,
}

/// A callback run after every change of the parameters or of a pull's conditions.
pub type ChangeListener = Arc<dyn Fn() + Send + Sync>;

/// Where a pull stands in its wait: when it started, its deadline (the request's wait capped
/// at the server's `wait_timeout_ms`) and whether it gave up on the SSP gate.
#[derive(Debug, Clone, Copy)]
pub struct PullWait {
    start: Instant,
    deadline: Instant,
    gate_given_up: bool,
}

/// Sends `(version, parameters)` to the evaluation thread.
type EvalSender = SyncSender<(u64, Vec<f32>)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-applied update (updates are applied
    // by the optimizer in one call), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ParamServer {
    /// A server for `shard` of a model of `total_params` parameters, starting from `initial`
    /// (the shard's values), or from the checkpoint when `config.checkpoint.resume` is set and
    /// the file exists.
    pub fn new(
        config: &ServerConfig,
        total_params: usize,
        shard: ShardRange,
        initial: Vec<f32>,
    ) -> Result<Self, PsError> {
        config.validate()?;
        if initial.len() != shard.len || shard.end() > total_params {
            return Err(ConfigError::new(
                "initial",
                format!(
                    "{} initial values for a shard of {} ({}..{} of {total_params})",
                    initial.len(),
                    shard.len,
                    shard.start,
                    shard.end()
                ),
            )
            .into());
        }
        let schedule = config.schedule.build()?;
        let optimizer = config
            .optimizer
            .build::<f32>(shard.len, schedule.at(0))
            .map_err(|e| ConfigError::new("optimizer", e.to_string()))?;
        let optimizer_name = optimizer.name();
        let max_updates = config.max_updates.or_else(|| schedule.total_updates());
        let policy = Policy::new(&config.policy, shard.len);
        let mut state = ShardState::new(
            initial,
            optimizer,
            schedule,
            0,
            policy,
            max_updates,
            Duration::from_millis(config.worker_timeout_ms),
        );
        if let Some(ck) = config
            .checkpoint
            .as_ref()
            .filter(|c| c.resume && c.path.exists())
        {
            let loaded = Checkpoint::load(&ck.path)?;
            let mismatch = |reason: String| CheckpointError::Mismatch {
                path: ck.path.clone(),
                reason,
            };
            if loaded.model_id != config.model_id {
                return Err(mismatch(format!(
                    "model id '{}' in the checkpoint, '{}' configured",
                    loaded.model_id, config.model_id
                ))
                .into());
            }
            if loaded.shard != shard || loaded.total_params != total_params {
                return Err(mismatch(format!(
                    "shard {:?} of {} in the checkpoint, {:?} of {total_params} configured",
                    loaded.shard, loaded.total_params, shard
                ))
                .into());
            }
            state.restore(loaded).map_err(mismatch)?;
            tracing::info!(version = state.version, path = %ck.path.display(), "resumed from checkpoint");
        }
        let metrics = Metrics::new(
            &config.model_id,
            config.policy.name(),
            config.log_every,
            state.version,
        )
        .with_run(optimizer_name, config.schedule.examples_per_epoch());
        Ok(Self {
            model_id: config.model_id.clone(),
            policy_name: config.policy.name(),
            total_params,
            shard,
            wait_timeout: Duration::from_millis(config.wait_timeout_ms),
            state: Mutex::new(state),
            changed: Condvar::new(),
            listeners: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            metrics: Arc::new(Mutex::new(metrics)),
            checkpoint: config.checkpoint.clone(),
            checkpoint_busy: AtomicBool::new(false),
            eval_every: config.eval_every,
            eval_tx: Mutex::new(None),
        })
    }

    /// The model id pushes and pulls must name.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Checks a model id, counting a mismatch.
    pub fn check_model(&self, id: &str) -> Result<(), PushError> {
        if id == self.model_id {
            Ok(())
        } else {
            self.count_refusal(|r| r.unknown_model += 1);
            Err(PushError::UnknownModel {
                expected: self.model_id.clone(),
                got: id.to_string(),
            })
        }
    }

    /// The policy's short name.
    pub fn policy_name(&self) -> &'static str {
        self.policy_name
    }

    /// Parameters of the whole model.
    pub fn total_params(&self) -> usize {
        self.total_params
    }

    /// This shard's index range.
    pub fn shard(&self) -> ShardRange {
        self.shard
    }

    /// The current version (updates applied, counting those before a resume).
    pub fn version(&self) -> u64 {
        lock(&self.state).version
    }

    /// True once the update budget is spent.
    pub fn is_finished(&self) -> bool {
        lock(&self.state).finished()
    }

    /// Number of DC-ASGD parameter snapshots held now.
    pub fn snapshots_held(&self) -> usize {
        lock(&self.state).policy.snapshots_held()
    }

    /// A copy of the current parameters and their version.
    pub fn snapshot(&self) -> (u64, Vec<f32>) {
        let st = lock(&self.state);
        (st.version, st.params.clone())
    }

    /// A copy of the parameters to evaluate and export (the schedule-free average x when the
    /// optimizer has one, else [`ParamServer::snapshot`]'s) and their version.
    pub fn eval_snapshot(&self) -> (u64, Vec<f32>) {
        let st = lock(&self.state);
        (st.version, st.eval_params().to_vec())
    }

    /// The longest `req` may wait: its own wait, capped at the server's `wait_timeout_ms`
    /// (a client cannot hold a pull open for longer).
    pub fn pull_wait(&self, req: &PullRequest) -> Duration {
        req.wait
            .map_or(self.wait_timeout, |w| w.min(self.wait_timeout))
    }

    /// Starts the clock of a pull's wait ([`ParamServer::pull_wait`]).
    pub fn begin_pull(&self, req: &PullRequest) -> PullWait {
        let start = Instant::now();
        PullWait {
            start,
            deadline: start + self.pull_wait(req),
            gate_given_up: false,
        }
    }

    /// One look, without waiting, at whether a pull can be answered: `None` when it can (or
    /// its deadline has passed: [`ParamServer::finish_pull`] then answers at once), else how
    /// long to wait at most before looking again (a change notifies the listeners earlier).
    pub fn pull_ready(&self, req: &PullRequest, wait: &PullWait) -> Option<Duration> {
        let mut st = lock(&self.state);
        st.touch(req.worker_id);
        let finished = st.finished();
        let version_ok = st.version >= req.min_version || finished;
        let gate_ok = wait.gate_given_up || finished || st.ssp_ready(req.worker_id);
        let now = Instant::now();
        if (version_ok && gate_ok) || now >= wait.deadline {
            return None;
        }
        // Re-check at least every 50 ms: workers can become inactive without a signal.
        Some((wait.deadline - now).min(Duration::from_millis(50)))
    }

    /// Waits as `req` asks (at most [`ParamServer::pull_wait`]), then calls `f` with the
    /// version and the parameters, under the lock (keep `f` to a copy or an encode).
    pub fn pull_with<R>(
        &self,
        req: PullRequest,
        f: impl FnOnce(u64, &[f32]) -> R,
    ) -> Result<(PullInfo, R), PsError> {
        self.finish_pull(req, self.begin_pull(&req), f)
    }

    /// [`ParamServer::pull_with`] for a pull whose wait started at `wait` (blocks the thread
    /// until the deadline at most; async transports wait with [`ParamServer::pull_ready`]
    /// first, so that this returns at once).
    pub fn finish_pull<R>(
        &self,
        req: PullRequest,
        wait: PullWait,
        f: impl FnOnce(u64, &[f32]) -> R,
    ) -> Result<(PullInfo, R), PsError> {
        let PullWait {
            start,
            deadline,
            mut gate_given_up,
        } = wait;
        let mut st = lock(&self.state);
        loop {
            st.touch(req.worker_id);
            let finished = st.finished();
            let version_ok = st.version >= req.min_version || finished;
            let gate_ok = gate_given_up || finished || st.ssp_ready(req.worker_id);
            if version_ok && gate_ok {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                if !version_ok && st.policy.round_pending() {
                    // A synchronous round some worker never completed: apply what is there.
                    let version = st.version;
                    if st.flush_round()? {
                        tracing::warn!(
                            version,
                            "synchronous round incomplete at timeout; applied partially"
                        );
                        let scheduled = st.last_scheduled;
                        let v = st.version;
                        drop(st);
                        self.notify_change();
                        self.after_update(v, scheduled);
                        st = lock(&self.state);
                        continue;
                    }
                }
                if version_ok {
                    // SSP gate: the slow workers stayed slow for the whole wait; go on.
                    gate_given_up = true;
                    continue;
                }
                return Err(PsError::WaitTimeout {
                    wanted: req.min_version,
                    current: st.version,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            if self.is_shutting_down() {
                return Err(PsError::ShuttingDown);
            }
            // Re-check at least every 50 ms: workers can become inactive without a signal.
            let step = (deadline - now).min(Duration::from_millis(50));
            st = self
                .changed
                .wait_timeout(st, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let version = st.version;
        let finished = st.finished();
        let ShardState { params, policy, .. } = &mut *st;
        policy.on_pull(version, params);
        let r = f(version, &st.params);
        Ok((PullInfo { version, finished }, r))
    }

    /// Calls `listener` after every change a waiting pull may be waiting for (an applied
    /// update, a shutdown), from the thread that made it: keep it to a wake-up.
    pub fn subscribe(&self, listener: ChangeListener) {
        lock(&self.listeners).push(listener);
    }

    fn notify_change(&self) {
        self.changed.notify_all();
        for l in lock(&self.listeners).iter() {
            l();
        }
    }

    /// Makes waiting pulls end (with [`PsError::ShuttingDown`]) and new ones not wait; pushes
    /// are still applied until [`ParamServer::close`].
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.notify_change();
    }

    /// True after [`ParamServer::begin_shutdown`].
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Refuses every later push ([`PushError::ShuttingDown`]), so that the final checkpoint
    /// written after this holds every applied update.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.begin_shutdown();
    }

    /// Copies the parameters into `out` (the shard's length) after waiting as `req` asks.
    pub fn pull_into(&self, req: PullRequest, out: &mut [f32]) -> Result<PullInfo, PsError> {
        if out.len() != self.shard.len {
            return Err(ConfigError::new(
                "out",
                format!("buffer of {} for a shard of {}", out.len(), self.shard.len),
            )
            .into());
        }
        self.pull_with(req, |_, p| out.copy_from_slice(p))
            .map(|(info, ())| info)
    }

    /// Applies, buffers or drops a push. Refused pushes (wrong length, NaN/Inf, version from
    /// the future) are counted and leave everything unchanged.
    pub fn push(&self, push: Push<'_>) -> Result<PushOutcome, PushError> {
        if push.grads.len() != self.shard.len {
            self.count_refusal(|r| r.wrong_length += 1);
            return Err(PushError::LengthMismatch {
                expected: self.shard.len,
                got: push.grads.len(),
            });
        }
        self.check_finite_at(push.grads, 0)?;
        self.push_finite(push)
    }

    /// Checks that `grads`, the floats of a gradient from index `offset` on, are finite;
    /// counts and reports the first that is not. Transports that receive a gradient in pieces
    /// check each piece as it lands (while it is in cache) and then call
    /// [`ParamServer::push_finite`].
    pub(crate) fn check_finite_at(&self, grads: &[f32], offset: usize) -> Result<(), PushError> {
        check_finite(grads).map_err(|e| {
            self.count_refusal(|r| r.non_finite += 1);
            match e {
                stagewise_core::optim::OptimError::NonFiniteGradient { index, value } => {
                    PushError::NonFinite {
                        index: index + offset,
                        value,
                    }
                }
                other => PushError::Optimizer(other),
            }
        })
    }

    /// [`ParamServer::push`] for a gradient already checked to be finite
    /// ([`ParamServer::check_finite_at`] over all of it).
    pub(crate) fn push_finite(&self, push: Push<'_>) -> Result<PushOutcome, PushError> {
        if push.grads.len() != self.shard.len {
            self.count_refusal(|r| r.wrong_length += 1);
            return Err(PushError::LengthMismatch {
                expected: self.shard.len,
                got: push.grads.len(),
            });
        }
        let mut st = lock(&self.state);
        // A finished server answers `Finished` to the end, so that late workers stop.
        if st.closed && !st.finished() {
            drop(st);
            self.count_refusal(|r| r.shutting_down += 1);
            return Err(PushError::ShuttingDown);
        }
        let result = st.push(push.worker_id, push.pulled_version, push.grads);
        let scheduled = st.last_scheduled;
        drop(st);
        let (outcome, missing) = match result {
            Ok(x) => x,
            Err(e) => {
                self.count_refusal(|r| match e {
                    PushError::FutureVersion { .. } => r.future_version += 1,
                    PushError::LengthMismatch { .. } => r.wrong_length += 1,
                    _ => r.non_finite += 1,
                });
                return Err(e);
            }
        };
        let kind = match outcome {
            PushOutcome::Applied { .. } => Some(PushKind::Applied),
            PushOutcome::Buffered { .. } => Some(PushKind::Buffered),
            PushOutcome::RefusedStale { .. } => Some(PushKind::RefusedStale),
            PushOutcome::Finished { .. } => None,
        };
        if let Some(kind) = kind {
            let mut m = lock(&self.metrics);
            m.record_push(push.worker_id, outcome.staleness(), kind, &push.stats);
            if kind == PushKind::RefusedStale {
                m.refusals.stale += 1;
            }
            if missing {
                m.refusals.dc_missing_snapshot += 1;
            }
        }
        if let PushOutcome::Applied { version, .. } = outcome {
            self.notify_change();
            self.after_update(version, scheduled);
        }
        Ok(outcome)
    }

    /// Metrics row, evaluation and checkpoint bookkeeping after reaching `version`.
    fn after_update(&self, version: u64, scheduled: QhmParams) {
        lock(&self.metrics).record_update(version, scheduled);
        if self.eval_every.is_some_and(|k| version.is_multiple_of(k)) {
            let tx = lock(&self.eval_tx).clone();
            if let Some(tx) = tx {
                let params = lock(&self.state).eval_params().to_vec();
                if let Err(TrySendError::Full(_)) = tx.try_send((version, params)) {
                    tracing::debug!(version, "evaluator busy; skipped this evaluation");
                }
            }
        }
        if let Err(e) = self.maybe_checkpoint(false) {
            tracing::error!(error = %e, "checkpoint failed");
        }
    }

    fn maybe_checkpoint(&self, force: bool) -> Result<bool, CheckpointError> {
        let Some(cfg) = &self.checkpoint else {
            return Ok(false);
        };
        if self.checkpoint_busy.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let ck = {
            let st = lock(&self.state);
            let (last_v, last_t) = st.last_checkpoint;
            let due = force
                || cfg.every_updates.is_some_and(|k| st.version >= last_v + k)
                || cfg
                    .every_secs
                    .is_some_and(|s| st.version > last_v && last_t.elapsed().as_secs_f64() >= s);
            due.then(|| st.checkpoint(&self.model_id, self.total_params, self.shard))
        };
        let result = match ck {
            Some(ck) => {
                let version = ck.version;
                let r = ck.save(&cfg.path);
                if r.is_ok() {
                    lock(&self.state).last_checkpoint = (version, Instant::now());
                    tracing::debug!(version, "checkpoint written");
                }
                r.map(|()| true)
            }
            None => Ok(false),
        };
        self.checkpoint_busy.store(false, Ordering::Release);
        result
    }

    /// Writes a checkpoint now (when checkpoints are configured); returns whether it did.
    pub fn checkpoint_now(&self) -> Result<bool, CheckpointError> {
        // Wait for a checkpoint in progress rather than skip.
        while self.checkpoint_busy.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.maybe_checkpoint(true)
    }

    /// Counts a refusal that happened outside [`ParamServer::push`] (transport errors,
    /// authentication).
    pub fn count_refusal(&self, f: impl FnOnce(&mut Refusals)) {
        f(&mut lock(&self.metrics).refusals);
    }

    /// Refusal counters so far.
    pub fn refusals(&self) -> Refusals {
        lock(&self.metrics).refusals.clone()
    }

    /// The metrics summary now.
    pub fn summary(&self) -> Summary {
        let v = self.version();
        lock(&self.metrics).summary(v)
    }

    /// Runs `f` on the metrics.
    pub fn with_metrics<R>(&self, f: impl FnOnce(&Metrics) -> R) -> R {
        f(&lock(&self.metrics))
    }

    /// Writes the run record (`train.csv`, `eval.csv`, `summary.json`) into `dir`, as a run of
    /// `kind`.
    pub fn write_metrics(&self, dir: &std::path::Path, kind: RunKind) -> Result<Summary, PsError> {
        let (v, done) = {
            let st = lock(&self.state);
            (st.version, st.finished())
        };
        lock(&self.metrics).write(dir, v, kind, done)
    }

    /// Appends `train.csv` and `eval.csv` in `dir` as rows come ([`Metrics::stream_to`]).
    pub fn stream_metrics(&self, dir: &std::path::Path) -> Result<(), PsError> {
        lock(&self.metrics).stream_to(dir)
    }

    /// Evaluates the current parameters now, on the calling thread, and records the result.
    pub fn evaluate_now(&self, evaluator: &mut dyn Evaluator) -> Result<(), PsError> {
        let (version, params) = self.eval_snapshot();
        let at = {
            let mut metrics = lock(&self.metrics);
            metrics.set_model_files(evaluator.writes_model_files());
            metrics.eval_point(version)
        };
        let stats = evaluator.evaluate(&at, &params)?;
        lock(&self.metrics).record_eval(&at, stats);
        Ok(())
    }

    /// Starts evaluating with `evaluator` every `eval_every` updates on a background thread
    /// (an evaluation still running when the next is due makes that one be skipped).
    pub fn attach_evaluator(self: &Arc<Self>, mut evaluator: Box<dyn Evaluator>) -> EvalHandle {
        lock(&self.metrics).set_model_files(evaluator.writes_model_files());
        let (tx, rx) = sync_channel::<(u64, Vec<f32>)>(1);
        *lock(&self.eval_tx) = Some(tx.clone());
        let metrics = Arc::clone(&self.metrics);
        let thread = std::thread::Builder::new()
            .name("ps-eval".into())
            .spawn(move || {
                while let Ok((version, params)) = rx.recv() {
                    let at = lock(&metrics).eval_point(version);
                    match evaluator.evaluate(&at, &params) {
                        Ok(stats) => lock(&metrics).record_eval(&at, stats),
                        Err(e) => tracing::warn!(version, error = %e, "evaluation failed"),
                    }
                }
                evaluator
            })
            .ok();
        EvalHandle {
            sender: Some(tx),
            thread,
            server: Arc::clone(self),
        }
    }

    /// Wakes every waiting pull (e.g. at shutdown).
    pub fn wake_all(&self) {
        self.notify_change();
    }
}
