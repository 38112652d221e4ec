//! The in-memory dataset type and the ways to cut it down: first-N
//! subsets, stratified subsets and parameter-server shards.

use rand::seq::SliceRandom;

use crate::error::DataError;
use crate::rng::{stream_rng, Purpose};

/// A labelled set of single-channel `u8` images, stored contiguously.
///
/// Image `i` occupies `images()[i * rows * cols .. (i + 1) * rows * cols]`,
/// row-major; its label is `labels()[i]`, always `< classes`. The invariants
/// are checked by [`Dataset::new`], so every `Dataset` is consistent.
///
/// ```
/// use stagewise_data::Dataset;
///
/// let ds = Dataset::new(vec![0, 255, 7, 9], vec![1, 0], 1, 2, 2)?;
/// assert_eq!(ds.len(), 2);
/// assert_eq!(ds.image(1), &[7, 9]);
/// assert_eq!(ds.class_counts(), vec![1, 1]);
/// # Ok::<(), stagewise_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    classes: usize,
}

/// A training split and a test split of the same dataset, and optionally a validation split
/// held out of the training data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splits {
    /// The training split (60 000 items for Fashion-MNIST, less any validation split).
    pub train: Dataset,
    /// The validation split, held out of the training data ([`Dataset::stratified_split`]);
    /// `None` unless asked for.
    pub val: Option<Dataset>,
    /// The test split (10 000 items for Fashion-MNIST).
    pub test: Dataset,
}

impl Dataset {
    /// Builds a dataset, checking that `images.len() == labels.len() * rows *
    /// cols`, that `rows`, `cols` and `classes` are non-zero, that `classes <=
    /// 256` and that every label is `< classes`.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
        classes: usize,
    ) -> Result<Self, DataError> {
        if rows == 0 || cols == 0 {
            return Err(DataError::InvalidArgument(format!(
                "image size {rows}x{cols} has no pixels"
            )));
        }
        if classes == 0 || classes > 256 {
            return Err(DataError::InvalidArgument(format!(
                "{classes} classes: u8 labels need 1..=256 classes"
            )));
        }
        let expected = labels.len().checked_mul(rows * cols);
        if expected != Some(images.len()) {
            return Err(DataError::InvalidArgument(format!(
                "{} image bytes for {} labels of {rows}x{cols} images",
                images.len(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= classes)
        {
            return Err(DataError::InvalidArgument(format!(
                "label {l} of item {i} is not below the class count {classes}"
            )));
        }
        Ok(Self {
            images,
            labels,
            rows,
            cols,
            classes,
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no items.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image height in pixels.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Image width in pixels.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of classes; every label is below it.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Pixels per image (`rows * cols`).
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// All images, concatenated, row-major, one byte per pixel.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels, one per image.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The label of item `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Gives back the image and label buffers.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>) {
        (self.images, self.labels)
    }

    /// Number of items of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// A new dataset made of the given items, in the given order (indices
    /// may repeat).
    pub fn select(&self, indices: &[usize]) -> Result<Dataset, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::InvalidArgument(format!(
                "index {bad} out of range for a dataset of {} items",
                self.len()
            )));
        }
        Ok(self.gather(indices))
    }

    /// [`Dataset::select`] for indices known to be in range.
    fn gather(&self, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        self.with_buffers(images, labels)
    }

    /// The first `min(n, len)` items.
    ///
    /// ```
    /// # let ds = stagewise_data::synthetic(&stagewise_data::SyntheticConfig::small())?.train;
    /// let head = ds.take(10);
    /// assert_eq!(head.len(), 10);
    /// assert_eq!(head.image(3), ds.image(3));
    /// # Ok::<(), stagewise_data::DataError>(())
    /// ```
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.with_buffers(
            self.images[..n * self.image_len()].to_vec(),
            self.labels[..n].to_vec(),
        )
    }

    /// Keeps only the first `min(n, len)` items, in place.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n);
    }

    /// `min(n, len)` items whose class proportions match the whole dataset's
    /// (largest-remainder rounding), chosen at random from `seed`, kept in
    /// their original order.
    ///
    /// On Fashion-MNIST's balanced training split, `stratified_subset(6000,
    /// seed)` holds exactly 600 items per class.
    pub fn stratified_subset(&self, n: usize, seed: u64) -> Dataset {
        if n >= self.len() {
            return self.clone();
        }
        self.gather(&self.stratified_indices(n, seed))
    }

    /// Splits the data in two: `min(n, len)` items chosen as [`Dataset::stratified_subset`]
    /// chooses them, and the rest, both in their original order. Every item is in exactly one
    /// of the two.
    ///
    /// ```
    /// # let ds = stagewise_data::synthetic(&stagewise_data::SyntheticConfig::small())?.train;
    /// let (val, rest) = ds.stratified_split(50, 7);
    /// assert_eq!(val, ds.stratified_subset(50, 7));
    /// assert_eq!(val.len() + rest.len(), ds.len());
    /// # Ok::<(), stagewise_data::DataError>(())
    /// ```
    pub fn stratified_split(&self, n: usize, seed: u64) -> (Dataset, Dataset) {
        let chosen = if n >= self.len() {
            (0..self.len()).collect()
        } else {
            self.stratified_indices(n, seed)
        };
        let mut in_chosen = vec![false; self.len()];
        for &i in &chosen {
            in_chosen[i] = true;
        }
        let rest: Vec<usize> = (0..self.len()).filter(|&i| !in_chosen[i]).collect();
        (self.gather(&chosen), self.gather(&rest))
    }

    /// The sorted indices [`Dataset::stratified_subset`] keeps, for `n < len`.
    fn stratified_indices(&self, n: usize, seed: u64) -> Vec<usize> {
        let total = self.len();
        let counts = self.class_counts();
        // Quotas by largest remainder: floor shares first, then one extra
        // item to the classes with the largest fractional parts (ties: lower
        // label first).
        let mut quotas: Vec<usize> = counts.iter().map(|&c| c * n / total).collect();
        let mut assigned: usize = quotas.iter().sum();
        let mut by_remainder: Vec<usize> = (0..self.classes).collect();
        by_remainder.sort_by_key(|&c| std::cmp::Reverse((counts[c] * n) % total));
        for &c in by_remainder.iter().cycle().take(self.classes * 2) {
            if assigned == n {
                break;
            }
            if quotas[c] < counts[c] {
                quotas[c] += 1;
                assigned += 1;
            }
        }

        let mut per_class: Vec<Vec<usize>> =
            counts.iter().map(|&c| Vec::with_capacity(c)).collect();
        for (i, &l) in self.labels.iter().enumerate() {
            per_class[usize::from(l)].push(i);
        }
        let mut rng = stream_rng(seed, 0, Purpose::Subset);
        let mut chosen = Vec::with_capacity(n);
        for (members, &quota) in per_class.iter_mut().zip(&quotas) {
            let (picked, _) = members.partial_shuffle(&mut rng, quota);
            chosen.extend_from_slice(picked);
        }
        chosen.sort_unstable();
        chosen
    }

    /// The part of the data that worker `worker_index` of `num_workers`
    /// trains on: items `worker_index, worker_index + num_workers, ...`.
    ///
    /// Shards are disjoint, cover the dataset, and their sizes differ by at
    /// most one. Striding (rather than contiguous blocks) keeps every shard's
    /// class mix close to the whole dataset's when the file order is mixed,
    /// as it is for Fashion-MNIST.
    ///
    /// ```
    /// # let ds = stagewise_data::synthetic(&stagewise_data::SyntheticConfig::small())?.train;
    /// let a = ds.shard(0, 3)?;
    /// let b = ds.shard(1, 3)?;
    /// let c = ds.shard(2, 3)?;
    /// assert_eq!(a.len() + b.len() + c.len(), ds.len());
    /// assert_eq!(b.image(0), ds.image(1));
    /// # Ok::<(), stagewise_data::DataError>(())
    /// ```
    pub fn shard(&self, worker_index: usize, num_workers: usize) -> Result<Dataset, DataError> {
        if num_workers == 0 || worker_index >= num_workers {
            return Err(DataError::InvalidArgument(format!(
                "worker index {worker_index} is not below the worker count {num_workers}"
            )));
        }
        let indices: Vec<usize> = (worker_index..self.len()).step_by(num_workers).collect();
        Ok(self.gather(&indices))
    }

    fn with_buffers(&self, images: Vec<u8>, labels: Vec<u8>) -> Dataset {
        Dataset {
            images,
            labels,
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
        }
    }
}
