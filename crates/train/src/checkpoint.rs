//! Training checkpoints: model parameters and buffers, optimizer state, plan position, as one
//! safetensors file written atomically (temp file, fsync, rename).
//!
//! Tensors: `params` (flat model parameters), `buffers` (flat non-trained state such as
//! BatchNorm running statistics) and `optim.<name>` (optimizer state buffers). The JSON metadata
//! entry `stagewise` holds [`CheckpointMeta`]: the position (epochs done, global step), the
//! optimizer's step count and scalars, and the run's configuration. Data order is a pure function
//! of (seed, epoch), so the position is the whole random state.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use stagewise_core::optim::OptimizerState;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// File name of the checkpoint inside a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid checkpoint.
    #[error("{path}: not a valid stagewise checkpoint: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Everything in a checkpoint besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Epochs completed.
    pub epochs_done: u64,
    /// Optimizer steps taken over the whole run.
    pub global_step: u64,
    /// Wall time spent training so far, in seconds.
    pub seconds: f64,
    /// The optimizer's step count.
    pub optimizer_step: u64,
    /// The optimizer's scalar state.
    pub optimizer_scalars: Vec<(String, f64)>,
    /// The run configuration, as JSON (checked on resume).
    pub config: serde_json::Value,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Flat model parameters.
    pub params: Vec<f32>,
    /// Flat model buffers (BatchNorm running statistics), possibly empty.
    pub buffers: Vec<f32>,
    /// Optimizer state (buffers, step count, scalars).
    pub optimizer: OptimizerState<f32>,
    /// Position and configuration.
    pub meta: CheckpointMeta,
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Writes `bytes` to `path` atomically ([`stagewise_core::files::write_atomic`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    stagewise_core::files::write_atomic(path, bytes).map_err(io(path))
}

impl Checkpoint {
    /// Serializes the checkpoint to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut owned: Vec<(String, Vec<u8>, usize)> = vec![
            ("params".into(), f32_bytes(&self.params), self.params.len()),
            (
                "buffers".into(),
                f32_bytes(&self.buffers),
                self.buffers.len(),
            ),
        ];
        for (name, values) in &self.optimizer.buffers {
            owned.push((format!("optim.{name}"), f32_bytes(values), values.len()));
        }
        let views = owned
            .iter()
            .map(|(name, bytes, len)| {
                TensorView::new(Dtype::F32, vec![*len], bytes).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let meta = serde_json::to_string(&self.meta).map_err(|e| e.to_string())?;
        let info = HashMap::from([("stagewise".to_string(), meta)]);
        safetensors::serialize(views, Some(info)).map_err(|e| e.to_string())
    }

    /// Writes the checkpoint to `dir/checkpoint.safetensors` atomically.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = self.to_bytes().map_err(|e| corrupt(&path, e))?;
        write_atomically(&path, &bytes)?;
        Ok(path)
    }

    /// Reads `dir/checkpoint.safetensors`.
    pub fn load(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        Self::from_bytes(&bytes).map_err(|e| corrupt(&path, e))
    }

    /// Parses safetensors bytes written by [`Checkpoint::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let meta_json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("stagewise"))
            .ok_or("missing 'stagewise' metadata")?;
        let meta: CheckpointMeta =
            serde_json::from_str(meta_json).map_err(|e| format!("metadata: {e}"))?;
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let read = |name: &str| -> Result<Vec<f32>, String> {
            let view = tensors
                .tensor(name)
                .map_err(|e| format!("tensor '{name}': {e}"))?;
            if view.dtype() != Dtype::F32 {
                return Err(format!(
                    "tensor '{name}' is {:?}, expected F32",
                    view.dtype()
                ));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let mut names: Vec<String> = tensors
            .names()
            .into_iter()
            .filter_map(|n| n.strip_prefix("optim.").map(str::to_string))
            .collect();
        names.sort();
        let optimizer = OptimizerState {
            step: meta.optimizer_step,
            buffers: names
                .into_iter()
                .map(|n| read(&format!("optim.{n}")).map(|v| (n, v)))
                .collect::<Result<_, _>>()?,
            scalars: meta.optimizer_scalars.clone(),
        };
        Ok(Self {
            params: read("params")?,
            buffers: read("buffers")?,
            optimizer,
            meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            params: vec![1.0, -2.5, 3.25],
            buffers: vec![],
            optimizer: OptimizerState {
                step: 7,
                buffers: vec![("momentum".into(), vec![0.5, 0.25, -0.125])],
                scalars: vec![("w".into(), 1.5)],
            },
            meta: CheckpointMeta {
                epochs_done: 2,
                global_step: 90,
                seconds: 1.5,
                optimizer_step: 7,
                optimizer_scalars: vec![("w".into(), 1.5)],
                config: serde_json::json!({"seed": 1}),
            },
        }
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("sw-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = sample();
        c.save(&dir).unwrap();
        let back = Checkpoint::load(&dir).unwrap();
        assert_eq!(back.params, c.params);
        assert_eq!(back.optimizer, c.optimizer);
        assert_eq!(back.meta.global_step, 90);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let bytes = sample().to_bytes().unwrap();
        for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                Checkpoint::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[10] ^= 0xff;
        assert!(Checkpoint::from_bytes(&flipped).is_err());
    }
}
