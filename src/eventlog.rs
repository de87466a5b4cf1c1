//! The export's event log: one JSON object per line in the shape smart-on-fhir/bulk-data-client writes
//! (`exportId`, `timestamp`, `eventId`, `eventDetail`), so tools that read its logs read ours. Every line
//! is a typed [`LogEvent`]; this file alone turns them into JSON, so the schema lives here.
//!
//! While an export is in flight the log is `.state/log.ndjson`; when the run completes it moves into the
//! run folder as `log/events.ndjson` (in a folder of its own, so a `*.ndjson` glob of the run folder
//! gives resources only).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::progress::{Event, Reporter};
use crate::record::FileKind;
use crate::record::PlannedFile;
use crate::redact::redact_query;

/// The run folder's log, relative to the run folder.
pub const RUN_LOG: &str = "log/events.ndjson";

/// Every line the log can hold. Field names follow bulk-data-client's `eventDetail`s.
#[derive(Debug)]
pub enum LogEvent<'a> {
    /// The kick-off was accepted (`status_url` set) or refused (`error` set, with its exit code).
    Kickoff {
        export_url: &'a str,
        parameters: Value,
        status_url: Option<&'a str>,
        error: Option<(u8, String)>,
    },
    /// `$bulk-member-match` finished.
    MemberMatch {
        matched: usize,
        non_matched: usize,
        consent_constrained: usize,
        group_id: &'a str,
    },
    /// A 202 while polling, or a note about the export's state (fresh file URLs requested).
    StatusProgress {
        x_progress: Option<&'a str>,
        retry_after_secs: Option<u64>,
    },
    StatusComplete {
        transaction_time: &'a str,
    },
    StatusError {
        message: &'a str,
        status_url: &'a str,
    },
    ManifestComplete {
        transaction_time: &'a str,
        outputs: usize,
        deleted: usize,
        errors: usize,
        pages: usize,
    },
    DownloadRequest {
        file: &'a PlannedFile,
    },
    DownloadComplete {
        file: &'a PlannedFile,
        resources: u64,
        bytes: u64,
    },
    DownloadError {
        file: &'a PlannedFile,
        message: &'a str,
        resume_from: Option<u64>,
    },
    ExportComplete {
        files: usize,
        resources: u64,
        bytes: u64,
        duration_ms: u64,
    },
}

impl LogEvent<'_> {
    /// `eventId` and `eventDetail`.
    fn to_json(&self) -> (&'static str, Value) {
        match self {
            LogEvent::Kickoff { export_url, parameters, status_url, error } => {
                let (code, body) = match error {
                    Some((c, b)) => (json!(c), json!(b)),
                    None => (Value::Null, Value::Null),
                };
                let mut d = json!({"exportUrl": export_url, "errorCode": code, "errorBody": body,
                                   "requestParameters": parameters});
                if let Some(u) = status_url {
                    d["statusUrl"] = json!(u);
                }
                ("kickoff", d)
            }
            LogEvent::MemberMatch { matched, non_matched, consent_constrained, group_id } => (
                "member_match",
                json!({"matched": matched, "nonMatched": non_matched, "consentConstrained": consent_constrained,
                       "groupId": group_id}),
            ),
            LogEvent::StatusProgress { x_progress, retry_after_secs } => {
                ("status_progress", json!({"body": null, "xProgress": x_progress, "retryAfter": retry_after_secs}))
            }
            LogEvent::StatusComplete { transaction_time } => {
                ("status_complete", json!({"transactionTime": transaction_time}))
            }
            LogEvent::StatusError { message, status_url } => {
                ("status_error", json!({"message": message, "statusUrl": status_url}))
            }
            LogEvent::ManifestComplete { transaction_time, outputs, deleted, errors, pages } => (
                "manifest_complete",
                json!({"transactionTime": transaction_time, "totalOutputFileCount": outputs,
                       "totalDeletedFileCount": deleted, "totalErrorFileCount": errors, "totalManifests": pages}),
            ),
            LogEvent::DownloadRequest { file } => (
                "download_request",
                json!({"fileUrl": redact_query(&file.url), "itemType": item_type(file), "resourceType": file.resource_type}),
            ),
            LogEvent::DownloadComplete { file, resources, bytes } => (
                "download_complete",
                json!({"fileUrl": redact_query(&file.url), "resourceCount": resources, "fileSize": bytes}),
            ),
            LogEvent::DownloadError { file, message, resume_from } => {
                let mut d = json!({"fileUrl": redact_query(&file.url), "message": message,
                                   "retrying": resume_from.is_some()});
                if let Some(r) = resume_from {
                    d["resumeFrom"] = json!(r);
                }
                ("download_error", d)
            }
            LogEvent::ExportComplete { files, resources, bytes, duration_ms } => (
                "export_complete",
                json!({"files": files, "resources": resources, "bytes": bytes, "attachments": 0,
                       "duration": duration_ms}),
            ),
        }
    }
}

fn item_type(f: &PlannedFile) -> &'static str {
    match f.kind {
        FileKind::Output => "output",
        FileKind::Error => "error",
        FileKind::Deleted => "deleted",
    }
}

pub struct EventLog {
    path: PathBuf,
    export_id: String,
    file: Mutex<File>,
}

/// A new `exportId` for the event log: 20 random hex digits (bulk-data-client's are random too).
pub fn new_export_id() -> String {
    (0..10).map(|_| format!("{:02x}", fastrand::u8(..))).collect()
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
    pub fn write(&self, event: &LogEvent<'_>) {
        let (event_id, detail) = event.to_json();
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

/// The progress events that belong in the log, as log events.
impl Reporter for EventLog {
    fn event(&self, event: &Event<'_>) {
        let e = match event {
            Event::Polling { progress, next_in, .. } => {
                LogEvent::StatusProgress { x_progress: *progress, retry_after_secs: Some(next_in.as_secs()) }
            }
            Event::DownloadStarted { file, .. } => LogEvent::DownloadRequest { file },
            Event::DownloadFinished { file, lines, bytes, .. } => {
                LogEvent::DownloadComplete { file, resources: *lines, bytes: *bytes }
            }
            Event::DownloadRetry { file, reason, resume_from, .. } => {
                LogEvent::DownloadError { file, message: reason, resume_from: Some(*resume_from) }
            }
            Event::DownloadFailed { file, reason, .. } => {
                LogEvent::DownloadError { file, message: reason, resume_from: None }
            }
            _ => return,
        };
        self.write(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kickoff_lines_have_bulk_data_client_fields() {
        let (id, d) = LogEvent::Kickoff {
            export_url: "https://s/$export",
            parameters: json!("_type=Patient"),
            status_url: Some("https://s/status/1"),
            error: None,
        }
        .to_json();
        assert_eq!(id, "kickoff");
        assert_eq!(
            d,
            json!({"exportUrl": "https://s/$export", "errorCode": null, "errorBody": null,
                   "requestParameters": "_type=Patient", "statusUrl": "https://s/status/1"})
        );
        let (_, d) = LogEvent::Kickoff {
            export_url: "u",
            parameters: Value::Null,
            status_url: None,
            error: Some((4, "no".into())),
        }
        .to_json();
        assert_eq!(d, json!({"exportUrl": "u", "errorCode": 4, "errorBody": "no", "requestParameters": null}));
    }
}
