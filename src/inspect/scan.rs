//! Reading the files: a pool of threads takes files from a shared index, streams each in 1 MiB blocks
//! (through gzip when the name says so) into the shared line splitter, and checks every line.
//!
//! Organized output (`organizeOutputBy`, our `organized.NNN.ndjson`, or any file whose first resource
//! is a `Parameters` block header and whose name gives no type) holds resources of every type: its
//! lines are counted per type ([`Part`]), the headers as `Parameters`, and none is "of another type".

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::{FileRole, FileSummary, Part};
use crate::job::fhir_types::is_r4_type;
use crate::ndjson::{LineError, LineSplitter, parse_head};
use crate::record::MIXED;
use crate::store::reader::Tree;

/// Problems kept per file for listing (all are counted).
const KEEP_PROBLEMS: usize = 100;
/// Types counted apart in one organized file (a hostile file cannot grow the map past this).
const MAX_TYPES_PER_FILE: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

pub(super) struct Scanned {
    pub summary: FileSummary,
    pub problems: Vec<Problem>,
    pub problems_total: u64,
    pub outcomes: BTreeMap<(String, String, String), u64>,
    pub ids: IdSet,
}

/// The resource type a file's name announces: `Patient.ndjson`, `Patient.001.ndjson.gz`,
/// `1.Patient.ndjson` (bulk-data-client), `OperationOutcome.error.ndjson`.
pub fn type_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().to_string();
    let stem = name.trim_end_matches(".gz").trim_end_matches(".ndjson").trim_end_matches(".jsonl");
    stem.split('.').find(|p| is_r4_type(p)).map(str::to_string)
}

pub(super) fn role(rel: &str) -> FileRole {
    match rel.split('/').next() {
        Some("error") if rel.contains('/') => FileRole::Error,
        Some("deleted") if rel.contains('/') => FileRole::Deleted,
        _ if rel.contains(".error.") => FileRole::Error,
        _ => FileRole::Output,
    }
}

/// `Type/id` hashes ([`id_hash`]); they are hashes already, so the set does not hash them again.
pub type IdSet = HashSet<u64, BuildHasherDefault<Prehashed>>;

/// A `Hasher` for keys that are uniform 64-bit hashes: passes them through.
#[derive(Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys go in; this keeps any other use correct, if slower.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// 64-bit hash of `Type/id` for the reference index.
pub fn id_hash(resource_type: &str, id: &str) -> u64 {
    // FNV-1a: stable across runs and platforms, fast on short keys.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in resource_type.bytes().chain(std::iter::once(b'/')).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Opens a file of `tree` for streaming, decoded when its name says gzip.
pub(super) fn open(tree: &Tree, rel: &str) -> io::Result<Box<dyn Read + Send>> {
    Ok(decoded(Path::new(rel), tree.open_file(rel)?))
}

/// The stored bytes `raw` of `path`, decoded when the name says gzip.
fn decoded<'a>(path: &Path, raw: impl Read + Send + 'a) -> Box<dyn Read + Send + 'a> {
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 20, raw)))
    } else {
        Box::new(raw)
    }
}

/// Hashes the stored bytes as they are read, so a file is read once whether or not it is gzip; and
/// remembers whether reading them failed (rather than decoding them).
struct Hashing<R> {
    inner: R,
    hash: Option<crate::digest::Sha256>,
    failed: bool,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Scans files on `threads` threads; results in the order of `files`.
pub(super) fn scan_files(
    tree: &Tree,
    files: &[(String, u64)],
    threads: usize,
    max_line: usize,
    collect_ids: bool,
    hash: bool,
) -> Vec<std::result::Result<Scanned, (String, io::Error)>> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<std::result::Result<Scanned, (String, io::Error)>>> =
        (0..files.len()).map(|_| None).collect();
    let slots: Vec<std::sync::Mutex<&mut Option<_>>> = results.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(files.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((rel, size)) = files.get(i) else { break };
                    let r = scan_one(tree, rel, *size, max_line, collect_ids, hash).map_err(|e| (rel.clone(), e));
                    **slots[i].lock().expect("slot") = Some(r);
                }
            });
        }
    });
    drop(slots);
    results.into_iter().map(|r| r.expect("every file scanned")).collect()
}

fn scan_one(
    tree: &Tree,
    rel: &str,
    raw_len: u64,
    max_line: usize,
    collect_ids: bool,
    want_hash: bool,
) -> io::Result<Scanned> {
    let (path, role) = (Path::new(rel), role(rel));
    let mut expected = type_from_name(path);
    let mut raw =
        Hashing { inner: tree.open_file(rel)?, hash: want_hash.then(crate::digest::Sha256::new), failed: false };
    let mut splitter = LineSplitter::new(max_line);
    let named_organized = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("organized."));
    let mut st = State { expected: expected.take(), mixed: named_organized, ..Default::default() };
    let mut last_byte = b'\n';
    let mut on_line = |no: u64, line: Result<&[u8], LineError>| st.line(no, line, rel, role, collect_ids);
    let mut reader = decoded(path, &mut raw);
    let mut buf = vec![0u8; 1 << 20];
    let stopped = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                last_byte = buf[n - 1];
                splitter.feed(&buf[..n], &mut on_line);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    // What was decoded before a gzip stream broke off is checked like the rest.
    splitter.finish(&mut on_line);
    drop(reader);
    // The stored bytes could not be read: no report on this file can be trusted.
    if let Some(e) = stopped.as_ref().filter(|_| raw.failed) {
        return Err(io::Error::new(e.kind(), e.to_string()));
    }
    let cut = match &stopped {
        Some(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some("the gzip stream ends early".to_string()),
        Some(e) => Some(format!("the gzip data is damaged ({e})")),
        // A final line without a newline that does not parse: the file was cut short.
        None if last_byte != b'\n' && st.last_invalid == Some(splitter.line_no()) => {
            Some("the last line is cut short".to_string())
        }
        None => None,
    };
    if let Some(why) = cut.as_ref().filter(|_| stopped.is_some()) {
        // Always kept, even past the cap: it says why the file ends where it does.
        st.stream_problems += 1;
        if st.problems.len() >= KEEP_PROBLEMS {
            st.problems.pop();
        }
        st.problem(rel, splitter.line_no() + 1, format!("{why}: nothing after this line could be read"));
    }
    Ok(Scanned {
        summary: FileSummary {
            path: rel.to_string(),
            resource_type: if st.mixed {
                MIXED.to_string()
            } else {
                st.expected.clone().unwrap_or_else(|| "unknown".into())
            },
            resources: st.lines,
            bytes: raw_len,
            sha256: raw.hash.map(crate::digest::Sha256::finish_hex),
            invalid_lines: st.invalid,
            wrong_type_lines: st.wrong,
            truncated: cut.is_some(),
            cut,
            kind: role,
            earliest: st.earliest,
            latest: st.latest,
            parts: st.parts,
            header_lines: st.headers,
            deleted: st.deleted,
        },
        problems: st.problems,
        problems_total: st.invalid + st.wrong + st.stream_problems,
        outcomes: st.outcomes,
        ids: st.ids,
    })
}

#[derive(Default)]
struct State {
    expected: Option<String>,
    lines: u64,
    invalid: u64,
    wrong: u64,
    /// The number of the last invalid line (for truncation).
    last_invalid: Option<u64>,
    earliest: Option<String>,
    latest: Option<String>,
    problems: Vec<Problem>,
    outcomes: BTreeMap<(String, String, String), u64>,
    ids: IdSet,
    /// A broken gzip stream: counted with the problems, not as a line.
    stream_problems: u64,
    /// `deleted/` Bundles: their entries by the type of the resource each deletes.
    deleted: BTreeMap<String, u64>,
    /// Organized output: counted per type in `parts`, `Parameters` lines as its `headers`.
    mixed: bool,
    parts: BTreeMap<String, Part>,
    headers: u64,
}

impl State {
    fn problem(&mut self, file: &str, line: u64, reason: String) {
        if self.problems.len() < KEEP_PROBLEMS {
            self.problems.push(Problem { file: file.to_string(), line, reason });
        }
    }

    fn invalid(&mut self, file: &str, no: u64, e: LineError) {
        self.invalid += 1;
        self.last_invalid = Some(no);
        self.problem(file, no, e.to_string());
    }

    fn line(&mut self, no: u64, line: std::result::Result<&[u8], LineError>, file: &str, role: FileRole, ids: bool) {
        self.lines += 1;
        let parsed = line.and_then(|l| Ok((l, parse_head(l)?)));
        let (line, head) = match parsed {
            Ok(x) => x,
            Err(e) => return self.invalid(file, no, e),
        };
        let Some(rt) = head.resource_type.as_deref() else {
            return self.invalid(file, no, LineError::MissingResourceType);
        };
        let updated = head.last_updated.as_deref();
        if self.expected.is_none() && !self.mixed && rt == "Parameters" {
            // A block header where the name gave no type: organized output from another tool.
            self.mixed = true;
        }
        match &self.expected {
            _ if self.mixed => self.part(rt, line.len() as u64 + 1, updated),
            None => self.expected = Some(rt.to_string()),
            Some(e) if e != rt => {
                self.wrong += 1;
                let reason = LineError::WrongResourceType { expected: e.clone(), found: rt.to_string() }.to_string();
                self.problem(file, no, reason);
            }
            _ => {}
        }
        if let Some(u) = updated {
            if self.earliest.as_deref().is_none_or(|e| u < e) {
                set(&mut self.earliest, u);
            }
            if self.latest.as_deref().is_none_or(|l| u > l) {
                set(&mut self.latest, u);
            }
        }
        if ids
            && role == FileRole::Output
            && let Some(id) = head.id.as_deref()
        {
            self.ids.insert(id_hash(rt, id));
        }
        if role == FileRole::Deleted
            && rt == "Bundle"
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
        {
            super::deleted::count_entries(&v, &mut self.deleted);
        }
        if role == FileRole::Error
            && rt == "OperationOutcome"
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
        {
            for i in v["issue"].as_array().into_iter().flatten() {
                let s = |k: &str| i[k].as_str().unwrap_or("").to_string();
                let diag = i["diagnostics"].as_str().or(i["details"]["text"].as_str()).unwrap_or("").to_string();
                *self.outcomes.entry((s("severity"), s("code"), diag)).or_default() += 1;
            }
        }
    }
}

impl State {
    /// One line of organized output, counted under its type.
    fn part(&mut self, rt: &str, bytes: u64, updated: Option<&str>) {
        if rt == "Parameters" {
            self.headers += 1;
        }
        if !self.parts.contains_key(rt) {
            if self.parts.len() >= MAX_TYPES_PER_FILE {
                return;
            }
            self.parts.insert(rt.to_string(), Part::default());
        }
        let p = self.parts.get_mut(rt).expect("inserted above");
        p.resources += 1;
        p.bytes += bytes;
        if let Some(u) = updated {
            if p.earliest.as_deref().is_none_or(|e| u < e) {
                p.earliest = Some(u.to_string());
            }
            if p.latest.as_deref().is_none_or(|l| u > l) {
                p.latest = Some(u.to_string());
            }
        }
    }
}

/// Replaces the text of `slot`, reusing its allocation (the range moves on many lines of a sorted file).
fn set(slot: &mut Option<String>, v: &str) {
    match slot {
        Some(s) => {
            s.clear();
            s.push_str(v);
        }
        None => *slot = Some(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_from_file_names() {
        let t = |n: &str| type_from_name(Path::new(n));
        assert_eq!(t("Patient.ndjson").as_deref(), Some("Patient"));
        assert_eq!(t("Patient.001.ndjson.gz").as_deref(), Some("Patient"));
        assert_eq!(t("1.ExplanationOfBenefit.ndjson").as_deref(), Some("ExplanationOfBenefit"));
        assert_eq!(t("OperationOutcome.error.ndjson").as_deref(), Some("OperationOutcome"));
        assert_eq!(t("data.ndjson"), None);
    }

    #[test]
    fn id_hashes_are_stable() {
        assert_eq!(id_hash("Patient", "1"), id_hash("Patient", "1"));
        assert_ne!(id_hash("Patient", "1"), id_hash("Patient", "2"));
        assert_ne!(id_hash("Patient", "1"), id_hash("Group", "1"));
    }
}
