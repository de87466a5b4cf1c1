//! [`Plain`]: one log line per event (never per chunk), through `tracing`, so `--log-format json`
//! applies and every line carries the job's name from the span `run` enters around each job.
//! Sizes and waits use [`super::units`], the same words as the bars.

use std::sync::Arc;

use super::units::{self, clean};
use super::{Display, Event, Reporter, round};
use crate::record::FileKind;

pub struct Plain;

impl Display for Plain {
    fn for_job(&self, _: &str) -> Arc<dyn Reporter> {
        Arc::new(Plain)
    }
}

impl Reporter for Plain {
    fn event(&self, event: &Event<'_>) {
        match event {
            // `auth` logs the token itself (at debug); a second line here would repeat it.
            Event::TokenObtained { .. } => {}
            Event::KickedOff { status_url } => tracing::info!(status_url, "export started"),
            Event::Resumed { status_url } => {
                tracing::info!(status_url, "resuming the export in flight")
            }
            Event::Polling { elapsed, progress, next_in } => tracing::info!(
                elapsed = %units::clock(round(*elapsed)),
                progress = progress.map(clean).unwrap_or_default(),
                next_check_in = %units::wait(*next_in),
                "export in progress"
            ),
            Event::Retrying { what, attempt, of, wait, reason } => tracing::warn!(
                what, attempt, of, wait = %units::wait(*wait), reason = %clean(reason), "retrying"
            ),
            Event::ManifestReady { planned, resources, verified, .. } => {
                let count = |k| planned.iter().filter(|f| f.kind == k).count();
                let (files, error_files, deleted_files) =
                    (count(FileKind::Output), count(FileKind::Error), count(FileKind::Deleted));
                match resources {
                    Some(r) => tracing::info!(
                        files,
                        error_files,
                        deleted_files,
                        resources = r,
                        already_verified = verified.len(),
                        "export complete; downloading"
                    ),
                    None => tracing::info!(
                        files,
                        error_files,
                        deleted_files,
                        already_verified = verified.len(),
                        "export complete; downloading"
                    ),
                }
            }
            Event::DownloadStarted { file, .. } => tracing::debug!(path = file.path, "download started"),
            Event::DownloadProgress { .. } | Event::DownloadLength { .. } => {}
            Event::DownloadOffset { offset, .. } => {
                if *offset > 0 {
                    tracing::debug!(offset, "download continues from the bytes already on disk")
                }
            }
            Event::DownloadFinished { file, lines, bytes, .. } => {
                tracing::info!(path = file.path, resources = lines, bytes, "file verified")
            }
            Event::DownloadRetry { file, reason, resume_from, .. } => {
                tracing::warn!(path = file.path, reason = %clean(reason), resume_from, "download interrupted; retrying")
            }
            Event::DownloadFailed { file, reason, .. } => {
                tracing::error!(path = file.path, reason = %clean(reason), "download failed")
            }
            Event::Note { message } => tracing::info!("{}", clean(message)),
            Event::Warning { message } => tracing::warn!("{}", clean(message)),
        }
    }
}
