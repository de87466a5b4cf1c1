//! `log.ndjson`: one JSON object per line in the shape smart-on-fhir/bulk-data-client writes
//! (`exportId`, `timestamp`, `eventId`, `eventDetail`), so tools that read its logs read ours. Events:
//! kickoff, status_progress, status_complete, status_error, manifest_complete, download_request,
//! download_complete, download_error, export_complete.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

pub struct EventLog {
    path: PathBuf,
    export_id: String,
    file: Mutex<File>,
}

impl EventLog {
    /// Appends to `path` (created 0600). `export_id` ties the lines of one export together across resumes.
    pub fn open(path: &Path, export_id: &str) -> std::io::Result<Self> {
        let f = crate::private_fs::open_private(path, OpenOptions::new().create(true).append(true))?;
        Ok(EventLog { path: path.to_path_buf(), export_id: export_id.to_string(), file: Mutex::new(f) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event. A failing log never fails the export: it is a record, not the data.
    pub fn event(&self, event_id: &str, detail: Value) {
        let line = json!({
            "exportId": self.export_id,
            "timestamp": crate::instant::now(),
            "eventId": event_id,
            "eventDetail": detail,
        });
        let mut bytes = serde_json::to_vec(&line).expect("JSON serialises");
        bytes.push(b'\n');
        if let Err(e) = self.file.lock().expect("log lock").write_all(&bytes) {
            tracing::warn!(error = %e, "could not write the event log");
        }
    }
}

impl crate::progress::Reporter for EventLog {
    fn event(&self, event: &crate::progress::Event<'_>) {
        use crate::progress::Event;
        let item_type = |f: &crate::export::manifest::PlannedFile| match f.kind {
            crate::record::FileKind::Output => "output",
            crate::record::FileKind::Error => "error",
            crate::record::FileKind::Deleted => "deleted",
        };
        match event {
            Event::Polling { progress, next_in, .. } => self.event(
                "status_progress",
                json!({"body": null, "xProgress": progress, "retryAfter": next_in.as_secs()}),
            ),
            Event::DownloadStarted { file, .. } => self.event(
                "download_request",
                json!({"fileUrl": crate::redact::redact_query(&file.url), "itemType": item_type(file), "resourceType": file.resource_type}),
            ),
            Event::DownloadFinished { file, lines, bytes, .. } => self.event(
                "download_complete",
                json!({"fileUrl": crate::redact::redact_query(&file.url), "resourceCount": lines, "fileSize": bytes}),
            ),
            Event::DownloadRetry { file, reason, resume_from, .. } => self.event(
                "download_error",
                json!({"fileUrl": crate::redact::redact_query(&file.url), "message": reason, "retrying": true, "resumeFrom": resume_from}),
            ),
            Event::DownloadFailed { file, reason, .. } => self.event(
                "download_error",
                json!({"fileUrl": crate::redact::redact_query(&file.url), "message": reason, "retrying": false}),
            ),
            _ => {}
        }
    }
}
