//! `stagewise ps serve` and `ps worker` as separate processes on 127.0.0.1, under faults: a worker
//! whose plan differs from the server's, and a server SIGKILLed and resumed from its checkpoint.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stagewise");
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

/// Kills the children on drop, so a failing test leaves no process behind.
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts `ps serve` with `args`; returns its address once it prints `LISTENING`.
fn serve(children: &mut Children, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(["ps", "serve", "--workers", "1", "--linger-ms", "300"])
        .args(args)
        .env("STAGEWISE_PS_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    children.0.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server printed no LISTENING line within 60 s");
    std::thread::spawn(move || while rx.recv().is_ok() {});
    line.strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string()
}

fn worker(addr: &str, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(["ps", "worker", "--server", &format!("http://{addr}")])
        .args(["--workers", "1", "--worker-id", "0"])
        .args(["--connect-timeout-ms", "10000"])
        .args(args)
        .env("STAGEWISE_PS_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`, killing it past that.
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "still running after {limit:?}; stderr:\n{}",
        text(&out.stderr)
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("stagewise-ps-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_worker_with_another_plan_is_refused_naming_the_plan() {
    let mut children = Children::default();
    let addr = serve(
        &mut children,
        &[&["--listen", "127.0.0.1:0", "--epochs", "3"][..], RUN].concat(),
    );
    let out = finish(
        worker(&addr, &[&["--epochs", "5"][..], RUN].concat()),
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("plan digest differs"), "{stderr}");
}

/// True when `dir` holds a finished (not temporary) checkpoint file.
fn has_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .map_while(Result::ok)
            .any(|e| !e.file_name().to_string_lossy().contains("tmp"))
    })
}

#[test]
fn a_worker_outlives_a_sigkilled_server_resumed_on_the_same_port() {
    let dir = temp_dir("restart");
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
    while !has_checkpoint(&ckpt) {
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
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
    let out = finish(w, Duration::from_secs(180));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "worker: {stderr}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(" 1 reconnects,"),
        "the worker reconnected once: {stdout}"
    );
    let server = children.0.pop().unwrap();
    let out = finish(server, Duration::from_secs(60));
    assert!(out.status.success(), "server: {}", text(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("server/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["details"]["final_version"], 200, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
