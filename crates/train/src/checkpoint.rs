//! Training checkpoints: model parameters and buffers, optimizer state, plan position, as one
//! safetensors file written atomically (temp file, fsync, rename).
//!
//! Tensors: `params` (flat model parameters), `buffers` (flat non-trained state such as
//! BatchNorm running statistics) and `optim.<name>` (optimizer state buffers). The JSON metadata
//! entry `stagewise` holds [`CheckpointMeta`]: the position (epochs done, global step), the
//! optimizer's step count and scalars, the run's configuration and its [`RunIdentity`]. Data
//! order is a pure function of (seed, epoch), so the position is the whole random state.
//!
//! The entry `stagewise.crc32` is a CRC-32 of the metadata and of every tensor (its name, length
//! and bytes): a checkpoint whose bytes changed, or that holds a non-finite number, is refused as
//! corrupt when read.

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

/// The metadata entry holding [`CheckpointMeta`].
const META_KEY: &str = "stagewise";
/// The metadata entry holding the checksum ([`checksum`]).
const CHECKSUM_KEY: &str = "stagewise.crc32";

/// What a checkpoint belongs to: what must match between a checkpoint and the run that
/// resumes it (the run folder's own record of it, and its flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunIdentity {
    /// The architecture's name.
    pub model: String,
    /// Number of model parameters.
    pub parameters: u64,
    /// The optimizer's name.
    pub optimizer: String,
    /// CRC-32 (hex) of the plan.
    pub plan_digest: String,
    /// The dataset and its subsets, in words.
    pub dataset: String,
    /// The run's seed.
    pub seed: u64,
}

impl RunIdentity {
    /// The fields where `self` and `other` differ, as `field: self's vs other's`.
    pub fn differences(&self, other: &RunIdentity) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name} {a} vs {b}"));
            }
        };
        field("model", self.model.clone(), other.model.clone());
        field(
            "parameters",
            self.parameters.to_string(),
            other.parameters.to_string(),
        );
        field("optimizer", self.optimizer.clone(), other.optimizer.clone());
        field(
            "plan digest",
            self.plan_digest.clone(),
            other.plan_digest.clone(),
        );
        field("dataset", self.dataset.clone(), other.dataset.clone());
        field("seed", self.seed.to_string(), other.seed.to_string());
        out
    }
}

/// CRC-32 of `bytes`, as 8 hex digits.
pub fn digest(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// The checksum of a checkpoint: CRC-32 of its metadata JSON and of every tensor (name, length,
/// little-endian bytes) in name order.
fn checksum<'a>(meta: &str, tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by_key(|(name, _)| *name);
    let mut h = crc32fast::Hasher::new();
    h.update(meta.as_bytes());
    for (name, bytes) in tensors {
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    format!("{:08x}", h.finalize())
}

/// How far into the epoch after the completed ones a checkpoint was written (a run stopped
/// mid-epoch): what resuming there needs to go on exactly as if never stopped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialEpoch {
    /// Steps of the epoch done (at least 1, fewer than the epoch's).
    pub steps: u64,
    /// Sum of the training losses of those steps' batches.
    pub loss_sum: f64,
    /// Correct predictions on those batches.
    pub correct: u64,
    /// Images in those batches.
    pub seen: u64,
}

/// Everything in a checkpoint besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Epochs completed.
    pub epochs_done: u64,
    /// Progress into the next epoch, for a checkpoint written mid-epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
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
    /// What the checkpoint belongs to.
    pub identity: RunIdentity,
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
        let sum = checksum(
            &meta,
            owned.iter().map(|(n, b, _)| (n.as_str(), b.as_slice())),
        );
        let info = HashMap::from([
            (META_KEY.to_string(), meta),
            (CHECKSUM_KEY.to_string(), sum),
        ]);
        safetensors::serialize(views, Some(info)).map_err(|e| e.to_string())
    }

    /// The first non-finite number in the tensors, as `tensor[index] = value`.
    fn first_non_finite(&self) -> Option<String> {
        let named = [("params", &self.params), ("buffers", &self.buffers)];
        let optim = self.optimizer.buffers.iter().map(|(n, v)| (n.as_str(), v));
        named.into_iter().chain(optim).find_map(|(name, values)| {
            let i = values.iter().position(|v| !v.is_finite())?;
            Some(format!("{name}[{i}] = {}", values[i]))
        })
    }

    /// Writes the checkpoint to `dir/checkpoint.safetensors` atomically. A checkpoint holding a
    /// non-finite number is refused.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        if let Some(bad) = self.first_non_finite() {
            return Err(corrupt(&path, format!("refusing to write {bad}")));
        }
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

    /// Parses safetensors bytes written by [`Checkpoint::to_bytes`], verifying the checksum and
    /// that every number is finite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let entry = |key: &str| header.metadata().as_ref().and_then(|m| m.get(key));
        let meta_json = entry(META_KEY).ok_or("missing 'stagewise' metadata")?;
        let want = entry(CHECKSUM_KEY)
            .ok_or("no checksum ('stagewise.crc32'): not written by this version of stagewise")?;
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let found = checksum(
            meta_json,
            tensors.iter().map(|(name, view)| (name, view.data())),
        );
        if &found != want {
            return Err(format!(
                "checksum mismatch (stored {want}, computed {found}): the file was changed or \
                 damaged after it was written"
            ));
        }
        let meta: CheckpointMeta =
            serde_json::from_str(meta_json).map_err(|e| format!("metadata: {e}"))?;
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
        let ckpt = Self {
            params: read("params")?,
            buffers: read("buffers")?,
            optimizer,
            meta,
        };
        if let Some(bad) = ckpt.first_non_finite() {
            return Err(format!("{bad}: a checkpoint holds finite numbers only"));
        }
        if ckpt.params.len() as u64 != ckpt.meta.identity.parameters {
            return Err(format!(
                "{} parameters, but its identity says {}",
                ckpt.params.len(),
                ckpt.meta.identity.parameters
            ));
        }
        Ok(ckpt)
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
                partial: None,
                global_step: 90,
                seconds: 1.5,
                optimizer_step: 7,
                optimizer_scalars: vec![("w".into(), 1.5)],
                config: serde_json::json!({"seed": 1}),
                identity: RunIdentity {
                    model: "mlp".into(),
                    parameters: 3,
                    optimizer: "qhm".into(),
                    plan_digest: digest(b"plan"),
                    dataset: "synthetic".into(),
                    seed: 1,
                },
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

    #[test]
    fn any_flipped_bit_in_the_tensors_or_metadata_is_refused_as_a_checksum_mismatch() {
        let bytes = sample().to_bytes().unwrap();
        assert!(Checkpoint::from_bytes(&bytes).is_ok());
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        // Every bit of the tensor data, and the digits of the stored epoch in the metadata.
        let meta_digit = bytes
            .windows(14)
            .position(|w| w == br#"epochs_done\":"#)
            .expect("the epoch in the header")
            + 14;
        assert_eq!(bytes[meta_digit], b'2');
        let mut flips: Vec<(usize, u8)> = (header..bytes.len())
            .flat_map(|i| (0..8).map(move |bit| (i, 1u8 << bit)))
            .collect();
        // 2 becomes 3, 0 or 6: still valid metadata, a different position.
        flips.extend([1, 2, 4].map(|m| (meta_digit, m)));
        for &(i, mask) in &flips {
            let mut b = bytes.clone();
            b[i] ^= mask;
            let e = Checkpoint::from_bytes(&b).unwrap_err();
            assert!(e.contains("checksum mismatch"), "byte {i} ^ {mask}: {e}");
        }
        assert_eq!(flips.len(), (bytes.len() - header) * 8 + 3);
    }

    #[test]
    fn a_nan_is_refused_on_write_and_on_read_as_corrupt() {
        let mut c = sample();
        c.params[1] = f32::NAN;
        let dir = tempfile::tempdir().unwrap();
        let e = c.save(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("not a valid stagewise checkpoint") && e.contains("params[1] = NaN"),
            "{e}"
        );
        // Written past the check (to_bytes), as a damaged or foreign writer would.
        let e = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
        assert!(e.contains("params[1] = NaN"), "{e}");
        c.params[1] = 0.0;
        c.optimizer.buffers[0].1[2] = f32::INFINITY;
        let e = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
        assert!(e.contains("momentum[2] = inf"), "{e}");
    }

    #[test]
    fn a_checkpoint_without_a_checksum_is_refused() {
        let c = sample();
        let meta = serde_json::to_string(&c.meta).unwrap();
        let data = f32_bytes(&c.params);
        let views = vec![(
            "params".to_string(),
            TensorView::new(Dtype::F32, vec![3], &data).unwrap(),
        )];
        let bytes =
            safetensors::serialize(views, Some(HashMap::from([(META_KEY.into(), meta)]))).unwrap();
        let e = Checkpoint::from_bytes(&bytes).unwrap_err();
        assert!(e.contains("no checksum"), "{e}");
    }
}
