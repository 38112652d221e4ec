//! Typed errors at the crate's borders.

use std::path::PathBuf;

use stagewise_core::optim::OptimError;

/// A configuration value that cannot be used; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config field `{field}`: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `server.policy.max_staleness`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl ConfigError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why the server refused a gradient. Parameters are unchanged in every case.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    /// The gradient does not have the shard's length.
    #[error("gradient has {got} elements, the shard has {expected}")]
    LengthMismatch {
        /// The shard's length.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A gradient element is NaN or infinite.
    #[error("gradient element {index} is not finite ({value})")]
    NonFinite {
        /// Index of the first offending element.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// The worker claims a version the server has not reached.
    #[error("pulled version {pulled} is newer than the server's version {current}")]
    FutureVersion {
        /// The version the push claims.
        pulled: u64,
        /// The server's version.
        current: u64,
    },
    /// The push names a model this server does not hold.
    #[error("unknown model id '{got}' (this server holds '{expected}')")]
    UnknownModel {
        /// The server's model id.
        expected: String,
        /// The id received.
        got: String,
    },
    /// The optimizer refused the (compensated) gradient.
    #[error("optimizer refused the update: {0}")]
    Optimizer(#[from] OptimError),
    /// The server is shutting down and applies nothing more.
    #[error("the server is shutting down; nothing applied")]
    ShuttingDown,
}

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system error.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a checkpoint of this format or is damaged.
    #[error("checkpoint {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint belongs to another model, shard or optimizer.
    #[error("checkpoint {path} does not fit this server: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

/// A gradient source failed to compute a gradient.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("gradient computation failed: {0}")]
pub struct GradientError(pub String);

/// Any failure of a server, worker or run.
#[derive(Debug, thiserror::Error)]
pub enum PsError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A refused push (in-process callers).
    #[error(transparent)]
    Push(#[from] PushError),
    /// Checkpoint failure.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The optimizer could not be built or restored.
    #[error("optimizer: {0}")]
    Optim(#[from] OptimError),
    /// A gradient source failed.
    #[error(transparent)]
    Gradient(#[from] GradientError),
    /// A pull waited longer than allowed for a version.
    #[error("waited {waited_ms} ms for version {wanted} (server at {current})")]
    WaitTimeout {
        /// Version wanted.
        wanted: u64,
        /// Version reached.
        current: u64,
        /// How long the pull waited.
        waited_ms: u64,
    },
    /// A server answered with a gRPC error status.
    #[cfg(feature = "grpc")]
    #[error("server {server}: {status}")]
    Status {
        /// The server's URL.
        server: String,
        /// The status.
        status: Box<tonic::Status>,
    },
    /// The connection to a server was lost and made again; the push in flight was dropped
    /// (the worker pulls again, from the version the server now serves).
    #[error("reconnected to the servers; the push in flight was dropped")]
    Reconnected,
    /// The server is shutting down: a waiting pull ended unanswered.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Connecting, binding or a malformed reply.
    #[error("transport: {0}")]
    Transport(String),
    /// The run record (metrics, summary) could not be written.
    #[error(transparent)]
    Record(#[from] stagewise_core::record::RecordError),
    /// File system error outside checkpoints (metrics, keys, tokens).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

#[cfg(feature = "grpc")]
impl PsError {
    /// True for errors that a lost or restarting server gives (UNAVAILABLE, a stream that
    /// broke, a push with a version from before the server's restart): worth reconnecting.
    pub fn is_lost_server(&self) -> bool {
        match self {
            PsError::Status { status, .. } => match status.code() {
                tonic::Code::Unavailable | tonic::Code::Aborted | tonic::Code::Cancelled => true,
                // A connection reset while a call was in flight.
                tonic::Code::Unknown => status.message().contains("transport error"),
                // A server resumed from an older checkpoint than the version pulled.
                tonic::Code::InvalidArgument => {
                    status.message().contains("newer than the server's version")
                }
                _ => false,
            },
            PsError::ShuttingDown => true,
            _ => false,
        }
    }

    /// The gRPC status code when this error came from a server.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            PsError::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}
