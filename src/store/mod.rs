//! Storage: where a job's runs, record and state live — a local folder, or a prefix in S3, Google Cloud
//! Storage or Azure Blob Storage (`download.dir: s3://bucket/prefix`). One layout for both (DESIGN §4):
//! `<dir>/<job>/<run-id>/…`, `<dir>/<job>/latest`, `<dir>/<job>/.state/`.
//!
//! - [`location`]: the pure parse of `download.dir` / `--out` / `inspect PATH`.
//! - [`Dir`]: a folder or a prefix, with the few calls the run makes (small whole-file writes, reads,
//!   conditional writes for the state, the `latest` pointer, a [`Target`] per downloaded file).
//! - [`upload`]: the `.part` file or the multipart upload a download streams into.
//! - [`lease`]: the job's lock in a bucket. (On disk the lock is an OS file lock, in `state.rs`.)
//! - [`object`]: the `object_store` client and its errors.
//! - [`reader`]: blocking reads of a run for `inspect`, streamed.
//!
//! On disk, "atomic" is write-then-rename; in a bucket every put is atomic, and a data file is a
//! multipart upload that exists only once completed.
//!
//! [`Dir`]'s calls are blocking, like the file system calls they stand for (the state and the record
//! are small, and written a few times per file): for a bucket they run the request on the async
//! runtime with `block_in_place`, which needs the multi-threaded runtime `main` builds. Downloads
//! ([`Target`]) are async.

pub mod lease;
pub mod location;
pub mod object;
pub mod reader;
pub mod sink;
pub mod upload;

use std::path::PathBuf;

use bytes::Bytes;
use object_store::UpdateVersion;
use serde::Serialize;

pub use location::{Location, ObjectUrl, Scheme};
pub use object::{Expect, ObjectDir};
pub use upload::Target;

use crate::error::{Error, Result};
use crate::private_fs::{create_private_dir, write_atomic};

/// The `latest` pointer's name in a job's folder: a symlink on disk, a small object naming the run id
/// in a bucket.
pub const LATEST: &str = "latest";

/// A folder on disk or a prefix in a bucket.
#[derive(Debug, Clone)]
pub enum Dir {
    Local(PathBuf),
    Object(ObjectDir),
}

impl Dir {
    /// The folder or prefix at `loc`; for a bucket, a client built from the environment (no request
    /// is sent until the first call).
    pub fn open(loc: &Location) -> Result<Dir> {
        Ok(match loc {
            Location::Local(p) => Dir::Local(p.clone()),
            Location::Object(u) => Dir::Object(ObjectDir::open(u)?),
        })
    }

    pub fn location(&self) -> Location {
        match self {
            Dir::Local(p) => Location::Local(p.clone()),
            Dir::Object(o) => Location::Object(o.url.clone()),
        }
    }

    pub fn join(&self, name: &str) -> Dir {
        match self {
            Dir::Local(p) => Dir::Local(p.join(name)),
            Dir::Object(o) => Dir::Object(o.join(name)),
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Dir::Object(_))
    }

    /// `rel` inside this folder, for messages.
    pub fn label(&self, rel: &str) -> String {
        self.location().join(rel).to_string()
    }

    /// Makes the folder (owner-only) on disk; a prefix needs nothing.
    pub fn create(&self) -> Result<()> {
        match self {
            Dir::Local(p) => create_private_dir(p),
            Dir::Object(_) => Ok(()),
        }
    }

    /// A whole small file (manifest, record, pointer), atomically: the old content or the new.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Dir::Local(p) => {
                let path = p.join(rel);
                if let Some(parent) = path.parent() {
                    create_private_dir(parent)?;
                }
                write_atomic(&path, bytes)
            }
            Dir::Object(o) => block(o.put(rel, Bytes::copy_from_slice(bytes))).map(drop),
        }
    }

    /// Pretty JSON with a final newline, as [`Dir::write`].
    pub fn write_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        self.write(rel, &json_bytes(value)?)
    }

    /// A whole small file, or `None` when there is none.
    pub fn read(&self, rel: &str) -> Result<Option<Bytes>> {
        match self {
            Dir::Local(p) => {
                let path = p.join(rel);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(b.into())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(path, e)),
                }
            }
            Dir::Object(o) => Ok(block(o.get(rel))?.map(|(b, _)| b)),
        }
    }

    /// The file's size, if it exists.
    pub fn size(&self, rel: &str) -> Result<Option<u64>> {
        match self {
            Dir::Local(p) => Ok(std::fs::metadata(p.join(rel)).ok().filter(|m| m.is_file()).map(|m| m.len())),
            Dir::Object(o) => block(o.size(rel)),
        }
    }

    pub fn remove(&self, rel: &str) -> Result<()> {
        match self {
            Dir::Local(p) => match std::fs::remove_file(p.join(rel)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(p.join(rel), e)),
            },
            Dir::Object(o) => block(o.delete(rel)),
        }
    }

    /// The names of the files directly in folder `rel` (empty when there is none).
    pub fn list(&self, rel: &str) -> Result<Vec<String>> {
        match self {
            Dir::Local(p) => {
                let Ok(rd) = std::fs::read_dir(p.join(rel)) else { return Ok(Vec::new()) };
                let mut names: Vec<String> = rd
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                Ok(names)
            }
            Dir::Object(o) => {
                let all = block(o.list(rel))?;
                let prefix = if rel.is_empty() { String::new() } else { format!("{}/", rel.trim_end_matches('/')) };
                Ok(all.into_iter().filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string)).collect())
            }
        }
    }

    /// Removes folder `rel` and everything in it, if it is there.
    pub fn remove_all(&self, rel: &str) -> Result<()> {
        match self {
            Dir::Local(p) => match std::fs::remove_dir_all(p.join(rel)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(p.join(rel), e)),
            },
            Dir::Object(_) => {
                for name in self.list(rel)? {
                    self.remove(&format!("{rel}/{name}"))?;
                }
                Ok(())
            }
        }
    }

    /// A state file and the version to expect when writing it back.
    pub fn read_versioned(&self, rel: &str) -> Result<Option<(Bytes, Expect)>> {
        match self {
            Dir::Local(_) => Ok(self.read(rel)?.map(|b| (b, Expect::Version(no_version())))),
            Dir::Object(o) => Ok(block(o.get(rel))?.map(|(b, v)| (b, Expect::Version(v)))),
        }
    }

    /// Writes a state file only if it is as `expect` says (in a bucket: a conditional put; a conflict
    /// is exit 75). On disk the job's OS lock already keeps other writers out.
    pub fn write_versioned(&self, rel: &str, bytes: &[u8], expect: &Expect) -> Result<Expect> {
        match self {
            Dir::Local(_) => self.write(rel, bytes).map(|()| Expect::Version(no_version())),
            Dir::Object(o) => Ok(Expect::Version(block(o.put_if(rel, Bytes::copy_from_slice(bytes), expect))?)),
        }
    }

    /// Points `latest` (in this, the job's folder) at run `run_id`: a relative symlink replaced
    /// atomically on disk; an object holding the run id in a bucket.
    pub fn point_latest(&self, run_id: &str) -> Result<()> {
        match self {
            Dir::Local(p) => {
                let (link, tmp) = (p.join(LATEST), p.join(".latest.tmp"));
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(run_id, &tmp).map_err(|e| Error::io(&tmp, e))?;
                std::fs::rename(&tmp, &link).map_err(|e| Error::io(&link, e))
            }
            Dir::Object(_) => self.write(LATEST, format!("{run_id}\n").as_bytes()),
        }
    }

    /// The run `latest` names, if any.
    pub fn latest(&self) -> Result<Option<String>> {
        match self {
            Dir::Local(p) => Ok(std::fs::read_link(p.join(LATEST)).ok().map(|t| t.to_string_lossy().into_owned())),
            Dir::Object(_) => Ok(self.read(LATEST)?.map(|b| String::from_utf8_lossy(&b).trim().to_string())),
        }
    }

    /// Where the download of `rel` (inside this run folder) is written until it is verified.
    pub fn target(&self, rel: &str) -> Result<Target> {
        match self {
            Dir::Local(p) => {
                let final_path = p.join(rel);
                if let Some(parent) = final_path.parent() {
                    create_private_dir(parent)?;
                }
                let part = sink::part_path(&final_path);
                Ok(Target::Local { part, final_path })
            }
            Dir::Object(o) => {
                let run_id = o.url.prefix.rsplit('/').next().unwrap_or_default().to_string();
                let job = match Location::Object(o.url.clone()).parent() {
                    Some(Location::Object(u)) => u,
                    _ => return Err(Error::Failed(format!("{}: a run needs a job prefix above it", o.url))),
                };
                let markers = ObjectDir { backend: o.backend.clone(), url: job.join(upload::UPLOADS).join(&run_id) };
                Ok(Target::Object(upload::Upload::new(o.clone(), rel, markers)))
            }
        }
    }
}

/// Runs a bucket request from blocking code: on the current (multi-threaded) runtime, its worker
/// handing its other tasks on while this one waits; or on a small runtime of its own outside any.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => tokio::task::block_in_place(|| h.block_on(f)),
        Err(_) => {
            static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
            let rt = RT.get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime")
            });
            rt.block_on(f)
        }
    }
}

/// On disk there are no versions: the OS lock keeps writers apart.
fn no_version() -> UpdateVersion {
    UpdateVersion { e_tag: None, version: None }
}

/// Pretty JSON with a final newline.
pub fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}
