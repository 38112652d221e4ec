//! The gRPC worker side: connections to every shard, chunked pulls and pushes.

use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::auth::{load_token, AddToken};
use crate::config::WorkerConfig;
use crate::error::{ConfigError, PsError};
use crate::gradient::{BatchStats, GradientSource};
use crate::proto::parameter_server_client::ParameterServerClient;
use crate::proto::{push_chunk, InfoRequest, PullRequest, PushChunk, PushHeader};
use crate::server::PushOutcome;
use crate::shard::{check_cover, ShardRange};
use crate::transport::codec::{decode_into, encode_f32s};
use crate::worker::{worker_loop, PsClient, Pulled, WorkerLimits, WorkerReport};

type Stub = ParameterServerClient<InterceptedService<Channel, AddToken>>;

struct ShardConn {
    url: String,
    stub: Stub,
    range: ShardRange,
}

/// An async client for every shard of one model.
pub struct GrpcClient {
    shards: Vec<ShardConn>,
    total: usize,
    model_id: String,
    worker_id: u32,
    chunk_bytes: usize,
}

fn status(url: &str, s: tonic::Status) -> PsError {
    PsError::Status {
        server: url.to_string(),
        status: Box::new(s),
    }
}

async fn endpoint(url: &str, config: &WorkerConfig) -> Result<Endpoint, PsError> {
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| ConfigError::new("servers", format!("'{url}' is not a URL: {e}")))?
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = &config.tls {
        let ca = std::fs::read(&tls.ca_cert).map_err(|source| PsError::Io {
            path: tls.ca_cert.clone(),
            source,
        })?;
        let mut t = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(d) = &tls.domain {
            t = t.domain_name(d.clone());
        }
        ep = ep
            .tls_config(t)
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
    }
    Ok(ep)
}

impl GrpcClient {
    /// Connects to every server in `config.servers` (retrying for `connect_timeout_ms`),
    /// reads their shard ranges and checks that they tile the model.
    pub async fn connect(config: &WorkerConfig) -> Result<Self, PsError> {
        config.validate()?;
        let token = load_token(&config.auth)?;
        let add = AddToken::new(token.as_deref())?;
        let deadline = Instant::now() + Duration::from_millis(config.connect_timeout_ms);
        let mut shards = Vec::new();
        let mut total = None;
        for url in &config.servers {
            let ep = endpoint(url, config).await?;
            let channel = loop {
                match ep.connect().await {
                    Ok(c) => break c,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(PsError::Transport(format!("cannot connect to {url}: {e}")))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let mut stub = ParameterServerClient::with_interceptor(channel, add.clone())
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(config.max_message_bytes);
            let info = stub
                .info(InfoRequest {
                    model_id: config.model_id.clone(),
                })
                .await
                .map_err(|s| status(url, s))?
                .into_inner();
            let t = usize::try_from(info.total_params).unwrap_or(usize::MAX);
            if *total.get_or_insert(t) != t {
                return Err(PsError::Transport(format!(
                    "{url} holds a model of {t} parameters, another server one of {}",
                    total.unwrap_or(0)
                )));
            }
            let range = ShardRange {
                start: usize::try_from(info.shard_start).unwrap_or(usize::MAX),
                len: usize::try_from(info.shard_len).unwrap_or(usize::MAX),
            };
            shards.push(ShardConn {
                url: url.clone(),
                stub,
                range,
            });
        }
        let total = total.unwrap_or(0);
        let ranges: Vec<ShardRange> = shards.iter().map(|s| s.range).collect();
        check_cover(total, &ranges).map_err(PsError::Transport)?;
        shards.sort_by_key(|s| s.range.start);
        Ok(Self {
            shards,
            total,
            model_id: config.model_id.clone(),
            worker_id: config.worker_id,
            chunk_bytes: config.max_chunk_bytes,
        })
    }

    /// Parameters of the whole model.
    pub fn num_params(&self) -> usize {
        self.total
    }

    /// The shard ranges, in the order versions are given.
    pub fn ranges(&self) -> Vec<ShardRange> {
        self.shards.iter().map(|s| s.range).collect()
    }

    /// Pulls every shard concurrently into `params`.
    pub async fn pull(
        &mut self,
        min_versions: &[u64],
        params: &mut [f32],
    ) -> Result<Pulled, PsError> {
        if params.len() != self.total {
            return Err(ConfigError::new("params", "buffer length differs from the model").into());
        }
        let mut rest: &mut [f32] = params;
        let mut jobs = Vec::new();
        for (i, shard) in self.shards.iter_mut().enumerate() {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(shard.range.len);
            rest = tail;
            let req = PullRequest {
                model_id: self.model_id.clone(),
                worker_id: self.worker_id,
                min_version: min_versions.get(i).copied().unwrap_or(0),
                wait_ms: 0,
            };
            jobs.push(pull_shard(shard, req, mine));
        }
        let got = try_join_all(jobs).await?;
        Ok(Pulled {
            finished: got.iter().any(|g| g.1),
            versions: got.into_iter().map(|g| g.0).collect(),
        })
    }

    /// Pushes each shard its slice of `grads` concurrently.
    pub async fn push(
        &mut self,
        versions: &[u64],
        grads: &[f32],
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        if grads.len() != self.total || versions.len() != self.shards.len() {
            return Err(
                ConfigError::new("grads", "length differs from the model or shard count").into(),
            );
        }
        let mut jobs = Vec::new();
        for (shard, &version) in self.shards.iter_mut().zip(versions) {
            let slice = &grads[shard.range.range()];
            let header = PushHeader {
                model_id: self.model_id.clone(),
                worker_id: self.worker_id,
                pulled_version: version,
                total_len: slice.len() as u64,
                loss: stats.loss,
                accuracy: stats.accuracy.unwrap_or(f64::NAN),
                batch_size: stats.batch_size,
            };
            let chunks = push_chunks(header, slice, self.chunk_bytes);
            jobs.push(async move {
                let reply = shard
                    .stub
                    .push(tokio_stream::iter(chunks))
                    .await
                    .map_err(|s| status(&shard.url, s))?
                    .into_inner();
                outcome(&shard.url, reply)
            });
        }
        try_join_all(jobs).await
    }
}

/// The header and data messages of one push.
pub(crate) fn push_chunks(header: PushHeader, grads: &[f32], chunk_bytes: usize) -> Vec<PushChunk> {
    let per = (chunk_bytes / 4).max(1);
    let mut out = Vec::with_capacity(1 + grads.len().div_ceil(per));
    out.push(PushChunk {
        kind: Some(push_chunk::Kind::Header(header)),
    });
    for c in grads.chunks(per) {
        out.push(PushChunk {
            kind: Some(push_chunk::Kind::Data(encode_f32s(c))),
        });
    }
    out
}

fn outcome(url: &str, r: crate::proto::PushReply) -> Result<PushOutcome, PsError> {
    use crate::proto::PushOutcome as Pb;
    let (version, staleness) = (r.version, r.staleness);
    match Pb::try_from(r.outcome) {
        Ok(Pb::Applied) => Ok(PushOutcome::Applied { version, staleness }),
        Ok(Pb::Buffered) => Ok(PushOutcome::Buffered { version, staleness }),
        Ok(Pb::RefusedStale) => Ok(PushOutcome::RefusedStale { version, staleness }),
        Ok(Pb::Finished) => Ok(PushOutcome::Finished { version }),
        _ => Err(PsError::Transport(format!(
            "{url}: unknown push outcome {}",
            r.outcome
        ))),
    }
}

async fn pull_shard(
    shard: &mut ShardConn,
    req: PullRequest,
    out: &mut [f32],
) -> Result<(u64, bool), PsError> {
    let url = shard.url.clone();
    let bad = |m: String| PsError::Transport(format!("{url}: malformed pull reply: {m}"));
    let mut stream = match shard.stub.pull(req).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::DeadlineExceeded => {
            return Err(PsError::WaitTimeout {
                wanted: 0,
                current: 0,
                waited_ms: 0,
            })
        }
        Err(s) => return Err(status(&url, s)),
    };
    let mut filled = 0usize;
    let mut version = None;
    let mut finished = false;
    while let Some(chunk) = stream.message().await.map_err(|s| status(&url, s))? {
        if chunk.total_len != out.len() as u64 {
            return Err(bad(format!(
                "total_len {} for a shard of {}",
                chunk.total_len,
                out.len()
            )));
        }
        if *version.get_or_insert(chunk.version) != chunk.version {
            return Err(bad("version changed within one pull".into()));
        }
        let n = chunk.data.len() / 4;
        if chunk.offset != filled as u64 || chunk.data.len() % 4 != 0 || filled + n > out.len() {
            return Err(bad(format!(
                "chunk at offset {} of {} bytes after {filled} floats",
                chunk.offset,
                chunk.data.len()
            )));
        }
        decode_into(&chunk.data, &mut out[filled..filled + n]);
        filled += n;
        finished |= chunk.finished;
    }
    if filled != out.len() {
        return Err(bad(format!("{filled} of {} floats received", out.len())));
    }
    Ok((version.unwrap_or(0), finished))
}

/// A blocking [`PsClient`] over [`GrpcClient`], with its own single-threaded runtime.
pub struct BlockingGrpcClient {
    runtime: tokio::runtime::Runtime,
    inner: GrpcClient,
}

impl BlockingGrpcClient {
    /// Connects as [`GrpcClient::connect`]. Must not be called from inside a tokio runtime.
    pub fn connect(config: &WorkerConfig) -> Result<Self, PsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PsError::Transport(format!("cannot start a runtime: {e}")))?;
        let inner = runtime.block_on(GrpcClient::connect(config))?;
        Ok(Self { runtime, inner })
    }
}

impl PsClient for BlockingGrpcClient {
    fn num_params(&self) -> usize {
        self.inner.total
    }

    fn num_shards(&self) -> usize {
        self.inner.shards.len()
    }

    fn pull(&mut self, min_versions: &[u64], params: &mut [f32]) -> Result<Pulled, PsError> {
        self.runtime.block_on(self.inner.pull(min_versions, params))
    }

    fn push(
        &mut self,
        versions: &[u64],
        grads: &[f32],
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        self.runtime
            .block_on(self.inner.push(versions, grads, stats))
    }
}

/// Runs a worker against the servers of `config` until the server finishes or a limit is
/// reached (`stagewise ps worker`). Blocking: call it from a plain thread, not from inside a
/// tokio runtime.
pub fn run_worker(
    config: WorkerConfig,
    mut source: impl GradientSource,
) -> Result<WorkerReport, PsError> {
    let mut client = BlockingGrpcClient::connect(&config)?;
    let limits = WorkerLimits {
        max_pushes: config.max_pushes,
        max_duration: config.max_seconds.map(Duration::from_secs_f64),
        stop: None,
    };
    worker_loop(config.worker_id, &mut client, &mut source, &limits)
}
