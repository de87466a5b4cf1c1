//! Blocking reads of a folder or a bucket prefix, for `inspect` (which reads on a pool of plain
//! threads): list the files, read a small one whole, stream a large one. A bucket object is streamed
//! as the store sends it (chunks pulled one at a time through the async client), never held whole.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::ObjectStoreExt;
use tokio::runtime::{Handle, Runtime};

use super::location::Location;
use super::object::{ObjectDir, scrub};
use crate::error::{Error, Result};

/// A folder or a prefix to read from, from any thread that is not an async runtime's worker.
#[derive(Clone)]
pub enum Tree {
    Local(PathBuf),
    Object { dir: ObjectDir, rt: Rt },
}

/// The runtime that drives a bucket's requests: the caller's, or one of our own when there is none.
#[derive(Clone)]
pub struct Rt {
    handle: Handle,
    _own: Option<Arc<Runtime>>,
}

impl Rt {
    fn get() -> Result<Rt> {
        if let Ok(handle) = Handle::try_current() {
            return Ok(Rt { handle, _own: None });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::Failed(format!("cannot start the async runtime: {e}")))?;
        Ok(Rt { handle: rt.handle().clone(), _own: Some(Arc::new(rt)) })
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }
}

impl Tree {
    /// The tree at `loc`. For a bucket, `…/<job>/latest` is the pointer object: the tree is the run it
    /// names.
    pub fn open(loc: &Location) -> Result<Tree> {
        let Location::Object(url) = loc else {
            return Ok(Tree::Local(loc.local().expect("a local location").to_path_buf()));
        };
        let rt = Rt::get()?;
        let dir = ObjectDir::open(url)?;
        if loc.file_name().as_deref() == Some(super::LATEST)
            && let Some(Location::Object(job)) = loc.parent()
        {
            let job_dir = super::Dir::Object(ObjectDir { backend: dir.backend.clone(), url: job.clone() });
            if let Some(run) = job_dir.latest()? {
                if !is_run_id(&run) {
                    return Err(Error::Failed(format!("{loc}: does not name a run ({run:?})")));
                }
                return Ok(Tree::Object { dir: ObjectDir { backend: dir.backend, url: job.join(&run) }, rt });
            }
        }
        Ok(Tree::Object { dir, rt })
    }

    /// What to call this tree in the report.
    pub fn label(&self) -> String {
        match self {
            Tree::Local(p) => p.display().to_string(),
            Tree::Object { dir, .. } => dir.url.to_string(),
        }
    }

    /// Where this tree is, as a location (a bucket's the run `latest` named, once opened).
    pub fn location(&self) -> Location {
        match self {
            Tree::Local(p) => Location::Local(p.clone()),
            Tree::Object { dir, .. } => Location::Object(dir.url.clone()),
        }
    }

    /// A local file path, when this tree is on disk.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Tree::Local(p) => Some(p),
            Tree::Object { .. } => None,
        }
    }

    /// Every file under the tree (relative, `/`-separated) with its size, sorted. A local folder is
    /// listed at its top level and in `error/` and `deleted/`; a prefix recursively.
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        match self {
            Tree::Local(root) => {
                let mut out = Vec::new();
                for sub in ["", "error", "deleted"] {
                    let Ok(rd) = std::fs::read_dir(root.join(sub)) else { continue };
                    for e in rd.flatten() {
                        if let Ok(m) = e.metadata()
                            && m.is_file()
                        {
                            let name = e.file_name().to_string_lossy().into_owned();
                            out.push((if sub.is_empty() { name } else { format!("{sub}/{name}") }, m.len()));
                        }
                    }
                }
                out.sort();
                Ok(out)
            }
            Tree::Object { dir, rt } => rt.block_on(dir.list("")),
        }
    }

    /// A small file whole, or `None` if it is not there.
    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        match self {
            Tree::Local(root) => std::fs::read(root.join(rel)).ok(),
            Tree::Object { dir, rt } => rt.block_on(dir.get(rel)).ok().flatten().map(|(b, _)| b.to_vec()),
        }
    }

    /// A file as a stream of its stored bytes.
    pub fn open_file(&self, rel: &str) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Tree::Local(root) => Ok(Box::new(std::fs::File::open(root.join(rel))?)),
            Tree::Object { dir, rt } => {
                let got =
                    rt.block_on(dir.backend.get(&dir.key(rel))).map_err(|e| io::Error::other(scrub(&e.to_string())))?;
                Ok(Box::new(StreamRead { rt: rt.clone(), stream: got.into_stream(), chunk: Bytes::new() }))
            }
        }
    }
}

/// What `latest` may name: a run id as [`crate::record::run_id`] makes them.
fn is_run_id(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b))
}

/// An object's body as `Read`: one chunk held at a time.
struct StreamRead {
    rt: Rt,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(io::Error::other(scrub(&e.to_string()))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
