//! The read in flight of a patient-access run, and its files: `.state/paging.json` says which request
//! comes next (the `$everything` URL, a search, or the last page's `link` next) and how many bytes and
//! lines of each type file belong to the pages already read. Pages are appended to `<Type>.ndjson.part`
//! files in the run folder (through the download [`Sink`](crate::download::verify::Sink), made durable
//! per page), and the state is saved after each page, atomically.
//!
//! A rerun after a crash truncates each `.part` back to the length the state records (dropping the
//! lines of a page that was being written) and continues from the saved link, so no resource is
//! written twice. When every page is read, each file is checked by the download verifier (lines,
//! resource types, byte count, SHA-256) and only then renamed to its final name.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bundle::Entry;
use crate::download::part_path;
use crate::download::verify::{PartFile, Sink, Verified, verify_stream};
use crate::error::{Error, Result};
use crate::job::DownloadSettings;
use crate::job::fhir_types::is_r4_type;
use crate::private_fs::{create_private_dir, write_json};
use crate::record::{FileKind, FileRecord, PlannedFile, Problem};
use crate::state::JobState;

pub const PAGING_FILE: &str = "paging.json";

/// The read in flight.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Paging {
    /// Ties the event-log lines of one read together across resumes.
    pub export_id: String,
    /// RFC 3339, taken before the first request.
    pub started: String,
    /// `_since` sent, if any.
    pub since: Option<String>,
    /// The first request of each step: one `$everything`, or one search per type.
    pub steps: Vec<String>,
    pub step: usize,
    /// The next page of the current step (the last page's `link` next); `None`: the step's first page.
    pub next: Option<String>,
    /// Pages written so far.
    pub pages: u64,
    /// Set with the first page: the checkpoint a complete run leaves for `since: auto`.
    #[serde(rename = "transactionTime")]
    pub transaction_time: Option<String>,
    /// The run folder's name, set with the first page.
    pub run_id: Option<String>,
    /// Every type file begun, with the bytes and lines the pages written so far put in it.
    #[serde(default)]
    pub files: Vec<PartState>,
    /// Resources not written (no `resourceType`, or not an R4 type name).
    #[serde(default)]
    pub skipped: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartState {
    /// Relative to the run folder: `Patient.ndjson`, `error/OperationOutcome.ndjson`.
    pub path: String,
    pub kind: FileKind,
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The request the file's first resource came from.
    pub url: String,
    pub bytes: u64,
    pub lines: u64,
}

/// A part file as the display plans it (`None` when its request URL does not parse).
pub fn planned(f: &PartState) -> Option<PlannedFile> {
    Some(PlannedFile {
        kind: f.kind,
        resource_type: f.resource_type.clone(),
        url: url::Url::parse(&f.url).ok()?,
        count: None,
        path: f.path.clone(),
        continues_in: None,
    })
}

impl Paging {
    pub fn new(export_id: String, steps: Vec<String>, since: Option<String>) -> Self {
        Paging {
            export_id,
            started: crate::instant::now(),
            since,
            steps,
            step: 0,
            next: None,
            pages: 0,
            transaction_time: None,
            run_id: None,
            files: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// The URL to read next; `None` when every step is read.
    pub fn current(&self) -> Option<&str> {
        self.next.as_deref().or_else(|| self.steps.get(self.step).map(String::as_str))
    }

    /// After a page: its `next` link, or the next step when it had none.
    pub fn advance(&mut self, next: Option<String>) {
        self.pages += 1;
        if next.is_none() {
            self.step += 1;
        }
        self.next = next;
    }

    /// Starts the read over (a saved link the server no longer knows): the files are emptied.
    pub fn restart(&mut self, run_dir: &Path) -> Result<()> {
        for f in self.files.drain(..) {
            let p = part_path(&run_dir.join(&f.path));
            fs::remove_file(&p)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
                .map_err(|e| Error::io(&p, e))?;
        }
        (self.step, self.next, self.pages) = (0, None, 0);
        self.skipped.clear();
        Ok(())
    }

    /// Before continuing a saved read: every `.part` cut back to what the saved pages wrote. `false`
    /// when a file is missing or shorter (the run folder was changed): the read must start over.
    pub fn reopen(&self, run_dir: &Path) -> Result<bool> {
        for f in &self.files {
            let p = part_path(&run_dir.join(&f.path));
            let file = match fs::OpenOptions::new().write(true).open(&p) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(Error::io(&p, e)),
            };
            let len = file.metadata().map_err(|e| Error::io(&p, e))?.len();
            if len < f.bytes {
                return Ok(false);
            }
            file.set_len(f.bytes).map_err(|e| Error::io(&p, e))?;
        }
        Ok(true)
    }

    /// Appends a page's resources to their type files and makes them durable. Returns how many were
    /// written; resources without a usable type are recorded in `skipped`.
    pub fn append(&mut self, run_dir: &Path, url: &str, entries: Vec<Entry>, max_file_bytes: u64) -> Result<usize> {
        let mut by_file: Vec<(usize, Vec<u8>, u64)> = Vec::new();
        let mut written = 0;
        for (n, e) in entries.into_iter().enumerate() {
            let Some(t) = e.resource_type.filter(|t| is_r4_type(t)) else {
                self.skipped.push(Problem {
                    file: None,
                    line: None,
                    message: format!(
                        "page {}, entry {}: a resource without a FHIR R4 resourceType; not written",
                        self.pages + 1,
                        n + 1
                    ),
                });
                continue;
            };
            let i = self.file_for(&t, url);
            let slot = match by_file.iter().position(|(j, _, _)| *j == i) {
                Some(s) => s,
                None => {
                    by_file.push((i, Vec::new(), 0));
                    by_file.len() - 1
                }
            };
            let (_, buf, lines) = &mut by_file[slot];
            buf.extend_from_slice(&e.line);
            buf.push(b'\n');
            *lines += 1;
            written += 1;
        }
        for (i, buf, lines) in by_file {
            let f = &mut self.files[i];
            if f.bytes + buf.len() as u64 > max_file_bytes {
                return Err(Error::Failed(format!(
                    "{}: larger than download.max_file_bytes ({max_file_bytes} bytes)",
                    f.path
                )));
            }
            let p = part_path(&run_dir.join(&f.path));
            if let Some(dir) = p.parent() {
                create_private_dir(dir)?;
            }
            let mut sink =
                if f.bytes == 0 { PartFile::create(&p) } else { PartFile::append(&p) }.map_err(|e| Error::io(&p, e))?;
            sink.write_all(&buf).and_then(|()| sink.finish()).map_err(|e| Error::io(&p, e))?;
            f.bytes += buf.len() as u64;
            f.lines += lines;
        }
        Ok(written)
    }

    fn file_for(&mut self, resource_type: &str, url: &str) -> usize {
        let (kind, path) = match resource_type {
            "OperationOutcome" => (FileKind::Error, "error/OperationOutcome.ndjson".to_string()),
            t => (FileKind::Output, format!("{t}.ndjson")),
        };
        if let Some(i) = self.files.iter().position(|f| f.path == path) {
            return i;
        }
        self.files.push(PartState {
            path,
            kind,
            resource_type: resource_type.into(),
            url: url.into(),
            bytes: 0,
            lines: 0,
        });
        self.files.len() - 1
    }

    pub fn load(state: &JobState) -> Result<Option<Self>> {
        let path = state.dir.join(PAGING_FILE);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::Failed(format!(
                    "{}: unreadable state ({e}); run with --restart to start the read over",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    pub fn save(&self, state: &JobState) -> Result<()> {
        write_json(&state.dir.join(PAGING_FILE), self)
    }

    pub fn clear(state: &JobState) -> Result<()> {
        let p = state.dir.join(PAGING_FILE);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&p, e)),
            _ => Ok(()),
        }
    }
}

/// Verified bytes need go nowhere: the `.part` already holds them.
struct Discard;

impl Sink for Discard {
    fn write_all(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One type file, checked and under its final name.
pub struct Finished {
    pub planned: PlannedFile,
    pub record: FileRecord,
    pub problems: Vec<Problem>,
}

/// Checks one file with the download verifier and renames it (a file renamed by an earlier attempt
/// is checked where it is). Blocking: run it off the async threads.
pub fn finish_file(run_dir: &Path, f: &PartState, settings: &DownloadSettings) -> Result<Finished> {
    let final_path = run_dir.join(&f.path);
    let part = part_path(&final_path);
    let source: PathBuf = if part.exists() { part.clone() } else { final_path.clone() };
    let file = File::open(&source).map_err(|e| Error::io(&source, e))?;
    let v: Verified =
        verify_stream(settings, &f.resource_type, false, Some(file), std::iter::empty::<&[u8]>(), &mut Discard)
            .map_err(|e| Error::Failed(format!("{}: {e}", f.path)))?;
    if v.bytes != f.bytes || v.tally.lines != f.lines {
        return Err(Error::Failed(format!(
            "{}: {} bytes and {} lines on disk, but the pages put {} bytes and {} lines in it; run with --restart",
            f.path, v.bytes, v.tally.lines, f.bytes, f.lines
        )));
    }
    if source == part {
        fs::rename(&part, &final_path).map_err(|e| Error::io(&final_path, e))?;
    }
    let url = url::Url::parse(&f.url).map_err(|e| Error::Failed(format!("{}: {e}", f.url)))?;
    let planned = PlannedFile {
        kind: f.kind,
        resource_type: f.resource_type.clone(),
        url,
        count: None,
        path: f.path.clone(),
        continues_in: None,
    };
    let problems = v
        .tally
        .problems
        .iter()
        .map(|(line, message)| Problem { file: Some(f.path.clone()), line: Some(*line), message: message.clone() })
        .collect();
    let record = FileRecord {
        kind: f.kind,
        resource_type: f.resource_type.clone(),
        url: f.url.clone(),
        path: f.path.clone(),
        expected_count: None,
        lines: v.tally.lines,
        bytes: v.bytes,
        sha256: v.sha256,
        invalid_lines: v.tally.invalid,
        wrong_type_lines: v.tally.wrong_type,
        types: Default::default(),
        header_lines: 0,
        continues_in: None,
    };
    Ok(Finished { planned, record, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: &str, id: &str) -> Entry {
        Entry { resource_type: Some(t.into()), line: format!(r#"{{"resourceType":"{t}","id":"{id}"}}"#).into_bytes() }
    }

    #[test]
    fn steps_and_links_in_order() {
        let mut p = Paging::new("x".into(), vec!["u/Patient".into(), "u/Coverage".into()], None);
        assert_eq!(p.current(), Some("u/Patient"));
        p.advance(Some("u/Patient?page=2".into()));
        assert_eq!(p.current(), Some("u/Patient?page=2"));
        p.advance(None);
        assert_eq!(p.current(), Some("u/Coverage"));
        p.advance(None);
        assert_eq!((p.current(), p.pages), (None, 3));
    }

    #[test]
    fn a_rerun_cuts_files_back_to_the_pages_saved_and_nothing_is_written_twice() {
        let d = tempfile::tempdir().unwrap();
        let mut p = Paging::new("x".into(), vec!["https://p/fhir/Patient/1/$everything".into()], None);
        let url = p.steps[0].clone();
        let page1 =
            vec![entry("Patient", "1"), entry("Coverage", "c1"), Entry { resource_type: None, line: b"{}".to_vec() }];
        assert_eq!(p.append(d.path(), &url, page1, 1 << 20).unwrap(), 2);
        p.advance(Some("https://p/next".into()));
        let saved = p.clone();
        // The next page is half written when the process dies.
        p.append(d.path(), &url, vec![entry("Coverage", "c2"), entry("OperationOutcome", "e")], 1 << 20).unwrap();
        assert!(saved.reopen(d.path()).unwrap());
        let mut p = saved;
        p.append(d.path(), &url, vec![entry("Coverage", "c2"), entry("OperationOutcome", "e")], 1 << 20).unwrap();
        let read = |f: &str| fs::read_to_string(part_path(&d.path().join(f))).unwrap();
        assert_eq!(
            read("Coverage.ndjson"),
            "{\"resourceType\":\"Coverage\",\"id\":\"c1\"}\n{\"resourceType\":\"Coverage\",\"id\":\"c2\"}\n"
        );
        assert_eq!(read("error/OperationOutcome.ndjson"), "{\"resourceType\":\"OperationOutcome\",\"id\":\"e\"}\n");
        assert_eq!(p.skipped.len(), 1);
        let settings = crate::job::parse(
            "access: bulk-data\nfhir_base: http://127.0.0.1/\nauth:\n  method: none\n",
            "t",
            d.path(),
            &|_| None,
        )
        .unwrap()
        .download;
        let done: Vec<Finished> = p.files.iter().map(|f| finish_file(d.path(), f, &settings).unwrap()).collect();
        let got: Vec<(&str, FileKind, u64)> =
            done.iter().map(|f| (f.record.path.as_str(), f.record.kind, f.record.lines)).collect();
        assert_eq!(
            got,
            [
                ("Patient.ndjson", FileKind::Output, 1),
                ("Coverage.ndjson", FileKind::Output, 2),
                ("error/OperationOutcome.ndjson", FileKind::Error, 1)
            ]
        );
        assert!(d.path().join("Coverage.ndjson").is_file() && !part_path(&d.path().join("Coverage.ndjson")).exists());
        // A part shorter than the state says means the folder was changed: start over.
        fs::write(part_path(&d.path().join("Patient.ndjson")), "").unwrap();
        let mut again = p.clone();
        again.files.retain(|f| f.path == "Patient.ndjson");
        assert!(!again.reopen(d.path()).unwrap());
    }
}
