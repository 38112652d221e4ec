//! `stagewise ps serve` and `ps worker` as separate processes on 127.0.0.1, under faults: a worker
//! whose plan differs from the server's, and a server SIGKILLed and resumed from its checkpoint.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

mod common;

use common::process::{self, text, wait_output, Children};
use common::TempDir;

const TOKEN: &str = "faults-secret";

/// A small run: 800 synthetic examples, batch 32, so 25 updates an epoch.
const RUN: &[&str] = &[
    "--dataset",
    "synthetic",
    "--model",
    "mlp",
    "--train-subset",
    "800",
    "--test-subset",
    "200",
    "--recipe",
    "constant",
    "--lr",
    "0.1",
    "--batch",
    "32",
    "--seed",
    "5",
];

/// Starts `ps serve` for one worker with `args`; returns its address.
fn serve(children: &mut Children, args: &[&str]) -> String {
    process::serve(
        children,
        TOKEN,
        &[&["--workers", "1", "--linger-ms", "300"][..], args].concat(),
    )
}

/// The one worker at `addr` with `args`.
fn worker(addr: &str, args: &[&str]) -> Child {
    process::worker(addr, (0, 1), TOKEN, args)
}

#[test]
fn a_worker_with_another_plan_is_refused_naming_the_plan() {
    let mut children = Children::default();
    let addr = serve(
        &mut children,
        &[&["--listen", "127.0.0.1:0", "--epochs", "3"][..], RUN].concat(),
    );
    let out = wait_output(
        worker(&addr, &[&["--epochs", "5"][..], RUN].concat()),
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("plan digest differs"), "{stderr}");
}

/// The version of the checkpoint `dir/shard-0-of-1.ckpt`, once one is there.
fn checkpoint_version(dir: &Path) -> Option<u64> {
    stagewise_ps::checkpoint::Checkpoint::load(&dir.join("shard-0-of-1.ckpt"))
        .ok()
        .map(|c| c.version)
}

#[test]
fn a_worker_outlives_a_sigkilled_server_resumed_on_the_same_port() {
    let temp = TempDir::new("ps-faults-restart");
    let dir = temp.path();
    let ckpt = dir.join("ckpt");
    let ckpt_arg = ckpt.to_string_lossy().into_owned();
    let out_arg = dir.join("server").to_string_lossy().into_owned();
    // 8 epochs, 200 updates, a checkpoint every 10.
    let server_args = |listen: &str, resume: bool| -> Vec<String> {
        let mut a: Vec<String> = [
            "--listen",
            listen,
            "--epochs",
            "8",
            "--checkpoint-dir",
            &ckpt_arg,
            "--checkpoint-every",
            "10",
            "--out",
            &out_arg,
        ]
        .iter()
        .chain(RUN)
        .map(|s| s.to_string())
        .collect();
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let mut children = Children::default();
    let args = server_args("127.0.0.1:0", false);
    let addr = serve(
        &mut children,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let w = worker(
        &addr,
        &[
            &["--epochs", "8", "--reconnect-timeout-ms", "60000"][..],
            RUN,
        ]
        .concat(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // A checkpoint after some of the worker's updates: the worker is connected and training.
    while checkpoint_version(&ckpt).unwrap_or(0) < 10 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint past version 0 within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: no final checkpoint, no goodbye to the worker.
    let mut server = children.0.pop().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let args = server_args(&addr, true);
    let resumed = serve(
        &mut children,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(resumed, addr);
    let out = wait_output(w, Duration::from_secs(180));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "worker: {stderr}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(" 1 reconnects,"),
        "the worker reconnected once: {stdout}"
    );
    let server = children.0.pop().unwrap();
    let out = wait_output(server, Duration::from_secs(60));
    assert!(out.status.success(), "server: {}", text(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("server/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["details"]["final_version"], 200, "{summary}");
}

#[test]
fn sigterm_stops_the_server_with_its_checkpoint_metrics_and_model() {
    let temp = TempDir::new("ps-faults-sigterm");
    let dir = temp.path();
    let (ckpt, out) = (dir.join("ckpt"), dir.join("server"));
    let mut children = Children::default();
    // A budget of 100 epochs that the worker starts on; SIGTERM comes long before the end.
    let addr = serve(
        &mut children,
        &[
            &[
                "--listen",
                "127.0.0.1:0",
                "--epochs",
                "100",
                "--eval-every",
                "10",
                "--checkpoint-dir",
                ckpt.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ][..],
            RUN,
        ]
        .concat(),
    );
    let w = worker(
        &addr,
        &[
            &["--epochs", "100", "--reconnect-timeout-ms", "1000"][..],
            RUN,
        ]
        .concat(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(out.join("eval.csv")).is_ok_and(|t| t.lines().count() >= 2) {
        assert!(Instant::now() < deadline, "no evaluation within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = children.0.pop().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = wait_output(server, Duration::from_secs(30));
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("signal received"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["completed"], false, "{summary}");
    let version = summary["details"]["final_version"].as_u64().unwrap();
    assert!((10..100 * 25).contains(&version), "{summary}");
    assert!(ckpt.join("shard-0-of-1.ckpt").is_file());
    assert!(out.join("model.safetensors").is_file());
    // The worker finds the server gone and gives up after its reconnect timeout.
    let o = wait_output(w, Duration::from_secs(60));
    assert!(!o.status.success(), "{}", text(&o.stdout));
}
