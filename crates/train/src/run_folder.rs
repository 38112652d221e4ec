//! Run folders are never overwritten by accident: a new run refuses a folder that already
//! holds one, unless the caller asks to replace it.

use crate::checkpoint::CHECKPOINT_FILE;
use crate::export::{BEST_FILE, MODEL_FILE};
use crate::trainer::TrainError;
use stagewise_core::record::{EVAL_FILE, SUMMARY_FILE, TRAIN_FILE};
use std::path::{Path, PathBuf};

/// The files whose presence makes a folder a run folder (what `train` and `asgd` write).
pub const RUN_FILES: [&str; 6] = [
    SUMMARY_FILE,
    TRAIN_FILE,
    EVAL_FILE,
    CHECKPOINT_FILE,
    MODEL_FILE,
    BEST_FILE,
];

/// The run folder's record of the run it holds ([`crate::checkpoint::RunIdentity`]), written
/// when a training run starts; a checkpoint must match it to be resumed.
pub const RUN_FILE: &str = "run.json";

/// Why a folder cannot take a new run.
#[derive(Debug, thiserror::Error)]
#[error("{} already holds a run ({})", dir.display(), found.join(", "))]
pub struct RunExists {
    /// The folder.
    pub dir: PathBuf,
    /// The run files found in it.
    pub found: Vec<String>,
}

/// The run files ([`RUN_FILES`]) present in `dir`.
pub fn existing_run_files(dir: &Path) -> Vec<String> {
    RUN_FILES
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| f.to_string())
        .collect()
}

/// Makes `dir` ready for a new run: created if missing; a run already in it is refused
/// ([`RunExists`]) or, with `overwrite`, its run files are removed first, so that nothing of
/// the old run mixes with the new one.
pub fn prepare_new_run(dir: &Path, overwrite: bool) -> Result<(), TrainError> {
    let output = |path: &Path, e: std::io::Error| TrainError::Output {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let found = existing_run_files(dir);
    if !found.is_empty() && !overwrite {
        return Err(RunExists {
            dir: dir.to_path_buf(),
            found,
        }
        .into());
    }
    for name in RUN_FILES.iter().chain([&RUN_FILE]) {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| output(&path, e))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| output(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_a_run_is_refused_unless_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        prepare_new_run(&run, false).unwrap();
        assert!(run.is_dir());
        // An empty folder, or one with unrelated files, takes a run.
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        prepare_new_run(&run, false).unwrap();
        std::fs::write(run.join(SUMMARY_FILE), "{}").unwrap();
        std::fs::write(run.join(CHECKPOINT_FILE), "x").unwrap();
        let e = prepare_new_run(&run, false).unwrap_err();
        let TrainError::RunExists(exists) = &e else {
            panic!("{e}")
        };
        assert_eq!(exists.found, vec![SUMMARY_FILE, CHECKPOINT_FILE]);
        assert!(run.join(SUMMARY_FILE).exists());
        prepare_new_run(&run, true).unwrap();
        assert!(existing_run_files(&run).is_empty());
        assert!(run.join("notes.txt").exists());
    }
}
