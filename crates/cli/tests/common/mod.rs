//! Helpers shared by the command-line tests (each test binary uses some of them).
#![allow(dead_code)]

pub mod process;

/// The model and data of the tiny runs: an mlp on 600 synthetic training images, scored on 200
/// test images, seed 3.
pub const TINY_MLP: &[&str] = &[
    "--model",
    "mlp",
    "--dataset",
    "synthetic",
    "--train-subset",
    "600",
    "--test-subset",
    "200",
    "--seed",
    "3",
];

use std::path::{Path, PathBuf};

/// A fresh temporary folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/stagewise-NAME-PID`, emptied first.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stagewise-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
