//! The bulk RPCs (`Push`, `Pull`) at the HTTP/2 level, without tonic's message codec.
//!
//! Tonic encodes every message into its own buffer and decodes every received frame into
//! another one, so a float array crossed user space three times on each side, with a fresh
//! allocation (and page faults) per megabyte. Here the messages are the same protobuf bytes on
//! the wire, but:
//!
//! - a sender hands HTTP/2 the gRPC prefix and field header of a chunk as a few bytes and the
//!   floats as a [`Bytes`] slice of a shared little-endian buffer (no copy before the kernel);
//! - a receiver parses the gRPC framing and protobuf fields straight out of the HTTP/2 data
//!   frames and copies the float field into its destination (the gradient buffer, the worker's
//!   parameters): one copy after the kernel.
//!
//! Everything else (headers, other fields, trailers, statuses) follows the gRPC over HTTP/2
//! protocol, so tonic clients and servers, and those of other languages, interoperate.
//! Malformed input gives an error, never a panic.

use std::collections::VecDeque;
use std::fmt::Display;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::future::poll_fn;
use http_body::{Body as HttpBody, Frame};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use tonic::codegen::http::{self, header, HeaderMap, HeaderValue};
use tonic::Status;

use crate::transport::codec::WireFloat;

/// Path of the `Push` RPC.
pub(crate) const PUSH_PATH: &str = "/stagewise.ps.v1.ParameterServer/Push";
/// Path of the `Pull` RPC.
pub(crate) const PULL_PATH: &str = "/stagewise.ps.v1.ParameterServer/Pull";
/// Field number of `PushChunk.data`.
pub(crate) const PUSH_DATA_FIELD: u32 = 2;
/// Field number of `ParamChunk.data`.
pub(crate) const PULL_DATA_FIELD: u32 = 4;
/// No bulk field (a message decoded whole).
pub(crate) const NO_BULK_FIELD: u32 = 0;

const GRPC_CONTENT_TYPE: &str = "application/grpc";

/// A body whose frames are known in advance: data, then trailers (if any).
pub(crate) struct FrameBody {
    frames: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl FrameBody {
    /// Data frames and optional trailers.
    pub(crate) fn new(frames: VecDeque<Bytes>, trailers: Option<HeaderMap>) -> Self {
        Self { frames, trailers }
    }
}

impl HttpBody for FrameBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(b) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.trailers.is_none()
    }
}

/// The gRPC prefix (uncompressed flag, big-endian length) of a message of `len` bytes.
fn prefix(len: usize, out: &mut BytesMut) {
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

/// A whole small message with its gRPC prefix.
pub(crate) fn small_message(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    prefix(body.len(), &mut out);
    out.extend_from_slice(&body);
    out.freeze()
}

/// Appends to `frames` one message made of `head` (already encoded fields, before the bulk
/// field), the bulk field `field` holding `data` (omitted when empty, as proto3 does) and
/// `tail` (encoded fields after it). `data` is not copied.
pub(crate) fn bulk_message(
    frames: &mut VecDeque<Bytes>,
    head: &[u8],
    field: u32,
    data: Bytes,
    tail: &[u8],
) {
    let field_head = if data.is_empty() {
        0
    } else {
        encoded_len_varint(u64::from(field << 3)) + encoded_len_varint(data.len() as u64)
    };
    let len = head.len() + field_head + data.len() + tail.len();
    let mut first = BytesMut::with_capacity(5 + head.len() + field_head);
    prefix(len, &mut first);
    first.extend_from_slice(head);
    if !data.is_empty() {
        encode_key(field, WireType::LengthDelimited, &mut first);
        encode_varint(data.len() as u64, &mut first);
    }
    frames.push_back(first.freeze());
    if !data.is_empty() {
        frames.push_back(data);
    }
    if !tail.is_empty() {
        frames.push_back(Bytes::copy_from_slice(tail));
    }
}

/// Headers of a gRPC request or response.
pub(crate) fn grpc_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(GRPC_CONTENT_TYPE),
    );
}

/// A successful response: `frames`, then the trailer `grpc-status: 0`.
pub(crate) fn ok_response(frames: VecDeque<Bytes>) -> http::Response<tonic::body::Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut r = http::Response::new(tonic::body::Body::new(FrameBody::new(
        frames,
        Some(trailers),
    )));
    grpc_headers(r.headers_mut());
    r
}

/// What went wrong while reading a body.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The body failed or ended in the middle of a message.
    Broken(String),
    /// Not a valid gRPC message stream of the expected protobuf messages.
    Malformed(String),
    /// A message longer than the limit.
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bulk field is longer than its destination.
    DoesNotFit {
        /// Its length in bytes.
        len: usize,
    },
    /// Nothing arrived for this many milliseconds.
    Idle(u64),
}

impl WireError {
    /// The status a server answers with (or a client reports).
    pub(crate) fn status(&self) -> Status {
        match self {
            Self::Broken(m) => Status::aborted(m.clone()),
            Self::Malformed(m) => Status::invalid_argument(m.clone()),
            Self::TooLarge { len, max } => {
                Status::out_of_range(format!("message of {len} bytes; the limit is {max} bytes"))
            }
            Self::DoesNotFit { len } => Status::invalid_argument(format!(
                "a data field of {len} bytes does not fit what is left of the array"
            )),
            Self::Idle(ms) => {
                Status::aborted(format!("the stream was idle for {ms} ms and was dropped"))
            }
        }
    }
}

fn malformed(m: &str) -> WireError {
    WireError::Malformed(m.to_string())
}

/// Reads gRPC messages out of an HTTP body, frame by frame, without buffering the bulk field.
pub(crate) struct BodyReader<B> {
    body: B,
    cur: Bytes,
    done: bool,
    trailers: Option<HeaderMap>,
    idle: Option<std::time::Duration>,
}

impl<B> BodyReader<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Display,
{
    /// A reader over `body`.
    pub(crate) fn new(body: B) -> Self {
        Self {
            body,
            cur: Bytes::new(),
            done: false,
            trailers: None,
            idle: None,
        }
    }

    /// Fails with [`WireError::Idle`] when no frame arrives for `idle`.
    pub(crate) fn with_idle_timeout(mut self, idle: std::time::Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// The trailers, once the body has ended.
    pub(crate) fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// Makes `cur` non-empty; false at the end of the body.
    async fn more(&mut self) -> Result<bool, WireError> {
        while self.cur.is_empty() {
            if self.done {
                return Ok(false);
            }
            let body = &mut self.body;
            let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
            let frame = match self.idle {
                None => frame.await,
                Some(idle) => match tokio::time::timeout(idle, frame).await {
                    Ok(f) => f,
                    Err(_) => {
                        self.done = true;
                        return Err(WireError::Idle(idle.as_millis() as u64));
                    }
                },
            };
            match frame {
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(WireError::Broken(format!("stream broke: {e}")));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => self.cur = d,
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(t);
                        }
                    }
                },
            }
        }
        Ok(true)
    }

    async fn more_or_broken(&mut self) -> Result<(), WireError> {
        if self.more().await? {
            Ok(())
        } else {
            Err(WireError::Broken(
                "stream ended in the middle of a message".into(),
            ))
        }
    }

    /// Fills `dst` from the body.
    async fn copy_to(&mut self, mut dst: &mut [u8]) -> Result<(), WireError> {
        while !dst.is_empty() {
            self.more_or_broken().await?;
            let n = dst.len().min(self.cur.len());
            dst[..n].copy_from_slice(&self.cur[..n]);
            self.cur.advance(n);
            dst = &mut dst[n..];
        }
        Ok(())
    }

    /// A protobuf varint and the number of bytes it took.
    async fn varint(&mut self) -> Result<(u64, usize), WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            self.more_or_broken().await?;
            let b = self.cur[0];
            self.cur.advance(1);
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((v, i + 1));
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    /// The length of the next message (its prefix read), or `None` at a clean end of body.
    pub(crate) async fn message_len(&mut self, max: usize) -> Result<Option<usize>, WireError> {
        if !self.more().await? {
            return Ok(None);
        }
        let mut p = [0u8; 5];
        self.copy_to(&mut p).await?;
        match p[0] {
            0 => {}
            1 => return Err(malformed("compressed messages are not supported")),
            f => {
                return Err(WireError::Malformed(format!(
                    "invalid compression flag {f}"
                )))
            }
        }
        let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
        if len > max {
            return Err(WireError::TooLarge { len, max });
        }
        Ok(Some(len))
    }

    /// Reads the body of a message of `len` bytes. The length-delimited field `bulk` is copied
    /// into the start of `dst` (error if longer); every other field is returned, re-encoded,
    /// as a message without the bulk field, for prost to decode. Returns that and the bulk
    /// field's length (`None`: absent).
    pub(crate) async fn message(
        &mut self,
        len: usize,
        bulk: u32,
        dst: &mut [u8],
    ) -> Result<(Vec<u8>, Option<usize>), WireError> {
        let mut left = len;
        let take = |left: &mut usize, n: usize| -> Result<(), WireError> {
            *left = left
                .checked_sub(n)
                .ok_or_else(|| malformed("a field runs past the end of its message"))?;
            Ok(())
        };
        let mut meta = Vec::new();
        let mut got = None;
        while left > 0 {
            let (key, n) = self.varint().await?;
            take(&mut left, n)?;
            let field = key >> 3;
            if field == 0 || field > u64::from(u32::MAX >> 3) {
                return Err(malformed("invalid field number"));
            }
            match key & 7 {
                0 => {
                    let (v, n) = self.varint().await?;
                    take(&mut left, n)?;
                    encode_varint(key, &mut meta);
                    encode_varint(v, &mut meta);
                }
                w @ (1 | 5) => {
                    let n = if w == 1 { 8 } else { 4 };
                    take(&mut left, n)?;
                    encode_varint(key, &mut meta);
                    let at = meta.len();
                    meta.resize(at + n, 0);
                    self.copy_to(&mut meta[at..]).await?;
                }
                2 => {
                    let (l, n) = self.varint().await?;
                    take(&mut left, n)?;
                    let l = usize::try_from(l).map_err(|_| malformed("field too long"))?;
                    take(&mut left, l)?;
                    if field == u64::from(bulk) && bulk != NO_BULK_FIELD {
                        let d = dst.get_mut(..l).ok_or(WireError::DoesNotFit { len: l })?;
                        self.copy_to(d).await?;
                        got = Some(l);
                    } else {
                        encode_varint(key, &mut meta);
                        encode_varint(l as u64, &mut meta);
                        let at = meta.len();
                        meta.resize(at + l, 0);
                        self.copy_to(&mut meta[at..]).await?;
                    }
                }
                _ => return Err(malformed("unsupported protobuf wire type")),
            }
        }
        Ok((meta, got))
    }
}

/// Converts floats just received as little-endian bytes to native order (no-op on
/// little-endian machines).
pub(crate) fn from_le_in_place(xs: &mut [f32]) {
    if cfg!(target_endian = "big") {
        for x in xs {
            *x = f32::from_bits(u32::from_le(x.to_bits()));
        }
    }
}

/// Copies `src` into `dst` so that `dst`'s memory holds little-endian floats.
fn copy_le(src: &[f32], dst: &mut [f32]) {
    if cfg!(target_endian = "little") {
        dst.copy_from_slice(src);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(s.to_bits().to_le());
        }
    }
}

/// Keeps an `Arc<Vec<T>>` of little-endian values alive for as long as a `Bytes` made from it.
struct LeValues<T>(Arc<Vec<T>>);

impl<T: bytemuck::Pod> AsRef<[u8]> for LeValues<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// The floats of `xs` as little-endian [`Bytes`] sharing `xs`'s memory (little-endian
/// machines), or a converted copy (big-endian ones).
pub(crate) fn shared_le_bytes(xs: &Arc<Vec<f32>>) -> Bytes {
    if cfg!(target_endian = "little") {
        Bytes::from_owner(LeValues(Arc::clone(xs)))
    } else {
        let mut v = vec![0.0f32; xs.len()];
        copy_le(xs, &mut v);
        Bytes::from_owner(LeValues(Arc::new(v)))
    }
}

/// Reusable buffers of little-endian values (`f32`, or `u16` for bfloat16) handed out as
/// [`Bytes`] without a copy: a buffer is reused once every `Bytes` made from it has been
/// dropped, so steady-state transfers allocate (and page-fault) nothing.
pub(crate) struct BufferPool<T = f32> {
    bufs: Mutex<Vec<Arc<Vec<T>>>>,
    keep: usize,
}

impl<T: bytemuck::Pod + Send + Sync> BufferPool<T> {
    /// A pool that keeps at most `keep` buffers.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            bufs: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer of `len` values written by `fill` (which must leave little-endian values), as
    /// bytes: a free pooled buffer when there is one, else a new one.
    pub(crate) fn filled(&self, len: usize, fill: impl FnOnce(&mut [T])) -> Bytes {
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        bufs.retain(|b| b.len() == len);
        for a in bufs.iter_mut() {
            if let Some(v) = Arc::get_mut(a) {
                fill(v);
                return Bytes::from_owner(LeValues(Arc::clone(a)));
            }
        }
        let mut v = vec![T::zeroed(); len];
        fill(&mut v);
        let a = Arc::new(v);
        if bufs.len() < self.keep {
            bufs.push(Arc::clone(&a));
        }
        Bytes::from_owner(LeValues(a))
    }
}

/// Pooled buffers for both wire formats: floats encoded for sending without an allocation
/// per transfer.
pub(crate) struct WirePools {
    f32s: BufferPool<f32>,
    bf16s: BufferPool<u16>,
}

impl WirePools {
    /// Pools that keep at most `keep` buffers of each format.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            f32s: BufferPool::new(keep),
            bf16s: BufferPool::new(keep),
        }
    }

    /// `src` in `wire` as little-endian bytes: one pass, into a free pooled buffer when there
    /// is one.
    pub(crate) fn encode(&self, wire: WireFloat, src: &[f32]) -> Bytes {
        match wire {
            WireFloat::F32 => self.f32s.filled(src.len(), |v| copy_le(src, v)),
            WireFloat::Bf16 => self.bf16s.filled(src.len(), |v| {
                crate::transport::codec::encode_bf16_into(src, v)
            }),
        }
    }
}

/// A pool of plain float buffers (gradients being received).
pub(crate) struct VecPool {
    bufs: Mutex<Vec<Vec<f32>>>,
    keep: usize,
}

impl VecPool {
    /// A pool that keeps at most `keep` buffers.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            bufs: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer of `len` floats (contents unspecified).
    pub(crate) fn take(&self, len: usize) -> Vec<f32> {
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        match bufs.pop() {
            Some(v) if v.len() == len => v,
            _ => vec![0.0; len],
        }
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&self, v: Vec<f32>) {
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        if bufs.len() < self.keep {
            bufs.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{push_chunk, PushChunk, PushHeader};

    fn body_of(frames: Vec<Bytes>) -> FrameBody {
        FrameBody::new(frames.into(), None)
    }

    fn split_everywhere(bytes: &[u8]) -> Vec<Bytes> {
        bytes.chunks(3).map(Bytes::copy_from_slice).collect()
    }

    #[test]
    fn bulk_fields_stream_into_place_across_any_framing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let header = PushChunk {
            kind: Some(push_chunk::Kind::Header(PushHeader {
                model_id: "m".into(),
                total_len: 3,
                loss: 1.5,
                ..Default::default()
            })),
        };
        let xs = [1.0f32, -2.0, 3.5];
        let mut frames = VecDeque::new();
        frames.push_back(small_message(&header));
        bulk_message(
            &mut frames,
            &[],
            PUSH_DATA_FIELD,
            Bytes::copy_from_slice(bytemuck::cast_slice(&xs[..2])),
            &[],
        );
        // The same as prost would encode, so any gRPC peer reads it.
        frames.push_back(small_message(&PushChunk {
            kind: Some(push_chunk::Kind::Data(Bytes::copy_from_slice(
                bytemuck::cast_slice(&xs[2..]),
            ))),
        }));
        let all: Vec<u8> = frames.iter().flat_map(|b| b.iter().copied()).collect();
        rt.block_on(async {
            let mut r = BodyReader::new(body_of(split_everywhere(&all)));
            let len = r.message_len(1 << 20).await.unwrap().unwrap();
            let (meta, bulk) = r.message(len, PUSH_DATA_FIELD, &mut []).await.unwrap();
            assert_eq!(bulk, None);
            assert_eq!(PushChunk::decode(&meta[..]).unwrap(), header);
            let mut out = [0.0f32; 3];
            let mut filled = 0;
            while let Some(len) = r.message_len(1 << 20).await.unwrap() {
                let dst = &mut bytemuck::cast_slice_mut::<f32, u8>(&mut out)[filled * 4..];
                let (meta, bulk) = r.message(len, PUSH_DATA_FIELD, dst).await.unwrap();
                assert!(meta.is_empty());
                filled += bulk.unwrap() / 4;
            }
            assert_eq!(out, xs);
            // Too long for what is left; too large a message; truncated.
            let mut r = BodyReader::new(body_of(split_everywhere(&all)));
            let len = r.message_len(1 << 20).await.unwrap().unwrap();
            r.message(len, PUSH_DATA_FIELD, &mut []).await.unwrap();
            let len = r.message_len(1 << 20).await.unwrap().unwrap();
            assert!(matches!(
                r.message(len, PUSH_DATA_FIELD, &mut [0u8; 4]).await,
                Err(WireError::DoesNotFit { len: 8 })
            ));
            let mut r = BodyReader::new(body_of(split_everywhere(&all)));
            assert!(matches!(
                r.message_len(4).await,
                Err(WireError::TooLarge { .. })
            ));
            let mut r =
                BodyReader::new(body_of(vec![Bytes::copy_from_slice(&all[..all.len() - 1])]));
            let mut last = Ok(None);
            for _ in 0..3 {
                last = match r.message_len(1 << 20).await {
                    Ok(Some(len)) => r
                        .message(len, PUSH_DATA_FIELD, &mut [0u8; 12])
                        .await
                        .map(|_| None),
                    other => other,
                };
            }
            assert!(matches!(last, Err(WireError::Broken(_))), "{last:?}");
        });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let cases: [&[u8]; 5] = [
            &[2, 0, 0, 0, 1, 0],
            &[0, 0, 0, 0, 2, 0x12, 9],
            &[0, 0, 0, 0, 3, 0xff, 0xff, 0xff],
            &[0, 0, 0, 0, 2, 0x0b, 0],
            &[
                0, 0, 0, 0, 11, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
        ];
        rt.block_on(async {
            for c in cases {
                let mut r = BodyReader::new(body_of(vec![Bytes::copy_from_slice(c)]));
                let got = match r.message_len(1 << 20).await {
                    Ok(Some(len)) => r
                        .message(len, PUSH_DATA_FIELD, &mut [0u8; 64])
                        .await
                        .map(|_| ()),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                assert!(got.is_err(), "{c:?}");
            }
        });
    }

    #[test]
    fn pooled_buffers_are_reused_once_released() {
        let pools = WirePools::new(2);
        let a = pools.encode(WireFloat::F32, &[1.0, 2.0]);
        let p = a.as_ptr();
        assert_eq!(&a[..4], &1.0f32.to_le_bytes());
        let b = pools.encode(WireFloat::F32, &[3.0, 4.0]);
        assert_ne!(b.as_ptr(), p, "a buffer in use is not handed out twice");
        drop(a);
        let c = pools.encode(WireFloat::F32, &[5.0, 6.0]);
        assert_eq!(c.as_ptr(), p);
        assert_eq!(&c[4..], &6.0f32.to_le_bytes());
        let h = pools.encode(WireFloat::Bf16, &[1.0, -2.0]);
        assert_eq!(&h[..], &[0x80, 0x3f, 0x00, 0xc0]);
    }
}
