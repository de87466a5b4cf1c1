//! Polling a status URL (DESIGN §1.4): [`next_step`] is the pure decision (status, headers, elapsed
//! time → wait, done, expired or failed); [`wait`] is the thin loop around it, for every asynchronous
//! request the tool makes (the export, its manifest pages, `$bulk-member-match`). Faults (429,
//! 5xx, cut connections, transient OperationOutcomes) are retried below this, by the shared session.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_LOCATION, HeaderMap};
use url::Url;

use crate::error::{Error, Result};
use crate::fhir::outcome_text;
use crate::http::{MAX_SMALL_BODY, backoff, retry_after};
use crate::job::PollSettings;
use crate::progress::Event;
use crate::session::{Req, Session};

/// What to do after one status response.
#[derive(Debug)]
pub enum Step {
    /// Still running: wait this long, then ask again.
    Wait { after: Duration, progress: Option<String> },
    /// The manifest (the body of the `200`).
    Done(Bytes),
    /// The status URL is gone (404/410): expired or deleted on the server.
    Expired(String),
    /// The export failed on the server, or the wait exceeded `poll.timeout`.
    Failed(Error),
}

impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Step::Wait { after: a, progress: p }, Step::Wait { after: b, progress: q }) => a == b && p == q,
            (Step::Done(a), Step::Done(b)) => a == b,
            (Step::Expired(a), Step::Expired(b)) => a == b,
            (Step::Failed(a), Step::Failed(b)) => a.exit_code() == b.exit_code() && a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

/// Where the wait stands when a status response arrives.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Since the kick-off.
    pub elapsed: Duration,
    /// How many 202s came before this one (for backoff).
    pub polls: u32,
    /// For HTTP-date `Retry-After`.
    pub now: SystemTime,
    /// In [0, 1).
    pub jitter: f64,
}

/// Decides the next step.
pub fn next_step(status: u16, headers: &HeaderMap, body: &Bytes, clock: Clock, settings: &PollSettings) -> Step {
    let Clock { elapsed, polls, now, jitter } = clock;
    // Bulk Data 3.0 `separate-export-status`: the status endpoint answers 200 and carries the export's
    // own status in `X-Export-Status` (e.g. `202` while in progress).
    let status = match headers
        .get("x-export-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next()?.parse::<u16>().ok())
    {
        Some(s) if status == 200 => s,
        _ => status,
    };
    match status {
        200 => Step::Done(body.clone()),
        202 => {
            let progress = headers
                .get("x-progress")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().filter(|c| !c.is_control()).take(200).collect::<String>());
            let after = match retry_after(headers, now) {
                Some(d) => d.clamp(settings.min_interval, settings.max_interval),
                // No advice: back off from min towards max, with jitter so many clients don't align.
                None => backoff(polls, settings.min_interval, settings.max_interval, 0.5 + jitter / 2.0)
                    .max(settings.min_interval),
            };
            if elapsed + after > settings.timeout {
                return Step::Failed(Error::Transient(format!(
                    "the export was not ready within poll.timeout ({})",
                    humantime::format_duration(settings.timeout)
                )));
            }
            Step::Wait { after, progress }
        }
        404 | 410 => Step::Expired(format!(
            "the status URL answered {status}: the server no longer knows this export ({})",
            outcome_text(body)
        )),
        401 | 403 => Step::Failed(Error::AuthRefused {
            url: "status URL".into(),
            detail: format!("HTTP {status} while polling: {}", outcome_text(body)),
        }),
        _ => Step::Failed(Error::ServerRejected(format!(
            "the export failed on the server (HTTP {status}): {}",
            outcome_text(body)
        ))),
    }
}

/// How an asynchronous request ended.
#[derive(Debug)]
pub enum Polled {
    /// The body of the final `200`: a manifest, a manifest page, a `$bulk-member-match` result.
    Ready(Bytes),
    /// The status URL answered 404/410: the server no longer has this request.
    Gone(String),
}

/// The FHIR asynchronous request pattern: polls `status_url` until it answers with the result. Used for
/// the export's manifest, manifest pages, fresh file URLs and `$bulk-member-match`. `started` is when the
/// request was made (it may be a previous process's, for a resumed run), so `poll.timeout` counts from
/// there. `on_progress` sees each X-Progress (for the state file).
pub async fn wait(
    session: &Session,
    status_url: &Url,
    settings: &PollSettings,
    started: SystemTime,
    mut on_progress: impl FnMut(Option<&str>),
) -> Result<Polled> {
    let req = Req::get(status_url.clone(), "status").header(ACCEPT, "application/json");
    let local_start = Instant::now();
    let already = SystemTime::now().duration_since(started).unwrap_or_default();
    let mut polls = 0u32;
    loop {
        let reply = session.send(&req, MAX_SMALL_BODY).await?;
        let elapsed = already + local_start.elapsed();
        let clock = Clock { elapsed, polls, now: SystemTime::now(), jitter: fastrand::f64() };
        match next_step(reply.status.as_u16(), &reply.headers, &reply.body, clock, settings) {
            Step::Done(body) => return Ok(Polled::Ready(body)),
            Step::Expired(why) => return Ok(Polled::Gone(why)),
            Step::Failed(e) => return Err(e),
            Step::Wait { after, progress } => {
                on_progress(progress.as_deref());
                session.reporter.event(&Event::Polling { elapsed, progress: progress.as_deref(), next_in: after });
                polls += 1;
                tokio::time::sleep(after).await;
            }
        }
    }
}

/// The status URL of an accepted asynchronous request: its `Content-Location`, resolved against the
/// request URL (the spec says absolute; a relative one is accepted the way a browser would), and only
/// https (or http to loopback), like every URL a server hands us. `what` names the request.
pub fn status_location(headers: &HeaderMap, request_url: &Url, what: &str) -> Result<Url> {
    let loc = headers
        .get(CONTENT_LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::ServerRejected(format!("the {what} answered 202 without a Content-Location header")))?;
    let url = request_url
        .join(loc)
        .map_err(|e| Error::ServerRejected(format!("the {what}'s Content-Location {loc:?} is not a URL: {e}")))?;
    crate::job::check_url_scheme(&url).map_err(Error::ServerRejected)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn settings() -> PollSettings {
        PollSettings {
            min_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(300),
            timeout: Duration::from_secs(3600),
        }
    }

    fn step(status: u16, h: &[(&'static str, &str)], elapsed: u64, polls: u32) -> Step {
        let mut headers = HeaderMap::new();
        for (k, v) in h {
            headers.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Clock { elapsed: Duration::from_secs(elapsed), polls, now, jitter: 0.0 };
        next_step(status, &headers, &Bytes::from_static(b"{}"), clock, &settings())
    }

    #[test]
    fn retry_after_is_obeyed_within_bounds() {
        let s = step(202, &[("retry-after", "10"), ("x-progress", "50% done")], 0, 0);
        assert_eq!(s, Step::Wait { after: Duration::from_secs(10), progress: Some("50% done".into()) });
        assert_eq!(
            step(202, &[("retry-after", "0")], 0, 0),
            Step::Wait { after: Duration::from_secs(2), progress: None }
        );
        assert_eq!(
            step(202, &[("retry-after", "86400")], 0, 0),
            Step::Wait { after: Duration::from_secs(300), progress: None }
        );
        let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_045));
        assert_eq!(
            step(202, &[("retry-after", &date)], 0, 0),
            Step::Wait { after: Duration::from_secs(45), progress: None }
        );
    }

    #[test]
    fn without_retry_after_backoff_grows_to_the_maximum() {
        let waits: Vec<Duration> = (0..12)
            .map(|n| match step(202, &[], 0, n) {
                Step::Wait { after, .. } => after,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(waits[0], Duration::from_secs(2));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits[11], Duration::from_secs(150)); // jitter 0 → half the cap
    }

    #[test]
    fn progress_text_is_sanitised() {
        let s = step(202, &[("x-progress", "a\tb")], 0, 0);
        assert!(matches!(s, Step::Wait { progress: Some(p), .. } if p == "ab"));
    }

    #[test]
    fn timeout_ends_the_wait_with_a_resumable_error() {
        match step(202, &[("retry-after", "120")], 3590, 3) {
            Step::Failed(e) => assert_eq!(e.exit_code(), 75),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn separate_export_status_header_wins_over_a_200() {
        let s = step(200, &[("x-export-status", "202 Accepted"), ("retry-after", "5")], 0, 0);
        assert_eq!(s, Step::Wait { after: Duration::from_secs(5), progress: None });
        assert_eq!(step(200, &[("x-export-status", "200")], 0, 0), Step::Done(Bytes::from_static(b"{}")));
        assert!(matches!(step(200, &[("x-export-status", "500")], 0, 0), Step::Failed(_)));
    }

    #[test]
    fn done_expired_and_failed() {
        assert_eq!(step(200, &[], 0, 0), Step::Done(Bytes::from_static(b"{}")));
        assert!(matches!(step(404, &[], 0, 0), Step::Expired(_)));
        assert!(matches!(step(410, &[], 0, 0), Step::Expired(_)));
        match step(400, &[], 0, 0) {
            Step::Failed(e) => assert_eq!(e.exit_code(), 4),
            other => panic!("{other:?}"),
        }
        match step(403, &[], 0, 0) {
            Step::Failed(e) => assert_eq!(e.exit_code(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_locations_are_resolved_and_checked_for_every_async_request() {
        let base = Url::parse("https://fhir.example/r4/Group/$bulk-member-match").unwrap();
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LOCATION, HeaderValue::from_static("/status/7"));
        assert_eq!(status_location(&h, &base, "$bulk-member-match").unwrap().as_str(), "https://fhir.example/status/7");
        h.insert(CONTENT_LOCATION, HeaderValue::from_static("http://fhir.example/status/7"));
        let e = status_location(&h, &base, "$bulk-member-match").unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("plain http to a remote host"), "{e}");
        let e = status_location(&HeaderMap::new(), &base, "kick-off").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server rejected the export: the kick-off answered 202 without a Content-Location header"
        );
    }
}
