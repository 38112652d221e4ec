//! The gRPC server: the `ParameterServer` service over a [`ParamServer`] shard.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server};
use tonic::{Request, Response, Status, Streaming};

use super::wire::{
    bulk_message, from_le_in_place, ok_response, small_message, BodyReader, VecPool, WireError,
    WirePools, NO_BULK_FIELD, PULL_DATA_FIELD, PULL_PATH, PUSH_DATA_FIELD, PUSH_PATH,
};
use super::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::auth::{load_token, TokenCheck};
use crate::config::{RunDigests, ServeConfig};
use crate::error::{ConfigError, PsError, PushError};
use crate::gradient::{BatchStats, Evaluator};
use crate::metrics::Summary;
use crate::proto::parameter_server_server::{ParameterServer, ParameterServerServer};
use crate::proto::{
    push_chunk, InfoReply, InfoRequest, ParamChunk, PullRequest as PbPull, PushChunk, PushReply,
};
use crate::server::{self, ParamServer, Push, PushOutcome};
use crate::shard::ShardRange;
use crate::transport::codec::{decode_bf16_into, WireFloat};

/// Gradient buffers and parameter snapshots kept for reuse (one per concurrent transfer).
const POOLED_BUFFERS: usize = 8;

struct PsService {
    server: Arc<ParamServer>,
    digests: RunDigests,
    chunk_bytes: usize,
    shard_index: u32,
    num_shards: u32,
}

fn push_status(e: PushError) -> Status {
    match e {
        PushError::UnknownModel { .. } => Status::not_found(e.to_string()),
        PushError::ShuttingDown => Status::unavailable(e.to_string()),
        other => Status::invalid_argument(other.to_string()),
    }
}

fn ps_status(e: PsError) -> Status {
    match e {
        PsError::WaitTimeout { .. } => Status::deadline_exceeded(e.to_string()),
        PsError::ShuttingDown => Status::unavailable(e.to_string()),
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
        if let Some(theirs) = &req.digests {
            let theirs = RunDigests {
                model: theirs.model.clone(),
                plan: theirs.plan.clone(),
                data: theirs.data.clone(),
            };
            if let Err(m) = self.digests.check(&theirs) {
                self.server.count_refusal(|r| r.mismatch += 1);
                return Err(Status::failed_precondition(m));
            }
        }
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
            digests: Some(crate::proto::RunDigests {
                model: self.digests.model.clone(),
                plan: self.digests.plan.clone(),
                data: self.digests.data.clone(),
            }),
        }))
    }

    type PullStream = ChunkStream;

    // Pull and Push are served by [`Bulk`] (routed by [`Routes`] before tonic's codec); these
    // are never called.
    async fn pull(&self, _: Request<PbPull>) -> Result<Response<Self::PullStream>, Status> {
        Err(Status::internal("Pull is served by the bulk route"))
    }

    async fn push(&self, _: Request<Streaming<PushChunk>>) -> Result<Response<PushReply>, Status> {
        Err(Status::internal("Push is served by the bulk route"))
    }
}

/// Pull and Push at the HTTP/2 level ([`super::wire`]): floats go from the HTTP/2 frames
/// straight into a pooled gradient buffer, and out of a pooled little-endian snapshot of the
/// parameters without further copies. bfloat16 pushes land in a scratch buffer and are
/// widened into the gradient buffer chunk by chunk; bfloat16 pulls get their own snapshot.
struct Bulk {
    server: Arc<ParamServer>,
    chunk_bytes: usize,
    max_message: usize,
    /// Gradient buffers of pushes being received.
    grads: VecPool,
    /// Snapshots of the parameters in each wire format.
    snapshots: WirePools,
    /// Per encoding (f32, bf16): the snapshot of the last pulled version, shared by every
    /// puller of that version.
    current: Mutex<[Option<(u64, Bytes)>; 2]>,
    /// Notified after every change of the server (waiting pulls wake on it).
    changed: Arc<tokio::sync::Notify>,
    /// Pushes being received, in total and per worker id.
    slots: Arc<Mutex<Slots>>,
    /// Limits on them: in total, per worker.
    max_pushes: (usize, usize),
    /// A push stream silent this long is dropped.
    idle: Duration,
}

/// Pushes being received.
#[derive(Default)]
struct Slots {
    total: usize,
    per_worker: std::collections::HashMap<u32, usize>,
}

/// A push's place among [`Slots`], given back on drop.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    worker: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.total -= 1;
        if let Some(n) = s.per_worker.get_mut(&self.worker) {
            *n -= 1;
            if *n == 0 {
                s.per_worker.remove(&self.worker);
            }
        }
    }
}

/// The slot of `encoding` in [`Bulk::current`].
fn slot(encoding: WireFloat) -> usize {
    match encoding {
        WireFloat::F32 => 0,
        WireFloat::Bf16 => 1,
    }
}

impl Bulk {
    /// A place for a push of `worker`, or RESOURCE_EXHAUSTED beyond the limits.
    fn slot(&self, worker: u32) -> Result<Slot, Status> {
        let (max_total, max_worker) = self.max_pushes;
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.per_worker.get(&worker).copied().unwrap_or(0);
        let refuse = if mine >= max_worker {
            Some(format!(
                "worker {worker} has {mine} pushes in flight; the limit is {max_worker} per worker"
            ))
        } else if s.total >= max_total {
            Some(format!(
                "{} pushes in flight; the limit is {max_total} in total",
                s.total
            ))
        } else {
            None
        };
        if let Some(m) = refuse {
            drop(s);
            self.server.count_refusal(|r| r.busy += 1);
            return Err(Status::resource_exhausted(format!("{m}; retry later")));
        }
        s.total += 1;
        *s.per_worker.entry(worker).or_insert(0) += 1;
        Ok(Slot {
            slots: Arc::clone(&self.slots),
            worker,
        })
    }

    async fn push(
        self: Arc<Self>,
        req: tonic::codegen::http::Request<Body>,
    ) -> Result<PushReply, Status> {
        let mut r = BodyReader::new(req.into_body()).with_idle_timeout(self.idle);
        let malformed = |msg: String| {
            self.server.count_refusal(|r| r.malformed += 1);
            Status::invalid_argument(msg)
        };
        let aborted = |msg: String| {
            self.server.count_refusal(|r| r.aborted += 1);
            Status::aborted(msg)
        };
        let wire = |e: WireError, what: &str| match e {
            WireError::Broken(m) => aborted(format!("{what}: {m}; nothing applied")),
            WireError::Idle(_) => {
                self.server.count_refusal(|r| r.idle += 1);
                let s = e.status();
                Status::aborted(format!("{what}: {}; nothing applied", s.message()))
            }
            other => {
                self.server.count_refusal(|r| r.malformed += 1);
                let s = other.status();
                Status::new(s.code(), format!("{what}: {}", s.message()))
            }
        };
        let first = match r.message_len(self.max_message).await {
            Ok(Some(len)) => r.message(len, PUSH_DATA_FIELD, &mut []).await,
            Ok(None) => return Err(malformed("a push must start with a header message".into())),
            Err(e) => Err(e),
        };
        let header = match first {
            Ok((meta, None)) => match PushChunk::decode(&meta[..]) {
                Ok(PushChunk {
                    kind: Some(push_chunk::Kind::Header(h)),
                }) => h,
                Ok(_) => return Err(malformed("a push must start with a header message".into())),
                Err(e) => return Err(malformed(format!("undecodable push header: {e}"))),
            },
            Ok((_, Some(_))) | Err(WireError::DoesNotFit { .. }) => {
                return Err(malformed("a push must start with a header message".into()))
            }
            Err(e) => return Err(wire(e, "push header")),
        };
        self.server
            .check_model(&header.model_id)
            .map_err(push_status)?;
        let encoding = WireFloat::from_proto(header.encoding)
            .map_err(|m| malformed(format!("push header: {m}")))?;
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
        let _slot = self.slot(header.worker_id)?;
        let mut grads = self.grads.take(len);
        let received = self.receive(&mut r, &mut grads, encoding).await;
        let filled = match received {
            Ok(filled) => filled,
            Err(e) => {
                self.grads.give(grads);
                return Err(match e {
                    Received::Malformed(m) => malformed(m),
                    Received::Refused(e) => push_status(e),
                    Received::Wire(e, filled) => {
                        wire(e, &format!("push stream after {filled} of {len} floats"))
                    }
                });
            }
        };
        if filled != len {
            self.grads.give(grads);
            return Err(aborted(format!(
                "push stream ended after {filled} of {len} floats; nothing applied"
            )));
        }
        let server = Arc::clone(&self.server);
        let stats = BatchStats {
            loss: header.loss,
            accuracy: header.accuracy.is_finite().then_some(header.accuracy),
            batch_size: header.batch_size,
        };
        let (outcome, grads) = tokio::task::spawn_blocking(move || {
            let outcome = server.push_finite(Push {
                worker_id: header.worker_id,
                pulled_version: header.pulled_version,
                grads: &grads,
                stats,
            });
            (outcome, grads)
        })
        .await
        .map_err(|e| Status::internal(format!("push task failed: {e}")))?;
        self.grads.give(grads);
        let outcome = outcome.map_err(push_status)?;
        use crate::proto::PushOutcome as Pb;
        let code = match outcome {
            PushOutcome::Applied { .. } => Pb::Applied,
            PushOutcome::Buffered { .. } => Pb::Buffered,
            PushOutcome::RefusedStale { .. } => Pb::RefusedStale,
            PushOutcome::Finished { .. } => Pb::Finished,
        };
        Ok(PushReply {
            outcome: code as i32,
            version: outcome.version(),
            staleness: outcome.staleness(),
        })
    }

    /// Reads the data messages of a push, values in `encoding`, into `grads`; returns the
    /// values received.
    async fn receive(
        &self,
        r: &mut BodyReader<Body>,
        grads: &mut [f32],
        encoding: WireFloat,
    ) -> Result<usize, Received> {
        let len = grads.len();
        let unit = encoding.bytes();
        // bfloat16 chunks land here and are widened into `grads`.
        let mut scratch: Vec<u8> = Vec::new();
        let mut filled = 0usize;
        loop {
            let n = match r.message_len(self.max_message).await {
                Ok(Some(n)) => n,
                Ok(None) => return Ok(filled),
                Err(e) => return Err(Received::Wire(e, filled)),
            };
            let dst: &mut [u8] = match encoding {
                WireFloat::F32 => &mut bytemuck::cast_slice_mut::<f32, u8>(grads)[filled * 4..],
                WireFloat::Bf16 => {
                    scratch.resize(((len - filled) * unit).min(n), 0);
                    &mut scratch
                }
            };
            match r.message(n, PUSH_DATA_FIELD, dst).await {
                Ok((meta, Some(bytes))) if meta.is_empty() || is_data_only(&meta) => {
                    if bytes % unit != 0 {
                        return Err(Received::Malformed(format!(
                            "data chunk of {bytes} bytes after {filled} values is not a whole number of {encoding} values"
                        )));
                    }
                    let got = &mut grads[filled..filled + bytes / unit];
                    match encoding {
                        WireFloat::F32 => from_le_in_place(got),
                        WireFloat::Bf16 => decode_bf16_into(&scratch[..bytes], got),
                    }
                    // Checked now, while in cache, rather than in one more pass at the end.
                    if !all_finite(got) {
                        self.server
                            .check_finite_at(got, filled)
                            .map_err(Received::Refused)?;
                    }
                    filled += bytes / unit;
                }
                Ok(_) => {
                    return Err(Received::Malformed(
                        "a push has exactly one header, first".into(),
                    ))
                }
                Err(WireError::DoesNotFit { len: bytes }) => {
                    return Err(Received::Malformed(format!(
                        "data chunk of {bytes} bytes after {filled} values does not fit a shard of {len} {encoding} values"
                    )))
                }
                Err(e) => return Err(Received::Wire(e, filled)),
            }
        }
    }

    async fn pull(
        self: Arc<Self>,
        req: tonic::codegen::http::Request<Body>,
    ) -> Result<VecDeque<Bytes>, Status> {
        let mut r = BodyReader::new(req.into_body());
        let req = match r.message_len(self.max_message).await {
            Ok(Some(len)) => r.message(len, NO_BULK_FIELD, &mut []).await,
            Ok(None) => return Err(Status::invalid_argument("a pull needs a request message")),
            Err(e) => Err(e),
        }
        .map_err(|e| e.status())
        .and_then(|(meta, _)| {
            PbPull::decode(&meta[..])
                .map_err(|e| Status::invalid_argument(format!("undecodable pull request: {e}")))
        })?;
        self.server
            .check_model(&req.model_id)
            .map_err(push_status)?;
        let encoding = WireFloat::from_proto(req.encoding)
            .map_err(|m| Status::invalid_argument(format!("pull request: {m}")))?;
        let server = Arc::clone(&self.server);
        let pull = server::PullRequest {
            worker_id: req.worker_id,
            min_version: req.min_version,
            wait: (req.wait_ms > 0).then(|| Duration::from_millis(req.wait_ms)),
        };
        // Wait here, asynchronously: a client that goes away drops this future, and with it
        // the wait (no thread is held).
        let wait = server.begin_pull(&pull);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if server.is_shutting_down() {
                // A finished server still tells late workers so, rather than that it is gone.
                if server.is_finished() {
                    break;
                }
                return Err(ps_status(PsError::ShuttingDown));
            }
            match server.pull_ready(&pull, &wait) {
                None => break,
                Some(step) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(step) => {}
                    }
                }
            }
        }
        let this = Arc::clone(&self);
        let (info, bytes) = tokio::task::spawn_blocking(move || {
            server.finish_pull(pull, wait, |version, params| {
                this.snapshot(version, params, encoding)
            })
        })
        .await
        .map_err(|e| Status::internal(format!("pull task failed: {e}")))?
        .map_err(ps_status)?;
        let unit = encoding.bytes();
        let total = (bytes.len() / unit) as u64;
        let step = (self.chunk_bytes / unit).max(1) * unit;
        let n_chunks = bytes.len().div_ceil(step).max(1);
        let mut frames = VecDeque::with_capacity(2 * n_chunks + 1);
        for i in 0..n_chunks {
            let lo = i * step;
            let hi = (lo + step).min(bytes.len());
            let mut head = Vec::with_capacity(32);
            let mut tail = Vec::new();
            put_u64_field(1, info.version, &mut head);
            put_u64_field(2, (lo / unit) as u64, &mut head);
            put_u64_field(3, total, &mut head);
            put_u64_field(6, encoding.to_proto() as u64, &mut head);
            if info.finished {
                put_u64_field(5, 1, &mut tail);
            }
            bulk_message(
                &mut frames,
                &head,
                PULL_DATA_FIELD,
                bytes.slice(lo..hi),
                &tail,
            );
        }
        Ok(frames)
    }

    /// The parameters of `version` in `encoding` as little-endian bytes: the shared snapshot
    /// when it is of this version, else a new one (one pass, into a pooled buffer). Called
    /// under the server's lock.
    fn snapshot(&self, version: u64, params: &[f32], encoding: WireFloat) -> Bytes {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut current[slot(encoding)];
        if let Some((v, b)) = &*c {
            if *v == version && b.len() == params.len() * encoding.bytes() {
                return b.clone();
            }
        }
        // Release the old snapshot first, so that its buffer can be reused.
        *c = None;
        let b = self.snapshots.encode(encoding, params);
        *c = Some((version, b.clone()));
        b
    }
}

/// Why receiving a push's data failed.
enum Received {
    Malformed(String),
    Refused(PushError),
    Wire(WireError, usize),
}

/// True when every float of `xs` is finite (a branch-free pass the compiler vectorizes, on
/// the calling thread: the chunk was just copied and is in cache).
fn all_finite(xs: &[f32]) -> bool {
    xs.chunks(64)
        .all(|c| c.iter().fold(true, |ok, x| ok & x.is_finite()))
}

/// True when `meta` (a push message without its data field) holds no header: a data chunk.
fn is_data_only(meta: &[u8]) -> bool {
    PushChunk::decode(meta).is_ok_and(|c| c.kind.is_none())
}

/// Appends a proto3 uint64 field (omitted when 0, as proto3 does).
fn put_u64_field(field: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        prost::encoding::encode_key(field, prost::encoding::WireType::Varint, out);
        prost::encoding::encode_varint(v, out);
    }
}

/// The service as tonic's router sees it: Pull and Push go to [`Bulk`], the rest (Info,
/// unknown methods) to the generated service.
#[derive(Clone)]
struct Routes {
    generated: ParameterServerServer<PsService>,
    bulk: Arc<Bulk>,
}

impl NamedService for Routes {
    const NAME: &'static str = "stagewise.ps.v1.ParameterServer";
}

impl tonic::codegen::Service<tonic::codegen::http::Request<Body>> for Routes {
    type Response = tonic::codegen::http::Response<Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Infallible>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<Body>) -> Self::Future {
        let bulk = Arc::clone(&self.bulk);
        match req.uri().path() {
            PUSH_PATH => Box::pin(async move {
                Ok(match bulk.push(req).await {
                    Ok(reply) => ok_response([small_message(&reply)].into()),
                    Err(s) => s.into_http(),
                })
            }),
            PULL_PATH => Box::pin(async move {
                Ok(match bulk.pull(req).await {
                    Ok(frames) => ok_response(frames),
                    Err(s) => s.into_http(),
                })
            }),
            _ => {
                let mut generated = self.generated.clone();
                Box::pin(async move { generated.call(req).await })
            }
        }
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
    super::keep_freed_memory();
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
    if let Some(dir) = &config.metrics_dir {
        server.stream_metrics(dir)?;
    }
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
    let generated = ParameterServerServer::new(PsService {
        server: Arc::clone(&server),
        digests: config.digests.clone(),
        chunk_bytes: config.max_chunk_bytes,
        shard_index: config.shard_index,
        num_shards: config.num_shards,
    })
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes);
    let changed = Arc::new(tokio::sync::Notify::new());
    let wake = Arc::clone(&changed);
    server.subscribe(Arc::new(move || wake.notify_waiters()));
    let service = Routes {
        generated,
        bulk: Arc::new(Bulk {
            server: Arc::clone(&server),
            chunk_bytes: config.max_chunk_bytes,
            max_message: config.max_message_bytes,
            grads: VecPool::new(POOLED_BUFFERS),
            snapshots: WirePools::new(POOLED_BUFFERS),
            current: Mutex::new([None, None]),
            changed,
            slots: Arc::default(),
            max_pushes: (config.max_concurrent_pushes, config.max_pushes_per_worker),
            idle: Duration::from_millis(config.push_idle_timeout_ms),
        }),
    };
    let service = InterceptedService::new(service, TokenCheck::new(token, Arc::clone(&server)));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let (tx, rx) = oneshot::channel::<()>();
    let watch = Arc::clone(&server);
    let exit_after = config.exit_after_finish_ms;
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    // Fires with the shutdown signal, which also ends the waiting pulls.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
        watch.begin_shutdown();
        let _ = stop_tx.send(true);
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
        // Calls in flight get `grace` after the signal; connections still open then (a
        // client that never finishes its push or never reads its reply) are left behind:
        // pushes are refused from here on, so the final checkpoint holds every update.
        let serving = router.serve_with_incoming_shutdown(incoming, shutdown);
        tokio::pin!(serving);
        let mut stop = stop_rx;
        let served = tokio::select! {
            r = &mut serving => r.map_err(|e| PsError::Transport(e.to_string())),
            () = async {
                let _ = stop.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "calls still in flight after the shutdown grace period; stopping without them");
                Ok(())
            }
        };
        core.close();
        let end = Arc::clone(&core);
        tokio::task::spawn_blocking(move || {
            // The checkpoint first: it is what a SIGKILL after the grace period would lose.
            end.checkpoint_now()?;
            if let Some(h) = handle {
                evaluator = h.finish();
            }
            if let Some(e) = evaluator.as_deref_mut() {
                end.evaluate_now(e)?;
            }
            served?;
            match metrics_dir {
                Some(dir) => end.write_metrics(&dir, stagewise_core::record::RunKind::PsServe),
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
