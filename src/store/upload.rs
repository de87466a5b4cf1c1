//! Where one downloaded file goes while it is verified, and how it gets its final name.
//!
//! - On disk: `<final>.part`, renamed when verified; an interrupted body resumes from its end.
//! - In object storage: a multipart upload straight to the final key. The object does not exist until
//!   the upload is completed, which happens only after every check has passed; a failed or restarted
//!   attempt aborts its upload. Nothing unverified is ever visible under a final name.
//!
//! Memory per file in object storage: one part filling ([`PART_SIZE`]) and at most [`PARTS_IN_FLIGHT`]
//! parts uploading: `(1 + PARTS_IN_FLIGHT) × PART_SIZE` = 24 MiB, times `download.concurrency`. Part
//! buffers are allocated on one thread and freed on another; with glibc's default (sliding) mmap
//! threshold they would be served from per-thread heaps that never shrink (measured: 184 MiB peak
//! for 1 GB at concurrency 4, against 96 MiB with the threshold fixed), so the first upload pins
//! the threshold below the part size and every part buffer is mapped and unmapped on its own.
//!
//! There is no part-level resume: a file restarts from its first byte (the verifier's hash and line
//! counts would have to be rebuilt from bytes the store will not hand back before completion). Each
//! upload's id is kept in a marker object (`.state/uploads/<run-id>/<path>`) until it is completed or
//! aborted, so a run that takes over after a crash aborts the uploads the crashed run left behind.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::multipart::PartId;
use object_store::{MultipartId, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use super::object::{ObjectDir, scrub};
use super::sink::{PartFile, Sink};
use crate::error::{Error, Result};

/// Bytes per uploaded part (S3 wants at least 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one file uploading at once while the next one fills.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Where upload markers live, relative to the job's folder.
pub const UPLOADS: &str = ".state/uploads";

/// A file being written: its `.part` on disk, or its multipart upload.
pub enum Target {
    Local { part: PathBuf, final_path: PathBuf },
    Object(Upload),
}

/// What [`Target::open`] hands the verifier: the bytes already there (a `.part` being resumed) and
/// the sink for the rest.
pub struct Opened {
    pub prior: Option<Box<dyn Read + Send>>,
    pub sink: Box<dyn Sink + Send>,
}

/// One file's multipart upload to `dir/rel`; a new upload for every attempt.
pub struct Upload {
    pub(super) dir: ObjectDir,
    pub(super) rel: String,
    /// `<job>/.state/uploads/<run-id>`.
    pub(super) markers: ObjectDir,
    current: Option<Arc<Mutex<Parts>>>,
}

/// The upload in progress: filled in by the sink on its blocking thread, completed by the target.
struct Parts {
    id: MultipartId,
    /// Part ids in order, once the sink has finished.
    done: Option<Vec<PartId>>,
}

#[derive(Serialize, Deserialize)]
struct Marker {
    key: String,
    upload_id: String,
}

impl Upload {
    pub(super) fn new(dir: ObjectDir, rel: &str, markers: ObjectDir) -> Upload {
        part_buffers_unmapped_when_freed();
        Upload { dir, rel: rel.to_string(), markers, current: None }
    }
}

/// Part buffers go back to the system when freed (see the module's doc): glibc's `M_MMAP_THRESHOLD`
/// fixed at 4 MiB, once per process.
fn part_buffers_unmapped_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes an allocator parameter; it is safe to call at any time.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        });
    }
}

impl Target {
    /// How many bytes a retry can resume after (the `.part`'s length; 0 in object storage).
    pub fn resume_from(&self) -> u64 {
        match self {
            Target::Local { part, .. } => fs::metadata(part).map(|m| m.len()).unwrap_or(0),
            Target::Object(_) => 0,
        }
    }

    /// Starts an attempt: the `.part` (emptied, or opened to append), or a new multipart upload (the
    /// previous attempt's aborted first).
    pub async fn open(&mut self, append: bool) -> Result<Opened> {
        match self {
            Target::Local { part, .. } => {
                let opened = if append {
                    File::open(&part).and_then(|prior| Ok((Some(prior), PartFile::append(part)?)))
                } else {
                    PartFile::create(part).map(|sink| (None, sink))
                };
                let (prior, sink) = opened.map_err(|e| Error::io(&*part, e))?;
                Ok(Opened { prior: prior.map(|p| Box::new(p) as Box<dyn Read + Send>), sink: Box::new(sink) })
            }
            Target::Object(u) => {
                u.abort().await;
                let key = u.dir.key(&u.rel);
                let id = u.dir.backend.create_multipart(&key).await.map_err(|e| u.dir.error(&u.rel, e))?;
                let marker = Marker { key: key.to_string(), upload_id: id.clone() };
                let body = serde_json::to_vec(&marker).expect("a marker serialises");
                u.markers.put(&u.rel, body.into()).await?;
                let parts = Arc::new(Mutex::new(Parts { id: id.clone(), done: None }));
                u.current = Some(parts.clone());
                let sink = PartSink {
                    handle: Handle::current(),
                    dir: u.dir.clone(),
                    key,
                    id,
                    buf: Vec::with_capacity(PART_SIZE),
                    tasks: JoinSet::new(),
                    ids: Vec::new(),
                    parts,
                };
                Ok(Opened { prior: None, sink: Box::new(sink) })
            }
        }
    }

    /// Gives a verified file its final name: the rename, or the upload's completion.
    pub async fn commit(&mut self) -> Result<()> {
        match self {
            Target::Local { part, final_path } => {
                fs::rename(&*part, &*final_path).map_err(|e| Error::io(&*final_path, e))
            }
            Target::Object(u) => {
                let cur = u.current.take().ok_or_else(|| Error::Failed(format!("{}: no upload", u.rel)))?;
                let (id, parts) = {
                    let mut p = cur.lock().expect("upload state");
                    (p.id.clone(), p.done.take())
                };
                let parts = parts.ok_or_else(|| Error::Failed(format!("{}: upload not finished", u.rel)))?;
                let key = u.dir.key(&u.rel);
                u.dir.backend.complete_multipart(&key, &id, parts).await.map_err(|e| u.dir.error(&u.rel, e))?;
                u.markers.delete(&u.rel).await
            }
        }
    }

    /// Throws an attempt away: the `.part` removed, or the upload aborted.
    pub async fn discard(&mut self) {
        match self {
            Target::Local { part, .. } => {
                let _ = fs::remove_file(part);
            }
            Target::Object(u) => u.abort().await,
        }
    }

    /// An attempt given up for now: a `.part` stays for a resume; an upload, which cannot be resumed,
    /// is aborted.
    pub async fn abandon(&mut self) {
        if let Target::Object(u) = self {
            u.abort().await;
        }
    }

    /// What a write error means: on disk it ends the run (disk full, permissions, exit 1); in object
    /// storage the store's own retries are spent or the upload was lost, so the file starts again.
    pub fn write_failed(&self, e: io::Error) -> std::result::Result<String, Error> {
        match self {
            Target::Local { part, .. } => Err(Error::io(part, e)),
            Target::Object(u) => Ok(format!("uploading to {}: {}", u.dir.url.join(&u.rel), scrub(&e.to_string()))),
        }
    }
}

impl Upload {
    /// Aborts the current upload, if any (best effort: a store that lost it has nothing to abort).
    async fn abort(&mut self) {
        if let Some(cur) = self.current.take() {
            let id = cur.lock().expect("upload state").id.clone();
            let _ = self.dir.backend.abort_multipart(&self.dir.key(&self.rel), &id).await;
            let _ = self.markers.delete(&self.rel).await;
        }
    }
}

/// Aborts the uploads a crashed run left (their markers under `<job>/.state/uploads/`). Called once
/// the job's lease is held, so every marker there belongs to a run that is gone.
pub async fn abort_stale(job: &ObjectDir) -> Result<usize> {
    let markers = job.join(UPLOADS);
    let mut n = 0;
    for (rel, _) in markers.list("").await? {
        if let Some((body, _)) = markers.get(&rel).await?
            && let Ok(m) = serde_json::from_slice::<Marker>(&body)
        {
            let _ = job.backend.abort_multipart(&m.key.as_str().into(), &m.upload_id).await;
            n += 1;
        }
        markers.delete(&rel).await?;
    }
    Ok(n)
}

/// The verifier's sink for one attempt: fills a part, hands full parts to the runtime to upload
/// (waiting while [`PARTS_IN_FLIGHT`] are already on their way), and on `finish` uploads the last one
/// and waits for all. Runs on the blocking worker, so it may block on the runtime.
struct PartSink {
    handle: Handle,
    dir: ObjectDir,
    key: object_store::path::Path,
    id: MultipartId,
    buf: Vec<u8>,
    tasks: JoinSet<(usize, object_store::Result<PartId>)>,
    ids: Vec<Option<PartId>>,
    parts: Arc<Mutex<Parts>>,
}

impl PartSink {
    fn send_part(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE));
        let idx = self.ids.len();
        self.ids.push(None);
        let (backend, key, id) = (self.dir.backend.clone(), self.key.clone(), self.id.clone());
        let payload = PutPayload::from(Bytes::from(data));
        self.tasks.spawn_on(async move { (idx, backend.put_part(&key, &id, idx, payload).await) }, &self.handle);
        while self.tasks.len() >= PARTS_IN_FLIGHT {
            self.wait_one()?;
        }
        Ok(())
    }

    fn wait_one(&mut self) -> io::Result<()> {
        let joined = self.handle.block_on(self.tasks.join_next());
        match joined {
            None => Ok(()),
            Some(Ok((idx, Ok(part)))) => {
                self.ids[idx] = Some(part);
                Ok(())
            }
            Some(Ok((_, Err(e)))) => Err(io::Error::other(e)),
            Some(Err(e)) => Err(io::Error::other(e)),
        }
    }
}

impl Sink for PartSink {
    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = (PART_SIZE - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == PART_SIZE {
                self.send_part()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        while !self.tasks.is_empty() {
            self.wait_one()?;
        }
        let ids = std::mem::take(&mut self.ids).into_iter().collect::<Option<Vec<_>>>();
        let ids = ids.ok_or_else(|| io::Error::other("a part was not uploaded"))?;
        self.parts.lock().expect("upload state").done = Some(ids);
        Ok(())
    }
}
