//! Atomic checkpoints of a server shard: parameters, optimizer state, policy state, version.
//!
//! File layout (all little-endian):
//!
//! ```text
//! b"SWPSCK01" | u64 meta_len | meta (JSON) | arrays as f32, in meta order | u32 CRC-32 of all before
//! ```
//!
//! A checkpoint is written to `<path>.tmp`, flushed to disk, then renamed over `<path>` (and
//! the directory synced), so a crash at any moment leaves either the old or the new checkpoint,
//! never a torn one; the CRC catches damage after the fact.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stagewise_core::optim::OptimizerState;

use crate::error::CheckpointError;
use crate::shard::ShardRange;

const MAGIC: &[u8; 8] = b"SWPSCK01";

/// A shard's complete training state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Model id.
    pub model_id: String,
    /// Parameters of the whole model.
    pub total_params: usize,
    /// The shard's range.
    pub shard: ShardRange,
    /// Server version (updates applied).
    pub version: u64,
    /// Optimizer name ([`stagewise_core::optim::Optimizer::name`]).
    pub optimizer_name: String,
    /// The shard's parameters.
    pub params: Vec<f32>,
    /// Optimizer state.
    pub optimizer: OptimizerState<f32>,
    /// Policy state buffers (e.g. DC-ASGD's mean square).
    pub policy: Vec<(String, Vec<f32>)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    model_id: String,
    total_params: usize,
    shard: ShardRange,
    version: u64,
    optimizer_name: String,
    optimizer_step: u64,
    optimizer_scalars: Vec<(String, f64)>,
    /// Name and length of each array after the parameters: optimizer buffers, then policy.
    optimizer_buffers: Vec<(String, usize)>,
    policy_buffers: Vec<(String, usize)>,
}

struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_f32s(w: &mut impl Write, xs: &[f32]) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    for chunk in xs.chunks(buf.len() / 4) {
        for (b, x) in buf.chunks_exact_mut(4).zip(chunk) {
            b.copy_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf[..chunk.len() * 4])?;
    }
    Ok(())
}

/// The temporary file a checkpoint is written to before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

impl Checkpoint {
    /// Writes the checkpoint atomically to `path` (temp file, fsync, rename, directory fsync).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let meta = Meta {
            model_id: self.model_id.clone(),
            total_params: self.total_params,
            shard: self.shard,
            version: self.version,
            optimizer_name: self.optimizer_name.clone(),
            optimizer_step: self.optimizer.step,
            optimizer_scalars: self.optimizer.scalars.clone(),
            optimizer_buffers: self
                .optimizer
                .buffers
                .iter()
                .map(|(n, b)| (n.clone(), b.len()))
                .collect(),
            policy_buffers: self
                .policy
                .iter()
                .map(|(n, b)| (n.clone(), b.len()))
                .collect(),
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = temp_path(path);
        let file = File::create(&tmp).map_err(io)?;
        let mut w = CrcWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
        };
        let body = (|| -> std::io::Result<()> {
            w.write_all(MAGIC)?;
            w.write_all(&(meta.len() as u64).to_le_bytes())?;
            w.write_all(&meta)?;
            write_f32s(&mut w, &self.params)?;
            for (_, b) in self.optimizer.buffers.iter().chain(&self.policy) {
                write_f32s(&mut w, b)?;
            }
            let crc = w.crc.clone().finalize();
            w.inner.write_all(&crc.to_le_bytes())?;
            let file = w.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()
        })();
        if let Err(e) = body {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Reads and verifies a checkpoint.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::decode(&bytes).map_err(|reason| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MAGIC.len() + 12 || &bytes[..8] != MAGIC {
            return Err("not a stagewise-ps checkpoint (bad magic or too short)".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != want {
            return Err("CRC mismatch".into());
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&body[8..16]);
        let meta_len = usize::try_from(u64::from_le_bytes(len8)).map_err(|e| e.to_string())?;
        let meta_end = 16usize
            .checked_add(meta_len)
            .filter(|&e| e <= body.len())
            .ok_or("metadata length past the end")?;
        let meta: Meta = serde_json::from_slice(&body[16..meta_end]).map_err(|e| e.to_string())?;
        let mut rest = &body[meta_end..];
        let mut take = |n: usize| -> Result<Vec<f32>, String> {
            let nbytes = n
                .checked_mul(4)
                .filter(|&b| b <= rest.len())
                .ok_or("array past the end")?;
            let (head, tail) = rest.split_at(nbytes);
            rest = tail;
            Ok(crate::transport::codec::decode_f32s(head))
        };
        let params = take(meta.shard.len)?;
        let mut buffers = Vec::new();
        for (name, n) in &meta.optimizer_buffers {
            buffers.push((name.clone(), take(*n)?));
        }
        let mut policy = Vec::new();
        for (name, n) in &meta.policy_buffers {
            policy.push((name.clone(), take(*n)?));
        }
        if !rest.is_empty() {
            return Err(format!("{} unexpected trailing bytes", rest.len()));
        }
        Ok(Self {
            model_id: meta.model_id,
            total_params: meta.total_params,
            shard: meta.shard,
            version: meta.version,
            optimizer_name: meta.optimizer_name,
            params,
            optimizer: OptimizerState {
                step: meta.optimizer_step,
                buffers,
                scalars: meta.optimizer_scalars,
            },
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            model_id: "m".into(),
            total_params: 10,
            shard: ShardRange { start: 2, len: 3 },
            version: 42,
            optimizer_name: "qhm".into(),
            params: vec![1.0, -2.5, 3.25],
            optimizer: OptimizerState {
                step: 42,
                buffers: vec![("momentum".into(), vec![0.5, 0.25, -0.125])],
                scalars: vec![("w".into(), 0.5)],
            },
            policy: vec![("dc_mean_square".into(), vec![1.0, 2.0, 3.0])],
        }
    }

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ck.bin");
        let c = sample();
        c.save(&path).unwrap();
        assert!(!temp_path(&path).exists());
        assert_eq!(Checkpoint::load(&path).unwrap(), c);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Checkpoint::load(&path),
            Err(CheckpointError::Corrupt { .. })
        ));
        std::fs::write(&path, &bytes[..n / 2]).unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
