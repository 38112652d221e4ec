//! Helpers shared by the command-line tests.

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
