//! Hostile and broken clients against a gRPC server on 127.0.0.1: waits the server caps,
//! pulls and pushes abandoned or stalled, shutdown with calls left open.
#![cfg(feature = "grpc")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stagewise_ps::auth::AddToken;
use stagewise_ps::checkpoint::Checkpoint;
use stagewise_ps::config::{
    CheckpointConfig, ScheduleConfig, ServeConfig, ServerConfig, WorkerConfig,
};
use stagewise_ps::proto::parameter_server_client::ParameterServerClient;
use stagewise_ps::proto::{push_chunk, PullRequest, PushChunk, PushHeader};
use stagewise_ps::synthetic::NoisyQuadratic;
use stagewise_ps::transport::codec::encode_f32s;
use stagewise_ps::{run_worker, start_server};
use tonic::Code;

const NODE: &str = env!("CARGO_BIN_EXE_stagewise-ps-node");

type Stub = ParameterServerClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AddToken>,
>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A new connection to `url`.
async fn stub(url: &str) -> Stub {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    ParameterServerClient::with_interceptor(ch, AddToken::new(None).unwrap())
}

fn serve_config(num_params: usize, wait_timeout_ms: u64) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".into(),
        num_params,
        server: ServerConfig {
            schedule: ScheduleConfig::Constant {
                lr: 0.1,
                momentum: 0.0,
                nu: 0.0,
            },
            wait_timeout_ms,
            ..ServerConfig::default()
        },
        exit_after_finish_ms: None,
        ..ServeConfig::default()
    }
}

/// A pull that waits for a version the server will never reach, for `wait_ms`.
fn hopeless_pull(wait_ms: u64) -> PullRequest {
    PullRequest {
        model_id: "model".into(),
        worker_id: 3,
        min_version: 1 << 63,
        wait_ms,
        ..Default::default()
    }
}

fn header(worker_id: u32, len: u64) -> PushChunk {
    PushChunk {
        kind: Some(push_chunk::Kind::Header(PushHeader {
            model_id: "model".into(),
            worker_id,
            pulled_version: 0,
            total_len: len,
            accuracy: f64::NAN,
            batch_size: 1,
            ..Default::default()
        })),
    }
}

fn data(xs: &[f32]) -> PushChunk {
    PushChunk {
        kind: Some(push_chunk::Kind::Data(encode_f32s(xs))),
    }
}

/// Starts a push of `len` floats that sends its header and one chunk of `first` floats, then
/// nothing more while the returned sender lives; the task ends with the push's result.
fn stalled_push(
    stub: &Stub,
    worker_id: u32,
    len: usize,
    first: usize,
) -> (
    tokio::sync::mpsc::Sender<PushChunk>,
    tokio::task::JoinHandle<Result<stagewise_ps::proto::PushReply, tonic::Status>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.try_send(header(worker_id, len as u64)).unwrap();
    tx.try_send(data(&vec![0.5; first])).unwrap();
    let mut c = stub.clone();
    let task = tokio::spawn(async move {
        c.push(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map(|r| r.into_inner())
    });
    (tx, task)
}

/// A line of `/proc/PID/status` (e.g. `Threads`, `VmRSS`) as a number.
fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Kills the child on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `stagewise-ps-node serve` with `config`; returns it and its URL once it listens.
fn spawn_server(dir: &Path, config: &ServeConfig) -> (Proc, String) {
    let path = dir.join("serve.json");
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    let mut child = Command::new(NODE)
        .args(["serve", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no LISTENING line");
    let addr = line.strip_prefix("LISTENING ").unwrap().trim().to_string();
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (proc, format!("http://{addr}"))
}

#[test]
fn a_clients_wait_is_capped_at_the_servers_limit() {
    let rt = rt();
    let handle = rt
        .block_on(start_server(serve_config(8, 300), None, None))
        .unwrap();
    let url = format!("http://{}", handle.local_addr());
    rt.block_on(async {
        let mut c = stub(&url).await;
        let start = Instant::now();
        // The client asks for an hour; the server's limit is 300 ms.
        let r = tokio::time::timeout(Duration::from_secs(10), c.pull(hopeless_pull(3_600_000)))
            .await
            .expect("the pull was not capped at the server's wait limit");
        assert_eq!(r.err().map(|s| s.code()), Some(Code::DeadlineExceeded));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    });
    rt.block_on(handle.shutdown()).unwrap();
}

#[test]
fn abandoned_pulls_hold_no_server_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = spawn_server(dir.path(), &serve_config(1000, 60_000));
    let pid = server.0.id();
    let rt = rt();
    let (base, during, after) = rt.block_on(async {
        // Warm the server up (its runtime threads, one pull of each kind).
        let mut c = stub(&url).await;
        c.pull(PullRequest {
            model_id: "model".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = proc_status(pid, "Threads");
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let s = stub(&url).await;
            for _ in 0..50 {
                let mut s = s.clone();
                tasks.push(tokio::spawn(async move {
                    s.pull(hopeless_pull(3_600_000)).await
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let during = proc_status(pid, "Threads");
        // The clients go away without waiting for an answer.
        for t in &tasks {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = proc_status(pid, "Threads");
        // A normal pull is answered at once.
        let start = Instant::now();
        let mut c = stub(&url).await;
        c.pull(PullRequest {
            model_id: "model".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        (base, during, after)
    });
    println!("server threads: {base} before, {during} with 200 waiting pulls, {after} after they were dropped");
    assert!(
        during < base + 20 && after < base + 20,
        "200 waiting pulls took threads: {base} → {during} → {after}"
    );
}

#[test]
fn shutdown_writes_its_checkpoint_within_the_grace_period_despite_open_calls() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("shard.ckpt");
    let mut cfg = serve_config(1000, 60_000);
    cfg.shutdown_grace_ms = 500;
    cfg.server.checkpoint = Some(CheckpointConfig {
        path: ckpt.clone(),
        every_updates: Some(1000),
        every_secs: None,
        resume: false,
    });
    let rt = rt();
    let handle = rt.block_on(start_server(cfg, None, None)).unwrap();
    let server = handle.server().clone();
    let url = format!("http://{}", handle.local_addr());
    let wc = WorkerConfig {
        servers: vec![url.clone()],
        max_pushes: Some(7),
        connect_timeout_ms: 5_000,
        ..WorkerConfig::default()
    };
    assert_eq!(
        run_worker(wc, NoisyQuadratic::new(1000, 1.0, 1.0, 0.0, 1))
            .unwrap()
            .applied,
        7
    );
    let (pull, _push_tx, push) = rt.block_on(async {
        let c = stub(&url).await;
        let mut p = c.clone();
        let pull = tokio::spawn(async move { p.pull(hopeless_pull(3_600_000)).await });
        let (tx, push) = stalled_push(&c, 4, 1000, 100);
        tokio::time::sleep(Duration::from_millis(300)).await;
        (pull, tx, push)
    });
    let start = Instant::now();
    let summary = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), handle.shutdown()).await })
        .expect("shutdown hung with a pull and a push open")
        .unwrap();
    let took = start.elapsed();
    println!("shutdown with an open pull and a stalled push took {took:?} (grace 500 ms)");
    assert!(took < Duration::from_millis(500 + 2_000), "{took:?}");
    assert_eq!(summary.final_version, 7);
    assert_eq!(Checkpoint::load(&ckpt).unwrap().version, 7);
    // The waiting pull was told the server is going away.
    let r = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), pull).await })
        .unwrap()
        .unwrap();
    assert_eq!(r.err().map(|s| s.code()), Some(Code::Unavailable));
    // The stalled push, finished now, changes nothing.
    drop(_push_tx);
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), push).await });
    assert_eq!(server.version(), 7);
}

#[test]
fn stalled_pushes_are_limited_and_dropped_when_idle() {
    // A 4 MB shard; at most 6 pushes in flight, 2 per worker; 1.5 s of silence drops one.
    const P: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = serve_config(P, 60_000);
    cfg.max_concurrent_pushes = 6;
    cfg.max_pushes_per_worker = 2;
    cfg.push_idle_timeout_ms = 1_500;
    let (server, url) = spawn_server(dir.path(), &cfg);
    let pid = server.0.id();
    let rt = rt();
    rt.block_on(async {
        let c = stub(&url).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = proc_status(pid, "VmRSS");
        // 90% of each gradient sent, then silence.
        let first = P / 10 * 9;
        let mut held = Vec::new();
        for w in [0, 0, 1, 2] {
            held.push(stalled_push(&c, w, P, first));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refused =
            |r: Result<_, tonic::Status>| r.err().map(|s| (s.code(), s.message().to_string()));
        // A third push of worker 0: over the per-worker limit.
        let (_tx, third) = stalled_push(&c, 0, P, first);
        let (code, msg) =
            refused(third.await.unwrap()).expect("a third push of worker 0 was accepted");
        assert_eq!(code, Code::ResourceExhausted, "{msg}");
        assert!(msg.contains("per worker"), "{msg}");
        for w in [3, 4] {
            held.push(stalled_push(&c, w, P, first));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // 40 more from other workers: over the limit in total, each refused.
        let mut extra = Vec::new();
        for w in 10..50 {
            extra.push(stalled_push(&stub(&url).await, w, P, 1000));
        }
        for (_tx, t) in extra {
            let (code, msg) =
                refused(t.await.unwrap()).expect("a push beyond the total limit was accepted");
            assert_eq!(code, Code::ResourceExhausted, "{msg}");
        }
        let loaded = proc_status(pid, "VmRSS");
        println!(
            "server RSS: {} MB before, {} MB with 6 stalled pushes held and 41 refused (4 MB each)",
            base / 1024,
            loaded / 1024
        );
        // 6 shard buffers of 4 MB are allowed (with HTTP/2's buffers, about 40 MB); 47 would
        // be 188 MB.
        assert!(loaded < base + 12 * 4 * 1024, "{base} kB → {loaded} kB");
        // After the idle timeout the stalled pushes are dropped (ABORTED)...
        for (_tx, t) in held {
            let r = tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("a stalled push was never dropped")
                .unwrap();
            let (code, msg) = refused(r).expect("a stalled push was applied");
            assert_eq!(code, Code::Aborted, "{msg}");
            assert!(msg.contains("idle"), "{msg}");
        }
        // ... and a whole push goes through.
        let mut c2 = c.clone();
        let reply = c2
            .push(tokio_stream::iter(vec![
                header(0, P as u64),
                data(&vec![0.1; P / 4]),
                data(&vec![0.1; P / 4]),
                data(&vec![0.1; P / 4]),
                data(&vec![0.1; P / 4]),
            ]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.version, 1);
    });
}
