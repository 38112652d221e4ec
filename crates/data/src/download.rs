//! Downloading dataset files over HTTP with MD5 verification.
//!
//! Each file is streamed into a temporary file in the destination folder
//! while its MD5 sum is computed; only when the sum matches the published
//! one is the temporary file renamed to its final name, so a final name
//! never holds a partial or corrupt download.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use crate::error::DataError;

/// Where Fashion-MNIST is published.
pub const FASHION_MNIST_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// Environment variable that overrides [`FASHION_MNIST_URL`] (e.g. a mirror,
/// or a loopback server in tests).
pub const ENV_FASHION_MNIST_URL: &str = "STAGEWISE_FASHION_MNIST_URL";

/// A file to download and the MD5 sum it must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name, appended to the base URL and used as the local name.
    pub name: String,
    /// Expected MD5 sum of the bytes served, as hex (either case).
    pub md5: String,
}

impl RemoteFile {
    /// A file entry.
    pub fn new(name: impl Into<String>, md5: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            md5: md5.into(),
        }
    }
}

/// The four gzip files of Fashion-MNIST with the MD5 sums published in the
/// Fashion-MNIST README.
///
/// These are sums of the files served at [`FASHION_MNIST_URL`]. The Debian
/// package `dataset-fashion-mnist` ships recompressed `.gz` files with the
/// same content but different sums, which is why files found locally are
/// checked for structure rather than against this table.
pub fn fashion_mnist_files() -> Vec<RemoteFile> {
    vec![
        RemoteFile::new(
            "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        RemoteFile::new(
            "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        RemoteFile::new(
            "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
        ),
        RemoteFile::new(
            "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ]
}

/// Downloads files from one base URL into a folder, verifying MD5 sums.
///
/// ```no_run
/// use stagewise_data::download::{fashion_mnist_files, Downloader, FASHION_MNIST_URL};
///
/// let dl = Downloader::new(FASHION_MNIST_URL).with_progress(true);
/// dl.fetch_all(&fashion_mnist_files(), std::path::Path::new("/tmp/fmnist"))?;
/// # Ok::<(), stagewise_data::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Downloader {
    base_url: String,
    progress: bool,
    agent: ureq::Agent,
}

impl Downloader {
    /// A downloader for files under `base_url` (with or without trailing
    /// slash), without progress bar, with a 30 s connect timeout and a 60 s
    /// timeout on each read.
    pub fn new(base_url: impl Into<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("stagewise-data/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            base_url: base_url.into(),
            progress: false,
            agent: config.into(),
        }
    }

    /// Shows (or not) an indicatif progress bar on stderr for each file. The
    /// bar is drawn only when stderr is a terminal.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL of `name` under the base URL.
    pub fn url_of(&self, name: &str) -> String {
        if self.base_url.ends_with('/') {
            format!("{}{name}", self.base_url)
        } else {
            format!("{}/{name}", self.base_url)
        }
    }

    /// Makes sure every file is in `dest` with its expected MD5 sum,
    /// downloading those that are absent or wrong. Creates `dest` if needed.
    pub fn fetch_all(&self, files: &[RemoteFile], dest: &Path) -> Result<(), DataError> {
        for file in files {
            self.fetch(file, dest)?;
        }
        Ok(())
    }

    /// Makes sure `dest/<file.name>` exists with the expected MD5 sum,
    /// downloading it if it is absent or wrong, and returns its path.
    pub fn fetch(&self, file: &RemoteFile, dest: &Path) -> Result<PathBuf, DataError> {
        let target = dest.join(&file.name);
        if target.is_file() {
            let actual = md5_file(&target)?;
            if actual.eq_ignore_ascii_case(&file.md5) {
                tracing::debug!(path = %target.display(), "already downloaded");
                return Ok(target);
            }
            tracing::warn!(
                path = %target.display(),
                expected = %file.md5,
                actual = %actual,
                "cached file has the wrong MD5 sum; downloading it again"
            );
        }
        fs::create_dir_all(dest).map_err(|e| DataError::io(dest, e))?;
        self.download(file, dest, &target)?;
        Ok(target)
    }

    fn download(&self, file: &RemoteFile, dest: &Path, target: &Path) -> Result<(), DataError> {
        let url = self.url_of(&file.name);
        tracing::info!(%url, dest = %target.display(), "downloading");
        let fail = |detail: String| DataError::Download {
            url: url.clone(),
            detail,
        };
        let mut response = self.agent.get(&url).call().map_err(|e| match e {
            ureq::Error::StatusCode(code) => fail(format!("HTTP status {code}")),
            other => fail(other.to_string()),
        })?;
        let body = response.body_mut();
        let bar = self.progress_bar(&file.name, body.content_length());
        let mut reader = body.as_reader();

        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file.name))
            .suffix(".part")
            .tempfile_in(dest)
            .map_err(|e| DataError::io(dest, e))?;
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    return Err(fail(e.to_string()));
                }
            };
            hasher.update(&buf[..k]);
            temp.write_all(&buf[..k])
                .map_err(|e| DataError::io(temp.path(), e))?;
            bar.inc(k as u64);
        }
        bar.finish_and_clear();

        let actual = to_hex(&hasher.finalize());
        if !actual.eq_ignore_ascii_case(&file.md5) {
            // Dropping `temp` deletes the bad download.
            return Err(DataError::Checksum {
                path: target.to_path_buf(),
                expected: file.md5.to_ascii_lowercase(),
                actual,
            });
        }
        temp.as_file()
            .sync_all()
            .map_err(|e| DataError::io(temp.path(), e))?;
        temp.persist(target)
            .map_err(|e| DataError::io(target, e.error))?;
        Ok(())
    }

    fn progress_bar(&self, name: &str, len: Option<u64>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let (bar, template) = match len {
            Some(len) => (
                ProgressBar::new(len),
                "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ),
            None => (
                ProgressBar::no_length(),
                "{msg:28} {spinner} {bytes} {bytes_per_sec}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.with_style(style).with_message(name.to_owned())
    }
}

/// The MD5 sum of a file, as lower-case hex.
pub fn md5_file(path: &Path) -> Result<String, DataError> {
    let mut file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Md5::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| DataError::io(path, e))?;
    Ok(to_hex(&hasher.finalize()))
}

/// The MD5 sum of bytes, as lower-case hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    to_hex(&Md5::digest(bytes))
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
