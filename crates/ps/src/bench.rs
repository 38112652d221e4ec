//! Throughput benchmark (`stagewise bench ps`): pushes/s and bytes/s with pre-filled
//! gradients, in-process and over gRPC on loopback, and mean staleness as workers are added.
//!
//! Every worker loops pull → push with a fixed gradient for `seconds`; the server runs plain
//! ASGD with QHM (one fused pass over parameters, gradient and momentum buffer per push).
//! Bytes count the gradient pushed; `wire` also counts the parameters pulled. gRPC rows are
//! measured with f32 on the wire and, as `grpc-bf16`, with bfloat16 gradients and parameters
//! (half the bytes; their byte counts are the bytes actually sent). Two loopback
//! references are measured in the same run for the gRPC numbers: `iperf3` (one stream, when it
//! is on `PATH`; the reference the targets are stated against), once with its default 128 KiB
//! writes and once with 1 MiB writes (`-l 1M`, the gRPC chunk size; faster on loopback), and a
//! raw TCP transfer of this process (1 MiB writes and reads of one reused buffer). Each
//! reference is the best of its readings, so ratios against it err low.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{PolicyConfig, ScheduleConfig, ServeConfig, ServerConfig, WorkerConfig};
use crate::error::PsError;
use crate::gradient::BatchStats;
use crate::server::{ParamServer, PullRequest, Push};
use crate::shard::ShardRange;
use crate::synthetic::FixedGradient;
use crate::transport::codec::WireFloat;
use crate::transport::grpc::BlockingGrpcClient;
use crate::worker::PsClient;

/// What to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BenchConfig {
    /// Model sizes P.
    pub params: Vec<usize>,
    /// Worker counts W for the throughput table.
    pub workers: Vec<usize>,
    /// Seconds per measurement.
    pub seconds: f64,
    /// Measure in-process.
    pub in_process: bool,
    /// Measure over gRPC on 127.0.0.1.
    pub grpc: bool,
    /// Bytes per gRPC chunk.
    pub chunk_bytes: usize,
    /// Wire formats of the gRPC rows (gradients and parameters alike).
    pub grpc_wires: Vec<WireFloat>,
    /// Worker counts for the staleness sweep (empty: skip it).
    pub staleness_workers: Vec<usize>,
    /// Model size for the staleness sweep.
    pub staleness_params: usize,
    /// Simulated compute time per gradient in the staleness sweep, µs (a sleep).
    pub staleness_compute_us: u64,
    /// Bytes for the raw TCP loopback reference (0: skip).
    pub tcp_bytes: usize,
    /// Seconds of the `iperf3` loopback reference (0: skip; skipped with a note when `iperf3`
    /// is not on `PATH`).
    pub iperf3_seconds: f64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            params: vec![1_000_000, 10_000_000],
            workers: vec![1, 2, 4],
            seconds: 3.0,
            in_process: true,
            grpc: true,
            chunk_bytes: crate::config::DEFAULT_CHUNK_BYTES,
            grpc_wires: vec![WireFloat::F32, WireFloat::Bf16],
            staleness_workers: vec![1, 2, 4, 8, 16],
            staleness_params: 100_000,
            staleness_compute_us: 1_000,
            tcp_bytes: 2 << 30,
            iperf3_seconds: 3.0,
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// `in-process`, `grpc` (f32 on the wire) or `grpc-bf16`.
    pub mode: String,
    /// P.
    pub params: usize,
    /// W.
    pub workers: usize,
    /// Pushes applied.
    pub pushes: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Pushes per second.
    pub pushes_per_s: f64,
    /// Gradient bytes pushed per second.
    pub push_bytes_per_s: f64,
    /// Gradient plus parameter bytes moved per second.
    pub wire_bytes_per_s: f64,
    /// Mean staleness.
    pub mean_staleness: f64,
    /// CPU time of this process (every thread: server, workers, runtimes) over the
    /// measurement, in cores: CPU-seconds per second. `None` where it cannot be read.
    #[serde(default)]
    pub cpu_cores: Option<f64>,
}

/// All measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Throughput table.
    pub rows: Vec<BenchRow>,
    /// Staleness sweep (in-process, simulated compute).
    pub staleness: Vec<BenchRow>,
    /// Raw TCP loopback bandwidth, bytes/s: the best of [`BenchReport::tcp_runs`].
    pub tcp_loopback_bytes_per_s: Option<f64>,
    /// Raw TCP loopback measurements, before and after the throughput rows.
    #[serde(default)]
    pub tcp_runs: Vec<f64>,
    /// `iperf3` loopback bandwidth (one stream, receiver side), bytes/s: the best of
    /// [`BenchReport::iperf3_runs`], so that a ratio against it errs low.
    #[serde(default)]
    pub iperf3_bytes_per_s: Option<f64>,
    /// `iperf3` measurements, before and after the throughput rows.
    #[serde(default)]
    pub iperf3_runs: Vec<f64>,
    /// CPU of each `iperf3` measurement, client plus server, in cores (from its
    /// `cpu_utilization_percent`; `None` when it did not report it).
    #[serde(default)]
    pub iperf3_cpu_cores: Vec<Option<f64>>,
    /// Why there is no `iperf3` number, when there is none.
    #[serde(default)]
    pub iperf3_note: Option<String>,
}

fn server_config() -> ServerConfig {
    ServerConfig {
        policy: PolicyConfig::Asgd,
        schedule: ScheduleConfig::Constant {
            lr: 1e-6,
            momentum: 0.9,
            nu: 0.7,
        },
        log_every: 1_000_000,
        ..ServerConfig::default()
    }
}

/// What a [`Stopwatch`] read: wall seconds and the CPU used over them.
struct Window {
    secs: f64,
    cpu_cores: Option<f64>,
}

/// Wall time and this process's CPU time (every thread), from one start.
struct Stopwatch {
    wall: Instant,
    cpu: Option<f64>,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    fn read(&self) -> Window {
        let secs = self.wall.elapsed().as_secs_f64();
        let cpu_cores = self
            .cpu
            .zip(process_cpu_seconds())
            .map(|(before, now)| (now - before) / secs);
        Window { secs, cpu_cores }
    }
}

fn row(
    mode: &str,
    p: usize,
    w: usize,
    pushes: u64,
    window: Window,
    tau: f64,
    wire: WireFloat,
) -> BenchRow {
    let Window { secs, cpu_cores } = window;
    let bytes = (p * wire.bytes()) as f64;
    BenchRow {
        mode: mode.into(),
        params: p,
        workers: w,
        pushes,
        seconds: secs,
        pushes_per_s: pushes as f64 / secs,
        push_bytes_per_s: pushes as f64 * bytes / secs,
        wire_bytes_per_s: 2.0 * pushes as f64 * bytes / secs,
        mean_staleness: tau,
        cpu_cores,
    }
}

/// CPU time used so far by this process, all threads, user plus system, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage writes one `rusage` into the zeroed struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        Some(secs(usage.ru_utime) + secs(usage.ru_stime))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// In-process: W threads pulling and pushing a fixed gradient for `seconds`.
pub fn in_process(
    p: usize,
    w: usize,
    seconds: f64,
    compute: Duration,
) -> Result<BenchRow, PsError> {
    let server = Arc::new(ParamServer::new(
        &server_config(),
        p,
        ShardRange::whole(p),
        vec![0.0; p],
    )?);
    let grad = FixedGradient::new(p, 1);
    let stop = AtomicBool::new(false);
    let clock = Stopwatch::start();
    std::thread::scope(|s| {
        for id in 0..w {
            let (server, grad, stop) = (&server, &grad, &stop);
            s.spawn(move || {
                let mut params = vec![0.0f32; p];
                while !stop.load(Ordering::Relaxed) {
                    let req = PullRequest {
                        worker_id: id as u32,
                        ..Default::default()
                    };
                    let Ok(info) = server.pull_into(req, &mut params) else {
                        break;
                    };
                    if !compute.is_zero() {
                        std::thread::sleep(compute);
                    }
                    let push = Push {
                        worker_id: id as u32,
                        pulled_version: info.version,
                        grads: grad.values(),
                        stats: BatchStats::default(),
                    };
                    if server.push(push).is_err() {
                        break;
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let window = clock.read();
    let s = server.summary();
    Ok(row(
        "in-process",
        p,
        w,
        server.version(),
        window,
        s.mean_staleness,
        WireFloat::F32,
    ))
}

/// Over gRPC on 127.0.0.1: a server in this process, W worker threads with their own
/// connections, gradients and parameters sent as `wire`.
pub fn grpc(
    p: usize,
    w: usize,
    seconds: f64,
    chunk_bytes: usize,
    wire: WireFloat,
) -> Result<BenchRow, PsError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| PsError::Transport(e.to_string()))?;
    let config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        server: server_config(),
        num_params: p,
        max_chunk_bytes: chunk_bytes,
        max_message_bytes: (chunk_bytes + 64 * 1024).max(crate::config::DEFAULT_MAX_MESSAGE_BYTES),
        exit_after_finish_ms: None,
        ..ServeConfig::default()
    };
    let max_message = config.max_message_bytes;
    let handle = rt.block_on(crate::transport::grpc::start(config, None, None))?;
    let url = format!("http://{}", handle.local_addr());
    let grad = FixedGradient::new(p, 1);
    let stop = AtomicBool::new(false);
    let mut clock = Stopwatch::start();
    let results: Vec<Result<(), PsError>> = std::thread::scope(|s| {
        let mut clients = Vec::new();
        for id in 0..w {
            let wc = WorkerConfig {
                servers: vec![url.clone()],
                worker_id: id as u32,
                max_chunk_bytes: chunk_bytes,
                max_message_bytes: max_message,
                grad_wire: wire,
                param_wire: wire,
                ..WorkerConfig::default()
            };
            clients.push(BlockingGrpcClient::connect(&wc));
        }
        clock = Stopwatch::start();
        let handles: Vec<_> = clients
            .into_iter()
            .map(|c| {
                let (grad, stop) = (&grad, &stop);
                s.spawn(move || -> Result<(), PsError> {
                    let mut c = c?;
                    let mut params = vec![0.0f32; p];
                    // The worker loop's path: the gradient buffer is sent without a copy (f32)
                    // or converted in one pass (bf16).
                    let grad = Arc::new(grad.values().to_vec());
                    while !stop.load(Ordering::Relaxed) {
                        let pulled = c.pull(&[0], &mut params)?;
                        c.push_shared(&pulled.versions, &grad, BatchStats::default())?;
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(PsError::Transport("worker panicked".into())))
            })
            .collect()
    });
    let window = clock.read();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let server = Arc::clone(handle.server());
    let summary = rt.block_on(handle.shutdown())?;
    let mode = match wire {
        WireFloat::F32 => "grpc".to_string(),
        other => format!("grpc-{other}"),
    };
    Ok(row(
        &mode,
        p,
        w,
        server.version(),
        window,
        summary.mean_staleness,
        wire,
    ))
}

/// Raw TCP over 127.0.0.1: one sender, one receiver, `bytes` in 1 MiB writes; bytes/s.
pub fn tcp_loopback(bytes: usize) -> Result<f64, PsError> {
    let io = |e: std::io::Error| PsError::Transport(format!("tcp loopback: {e}"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = std::net::TcpStream::connect(addr)?;
        let buf = vec![7u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            s.write_all(&buf[..n])?;
            left -= n;
        }
        Ok(())
    });
    let (mut conn, _) = listener.accept().map_err(io)?;
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    while got < bytes {
        let n = conn.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    sender
        .join()
        .map_err(|_| PsError::Transport("tcp sender panicked".into()))?
        .map_err(io)?;
    Ok(got as f64 / secs)
}

/// What one `iperf3` run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iperf3Reading {
    /// Bytes/s at the receiver.
    pub bytes_per_s: f64,
    /// CPU of client plus server, in cores (`None` when iperf3 did not report it).
    pub cpu_cores: Option<f64>,
}

/// `iperf3` over 127.0.0.1 for `seconds`, one stream, writes of `block_bytes` (iperf3's
/// default 128 KiB when `None`). Starts a one-off `iperf3 -s -1` on a free port and runs
/// `iperf3 -c 127.0.0.1 -J` against it. The error explains why there is no number (e.g.
/// `iperf3` not installed).
pub fn iperf3_loopback(seconds: f64, block_bytes: Option<usize>) -> Result<Iperf3Reading, String> {
    iperf3_with("iperf3", seconds, block_bytes)
}

fn iperf3_with(
    program: &str,
    seconds: f64,
    block_bytes: Option<usize>,
) -> Result<Iperf3Reading, String> {
    use std::process::{Command, Stdio};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port()
        .to_string();
    let mut server = Command::new(program)
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{program} is not on PATH (Debian: apt-get install iperf3)")
            }
            _ => format!("cannot start iperf3: {e}"),
        })?;
    let secs = format!("{}", seconds.ceil().max(1.0) as u64);
    let mut result = Err("iperf3 server did not come up".to_string());
    // The server needs a moment to listen; the client is retried until it connects.
    for _ in 0..50 {
        let mut client = Command::new(program);
        client.args(["-c", "127.0.0.1", "-p", &port, "-t", &secs, "-J"]);
        if let Some(b) = block_bytes {
            client.args(["-l", &b.to_string()]);
        }
        let out = client.stderr(Stdio::null()).output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                result = Err(format!("cannot run the iperf3 client: {e}"));
                break;
            }
        };
        let json: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                result = Err(format!("unreadable iperf3 output: {e}"));
                break;
            }
        };
        if let Some(err) = json.get("error").and_then(|e| e.as_str()) {
            result = Err(format!("iperf3: {err}"));
            if err.contains("connect") {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            break;
        }
        let cpu = |side: &str| {
            json.pointer(&format!("/end/cpu_utilization_percent/{side}_total"))
                .and_then(|c| c.as_f64())
        };
        let cpu_cores = cpu("host").zip(cpu("remote")).map(|(h, r)| (h + r) / 100.0);
        result = json
            .pointer("/end/sum_received/bits_per_second")
            .and_then(|b| b.as_f64())
            .map(|b| Iperf3Reading {
                bytes_per_s: b / 8.0,
                cpu_cores,
            })
            .ok_or_else(|| "iperf3 output without end.sum_received.bits_per_second".into());
        break;
    }
    if !matches!(server.try_wait(), Ok(Some(_))) {
        let _ = server.kill();
    }
    let _ = server.wait();
    result
}

/// Measures the loopback references once more and updates their best values.
fn references(config: &BenchConfig, report: &mut BenchReport) -> Result<(), PsError> {
    let best = |runs: &[f64]| runs.iter().copied().reduce(f64::max);
    // iperf3's default writes (128 KiB) and the gRPC chunk size (1 MiB, faster on loopback).
    for block in [None, Some(1 << 20)] {
        if config.iperf3_seconds > 0.0 && report.iperf3_note.is_none() {
            match iperf3_loopback(config.iperf3_seconds, block) {
                Ok(r) => {
                    report.iperf3_runs.push(r.bytes_per_s);
                    report.iperf3_cpu_cores.push(r.cpu_cores);
                }
                Err(note) => {
                    tracing::warn!(%note, "no iperf3 reference");
                    report.iperf3_note = Some(note);
                }
            }
            report.iperf3_bytes_per_s = best(&report.iperf3_runs);
        }
    }
    if config.tcp_bytes > 0 {
        report.tcp_runs.push(tcp_loopback(config.tcp_bytes)?);
        report.tcp_loopback_bytes_per_s = best(&report.tcp_runs);
    }
    Ok(())
}

/// Runs everything `config` asks for, logging each row as it comes.
pub fn run(config: &BenchConfig) -> Result<BenchReport, PsError> {
    let mut report = BenchReport {
        rows: Vec::new(),
        staleness: Vec::new(),
        tcp_loopback_bytes_per_s: None,
        tcp_runs: Vec::new(),
        iperf3_bytes_per_s: None,
        iperf3_runs: Vec::new(),
        iperf3_cpu_cores: Vec::new(),
        iperf3_note: None,
    };
    // The references are measured before and after the rows: on a shared machine one sample
    // can be far off, and the best of the two keeps the ratios conservative.
    references(config, &mut report)?;
    for &p in &config.params {
        for &w in &config.workers {
            if config.in_process {
                let r = in_process(p, w, config.seconds, Duration::ZERO)?;
                tracing::info!(?r, "bench");
                report.rows.push(r);
            }
            if config.grpc {
                for &wire in &config.grpc_wires {
                    let r = grpc(p, w, config.seconds, config.chunk_bytes, wire)?;
                    tracing::info!(?r, "bench");
                    report.rows.push(r);
                }
            }
        }
    }
    if !config.params.is_empty() && (config.in_process || config.grpc) {
        references(config, &mut report)?;
    }
    for &w in &config.staleness_workers {
        let r = in_process(
            config.staleness_params,
            w,
            config.seconds,
            Duration::from_micros(config.staleness_compute_us),
        )?;
        report.staleness.push(r);
    }
    Ok(report)
}

/// The report as a plain-text table.
pub fn table(report: &BenchReport) -> String {
    let gb = |x: f64| x / 1e9;
    let mut out = String::new();
    let runs = |runs: &[f64]| {
        let list: Vec<String> = runs.iter().map(|r| format!("{:.2}", gb(*r))).collect();
        if list.len() > 1 {
            format!(" (best of {} GB/s)", list.join(", "))
        } else {
            String::new()
        }
    };
    match (report.iperf3_bytes_per_s, &report.iperf3_note) {
        (Some(t), _) => out.push_str(&format!(
            "iperf3 loopback (one stream; 128 KiB and 1 MiB writes, before and after the \
             rows): {:.2} GB/s{}\n",
            gb(t),
            runs(&report.iperf3_runs)
        )),
        (None, Some(note)) => out.push_str(&format!("iperf3 loopback: not measured ({note})\n")),
        (None, None) => {}
    }
    // Bytes moved per CPU-second: iperf3 (client + server) against each row (whole process).
    let iperf3_per_core: Vec<f64> = report
        .iperf3_runs
        .iter()
        .zip(&report.iperf3_cpu_cores)
        .filter_map(|(b, c)| c.filter(|c| *c > 0.0).map(|c| b / c))
        .collect();
    if !iperf3_per_core.is_empty() {
        let cores: Vec<String> = report
            .iperf3_cpu_cores
            .iter()
            .map(|c| c.map_or_else(|| "-".into(), |c| format!("{c:.2}")))
            .collect();
        out.push_str(&format!(
            "iperf3 CPU, client + server: {} cores; best {:.2} GB per CPU-second\n",
            cores.join(", "),
            gb(iperf3_per_core.iter().copied().fold(0.0, f64::max))
        ));
    }
    if let Some(t) = report.tcp_loopback_bytes_per_s {
        out.push_str(&format!(
            "raw TCP loopback (this process, 1 MiB writes, before and after the rows): {:.2} GB/s{}\n",
            gb(t),
            runs(&report.tcp_runs)
        ));
    }
    out.push_str(
        "\nmode        P           W  pushes/s   push GB/s  wire GB/s  % iperf3  % raw TCP  mean τ  cores  GB/CPU-s\n",
    );
    let pct = |r: &BenchRow, reference: Option<f64>, width: usize| {
        reference
            .filter(|_| r.mode.starts_with("grpc"))
            .map(|t| format!("{:>w$.0}%", 100.0 * r.wire_bytes_per_s / t, w = width - 1))
            .unwrap_or_else(|| format!("{:>width$}", "-"))
    };
    for r in &report.rows {
        out.push_str(&format!(
            "{:<11} {:<11} {:<2} {:>9.1} {:>10.2} {:>10.2} {} {} {:>7.2} {:>6} {:>9}\n",
            r.mode,
            r.params,
            r.workers,
            r.pushes_per_s,
            gb(r.push_bytes_per_s),
            gb(r.wire_bytes_per_s),
            pct(r, report.iperf3_bytes_per_s, 9),
            pct(r, report.tcp_loopback_bytes_per_s, 10),
            r.mean_staleness,
            r.cpu_cores
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            r.cpu_cores.filter(|c| *c > 0.0).map_or_else(
                || "-".into(),
                |c| format!("{:.2}", gb(r.wire_bytes_per_s / c))
            ),
        ));
    }
    // bfloat16 against f32 over gRPC, row by row.
    let mut speedups = String::new();
    for r in report.rows.iter().filter(|r| r.mode == "grpc-bf16") {
        let f32_row = report
            .rows
            .iter()
            .find(|x| x.mode == "grpc" && x.params == r.params && x.workers == r.workers);
        if let Some(f) = f32_row.filter(|f| f.pushes_per_s > 0.0) {
            speedups.push_str(&format!(
                "  P {:<9} W {:<2} {:.2}×\n",
                r.params,
                r.workers,
                r.pushes_per_s / f.pushes_per_s
            ));
        }
    }
    if !speedups.is_empty() {
        out.push_str("\ngRPC pushes/s, bf16 ÷ f32 on the wire\n");
        out.push_str(&speedups);
    }
    if !report.staleness.is_empty() {
        out.push_str("\nstaleness sweep (in-process, simulated compute per gradient)\n");
        out.push_str("W   P         pushes/s  mean τ  (W−1 for round-robin workers)\n");
        for r in &report.staleness {
            out.push_str(&format!(
                "{:<3} {:<9} {:>9.1} {:>7.2}  {}\n",
                r.workers,
                r.params,
                r.pushes_per_s,
                r.mean_staleness,
                r.workers.saturating_sub(1)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bench_runs_and_counts() {
        let config = BenchConfig {
            params: vec![10_000],
            workers: vec![2],
            seconds: 0.2,
            staleness_workers: vec![1, 3],
            staleness_params: 1000,
            staleness_compute_us: 500,
            tcp_bytes: 8 << 20,
            iperf3_seconds: 0.0,
            ..BenchConfig::default()
        };
        let r = run(&config).unwrap();
        assert_eq!(r.rows.len(), 3);
        assert!(r.rows.iter().all(|x| x.pushes > 0), "{r:?}");
        let bf16 = &r.rows[2];
        assert_eq!(bf16.mode, "grpc-bf16");
        // 2 bytes per value on the wire, 10,000 values per push.
        let bytes_per_push = bf16.push_bytes_per_s / bf16.pushes_per_s;
        assert!((bytes_per_push - 20_000.0).abs() < 1e-6, "{bytes_per_push}");
        if cfg!(unix) {
            assert!(
                r.rows.iter().all(|x| x.cpu_cores.is_some_and(|c| c > 0.0)),
                "{r:?}"
            );
        }
        assert_eq!(r.staleness[0].mean_staleness, 0.0);
        assert!(r.staleness[1].mean_staleness > 0.5, "{r:?}");
        assert!(table(&r).contains("grpc"));
    }

    #[test]
    fn missing_iperf3_is_a_note_not_a_failure() {
        let note = iperf3_with("iperf3-that-is-not-installed", 1.0, None).unwrap_err();
        assert!(note.contains("not on PATH"), "{note}");
        let report = BenchReport {
            rows: Vec::new(),
            staleness: Vec::new(),
            tcp_loopback_bytes_per_s: Some(1e9),
            tcp_runs: vec![1e9],
            iperf3_bytes_per_s: None,
            iperf3_runs: Vec::new(),
            iperf3_cpu_cores: Vec::new(),
            iperf3_note: Some(note),
        };
        assert!(table(&report).contains("iperf3 loopback: not measured"));
    }
}
