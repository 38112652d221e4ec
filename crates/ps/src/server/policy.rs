//! Staleness policies: what to do with a gradient of staleness τ (docs/theory.md §4.3).
//!
//! The policy decides, per push, whether to apply, buffer or drop it and with which learning
//! rate scale, and owns the state that needs: DC-ASGD's parameter snapshots and mean square,
//! the synchronous round's sum. It never touches the parameters itself.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::{OnStale, PolicyConfig};

/// What to do with one valid push.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// Apply `grads` (or the policy's scratch buffer when `use_scratch`) with the scheduled
    /// learning rate times `lr_scale`.
    Apply { lr_scale: f64, use_scratch: bool },
    /// Kept for the synchronous round.
    Buffer,
    /// Dropped as too stale.
    Drop,
}

#[derive(Debug)]
struct DcState {
    lambda: f64,
    adaptive_momentum: Option<f64>,
    capacity: usize,
    snapshots: VecDeque<(u64, Arc<[f32]>)>,
    mean_square: Vec<f32>,
}

#[derive(Debug)]
struct Round {
    version: u64,
    workers: Vec<u32>,
    sum: Vec<f32>,
}

/// Per-shard policy state.
#[derive(Debug)]
pub(crate) struct Policy {
    config: PolicyConfig,
    dc: Option<DcState>,
    round: Option<Round>,
    /// Output of delay compensation or of a round's average.
    scratch: Vec<f32>,
}

/// Name of DC-ASGD's mean-square buffer in checkpoints.
pub(crate) const DC_MEAN_SQUARE: &str = "dc_mean_square";

const DC_EPS: f32 = 1e-7;

impl Policy {
    pub(crate) fn new(config: &PolicyConfig, len: usize) -> Self {
        let dc = match *config {
            PolicyConfig::DcAsgd {
                lambda,
                adaptive_momentum,
                snapshots,
            } => Some(DcState {
                lambda,
                adaptive_momentum,
                capacity: snapshots.max(1),
                snapshots: VecDeque::new(),
                mean_square: if adaptive_momentum.is_some() {
                    vec![0.0; len]
                } else {
                    Vec::new()
                },
            }),
            _ => None,
        };
        let round = match config {
            PolicyConfig::Sync { .. } => Some(Round {
                version: 0,
                workers: Vec::new(),
                sum: vec![0.0; len],
            }),
            _ => None,
        };
        let scratch = if dc.is_some() || round.is_some() {
            vec![0.0; len]
        } else {
            Vec::new()
        };
        Self {
            config: config.clone(),
            dc,
            round,
            scratch,
        }
    }

    /// The staleness bound of the waiting SSP form, if that is the policy.
    pub(crate) fn ssp_wait_bound(&self) -> Option<u64> {
        match self.config {
            PolicyConfig::Bounded {
                max_staleness,
                on_stale: OnStale::Wait,
            } => Some(max_staleness),
            _ => None,
        }
    }

    /// Notes that version `version` (parameters `params`) was pulled; DC-ASGD keeps it.
    pub(crate) fn on_pull(&mut self, version: u64, params: &[f32]) {
        if let Some(dc) = &mut self.dc {
            if dc.snapshots.iter().any(|(v, _)| *v == version) {
                return;
            }
            if dc.snapshots.len() == dc.capacity {
                dc.snapshots.pop_front();
            }
            dc.snapshots.push_back((version, Arc::from(params)));
        }
    }

    /// Number of DC-ASGD snapshots held (memory: that many × P × 4 bytes).
    pub(crate) fn snapshots_held(&self) -> usize {
        self.dc.as_ref().map_or(0, |d| d.snapshots.len())
    }

    /// Decides about a finite push of the right length; `tau = version − pulled`.
    ///
    /// Returns the decision and whether a DC snapshot was missing.
    pub(crate) fn decide(
        &mut self,
        worker: u32,
        pulled: u64,
        version: u64,
        grads: &[f32],
        params: &[f32],
    ) -> (Decision, bool) {
        let tau = version - pulled;
        let apply = |lr_scale| Decision::Apply {
            lr_scale,
            use_scratch: false,
        };
        match &self.config {
            PolicyConfig::Asgd => (apply(1.0), false),
            PolicyConfig::StalenessAware => (apply(1.0 / (tau.max(1) as f64)), false),
            PolicyConfig::Bounded {
                max_staleness,
                on_stale,
            } => {
                if *on_stale == OnStale::Refuse && tau > *max_staleness {
                    (Decision::Drop, false)
                } else {
                    (apply(1.0), false)
                }
            }
            PolicyConfig::DcAsgd { .. } => self.compensate(pulled, tau, grads, params),
            PolicyConfig::Sync { workers } => {
                let m = *workers;
                let Some(round) = self.round.as_mut() else {
                    return (apply(1.0), false);
                };
                if round.workers.is_empty() {
                    round.version = version;
                }
                if pulled != round.version || round.workers.contains(&worker) {
                    return (Decision::Drop, false);
                }
                round.workers.push(worker);
                for (s, g) in round.sum.iter_mut().zip(grads) {
                    *s += g;
                }
                if round.workers.len() >= m {
                    (self.average_round(), false)
                } else {
                    (Decision::Buffer, false)
                }
            }
        }
    }

    /// Whether a synchronous round holds gradients that have not been applied.
    pub(crate) fn round_pending(&self) -> bool {
        self.round.as_ref().is_some_and(|r| !r.workers.is_empty())
    }

    /// Averages the synchronous round's gradients into the scratch buffer and resets it.
    pub(crate) fn average_round(&mut self) -> Decision {
        let Some(round) = self.round.as_mut() else {
            return Decision::Drop;
        };
        let n = round.workers.len().max(1) as f32;
        for (o, s) in self.scratch.iter_mut().zip(round.sum.iter_mut()) {
            *o = *s / n;
            *s = 0.0;
        }
        round.workers.clear();
        Decision::Apply {
            lr_scale: 1.0,
            use_scratch: true,
        }
    }

    fn compensate(
        &mut self,
        pulled: u64,
        tau: u64,
        grads: &[f32],
        params: &[f32],
    ) -> (Decision, bool) {
        let Some(dc) = self.dc.as_mut() else {
            return (
                Decision::Apply {
                    lr_scale: 1.0,
                    use_scratch: false,
                },
                false,
            );
        };
        if let Some(m) = dc.adaptive_momentum {
            let m = m as f32;
            for (ms, g) in dc.mean_square.iter_mut().zip(grads) {
                *ms = m * *ms + (1.0 - m) * g * g;
            }
        }
        let plain = Decision::Apply {
            lr_scale: 1.0,
            use_scratch: false,
        };
        if tau == 0 {
            return (plain, false);
        }
        let Some(backup) = dc
            .snapshots
            .iter()
            .find(|(v, _)| *v == pulled)
            .map(|(_, s)| Arc::clone(s))
        else {
            return (plain, true);
        };
        let lambda = dc.lambda as f32;
        if dc.adaptive_momentum.is_some() {
            for i in 0..grads.len() {
                let g = grads[i];
                let l = lambda / (dc.mean_square[i] + DC_EPS).sqrt();
                self.scratch[i] = g + l * g * g * (params[i] - backup[i]);
            }
        } else {
            for i in 0..grads.len() {
                let g = grads[i];
                self.scratch[i] = g + lambda * g * g * (params[i] - backup[i]);
            }
        }
        (
            Decision::Apply {
                lr_scale: 1.0,
                use_scratch: true,
            },
            false,
        )
    }

    /// The buffer a `use_scratch` decision refers to.
    pub(crate) fn scratch(&self) -> &[f32] {
        &self.scratch
    }

    /// State to checkpoint.
    pub(crate) fn state(&self) -> Vec<(String, Vec<f32>)> {
        match &self.dc {
            Some(dc) if dc.adaptive_momentum.is_some() => {
                vec![(DC_MEAN_SQUARE.to_string(), dc.mean_square.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// Restores checkpointed state (missing buffers leave the fresh state).
    pub(crate) fn load_state(&mut self, buffers: &[(String, Vec<f32>)]) -> Result<(), String> {
        if let Some(dc) = self.dc.as_mut().filter(|d| d.adaptive_momentum.is_some()) {
            if let Some((_, b)) = buffers.iter().find(|(n, _)| n == DC_MEAN_SQUARE) {
                if b.len() != dc.mean_square.len() {
                    return Err(format!(
                        "{DC_MEAN_SQUARE} has {} elements, expected {}",
                        b.len(),
                        dc.mean_square.len()
                    ));
                }
                dc.mean_square.copy_from_slice(b);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr_of(d: Decision) -> f64 {
        match d {
            Decision::Apply { lr_scale, .. } => lr_scale,
            other => panic!("expected Apply, got {other:?}"),
        }
    }

    #[test]
    fn staleness_aware_divides_by_tau() {
        let mut p = Policy::new(&PolicyConfig::StalenessAware, 1);
        assert_eq!(lr_of(p.decide(0, 10, 10, &[1.0], &[0.0]).0), 1.0);
        assert_eq!(lr_of(p.decide(0, 9, 10, &[1.0], &[0.0]).0), 1.0);
        assert_eq!(lr_of(p.decide(0, 6, 10, &[1.0], &[0.0]).0), 0.25);
    }

    #[test]
    fn bounded_refuses_beyond_s() {
        let cfg = PolicyConfig::Bounded {
            max_staleness: 2,
            on_stale: OnStale::Refuse,
        };
        let mut p = Policy::new(&cfg, 1);
        assert_eq!(lr_of(p.decide(0, 8, 10, &[1.0], &[0.0]).0), 1.0);
        assert_eq!(p.decide(0, 7, 10, &[1.0], &[0.0]).0, Decision::Drop);
    }

    #[test]
    fn dc_asgd_compensates_with_the_pulled_snapshot() {
        let cfg = PolicyConfig::DcAsgd {
            lambda: 0.5,
            adaptive_momentum: None,
            snapshots: 2,
        };
        let mut p = Policy::new(&cfg, 2);
        p.on_pull(3, &[1.0, 1.0]);
        // w − w_bak = (1, −1), g = (2, 1): g + 0.5·g²·Δ = (2 + 2, 1 − 0.5)
        let (d, missing) = p.decide(0, 3, 5, &[2.0, 1.0], &[2.0, 0.0]);
        assert!(!missing);
        assert_eq!(
            d,
            Decision::Apply {
                lr_scale: 1.0,
                use_scratch: true
            }
        );
        assert_eq!(p.scratch(), &[4.0, 0.5]);
        p.on_pull(4, &[0.0, 0.0]);
        p.on_pull(5, &[0.0, 0.0]);
        assert_eq!(p.snapshots_held(), 2);
        let (_, missing) = p.decide(0, 3, 6, &[2.0, 1.0], &[2.0, 0.0]);
        assert!(missing, "version 3 was evicted");
    }

    #[test]
    fn sync_round_averages_m_gradients_from_distinct_workers() {
        let mut p = Policy::new(&PolicyConfig::Sync { workers: 2 }, 2);
        assert_eq!(
            p.decide(0, 4, 4, &[1.0, 2.0], &[0.0; 2]).0,
            Decision::Buffer
        );
        assert_eq!(p.decide(0, 4, 4, &[9.0, 9.0], &[0.0; 2]).0, Decision::Drop);
        assert_eq!(p.decide(1, 3, 4, &[9.0, 9.0], &[0.0; 2]).0, Decision::Drop);
        let (d, _) = p.decide(1, 4, 4, &[3.0, 4.0], &[0.0; 2]);
        assert!(matches!(
            d,
            Decision::Apply {
                use_scratch: true,
                ..
            }
        ));
        assert_eq!(p.scratch(), &[2.0, 3.0]);
        assert!(!p.round_pending());
    }
}
