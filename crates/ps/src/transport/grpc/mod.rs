//! gRPC transport (tonic): one server process per shard, workers in other processes or on
//! other machines (`stagewise ps serve`, `stagewise ps worker`).
//!
//! The protocol is `proto/stagewise_ps.proto`. Parameters and gradients travel as
//! little-endian f32 bytes in chunks of at most `max_chunk_bytes` (default 1 MiB) inside
//! messages of at most `max_message_bytes` (default 4 MiB, tonic's default decoding limit;
//! a bigger message is refused with OUT_OF_RANGE / RESOURCE_EXHAUSTED by tonic). A pull is a
//! server stream, a push a client stream applied only once it ended cleanly with exactly the
//! shard's length: a worker that dies mid-push changes nothing. HTTP/2 flow-control windows
//! are raised to [`STREAM_WINDOW`] / [`CONNECTION_WINDOW`] so one stream can fill a fast link.

mod client;
mod service;

pub use client::{run_worker, BlockingGrpcClient, GrpcClient};
pub use service::{serve, start, ServeHandle};

/// HTTP/2 per-stream flow-control window, bytes.
pub const STREAM_WINDOW: u32 = 16 << 20;
/// HTTP/2 per-connection flow-control window, bytes.
pub const CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame accepted, bytes (fewer frames per megabyte than the 16 KiB default).
pub const MAX_FRAME: u32 = 1 << 20;
