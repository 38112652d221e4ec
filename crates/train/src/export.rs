//! The trained model as named tensors: `model.safetensors` with the names, shapes and layouts of
//! the equivalent PyTorch module's `state_dict` (`tools/make_export_fixture.py` defines those
//! modules), and one reader for every file that holds a model's parameters.
//!
//! # Names and layouts
//!
//! A tensor's name is its burn field path without the model variant (`fc1.weight`,
//! `blocks.3.shortcut.conv.weight`), with BatchNorm's `gamma`/`beta` named `weight`/`bias` as
//! in PyTorch. Linear weights are stored `[out, in]` (PyTorch's layout; burn keeps `[in, out]`),
//! convolution weights `[out, in, kh, kw]` (the same in both). Every BatchNorm also has
//! `running_mean`, `running_var` and an `int64` scalar `num_batches_tracked`, as
//! `BatchNorm2d.state_dict()` has. Tensors are `float32`.
//!
//! # Metadata
//!
//! The safetensors metadata holds `format = pt` and `stagewise.*` keys ([`ModelMeta`]): the
//! model kind, the run's kind, folder and configuration, the update and epoch, the test (and
//! validation) accuracy, and for `best.safetensors` the split it was chosen on.
//!
//! # Reading
//!
//! [`ModelParams::from_safetensors`] is strict, like `load_state_dict(strict=True)`: every
//! tensor the model needs must be present with its shape, and no other. The kind comes from the
//! metadata when there is one (a file written by PyTorch may have none: then from the names).
//! [`load_model_params`] reads this format, a training checkpoint
//! ([`crate::checkpoint`]) and a parameter-server checkpoint ([`stagewise_ps::checkpoint`]).

use crate::bridge::{self, BridgeError};
use crate::checkpoint::{Checkpoint, CheckpointMeta, CHECKPOINT_FILE};
use crate::model::{Model, ModelKind};
use crate::trainer::TrainConfig;
use burn::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use stagewise_core::record::EvalRow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub use stagewise_core::record::{best_model, BestModel, BEST_FILE, MODEL_FILE};

/// The value of `stagewise.batch_norm_statistics` in a file without them.
const MISSING: &str = "missing";

/// Metadata key prefix of the stagewise entries.
const META_PREFIX: &str = "stagewise.";

/// Why a model file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file could not be read as a model (with the file named).
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Box<ExportError>,
    },
    /// The bytes are not a safetensors file.
    #[error("not a safetensors file: {0}")]
    Format(String),
    /// The tensor names are not those of the model (strict loading).
    #[error(
        "tensor names do not match the {kind} model: missing [{}], unexpected [{}]",
        missing.join(", "),
        unexpected.join(", ")
    )]
    Names {
        /// The model the names were checked against.
        kind: ModelKind,
        /// Tensors the model needs that the file lacks.
        missing: Vec<String>,
        /// Tensors in the file that the model has no place for.
        unexpected: Vec<String>,
    },
    /// The tensor names fit none of the models and the metadata names none.
    #[error(
        "the tensors fit none of the models mlp, cnn, resnet (closest: {closest}, missing [{}], \
         unexpected [{}]) and no `stagewise.model` metadata names one",
        missing.join(", "),
        unexpected.join(", ")
    )]
    UnknownModel {
        /// The model whose names differ least.
        closest: ModelKind,
        /// Tensors that model needs that the file lacks.
        missing: Vec<String>,
        /// Tensors in the file that the model has no place for.
        unexpected: Vec<String>,
    },
    /// A tensor has another shape than the model's.
    #[error("tensor `{name}` has shape {found:?}, the {kind} model needs {expected:?}")]
    Shape {
        /// The model.
        kind: ModelKind,
        /// The tensor.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },
    /// A tensor has an element type this reader does not take.
    #[error("tensor `{name}` is {found}; allowed: {allowed}")]
    Dtype {
        /// The tensor.
        name: String,
        /// Its element type.
        found: String,
        /// What is accepted.
        allowed: &'static str,
    },
    /// A tensor holds NaN or an infinity.
    #[error("tensor `{name}` holds a non-finite value ({value}) at index {index}")]
    NonFinite {
        /// The tensor.
        name: String,
        /// Flat index of the value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The metadata is malformed.
    #[error("metadata `{key}`: {detail}")]
    Meta {
        /// The metadata key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint could not be read, or holds no complete model.
    #[error("{0}")]
    Checkpoint(String),
    /// The parameters do not fit the model.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

/// What a model file says about where the model comes from (all optional: a file written by
/// PyTorch has none of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelMeta {
    /// The run kind: `train`, `asgd`, `ps-serve`.
    pub run_kind: Option<String>,
    /// The run folder.
    pub run: Option<String>,
    /// The run's configuration, as JSON (its identity).
    pub config: Option<String>,
    /// The run's data configuration ([`crate::DataConfig`] as JSON), for runs whose
    /// configuration is not a [`TrainConfig`] (`asgd`, `ps serve`).
    pub data: Option<String>,
    /// The run's seed (it picks any test subset).
    pub seed: Option<u64>,
    /// Optimizer updates applied to the model.
    pub update: Option<u64>,
    /// Epochs trained.
    pub epoch: Option<f64>,
    /// Test accuracy of the model.
    pub test_accuracy: Option<f64>,
    /// Validation accuracy of the model, when the run held out a validation split.
    pub val_accuracy: Option<f64>,
    /// For a best model: the split it was chosen on (`validation` or `test`).
    pub chosen_on: Option<String>,
    /// The file held no BatchNorm statistics (a resnet read from a parameter-server
    /// checkpoint): the buffers are a fresh model's (mean 0, variance 1), which do not fit
    /// trained parameters. [`crate::inference::model_to_evaluate`] recomputes them.
    pub batch_norm_missing: bool,
}

impl ModelMeta {
    /// Whether the file says what data its run used (a `train` configuration, or an `asgd` or
    /// `ps serve` run's data); [`crate::inference::eval_data`] falls back to Fashion-MNIST's
    /// test set otherwise.
    pub fn records_data(&self) -> bool {
        self.data.is_some() || self.config.is_some()
    }

    fn entries(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut put = |key, value: Option<String>| {
            if let Some(v) = value {
                out.push((key, v));
            }
        };
        put("run_kind", self.run_kind.clone());
        put("run", self.run.clone());
        put("config", self.config.clone());
        put("data", self.data.clone());
        put("seed", self.seed.map(|v| v.to_string()));
        put("update", self.update.map(|v| v.to_string()));
        put("epoch", self.epoch.map(|v| v.to_string()));
        put("test_accuracy", self.test_accuracy.map(|v| v.to_string()));
        put("val_accuracy", self.val_accuracy.map(|v| v.to_string()));
        put("chosen_on", self.chosen_on.clone());
        put(
            "batch_norm_statistics",
            self.batch_norm_missing.then(|| MISSING.to_string()),
        );
        out
    }

    fn from_entries(map: &HashMap<String, String>) -> Result<Self, ExportError> {
        let get = |key: &str| map.get(&format!("{META_PREFIX}{key}")).cloned();
        fn parse<T: std::str::FromStr>(
            key: &str,
            v: Option<String>,
        ) -> Result<Option<T>, ExportError>
        where
            T::Err: std::fmt::Display,
        {
            v.map(|s| {
                s.parse::<T>().map_err(|e| ExportError::Meta {
                    key: format!("{META_PREFIX}{key}"),
                    detail: format!("`{s}`: {e}"),
                })
            })
            .transpose()
        }
        Ok(Self {
            run_kind: get("run_kind"),
            run: get("run"),
            config: get("config"),
            data: get("data"),
            seed: parse("seed", get("seed"))?,
            update: parse("update", get("update"))?,
            epoch: parse("epoch", get("epoch"))?,
            test_accuracy: parse("test_accuracy", get("test_accuracy"))?,
            val_accuracy: parse("val_accuracy", get("val_accuracy"))?,
            chosen_on: get("chosen_on"),
            batch_norm_missing: get("batch_norm_statistics").as_deref() == Some(MISSING),
        })
    }
}

/// A model's parameters and buffers in the flat order of [`crate::bridge`], with its kind:
/// what every model file holds, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    /// The architecture.
    pub kind: ModelKind,
    /// Trainable parameters ([`bridge::flatten_params`] order).
    pub params: Vec<f32>,
    /// BatchNorm running statistics ([`bridge::flatten_buffers`] order; empty without).
    pub buffers: Vec<f32>,
    /// Where the model comes from.
    pub meta: ModelMeta,
}

/// Where one named tensor of the export comes from.
#[derive(Debug, Clone)]
enum Source {
    /// A slice of the flat parameters; `transposed` for a linear weight (burn `[in, out]`).
    Param { offset: usize, transposed: bool },
    /// A slice of the flat buffers.
    Buffer { offset: usize },
    /// A BatchNorm's `num_batches_tracked` (int64 scalar).
    Counter,
}

/// One named tensor of the export, in PyTorch's shape.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    shape: Vec<usize>,
    source: Source,
}

/// The PyTorch name of a burn field path: the variant dropped, `gamma`/`beta` renamed.
fn torch_name(path: &str) -> String {
    let mut parts: Vec<&str> = path.split('.').skip(1).collect();
    if let Some(last) = parts.last_mut() {
        *last = match *last {
            "gamma" => "weight",
            "beta" => "bias",
            other => other,
        };
    }
    parts.join(".")
}

/// The named tensors of `kind`, from the layout of a model of that kind.
fn specs(kind: ModelKind) -> Vec<Spec> {
    let model = Model::new(kind, &crate::inference_device(), 0);
    let mut out = Vec::new();
    for slot in bridge::param_layout(&model) {
        let transposed = slot.shape.len() == 2 && slot.path.ends_with(".weight");
        let shape = if transposed {
            vec![slot.shape[1], slot.shape[0]]
        } else {
            slot.shape.clone()
        };
        out.push(Spec {
            name: torch_name(&slot.path),
            shape,
            source: Source::Param {
                offset: slot.offset,
                transposed,
            },
        });
    }
    for slot in bridge::buffer_layout(&model) {
        let name = torch_name(&slot.path);
        if let Some(prefix) = name.strip_suffix(".running_var") {
            out.push(Spec {
                name: format!("{prefix}.num_batches_tracked"),
                shape: vec![],
                source: Source::Counter,
            });
        }
        out.push(Spec {
            name,
            shape: slot.shape.clone(),
            source: Source::Buffer {
                offset: slot.offset,
            },
        });
    }
    out
}

/// The tensor names of a model of `kind` in the export (PyTorch's `state_dict().keys()`).
pub fn tensor_names(kind: ModelKind) -> Vec<String> {
    specs(kind).into_iter().map(|s| s.name).collect()
}

fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Differences between the names a model needs and those given: (missing, unexpected).
fn name_diff(kind: ModelKind, names: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let expected: BTreeSet<String> = tensor_names(kind).into_iter().collect();
    (
        expected.difference(names).cloned().collect(),
        names.difference(&expected).cloned().collect(),
    )
}

/// Reads a float tensor as `f32` (from `F32` or `F64`), refusing non-finite values.
fn read_floats(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, ExportError> {
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => view
            .data()
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b) as f32
            })
            .collect(),
        other => {
            return Err(ExportError::Dtype {
                name: name.into(),
                found: format!("{other:?}"),
                allowed: "F32 or F64",
            })
        }
    };
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ExportError::NonFinite {
            name: name.into(),
            index,
            value,
        });
    }
    Ok(values)
}

impl ModelParams {
    /// The parameters and buffers of `model` (BatchNorm statistics read as [`Module::valid`]
    /// sees them).
    ///
    /// [`Module::valid`]: burn::module::Module::valid
    pub fn from_model(model: &Model, meta: ModelMeta) -> Self {
        Self {
            kind: model.kind(),
            params: bridge::flatten_params(model),
            buffers: bridge::flatten_buffers(model),
            meta,
        }
    }

    /// A model of this kind on `device` holding these values.
    ///
    /// # Errors
    /// [`ExportError::Bridge`] when the vectors do not fit the kind.
    pub fn to_model(&self, device: &Device) -> Result<Model, ExportError> {
        let model = Model::new(self.kind, device, 0);
        let model = bridge::write_params(model, &self.params)?;
        Ok(bridge::write_buffers(model, &self.buffers)?)
    }

    /// Serializes to safetensors bytes with PyTorch names and layouts (see the [module
    /// documentation](self)).
    ///
    /// # Errors
    /// [`ExportError::Bridge`] when the vectors do not fit the kind.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ExportError> {
        let expected = self.kind.param_count();
        if self.params.len() != expected {
            return Err(BridgeError::ParamLength {
                expected,
                actual: self.params.len(),
            }
            .into());
        }
        let specs = specs(self.kind);
        let buffer_len: usize = specs
            .iter()
            .filter(|s| matches!(s.source, Source::Buffer { .. }))
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        if self.buffers.len() != buffer_len {
            return Err(BridgeError::BufferLength {
                expected: buffer_len,
                actual: self.buffers.len(),
            }
            .into());
        }
        let counter = i64::try_from(self.meta.update.unwrap_or(0)).unwrap_or(i64::MAX);
        let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = specs
            .into_iter()
            .map(|spec| {
                let len: usize = spec.shape.iter().product();
                let (dtype, bytes) = match spec.source {
                    Source::Param { offset, transposed } => {
                        let values = &self.params[offset..offset + len];
                        if transposed {
                            // burn [in, out] -> torch [out, in].
                            let (out_f, in_f) = (spec.shape[0], spec.shape[1]);
                            let mut t = vec![0.0f32; len];
                            transpose::transpose(values, &mut t, out_f, in_f);
                            (Dtype::F32, f32_le(&t))
                        } else {
                            (Dtype::F32, f32_le(values))
                        }
                    }
                    Source::Buffer { offset } => {
                        (Dtype::F32, f32_le(&self.buffers[offset..offset + len]))
                    }
                    Source::Counter => (Dtype::I64, counter.to_le_bytes().to_vec()),
                };
                (spec.name, dtype, spec.shape, bytes)
            })
            .collect();
        let views = owned
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ExportError::Format(e.to_string()))?;
        let mut info: HashMap<String, String> = HashMap::from([
            ("format".to_string(), "pt".to_string()),
            (format!("{META_PREFIX}model"), self.kind.name().to_string()),
        ]);
        for (key, value) in self.meta.entries() {
            info.insert(format!("{META_PREFIX}{key}"), value);
        }
        safetensors::serialize(views, Some(info)).map_err(|e| ExportError::Format(e.to_string()))
    }

    /// Parses a named-tensor file (written by stagewise or by PyTorch), strictly: the names
    /// and shapes must be exactly the model's.
    ///
    /// # Errors
    /// [`ExportError::Format`] for bytes that are not safetensors, [`ExportError::Names`],
    /// [`ExportError::UnknownModel`], [`ExportError::Shape`], [`ExportError::Dtype`],
    /// [`ExportError::NonFinite`] or [`ExportError::Meta`] for a file that is not a model.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, ExportError> {
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| ExportError::Format(e.to_string()))?;
        let info = header.metadata().clone().unwrap_or_default();
        let tensors =
            SafeTensors::deserialize(bytes).map_err(|e| ExportError::Format(e.to_string()))?;
        let names: BTreeSet<String> = tensors.names().into_iter().map(str::to_string).collect();
        let kind = match info.get(&format!("{META_PREFIX}model")) {
            Some(name) => name.parse::<ModelKind>().map_err(|e| ExportError::Meta {
                key: format!("{META_PREFIX}model"),
                detail: e.to_string(),
            })?,
            None => infer_kind(&names)?,
        };
        let (missing, unexpected) = name_diff(kind, &names);
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(ExportError::Names {
                kind,
                missing,
                unexpected,
            });
        }
        let meta = ModelMeta::from_entries(&info)?;
        let mut params = vec![0.0f32; kind.param_count()];
        let mut buffers = Vec::new();
        for spec in specs(kind) {
            let view = tensors
                .tensor(&spec.name)
                .map_err(|e| ExportError::Format(format!("tensor `{}`: {e}", spec.name)))?;
            if view.shape() != spec.shape.as_slice() {
                return Err(ExportError::Shape {
                    kind,
                    name: spec.name,
                    expected: spec.shape,
                    found: view.shape().to_vec(),
                });
            }
            match spec.source {
                Source::Counter => {
                    if !matches!(
                        view.dtype(),
                        Dtype::I64 | Dtype::I32 | Dtype::U64 | Dtype::U32
                    ) {
                        return Err(ExportError::Dtype {
                            name: spec.name,
                            found: format!("{:?}", view.dtype()),
                            allowed: "an integer type (I64)",
                        });
                    }
                }
                Source::Param { offset, transposed } => {
                    let values = read_floats(&spec.name, &view)?;
                    let dst = &mut params[offset..offset + values.len()];
                    if transposed {
                        // torch [out, in] -> burn [in, out].
                        let (out_f, in_f) = (spec.shape[0], spec.shape[1]);
                        transpose::transpose(&values, dst, in_f, out_f);
                    } else {
                        dst.copy_from_slice(&values);
                    }
                }
                Source::Buffer { offset } => {
                    let values = read_floats(&spec.name, &view)?;
                    if buffers.len() < offset + values.len() {
                        buffers.resize(offset + values.len(), 0.0);
                    }
                    buffers[offset..offset + values.len()].copy_from_slice(&values);
                }
            }
        }
        Ok(Self {
            kind,
            params,
            buffers,
            meta,
        })
    }

    /// Writes the model to `path` as a named-tensor file, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ExportError> {
        let bytes = self.to_safetensors()?;
        stagewise_core::files::write_atomic(path, &bytes).map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The kind whose names are exactly `names`, or the error naming the closest.
fn infer_kind(names: &BTreeSet<String>) -> Result<ModelKind, ExportError> {
    let mut closest: Option<(usize, ModelKind, Vec<String>, Vec<String>)> = None;
    for kind in ModelKind::ALL {
        let (missing, unexpected) = name_diff(kind, names);
        if missing.is_empty() && unexpected.is_empty() {
            return Ok(kind);
        }
        let distance = missing.len() + unexpected.len();
        if closest.as_ref().is_none_or(|(d, ..)| distance < *d) {
            closest = Some((distance, kind, missing, unexpected));
        }
    }
    let (_, closest, missing, unexpected) = closest.expect("there are model kinds");
    Err(ExportError::UnknownModel {
        closest,
        missing,
        unexpected,
    })
}

/// The model kind with `n` trainable parameters (the three kinds differ in size).
fn kind_with_params(n: usize) -> Option<ModelKind> {
    ModelKind::ALL.into_iter().find(|k| k.param_count() == n)
}

fn file_error(path: &Path) -> impl FnOnce(ExportError) -> ExportError + '_ {
    move |e| ExportError::File {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// Reads a model's parameters from any file stagewise writes, and from a named-tensor file
/// written by PyTorch:
///
/// - a run folder: its `model.safetensors`, else its `checkpoint.safetensors`;
/// - a named-tensor file ([`ModelParams::from_safetensors`]);
/// - a training checkpoint ([`crate::checkpoint`], the kind from its configuration);
/// - a parameter-server checkpoint of a single shard holding the whole model
///   ([`stagewise_ps::checkpoint`], CRC-checked; the kind from its model id, else from its
///   parameter count). It carries no BatchNorm statistics: a resnet gets fresh ones (mean 0,
///   variance 1), as the server's own evaluator would before recomputing them.
///
/// # Errors
/// [`ExportError`] naming the file and what is wrong.
pub fn load_model_params(path: &Path) -> Result<ModelParams, ExportError> {
    if path.is_dir() {
        let model = path.join(MODEL_FILE);
        let ckpt = path.join(CHECKPOINT_FILE);
        let file = if model.is_file() {
            model
        } else if ckpt.is_file() {
            ckpt
        } else {
            return Err(ExportError::Checkpoint(format!(
                "{}: the folder holds neither {MODEL_FILE} nor {CHECKPOINT_FILE}",
                path.display()
            )));
        };
        return load_model_params(&file);
    }
    let bytes = std::fs::read(path).map_err(|source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let header = match SafeTensors::read_metadata(&bytes) {
        Ok((_, header)) => header,
        Err(not_safetensors) => {
            return from_ps_checkpoint(path).map_err(|ps| {
                file_error(path)(ExportError::Format(format!(
                    "{not_safetensors}; nor a parameter-server checkpoint: {ps}"
                )))
            })
        }
    };
    let is_training_checkpoint = header
        .metadata()
        .as_ref()
        .is_some_and(|m| m.contains_key("stagewise"));
    if is_training_checkpoint {
        from_training_checkpoint(&bytes).map_err(file_error(path))
    } else {
        ModelParams::from_safetensors(&bytes).map_err(file_error(path))
    }
}

fn from_training_checkpoint(bytes: &[u8]) -> Result<ModelParams, ExportError> {
    let ckpt = Checkpoint::from_bytes(bytes).map_err(ExportError::Checkpoint)?;
    let CheckpointMeta {
        epochs_done,
        global_step,
        config,
        ..
    } = &ckpt.meta;
    let train: TrainConfig = serde_json::from_value(config.clone()).map_err(|e| {
        ExportError::Checkpoint(format!(
            "the checkpoint's configuration does not parse: {e}"
        ))
    })?;
    let params = ModelParams {
        kind: train.model,
        params: ckpt.params,
        buffers: ckpt.buffers,
        meta: ModelMeta {
            run_kind: Some("train".into()),
            config: Some(config.to_string()),
            update: Some(*global_step),
            epoch: Some(*epochs_done as f64),
            ..ModelMeta::default()
        },
    };
    check_lengths(&params)?;
    Ok(params)
}

fn from_ps_checkpoint(path: &Path) -> Result<ModelParams, ExportError> {
    let ckpt = stagewise_ps::checkpoint::Checkpoint::load(path)
        .map_err(|e| ExportError::Checkpoint(e.to_string()))?;
    let in_file = |detail: String| ExportError::Checkpoint(format!("{}: {detail}", path.display()));
    if ckpt.params.len() != ckpt.total_params {
        return Err(in_file(format!(
            "a shard of {} of the model's {} parameters; a model can be read only from a \
             single-shard server's checkpoint",
            ckpt.params.len(),
            ckpt.total_params
        )));
    }
    let kind = ckpt
        .model_id
        .parse::<ModelKind>()
        .ok()
        .filter(|k| k.param_count() == ckpt.total_params)
        .or_else(|| kind_with_params(ckpt.total_params))
        .ok_or_else(|| {
            in_file(format!(
                "model id `{}` with {} parameters is none of mlp ({}), cnn ({}), resnet ({})",
                ckpt.model_id,
                ckpt.total_params,
                ModelKind::Mlp.param_count(),
                ModelKind::Cnn.param_count(),
                ModelKind::ResNet.param_count()
            ))
        })?;
    let fresh = Model::new(kind, &crate::inference_device(), 0);
    Ok(ModelParams {
        kind,
        params: ckpt.params,
        buffers: bridge::flatten_buffers(&fresh),
        meta: ModelMeta {
            run_kind: Some("ps-serve".into()),
            update: Some(ckpt.version),
            batch_norm_missing: bridge::buffer_count(&fresh) > 0,
            ..ModelMeta::default()
        },
    })
}

fn check_lengths(p: &ModelParams) -> Result<(), ExportError> {
    let model = Model::new(p.kind, &crate::inference_device(), 0);
    let (np, nb) = (bridge::param_count(&model), bridge::buffer_count(&model));
    if p.params.len() != np {
        return Err(BridgeError::ParamLength {
            expected: np,
            actual: p.params.len(),
        }
        .into());
    }
    if p.buffers.len() != nb {
        return Err(BridgeError::BufferLength {
            expected: nb,
            actual: p.buffers.len(),
        }
        .into());
    }
    Ok(())
}

/// After an evaluation of a run: writes `dir/model.safetensors` (`model`, the latest) and,
/// when the latest of `evals` is the best ([`best_model`]), `dir/best.safetensors`. `meta`
/// describes the run; the evaluation's update, epoch and accuracies are filled in from the
/// latest row.
///
/// # Errors
/// [`ExportError::Io`] when a file cannot be written.
pub fn save_after_eval(
    dir: &Path,
    model: &Model,
    evals: &[EvalRow],
    meta: ModelMeta,
) -> Result<(), ExportError> {
    let Some(last) = evals.last() else {
        return Ok(());
    };
    let mut params = ModelParams::from_model(
        model,
        ModelMeta {
            update: Some(last.update),
            epoch: last.epoch,
            test_accuracy: last.accuracy,
            val_accuracy: last.val_accuracy,
            ..meta
        },
    );
    let best = best_model(evals)
        .filter(|(_, row)| std::ptr::eq(*row, last))
        .map(|(best, _)| best.chosen_on);
    params.meta.chosen_on = best;
    save_model_files(dir, &params)
}

/// Writes `params` to `dir/model.safetensors`, and to `dir/best.safetensors` too when
/// `params.meta.chosen_on` is set (the model is the best so far).
///
/// # Errors
/// [`ExportError::Io`] when a file cannot be written.
pub fn save_model_files(dir: &Path, params: &ModelParams) -> Result<(), ExportError> {
    let latest = ModelParams {
        meta: ModelMeta {
            chosen_on: None,
            ..params.meta.clone()
        },
        ..params.clone()
    };
    latest.save(&dir.join(MODEL_FILE))?;
    if params.meta.chosen_on.is_some() {
        params.save(&dir.join(BEST_FILE))?;
    }
    Ok(())
}

impl ModelMeta {
    /// The metadata of a `train` run in `dir` with `config` (its identity).
    pub fn of_run(run_kind: &str, dir: &Path, config: &impl serde::Serialize) -> Self {
        Self {
            run_kind: Some(run_kind.into()),
            run: Some(dir.display().to_string()),
            config: serde_json::to_string(config).ok(),
            ..Self::default()
        }
    }
}

/// A training model (on [`crate::training_device`]) from `init`, which must hold a model of
/// `kind` (`--init-from`).
///
/// # Errors
/// [`TrainError::Config`] naming both kinds when they differ.
pub fn init_model(init: &ModelParams, kind: ModelKind) -> Result<Model, crate::TrainError> {
    check_kind(init, kind)?;
    init.to_model(&crate::training_device())
        .map_err(|e| crate::TrainError::Config(format!("init_from: {e}")))
}

/// The flat parameters of the model of `kind` in `path` ([`load_model_params`]), to start a
/// parameter server from (`ps serve --init-from`).
///
/// # Errors
/// [`TrainError::Config`](crate::TrainError::Config) when the file cannot be read or holds
/// another kind of model.
pub fn init_params(path: &Path, kind: ModelKind) -> Result<Vec<f32>, crate::TrainError> {
    let init = load_model_params(path)
        .map_err(|e| crate::TrainError::Config(format!("init_from: {e}")))?;
    check_kind(&init, kind)?;
    Ok(init.params)
}

fn check_kind(init: &ModelParams, kind: ModelKind) -> Result<(), crate::TrainError> {
    if init.kind != kind {
        return Err(crate::TrainError::Config(format!(
            "init_from holds a {} model but the run trains a {kind}; use model = {}",
            init.kind, init.kind
        )));
    }
    Ok(())
}
