//! A minimal process around the library, for multi-process tests and quick manual runs
//! (the real command line is `stagewise ps ...` in the CLI crate).
//!
//! ```text
//! stagewise-ps-node serve CONFIG.json               # ServeConfig; prints "LISTENING <addr>"
//! stagewise-ps-node worker CONFIG.json DIM SEED     # WorkerConfig; a noisy quadratic of DIM
//! stagewise-ps-node stall-push CONFIG.json          # sends half a push, then hangs (fault tests)
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use stagewise_ps::auth::{load_token, AddToken};
use stagewise_ps::config::{ServeConfig, WorkerConfig};
use stagewise_ps::proto::parameter_server_client::ParameterServerClient;
use stagewise_ps::proto::{push_chunk, InfoRequest, PushChunk, PushHeader};
use stagewise_ps::synthetic::NoisyQuadratic;
use stagewise_ps::transport::codec::encode_f32s;

fn read_json<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn serve(path: &str) -> Result<(), String> {
    let config: ServeConfig = read_json(path)?;
    runtime()?.block_on(async move {
        let handle = stagewise_ps::start_server(config, None, None)
            .await
            .map_err(|e| e.to_string())?;
        println!("LISTENING {}", handle.local_addr());
        let _ = std::io::stdout().flush();
        let summary = handle.wait().await.map_err(|e| e.to_string())?;
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
        Ok(())
    })
}

fn worker(path: &str, dim: &str, seed: &str) -> Result<(), String> {
    let config: WorkerConfig = read_json(path)?;
    let dim: usize = dim.parse().map_err(|e| format!("DIM: {e}"))?;
    let seed: u64 = seed.parse().map_err(|e| format!("SEED: {e}"))?;
    let source = NoisyQuadratic::new(dim, 0.5, 2.0, 0.01, 1).with_noise_seed(seed);
    let report = stagewise_ps::run_worker(config, source).map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    Ok(())
}

/// Sends the header and the first data chunk of a push, then never finishes it.
fn stall_push(path: &str) -> Result<(), String> {
    let config: WorkerConfig = read_json(path)?;
    runtime()?.block_on(async move {
        let token = load_token(&config.auth).map_err(|e| e.to_string())?;
        let add = AddToken::new(token.as_deref()).map_err(|e| e.to_string())?;
        let url = config.servers.first().cloned().unwrap_or_default();
        let channel = tonic::transport::Endpoint::from_shared(url)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut client = ParameterServerClient::with_interceptor(channel, add);
        let info = client
            .info(InfoRequest {
                model_id: config.model_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel::<PushChunk>(4);
        let header = PushHeader {
            model_id: config.model_id.clone(),
            worker_id: config.worker_id,
            pulled_version: info.version,
            total_len: info.shard_len,
            loss: 0.0,
            accuracy: f64::NAN,
            batch_size: 1,
            ..Default::default()
        };
        let half = vec![1.0f32; (info.shard_len as usize / 2).max(1)];
        tx.send(PushChunk {
            kind: Some(push_chunk::Kind::Header(header)),
        })
        .await
        .map_err(|e| e.to_string())?;
        tx.send(PushChunk {
            kind: Some(push_chunk::Kind::Data(encode_f32s(&half))),
        })
        .await
        .map_err(|e| e.to_string())?;
        let call = tokio::spawn(async move {
            client
                .push(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("STALLED");
        let _ = std::io::stdout().flush();
        // Keep the stream open (tx alive) until killed; give up after a minute.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(tx);
        let _ = call.await;
        Ok(())
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("serve") if args.len() == 3 => serve(&args[2]),
        Some("worker") if args.len() == 5 => worker(&args[2], &args[3], &args[4]),
        Some("stall-push") if args.len() == 3 => stall_push(&args[2]),
        _ => Err(
            "usage: stagewise-ps-node serve CONFIG | worker CONFIG DIM SEED | stall-push CONFIG"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
