//! How workers reach the server: threads in this process, or gRPC across processes.

pub mod codec;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod in_process;
