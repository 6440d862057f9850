//! Writing the files regauth keeps (keys, secrets, the embedded state):
//! created with the mode they need from the first byte, their directory
//! made when missing, and never replaced unless asked.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

/// What writing does when the file is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replace {
    /// Fail, leaving it as it is.
    Never,
    /// Write over it in place, setting its mode again (a key written over
    /// a world-readable file must not stay readable).
    InPlace,
    /// Write a new file beside it and rename it over: a crash leaves the
    /// old file or the new one, never half of either.
    Atomically,
}

/// Writes `contents` to `path` with `mode` (on Unix).
pub fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    replace: Replace,
) -> std::io::Result<()> {
    make_parent(path)?;
    match replace {
        Replace::Never => {
            let mut file = options(mode).create_new(true).open(path)?;
            file.write_all(contents)
        }
        Replace::InPlace => {
            let mut file = options(mode).create(true).truncate(true).open(path)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            file.write_all(contents)
        }
        Replace::Atomically => {
            // One new temporary file per write, never shared with another
            // writer.
            let unique = crate::random::random_id().map_err(std::io::Error::other)?;
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let temporary = path.with_extension(format!("{extension}.{unique}.tmp"));
            let written = options(mode)
                .create_new(true)
                .open(&temporary)
                .and_then(|mut file| {
                    file.write_all(contents)?;
                    file.sync_all()?;
                    std::fs::rename(&temporary, path)
                });
            if written.is_err() {
                let _ = std::fs::remove_file(&temporary);
            }
            written
        }
    }
}

/// Opens (or creates, mode 0600) `path` and holds an exclusive advisory
/// lock on it until the handle is dropped.
pub fn lock(path: &Path) -> std::io::Result<File> {
    make_parent(path)?;
    let file = options(0o600).create(true).truncate(false).open(path)?;
    file.lock()?;
    Ok(file)
}

fn make_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir),
        None => Ok(()),
    }
}

fn options(mode: u32) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_private_and_kept_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret");
        write_file(&path, b"one", 0o600, Replace::Never).unwrap();
        assert!(write_file(&path, b"two", 0o600, Replace::Never).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_file(&path, b"three", 0o644, Replace::InPlace).unwrap();
        write_file(&path, b"four", 0o600, Replace::Atomically).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"four");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
