//! Using a trained model: logits and class probabilities of images, and an evaluation with a
//! per-class confusion matrix (what `stagewise predict` and `stagewise eval` show).
//!
//! Images are 28×28 grayscale bytes, normalized as in training
//! ([`DataConfig::normalization`](crate::DataConfig::normalization)). They come from an IDX file
//! (the Fashion-MNIST format) or from PNG files ([`read_images`]).

use crate::model::{Classifier, Model, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};
use crate::trainer::{loss_and_correct, TrainError};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use stagewise_data::{Dataset, Normalization};
use std::path::{Path, PathBuf};

/// Images forwarded at once.
const BATCH: usize = 500;

/// Why images could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is neither a valid IDX image file nor a valid PNG.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No image was given.
    #[error("no images given; expected an IDX image file or PNG files")]
    None,
}

/// Images read from files: `count` images of 28×28 bytes, row-major, with a label per image
/// (its source: the file, and the index inside an IDX file).
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// Pixel bytes, `count · 784`.
    pub pixels: Vec<u8>,
    /// Where each image comes from (`file.png`, `t10k-images-idx3-ubyte.gz#17`).
    pub sources: Vec<String>,
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// Reads images from `paths`: each an IDX image file (`.gz` or not; every image in it) or a
/// 28×28 PNG (grayscale, or RGB/RGBA reduced to luminance; 8 or 16 bits).
///
/// # Errors
/// [`ImageError`] naming the file: unreadable, not IDX or PNG, or not 28×28.
pub fn read_images(paths: &[PathBuf]) -> Result<Images, ImageError> {
    if paths.is_empty() {
        return Err(ImageError::None);
    }
    let mut images = Images {
        pixels: Vec::new(),
        sources: Vec::new(),
    };
    for path in paths {
        let is_png = std::fs::File::open(path)
            .and_then(|mut f| {
                let mut magic = [0u8; 8];
                std::io::Read::read(&mut f, &mut magic)
                    .map(|n| magic[..n] == PNG_MAGIC[..n] && n == 8)
            })
            .map_err(|source| ImageError::Io {
                path: path.clone(),
                source,
            })?;
        if is_png {
            images.pixels.extend(read_png(path)?);
            images.sources.push(path.display().to_string());
        } else {
            let idx = stagewise_data::idx::read_images(path).map_err(|e| ImageError::Invalid {
                path: path.clone(),
                detail: format!("neither a PNG nor an IDX image file: {e}"),
            })?;
            if idx.rows != IMAGE_SIDE || idx.cols != IMAGE_SIDE {
                return Err(ImageError::Invalid {
                    path: path.clone(),
                    detail: format!(
                        "images are {}×{}; the models take {IMAGE_SIDE}×{IMAGE_SIDE}",
                        idx.rows, idx.cols
                    ),
                });
            }
            let n = idx.pixels.len() / IMAGE_PIXELS;
            images.pixels.extend_from_slice(&idx.pixels);
            images
                .sources
                .extend((0..n).map(|i| format!("{}#{i}", path.display())));
        }
    }
    Ok(images)
}

const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

fn read_png(path: &Path) -> Result<Vec<u8>, ImageError> {
    let invalid = |detail: String| ImageError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    // Palette and low bit depths expanded to 8 bits; 16 bits stripped to 8.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| invalid(format!("not a valid PNG: {e}")))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width as usize != IMAGE_SIDE || height as usize != IMAGE_SIDE {
        return Err(invalid(format!(
            "the image is {width}×{height}; the models take {IMAGE_SIDE}×{IMAGE_SIDE}"
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| invalid("the image is too large".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| invalid(format!("not a valid PNG: {e}")))?;
    let data = &buf[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    let luminance = |px: &[u8]| -> u8 {
        match px.len() {
            1 | 2 => px[0],
            _ => {
                let y =
                    0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2]);
                y.round().clamp(0.0, 255.0) as u8
            }
        }
    };
    let row_bytes = frame.line_size;
    let mut pixels = Vec::with_capacity(IMAGE_PIXELS);
    for row in data.chunks_exact(row_bytes).take(IMAGE_SIDE) {
        pixels.extend(
            row[..IMAGE_SIDE * channels]
                .chunks_exact(channels)
                .map(luminance),
        );
    }
    if pixels.len() != IMAGE_PIXELS {
        return Err(invalid("truncated image data".into()));
    }
    Ok(pixels)
}

/// The logits `[n, 10]` (row-major) of `n` images of 784 bytes, normalized with
/// `normalization`, in inference mode (BatchNorm on running statistics).
pub fn logits(model: &Model, pixels: &[u8], normalization: Normalization) -> Vec<f32> {
    let device = crate::inference_device();
    let model = model.valid();
    let table = normalization.table();
    let mut out = Vec::with_capacity(pixels.len() / IMAGE_PIXELS * NUM_CLASSES);
    for chunk in pixels.chunks(BATCH * IMAGE_PIXELS) {
        let n = chunk.len() / IMAGE_PIXELS;
        if n == 0 {
            break;
        }
        let values: Vec<f32> = chunk[..n * IMAGE_PIXELS]
            .iter()
            .map(|&p| table[p as usize])
            .collect();
        let images: Tensor<4> = Tensor::from_data(
            TensorData::new(values, [n, 1, IMAGE_SIDE, IMAGE_SIDE]),
            &device,
        );
        let batch = model.forward(images).into_data_as::<f32>();
        out.extend_from_slice(batch.as_slice::<f32>().unwrap_or_default());
    }
    out
}

/// The softmax of one row of logits.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = row.iter().map(|&z| f64::from(z - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| (e / sum) as f32).collect()
}

/// The predicted class (the first of the largest logits).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &z)| {
            if z > best.1 {
                (i, z)
            } else {
                best
            }
        })
        .0
}

/// One image's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The predicted class.
    pub class: usize,
    /// The 10 class probabilities (softmax of the logits).
    pub probabilities: Vec<f32>,
}

/// The predictions of `n` images of 784 bytes.
pub fn predict(model: &Model, pixels: &[u8], normalization: Normalization) -> Vec<Prediction> {
    logits(model, pixels, normalization)
        .chunks_exact(NUM_CLASSES)
        .map(|row| Prediction {
            class: argmax(row),
            probabilities: softmax(row),
        })
        .collect()
}

/// A model's score on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Images evaluated.
    pub examples: usize,
    /// Mean cross-entropy loss.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// `confusion[true][predicted]`: images of class `true` predicted as `predicted`.
    pub confusion: Vec<Vec<u64>>,
}

impl Evaluation {
    /// Per-class recall: the fraction of each true class predicted correctly (`None` for a
    /// class with no images).
    pub fn recall(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| row[c] as f64 / total as f64)
            })
            .collect()
    }
}

/// Loss, accuracy and confusion matrix of `model` on `data`.
///
/// # Errors
/// [`TrainError::Config`] for an empty set or images that are not 28×28.
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    normalization: Normalization,
) -> Result<Evaluation, TrainError> {
    if data.is_empty() {
        return Err(TrainError::Config("the evaluation set is empty".into()));
    }
    if data.image_len() != IMAGE_PIXELS {
        return Err(TrainError::Config(format!(
            "images of {} pixels; the models take {IMAGE_SIDE}×{IMAGE_SIDE}",
            data.image_len()
        )));
    }
    let logits = logits(model, data.images(), normalization);
    let labels: Vec<i64> = data.labels().iter().map(|&l| i64::from(l)).collect();
    let (loss, correct) = loss_and_correct(&logits, &labels);
    let mut confusion = vec![vec![0u64; NUM_CLASSES]; NUM_CLASSES];
    for (row, &label) in logits.chunks_exact(NUM_CLASSES).zip(data.labels()) {
        if let Some(r) = confusion.get_mut(label as usize) {
            r[argmax(row)] += 1;
        }
    }
    let n = data.len();
    Ok(Evaluation {
        examples: n,
        loss: loss / n as f64,
        accuracy: correct as f64 / n as f64,
        confusion,
    })
}

/// Batch size of the BatchNorm recomputation of [`model_to_evaluate`].
pub const BATCH_NORM_RECOMPUTE_BATCH: usize = 128;

/// The model of `params`, ready to evaluate, and whether its BatchNorm statistics were
/// recomputed: a file's own statistics are used as they are; a file without them
/// ([`ModelMeta::batch_norm_missing`](crate::export::ModelMeta::batch_norm_missing): a resnet
/// from a parameter-server checkpoint) gets them recomputed at its parameters from
/// [`BATCH_NORM_RECOMPUTE_BATCHES`](crate::trainer::BATCH_NORM_RECOMPUTE_BATCHES) batches of
/// [`BATCH_NORM_RECOMPUTE_BATCH`] images of `train` (no augmentation, drawn from `seed`), as the
/// server's own evaluator does.
///
/// # Errors
/// [`TrainError`] when the values do not fit the kind or `train` cannot be batched.
pub fn model_to_evaluate(
    params: &crate::export::ModelParams,
    train: &Dataset,
    data: &crate::DataConfig,
    seed: u64,
) -> Result<(Model, bool), TrainError> {
    let fit = |e: crate::export::ExportError| TrainError::Config(e.to_string());
    if !params.meta.batch_norm_missing {
        return Ok((
            params.to_model(&crate::inference_device()).map_err(fit)?,
            false,
        ));
    }
    let model = params.to_model(&crate::training_device()).map_err(fit)?;
    if crate::bridge::buffer_count(&model) == 0 {
        return Ok((model, false));
    }
    if train.is_empty() {
        return Err(TrainError::Config(
            "the model has no BatchNorm statistics and there are no training images to \
             recompute them from"
                .into(),
        ));
    }
    crate::trainer::recompute_batch_norm(&model, train, BATCH_NORM_RECOMPUTE_BATCH, data, seed, 0)?;
    Ok((model, true))
}

/// What to evaluate a model on instead of its run's own data (`stagewise eval`'s options);
/// each `None` keeps the run's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalDataChoice {
    /// The dataset.
    pub dataset: Option<crate::data::DatasetKind>,
    /// The Fashion-MNIST folder.
    pub data_dir: Option<PathBuf>,
    /// A stratified subset of this many test images.
    pub test_subset: Option<usize>,
    /// The seed that picks the subset.
    pub seed: Option<u64>,
}

/// The data to evaluate a model on and the seed that picks any test subset: the run's own
/// (from `meta`'s data and seed, else its `train` configuration), Fashion-MNIST's whole test
/// set when `meta` has neither (a file written by PyTorch, a parameter-server checkpoint);
/// then what `choice` sets replaces the run's.
///
/// ```
/// use stagewise_train::data::DatasetKind;
/// use stagewise_train::export::ModelMeta;
/// use stagewise_train::inference::{eval_data, EvalDataChoice};
/// let choice = EvalDataChoice { dataset: Some(DatasetKind::Synthetic), test_subset: Some(50),
///                               ..EvalDataChoice::default() };
/// let (data, seed) = eval_data(&ModelMeta::default(), &choice);
/// assert_eq!((data.dataset, data.test_subset, seed), (DatasetKind::Synthetic, Some(50), 0));
/// ```
pub fn eval_data(
    meta: &crate::export::ModelMeta,
    choice: &EvalDataChoice,
) -> (crate::DataConfig, u64) {
    let from_data = meta
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str::<crate::DataConfig>(d).ok())
        .map(|data| (data, meta.seed.unwrap_or(0)));
    let from_run = || {
        meta.config
            .as_deref()
            .and_then(|c| serde_json::from_str::<crate::TrainConfig>(c).ok())
            .map(|c| (c.data, c.seed))
    };
    let (mut data, mut seed) = from_data
        .or_else(from_run)
        .unwrap_or_else(|| (crate::DataConfig::default(), 0));
    if let Some(dataset) = choice.dataset {
        data.dataset = dataset;
    }
    if choice.data_dir.is_some() {
        data.data_dir.clone_from(&choice.data_dir);
    }
    if choice.test_subset.is_some() {
        data.test_subset = choice.test_subset;
    }
    if let Some(s) = choice.seed {
        seed = s;
    }
    (data, seed)
}
