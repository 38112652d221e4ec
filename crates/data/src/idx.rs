//! The IDX file format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a big-endian header — a magic number `0x0000_08NN`, where
//! `0x08` means unsigned bytes and `NN` is the number of dimensions, then one
//! `u32` per dimension — followed by the data, row-major. Images files have
//! three dimensions `[n, rows, cols]` (magic `0x0000_0803`), labels files one
//! dimension `[n]` (magic `0x0000_0801`).
//!
//! The readers accept both raw and gzip files, telling them apart by the gzip
//! magic bytes `1f 8b`, and check everything: magic numbers, dimensions, that
//! the data is exactly as long as the header says, and the gzip checksum.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::dataset::Dataset;
use crate::error::DataError;

/// Magic number of an IDX file of `u8` with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The first two bytes of every gzip file.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Capacity reserved up front when the data size is only known from a
/// (possibly lying) header of a compressed file.
const MAX_RESERVE: usize = 64 << 20;

/// Images read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// `count * rows * cols` pixels, row-major.
    pub pixels: Vec<u8>,
}

/// Reads an IDX images file (magic `0x0000_0803`), raw or gzip.
pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    let mut src = Source::open(path)?;
    src.expect_magic(IMAGES_MAGIC, "images: unsigned bytes, 3 dimensions")?;
    let count = src.read_dim("image count")?;
    let rows = src.read_dim("row count")?;
    let cols = src.read_dim("column count")?;
    if count > 0 && (rows == 0 || cols == 0) {
        return Err(src.invalid(format!("images of {rows}x{cols} pixels")));
    }
    let len = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| {
            src.invalid(format!(
                "header dimensions {count}x{rows}x{cols} overflow the address space"
            ))
        })?;
    let pixels = src.read_body(len, || {
        format!("header announces {count} images of {rows}x{cols} pixels")
    })?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

/// Reads an IDX labels file (magic `0x0000_0801`), raw or gzip.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut src = Source::open(path)?;
    src.expect_magic(LABELS_MAGIC, "labels: unsigned bytes, 1 dimension")?;
    let count = src.read_dim("label count")?;
    src.read_body(count, || format!("header announces {count} labels"))
}

/// Reads a matching pair of images and labels files into a [`Dataset`],
/// checking that they hold the same number of items and that every label is
/// below `classes`.
///
/// ```no_run
/// use std::path::Path;
/// let dir = Path::new("/usr/share/datasets/fashion-mnist");
/// let test = stagewise_data::idx::read_pair(
///     &dir.join("t10k-images-idx3-ubyte.gz"),
///     &dir.join("t10k-labels-idx1-ubyte.gz"),
///     10,
/// )?;
/// assert_eq!(test.len(), 10_000);
/// # Ok::<(), stagewise_data::DataError>(())
/// ```
pub fn read_pair(
    images_path: &Path,
    labels_path: &Path,
    classes: usize,
) -> Result<Dataset, DataError> {
    let images = read_images(images_path)?;
    let labels = read_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(DataError::Invalid {
            path: labels_path.to_path_buf(),
            detail: format!("label {l} of item {i} is not below the class count {classes}"),
        });
    }
    if images.count == 0 {
        // A header may legally announce zero images of 0x0 pixels; give the
        // empty dataset a usable shape.
        return Dataset::new(
            Vec::new(),
            Vec::new(),
            images.rows.max(1),
            images.cols.max(1),
            classes,
        )
        .map_err(|e| DataError::Invalid {
            path: images_path.to_path_buf(),
            detail: e.to_string(),
        });
    }
    Dataset::new(images.pixels, labels, images.rows, images.cols, classes).map_err(|e| {
        DataError::Invalid {
            path: images_path.to_path_buf(),
            detail: e.to_string(),
        }
    })
}

/// Encodes images as a raw IDX file (for tests, fixtures and exports).
///
/// Fails if `pixels.len() != count * rows * cols` or a dimension does not fit
/// the format's `u32`.
pub fn encode_images(rows: usize, cols: usize, pixels: &[u8]) -> Result<Vec<u8>, DataError> {
    let per = rows * cols;
    if per == 0 || !pixels.len().is_multiple_of(per) {
        return Err(DataError::InvalidArgument(format!(
            "{} pixels do not make whole {rows}x{cols} images",
            pixels.len()
        )));
    }
    let count = pixels.len() / per;
    let mut out = Vec::with_capacity(16 + pixels.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for d in [count, rows, cols] {
        out.extend_from_slice(&dim_u32(d)?.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    Ok(out)
}

/// Encodes labels as a raw IDX file (for tests, fixtures and exports).
pub fn encode_labels(labels: &[u8]) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&dim_u32(labels.len())?.to_be_bytes());
    out.extend_from_slice(labels);
    Ok(out)
}

fn dim_u32(d: usize) -> Result<u32, DataError> {
    u32::try_from(d)
        .map_err(|_| DataError::InvalidArgument(format!("dimension {d} does not fit an IDX u32")))
}

/// An open IDX file, decompressing on the fly if it is gzip.
struct Source<'p> {
    path: &'p Path,
    reader: Box<dyn Read>,
    gzip: bool,
    /// Bytes of the uncompressed stream consumed so far.
    offset: u64,
    /// Size of the file on disk.
    file_len: u64,
}

impl<'p> Source<'p> {
    fn open(path: &'p Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut buffered = BufReader::with_capacity(1 << 16, file);
        let gzip = starts_with(&mut buffered, &GZIP_MAGIC).map_err(|e| DataError::io(path, e))?;
        let reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        Ok(Self {
            path,
            reader,
            gzip,
            offset: 0,
            file_len,
        })
    }

    fn read_error(&self, e: std::io::Error) -> DataError {
        if self.gzip {
            DataError::Gzip {
                path: self.path.to_path_buf(),
                source: e,
            }
        } else {
            DataError::io(self.path, e)
        }
    }

    fn invalid(&self, detail: String) -> DataError {
        DataError::Invalid {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    /// Reads up to `buf.len()` bytes, stopping early only at end of stream.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut got = 0;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e)),
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    fn read_u32(&mut self, what: &str) -> Result<u32, DataError> {
        let mut b = [0u8; 4];
        let got = self.fill(&mut b)?;
        if got < 4 {
            return Err(DataError::Truncated {
                path: self.path.to_path_buf(),
                detail: format!(
                    "the IDX header ends after {} bytes, before the {what}",
                    self.offset
                ),
            });
        }
        Ok(u32::from_be_bytes(b))
    }

    fn expect_magic(&mut self, expected: u32, kind: &'static str) -> Result<(), DataError> {
        let found = self.read_u32("magic number")?;
        if found != expected {
            return Err(DataError::BadMagic {
                path: self.path.to_path_buf(),
                found,
                expected,
                kind,
            });
        }
        Ok(())
    }

    fn read_dim(&mut self, what: &str) -> Result<usize, DataError> {
        let d = self.read_u32(what)?;
        usize::try_from(d).map_err(|_| self.invalid(format!("{what} {d} does not fit in memory")))
    }

    /// Reads exactly `len` bytes of data and checks that nothing follows.
    fn read_body(
        &mut self,
        len: usize,
        announced: impl Fn() -> String,
    ) -> Result<Vec<u8>, DataError> {
        let reserve = if self.gzip {
            len.min(MAX_RESERVE)
        } else {
            // A raw file cannot hold more than its size.
            len.min(usize::try_from(self.file_len).unwrap_or(usize::MAX))
        };
        let mut data = Vec::with_capacity(reserve);
        let got = {
            let mut limited = (&mut self.reader).take(len as u64);
            match limited.read_to_end(&mut data) {
                Ok(k) => k,
                Err(e) => return Err(self.read_error(e)),
            }
        };
        self.offset += got as u64;
        if got < len {
            return Err(DataError::Truncated {
                path: self.path.to_path_buf(),
                detail: format!(
                    "{} ({len} data bytes) but only {got} bytes follow the header",
                    announced()
                ),
            });
        }
        // Reading past the end also makes the gzip decoder check its CRC.
        let mut extra = [0u8; 1];
        if self.fill(&mut extra)? > 0 {
            return Err(self.invalid(format!(
                "unexpected data after the {len} data bytes: {}",
                announced()
            )));
        }
        Ok(data)
    }
}

/// Whether the buffered stream starts with `magic`, without consuming it.
fn starts_with<R: BufRead>(reader: &mut R, magic: &[u8]) -> std::io::Result<bool> {
    let buf = reader.fill_buf()?;
    Ok(buf.len() >= magic.len() && &buf[..magic.len()] == magic)
}
