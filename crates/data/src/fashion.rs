//! Fashion-MNIST: file names, class names, loading a folder.

use std::path::{Path, PathBuf};

use crate::dataset::Splits;
use crate::error::DataError;
use crate::idx;

/// Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28×28 grey-scale images of
/// clothing in 10 classes, 60 000 for training and 10 000 for testing.
///
/// ```no_run
/// use stagewise_data::{FashionMnist, LocateOptions};
///
/// // A folder known to hold the four files (raw or .gz) ...
/// let splits = FashionMnist::load(std::path::Path::new("/usr/share/datasets/fashion-mnist"))?;
/// assert_eq!(splits.train.len(), 60_000);
///
/// // ... or search the usual places, downloading as a last resort.
/// let splits = LocateOptions::from_env(None).load()?;
/// assert_eq!(splits.test.len(), 10_000);
/// # Ok::<(), stagewise_data::DataError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FashionMnist;

impl FashionMnist {
    /// Name used in messages.
    pub const NAME: &'static str = "Fashion-MNIST";
    /// Number of classes.
    pub const CLASSES: usize = 10;
    /// Image height and width.
    pub const SIDE: usize = 28;
    /// Class names, indexed by label.
    pub const CLASS_NAMES: [&'static str; 10] = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ];
    /// Base name of the training images file (`.gz` optional).
    pub const TRAIN_IMAGES: &'static str = "train-images-idx3-ubyte";
    /// Base name of the training labels file (`.gz` optional).
    pub const TRAIN_LABELS: &'static str = "train-labels-idx1-ubyte";
    /// Base name of the test images file (`.gz` optional).
    pub const TEST_IMAGES: &'static str = "t10k-images-idx3-ubyte";
    /// Base name of the test labels file (`.gz` optional).
    pub const TEST_LABELS: &'static str = "t10k-labels-idx1-ubyte";
    /// The four base names.
    pub const FILES: [&'static str; 4] = [
        Self::TRAIN_IMAGES,
        Self::TRAIN_LABELS,
        Self::TEST_IMAGES,
        Self::TEST_LABELS,
    ];

    /// Loads both splits from `dir`, which must hold the four files, each
    /// either raw (`train-images-idx3-ubyte`) or gzip
    /// (`train-images-idx3-ubyte.gz`); the raw name wins if both exist. The
    /// content, not the name, decides whether a file is decompressed.
    ///
    /// Images must be 28×28 and labels below 10; files are checked in full
    /// (see [`crate::idx`]) and any problem is an error naming the file.
    pub fn load(dir: &Path) -> Result<Splits, DataError> {
        let missing = Self::missing_files(dir);
        if !missing.is_empty() {
            return Err(DataError::MissingFiles {
                dataset: Self::NAME,
                dir: dir.to_path_buf(),
                missing,
            });
        }
        let path = |base: &str| Self::find_file(dir, base).unwrap_or_else(|| dir.join(base));
        let train = Self::load_split(&path(Self::TRAIN_IMAGES), &path(Self::TRAIN_LABELS))?;
        let test = Self::load_split(&path(Self::TEST_IMAGES), &path(Self::TEST_LABELS))?;
        Ok(Splits {
            train,
            val: None,
            test,
        })
    }

    /// The path of `base` or `base.gz` in `dir`, whichever exists (raw first).
    pub fn find_file(dir: &Path, base: &str) -> Option<PathBuf> {
        [base.to_owned(), format!("{base}.gz")]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
    }

    /// Base names of the files `dir` lacks (empty when it has all four).
    pub fn missing_files(dir: &Path) -> Vec<String> {
        Self::FILES
            .iter()
            .filter(|base| Self::find_file(dir, base).is_none())
            .map(|base| (*base).to_owned())
            .collect()
    }

    /// Whether `dir` holds all four files.
    pub fn has_files(dir: &Path) -> bool {
        Self::missing_files(dir).is_empty()
    }

    fn load_split(images: &Path, labels: &Path) -> Result<crate::Dataset, DataError> {
        let ds = idx::read_pair(images, labels, Self::CLASSES)?;
        if !ds.is_empty() && (ds.rows() != Self::SIDE || ds.cols() != Self::SIDE) {
            return Err(DataError::Invalid {
                path: images.to_path_buf(),
                detail: format!(
                    "images are {}x{}, Fashion-MNIST images are {side}x{side}",
                    ds.rows(),
                    ds.cols(),
                    side = Self::SIDE
                ),
            });
        }
        Ok(ds)
    }
}
