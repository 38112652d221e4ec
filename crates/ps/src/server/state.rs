//! One shard's training state: parameters, optimizer, version, policy, worker clocks.
//!
//! Not thread-safe on its own: [`super::ParamServer`] holds it behind a mutex. Every method
//! either applies a whole update or leaves the parameters untouched.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use stagewise_core::optim::{Optimizer, QhmParams};

use super::policy::{Decision, Policy};
use crate::checkpoint::Checkpoint;
use crate::error::PushError;
use crate::schedule::HyperSchedule;
use crate::shard::ShardRange;

/// What became of a valid push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Applied; the server is now at `version`.
    Applied {
        /// Version after the update.
        version: u64,
        /// Staleness τ of the push.
        staleness: u64,
    },
    /// Kept for the current synchronous round.
    Buffered {
        /// Version (unchanged).
        version: u64,
        /// Staleness τ (0 for a round's pushes).
        staleness: u64,
    },
    /// Dropped as too stale (bounded staleness, or a past synchronous round).
    RefusedStale {
        /// Version (unchanged).
        version: u64,
        /// Staleness τ of the push.
        staleness: u64,
    },
    /// The server reached its update budget; nothing was applied.
    Finished {
        /// Final version.
        version: u64,
    },
}

impl PushOutcome {
    /// The server version after the push.
    pub fn version(&self) -> u64 {
        match *self {
            Self::Applied { version, .. }
            | Self::Buffered { version, .. }
            | Self::RefusedStale { version, .. }
            | Self::Finished { version } => version,
        }
    }

    /// The push's staleness (0 for `Finished`).
    pub fn staleness(&self) -> u64 {
        match *self {
            Self::Applied { staleness, .. }
            | Self::Buffered { staleness, .. }
            | Self::RefusedStale { staleness, .. } => staleness,
            Self::Finished { .. } => 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    pushes: u64,
    last_seen: Instant,
}

/// The state of one shard.
pub(crate) struct ShardState {
    pub(crate) params: Vec<f32>,
    optimizer: Box<dyn Optimizer<f32>>,
    schedule: Box<dyn HyperSchedule>,
    pub(crate) version: u64,
    pub(crate) policy: Policy,
    max_updates: Option<u64>,
    clocks: HashMap<u32, Clock>,
    worker_timeout: Duration,
    /// Scheduled values used by the last update.
    pub(crate) last_scheduled: QhmParams,
    /// Version and time of the last checkpoint.
    pub(crate) last_checkpoint: (u64, Instant),
    /// Set at shutdown: pushes are refused from then on.
    pub(crate) closed: bool,
}

impl ShardState {
    pub(crate) fn new(
        params: Vec<f32>,
        optimizer: Box<dyn Optimizer<f32>>,
        schedule: Box<dyn HyperSchedule>,
        version: u64,
        policy: Policy,
        max_updates: Option<u64>,
        worker_timeout: Duration,
    ) -> Self {
        let last_scheduled = schedule.at(version);
        Self {
            params,
            optimizer,
            schedule,
            version,
            policy,
            max_updates,
            clocks: HashMap::new(),
            worker_timeout,
            last_scheduled,
            last_checkpoint: (version, Instant::now()),
            closed: false,
        }
    }

    /// The parameters to evaluate: the optimizer's evaluation point (schedule-free x) when it
    /// has one, else the parameters workers pull.
    pub(crate) fn eval_params(&self) -> &[f32] {
        self.optimizer.eval_params().unwrap_or(&self.params)
    }

    /// True once the update budget is spent.
    pub(crate) fn finished(&self) -> bool {
        self.max_updates.is_some_and(|m| self.version >= m)
    }

    /// Notes that `worker` is alive.
    pub(crate) fn touch(&mut self, worker: u32) {
        let now = Instant::now();
        self.clocks
            .entry(worker)
            .and_modify(|c| c.last_seen = now)
            .or_insert(Clock {
                pushes: 0,
                last_seen: now,
            });
    }

    /// SSP gate: may `worker` pull now? Always true except for bounded staleness with
    /// waiting, where its push count may lead the slowest active worker's by at most `s`.
    pub(crate) fn ssp_ready(&self, worker: u32) -> bool {
        let Some(s) = self.policy.ssp_wait_bound() else {
            return true;
        };
        let Some(mine) = self.clocks.get(&worker) else {
            return true;
        };
        let now = Instant::now();
        let slowest = self
            .clocks
            .iter()
            .filter(|(id, c)| {
                **id != worker && now.duration_since(c.last_seen) < self.worker_timeout
            })
            .map(|(_, c)| c.pushes)
            .min();
        slowest.is_none_or(|slow| mine.pushes <= slow + s)
    }

    /// Applies (or buffers, or drops) a push whose gradient is finite. `grads` must be checked
    /// for finiteness by the caller; length and version are checked here.
    pub(crate) fn push(
        &mut self,
        worker: u32,
        pulled: u64,
        grads: &[f32],
    ) -> Result<(PushOutcome, bool), PushError> {
        if grads.len() != self.params.len() {
            return Err(PushError::LengthMismatch {
                expected: self.params.len(),
                got: grads.len(),
            });
        }
        if pulled > self.version {
            return Err(PushError::FutureVersion {
                pulled,
                current: self.version,
            });
        }
        if self.finished() {
            return Ok((
                PushOutcome::Finished {
                    version: self.version,
                },
                false,
            ));
        }
        let tau = self.version - pulled;
        self.touch(worker);
        let (decision, missing) =
            self.policy
                .decide(worker, pulled, self.version, grads, &self.params);
        let outcome = match decision {
            Decision::Drop => PushOutcome::RefusedStale {
                version: self.version,
                staleness: tau,
            },
            Decision::Buffer => {
                self.bump_clock(worker);
                PushOutcome::Buffered {
                    version: self.version,
                    staleness: tau,
                }
            }
            Decision::Apply {
                lr_scale,
                use_scratch,
            } => {
                self.apply(grads, lr_scale, use_scratch)?;
                self.bump_clock(worker);
                PushOutcome::Applied {
                    version: self.version,
                    staleness: tau,
                }
            }
        };
        Ok((outcome, missing))
    }

    fn bump_clock(&mut self, worker: u32) {
        if let Some(c) = self.clocks.get_mut(&worker) {
            c.pushes += 1;
        }
    }

    /// Applies a synchronous round that is still incomplete (a waiting pull timed out).
    pub(crate) fn flush_round(&mut self) -> Result<bool, PushError> {
        if !self.policy.round_pending() || self.finished() {
            return Ok(false);
        }
        self.policy.average_round();
        self.apply(&[], 1.0, true)?;
        Ok(true)
    }

    fn apply(&mut self, grads: &[f32], lr_scale: f64, use_scratch: bool) -> Result<(), PushError> {
        let sched = self.schedule.at(self.version);
        self.optimizer.set_scheduled(QhmParams {
            lr: sched.lr * lr_scale,
            ..sched
        })?;
        if use_scratch {
            // Compensated or averaged gradients can overflow: check them (refusal leaves the
            // parameters untouched).
            self.optimizer
                .step(&mut self.params, self.policy.scratch())?;
        } else {
            self.optimizer.step_unchecked(&mut self.params, grads);
        }
        self.version += 1;
        self.last_scheduled = sched;
        Ok(())
    }

    /// A checkpoint of this shard.
    pub(crate) fn checkpoint(&self, model_id: &str, total: usize, shard: ShardRange) -> Checkpoint {
        Checkpoint {
            model_id: model_id.to_string(),
            total_params: total,
            shard,
            version: self.version,
            optimizer_name: self.optimizer.name().to_string(),
            params: self.params.clone(),
            optimizer: self.optimizer.state(),
            policy: self.policy.state(),
        }
    }

    /// Restores a checkpoint (already checked to fit this shard).
    pub(crate) fn restore(&mut self, ck: Checkpoint) -> Result<(), String> {
        if ck.optimizer_name != self.optimizer.name() {
            return Err(format!(
                "optimizer '{}' in the checkpoint, '{}' configured",
                ck.optimizer_name,
                self.optimizer.name()
            ));
        }
        if ck.params.len() != self.params.len() {
            return Err("parameter count differs".into());
        }
        self.optimizer
            .load_state(ck.optimizer)
            .map_err(|e| e.to_string())?;
        self.policy.load_state(&ck.policy)?;
        self.params = ck.params;
        self.version = ck.version;
        self.last_scheduled = self.schedule.at(self.version);
        self.last_checkpoint = (self.version, Instant::now());
        Ok(())
    }
}
