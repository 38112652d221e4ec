//! Runs the parameter-server benchmark and prints the table (the CLI's `stagewise bench ps`
//! does the same through [`stagewise_ps::bench::run`]).
//!
//! ```text
//! cargo run --release -p stagewise-ps --example bench_ps            # full: P = 1M, 10M
//! cargo run --release -p stagewise-ps --example bench_ps -- quick   # P = 1M, 1 s per cell
//! # options: p=1000000,10000000 w=1,2 secs=2 chunk=BYTES grpc-only no-sweep no-tcp
//! ```

use stagewise_ps::bench::{run, table, BenchConfig};

fn main() {
    let mut config = BenchConfig::default();
    if std::env::args().any(|a| a == "quick") {
        config.params = vec![1_000_000];
        config.seconds = 1.0;
    }
    for a in std::env::args() {
        if let Some(c) = a.strip_prefix("chunk=").and_then(|c| c.parse().ok()) {
            config.chunk_bytes = c;
        }
        if let Some(v) = a.strip_prefix("p=") {
            config.params = v.split(',').filter_map(|x| x.parse().ok()).collect();
        }
        if let Some(v) = a.strip_prefix("w=") {
            config.workers = v.split(',').filter_map(|x| x.parse().ok()).collect();
        }
        if let Some(v) = a.strip_prefix("secs=").and_then(|v| v.parse().ok()) {
            config.seconds = v;
        }
        if a == "no-sweep" {
            config.staleness_workers.clear();
        }
        if a == "no-tcp" {
            config.tcp_bytes = 0;
            config.iperf3_seconds = 0.0;
        }
        if a == "grpc-only" {
            config.in_process = false;
            config.staleness_workers.clear();
        }
    }
    match run(&config) {
        Ok(report) => {
            print!("{}", table(&report));
            if let Ok(json) = serde_json::to_string(&report) {
                eprintln!("{json}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
