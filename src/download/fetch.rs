//! One HTTP attempt for one file: the request (with `Range` when a `.part` is there to resume), the
//! response's head classified by [`classify`], and the body's chunks moved through a bounded channel
//! into a blocking worker that runs [`verify_stream`] into the file's [`Target`] (a `.part`, or a
//! multipart upload). Each chunk's `Bytes` is moved, never copied, on its way to the worker.

use reqwest::header::{ACCEPT, ACCEPT_ENCODING, RANGE};
use tokio::sync::mpsc;

use super::Downloaded;
use super::classify::{BodyEnd, BodyVerdict, Decision, Retry, classify, judge_body};
use super::verify::{VerifyError, verify_stream};
use crate::error::{Error, Result};
use crate::fhir::outcome_text;
use crate::http::{describe, read_limited};
use crate::job::DownloadSettings;
use crate::progress::Event;
use crate::record::{FileKind, PlannedFile};
use crate::redact::redact_query;
use crate::session::{Req, Session, TokenUse};
use crate::store::Target;

/// Chunks in flight between the network task and the file worker: bounds memory per download.
const CHANNEL_CHUNKS: usize = 4;
/// Report progress after this many bytes, not per chunk.
const PROGRESS_STEP: u64 = 256 * 1024;
/// Largest error body read for its OperationOutcome text, and the part of it quoted.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const ERROR_BODY_QUOTED: usize = 4096;

/// How one attempt ended, when no error ended it.
pub enum Attempt {
    Verified(Downloaded),
    Retry(Retry),
    /// The file link has expired (410, or a tokenless request refused).
    UrlExpired,
    /// The whole file is in the `.part`, but its line count disagrees with the manifest's.
    CountMismatch {
        file: Downloaded,
        reason: String,
    },
}

/// One request for `file` into `target`. `token_allowed` is the manifest's `requiresAccessToken`.
pub async fn attempt(
    session: &Session,
    id: usize,
    file: &PlannedFile,
    target: &mut Target,
    settings: &DownloadSettings,
    token_allowed: bool,
) -> Result<Attempt> {
    let have = target.resume_from();
    let mut req = Req::get(file.url.clone(), file.path.clone()).header(ACCEPT, "application/fhir+ndjson");
    req.token = if token_allowed { TokenUse::AllowedOrigins } else { TokenUse::Never };
    if have > 0 {
        // Ranges are over the stored representation: ask for identity so the bytes append cleanly.
        req = req.header(RANGE, &format!("bytes={have}-")).header(ACCEPT_ENCODING, "identity");
    } else {
        req = req.header(ACCEPT_ENCODING, "gzip");
    }
    let mut resp = session.send_streaming(&req).await?;
    let (append, gzip) = match classify(resp.status(), resp.headers(), have, token_allowed) {
        Decision::FromStart { gzip } => (false, gzip),
        Decision::Append => (true, false),
        Decision::Restart(reason) => return Ok(Attempt::Retry(Retry::Restart(reason))),
        Decision::UrlExpired => return Ok(Attempt::UrlExpired),
        d @ (Decision::Refused | Decision::Failed) => {
            let status = resp.status().as_u16();
            let body = read_limited(resp, ERROR_BODY_LIMIT).await.unwrap_or_default();
            let detail = format!(
                "HTTP {status} fetching {}: {}",
                redact_query(&file.url),
                outcome_text(&body[..body.len().min(ERROR_BODY_QUOTED)])
            );
            return Err(match d {
                Decision::Refused => Error::AuthRefused { url: redact_query(&file.url), detail },
                // The file is gone from the server, and with it the export: rerunning cannot fetch it.
                _ if status == 404 => Error::gone(detail),
                _ => Error::Failed(detail),
            });
        }
    };
    let content_length = if gzip { None } else { resp.content_length() };
    let offset = if append { have } else { 0 };
    session.reporter.event(&Event::DownloadOffset { id, offset });
    if let Some(n) = content_length {
        session.reporter.event(&Event::DownloadLength { id, total: offset + n });
    }

    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(CHANNEL_CHUNKS);
    let opened = target.open(append).await?;
    let worker = {
        let (settings, expected) = (settings.clone(), file.resource_type.clone());
        tokio::task::spawn_blocking(move || {
            let (prior, mut sink) = (opened.prior, opened.sink);
            let chunks = std::iter::from_fn(|| rx.blocking_recv());
            verify_stream(&settings, &expected, gzip, prior, chunks, &mut *sink)
        })
    };
    let mut received = 0u64;
    let mut unreported = 0u64;
    let mut net_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                received += c.len() as u64;
                unreported += c.len() as u64;
                if unreported >= PROGRESS_STEP {
                    session.reporter.event(&Event::DownloadProgress { id, bytes: unreported });
                    unreported = 0;
                }
                if tx.send(c).await.is_err() {
                    break; // the worker stopped; its error is reported below
                }
            }
            Ok(None) => break,
            Err(e) => {
                net_error = Some(describe(&e.with_url(resp.url().clone()), session.limits(true)));
                break;
            }
        }
    }
    drop(tx);
    session.reporter.event(&Event::DownloadProgress { id, bytes: unreported });
    let verified = match worker.await.map_err(|e| Error::Failed(format!("file worker failed: {e}")))? {
        Ok(v) => v,
        Err(VerifyError::TooLarge { limit }) => {
            return Err(Error::Failed(format!(
                "{}: larger than download.max_file_bytes ({limit} bytes); stopped",
                file.path
            )));
        }
        Err(VerifyError::Gzip(e)) => {
            // A connection cut mid-body also leaves the gzip stream unfinished: the cut is the cause.
            let reason = net_error.unwrap_or_else(|| format!("gzip body could not be decoded: {e}"));
            return Ok(Attempt::Retry(Retry::Restart(reason)));
        }
        Err(VerifyError::Io(e)) => return target.write_failed(e).map(|r| Attempt::Retry(Retry::Restart(r))),
    };
    let end = BodyEnd {
        gzip,
        net_error,
        received,
        content_length,
        lines: verified.tally.lines,
        header_lines: verified.tally.headers,
        manifest_count: file.count,
        count_is_contract: file.kind == FileKind::Output,
    };
    Ok(match judge_body(&end) {
        BodyVerdict::Whole => Attempt::Verified(Downloaded::new(file, verified)),
        BodyVerdict::Retry(retry) => Attempt::Retry(retry),
        BodyVerdict::CountMismatch(reason) => Attempt::CountMismatch { file: Downloaded::new(file, verified), reason },
    })
}
