//! Owner-only files (they hold PHI and state): folders 0700 and files 0600 whatever the umask, and
//! whole-file writes that are atomic (write, fsync, rename), so a `kill -9` leaves the old file or the new.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// Creates a folder (and parents) readable by the owner only, whatever the umask.
pub fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| Error::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(path, e))
}

/// Opens a new file for writing with mode 0600 (set explicitly, so the umask cannot widen it).
pub fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    open_private(path, fs::OpenOptions::new().write(true).create(true).truncate(true))
}

/// Opens with `opts`; a file it creates, or finds, is made owner-only (0600, set explicitly).
pub fn open_private(path: &Path, opts: &mut fs::OpenOptions) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = opts.mode(0o600).open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Writes a whole file atomically: `path.tmp`, fsync, rename. Owner-only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = create_private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Make the rename itself durable.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Pretty JSON with a final newline, written atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}
