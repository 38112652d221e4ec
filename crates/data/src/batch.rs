//! Epochs of shuffled, normalized, optionally augmented mini-batches.
//!
//! An epoch is fully determined by `(dataset, seed, epoch, config)`: the
//! visiting order comes from a generator keyed by `(seed, epoch)`, and the
//! augmentation of the item at position `k` of that order from a generator
//! keyed by `(seed, epoch)` seeked to `k`. So a resumed run rebuilds the same
//! epoch with [`EpochBatches::new`] and [`EpochBatches::skip_batches`], and changing
//! the batch size between stages regroups the same stream of samples without
//! changing it.

use std::iter::FusedIterator;

use rand::seq::SliceRandom;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::{Augment, Transform};
use crate::dataset::Dataset;
use crate::error::DataError;
use crate::normalize::Normalization;
use crate::rng::{stream_rng, Purpose};

/// Number of batches in an epoch of `n` items: `ceil(n / batch_size)`, the
/// last batch being partial when `batch_size` does not divide `n`; with
/// `drop_last`, `floor(n / batch_size)` and the remainder is skipped.
/// Returns 0 when `batch_size` is 0.
///
/// ```
/// use stagewise_data::steps_per_epoch;
/// assert_eq!(steps_per_epoch(60_000, 128, false), 469);
/// assert_eq!(steps_per_epoch(60_000, 128, true), 468);
/// assert_eq!(steps_per_epoch(6_000, 100, false), 60);
/// ```
pub fn steps_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if batch_size == 0 {
        0
    } else if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// The order in which epoch `epoch` visits `n` items: a permutation of
/// `0..n` that depends only on `(n, seed, epoch)`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut stream_rng(seed, epoch, Purpose::Shuffle));
    order
}

/// How to cut an epoch into batches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchConfig {
    /// Items per batch (the last one may hold fewer, see `drop_last`).
    pub batch_size: usize,
    /// Visit items in a random order drawn from `(seed, epoch)`; otherwise
    /// in dataset order (for evaluation).
    pub shuffle: bool,
    /// Skip the last batch when it would be partial.
    pub drop_last: bool,
    /// Augmentation applied to every item.
    pub augment: Augment,
    /// Pixel normalization.
    pub normalization: Normalization,
}

impl BatchConfig {
    /// Training defaults: shuffled, last partial batch kept, no
    /// augmentation, Fashion-MNIST normalization.
    pub fn train(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: false,
            augment: Augment::NONE,
            normalization: Normalization::FASHION_MNIST,
        }
    }

    /// Evaluation defaults: dataset order, last partial batch kept, no
    /// augmentation, Fashion-MNIST normalization.
    pub fn eval(batch_size: usize) -> Self {
        Self {
            shuffle: false,
            ..Self::train(batch_size)
        }
    }

    /// The same configuration with another augmentation.
    pub fn with_augment(mut self, augment: Augment) -> Self {
        self.augment = augment;
        self
    }

    /// The same configuration with another normalization.
    pub fn with_normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// The same configuration with `drop_last` set as given.
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }
}

/// A mini-batch, ready to become tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// `len * rows * cols` normalized pixels, NCHW with one channel.
    pub images: Vec<f32>,
    /// `len` labels.
    pub labels: Vec<i64>,
    /// `len` dataset indices of the items, for checks and debugging.
    pub indices: Vec<usize>,
    /// Number of items.
    pub len: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl Batch {
    /// Tensor shape of `images`: `[len, 1, rows, cols]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.len, 1, self.rows, self.cols]
    }
}

/// Iterator over the batches of one epoch.
///
/// Use it as an [`Iterator`] (one fresh [`Batch`] per step) or call
/// [`EpochBatches::next_into`] to refill one `Batch` and reuse its buffers.
///
/// ```
/// use stagewise_data::{synthetic, Augment, BatchConfig, EpochBatches, SyntheticConfig};
///
/// let data = synthetic(&SyntheticConfig::small())?;
/// let config = BatchConfig::train(64).with_augment(Augment::crop_flip(2));
/// let (seed, epoch) = (7, 0);
/// let mut steps = 0;
/// for batch in EpochBatches::new(&data.train, config, seed, epoch)? {
///     assert_eq!(batch.images.len(), batch.len * 28 * 28);
///     steps += 1;
/// }
/// assert_eq!(steps, stagewise_data::steps_per_epoch(data.train.len(), 64, false));
///
/// // Resuming at step 3 reproduces the same batches.
/// let mut resumed = EpochBatches::new(&data.train, config, seed, epoch)?;
/// resumed.skip_batches(3);
/// let mut fresh = EpochBatches::new(&data.train, config, seed, epoch)?;
/// assert_eq!(resumed.next(), fresh.nth(3));
/// # Ok::<(), stagewise_data::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct EpochBatches<'a> {
    dataset: &'a Dataset,
    config: BatchConfig,
    order: Vec<usize>,
    /// Position in `order` of the next item to emit.
    pos: usize,
    /// Position in `order` where the epoch ends (after `drop_last`).
    end: usize,
    aug_rng: ChaCha8Rng,
    table: [f32; 256],
}

impl<'a> EpochBatches<'a> {
    /// Epoch `epoch` of `dataset` under `seed`. Fails if the batch size is 0
    /// or the normalization's std is not a positive finite number.
    pub fn new(
        dataset: &'a Dataset,
        config: BatchConfig,
        seed: u64,
        epoch: u64,
    ) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::InvalidArgument("batch size 0".to_owned()));
        }
        let Normalization { mean, std } = config.normalization;
        if !(std.is_finite() && std > 0.0 && mean.is_finite()) {
            return Err(DataError::InvalidArgument(format!(
                "normalization mean {mean}, std {std}: std must be positive and both finite"
            )));
        }
        let n = dataset.len();
        let order = if config.shuffle {
            epoch_order(n, seed, epoch)
        } else {
            (0..n).collect()
        };
        let end = steps_per_epoch(n, config.batch_size, config.drop_last) * config.batch_size;
        Ok(Self {
            dataset,
            config,
            order,
            pos: 0,
            end: end.min(n),
            aug_rng: stream_rng(seed, epoch, Purpose::Augment),
            table: config.normalization.table(),
        })
    }

    /// Total number of batches in this epoch.
    pub fn steps(&self) -> usize {
        steps_per_epoch(
            self.dataset.len(),
            self.config.batch_size,
            self.config.drop_last,
        )
    }

    /// Number of batches not yet produced.
    pub fn remaining(&self) -> usize {
        (self.end - self.pos).div_ceil(self.config.batch_size)
    }

    /// Index of the next batch within the epoch.
    pub fn step(&self) -> usize {
        self.pos / self.config.batch_size
    }

    /// Skips `batches` batches without building them (to resume mid-epoch).
    pub fn skip_batches(&mut self, batches: usize) {
        let skip = batches.saturating_mul(self.config.batch_size);
        self.pos = self.pos.saturating_add(skip).min(self.end);
    }

    /// The visiting order of the whole epoch (dataset indices).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Fills `batch` with the next batch, reusing its buffers; returns
    /// `false` (leaving `batch` empty) when the epoch is over.
    pub fn next_into(&mut self, batch: &mut Batch) -> bool {
        let (rows, cols) = (self.dataset.rows(), self.dataset.cols());
        let pixels = rows * cols;
        let len = self.config.batch_size.min(self.end - self.pos);
        batch.len = len;
        batch.rows = rows;
        batch.cols = cols;
        batch.images.resize(len * pixels, 0.0);
        batch.labels.clear();
        batch.indices.clear();
        if len == 0 {
            return false;
        }
        let augment = self.config.augment;
        for (k, dst) in batch.images.chunks_exact_mut(pixels).enumerate() {
            let position = self.pos + k;
            let item = self.order[position];
            let transform = if augment.is_none() {
                Transform::IDENTITY
            } else {
                // Two 32-bit words per position: random access by seeking.
                self.aug_rng.set_word_pos(2 * position as u128);
                augment.draw(self.aug_rng.next_u64())
            };
            transform.apply(self.dataset.image(item), rows, cols, &self.table, dst);
            batch.labels.push(i64::from(self.dataset.label(item)));
            batch.indices.push(item);
        }
        self.pos += len;
        true
    }
}

impl Iterator for EpochBatches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Batch::default();
        self.next_into(&mut batch).then_some(batch)
    }

    /// Skips `n` batches without building them.
    fn nth(&mut self, n: usize) -> Option<Batch> {
        self.skip_batches(n);
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let r = self.remaining();
        (r, Some(r))
    }
}

impl ExactSizeIterator for EpochBatches<'_> {}

impl FusedIterator for EpochBatches<'_> {}
