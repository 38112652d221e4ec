//! The gRPC worker side: connections to every shard, chunked pulls and pushes.

use std::time::{Duration, Instant};

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{poll_fn, try_join_all};
use prost::Message;
use tonic::codegen::{http, Service};
use tonic::service::interceptor::{InterceptedService, ResponseBody};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::wire::{
    bulk_message, from_le_in_place, grpc_headers, shared_le_bytes, small_message, BodyReader,
    FrameBody, WireError, WirePools, NO_BULK_FIELD, PULL_DATA_FIELD, PULL_PATH, PUSH_DATA_FIELD,
    PUSH_PATH,
};
use super::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::auth::{load_token, AddToken};
use crate::config::WorkerConfig;
use crate::error::{ConfigError, PsError};
use crate::gradient::{BatchStats, GradientSource};
use crate::proto::parameter_server_client::ParameterServerClient;
use crate::proto::{push_chunk, InfoRequest, ParamChunk, PullRequest, PushChunk, PushHeader};
use crate::server::PushOutcome;
use crate::shard::{check_cover, ShardRange};
use crate::transport::codec::{decode_bf16_into, decode_into, WireFloat};
use crate::worker::{worker_loop, PsClient, Pulled, WorkerLimits, WorkerReport};

type Raw = InterceptedService<Channel, AddToken>;

struct ShardConn {
    url: String,
    /// Pull and Push are written at the HTTP/2 level ([`super::wire`]); Info goes through
    /// tonic's generated client at connection time.
    raw: Raw,
    range: ShardRange,
    /// Where bfloat16 parameter chunks land before they are widened.
    scratch: Vec<u8>,
}

/// An async client for every shard of one model.
pub struct GrpcClient {
    shards: Vec<ShardConn>,
    total: usize,
    model_id: String,
    worker_id: u32,
    chunk_bytes: usize,
    max_message: usize,
    /// How gradients are sent.
    grad_wire: WireFloat,
    /// How parameters are asked for.
    param_wire: WireFloat,
    /// Gradients encoded for the wire, buffers reused from push to push.
    staging: WirePools,
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
        super::keep_freed_memory();
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
                    Err(e) => {
                        let why = error_chain(&e);
                        // A certificate that does not fit will not fit on retry either.
                        let certificate = why.contains("certificate");
                        if certificate || Instant::now() >= deadline {
                            return Err(PsError::Transport(format!(
                                "cannot connect to {url}: {why}{}",
                                tls_hint(&why)
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            let raw = InterceptedService::new(channel.clone(), add.clone());
            let mut stub = ParameterServerClient::with_interceptor(channel, add.clone())
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(config.max_message_bytes);
            let d = &config.digests;
            let info = stub
                .info(InfoRequest {
                    model_id: config.model_id.clone(),
                    digests: Some(crate::proto::RunDigests {
                        model: d.model.clone(),
                        plan: d.plan.clone(),
                        data: d.data.clone(),
                    }),
                })
                .await
                .map_err(|s| status(url, s))?
                .into_inner();
            // The server checks too; this covers servers that do not.
            if let Some(theirs) = &info.digests {
                let theirs = crate::config::RunDigests {
                    model: theirs.model.clone(),
                    plan: theirs.plan.clone(),
                    data: theirs.data.clone(),
                };
                theirs
                    .check(d)
                    .map_err(|m| ConfigError::new("digests", format!("{url}: {m}")))?;
            }
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
                raw,
                range,
                scratch: Vec::new(),
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
            max_message: config.max_message_bytes,
            grad_wire: config.grad_wire,
            param_wire: config.param_wire,
            staging: WirePools::new(2),
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

    /// Pulls every shard concurrently into `params` (in `WorkerConfig::param_wire`).
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
                encoding: self.param_wire.to_proto(),
            };
            jobs.push(pull_shard(
                shard,
                req,
                mine,
                self.max_message,
                self.param_wire,
            ));
        }
        let got = try_join_all(jobs).await?;
        Ok(Pulled {
            finished: got.iter().any(|g| g.1),
            versions: got.into_iter().map(|g| g.0).collect(),
        })
    }

    /// Pushes each shard its slice of `grads` concurrently (in `WorkerConfig::grad_wire`).
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
        // One pass over the gradient into a pooled little-endian buffer; the chunks are slices
        // of it that HTTP/2 writes straight to the socket.
        let staged = self.staging.encode(self.grad_wire, grads);
        self.push_bytes(versions, staged, stats).await
    }

    /// [`GrpcClient::push`] without copying the gradient first: the chunks sent are slices of
    /// `grads` itself (on little-endian machines, with f32 on the wire; bfloat16 needs its
    /// one conversion pass). The HTTP/2 layer drops its references once the bytes are
    /// written, so `grads` is normally unshared again when this returns.
    pub async fn push_shared(
        &mut self,
        versions: &[u64],
        grads: &Arc<Vec<f32>>,
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        if grads.len() != self.total || versions.len() != self.shards.len() {
            return Err(
                ConfigError::new("grads", "length differs from the model or shard count").into(),
            );
        }
        let staged = match self.grad_wire {
            WireFloat::F32 => shared_le_bytes(grads),
            wire => self.staging.encode(wire, grads),
        };
        self.push_bytes(versions, staged, stats).await
    }

    /// Pushes `staged` (the whole gradient as little-endian bytes in `grad_wire`) to every
    /// shard.
    async fn push_bytes(
        &mut self,
        versions: &[u64],
        staged: Bytes,
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        let max_message = self.max_message;
        let unit = self.grad_wire.bytes();
        let mut jobs = Vec::new();
        for (shard, &version) in self.shards.iter_mut().zip(versions) {
            let r = shard.range;
            let header = PushHeader {
                model_id: self.model_id.clone(),
                worker_id: self.worker_id,
                pulled_version: version,
                total_len: r.len as u64,
                loss: stats.loss,
                accuracy: stats.accuracy.unwrap_or(f64::NAN),
                batch_size: stats.batch_size,
                encoding: self.grad_wire.to_proto(),
            };
            let body = push_body(
                header,
                staged.slice(r.start * unit..r.end() * unit),
                (self.chunk_bytes / unit).max(1) * unit,
            );
            jobs.push(async move {
                let reply = push_shard(&mut shard.raw, body, max_message)
                    .await
                    .map_err(|s| status(&shard.url, s))?;
                outcome(&shard.url, reply)
            });
        }
        try_join_all(jobs).await
    }
}

/// The frames of one push: the header message, then data messages of `step` bytes (a whole
/// number of values; the last may be shorter), each a slice of `data`.
fn push_body(header: PushHeader, data: Bytes, step: usize) -> FrameBody {
    let mut frames = VecDeque::with_capacity(1 + 2 * data.len().div_ceil(step));
    frames.push_back(small_message(&PushChunk {
        kind: Some(push_chunk::Kind::Header(header)),
    }));
    let mut lo = 0;
    while lo < data.len() {
        let hi = (lo + step).min(data.len());
        bulk_message(&mut frames, &[], PUSH_DATA_FIELD, data.slice(lo..hi), &[]);
        lo = hi;
    }
    FrameBody::new(frames, None)
}

/// `e` and its sources, `outer: inner: …` (tonic's own message is only "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let part = s.to_string();
        if !m.ends_with(&part) {
            m = format!("{m}: {part}");
        }
        src = s.source();
    }
    m
}

/// What to do about a certificate error of rustls named in `why` (empty for others).
fn tls_hint(why: &str) -> &'static str {
    if why.contains("CaUsedAsEndEntity") {
        " (the server's certificate is marked CA:TRUE, so it cannot identify a server: \
         make it with `-addext basicConstraints=critical,CA:FALSE`, see docs/asgd.md)"
    } else if why.contains("NotValidForName") {
        " (the certificate does not name the host the worker checks: give --tls-domain \
         with a name of its subjectAltName, or make it with `-addext subjectAltName=DNS:HOST`)"
    } else if why.contains("UnknownIssuer") {
        " (the certificate is not signed by the --tls-ca certificate)"
    } else if why.contains("Expired") || why.contains("NotValidYet") {
        " (the certificate is outside its validity period)"
    } else {
        ""
    }
}

/// Sends a gRPC request with `body` on `path`; returns the response once its headers arrived,
/// or the status of a trailers-only (error) response.
async fn call(
    svc: &mut Raw,
    path: &'static str,
    body: FrameBody,
) -> Result<http::Response<ResponseBody<tonic::body::Body>>, tonic::Status> {
    let unavailable = |e: tonic::transport::Error| tonic::Status::unavailable(error_chain(&e));
    poll_fn(|cx| Service::poll_ready(svc, cx))
        .await
        .map_err(unavailable)?;
    let mut req = http::Request::new(tonic::body::Body::new(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::from_static(path);
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut()
        .insert("te", http::HeaderValue::from_static("trailers"));
    grpc_headers(req.headers_mut());
    let resp = Service::call(svc, req).await.map_err(unavailable)?;
    if let Some(s) = tonic::Status::from_header_map(resp.headers()) {
        if s.code() != Code::Ok {
            return Err(s);
        }
    }
    if resp.status() != http::StatusCode::OK {
        return Err(tonic::Status::unknown(format!(
            "HTTP status {} from the server",
            resp.status()
        )));
    }
    Ok(resp)
}

/// The status in the trailers of a finished response.
fn trailer_status<B>(r: &BodyReader<B>) -> Result<(), tonic::Status>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    match r.trailers().and_then(tonic::Status::from_header_map) {
        Some(s) if s.code() == Code::Ok => Ok(()),
        Some(s) => Err(s),
        None => Err(tonic::Status::internal(
            "the response ended without a grpc-status",
        )),
    }
}

async fn push_shard(
    raw: &mut Raw,
    body: FrameBody,
    max_message: usize,
) -> Result<crate::proto::PushReply, tonic::Status> {
    let resp = call(raw, PUSH_PATH, body).await?;
    let mut r = BodyReader::new(resp.into_body());
    let reply = match r.message_len(max_message).await {
        Ok(Some(len)) => r.message(len, NO_BULK_FIELD, &mut []).await,
        Ok(None) => {
            trailer_status(&r)?;
            return Err(tonic::Status::internal("a push reply without a message"));
        }
        Err(e) => Err(e),
    }
    .map_err(|e| e.status())?;
    let reply = crate::proto::PushReply::decode(&reply.0[..])
        .map_err(|e| tonic::Status::internal(format!("undecodable push reply: {e}")))?;
    if r.message_len(max_message)
        .await
        .map_err(|e| e.status())?
        .is_some()
    {
        return Err(tonic::Status::internal("more than one push reply"));
    }
    trailer_status(&r)?;
    Ok(reply)
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
    max_message: usize,
    asked: WireFloat,
) -> Result<(u64, bool), PsError> {
    let url = shard.url.clone();
    let bad = |m: String| PsError::Transport(format!("{url}: malformed pull reply: {m}"));
    let mut frames = VecDeque::new();
    frames.push_back(small_message(&req));
    let resp = match call(&mut shard.raw, PULL_PATH, FrameBody::new(frames, None)).await {
        Ok(r) => r,
        Err(s) if s.code() == Code::DeadlineExceeded => {
            return Err(PsError::WaitTimeout {
                wanted: 0,
                current: 0,
                waited_ms: 0,
            })
        }
        Err(s) => return Err(status(&url, s)),
    };
    let mut r = BodyReader::new(resp.into_body());
    let mut filled = 0usize;
    let mut version = None;
    let mut finished = false;
    let wire = |e: WireError| match e {
        WireError::Broken(_) => status(&url, e.status()),
        other => bad(other.status().message().to_string()),
    };
    while let Some(len) = r.message_len(max_message).await.map_err(wire)? {
        // f32 values land in place; bfloat16 ones (or whatever a server answered a bfloat16
        // request with) in the shard's scratch buffer. The chunk's fields are checked right
        // after.
        let dst: &mut [u8] = match asked {
            WireFloat::F32 => &mut bytemuck::cast_slice_mut::<f32, u8>(out)[filled * 4..],
            WireFloat::Bf16 => {
                shard.scratch.resize(((out.len() - filled) * 4).min(len), 0);
                &mut shard.scratch
            }
        };
        let (meta, bytes) = r.message(len, PULL_DATA_FIELD, dst).await.map_err(wire)?;
        let chunk =
            ParamChunk::decode(&meta[..]).map_err(|e| bad(format!("undecodable chunk: {e}")))?;
        let bytes = bytes.unwrap_or(0);
        let sent = WireFloat::from_proto(chunk.encoding).map_err(bad)?;
        if asked == WireFloat::F32 && sent != WireFloat::F32 {
            return Err(bad(format!("{sent} values for an f32 request")));
        }
        let unit = sent.bytes();
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
        if chunk.offset != filled as u64 || bytes % unit != 0 || bytes / unit > out.len() - filled {
            return Err(bad(format!(
                "chunk at offset {} of {bytes} bytes of {sent} after {filled} of {} values",
                chunk.offset,
                out.len()
            )));
        }
        let got = &mut out[filled..filled + bytes / unit];
        match (asked, sent) {
            (WireFloat::F32, _) => from_le_in_place(got),
            (WireFloat::Bf16, WireFloat::F32) => decode_into(&shard.scratch[..bytes], got),
            (WireFloat::Bf16, WireFloat::Bf16) => decode_bf16_into(&shard.scratch[..bytes], got),
        }
        filled += bytes / unit;
        finished |= chunk.finished;
    }
    trailer_status(&r).map_err(|s| status(&url, s))?;
    if filled != out.len() {
        return Err(bad(format!("{filled} of {} floats received", out.len())));
    }
    Ok((version.unwrap_or(0), finished))
}

/// A blocking [`PsClient`] over [`GrpcClient`], with its own single-threaded runtime. A
/// lost server ([`PsError::is_lost_server`]) is reconnected to, with backoff, for
/// `reconnect_timeout_ms`.
pub struct BlockingGrpcClient {
    runtime: tokio::runtime::Runtime,
    inner: GrpcClient,
    config: WorkerConfig,
}

impl BlockingGrpcClient {
    /// Connects as [`GrpcClient::connect`]. Must not be called from inside a tokio runtime.
    pub fn connect(config: &WorkerConfig) -> Result<Self, PsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PsError::Transport(format!("cannot start a runtime: {e}")))?;
        let inner = runtime.block_on(GrpcClient::connect(config))?;
        Ok(Self {
            runtime,
            inner,
            config: config.clone(),
        })
    }

    /// Connects again after `cause`, trying with growing pauses (0.1 s doubling to 5 s) until
    /// `reconnect_timeout_ms` has passed; returns `cause` if it never succeeds.
    fn reconnect(&mut self, cause: PsError) -> Result<(), PsError> {
        if !cause.is_lost_server() || self.config.reconnect_timeout_ms == 0 {
            return Err(cause);
        }
        tracing::warn!(error = %cause, "lost a server; reconnecting");
        let deadline = Instant::now() + Duration::from_millis(self.config.reconnect_timeout_ms);
        let once = WorkerConfig {
            connect_timeout_ms: 0,
            ..self.config.clone()
        };
        let mut pause = Duration::from_millis(100);
        loop {
            match self.runtime.block_on(GrpcClient::connect(&once)) {
                Ok(c) if c.total == self.inner.total && c.ranges() == self.inner.ranges() => {
                    eprintln!("reconnected to the servers after: {cause}");
                    self.inner = c;
                    return Ok(());
                }
                Ok(_) => {
                    return Err(PsError::Transport(
                        "the servers came back with other shards or another model size".into(),
                    ))
                }
                Err(e) if e.is_lost_server() || matches!(e, PsError::Transport(_)) => {
                    if Instant::now() + pause >= deadline {
                        return Err(cause);
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
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
        match self.runtime.block_on(self.inner.pull(min_versions, params)) {
            Err(e) => {
                self.reconnect(e)?;
                Err(PsError::Reconnected)
            }
            ok => ok,
        }
    }

    fn push(
        &mut self,
        versions: &[u64],
        grads: &[f32],
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        match self
            .runtime
            .block_on(self.inner.push(versions, grads, stats))
        {
            Err(e) => {
                self.reconnect(e)?;
                Err(PsError::Reconnected)
            }
            ok => ok,
        }
    }

    fn push_shared(
        &mut self,
        versions: &[u64],
        grads: &Arc<Vec<f32>>,
        stats: BatchStats,
    ) -> Result<Vec<PushOutcome>, PsError> {
        match self
            .runtime
            .block_on(self.inner.push_shared(versions, grads, stats))
        {
            Err(e) => {
                self.reconnect(e)?;
                Err(PsError::Reconnected)
            }
            ok => ok,
        }
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
