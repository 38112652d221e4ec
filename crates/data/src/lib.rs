//! Datasets for stagewise, without a deep-learning framework.
//!
//! * [`FashionMnist`] and [`idx`]: read the IDX files of (Fashion-)MNIST,
//!   raw or gzip, checking them thoroughly.
//! * [`LocateOptions`]: find Fashion-MNIST (`--data-dir`, `$STAGEWISE_DATA`,
//!   `./data/fashion-mnist`, `/usr/share/datasets/fashion-mnist`, the cache)
//!   or [`download`] it with MD5 verification.
//! * [`synthetic()`]: a deterministic, learnable offline stand-in.
//! * The [`Dataset`] type: subsets ([`Dataset::take`], [`Dataset::stratified_subset`])
//!   and parameter-server shards ([`Dataset::shard`]).
//! * [`EpochBatches`]: reproducible shuffling from `(seed, epoch)`,
//!   [`Normalization`], [`Augment`]ation and batching with any batch size.
//!
//! ```
//! use stagewise_data::{synthetic, BatchConfig, EpochBatches, SyntheticConfig};
//!
//! let data = synthetic(&SyntheticConfig::small())?;
//! let mut batches = EpochBatches::new(&data.train, BatchConfig::train(32), 42, 0)?;
//! let first = batches.next().expect("non-empty");
//! assert_eq!(first.shape(), [32, 1, 28, 28]);
//! # Ok::<(), stagewise_data::DataError>(())
//! ```

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod download;
pub mod error;
pub mod fashion;
pub mod idx;
pub mod locate;
pub mod normalize;
mod rng;
pub mod synthetic;

pub use augment::{Augment, Transform};
pub use batch::{epoch_order, steps_per_epoch, Batch, BatchConfig, EpochBatches};
pub use dataset::{Dataset, Splits};
pub use download::{Downloader, RemoteFile};
pub use error::DataError;
pub use fashion::FashionMnist;
pub use locate::{LocateOptions, Located, Origin};
pub use normalize::Normalization;
pub use synthetic::{synthetic, SyntheticConfig};
