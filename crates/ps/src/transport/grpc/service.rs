//! The gRPC server: the `ParameterServer` service over a [`ParamServer`] shard.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server};
use tonic::{Request, Response, Status, Streaming};

use super::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::auth::{load_token, TokenCheck};
use crate::config::ServeConfig;
use crate::error::{ConfigError, PsError, PushError};
use crate::gradient::{BatchStats, Evaluator};
use crate::metrics::Summary;
use crate::proto::parameter_server_server::{ParameterServer, ParameterServerServer};
use crate::proto::{
    push_chunk, InfoReply, InfoRequest, ParamChunk, PullRequest as PbPull, PushChunk, PushReply,
};
use crate::server::{self, ParamServer, Push, PushOutcome};
use crate::shard::ShardRange;
use crate::transport::codec::{decode_append, encode_f32s};

struct PsService {
    server: Arc<ParamServer>,
    chunk_bytes: usize,
    shard_index: u32,
    num_shards: u32,
    /// The parameters of the last pulled version, encoded once for every puller.
    encoded: Arc<Mutex<(u64, Bytes)>>,
}

fn push_status(e: PushError) -> Status {
    match e {
        PushError::UnknownModel { .. } => Status::not_found(e.to_string()),
        other => Status::invalid_argument(other.to_string()),
    }
}

fn ps_status(e: PsError) -> Status {
    match e {
        PsError::WaitTimeout { .. } => Status::deadline_exceeded(e.to_string()),
        PsError::Push(p) => push_status(p),
        other => Status::internal(other.to_string()),
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<ParamChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ParameterServer for PsService {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoReply>, Status> {
        let req = request.into_inner();
        self.server
            .check_model(&req.model_id)
            .map_err(push_status)?;
        let s = &self.server;
        Ok(Response::new(InfoReply {
            model_id: s.model_id().to_string(),
            total_params: s.total_params() as u64,
            shard_start: s.shard().start as u64,
            shard_len: s.shard().len as u64,
            shard_index: self.shard_index,
            num_shards: self.num_shards,
            version: s.version(),
            max_chunk_bytes: self.chunk_bytes as u64,
            policy: s.policy_name().to_string(),
            finished: s.is_finished(),
        }))
    }

    type PullStream = ChunkStream;

    async fn pull(&self, request: Request<PbPull>) -> Result<Response<Self::PullStream>, Status> {
        let req = request.into_inner();
        self.server
            .check_model(&req.model_id)
            .map_err(push_status)?;
        let server = Arc::clone(&self.server);
        let cache = Arc::clone(&self.encoded);
        let pull = server::PullRequest {
            worker_id: req.worker_id,
            min_version: req.min_version,
            wait: (req.wait_ms > 0).then(|| Duration::from_millis(req.wait_ms)),
        };
        let (info, bytes) = tokio::task::spawn_blocking(move || {
            server.pull_with(pull, |version, params| {
                let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
                if c.0 != version || c.1.len() != params.len() * 4 {
                    *c = (version, encode_f32s(params));
                }
                c.1.clone()
            })
        })
        .await
        .map_err(|e| Status::internal(format!("pull task failed: {e}")))?
        .map_err(ps_status)?;
        let total = (bytes.len() / 4) as u64;
        let step = self.chunk_bytes;
        let n_chunks = bytes.len().div_ceil(step).max(1);
        let chunks = (0..n_chunks).map(move |i| {
            let lo = i * step;
            let hi = (lo + step).min(bytes.len());
            Ok(ParamChunk {
                version: info.version,
                offset: (lo / 4) as u64,
                total_len: total,
                data: bytes.slice(lo..hi),
                finished: info.finished,
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn push(
        &self,
        request: Request<Streaming<PushChunk>>,
    ) -> Result<Response<PushReply>, Status> {
        let mut stream = request.into_inner();
        let malformed = |msg: String| {
            self.server.count_refusal(|r| r.malformed += 1);
            Status::invalid_argument(msg)
        };
        let aborted = |msg: String| {
            self.server.count_refusal(|r| r.aborted += 1);
            Status::aborted(msg)
        };
        let header = match stream.message().await {
            Ok(Some(PushChunk {
                kind: Some(push_chunk::Kind::Header(h)),
            })) => h,
            Ok(_) => return Err(malformed("a push must start with a header message".into())),
            Err(s) => return Err(aborted(format!("push stream broke before its header: {s}"))),
        };
        self.server
            .check_model(&header.model_id)
            .map_err(push_status)?;
        let len = self.server.shard().len;
        if header.total_len != len as u64 {
            self.server.count_refusal(|r| r.wrong_length += 1);
            return Err(Status::invalid_argument(
                PushError::LengthMismatch {
                    expected: len,
                    got: usize::try_from(header.total_len).unwrap_or(usize::MAX),
                }
                .to_string(),
            ));
        }
        let mut grads: Vec<f32> = Vec::with_capacity(len);
        loop {
            match stream.message().await {
                Ok(Some(PushChunk {
                    kind: Some(push_chunk::Kind::Data(data)),
                })) => {
                    if data.len() % 4 != 0 || grads.len() + data.len() / 4 > len {
                        return Err(malformed(format!(
                            "data chunk of {} bytes after {} floats does not fit a shard of {len} floats",
                            data.len(),
                            grads.len()
                        )));
                    }
                    decode_append(&data, &mut grads);
                }
                Ok(Some(_)) => {
                    return Err(malformed("a push has exactly one header, first".into()))
                }
                Ok(None) => break,
                Err(s) => {
                    return Err(aborted(format!(
                        "push stream broke after {} of {len} floats ({s}); nothing applied",
                        grads.len()
                    )))
                }
            }
        }
        if grads.len() != len {
            return Err(aborted(format!(
                "push stream ended after {} of {len} floats; nothing applied",
                grads.len()
            )));
        }
        let server = Arc::clone(&self.server);
        let stats = BatchStats {
            loss: header.loss,
            accuracy: header.accuracy.is_finite().then_some(header.accuracy),
            batch_size: header.batch_size,
        };
        let outcome = tokio::task::spawn_blocking(move || {
            server.push(Push {
                worker_id: header.worker_id,
                pulled_version: header.pulled_version,
                grads: &grads,
                stats,
            })
        })
        .await
        .map_err(|e| Status::internal(format!("push task failed: {e}")))?
        .map_err(push_status)?;
        use crate::proto::PushOutcome as Pb;
        let code = match outcome {
            PushOutcome::Applied { .. } => Pb::Applied,
            PushOutcome::Buffered { .. } => Pb::Buffered,
            PushOutcome::RefusedStale { .. } => Pb::RefusedStale,
            PushOutcome::Finished { .. } => Pb::Finished,
        };
        Ok(Response::new(PushReply {
            outcome: code as i32,
            version: outcome.version(),
            staleness: outcome.staleness(),
        }))
    }
}

/// A running gRPC server.
pub struct ServeHandle {
    local_addr: SocketAddr,
    server: Arc<ParamServer>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Summary, PsError>>,
}

impl ServeHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shard's server core (version, metrics).
    pub fn server(&self) -> &Arc<ParamServer> {
        &self.server
    }

    /// Stops accepting calls, waits for the server to end, writes the final checkpoint and
    /// metrics, and returns the summary.
    pub async fn shutdown(mut self) -> Result<Summary, PsError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.wake_all();
        self.wait().await
    }

    /// Waits until the server ends by itself (update budget spent and
    /// `exit_after_finish_ms` passed).
    pub async fn wait(self) -> Result<Summary, PsError> {
        self.task
            .await
            .map_err(|e| PsError::Transport(format!("server task failed: {e}")))?
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, PsError> {
    std::fs::read(path).map_err(|source| PsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Binds and starts a shard server in the current tokio runtime.
///
/// `initial` is the whole model's initial values (`None`: `config.init`); the shard takes its
/// range. A checkpoint with `resume` wins over both. The evaluator, if any, is called every
/// `server.eval_every` updates and at the end (it sees this shard only: use it with one shard).
pub async fn start(
    config: ServeConfig,
    initial: Option<Vec<f32>>,
    evaluator: Option<Box<dyn Evaluator>>,
) -> Result<ServeHandle, PsError> {
    config.validate()?;
    let shard = ShardRange::of(
        config.num_params,
        config.shard_index as usize,
        config.num_shards as usize,
    );
    let full = match initial {
        Some(v) if v.len() != config.num_params => {
            return Err(ConfigError::new(
                "initial",
                format!("{} values for num_params = {}", v.len(), config.num_params),
            )
            .into())
        }
        Some(v) => v,
        None => config.init.values(config.num_params),
    };
    let init = full[shard.range()].to_vec();
    drop(full);
    let server_config = config.server.clone();
    let total = config.num_params;
    let server = tokio::task::spawn_blocking(move || {
        ParamServer::new(&server_config, total, shard, init).map(Arc::new)
    })
    .await
    .map_err(|e| PsError::Transport(e.to_string()))??;
    let token = load_token(&config.auth)?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| ConfigError::new("listen", format!("cannot bind {}: {e}", config.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| PsError::Transport(e.to_string()))?;
    if token.is_none() && !local_addr.ip().is_loopback() {
        tracing::warn!(%local_addr, "serving without a token on a non-loopback address: anyone who can connect can train");
    }
    let mut builder = Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME);
    if let Some(tls) = &config.tls {
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
    }
    let service = ParameterServerServer::new(PsService {
        server: Arc::clone(&server),
        chunk_bytes: config.max_chunk_bytes,
        shard_index: config.shard_index,
        num_shards: config.num_shards,
        encoded: Arc::new(Mutex::new((u64::MAX, Bytes::new()))),
    })
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes);
    let service = InterceptedService::new(service, TokenCheck::new(token, Arc::clone(&server)));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let (tx, rx) = oneshot::channel::<()>();
    let watch = Arc::clone(&server);
    let exit_after = config.exit_after_finish_ms;
    let shutdown = async move {
        let finished = async {
            match exit_after {
                None => std::future::pending::<()>().await,
                Some(ms) => {
                    while !watch.is_finished() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        };
        tokio::select! {
            _ = rx => {}
            _ = finished => {}
        }
    };
    let router = builder.add_service(service);
    let core = Arc::clone(&server);
    let metrics_dir = config.metrics_dir.clone();
    let eval_every = config.server.eval_every;
    let task = tokio::spawn(async move {
        let mut evaluator = evaluator;
        let handle = match (eval_every, evaluator.take()) {
            (Some(_), Some(e)) => Some(core.attach_evaluator(e)),
            (_, e) => {
                evaluator = e;
                None
            }
        };
        let served = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| PsError::Transport(e.to_string()));
        let end = Arc::clone(&core);
        tokio::task::spawn_blocking(move || {
            if let Some(h) = handle {
                evaluator = h.finish();
            }
            if let Some(e) = evaluator.as_deref_mut() {
                end.evaluate_now(e)?;
            }
            end.checkpoint_now()?;
            served?;
            match metrics_dir {
                Some(dir) => end.write_metrics(&dir),
                None => Ok(end.summary()),
            }
        })
        .await
        .map_err(|e| PsError::Transport(e.to_string()))?
    });
    tracing::info!(%local_addr, shard_start = shard.start, shard_len = shard.len, "parameter server listening");
    Ok(ServeHandle {
        local_addr,
        server,
        shutdown: Some(tx),
        task,
    })
}

/// Serves until `shutdown` resolves or the update budget is spent (see
/// [`ServeConfig::exit_after_finish_ms`]); returns the metrics summary.
pub async fn serve(
    config: ServeConfig,
    initial: Option<Vec<f32>>,
    evaluator: Option<Box<dyn Evaluator>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, PsError> {
    let mut handle = start(config, initial, evaluator).await?;
    let ended = tokio::select! {
        r = &mut handle.task => Some(r),
        () = shutdown => None,
    };
    match ended {
        Some(r) => r.map_err(|e| PsError::Transport(format!("server task failed: {e}")))?,
        None => handle.shutdown().await,
    }
}
