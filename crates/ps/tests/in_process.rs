//! The server core and the in-process transport: policies, refusals, checkpoints, learning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stagewise_core::optim::OptimizerKind;
use stagewise_core::schedule::{Plan, Stage};
use stagewise_ps::config::{
    AsgdConfig, CheckpointConfig, OnStale, OptimizerConfig, PolicyConfig, ScheduleConfig,
    ServerConfig,
};
use stagewise_ps::error::PushError;
use stagewise_ps::gradient::{BatchStats, GradientSource};
use stagewise_ps::server::{ParamServer, PullRequest, Push, PushOutcome};
use stagewise_ps::shard::ShardRange;
use stagewise_ps::synthetic::SoftmaxTask;
use stagewise_ps::{run_in_process, PsError};

/// Plain SGD (no momentum) with a constant learning rate: updates are exact arithmetic.
fn sgd_config(lr: f64, policy: PolicyConfig) -> ServerConfig {
    ServerConfig {
        policy,
        optimizer: OptimizerConfig::new(OptimizerKind::Sgd),
        schedule: ScheduleConfig::Constant {
            lr,
            momentum: 0.0,
            nu: 0.0,
        },
        ..ServerConfig::default()
    }
}

fn server(config: &ServerConfig, init: Vec<f32>) -> ParamServer {
    let n = init.len();
    ParamServer::new(config, n, ShardRange::whole(n), init).unwrap()
}

fn pull(s: &ParamServer, worker: u32) -> (u64, Vec<f32>) {
    let mut p = vec![0.0; s.shard().len];
    let info = s
        .pull_into(
            PullRequest {
                worker_id: worker,
                ..Default::default()
            },
            &mut p,
        )
        .unwrap();
    (info.version, p)
}

fn push(
    s: &ParamServer,
    worker: u32,
    version: u64,
    grads: &[f32],
) -> Result<PushOutcome, PushError> {
    s.push(Push {
        worker_id: worker,
        pulled_version: version,
        grads,
        stats: BatchStats::default(),
    })
}

/// A gradient source that takes a little wall time, like a real model, so workers overlap.
struct Slow<S>(S, Duration);

impl<S: GradientSource> GradientSource for Slow<S> {
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    fn compute(
        &mut self,
        params: &[f32],
        grads: &mut [f32],
    ) -> Result<BatchStats, stagewise_ps::error::GradientError> {
        std::thread::sleep(self.1);
        self.0.compute(params, grads)
    }
}

fn sources(task: &SoftmaxTask, n: usize) -> Vec<Box<dyn GradientSource>> {
    (0..n)
        .map(|i| {
            let w = task.worker(32, 100 + i as u64);
            Box::new(Slow(w, Duration::from_micros(200))) as Box<dyn GradientSource>
        })
        .collect()
}

#[test]
fn asynchronous_run_learns_and_writes_metrics() {
    let task = SoftmaxTask::new(10, 4, 2000, 500, 11);
    let dir = tempfile::tempdir().unwrap();
    let mut config = AsgdConfig::default();
    config.server.schedule = ScheduleConfig::Constant {
        lr: 0.5,
        momentum: 0.9,
        nu: 0.7,
    };
    config.server.max_updates = Some(400);
    config.server.log_every = 50;
    config.server.eval_every = Some(100);
    config.metrics_dir = Some(dir.path().to_path_buf());
    let evaluator = task.evaluator();
    let report = run_in_process(config, sources(&task, 3), Some(Box::new(evaluator))).unwrap();
    assert_eq!(report.version, 400);
    let s = &report.summary;
    assert_eq!(s.updates, 400);
    assert_eq!(s.workers.len(), 3, "{:?}", report.workers);
    assert!(s.workers.iter().all(|w| w.pushes > 0), "{:?}", s.workers);
    // Three workers racing: pushes are stale, and the histogram accounts for each.
    assert_eq!(s.histogram.iter().sum::<u64>(), s.pushes);
    assert!(
        s.mean_staleness > 0.5,
        "mean staleness {}",
        s.mean_staleness
    );
    let rows = std::fs::read_to_string(dir.path().join("train.csv")).unwrap();
    assert_eq!(rows.lines().count(), 1 + 8);
    let first = report
        .workers
        .iter()
        .filter_map(|w| w.first_loss)
        .fold(0.0, f64::max);
    let last_row_loss = s.last_train_loss.unwrap();
    assert!(
        last_row_loss < 0.6 * first,
        "loss {first} -> {last_row_loss}"
    );
    let eval = s.last_eval.as_ref().unwrap();
    assert_eq!(eval.update, 400);
    assert!(eval.accuracy.unwrap() > 0.75, "{eval:?}");
    let evals = std::fs::read_to_string(dir.path().join("eval.csv")).unwrap();
    assert!(evals.lines().count() >= 2, "{evals}");
    assert!(dir.path().join("summary.json").exists());
}

#[test]
fn every_policy_trains_to_the_budget() {
    let task = SoftmaxTask::new(8, 3, 1000, 400, 5);
    let policies = [
        PolicyConfig::Asgd,
        PolicyConfig::StalenessAware,
        PolicyConfig::Bounded {
            max_staleness: 1,
            on_stale: OnStale::Refuse,
        },
        PolicyConfig::Bounded {
            max_staleness: 2,
            on_stale: OnStale::Wait,
        },
        PolicyConfig::DcAsgd {
            lambda: 0.04,
            adaptive_momentum: Some(0.95),
            snapshots: 8,
        },
        PolicyConfig::Sync { workers: 3 },
    ];
    for policy in policies {
        let mut config = AsgdConfig::default();
        config.server.policy = policy.clone();
        config.server.schedule = ScheduleConfig::Constant {
            lr: 0.5,
            momentum: 0.0,
            nu: 0.0,
        };
        config.server.max_updates = Some(150);
        config.server.wait_timeout_ms = 2_000;
        let t0 = Instant::now();
        let report =
            run_in_process(config, sources(&task, 3), Some(Box::new(task.evaluator()))).unwrap();
        assert_eq!(report.version, 150, "{policy:?}");
        let acc = report.summary.last_eval.unwrap().accuracy.unwrap();
        assert!(acc > 0.7, "{policy:?}: accuracy {acc}");
        assert!(t0.elapsed() < Duration::from_secs(30));
        if let PolicyConfig::Sync { .. } = policy {
            // Every round's pushes were computed on the round's version.
            assert_eq!(report.summary.mean_staleness, 0.0);
        }
    }
}

#[test]
fn refused_pushes_change_nothing_and_are_counted() {
    let s = server(&sgd_config(0.1, PolicyConfig::Asgd), vec![1.0, 2.0, 3.0]);
    let (v, before) = pull(&s, 0);
    assert!(matches!(
        push(&s, 0, v, &[1.0, 1.0]),
        Err(PushError::LengthMismatch {
            expected: 3,
            got: 2
        })
    ));
    assert!(matches!(
        push(&s, 0, v, &[1.0, f32::NAN, 1.0]),
        Err(PushError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        push(&s, 0, v, &[f32::INFINITY, 0.0, 1.0]),
        Err(PushError::NonFinite { index: 0, .. })
    ));
    assert!(matches!(
        push(&s, 0, v + 5, &[1.0, 1.0, 1.0]),
        Err(PushError::FutureVersion {
            pulled: 5,
            current: 0
        })
    ));
    assert!(s.check_model("other").is_err());
    assert_eq!(s.snapshot(), (0, before));
    let r = s.refusals();
    assert_eq!(
        (
            r.wrong_length,
            r.non_finite,
            r.future_version,
            r.unknown_model
        ),
        (1, 2, 1, 1)
    );
    // A good push still goes through afterwards.
    assert!(matches!(
        push(&s, 0, v, &[1.0, 1.0, 1.0]),
        Ok(PushOutcome::Applied {
            version: 1,
            staleness: 0
        })
    ));
}

#[test]
fn staleness_aware_scales_the_step_by_one_over_tau() {
    let s = server(&sgd_config(1.0, PolicyConfig::StalenessAware), vec![0.0]);
    let (v0, _) = pull(&s, 0);
    for _ in 0..4 {
        let (v, _) = pull(&s, 1);
        push(&s, 1, v, &[0.0]).unwrap();
    }
    let out = push(&s, 0, v0, &[1.0]).unwrap();
    assert_eq!(
        out,
        PushOutcome::Applied {
            version: 5,
            staleness: 4
        }
    );
    assert_eq!(s.snapshot().1, vec![-0.25]);
    let w = s.with_metrics(|m| m.worker(0)).unwrap();
    assert_eq!((w.pushes, w.max_staleness, w.histogram[4]), (1, 4, 1));
}

#[test]
fn bounded_staleness_refuses_beyond_s() {
    let cfg = sgd_config(
        1.0,
        PolicyConfig::Bounded {
            max_staleness: 2,
            on_stale: OnStale::Refuse,
        },
    );
    let s = server(&cfg, vec![0.0]);
    let (v0, _) = pull(&s, 0);
    for _ in 0..3 {
        let (v, _) = pull(&s, 1);
        push(&s, 1, v, &[1.0]).unwrap();
    }
    assert_eq!(
        push(&s, 0, v0, &[100.0]).unwrap(),
        PushOutcome::RefusedStale {
            version: 3,
            staleness: 3
        }
    );
    assert_eq!(s.snapshot(), (3, vec![-3.0]));
    assert_eq!(s.refusals().stale, 1);
}

#[test]
fn ssp_wait_holds_a_fast_worker_until_the_slow_one_pushes() {
    let cfg = ServerConfig {
        wait_timeout_ms: 5_000,
        ..sgd_config(
            0.1,
            PolicyConfig::Bounded {
                max_staleness: 1,
                on_stale: OnStale::Wait,
            },
        )
    };
    let s = Arc::new(server(&cfg, vec![0.0]));
    let (slow_v, _) = pull(&s, 1); // the slow worker is known and active, clock 0
    for _ in 0..2 {
        let (v, _) = pull(&s, 0);
        push(&s, 0, v, &[1.0]).unwrap();
    }
    // Worker 0 is at clock 2 > 0 + 1: its next pull waits for worker 1.
    let s2 = Arc::clone(&s);
    let t0 = Instant::now();
    let fast = std::thread::spawn(move || {
        pull(&s2, 0);
        t0.elapsed()
    });
    std::thread::sleep(Duration::from_millis(300));
    push(&s, 1, slow_v, &[1.0]).unwrap();
    let waited = fast.join().unwrap();
    assert!(
        waited >= Duration::from_millis(250),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
}

#[test]
fn dc_asgd_compensates_through_the_server() {
    let lambda = 0.5f32;
    let cfg = sgd_config(
        1.0,
        PolicyConfig::DcAsgd {
            lambda: lambda as f64,
            adaptive_momentum: None,
            snapshots: 4,
        },
    );
    let s = server(&cfg, vec![1.0, 1.0]);
    let (v0, w_bak) = pull(&s, 0);
    let (v, _) = pull(&s, 1);
    push(&s, 1, v, &[0.5, -0.5]).unwrap(); // w = (0.5, 1.5)
    let w = s.snapshot().1;
    let g = [2.0f32, 1.0];
    push(&s, 0, v0, &g).unwrap();
    let got = s.snapshot().1;
    for i in 0..2 {
        let want = w[i] - (g[i] + lambda * g[i] * g[i] * (w[i] - w_bak[i]));
        assert!((got[i] - want).abs() < 1e-6, "{i}: {} vs {want}", got[i]);
    }
    assert!(s.snapshots_held() >= 1);
}

#[test]
fn synchronous_rounds_average_and_a_partial_round_is_flushed_at_timeout() {
    let cfg = ServerConfig {
        wait_timeout_ms: 200,
        ..sgd_config(1.0, PolicyConfig::Sync { workers: 2 })
    };
    let s = server(&cfg, vec![0.0]);
    let (v, _) = pull(&s, 0);
    assert!(matches!(
        push(&s, 0, v, &[1.0]).unwrap(),
        PushOutcome::Buffered { .. }
    ));
    assert_eq!(s.version(), 0);
    assert!(matches!(
        push(&s, 1, v, &[3.0]).unwrap(),
        PushOutcome::Applied { version: 1, .. }
    ));
    assert_eq!(s.snapshot().1, vec![-2.0]);
    // Worker 1 dies: worker 0's round is applied alone once its wait times out.
    let (v, _) = pull(&s, 0);
    push(&s, 0, v, &[4.0]).unwrap();
    let t0 = Instant::now();
    let mut p = vec![0.0];
    let info = s
        .pull_into(
            PullRequest {
                worker_id: 0,
                min_version: v + 1,
                wait: None,
            },
            &mut p,
        )
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(info.version, 2);
    assert_eq!(p, vec![-6.0]);
    // With nothing buffered, a wait for a version that never comes times out.
    let r = s.pull_into(
        PullRequest {
            worker_id: 0,
            min_version: 10,
            wait: Some(Duration::from_millis(50)),
        },
        &mut p,
    );
    assert!(matches!(r, Err(PsError::WaitTimeout { wanted: 10, .. })));
}

#[test]
fn plan_schedule_sets_the_rate_by_version() {
    let plan = Plan::new(vec![
        Stage::for_steps(2, 1.0, 0.0, 0.0, 8),
        Stage::for_steps(2, 0.1, 0.0, 0.0, 8),
    ]);
    let cfg = ServerConfig {
        schedule: ScheduleConfig::Plan { plan, n_train: 64 },
        ..sgd_config(1.0, PolicyConfig::Asgd)
    };
    let s = server(&cfg, vec![0.0]);
    let mut xs = Vec::new();
    for _ in 0..5 {
        let (v, _) = pull(&s, 0);
        let out = push(&s, 0, v, &[1.0]).unwrap();
        xs.push((out, s.snapshot().1[0]));
    }
    let vals: Vec<f32> = xs.iter().map(|x| x.1).collect();
    for (got, want) in vals.iter().zip([-1.0f32, -2.0, -2.1, -2.2]) {
        assert!((got - want).abs() < 1e-6, "{vals:?}");
    }
    // The plan lasts 4 updates: the server is finished and applies nothing more.
    assert_eq!(xs[4].0, PushOutcome::Finished { version: 4 });
    assert!(s.is_finished());
}

#[test]
fn checkpoint_resume_continues_version_params_and_optimizer_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ps.ckpt");
    let cfg = ServerConfig {
        optimizer: OptimizerConfig::default(), // QHM: has a momentum buffer to restore
        schedule: ScheduleConfig::Constant {
            lr: 0.1,
            momentum: 0.9,
            nu: 0.7,
        },
        checkpoint: Some(CheckpointConfig {
            path: path.clone(),
            every_updates: Some(5),
            every_secs: None,
            resume: true,
        }),
        ..ServerConfig::default()
    };
    let a = server(&cfg, vec![1.0, -1.0, 0.5]);
    for i in 0..12 {
        let (v, _) = pull(&a, 0);
        push(&a, 0, v, &[0.1 * i as f32, -0.2, 0.3]).unwrap();
    }
    // Checkpoints at 5 and 10 happened on their own.
    let b = server(&cfg, vec![0.0; 3]);
    assert_eq!(b.version(), 10);
    a.checkpoint_now().unwrap();
    let b = server(&cfg, vec![0.0; 3]);
    assert_eq!(b.snapshot(), a.snapshot());
    // Same next gradient, same result: the momentum buffer came back too.
    push(&a, 0, 12, &[1.0, 1.0, 1.0]).unwrap();
    push(&b, 0, 12, &[1.0, 1.0, 1.0]).unwrap();
    assert_eq!(b.snapshot(), a.snapshot());
    // A checkpoint for another model is refused, not silently loaded.
    let other = ServerConfig {
        model_id: "other".into(),
        ..cfg.clone()
    };
    let err = ParamServer::new(&other, 3, ShardRange::whole(3), vec![0.0; 3])
        .err()
        .unwrap();
    assert!(err.to_string().contains("model id"), "{err}");
}

#[test]
fn in_process_run_refuses_configs_without_a_stop() {
    let task = SoftmaxTask::new(2, 2, 10, 10, 1);
    let mut config = AsgdConfig::default();
    config.server.max_updates = None;
    let err = run_in_process(config, sources(&task, 1), None).unwrap_err();
    assert!(err.to_string().contains("server.max_updates"), "{err}");
    let err = run_in_process(AsgdConfig::default(), Vec::new(), None).unwrap_err();
    assert!(err.to_string().contains("sources"), "{err}");
}

#[test]
fn every_optimizer_trains_on_the_server() {
    let task = SoftmaxTask::new(8, 3, 1000, 400, 5);
    for kind in OptimizerKind::ALL {
        let mut config = AsgdConfig::default();
        config.server.optimizer = OptimizerConfig::new(kind);
        // Adam-type steps are about lr per coordinate; the others take the gradient's scale.
        let adaptive = matches!(
            kind,
            OptimizerKind::Adam
                | OptimizerKind::AdamW
                | OptimizerKind::QhAdam
                | OptimizerKind::RmsProp
                | OptimizerKind::AdamWScheduleFree
        );
        config.server.schedule = ScheduleConfig::Constant {
            lr: if adaptive { 0.02 } else { 0.5 },
            momentum: if kind == OptimizerKind::RmsProp {
                0.0
            } else {
                0.9
            },
            nu: 0.7,
        };
        config.server.max_updates = Some(200);
        let report =
            run_in_process(config, sources(&task, 2), Some(Box::new(task.evaluator()))).unwrap();
        let acc = report.summary.last_eval.unwrap().accuracy.unwrap();
        assert!(acc > 0.7, "{kind}: accuracy {acc}");
    }
}

#[test]
fn a_schedule_free_server_evaluates_its_average_and_serves_its_training_point() {
    for (kind, separate) in [
        (OptimizerKind::Sgd, false),
        (OptimizerKind::SgdScheduleFree, true),
        (OptimizerKind::AdamWScheduleFree, true),
    ] {
        let config = ServerConfig {
            optimizer: OptimizerConfig::new(kind),
            schedule: ScheduleConfig::Constant {
                lr: 0.1,
                momentum: 0.9,
                nu: 0.0,
            },
            ..ServerConfig::default()
        };
        let s = server(&config, vec![1.0, -1.0, 0.5]);
        for g in [[0.3, -0.2, 0.1], [0.1, 0.4, -0.3], [-0.2, 0.1, 0.2]] {
            let (v, _) = pull(&s, 0);
            push(&s, 0, v, &g).unwrap();
        }
        let (_, y) = s.snapshot();
        let (_, x) = s.eval_snapshot();
        assert_eq!(x != y, separate, "{kind}: x {x:?}, y {y:?}");
        assert_eq!(pull(&s, 0).1, y, "{kind}: workers pull the training point");
    }
}

#[test]
fn a_closing_server_refuses_pushes_unless_it_has_finished_then_it_says_finished() {
    let mut config = sgd_config(0.1, PolicyConfig::Asgd);
    config.max_updates = Some(2);
    // Not finished: a push to a closing server is refused (its checkpoint is being written).
    let s = server(&config, vec![0.0; 3]);
    let (v, _) = pull(&s, 0);
    push(&s, 0, v, &[0.1, 0.1, 0.1]).unwrap();
    s.close();
    assert!(matches!(
        push(&s, 0, 1, &[0.1, 0.1, 0.1]),
        Err(PushError::ShuttingDown)
    ));
    // Finished: a late worker is told so, and stops instead of reconnecting.
    let s = server(&config, vec![0.0; 3]);
    for _ in 0..2 {
        let (v, _) = pull(&s, 0);
        push(&s, 0, v, &[0.1, 0.1, 0.1]).unwrap();
    }
    assert!(s.is_finished());
    s.close();
    let late = push(&s, 1, 2, &[0.1, 0.1, 0.1]).unwrap();
    assert!(matches!(late, PushOutcome::Finished { .. }), "{late:?}");
    assert_eq!(s.version(), 2, "nothing applied after the budget");
}
