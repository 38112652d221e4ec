//! gRPC transport (tonic): one server process per shard, workers in other processes or on
//! other machines (`stagewise ps serve`, `stagewise ps worker`).
//!
//! The protocol is `proto/stagewise_ps.proto`. Parameters and gradients travel as
//! little-endian f32 bytes (or bfloat16, half the bytes, when a worker asks for it per call:
//! `WorkerConfig::grad_wire` / `param_wire`) in chunks of at most `max_chunk_bytes` (default
//! 1 MiB) inside messages of at most `max_message_bytes` (default 4 MiB, tonic's default
//! decoding limit; a bigger message is refused with OUT_OF_RANGE). A pull is a server stream,
//! a push a client stream applied only once it ended cleanly with exactly the shard's length:
//! a worker that dies mid-push changes nothing. HTTP/2 flow-control windows are raised to
//! [`STREAM_WINDOW`] / [`CONNECTION_WINDOW`] so one stream can fill a fast link.
//!
//! `Info` goes through tonic's generated code; `Pull` and `Push`, which carry the floats, are
//! read and written at the HTTP/2 level (`wire.rs`): same bytes on the wire, but the floats
//! are copied once on each side of the kernel instead of three times, into and out of pooled
//! buffers (no allocation per chunk). Any gRPC client or server of the `.proto` interoperates.
//!
//! HTTP/2 reads each frame into a fresh buffer of up to [`MAX_FRAME`] bytes. With glibc's
//! default settings those megabyte buffers are handed back to the kernel when freed and
//! page-faulted in again on the next frame, which cost about a fifth of the throughput at
//! P = 10M; [`keep_freed_memory`] (called when a server or client starts) makes glibc keep
//! them.

mod client;
mod service;
mod wire;

pub use client::{run_worker, BlockingGrpcClient, GrpcClient};
pub use service::{serve, start, ServeHandle};

/// HTTP/2 per-stream flow-control window, bytes.
pub const STREAM_WINDOW: u32 = 16 << 20;
/// HTTP/2 per-connection flow-control window, bytes.
pub const CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame accepted, bytes (fewer frames per megabyte than the 16 KiB default).
pub const MAX_FRAME: u32 = 1 << 20;

/// Makes glibc's allocator keep freed memory for reuse instead of returning it to the kernel:
/// allocations up to 32 MiB come from the heap, which is trimmed only beyond 256 MiB free
/// (the effect of `MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456`). This
/// spares the page faults of re-allocating HTTP/2 frame buffers for every frame; the process
/// keeps up to that much freed memory. Applied once per process; does nothing when either
/// variable is set (the user's choice wins) or on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
                || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            {
                return;
            }
            extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            // SAFETY: mallopt only sets allocator parameters; it is thread-safe and these
            // values are within glibc's documented ranges.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 32 << 20);
                mallopt(M_TRIM_THRESHOLD, 256 << 20);
            }
        });
    }
}
