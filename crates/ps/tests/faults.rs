//! Faults with real processes on 127.0.0.1: a worker SIGKILLed mid-push, a server SIGKILLed
//! and resumed from its checkpoint.
#![cfg(feature = "grpc")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stagewise_ps::checkpoint::Checkpoint;
use stagewise_ps::config::{
    CheckpointConfig, ScheduleConfig, ServeConfig, ServerConfig, WorkerConfig,
};
use stagewise_ps::synthetic::NoisyQuadratic;
use stagewise_ps::{run_worker, start_server};

const NODE: &str = env!("CARGO_BIN_EXE_stagewise-ps-node");
const DIM: usize = 10_000;

/// Kills the child on drop, so a failing test leaves no process behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) {
    std::fs::write(path, serde_json::to_string(value).unwrap()).unwrap();
}

/// Starts the node binary and waits (bounded) for a line starting with `marker`.
fn spawn_until(args: &[&str], marker: &str) -> (Proc, String) {
    let mut child = Command::new(NODE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = line.strip_prefix(marker) {
                return (proc, rest.trim().to_string());
            }
        }
    }
    panic!("{args:?} did not print {marker} in time");
}

fn worker_config(url: &str, id: u32, max_pushes: u64) -> WorkerConfig {
    WorkerConfig {
        servers: vec![url.to_string()],
        worker_id: id,
        max_pushes: Some(max_pushes),
        max_chunk_bytes: 4096, // a 40 kB gradient goes as 10 chunks
        connect_timeout_ms: 10_000,
        ..WorkerConfig::default()
    }
}

fn serve_config(checkpoint: Option<CheckpointConfig>) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".into(),
        num_params: DIM,
        server: ServerConfig {
            schedule: ScheduleConfig::Constant {
                lr: 0.1,
                momentum: 0.9,
                nu: 0.7,
            },
            checkpoint,
            ..ServerConfig::default()
        },
        max_chunk_bytes: 4096,
        exit_after_finish_ms: None,
        ..ServeConfig::default()
    }
}

fn source(seed: u64) -> NoisyQuadratic {
    NoisyQuadratic::new(DIM, 0.5, 2.0, 0.01, 1).with_noise_seed(seed)
}

#[test]
fn worker_killed_mid_push_is_never_applied_and_can_rejoin() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = rt
        .block_on(start_server(serve_config(None), None, None))
        .unwrap();
    let server = handle.server().clone();
    let url = format!("http://{}", handle.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("worker.json");
    write_json(&cfg_path, &worker_config(&url, 7, 5));

    // Another worker trains throughout.
    let other_url = url.clone();
    let other = std::thread::spawn(move || {
        let mut c = worker_config(&other_url, 1, 40);
        c.max_seconds = Some(30.0);
        run_worker(c, source(1))
    });

    // Worker 7 sends a header and half its gradient, then is SIGKILLed.
    let (mut stalled, _) = spawn_until(&["stall-push", cfg_path.to_str().unwrap()], "STALLED");
    stalled.0.kill().unwrap(); // SIGKILL on Unix
    stalled.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.refusals().aborted == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        server.refusals().aborted,
        1,
        "the broken push is seen and dropped"
    );
    assert!(
        server.with_metrics(|m| m.worker(7)).is_none(),
        "nothing from worker 7 was applied"
    );

    // The other worker was not disturbed.
    let report = other.join().unwrap().unwrap();
    assert_eq!(report.applied, 40);
    assert!(report.last_loss < report.first_loss);

    // Worker 7 restarts (a new process, same id) and rejoins.
    let out = Command::new(NODE)
        .args(["worker", cfg_path.to_str().unwrap(), &DIM.to_string(), "7"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w7 = server.with_metrics(|m| m.worker(7)).unwrap();
    assert_eq!((w7.pushes, w7.applied), (5, 5));
    assert_eq!(server.version(), 45);
    rt.block_on(handle.shutdown()).unwrap();
}

#[test]
fn server_killed_and_resumed_continues_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("shard0.ckpt");
    let cfg_path = dir.path().join("serve.json");
    write_json(
        &cfg_path,
        &serve_config(Some(CheckpointConfig {
            path: ckpt.clone(),
            every_updates: Some(5),
            every_secs: None,
            resume: true,
        })),
    );
    let (server, addr) = spawn_until(&["serve", cfg_path.to_str().unwrap()], "LISTENING");
    let url = format!("http://{addr}");
    let report = run_worker(worker_config(&url, 0, 23), source(0)).unwrap();
    assert_eq!(report.applied, 23);
    drop(server); // SIGKILL, no chance to write a final checkpoint

    let saved = Checkpoint::load(&ckpt).unwrap();
    assert_eq!(saved.version, 20, "the last periodic checkpoint");
    assert!(!stagewise_ps::checkpoint::temp_path(&ckpt).exists());
    assert_eq!(saved.optimizer.step, 20);

    let (_server, addr) = spawn_until(&["serve", cfg_path.to_str().unwrap()], "LISTENING");
    let url = format!("http://{addr}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info_version = rt.block_on(async {
        let mut c = stagewise_ps::transport::grpc::GrpcClient::connect(&worker_config(&url, 0, 1))
            .await
            .unwrap();
        let mut params = vec![0.0; DIM];
        let pulled = c.pull(&[0], &mut params).await.unwrap();
        assert_eq!(
            params, saved.params,
            "parameters come back from the checkpoint"
        );
        pulled.versions[0]
    });
    assert_eq!(info_version, 20);
    let report = run_worker(worker_config(&url, 0, 5), source(0)).unwrap();
    assert_eq!(report.applied, 5);
    let later = run_worker(worker_config(&url, 0, 1), source(0)).unwrap();
    assert_eq!(later.applied, 1);
    // Versions continued from 20: the worker saw no staleness, and the checkpoint moved on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Checkpoint::load(&ckpt).map(|c| c.version).unwrap_or(0) < 25 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(Checkpoint::load(&ckpt).unwrap().version, 25);
}

#[test]
fn a_sigkilled_server_keeps_its_metrics_rows_and_a_resume_appends_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("shard0.ckpt");
    let metrics = dir.path().join("metrics");
    let cfg_path = dir.path().join("serve.json");
    let mut cfg = serve_config(Some(CheckpointConfig {
        path: ckpt.clone(),
        every_updates: Some(10),
        every_secs: None,
        resume: true,
    }));
    cfg.server.log_every = 5;
    cfg.metrics_dir = Some(metrics.clone());
    write_json(&cfg_path, &cfg);
    let updates = || -> Vec<u64> {
        let rows: Vec<stagewise_core::record::TrainRow> =
            stagewise_core::record::read_rows(&metrics.join("train.csv")).unwrap();
        rows.iter().map(|r| r.update).collect()
    };
    let (server, addr) = spawn_until(&["serve", cfg_path.to_str().unwrap()], "LISTENING");
    let url = format!("http://{addr}");
    assert_eq!(
        run_worker(worker_config(&url, 0, 23), source(0))
            .unwrap()
            .applied,
        23
    );
    drop(server); // SIGKILL: no shutdown, no final write
    assert_eq!(updates(), [5, 10, 15, 20], "rows written as the run went");
    // Resumed at the checkpoint of version 20: its rows stay, new ones follow.
    let (_server, addr) = spawn_until(&["serve", cfg_path.to_str().unwrap()], "LISTENING");
    let url = format!("http://{addr}");
    run_worker(worker_config(&url, 0, 10), source(0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while updates().len() < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(updates(), [5, 10, 15, 20, 25, 30]);
}

#[test]
fn a_worker_reconnects_to_a_server_sigkilled_and_resumed_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("shard0.ckpt");
    let cfg_path = dir.path().join("serve.json");
    // A fixed port, so that the restarted server is where the worker looks.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = serve_config(Some(CheckpointConfig {
        path: ckpt.clone(),
        every_updates: Some(100),
        every_secs: None,
        resume: true,
    }));
    cfg.listen = format!("127.0.0.1:{port}");
    write_json(&cfg_path, &cfg);
    let (server, _) = spawn_until(&["serve", cfg_path.to_str().unwrap()], "LISTENING");
    let url = format!("http://127.0.0.1:{port}");
    let worker_url = url.clone();
    let worker = std::thread::spawn(move || {
        let mut c = worker_config(&worker_url, 0, u64::MAX);
        c.max_pushes = None;
        c.max_seconds = Some(8.0);
        c.reconnect_timeout_ms = 20_000;
        run_worker(c, source(0))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while Checkpoint::load(&ckpt).map(|c| c.version).unwrap_or(0) < 200 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server); // SIGKILL mid-run
    let resumed_at = Checkpoint::load(&ckpt).unwrap().version;
    assert!(resumed_at >= 200);
    std::thread::sleep(Duration::from_millis(700)); // the worker finds no server for a while
    let (_server, _) = spawn_until(&["serve", cfg_path.to_str().unwrap()], "LISTENING");
    let report = worker
        .join()
        .unwrap()
        .expect("the worker did not survive the restart");
    assert_eq!(report.stopped, "max_duration", "{report:?}");
    // It went on from the checkpoint's version: the restarted server counts from there.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let version = rt.block_on(async {
        let mut c = stagewise_ps::transport::grpc::GrpcClient::connect(&worker_config(&url, 0, 1))
            .await
            .unwrap();
        let mut params = vec![0.0; DIM];
        c.pull(&[0], &mut params).await.unwrap().versions[0]
    });
    println!(
        "checkpoint at {resumed_at}, version {version} after the restart; worker: {} pushes, {} reconnects",
        report.pushes, report.reconnects
    );
    assert!(version > resumed_at, "{version} <= {resumed_at}");
    assert!(report.last_loss < report.first_loss, "{report:?}");
}
