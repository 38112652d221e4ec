//! Finding Fashion-MNIST on disk, downloading it as a last resort.

use std::path::{Path, PathBuf};

use crate::dataset::Splits;
use crate::download::{fashion_mnist_files, Downloader, RemoteFile, ENV_FASHION_MNIST_URL};
use crate::error::DataError;
use crate::fashion::FashionMnist;

/// Environment variable naming a folder that holds Fashion-MNIST (or that
/// has a `fashion-mnist` sub-folder holding it).
pub const ENV_DATA_DIR: &str = "STAGEWISE_DATA";

/// Folder, relative to the working directory, searched after the explicit
/// ones.
pub const LOCAL_DIR: &str = "data/fashion-mnist";

/// Where the Debian package `dataset-fashion-mnist` installs the four `.gz`
/// files.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Where a folder holding the dataset came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The folder passed explicitly (`--data-dir`).
    Explicit,
    /// The folder named by `$STAGEWISE_DATA`.
    Env,
    /// `./data/fashion-mnist`.
    Local,
    /// `/usr/share/datasets/fashion-mnist`.
    System,
    /// The download cache, filled by an earlier run.
    Cache,
    /// The download cache, filled just now.
    Downloaded,
}

/// A folder holding all four Fashion-MNIST files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The folder.
    pub dir: PathBuf,
    /// How it was found.
    pub origin: Origin,
}

/// Where to look for Fashion-MNIST and whether and how to download it.
///
/// [`LocateOptions::from_env`] fills the fields from the environment; tests
/// and embedders can set them directly instead of touching the process
/// environment. The search order is:
///
/// 1. `data_dir` (the `--data-dir` flag), or its `fashion-mnist`
///    sub-folder. When it is set, nothing else is searched or downloaded: if
///    it lacks the files, that is an error ([`DataError::MissingFiles`])
///    rather than a silent fall-back.
/// 2. `env_dir` (`$STAGEWISE_DATA`), or its `fashion-mnist` sub-folder.
/// 3. `local_dir` (`./data/fashion-mnist`).
/// 4. `system_dir` (`/usr/share/datasets/fashion-mnist`, Debian package
///    `dataset-fashion-mnist`).
/// 5. `cache_dir` (`$XDG_CACHE_HOME/stagewise/fashion-mnist` or
///    `~/.cache/stagewise/fashion-mnist`); if it lacks the files and
///    `download` is set, they are downloaded there from `base_url` and
///    checked against `files`' MD5 sums.
///
/// ```no_run
/// use stagewise_data::LocateOptions;
///
/// let opts = LocateOptions::from_env(None);
/// let found = opts.locate()?;
/// println!("Fashion-MNIST in {} ({:?})", found.dir.display(), found.origin);
/// # Ok::<(), stagewise_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocateOptions {
    /// Folder given explicitly, e.g. by `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// Folder from `$STAGEWISE_DATA`.
    pub env_dir: Option<PathBuf>,
    /// `./data/fashion-mnist` by default.
    pub local_dir: Option<PathBuf>,
    /// `/usr/share/datasets/fashion-mnist` by default.
    pub system_dir: Option<PathBuf>,
    /// Download cache folder; `None` when no home folder is known.
    pub cache_dir: Option<PathBuf>,
    /// Whether to download when no folder has the files.
    pub download: bool,
    /// Base URL to download from.
    pub base_url: String,
    /// Files to download and their MD5 sums.
    pub files: Vec<RemoteFile>,
    /// Whether to show a progress bar while downloading.
    pub progress: bool,
}

impl LocateOptions {
    /// Options from the environment: `data_dir` as given, `$STAGEWISE_DATA`,
    /// `./data/fashion-mnist`, `/usr/share/datasets/fashion-mnist`, the XDG
    /// cache folder, downloading enabled with a progress bar from
    /// `$STAGEWISE_FASHION_MNIST_URL` or the official URL.
    pub fn from_env(data_dir: Option<PathBuf>) -> Self {
        let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
        Self {
            data_dir,
            env_dir: non_empty(ENV_DATA_DIR).map(PathBuf::from),
            local_dir: Some(PathBuf::from(LOCAL_DIR)),
            system_dir: Some(PathBuf::from(SYSTEM_DIR)),
            cache_dir: default_cache_dir(),
            download: true,
            base_url: std::env::var(ENV_FASHION_MNIST_URL)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| crate::download::FASHION_MNIST_URL.to_owned()),
            files: fashion_mnist_files(),
            progress: true,
        }
    }

    /// Options that search only `data_dir` and never download.
    pub fn only(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: Some(data_dir.into()),
            env_dir: None,
            local_dir: None,
            system_dir: None,
            cache_dir: None,
            download: false,
            base_url: crate::download::FASHION_MNIST_URL.to_owned(),
            files: fashion_mnist_files(),
            progress: false,
        }
    }

    /// The folders searched, in order, without the download step: only
    /// `data_dir` (and its `fashion-mnist` sub-folder) when it is set.
    pub fn candidates(&self) -> Vec<(PathBuf, Origin)> {
        let mut out = Vec::new();
        if let Some(dir) = &self.data_dir {
            // An explicit folder is the only one searched.
            return explicit_candidates(dir)
                .into_iter()
                .map(|d| (d, Origin::Explicit))
                .collect();
        }
        if let Some(dir) = &self.env_dir {
            out.extend(
                explicit_candidates(dir)
                    .into_iter()
                    .map(|d| (d, Origin::Env)),
            );
        }
        for (dir, origin) in [
            (&self.local_dir, Origin::Local),
            (&self.system_dir, Origin::System),
            (&self.cache_dir, Origin::Cache),
        ] {
            if let Some(dir) = dir {
                out.push((dir.clone(), origin));
            }
        }
        out
    }

    /// The first folder holding all four files, downloading into the cache
    /// folder if none does and `download` is set.
    pub fn locate(&self) -> Result<Located, DataError> {
        if let Some(dir) = &self.data_dir {
            // An explicit folder is the only one searched.
            return explicit_candidates(dir)
                .into_iter()
                .find(|d| FashionMnist::has_files(d))
                .map(|dir| Located {
                    dir,
                    origin: Origin::Explicit,
                })
                .ok_or_else(|| DataError::MissingFiles {
                    dataset: FashionMnist::NAME,
                    dir: dir.clone(),
                    missing: FashionMnist::missing_files(dir),
                });
        }
        let candidates = self.candidates();
        for (dir, origin) in &candidates {
            if FashionMnist::has_files(dir) {
                tracing::debug!(dir = %dir.display(), ?origin, "found Fashion-MNIST");
                return Ok(Located {
                    dir: dir.clone(),
                    origin: *origin,
                });
            }
        }
        let searched = || candidates.iter().map(|(d, _)| d.clone()).collect();
        match (&self.cache_dir, self.download) {
            (Some(cache), true) => {
                Downloader::new(self.base_url.clone())
                    .with_progress(self.progress)
                    .fetch_all(&self.files, cache)?;
                Ok(Located {
                    dir: cache.clone(),
                    origin: Origin::Downloaded,
                })
            }
            _ => Err(DataError::NotFound {
                dataset: FashionMnist::NAME,
                searched: searched(),
            }),
        }
    }

    /// [`locate`](Self::locate), then [`FashionMnist::load`].
    pub fn load(&self) -> Result<Splits, DataError> {
        let found = self.locate()?;
        FashionMnist::load(&found.dir)
    }
}

/// `$XDG_CACHE_HOME/stagewise/fashion-mnist`, else
/// `$HOME/.cache/stagewise/fashion-mnist`; `None` if neither is known.
pub fn default_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| std::env::home_dir().map(|h| h.join(".cache")))?;
    Some(cache_subdir(&base))
}

/// A folder named by the user, then its `fashion-mnist` sub-folder.
fn explicit_candidates(dir: &Path) -> [PathBuf; 2] {
    [dir.to_path_buf(), dir.join("fashion-mnist")]
}

fn cache_subdir(base: &Path) -> PathBuf {
    base.join("stagewise").join("fashion-mnist")
}
