//! Choosing and loading the data a run trains on.

use serde::{Deserialize, Serialize};
use stagewise_data::{
    synthetic, Augment, DataError, LocateOptions, Normalization, Origin, Splits, SyntheticConfig,
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

impl DatasetKind {
    /// Every dataset, in the order used in messages.
    pub const ALL: [DatasetKind; 2] = [Self::FashionMnist, Self::Synthetic];

    /// The name used in configs and on the command line: `fashion-mnist`, `synthetic`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FashionMnist => "fashion-mnist",
            Self::Synthetic => "synthetic",
        }
    }
}

impl stagewise_core::choice::Choice for DatasetKind {
    const WHAT: &'static str = "dataset";
    const ALL: &'static [Self] = &DatasetKind::ALL;

    fn name(self) -> &'static str {
        DatasetKind::name(self)
    }

    fn help(self) -> &'static str {
        match self {
            Self::FashionMnist => "Fashion-MNIST, found on disk or downloaded (checksummed)",
            Self::Synthetic => "a generated, learnable 10-class dataset: fully offline",
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = String;

    /// A [`name`](DatasetKind::name) (`fashion_mnist` too); the error lists the allowed names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|d| d.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|d| d.name()).collect();
                format!("unknown dataset '{s}'; allowed: {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for DatasetKind {
    /// The dataset's name in plain words: `Fashion-MNIST`, `synthetic`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FashionMnist => "Fashion-MNIST",
            Self::Synthetic => "synthetic",
        })
    }
}

/// The seed that chooses the validation split: fixed, so that runs with different seeds, and
/// every method of a comparison, validate on the same images.
pub const VAL_SPLIT_SEED: u64 = 0x7661_6c5f_7370_6c74;

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
    /// Hold this many training images out as a validation split (stratified, chosen with
    /// [`VAL_SPLIT_SEED`], so every run on this dataset holds out the same images, whatever
    /// its seed), before any `train_subset` is taken from the rest.
    #[serde(default)]
    pub val_split: Option<usize>,
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
            val_split: None,
            augment: false,
        }
    }
}

impl DataConfig {
    /// Where the data comes from, in plain words, for the run's first line: for Fashion-MNIST
    /// the folder used and how it was found (downloading it first when it is found nowhere and
    /// downloads are allowed, as [`load`](Self::load) would), e.g.
    /// `Fashion-MNIST from /usr/share/datasets/fashion-mnist (the system folder)`.
    pub fn describe(&self) -> Result<String, DataError> {
        let subset = |what: &str, n: Option<usize>| n.map(|n| format!(", {what} subset {n}"));
        let subsets: String = [
            self.val_split
                .map(|n| format!(", {n} training images held out for validation")),
            subset("train", self.train_subset),
            subset("test", self.test_subset),
        ]
        .into_iter()
        .flatten()
        .collect();
        let augment = if self.augment { ", augmented" } else { "" };
        let source = match self.dataset {
            DatasetKind::FashionMnist => {
                let mut locate = LocateOptions::from_env(self.data_dir.clone());
                locate.download = self.download;
                let found = locate.locate()?;
                let how = match found.origin {
                    Origin::Explicit => "the folder given",
                    Origin::Env => "$STAGEWISE_DATA",
                    Origin::Local => "the local folder",
                    Origin::System => "the system folder",
                    Origin::Cache => "the download cache",
                    Origin::Downloaded => "downloaded just now",
                };
                format!("Fashion-MNIST from {} ({how})", found.dir.display())
            }
            DatasetKind::Synthetic => "synthetic data (generated, no files)".to_string(),
        };
        Ok(format!("{source}{subsets}{augment}"))
    }

    /// Loads the train and test splits, holds out the validation split and takes the subsets
    /// asked for (stratified; subsets are chosen from `seed`).
    pub fn load(&self, seed: u64) -> Result<Splits, DataError> {
        self.validate()?;
        let splits = match self.dataset {
            DatasetKind::FashionMnist => {
                let mut locate = LocateOptions::from_env(self.data_dir.clone());
                locate.download = self.download;
                locate.load()?
            }
            DatasetKind::Synthetic => synthetic(&SyntheticConfig {
                train_size: self.train_subset.unwrap_or(6000) + self.val_split.unwrap_or(0),
                test_size: self.test_subset.unwrap_or(1000),
                ..SyntheticConfig::default().with_seed(seed)
            })?,
        };
        let (val, train) = hold_out_validation(splits.train, self.val_split)?;
        Ok(Splits {
            train: take_subset(train, "train_subset", self.train_subset, seed)?,
            val,
            test: take_subset(splits.test, "test_subset", self.test_subset, seed)?,
        })
    }

    /// Checks what can be checked before loading: a subset of 0 images is refused (an empty
    /// test set would report an accuracy that was never measured).
    pub fn validate(&self) -> Result<(), DataError> {
        for (name, n) in [
            ("train_subset", self.train_subset),
            ("test_subset", self.test_subset),
        ] {
            if n == Some(0) {
                return Err(DataError::InvalidArgument(format!(
                    "{name} = 0 is out of range: nothing would be {}; allowed: >= 1 \
                     (at most the size of the set)",
                    if name == "test_subset" {
                        "measured"
                    } else {
                        "trained on"
                    }
                )));
            }
        }
        Ok(())
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

/// A stratified subset of `n` images of `data` (all of it for `None`); `n` of 0 or above the
/// set's size is refused, naming the option `name`.
fn take_subset(
    data: stagewise_data::Dataset,
    name: &str,
    n: Option<usize>,
    seed: u64,
) -> Result<stagewise_data::Dataset, DataError> {
    match n {
        None => Ok(data),
        Some(n) if n == data.len() => Ok(data),
        Some(n) if n == 0 || n > data.len() => Err(DataError::InvalidArgument(format!(
            "{name} = {n} is out of range for a set of {} images; allowed: 1 ..= {}",
            data.len(),
            data.len()
        ))),
        Some(n) => Ok(data.stratified_subset(n, seed)),
    }
}

/// Splits `n` validation images off `train` ([`VAL_SPLIT_SEED`]); `None` or 0 holds out none.
fn hold_out_validation(
    train: stagewise_data::Dataset,
    n: Option<usize>,
) -> Result<(Option<stagewise_data::Dataset>, stagewise_data::Dataset), DataError> {
    match n {
        None | Some(0) => Ok((None, train)),
        Some(n) if n >= train.len() => Err(DataError::InvalidArgument(format!(
            "val_split = {n} is out of range for a training set of {} images; \
             allowed: 0 <= val_split < {}",
            train.len(),
            train.len()
        ))),
        Some(n) => {
            let (val, rest) = train.stratified_split(n, VAL_SPLIT_SEED);
            Ok((Some(val), rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_is_described_in_plain_words() {
        assert_eq!(DatasetKind::FashionMnist.to_string(), "Fashion-MNIST");
        for d in DatasetKind::ALL {
            assert_eq!(d.name().parse::<DatasetKind>(), Ok(d));
        }
        assert_eq!("fashion_mnist".parse(), Ok(DatasetKind::FashionMnist));
        let e = "mnist".parse::<DatasetKind>().unwrap_err();
        assert!(
            e.contains("'mnist'") && e.contains("fashion-mnist, synthetic"),
            "{e}"
        );
        let synthetic = DataConfig {
            dataset: DatasetKind::Synthetic,
            train_subset: Some(600),
            augment: true,
            ..DataConfig::default()
        };
        assert_eq!(
            synthetic.describe().unwrap(),
            "synthetic data (generated, no files), train subset 600, augmented"
        );
        let dir = std::env::temp_dir().join(format!("stagewise-describe-{}", std::process::id()));
        let missing = DataConfig {
            data_dir: Some(dir.clone()),
            download: false,
            ..DataConfig::default()
        };
        let e = missing.describe().unwrap_err().to_string();
        assert!(e.contains(&dir.display().to_string()), "{e}");
    }

    #[test]
    fn subsets_of_zero_or_above_the_set_size_are_refused() {
        let data = DataConfig {
            dataset: DatasetKind::Synthetic,
            train_subset: Some(300),
            test_subset: Some(100),
            ..DataConfig::default()
        };
        let test = data.load(1).unwrap().test;
        let e = take_subset(test.clone(), "test_subset", Some(101), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test_subset = 101") && e.contains("set of 100 images"),
            "{e}"
        );
        assert!(take_subset(test.clone(), "test_subset", Some(0), 1).is_err());
        assert_eq!(take_subset(test.clone(), "t", Some(100), 1).unwrap(), test);
        assert_eq!(take_subset(test, "t", Some(50), 1).unwrap().len(), 50);
        for empty in [
            DataConfig {
                test_subset: Some(0),
                ..data.clone()
            },
            DataConfig {
                train_subset: Some(0),
                ..data.clone()
            },
        ] {
            let e = empty.load(1).unwrap_err().to_string();
            assert!(e.contains("_subset = 0 is out of range"), "{e}");
        }
    }

    #[test]
    fn the_validation_split_is_held_out_identically_whatever_the_seed() {
        let data = DataConfig {
            dataset: DatasetKind::Synthetic,
            train_subset: Some(300),
            test_subset: Some(100),
            val_split: Some(100),
            ..DataConfig::default()
        };
        let a = data.load(1).unwrap();
        let b = data.load(1).unwrap();
        assert_eq!(a, b);
        let val = a.val.as_ref().unwrap();
        assert_eq!((val.len(), a.train.len()), (100, 300));
        assert_eq!(val.class_counts(), vec![10; 10]);
        // No validation image is trained on.
        let trained: std::collections::HashSet<&[u8]> =
            (0..a.train.len()).map(|i| a.train.image(i)).collect();
        assert!((0..val.len()).all(|i| !trained.contains(val.image(i))));
        assert!(data
            .describe()
            .unwrap()
            .contains("100 training images held out"));
        let e = hold_out_validation(a.train.clone(), Some(300))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("val_split = 300") && e.contains("allowed"),
            "{e}"
        );
        assert_eq!(hold_out_validation(a.train, Some(0)).unwrap().0, None);
    }
}
