//! # stagewise-ps
//!
//! A parameter server for asynchronous SGD with the stagewise optimizers of
//! [`stagewise_core`]: the server holds the flat f32 parameters, the optimizer state and a
//! version counter; workers pull `(parameters, version)`, compute a gradient on their own batch
//! and push `(gradient, pulled version)`; the server applies each push as it arrives under a
//! staleness policy and records its staleness τ = version − pulled version.
//!
//! - [`server::ParamServer`]: the transport-independent core, with the policies of
//!   [`config::PolicyConfig`]: plain ASGD, staleness-aware learning rate, bounded staleness
//!   (refuse or SSP wait), DC-ASGD and a synchronous baseline.
//! - [`run_in_process`]: threads and a shared server, no network (`stagewise asgd`).
//! - [`serve`] / [`run_worker`]: the same over gRPC (tonic), one server process per shard,
//!   with a shared-secret token, optional TLS, chunked streams for large vectors
//!   (`proto/stagewise_ps.proto`).
//! - [`checkpoint`]: atomic checkpoints and resume; [`metrics`]: CSV and JSON metrics.
//! - [`gradient::GradientSource`] and [`gradient::Evaluator`]: what a model implements;
//!   [`synthetic`] has small learnable tasks.
//! - [`bench`]: pushes/s and bytes/s, in-process and over gRPC.
//!
//! ```
//! use stagewise_ps::config::{AsgdConfig, PolicyConfig, ScheduleConfig};
//! use stagewise_ps::gradient::GradientSource;
//! use stagewise_ps::synthetic::SoftmaxTask;
//!
//! let task = SoftmaxTask::new(8, 3, 512, 256, 7);
//! let mut config = AsgdConfig::default();
//! config.server.policy = PolicyConfig::StalenessAware;
//! config.server.schedule = ScheduleConfig::Constant { lr: 0.5, momentum: 0.0, nu: 0.0 };
//! config.server.max_updates = Some(200);
//! let sources: Vec<Box<dyn GradientSource>> =
//!     (0..2).map(|i| Box::new(task.worker(32, i)) as Box<dyn GradientSource>).collect();
//! let report = stagewise_ps::run_in_process(config, sources, Some(Box::new(task.evaluator()))).unwrap();
//! assert_eq!(report.version, 200);
//! assert!(report.summary.last_eval.unwrap().accuracy.unwrap() > 0.6);
//! ```

#![warn(missing_docs)]

#[cfg(feature = "grpc")]
pub mod auth;
#[cfg(feature = "grpc")]
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod gradient;
pub mod metrics;
pub mod schedule;
pub mod server;
pub mod shard;
pub mod synthetic;
pub mod transport;
pub mod worker;

/// Code generated from `proto/stagewise_ps.proto` (messages, client and server stubs).
#[cfg(feature = "grpc")]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("stagewise.ps.v1");
}

pub use config::{AsgdConfig, PolicyConfig, ServeConfig, ServerConfig, WorkerConfig};
pub use error::PsError;
pub use gradient::{BatchStats, EvalPoint, EvalStats, Evaluator, GradientSource};
pub use server::ParamServer;
#[cfg(feature = "grpc")]
pub use transport::grpc::{run_worker, serve, start as start_server, ServeHandle};
pub use transport::in_process::{run_in_process, run_in_process_from, Report};
