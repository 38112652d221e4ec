//! Choosing and loading the data a run trains on.

use serde::{Deserialize, Serialize};
use stagewise_data::{
    synthetic, Augment, DataError, LocateOptions, Normalization, Splits, SyntheticConfig,
};
use std::path::PathBuf;

/// Which dataset to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Fashion-MNIST, located on disk or downloaded (see [`LocateOptions`]).
    FashionMnist,
    /// A generated, learnable 10-class dataset: fully offline.
    Synthetic,
}

/// Where the data comes from and how much of it is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset.
    pub dataset: DatasetKind,
    /// An explicit Fashion-MNIST folder (otherwise `$STAGEWISE_DATA`, `./data/fashion-mnist`,
    /// `/usr/share/datasets/fashion-mnist`, then the download cache).
    pub data_dir: Option<PathBuf>,
    /// Download Fashion-MNIST when it is found nowhere.
    pub download: bool,
    /// Train on a stratified subset of this many images.
    pub train_subset: Option<usize>,
    /// Evaluate on a stratified subset of this many images.
    pub test_subset: Option<usize>,
    /// Random crop (padding 2) and horizontal flip.
    pub augment: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::FashionMnist,
            data_dir: None,
            download: true,
            train_subset: None,
            test_subset: None,
            augment: false,
        }
    }
}

impl DataConfig {
    /// Loads the train and test splits, subsetting them as asked (stratified, seeded).
    pub fn load(&self, seed: u64) -> Result<Splits, DataError> {
        let splits = match self.dataset {
            DatasetKind::FashionMnist => {
                let mut locate = LocateOptions::from_env(self.data_dir.clone());
                locate.download = self.download;
                locate.load()?
            }
            DatasetKind::Synthetic => synthetic(&SyntheticConfig {
                train_size: self.train_subset.unwrap_or(6000),
                test_size: self.test_subset.unwrap_or(1000),
                ..SyntheticConfig::default().with_seed(seed)
            })?,
        };
        let subset = |d: stagewise_data::Dataset, n: Option<usize>| match n {
            Some(n) if n < d.len() => d.stratified_subset(n, seed),
            _ => d,
        };
        Ok(Splits {
            train: subset(splits.train, self.train_subset),
            test: subset(splits.test, self.test_subset),
        })
    }

    /// The augmentation to apply to training batches.
    pub fn augmentation(&self) -> Augment {
        if self.augment {
            Augment::crop_flip(2)
        } else {
            Augment::NONE
        }
    }

    /// The pixel normalization (Fashion-MNIST's statistics for both datasets).
    pub fn normalization(&self) -> Normalization {
        Normalization::FASHION_MNIST
    }
}
