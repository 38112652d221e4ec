//! Writing output files so that a crash never leaves a half-written one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder ([`temp_path`]),
/// synced, renamed over `path`, then the folder synced, so after a crash `path` holds either the
/// old or the new content, never a mix. The folder is created if missing. A failed write
/// removes its temporary file; one left by a killed writer has the same name, so the next write
/// replaces it, and those of earlier versions (`.NAME.tmp-PID`) are removed: temporary files
/// never pile up. One writer per file at a time.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out").join("summary.json");
/// stagewise_core::files::write_atomic(&path, b"{}").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"{}");
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Makes the rename itself durable; not every platform can open a folder.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    remove_old_temp_files(dir, path);
    Ok(())
}

/// The hidden temporary file [`write_atomic`] writes `path` through: `.NAME.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Removes `.NAME.tmp-PID` files beside `path`, left by killed writers of earlier versions
/// (which named their temporary file after the process).
fn remove_old_temp_files(dir: &Path, path: &Path) {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let old = file.to_str().and_then(|f| f.strip_prefix(&prefix));
        if old.is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_old_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn temporary_files_of_killed_writers_do_not_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        // What writers killed mid-write leave: this version's name, and earlier versions'.
        std::fs::write(temp_path(&path), b"half").unwrap();
        for pid in [101, 202] {
            std::fs::write(
                dir.path()
                    .join(format!(".checkpoint.safetensors.tmp-{pid}")),
                b"x",
            )
            .unwrap();
        }
        std::fs::write(dir.path().join(".other.tmp-7"), b"keep").unwrap();
        write_atomic(&path, b"full").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".other.tmp-7", "checkpoint.safetensors"]);
    }

    #[test]
    fn a_write_that_fails_midway_leaves_no_temporary_file() {
        // /dev/full accepts the open and fails every write (ENOSPC): a full disk.
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::os::unix::fs::symlink(full, temp_path(&path)).unwrap();
        let e = write_atomic(&path, &[0u8; 1 << 16]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28), "{e}");
        assert!(!temp_path(&path).exists() && !path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: the rename fails, the folder stays.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert!(path.join("inside").exists());
        assert!(!temp_path(&path).exists());
    }
}
